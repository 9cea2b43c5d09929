"""Effects and dynamics: waveshaper, bitcrush, chorus/flanger, reverb, compressor, limiter, width.

The per-sample maths lives in :mod:`nodes.dsp._effects` (numba kernels with
explicit state); these classes wire ports, params and options to them.
Nodes whose output lags their input say so in ``latency`` (samples): the
oversampled waveshaper and the lookahead limiter.
"""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _effects

TIME = dict(unit="s", curve="exp")
MIX = dict(range=(0.0, 1.0), doc="dry/wet balance: 0 dry only, 1 wet only")


def _mix(default):
    return Param(default, **MIX)


# ================================================================ waveshaper
class _Shaper(Node):
    inputs = {"in": Input("signal to shape")}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.shape = _effects.SHAPES.index(self.opts["shape"])
        self.stages = {1: 0, 2: 1, 4: 2, 8: 3}[int(self.opts["oversample"])]
        self.taps = _effects.halfband_taps()
        # one-pole DC blocker at about 5 Hz on the wet signal
        self.dc_r = float(np.exp(-2.0 * np.pi * 5.0 / self.sr)) if self.opts["dc_block"] else 0.0
        self.reset()

    def reset(self):
        self.state, self.latency, self.extra = _effects.ws_state(self.out["out"].shape[0], self.stages)

    def process(self, n, t):
        _effects.ws_kernel(self.inp["in"], self.out["out"], n, self.par["drive"], self.par["bias"],
                           self.par["mix"], self.par["level"], self.shape, self.stages, self.extra,
                           self.latency, self.dc_r, self.taps, self.state)


def _shaper_options(shape):
    return {
        "shape": Option(shape, choices=_effects.SHAPES,
                        doc="curve: tanh, soft (cubic), hard (clip), fold (sine folder), trifold "
                            "(triangle folder), asym (tube-like, even harmonics)"),
        "oversample": Option(4, kind=int, choices=(1, 2, 4, 8),
                             doc="oversampling factor (halfband FIR stages; latency 0/55/62/64 samples)"),
        "dc_block": Option(True, kind=bool, doc="remove the DC that bias and asym curves add (5 Hz highpass)"),
    }


@register("waveshaper")
class Waveshaper(_Shaper):
    """Oversampled waveshaper / distortion with several curves.

    ``out = level * ((1 - mix) * dry + mix * (f(drive * in + bias) - f(bias)))``
    computed at 1, 2, 4 or 8 times the sample rate (linear-phase halfband
    FIR stages, polyphase) so the harmonics the curve makes do not fold back
    as inharmonic aliasing: a 5 kHz sine driven +18 dB into tanh has its
    aliases below 20 kHz at -25 dB without oversampling and -119 dB with 4x.
    The dry path is delayed by the same ``latency`` (samples) so the mix
    never combs.

    Example: ``dist: {type: waveshaper, in: guitar, shape: tanh, drive: 18dB, level: -6dB, oversample: 4}``
    """

    params = {
        "drive": Param(6.0, (-24.0, 48.0), "dB", doc="gain into the curve"),
        "bias": Param(0.0, (-1.0, 1.0), doc="offset added before the curve (asymmetry, even harmonics)"),
        "mix": _mix(1.0),
        "level": Param(0.0, (-60.0, 12.0), "dB", doc="output level"),
    }
    options = _shaper_options("tanh")


@register("overdrive")
class Overdrive(_Shaper):
    """Tube-like overdrive: the waveshaper preset with the asymmetric curve and more drive.

    Same node as ``waveshaper`` (same params and options) with defaults for
    a warm, even-harmonic crunch: ``shape: asym``, ``drive: 18dB``,
    ``bias: 0.1``, ``level: -4dB``, 4x oversampling.

    Example: ``od: {type: overdrive, in: bass, drive: 24dB}``
    """

    params = {
        "drive": Param(18.0, (-24.0, 48.0), "dB", doc="gain into the curve"),
        "bias": Param(0.1, (-1.0, 1.0), doc="offset added before the curve (asymmetry, even harmonics)"),
        "mix": _mix(1.0),
        "level": Param(-4.0, (-60.0, 12.0), "dB", doc="output level"),
    }
    options = _shaper_options("asym")


# ================================================================ bitcrush
@register("bitcrush")
class Bitcrush(Node):
    """Bit and sample-rate reduction: sample-and-hold at a lower rate, then quantisation to fewer bits.

    ``bits`` is continuous (``2**(bits-1)`` steps per polarity), so it can be
    swept smoothly; ``rate`` at or above the sample rate holds nothing.

    Example: ``crush: {type: bitcrush, in: drums, bits: 6, rate: 8kHz, mix: 0.7}``
    """

    inputs = {"in": Input("signal to crush")}
    params = {
        "bits": Param(8.0, (1.0, 24.0), doc="resolution in bits (continuous)"),
        "rate": Param(12000.0, (20.0, 192000.0), "Hz", "exp", doc="sample-and-hold rate"),
        "mix": _mix(1.0),
    }

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.reset()

    def reset(self):
        self.state = np.zeros(1 + self.out["out"].shape[0])
        self.state[0] = 1.0  # the first sample is taken

    def process(self, n, t):
        _effects.crush_kernel(self.inp["in"], self.out["out"], n, self.par["bits"], self.par["rate"],
                              self.par["mix"], self.sr, self.state)


# ================================================================ chorus / flanger
class _ModDelay(Node):
    inputs = {"in": Input("signal")}
    max_time = 0.07
    chorus = False

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.voices = int(self.opts.get("voices") or 1)
        self.size = _effects.ring_size(self.max_time * self.sr)
        self.reset()

    def reset(self):
        self.buf = np.zeros((self.out["out"].shape[0], self.size))
        self.state = np.zeros(2)

    def process(self, n, t):
        p = self.par
        _effects.mod_delay_kernel(self.inp["in"], self.out["out"], n, p["rate"], p["depth"], p["delay"],
                                  p["feedback"], p["mix"], p["spread"], self.sr, self.voices, self.chorus,
                                  self.buf, self.state)


@register("chorus")
class Chorus(_ModDelay):
    """Stereo chorus: several voices of a modulated delay spread from left to right.

    Voice v reads ``delay + depth * (1 + sin(2 pi (rate t + spread * 2v/voices))) / 2``
    seconds back (cubic Hermite interpolation); the voices are panned
    evenly from hard left to hard right, so a mono input comes out wide and
    decorrelated. Always stereo out; a stereo input keeps its sides.

    Example: ``ch: {type: chorus, in: pad, voices: 3, rate: 0.6, depth: 4ms, mix: 0.5}``
    """

    inputs = {"in": Input("mono or stereo signal", channels=2)}
    outputs = {"out": Output("stereo signal", channels=2)}
    params = {
        "rate": Param(0.8, (0.01, 20.0), "Hz", "exp", doc="LFO rate"),
        "depth": Param(0.004, (0.0, 0.02), "s", doc="sweep of the delay time (e.g. 4ms)"),
        "delay": Param(0.012, (0.001, 0.05), "s", "exp", doc="shortest delay time (e.g. 12ms)"),
        "feedback": Param(0.0, (-0.9, 0.9), doc="share of the wet signal fed back"),
        "mix": _mix(0.5),
        "spread": Param(0.5, (0.0, 0.5), doc="LFO phase spread between the voices (0.5: evenly round the cycle)"),
    }
    options = {"voices": Option(3, kind=int, choices=(1, 2, 3, 4, 5, 6, 7, 8), doc="number of voices")}
    max_time = 0.075
    chorus = True

    def reset(self):
        self.buf = np.zeros((2, self.size))
        self.state = np.zeros(2)


@register("flanger")
class Flanger(_ModDelay):
    """Flanger: a short modulated delay with feedback mixed with the dry signal (moving comb).

    The delay sweeps between ``delay`` and ``delay + depth``; with ``mix``
    0.5 the comb notches (at odd multiples of 1 / (2 x delay) for positive
    feedback) go all the way down. With ``stereo: true`` a mono input gives
    two channels whose LFOs are ``spread`` cycles apart.

    Example: ``fl: {type: flanger, in: drums, rate: 0.2, depth: 3ms, feedback: 0.6}``
    """

    params = {
        "rate": Param(0.2, (0.01, 20.0), "Hz", "exp", doc="LFO rate"),
        "depth": Param(0.003, (0.0, 0.01), "s", doc="sweep of the delay time (e.g. 3ms)"),
        "delay": Param(0.001, (0.0001, 0.02), "s", "exp", doc="shortest delay time (e.g. 1ms; at least 1 sample)"),
        "feedback": Param(0.5, (-0.95, 0.95), doc="share of the delayed signal fed back (negative: hollow)"),
        "mix": _mix(0.5),
        "spread": Param(0.25, (0.0, 0.5), doc="LFO phase offset between channels, in cycles"),
    }
    options = {"stereo": Option(False, kind=bool, doc="two output channels even from a mono input")}
    max_time = 0.035

    def configure(self, in_channels):
        c = in_channels.get("in", 1)
        return {"out": 2 if self.opts.get("stereo") else c}


# ================================================================ reverb
@register("reverb")
class Reverb(Node):
    """Feedback delay network reverb (8 or 16 lines), stereo out, decay set in seconds.

    Each line has an absorption shelf that makes every mode decay by 60 dB
    in ``decay`` seconds below ``crossover`` and in ``decay * (1 - damping)``
    above (Jot's FDN with an orthonormal Hadamard or Householder feedback
    matrix), so the measured T60 is what was asked. ``size`` scales all line
    lengths (small room .. hall), ``mod`` slowly wobbles them to smear
    metallic modes. Left and right are different combinations of the lines
    (decorrelated). Stable at any setting.

    Example: ``verb: {type: reverb, in: plucks, decay: 2.5, damping: 0.5, size: 1.2, predelay: 20ms, mix: 0.3}``
    """

    inputs = {"in": Input("mono or stereo signal", channels=2)}
    outputs = {"out": Output("stereo signal", channels=2)}
    params = {
        "decay": Param(2.0, (0.1, 30.0), "s", "exp", rate="control", doc="T60 below the crossover (seconds to -60 dB)"),
        "damping": Param(0.5, (0.0, 0.95), rate="control",
                         doc="how much faster highs die: T60 above the crossover = decay x (1 - damping)"),
        "crossover": Param(3000.0, (200.0, 16000.0), "Hz", "exp", rate="control",
                           doc="frequency between the low and high decay times"),
        "size": Param(1.0, (0.25, 2.0), "", rate="control", smooth=0.1,
                      doc="room size: scales the delay lengths (1: 30..80 ms)"),
        "predelay": Param(0.02, (0.0, 0.5), "s", smooth=0.05, doc="delay before the reverb starts"),
        "mod": Param(0.3, (0.0, 1.0), doc="slow modulation of the lines (1: +-0.6 ms)"),
        "diffusion": Param(0.6, (0.0, 0.9), doc="gain of the input allpass diffusers: 0 discrete echoes, "
                           "0.6 a smooth onset"),
        "mix": _mix(0.3),
    }
    options = {
        "lines": Option(8, kind=int, choices=(8, 16), doc="delay lines (16: denser, twice the cost)"),
        "matrix": Option("hadamard", choices=("hadamard", "householder"), doc="feedback matrix"),
    }

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.N = int(self.opts["lines"])
        self.householder = self.opts["matrix"] == "householder"
        self.ms = _effects.fdn_lengths(self.N)
        longest = self.ms.max() * _effects.FDN_SIZE_MAX + 2 * _effects.FDN_MOD_DEPTH
        self.line_size = _effects.ring_size(longest * self.sr)
        self.pre_size = _effects.ring_size(0.5 * self.sr + 4)
        self.diff_size = _effects.ring_size(_effects.FDN_DIFF_MAX * self.sr)
        self.cin = max(1, min(2, int(ctx.in_channels.get("in", 1))))
        self.tmp = np.zeros(self.N)
        self.reset()

    def reset(self):
        self.state = _effects.fdn_state(self.N)
        self.buf = np.zeros(self.N * self.line_size + self.cin * (self.pre_size + 4 * self.diff_size))

    def process(self, n, t):
        p = self.par
        _effects.fdn_kernel(self.inp["in"], self.out["out"], n, p["decay"], p["damping"], p["crossover"],
                            p["size"], p["predelay"], p["mod"], p["diffusion"], p["mix"], self.sr, self.N,
                            self.householder, self.ms, self.buf, self.line_size, self.pre_size, self.diff_size,
                            self.state, self.tmp)


# ================================================================ dynamics
@register("compressor")
class Compressor(Node):
    """Feed-forward compressor with soft knee, stereo-linked, optional sidechain.

    Static curve (levels in dB): below ``threshold - knee/2`` unchanged,
    above ``threshold + knee/2`` it rises ``1/ratio`` dB per dB, with a
    quadratic knee between; then ``makeup``. The detector is the peak
    (largest ``|x|`` of all channels) or the RMS (``detector: rms``, over
    ``window`` seconds) of the input, or of ``sidechain`` when connected
    (ducking). The gain reduction follows with time constants ``attack``
    and ``release`` (smooth decoupled peak detector, in dB). The applied
    gain is also an output (``comp.gain``, linear).

    Example: ``comp: {type: compressor, in: drums, threshold: -18dB, ratio: 4, attack: 5ms, release: 120ms}``
    """

    inputs = {
        "in": Input("signal to compress"),
        "sidechain": Input("signal the detector listens to instead (e.g. a kick, to duck a pad)", optional=True),
    }
    outputs = {
        "out": Output("the compressed signal"),
        "gain": Output("applied gain, linear (1 = no reduction, times makeup)", channels=1, range=(0.0, 1.0)),
    }
    params = {
        "threshold": Param(-20.0, (-80.0, 0.0), "dB", doc="level where compression starts"),
        "ratio": Param(4.0, (1.0, 50.0), "", "exp", doc="dB in per dB out above the threshold (50: limiting)"),
        "knee": Param(6.0, (0.0, 24.0), "dB", doc="width of the soft knee"),
        "attack": Param(0.01, (0.0001, 1.0), doc="attack time constant", **TIME),
        "release": Param(0.15, (0.001, 5.0), doc="release time constant", **TIME),
        "makeup": Param(0.0, (-24.0, 36.0), "dB", doc="gain after compression"),
    }
    options = {
        "detector": Option("peak", choices=("peak", "rms"), doc="level detector"),
        "window": Option(0.01, kind=float, doc="RMS averaging time constant in seconds (detector: rms)"),
    }

    def configure(self, in_channels):
        self.has_sc = "sidechain" in in_channels
        return {"out": in_channels.get("in", 1), "gain": 1}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.rms = self.opts["detector"] == "rms"
        win = float(self.opts["window"])
        if not win > 0:
            raise PatchError(f"window must be a positive time in seconds, got {win}", Where(key="window"))
        self.rms_coef = float(np.exp(-1.0 / (win * self.sr)))
        self.reset()

    def reset(self):
        self.state = np.zeros(8)
        self.state[3] = self.state[5] = -1.0  # no cached coefficients

    def process(self, n, t):
        p = self.par
        sc = self.inp["sidechain"] if self.has_sc else self.inp["in"]
        _effects.comp_kernel(self.inp["in"], sc, self.out["out"], self.out["gain"], n, p["threshold"], p["ratio"],
                             p["knee"], p["attack"], p["release"], p["makeup"], self.rms, self.rms_coef, self.sr,
                             self.state)


@register("limiter")
class Limiter(Node):
    """Lookahead brickwall limiter: the output never exceeds ``ceiling`` (sample peak).

    The gain comes down over the ``lookahead`` before a peak arrives (so it
    never clips and never distorts fast), holds, and returns with
    ``release``; stereo-linked. Below the ceiling it is the input, delayed
    by ``latency`` = the lookahead in samples. ``true_peak: true`` also
    keeps the peaks between samples (estimated by 4x interpolation, as
    meters do) under the ceiling, for 8 samples more latency.

    Example: ``master: {type: limiter, in: mixbus, gain: 6dB, ceiling: -1dB, release: 80ms}``
    """

    inputs = {"in": Input("signal to limit")}
    params = {
        "ceiling": Param(-1.0, (-40.0, 0.0), "dB", doc="highest output peak"),
        "release": Param(0.1, (0.001, 5.0), doc="time constant of the gain's recovery", **TIME),
        "gain": Param(0.0, (-24.0, 36.0), "dB", doc="gain before limiting (drive into the ceiling)"),
    }
    options = {
        "lookahead": Option(5.0, kind=float, doc="lookahead in milliseconds, 0 to 100"),
        "true_peak": Option(False, kind=bool, doc="also hold the peaks between samples (4x interpolated) "
                            "under the ceiling; 8 samples more latency"),
    }

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        ms = float(self.opts["lookahead"])
        if not 0.0 <= ms <= 100.0:
            raise PatchError(f"lookahead must be 0 to 100 ms, got {ms}", Where(key="lookahead"))
        self.look = int(round(ms * 1e-3 * self.sr))
        self.tp = _effects.TP_K if self.opts["true_peak"] else 0
        self.taps = _effects.true_peak_taps()
        self.latency = self.look + self.tp
        self.reset()

    def reset(self):
        C = self.out["out"].shape[0]
        self.buf = np.zeros((C + 2, max(self.look + self.tp + 1, 2 * self.tp)))
        self.buf[C:] = 1.0
        self.state = np.array([0.0, 1.0, -1.0, 0.0, 0.0])

    def process(self, n, t):
        p = self.par
        _effects.limiter_kernel(self.inp["in"], self.out["out"], n, p["ceiling"], p["release"], p["gain"],
                                self.look, self.tp, self.taps, self.sr, self.buf, self.state)


# ================================================================ stereo
@register("width")
class Width(Node):
    """Stereo width by mid/side: 0 mono, 1 unchanged, 2 twice the side signal.

    Example: ``wide: {type: width, in: chorus, width: 1.5}``
    """

    inputs = {"in": Input("stereo signal (mono stays mono)", channels=2)}
    outputs = {"out": Output("stereo signal", channels=2)}
    params = {"width": Param(1.0, (0.0, 2.0), doc="side gain: 0 mono, 1 unchanged, 2 wider")}

    def process(self, n, t):
        _effects.width_kernel(self.inp["in"], self.out["out"], n, self.par["width"])
