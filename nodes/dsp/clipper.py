"""Virtual-analog pedal: the RC diode clipper (the reference pedal the neural ``pedal`` learns from).

The per-sample maths lives in :mod:`nodes.dsp._clipper` (numba kernels with
explicit state); this class wires ports, params and options to it.
"""
from __future__ import annotations

from patchlib import Input, Node, Option, Param, register

from . import _clipper, _effects

_STAGES = {1: 0, 2: 1, 4: 2, 8: 3}


@register("diode_clipper")
class DiodeClipper(Node):
    """Virtual-analog diode clipper pedal: RC lowpass into antiparallel diodes, solved implicitly, oversampled.

    The circuit of Yeh and Smith (2008): a 2.2 kOhm resistor into a 10 nF
    capacitor shunted by two antiparallel silicon diodes (Is = 2.52 nA,
    n Vt = 45.3 mV), ``dV/dt = (Vin - V)/(RC) - (2 Is/C) sinh(V/(n Vt))``,
    solved per sample with the trapezoidal rule and bracketed Newton-Raphson
    (never diverges; converged to 1e-9 V) at ``oversample`` times the sample
    rate, with the waveshaper's halfband filters as anti-imaging and
    anti-aliasing filters (``latency`` 0/55/62/64 samples for 1/2/4/8x).
    Small signals see the RC lowpass (cutoff 7.23 kHz); large ones are
    clipped softly at about +-0.65 V (the diodes' forward voltage). Then a
    tone lowpass and the output level. Knobs, all 0..1 and audio-rate:
    ``gain`` drives the input from -24 dB to +36 dB (full scale 1.0 = 1 V at
    0 dB, i.e. ``gain: 0.4``); ``tone`` sweeps a one-pole lowpass
    exponentially from 350 Hz to 16 kHz; ``level`` scales the output
    linearly (1 V of capacitor voltage = 1.0 at ``level: 1``), so a
    saturated output peaks near ``0.65 * level``.

    Example: ``drive: {type: diode_clipper, in: guitar, gain: 0.7, tone: 0.5, level: 0.8}``
    """

    inputs = {"in": Input("signal to distort")}
    params = {
        "gain": Param(0.5, (0.0, 1.0), doc="drive: 0..1 -> -24..+36 dB into the clipper (0.4 = 0 dB)"),
        "tone": Param(0.5, (0.0, 1.0), doc="tone: one-pole lowpass swept 350 Hz (0) .. 16 kHz (1), exponentially"),
        "level": Param(0.8, (0.0, 1.0), doc="output level, linear (saturated peak about 0.65 * level)"),
    }
    options = {
        "oversample": Option(4, kind=int, choices=(1, 2, 4, 8),
                             doc="oversampling factor (halfband FIR stages; latency 0/55/62/64 samples)"),
    }
    batch_state = ("state",)

    def batch_key(self):
        return (int(self.opts.get("oversample", 4)),)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.stages = _STAGES[int(self.opts.get("oversample", 4))]
        self.taps = _effects.halfband_taps()
        self.reset()

    def reset(self):
        self.state, self.latency, self.extra = _clipper.clip_state(self.out["out"].shape[0], self.stages)

    def process(self, n, t):
        p = self.par
        _clipper.clip_kernel(self.inp["in"], self.out["out"], n, p["gain"], p["tone"], p["level"], self.stages,
                             self.extra, self.sr, self.taps, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        f = b.nodes[0]
        _clipper.clip_batch(b.inp["in"], b.out["out"], n, b.par["gain"], b.par["tone"], b.par["level"], f.stages,
                            f.extra, f.sr, f.taps, b.state["state"])
