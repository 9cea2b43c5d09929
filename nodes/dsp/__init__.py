"""Classic DSP nodes: oscillators, noise, filters, envelopes, control, physical models, effects, I/O."""
from . import (basic, clipper, control, delay, effects, envelopes, filters, io, oscillators, physical,  # noqa: F401
               sampler)
