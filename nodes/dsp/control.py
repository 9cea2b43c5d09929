"""Control nodes: ar, ramp, sample_hold, slew, quantize, sequencer, clock, conversions, math."""
