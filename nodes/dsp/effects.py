"""Effects and dynamics: waveshaper, bitcrush, chorus/flanger, reverb, compressor, limiter, width."""
