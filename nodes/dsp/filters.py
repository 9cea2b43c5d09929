"""Filters: the RBJ biquad family, a multi-output SVF, a Moog-style ladder, one-pole, DC blocker.

Every biquad type (``lowpass``, ``highpass``, ``bandpass``, ``notch``,
``peak``, ``lowshelf``, ``highshelf``, ``allpass``, or ``biquad`` with a
``mode``) is a topology-preserving (trapezoidal) state-variable filter
(Simper / Cytomic) whose magnitude response is exactly the RBJ cookbook
biquad's, but whose cutoff, Q and gain can move every sample (audio-rate
sweeps) without the blow-ups or clicks of a direct-form biquad. ``svf`` gives
lowpass, highpass, bandpass and notch at once. ``ladder`` is a
zero-delay-feedback Moog-style 4-pole lowpass with a tanh drive that
self-oscillates at its cutoff. ``onepole`` smooths, ``dcblock`` removes DC.
Identical filters of one graph level run as one batched kernel call.
"""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Option, Output, Param, register

from . import _filters

_CUTOFF_DOC = ("cutoff (-3 dB for Q 0.707; centre for bandpass, notch, peak; shelf midpoint); "
               "clamped below 0.49 x sample rate")


def _cutoff(default=1000.0, doc=_CUTOFF_DOC, lo=10.0, hi=24000.0):
    return Param(default, (lo, hi), "Hz", "exp", smooth=0.005, doc=doc)


_Q = Param(0.7071, (0.1, 40.0), "", "exp",
           doc="resonance (RBJ Q): 0.707 flat, 4 a strong peak; for shelves 0.707 is the steepest without overshoot")
_GAIN = Param(0.0, (-24.0, 24.0), "dB", "lin", doc="boost (+) or cut (-) at the peak / of the shelf")


class _SVF(Node):
    """Base of the biquad types: one TPT state-variable filter, one mode."""

    inputs = {"in": Input("signal to filter")}
    params = {"cutoff": _cutoff(), "q": _Q}
    mode = _filters.MODE_LOWPASS
    batch_state = ("state",)

    def _mode(self) -> int:
        return self.mode

    def batch_key(self):
        return (self._mode(),)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.kmode = self._mode()
        # the kernels take a gain row even in modes that never read it
        self.nogain = np.zeros((1, ctx.block_size), dtype=np.float32)
        self.nogain1 = self.nogain[0]
        self.reset()

    def reset(self):
        self.state = _filters.svf_state(self.out["out"].shape[0])

    def process(self, n, t):
        par = self.par
        gain = par["gain"] if "gain" in par else self.nogain1
        _filters.svf_kernel(self.inp["in"], self.out["out"], n, par["cutoff"], par["q"], gain, self.kmode,
                            self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        par = b.par
        first = b.nodes[0]  # shared settings (plain attribute reads: this runs every block)
        gain = par["gain"] if "gain" in par else first.nogain
        _filters.svf_batch(b.inp["in"], b.out["out"], n, par["cutoff"], par["q"], gain, first.kmode, first.sr,
                           b.state["state"])


class _GainSVF(_SVF):
    params = {"cutoff": _cutoff(), "q": _Q, "gain": _GAIN}


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


@register("notch")
class Notch(_SVF):
    """Notch (band-reject): a zero at the cutoff, 0 dB far from it; Q sets its width.

    Example: ``hum: {type: notch, in: mic, cutoff: 50, q: 10}``
    """

    mode = _filters.MODE_NOTCH


@register("allpass")
class Allpass(_SVF):
    """Second-order allpass: flat magnitude, phase turning through -180 degrees at the cutoff.

    Sweep a few in series and mix with the dry signal for a phaser.

    Example: ``ap: {type: allpass, in: osc, cutoff: {from: lfo, range: [300, 3000], curve: exp}, q: 0.7}``
    """

    mode = _filters.MODE_ALLPASS


@register("peak")
class Peak(_GainSVF):
    """Peaking EQ (bell): ``gain`` dB at the cutoff, 0 dB far away, width set by Q.

    Example: ``bell: {type: peak, in: mix, cutoff: 2.5kHz, q: 1.5, gain: -6dB}``
    """

    mode = _filters.MODE_PEAK


@register("lowshelf")
class Lowshelf(_GainSVF):
    """Low shelf: ``gain`` dB below the cutoff, 0 dB above, half the gain at the cutoff.

    Example: ``bass: {type: lowshelf, in: mix, cutoff: 200, gain: 6dB}``
    """

    mode = _filters.MODE_LOWSHELF


@register("highshelf")
class Highshelf(_GainSVF):
    """High shelf: ``gain`` dB above the cutoff, 0 dB below, half the gain at the cutoff.

    Example: ``air: {type: highshelf, in: mix, cutoff: 8kHz, gain: 4dB}``
    """

    mode = _filters.MODE_HIGHSHELF


@register("biquad")
class Biquad(_GainSVF):
    """Any RBJ cookbook biquad, chosen by ``mode``, as a TPT state-variable filter.

    Modes: lowpass, highpass, bandpass, notch, peak, lowshelf, highshelf,
    allpass. ``gain`` (dB) is used by peak and the shelves only. Cutoff, Q
    and gain may be driven at audio rate.

    Example: ``eq: {type: biquad, mode: peak, in: osc, cutoff: 1kHz, q: 2, gain: 9dB}``
    """

    options = {"mode": Option("lowpass", choices=_filters.MODES, doc="response: " + ", ".join(_filters.MODES))}

    def _mode(self) -> int:
        return _filters.MODES.index(self.opts.get("mode") or "lowpass")


@register("svf")
class SVF(Node):
    """State-variable filter with four outputs at once: lp, hp, bp and notch.

    Each output is exactly its RBJ cookbook response (lowpass and highpass
    gain Q at the cutoff, bandpass 0 dB at its peak). Refer to one as
    ``f.hp``; ``f`` alone (port ``out``) is the lowpass.

    Example: ``f: {type: svf, in: saw, cutoff: 900, q: 3}`` then ``mix: {type: mix, in: [f.lp, f.bp]}``
    """

    inputs = {"in": Input("signal to filter")}
    outputs = {
        "out": Output("lowpass (the same as lp): what 'in: f' reads"),
        "lp": Output("lowpass, 12 dB/octave"),
        "hp": Output("highpass, 12 dB/octave"),
        "bp": Output("bandpass, 0 dB at the cutoff"),
        "notch": Output("notch: a zero at the cutoff"),
    }
    params = {"cutoff": _cutoff(), "q": _Q}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.reset()

    def reset(self):
        self.state = _filters.svf_state(self.out["out"].shape[0])

    def process(self, n, t):
        o = self.out
        _filters.svf_multi_kernel(self.inp["in"], o["out"], o["lp"], o["hp"], o["bp"], o["notch"], n,
                                  self.par["cutoff"], self.par["q"], self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        o = b.out
        _filters.svf_multi_batch(b.inp["in"], o["out"], o["lp"], o["hp"], o["bp"], o["notch"], n,
                                 b.par["cutoff"], b.par["q"], b.nodes[0].sr, b.state["state"])


@register("ladder")
class Ladder(Node):
    """Moog-style 4-pole (24 dB/octave) ladder lowpass with drive; self-oscillates at full resonance.

    A zero-delay-feedback model (Zavalishin, "The Art of VA Filter Design"):
    four trapezoidal one-poles, the output fed back through a tanh at the
    input, solved every sample, so cutoff and resonance can be swept at
    audio rate. From resonance 0.84 it sings on its own: a sine at the
    cutoff (within 0.1 %), about -15 dBFS; a tiny seeded noise (-140 dB)
    starts it without an input. The passband drops as resonance rises (by
    1 + 4.8 x resonance), as on the original.

    Example: ``acid: {type: ladder, in: saw, cutoff: {from: env, range: [200, 4000]}, resonance: 0.8, drive: 2}``
    """

    inputs = {"in": Input("signal to filter")}
    params = {
        "cutoff": _cutoff(1000.0, "cutoff (the pitch of self-oscillation); clamped below 0.49 x sample rate"),
        "resonance": Param(0.3, (0.0, 1.0), doc="feedback: 0 none, 0.84 and above self-oscillates"),
        "drive": Param(1.0, (0.1, 20.0), "x", "exp", doc="input gain into the tanh: 1 clean for quiet inputs, "
                                                        "higher saturates (give dB as '6dB')"),
    }
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.reset()

    def reset(self):
        self.state = _filters.ladder_state(self.out["out"].shape[0])

    def process(self, n, t):
        p = self.par
        _filters.ladder_kernel(self.inp["in"], self.out["out"], n, p["cutoff"], p["resonance"], p["drive"], self.sr,
                               self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        p = b.par
        _filters.ladder_batch(b.inp["in"], b.out["out"], n, p["cutoff"], p["resonance"], p["drive"],
                              b.nodes[0].sr, b.state["state"])


@register("onepole")
class OnePole(Node):
    """One-pole (6 dB/octave) lowpass or highpass, -3 dB at the cutoff: smoothing, tone, gentle EQ.

    Example: ``glide: {type: onepole, in: steps, cutoff: 8}``; ``{type: onepole, mode: highpass, in: x, cutoff: 300}``
    """

    inputs = {"in": Input("signal to filter")}
    params = {"cutoff": _cutoff(1000.0, "-3 dB frequency; clamped below 0.49 x sample rate", lo=1.0)}
    options = {"mode": Option("lowpass", choices=("lowpass", "highpass"), doc="lowpass, or highpass (input - lowpass)")}
    batch_state = ("state",)

    def batch_key(self):
        return (self.highpass,)

    @property
    def highpass(self) -> bool:
        return (self.opts.get("mode") or "lowpass") == "highpass"

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.hp = self.highpass
        self.reset()

    def reset(self):
        self.state = _filters.onepole_state(self.out["out"].shape[0])

    def process(self, n, t):
        _filters.onepole_kernel(self.inp["in"], self.out["out"], n, self.par["cutoff"], self.hp, self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        first = b.nodes[0]
        _filters.onepole_batch(b.inp["in"], b.out["out"], n, b.par["cutoff"], first.hp, first.sr, b.state["state"])


@register("dcblock")
class DCBlock(Node):
    """DC blocker: removes offset and sub-audio drift, flat above ~50 Hz.

    ``y = x - x[n-1] + R y[n-1]`` with ``R = exp(-2 pi cutoff / sr)`` (0.99869
    at the default 10 Hz and 48 kHz): a zero at DC, a pole just inside it,
    about -3 dB at the cutoff. Put it after asymmetric distortion or a
    feedback loop.

    Example: ``clean: {type: dcblock, in: fuzz}``
    """

    inputs = {"in": Input("signal")}
    params = {"cutoff": Param(10.0, (1.0, 200.0), "Hz", "exp", doc="corner (about -3 dB)")}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.reset()

    def reset(self):
        self.state = _filters.dcblock_state(self.out["out"].shape[0])

    def process(self, n, t):
        _filters.dcblock_kernel(self.inp["in"], self.out["out"], n, self.par["cutoff"], self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        _filters.dcblock_batch(b.inp["in"], b.out["out"], n, b.par["cutoff"], b.nodes[0].sr, b.state["state"])
