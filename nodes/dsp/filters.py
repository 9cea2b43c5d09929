"""Resonant filters: lowpass, highpass, bandpass.

A topology-preserving (trapezoidal) state-variable filter (Simper / Cytomic):
its magnitude response is exactly the RBJ cookbook biquad's, but cutoff and
Q can move every sample (audio-rate sweeps) without the blow-ups of a
direct-form biquad. Coefficients follow the per-sample param values.
"""
from __future__ import annotations

from patchlib import Input, Node, Param, register

from . import _filters


class _SVF(Node):
    inputs = {"in": Input("signal to filter")}
    params = {
        "cutoff": Param(1000.0, (10.0, 24000.0), "Hz", "exp", smooth=0.005,
                        doc="cutoff (-3 dB for Q 0.707; centre for bandpass); clamped below 0.49 x sample rate"),
        "q": Param(0.7071, (0.1, 40.0), "", "exp", doc="resonance (RBJ Q): 0.707 flat, 4 a strong peak"),
    }
    mode = 0

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.reset()

    def reset(self):
        self.state = _filters.svf_state(self.out["out"].shape[0])

    def process(self, n, t):
        _filters.svf_kernel(self.inp["in"], self.out["out"], n, self.par["cutoff"], self.par["q"],
                            self.mode, self.sr, self.state)


@register("lowpass")
class Lowpass(_SVF):
    """Resonant 12 dB/octave lowpass (RBJ response, TPT state-variable structure).

    Example: ``filter: {type: lowpass, in: osc, cutoff: 1.2kHz, q: 4}``
    """

    mode = _filters.MODE_LOWPASS


@register("highpass")
class Highpass(_SVF):
    """Resonant 12 dB/octave highpass (RBJ response, TPT state-variable structure).

    Example: ``hp: {type: highpass, in: noise, cutoff: 3kHz}``
    """

    mode = _filters.MODE_HIGHPASS


@register("bandpass")
class Bandpass(_SVF):
    """Bandpass with 0 dB peak at the centre; bandwidth set by Q.

    Example: ``bp: {type: bandpass, in: noise, cutoff: 800, q: 8}``
    """

    mode = _filters.MODE_BANDPASS
