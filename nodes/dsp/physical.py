"""Physical models after Smith's digital waveguides: string, waveguide, modal.

* ``string``: a plucked string, Karplus-Strong as extended by Jaffe & Smith
  (1983): exact fractional tuning, a decay time in seconds, brightness,
  pluck position, glide. Measured (tests/test_physical.py): the fundamental
  within 0.01 cent of ``freq`` from 40 Hz to 2 kHz at 44.1 and 48 kHz, its
  T60 within 0.1 % of ``decay``.
* ``waveguide``: a string or tube kept sounding by a nonlinear exciter: a
  bow (friction table), a reed (reed table) or a flute jet (cubic jet table).
* ``modal``: a bank of resonators (bells, bars, plates, glasses, marimbas).

The kernels are in ``_physical.py`` (numba); see its docstring for the maths.
"""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Option, Output, Param, register
from patchlib.node import stacked_rows

from . import _physical as K

TIME = dict(unit="s", curve="exp", rate="control")


@register("string")
class String(Node):
    """Plucked string: Karplus-Strong extended (Jaffe & Smith 1983), exactly tuned, decay in seconds.

    A ``trigger`` event plucks the string (value: velocity): one period of
    seeded noise, shaped by the pluck ``position`` (a comb: plucking at 1/n
    of the length silences every n-th harmonic) and a lowpass that opens
    with velocity and brightness, is fed into a delay-line loop. The loop's
    fractional delay (a first-order allpass) and loss filter (a one-pole
    lowpass) are solved together so that the fundamental is exactly
    ``freq`` and decays by 60 dB in ``decay`` seconds; ``brightness`` sets
    how much faster the upper partials die (a damping that grows with the
    square of frequency, as internal friction does). ``release`` damps the
    string (its T60 becomes the ``release`` time); the next trigger lets it
    ring again. A pluck while the string rings restarts the loop with the
    new burst alone while what rang fades out over one period
    (``retrigger: restart``: no click, and every note sounds the same
    whatever came before) or adds to it (``retrigger: add``).

    ``freq`` may move at audio rate; ``glide`` makes a change of ``freq``
    slide, linearly in pitch, over that many seconds. The ``exciter`` input,
    when connected, is fed into the loop at every sample (through the
    position comb): a driven string that resonates with what it is fed.
    With ``excite: input`` plucks inject no noise; the exciter is then the
    only source.

    Example: ``gtr: {type: string, freq: E2, decay: 3s, brightness: 0.4, position: 0.12}``
    (score: ``- {at: 0, trigger: gtr, velocity: 0.8}``)
    """

    inputs = {"exciter": Input("signal fed into the string at every sample (optional)", channels=1,
                               optional=True)}
    outputs = {"out": Output("the string's vibration", channels=1, range=(-1.0, 1.0))}
    params = {
        "freq": Param(220.0, (K.STRING_FMIN, 5000.0), "Hz", "exp", smooth=0.0,
                      doc="pitch of the fundamental (exact; at most a quarter of the sample rate)"),
        "decay": Param(2.0, (0.01, 60.0), doc="T60 of the fundamental: time to fall by 60 dB", **TIME),
        "brightness": Param(0.5, (0.0, 1.0), rate="control",
                            doc="0 dull (upper partials die fast) .. 1 all partials decay alike"),
        "position": Param(0.15, (0.0, 0.5), rate="control",
                          doc="pluck position along the string (0.5 middle; 0 no comb)"),
        "glide": Param(0.0, (0.0, 10.0), "s", "exp", smooth=0.0,
                       doc="portamento: seconds a change of freq takes (read when freq changes)"),
        "release": Param(0.1, (0.005, 10.0), doc="T60 after a release event (damping)", **TIME),
    }
    options = {
        "excite": Option("noise", choices=("noise", "input"), doc="what a trigger injects: a noise burst, "
                         "or nothing (the exciter input is the source)"),
        "retrigger": Option("restart", choices=("restart", "add"), doc="a pluck while ringing: fade out "
                            "what rings (clean restart) or add to it"),
        "seed": Option(None, kind=int, doc="noise seed (default: from the patch seed and node name)"),
    }
    events = {"trigger": "pluck (value: velocity 0..1; lets a released string ring again)",
              "release": "damp the string: it rings out with the release time"}
    batch_state = ("state", "buf")

    def configure(self, in_channels):
        self.exc_on = "exciter" in in_channels
        return super().configure(in_channels)

    def batch_key(self):
        return (self.opts.get("excite") or "noise", self.opts.get("retrigger") or "restart")

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        self._par = _param_block(self.par, K.STRING_PARAMS)
        self.reset()

    def reset(self):
        seed = self.opts.get("seed")
        self.state, self.buf = K.string_state(
            self.ctx.seed if seed is None else int(seed), self.sr, self.params["freq"].range[1],
            self.opts.get("retrigger", "restart") == "restart", self.opts.get("excite", "noise") == "noise",
            self.exc_on, self.ctx.control_period)

    def event(self, kind, value=1.0):
        st = self.state
        if kind == "trigger":
            st[K.S_PEND] = max(float(value), 0.0)
            st[K.S_GATE] = 1.0
            st[K.S_DIRTY] = 1.0
        elif kind == "release":
            st[K.S_GATE] = 0.0
            st[K.S_DIRTY] = 1.0
        else:
            super().event(kind, value)

    def process(self, n, t):
        K.string_kernel(self._y, n, t, self.inp["exciter"], self._par.get(n), self.state, self.buf)

    @classmethod
    def process_batch(cls, b, n, t):
        args = b.__dict__.get("_physical_args")
        if args is None:  # the batch's stacked views, found once
            args = b._physical_args = (b.out["out"], b.inp["exciter"],
                                       _param_block(b.par, K.STRING_PARAMS))
        y, exc, par = args
        K.string_batch(y, n, t, exc, par.get(n), b.state["state"], b.state["buf"])


class _ParamBlock:
    """The params of a node (or a batch) as one stacked array for a kernel call.

    The engine keeps a node's params as rows of one buffer (a batch's as
    ``(V, B)`` rows of one buffer): they are then handed over as a single
    view, which saves the call one argument per param. Otherwise they are
    copied into one scratch array each block.
    """

    def __init__(self, arrays):
        self.arrays = arrays
        self.view = stacked_rows(arrays)
        self.scratch = None if self.view is not None else np.zeros((len(arrays),) + arrays[0].shape, np.float32)

    def get(self, n):
        if self.view is not None:
            return self.view
        s = self.scratch
        for j, a in enumerate(self.arrays):
            s[j, ..., :n] = a[..., :n]
        return s


def _param_block(par, names):
    return _ParamBlock([par[p] for p in names])


# ------------------------------------------------------------------ modal
#: Mode sets: (ratios to ``freq``, T60 in seconds, gains). Sources:
#: * ``bar``: a free-free uniform bar (Euler-Bernoulli beam): (x_n / x_1)**2 for
#:   the roots x_n of cos x cosh x = 1 (Fletcher & Rossing, *The Physics of
#:   Musical Instruments*, 2nd ed., sec. 2.15): 1, 2.756, 5.404, 8.933, 13.34, 18.64.
#: * ``marimba``: a bar undercut to tune its overtones, 1 : 3.99 : 10.65 (the
#:   marimba preset of STK's ModalBar, Cook & Scavone; F&R sec. 19.2 gives ~1:4:10).
#: * ``vibraphone``: 1 : 2.01 : 3.9 : 14.37 (STK ModalBar's vibraphone preset).
#: * ``bell``: a tuned church bell's partials relative to its strike note (the
#:   prime): hum 0.5, prime 1, tierce 1.183, quint 1.506, nominal 2, then 2.514,
#:   2.662, 3.011, 4.166 (typical measured values, F&R ch. 21; the "ideal"
#:   tuning is 0.5, 1, 1.2, 1.5, 2).
#: * ``glass``: the inextensional modes of a thin ring or wine glass rim,
#:   n (n**2 - 1) / sqrt(n**2 + 1) for n = 2..6 (Rayleigh, *Theory of Sound* sec. 233;
#:   F&R sec. 2.11): 1, 2.828, 5.423, 8.771, 12.87.
#: * ``plate``: a clamped circular plate, (lambda_mn / lambda_01)**2 for the roots of
#:   J_n(x) I_n'(x) = I_n(x) J_n'(x) (F&R sec. 3.6): 1, 2.081, 3.414, 3.893, 4.995, 5.954.
#: * ``membrane``: an ideal circular membrane, j_mn / j_01 for the zeros of the Bessel
#:   functions J_m (F&R sec. 3.3): 1, 1.593, 2.136, 2.295, 2.653, 2.917, 3.156, 3.500.
#: The T60s and gains are voicings (higher modes shorter and softer), not measurements.
PRESETS = {
    "bar": ([1.0, 2.7565, 5.4039, 8.9330, 13.3443, 18.6379],
            [3.0, 1.6, 0.9, 0.6, 0.4, 0.3], [1.0, 0.5, 0.3, 0.2, 0.1, 0.07]),
    "marimba": ([1.0, 3.99, 10.65], [0.9, 0.35, 0.12], [1.0, 0.35, 0.2]),
    "vibraphone": ([1.0, 2.01, 3.9, 14.37], [5.0, 2.5, 2.5, 1.5], [1.0, 0.6, 0.6, 0.6]),
    "bell": ([0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011, 4.166],
             [8.0, 5.0, 4.0, 3.0, 3.5, 2.0, 1.8, 1.5, 1.0],
             [0.5, 0.8, 0.6, 0.3, 1.0, 0.35, 0.3, 0.25, 0.15]),
    "glass": ([1.0, 2.8284, 5.4233, 8.7706, 12.8663], [6.0, 3.0, 1.5, 0.8, 0.5], [1.0, 0.4, 0.2, 0.1, 0.05]),
    "plate": ([1.0, 2.0811, 3.4140, 3.8931, 4.9952, 5.9544],
              [3.0, 2.0, 1.5, 1.4, 1.0, 0.8], [1.0, 0.6, 0.5, 0.5, 0.3, 0.3]),
    "membrane": ([1.0, 1.59334, 2.13555, 2.29542, 2.65307, 2.91730, 3.15547, 3.50015],
                 [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3], [1.0, 0.8, 0.6, 0.5, 0.4, 0.35, 0.3, 0.25]),
}
#: a preset's gains are scaled to sum to this (a strike at velocity 1 stays below full scale)
PRESET_LEVEL = 0.9
MAX_MODES = 64


def _number_list(name, values, unit, absolute_ok=False):
    """Parse a list option: numbers, or strings with units (Hz strings -> negative = fixed Hz)."""
    from patchlib import PatchError
    from patchlib.units import UnitError, parse_value

    if not isinstance(values, (list, tuple)) or not values:
        raise PatchError(f"{name} must be a non-empty list", hint=f"e.g. {name}: [1, 2.756, 5.404]")
    out = []
    for v in values:
        try:
            if absolute_ok and isinstance(v, str):
                out.append(-parse_value(v, "Hz"))  # a fixed frequency, not a ratio
            elif isinstance(v, str):
                out.append(parse_value(v, unit))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
            else:
                raise UnitError(f"{v!r} is not a number")
        except (UnitError, ValueError) as e:
            raise PatchError(f"{name}: {e}") from None
    return out


@register("modal")
class Modal(Node):
    """Modal resonator bank (bells, bars, plates, glasses, marimbas), struck or fed a signal.

    Each mode is a complex one-pole resonator (a rotating phasor whose
    radius sets its decay): its frequency and T60 are exact, and ``freq``
    may move at audio rate without instability. A ``trigger`` event strikes
    every mode (value: velocity) through a mallet whose ``hardness`` sets how
    much of the upper modes it excites; the ``in`` input drives every mode
    too, each mode then acting as a resonant bandpass with peak gain equal to
    its gain. ``preset`` picks a set of modes (see ``PRESETS`` in
    ``nodes/dsp/physical.py`` for the ratios and their sources: an ideal bar
    1, 2.756, 5.404, 8.933...; a church bell's hum, prime, tierce, quint,
    nominal 0.5, 1, 1.183, 1.506, 2...), or give your own ``freqs`` (numbers
    are ratios to ``freq``; values with a unit such as ``2443Hz`` or ``A6``
    stay fixed), ``decays`` (T60 in seconds, scaled by the ``decay`` param)
    and ``gains`` (one value, or one per mode). ``brightness`` below 1 rolls
    off the modes above ``freq`` by up to 12 dB per octave.

    Example: ``bell: {type: modal, preset: bell, freq: C5, decay: 1.5, hardness: 0.8}``
    (score: ``- {at: 0, trigger: bell, velocity: 0.9}``)
    """

    inputs = {"in": Input("signal that drives every mode (optional)", channels=1, optional=True)}
    outputs = {"out": Output("the sum of the modes", channels=1, range=(-1.0, 1.0))}
    params = {
        "freq": Param(440.0, (20.0, 12000.0), "Hz", "exp", smooth=0.0, doc="base frequency: mode k rings at "
                      "ratio_k x freq (modes past 0.48 x the sample rate are muted)"),
        "decay": Param(1.0, (0.01, 100.0), "", "exp", rate="control", doc="scale of every mode's T60"),
        "brightness": Param(1.0, (0.0, 1.0), rate="control", doc="1 the gains as given .. 0 modes above freq "
                            "rolled off by 12 dB per octave"),
        "hardness": Param(0.6, (0.0, 1.0), rate="control", doc="mallet hardness: the strike's lowpass, "
                          "250 Hz (0) .. 32 kHz (1)"),
    }
    options = {
        "preset": Option("bell", choices=tuple(PRESETS), doc="set of modes (ratios, T60s, gains)"),
        "freqs": Option(None, kind=list, doc="mode frequencies: ratios to freq, or fixed ('2443Hz', 'A6')"),
        "decays": Option(None, kind=list, doc="T60 of each mode in seconds (one value or one per mode)"),
        "gains": Option(None, kind=list, doc="gain of each mode (one value or one per mode)"),
    }
    events = {"trigger": "strike every mode (value: velocity)"}
    batch_state = ("state",)

    def configure(self, in_channels):
        from patchlib import PatchError

        self.in_on = "in" in in_channels
        ratios, t60s, gains = PRESETS[self.opts.get("preset") or "bell"]
        custom = self.opts.get("freqs") is not None
        if custom:
            ratios = _number_list("freqs", self.opts["freqs"], "", absolute_ok=True)
        K = len(ratios)
        if K > MAX_MODES:
            raise PatchError(f"freqs: at most {MAX_MODES} modes ({K} given)")
        if any(r == 0.0 for r in ratios):
            raise PatchError("freqs: a mode frequency cannot be 0")
        lists = {}
        for name, unit, dflt, preset_vals in (("decays", "s", 1.0, t60s), ("gains", "x", None, gains)):
            given = self.opts.get(name)
            if given is None:
                vals = list(preset_vals) if not custom else [dflt if dflt is not None else 1.0 / K] * K
            else:
                vals = _number_list(name, given, unit)
                if len(vals) == 1:
                    vals = vals * K
                if len(vals) != K:
                    raise PatchError(f"{name}: {len(vals)} values for {K} modes",
                                     hint=f"give one value, or one per mode in freqs")
            lists[name] = vals
        if any(not v > 0.0 for v in lists["decays"]):
            raise PatchError("decays: every T60 must be > 0 s")
        gains = lists["gains"]
        if not custom and self.opts.get("gains") is None:
            total = sum(abs(g) for g in gains)
            gains = [PRESET_LEVEL * g / total for g in gains]
        self._modes = (ratios, lists["decays"], gains)
        return super().configure(in_channels)

    def batch_key(self):
        return (len(self._modes[0]),)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        self._par = _param_block(self.par, K.MODAL_PARAMS)
        self.reset()

    def reset(self):
        self.state = K.modal_state(*self._modes, self.sr, self.in_on, self.ctx.control_period)

    def event(self, kind, value=1.0):
        if kind == "trigger":
            self.state[K.M_PEND] = max(float(value), 0.0) + max(self.state[K.M_PEND], 0.0)
        else:
            super().event(kind, value)

    def process(self, n, t):
        K.modal_kernel(self._y, n, t, self.inp["in"], self._par.get(n), self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        args = b.__dict__.get("_physical_args")
        if args is None:
            args = b._physical_args = (b.out["out"], b.inp["in"],
                                       _param_block(b.par, K.MODAL_PARAMS))
        y, x, par = args
        K.modal_batch(y, n, t, x, par.get(n), b.state["state"])


# ------------------------------------------------------------------ waveguide
@register("waveguide")
class Waveguide(Node):
    """Bowed string or blown tube: a tuned waveguide loop kept sounding by a nonlinear exciter.

    ``model: bow`` is a bowed string (Smith's bowed-string waveguide, as in
    STK's Bowed): the bow at ``bow`` (fraction of the length from the bridge)
    drives the string through a friction curve whose steepness follows
    ``force``, at a bow velocity set by ``speed``. ``model: reed`` is a
    clarinet-like tube (closed at the reed, odd harmonics): the mouthpiece
    reflects through a reed table (stiffness ``reed``) at mouth pressure
    ``breath``. ``model: flute`` is an open pipe driven by an air jet: the
    pipe's pressure, delayed along the jet (``jet``, in periods: 1 in tune,
    0.5 overblows to the octave), through a saturating jet curve, times
    ``breath``; ``noise`` adds breath turbulence (reed and flute).

    A ``trigger`` event starts the excitation (bow on the string, breath in;
    value: velocity, which scales bow speed or pressure), a ``release`` stops
    it (each over 20 ms); the string or tube then rings down at its pitch with
    T60 ``decay``. The ``exciter`` input, when connected, is added to the bow
    velocity or the mouth pressure (not gated by the events): noise, a
    breath signal, any sound. The loop is tuned exactly (as ``string``); the
    sustained pitch measures within a few cents of ``freq`` (tests/test_physical.py).
    Below 44 kHz the loop runs oversampled (``oversample: auto``: 3x at
    16 kHz, 2x at 22.05 and 32 kHz) and is decimated through an elliptic
    lowpass: a self-oscillating loop of a few tens of samples otherwise
    plays out of tune (the bow at 16 kHz by up to 17 cents above MIDI 70).

    Example: ``cello: {type: waveguide, model: bow, freq: C3, force: 0.5, speed: 0.6, bow: 0.12}``
    (score: ``- {at: 0, trigger: cello}`` and ``- {at: 2, release: cello}``)
    """

    inputs = {"exciter": Input("added to the bow velocity or the mouth pressure (optional)", channels=1,
                               optional=True)}
    outputs = {"out": Output("the bridge (bow) or the bore pressure (reed, flute)", channels=1,
                             range=(-1.0, 1.0))}
    params = {
        "freq": Param(220.0, (K.STRING_FMIN, 4000.0), "Hz", "exp", smooth=0.0,
                      doc="pitch (at most an eighth of the sample rate)"),
        "decay": Param(1.5, (0.05, 30.0), doc="T60 of the free string or tube after a release (default: bow "
                       "1.5 s, reed 1 s, flute 0.3 s)", **TIME),
        "brightness": Param(0.5, (0.0, 1.0), rate="control", doc="0 dull .. 1 bright: frequency-dependent loss"),
        "force": Param(0.5, (0.0, 1.0), rate="control", doc="bow: bow pressure (steepness of the friction)"),
        "speed": Param(0.5, (0.0, 1.0), rate="control", doc="bow: bow velocity"),
        "bow": Param(0.12, (0.02, 0.5), rate="control", doc="bow: bow position, fraction of the length from "
                     "the bridge"),
        "breath": Param(0.6, (0.0, 1.0), rate="control", doc="reed, flute: mouth pressure (default: reed 0.8, "
                        "flute 0.6)"),
        "reed": Param(0.5, (0.0, 1.0), rate="control", doc="reed: stiffness (slope of the reed table)"),
        "jet": Param(0.5, (0.1, 1.0), rate="control", doc="flute: jet delay in periods (0.5 in tune, 0.25 "
                     "overblows an octave)"),
        "noise": Param(0.1, (0.0, 1.0), rate="control", doc="reed, flute: breath noise"),
    }
    options = {
        "model": Option("bow", choices=K.WG_MODELS, doc="bow (bowed string), reed (clarinet), flute (jet)"),
        "seed": Option(None, kind=int, doc="breath-noise seed (default: from the patch seed and node name)"),
        "oversample": Option("auto", choices=("auto",) + tuple(range(1, K.WG_OS_MAX + 1)), kind=None, doc="run the loop at this multiple of the sample rate (1..8), then "
                             "lowpass and decimate; auto: the smallest factor reaching 44 kHz (3 at 16 kHz, "
                             "1 at 44.1 and 48 kHz). At 16 kHz without it the bowed string plays up to ~20 cents "
                             "out of tune above MIDI 70"),
    }
    events = {"trigger": "start the bow or the breath (value: velocity)", "release": "stop it: the sound rings out"}
    batch_state = ("state", "buf")

    @classmethod
    def ports(cls, opts):
        if (opts.get("model") or "bow") == "bow":
            return cls.inputs, cls.outputs, cls.params
        # a tube: a flute's bore rings for a fraction of a second; a reed needs a
        # livelier bore (and more breath) for its low notes to speak
        reed = opts.get("model") == "reed"
        params = dict(cls.params)
        params["decay"] = Param(1.0 if reed else 0.3, (0.05, 30.0), doc=cls.params["decay"].doc, **TIME)
        params["breath"] = Param(0.8 if reed else 0.6, (0.0, 1.0), rate="control", doc=cls.params["breath"].doc)
        return cls.inputs, cls.outputs, params

    def configure(self, in_channels):
        self.exc_on = "exciter" in in_channels
        return super().configure(in_channels)

    def batch_key(self):
        return (self.opts.get("model") or "bow", self.opts.get("oversample", "auto"))

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        self._par = _param_block(self.par, K.WG_PARAMS)
        self.reset()

    def reset(self):
        seed = self.opts.get("seed")
        self.state, self.buf = K.wg_state(self.opts.get("model") or "bow",
                                          self.ctx.seed if seed is None else int(seed), self.sr,
                                          self.params["freq"].range[1], self.exc_on, self.ctx.control_period,
                                          self.opts.get("oversample", "auto"))

    def event(self, kind, value=1.0):
        if kind == "trigger":
            self.state[K.W_ENVT] = 1.0
            self.state[K.W_VEL] = max(float(value), 0.0)
        elif kind == "release":
            self.state[K.W_ENVT] = 0.0
        else:
            super().event(kind, value)

    def process(self, n, t):
        K.wg_kernel(self._y, n, t, self.inp["exciter"], self._par.get(n), self.state, self.buf)

    @classmethod
    def process_batch(cls, b, n, t):
        args = b.__dict__.get("_physical_args")
        if args is None:
            args = b._physical_args = (b.out["out"], b.inp["exciter"],
                                       _param_block(b.par, K.WG_PARAMS))
        y, exc, par = args
        K.wg_batch(y, n, t, exc, par.get(n), b.state["state"], b.state["buf"])
