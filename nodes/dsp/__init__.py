"""Classic DSP nodes: oscillators, noise, filters, envelopes, delays, mixing, I/O."""
from . import basic, delay, envelopes, filters, io, oscillators  # noqa: F401
