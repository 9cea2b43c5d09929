"""Classic DSP nodes: oscillators, noise, filters, envelopes, control, physical models, effects, I/O."""
from . import (basic, clipper, control, delay, effects, envelopes, filters, io, osc_out,  # noqa: F401
               oscillators, physical, sampler)
