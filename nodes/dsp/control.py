"""Control nodes: ramp, sample_hold, slew, quantize, clock, sequencer, conversions, math."""
from __future__ import annotations

import math as _math

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register
from patchlib.units import UNITS, UnitError, note_to_midi, parse_value

from . import _control as K
from . import expr as _expr

TIME = dict(unit="s", curve="exp", rate="control", smooth=0.0)
WIDE = (-1e6, 1e6)


def _line(body, key):
    line_of = getattr(body, "line_of", None)
    return line_of(key) if line_of else None


def _fail(body, key, message, hint=None):
    raise PatchError(message, Where(line=_line(body, key), key=key), hint=hint)


# ---------------------------------------------------------------- ramp
@register("ramp")
class Ramp(Node):
    """A one-shot ramp: on each trigger, from ``start`` to ``end`` over ``time``, then holds.

    Triggered by a ``trigger`` event or a rising edge of the ``trig`` input;
    the trigger's sample outputs ``start`` and ``time * sr`` samples later the
    output is exactly ``end``. ``curve: exp`` moves in equal ratios (right
    for a pitch sweep: both ends must have the same sign, else it is
    straight). Before the first trigger it outputs ``start``. With ``unit:
    Hz`` the ends can be written as notes (``start: C6``).

    Example: ``sweep: {type: ramp, unit: Hz, start: 2kHz, end: 50, time: 80ms, curve: exp}``
    """

    inputs = {"trig": Input("rising edges (> 0.5) restart the ramp", channels=1, optional=True)}
    outputs = {"out": Output("the ramp", channels=1, range=(0.0, 1.0))}
    options = {
        "curve": Option("lin", choices=("lin", "exp"), doc="lin: straight; exp: equal ratios (pitch sweeps)"),
        "unit": Option("", choices=tuple(UNITS), doc="unit of start and end, so they can be written "
                       "as 'A2', '250ms' or '-6dB' (Hz, s, dB, x, st)"),
    }
    events = {"trigger": "restart the ramp from start"}

    @classmethod
    def ports(cls, opts):
        unit = opts.get("unit") or ""
        params = {
            "start": Param(0.0, WIDE, unit, doc="value at the trigger", smooth=0.0),
            "end": Param(1.0, WIDE, unit, doc="value reached after time, then held", smooth=0.0),
            "time": Param(0.5, (0.0, 60.0), doc="time from start to end", **TIME),
        }
        return cls.inputs, cls.outputs, params

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._exp = self.opts.get("curve") == "exp"
        self.reset()

    def reset(self):
        self.state = np.zeros(K.RAMP_STATE_SIZE, dtype=np.float64)

    def event(self, kind, value=1.0):
        if kind != "trigger":
            super().event(kind, value)
        self.state[3] = 1.0

    def process(self, n, t):
        p = self.par
        K.ramp_kernel(self.out["out"][0], n, self.inp["trig"][0], p["start"], p["end"], p["time"], self.sr,
                      self._exp, self.state)


# ---------------------------------------------------------------- sample & hold
@register("sample_hold")
class SampleHold(Node):
    """Sample and hold: takes the input's value on each rising edge of ``trig`` and holds it.

    Without a ``trig`` input it samples ``rate`` times a second (the k-th
    sample taken on sample ``round(k * sr / rate)``). Noise in, a stepped
    random voltage out: quantize it for a random melody.

    Example: ``rnd: {type: sample_hold, in: noise, trig: clk.trig}``
    """

    inputs = {
        "in": Input("signal to sample"),
        "trig": Input("rising edges (> 0.5) take a sample", channels=1, optional=True),
    }
    outputs = {"out": Output("the held value", range=(-1.0, 1.0))}
    params = {"rate": Param(8.0, (0.01, 2000.0), "Hz", "exp", doc="samples per second when trig is not connected")}

    def configure(self, in_channels):
        self._use_trig = "trig" in in_channels
        return {"out": in_channels.get("in", 1)}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._channels = ctx.out_channels["out"]
        self.reset()

    def reset(self):
        self.state = np.zeros(3 + self._channels, dtype=np.float64)
        self.state[0] = 1.0  # fresh: the first sample takes a value at once (rate mode)

    def process(self, n, t):
        K.sh_kernel(self.out["out"], n, self.inp["in"], self.inp["trig"], self._use_trig, self.par["rate"],
                    self.sr, self.state)


# ---------------------------------------------------------------- slew
@register("slew")
class Slew(Node):
    """Slew limiter / lag: the output follows the input no faster than ``rise`` and ``fall`` allow.

    ``mode: lin`` (a slew limiter) moves at most a full 0..1 swing per
    ``rise`` seconds upward and per ``fall`` seconds downward; ``mode: exp``
    (a one-pole lag, portamento) covers all but -60 dB (0.1 %) of a step in
    ``rise`` (or ``fall``) seconds. The output starts at the input's first
    value (no glide up from 0).

    Example: ``glide: {type: slew, in: seq.pitch, mode: exp, rise: 60ms, fall: 60ms}``
    """

    inputs = {"in": Input("signal to smooth")}
    outputs = {"out": Output("the slewed signal", range=(-1.0, 1.0))}
    params = {
        "rise": Param(0.05, (0.0, 60.0), doc="time for upward moves (lin: per unit; exp: to -60 dB)", **TIME),
        "fall": Param(0.05, (0.0, 60.0), doc="time for downward moves (lin: per unit; exp: to -60 dB)", **TIME),
    }
    options = {"mode": Option("lin", choices=("lin", "exp"), doc="lin: constant rate; exp: one-pole lag")}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._channels = ctx.out_channels["out"]
        self._exp = self.opts.get("mode") == "exp"
        self.reset()

    def reset(self):
        self.state = np.zeros(1 + self._channels, dtype=np.float64)

    def process(self, n, t):
        K.slew_kernel(self.out["out"], n, self.inp["in"], self.par["rise"], self.par["fall"], self.sr, self._exp,
                      self.state)


# ---------------------------------------------------------------- quantize
SCALES = {
    "chromatic": (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic_minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "whole_tone": (0, 2, 4, 6, 8, 10),
}
QUANT_UNITS = {"hz": K.UNIT_HZ, "semitones": K.UNIT_SEMITONES, "midi": K.UNIT_MIDI}
QUANT_RANGES = {"hz": (20.0, 20000.0), "semitones": (-24.0, 24.0), "midi": (0.0, 127.0)}


def scale_degrees(scale) -> np.ndarray:
    """Sorted pitch classes in [0, 12) of a scale name or a list of semitones (ValueError if invalid)."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown scale '{scale}'")
        steps = SCALES[scale]
    elif isinstance(scale, (list, tuple)) and scale:
        steps = []
        for s in scale:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not _math.isfinite(s):
                raise ValueError(f"a custom scale is a list of semitones (numbers), got {s!r}")
            steps.append(float(s))
    else:
        raise ValueError(f"a scale is a name or a non-empty list of semitones, got {scale!r}")
    return np.array(sorted({round(float(s) % 12.0, 9) % 12.0 for s in steps}), dtype=np.float64)


def root_class(root) -> float:
    """Pitch class (C = 0 ... B = 11) of a root like 'C', 'D#', 'Eb' or 'A3' (ValueError if invalid)."""
    if isinstance(root, (int, float)) and not isinstance(root, bool):
        return float(root) % 12.0
    if isinstance(root, str):
        text = root.strip()
        m = note_to_midi(text) if text[-1:].isdigit() else note_to_midi(text + "4")
        if m is not None:
            return m % 12.0
    raise ValueError(f"cannot read root {root!r}: expected a note name like C, F#, Eb (or a number 0..11)")


@register("quantize")
class Quantize(Node):
    """Snaps a pitch to the nearest note of a scale (chromatic, major, minor, blues, ... or your own).

    The input is a pitch in Hz (``unit: hz``), MIDI note numbers (``midi``)
    or semitones above the root (``semitones``); the output is the nearest
    scale note in the same unit. ``scale`` is a name (chromatic, major,
    minor, harmonic_minor, melodic_minor, dorian, phrygian, lydian,
    mixolydian, locrian, pentatonic, minor_pentatonic, blues, whole_tone)
    or a list of semitones above the root (``[0, 3, 7]``); ``root`` a note
    name (``D#``). A halfway input goes to the lower note.

    Example: ``q: {type: quantize, in: pitch, scale: minor_pentatonic, root: A}``
    """

    inputs = {"in": Input("pitch to quantize")}
    outputs = {"out": Output("the quantized pitch (same unit)", range=QUANT_RANGES["hz"])}
    options = {
        "unit": Option("hz", choices=tuple(QUANT_UNITS), doc="hz, midi (69 = A4) or semitones above the root"),
        "scale": Option("chromatic", kind=None, doc="scale name or a list of semitones above the root"),
        "root": Option("C", kind=None, doc="root note: C, C#, Db, ... B"),
        "a4": Option(440.0, kind=float, doc="tuning: Hz of A4 (hz unit)"),
    }

    @classmethod
    def expand(cls, body):
        try:
            scale_degrees(body.get("scale", "chromatic"))
        except ValueError as e:
            _fail(body, "scale", str(e), hint="scales: " + ", ".join(SCALES) + ", or a list like [0, 3, 7]")
        try:
            root_class(body.get("root", "C"))
        except ValueError as e:
            _fail(body, "root", str(e))
        a4 = body.get("a4", 440.0)
        if isinstance(a4, (int, float)) and not isinstance(a4, bool) and not 100.0 <= a4 <= 1000.0:
            _fail(body, "a4", f"a4 = {a4} Hz is out of range [100, 1000]")
        return body

    @classmethod
    def ports(cls, opts):
        rng = QUANT_RANGES.get(opts.get("unit") or "hz", QUANT_RANGES["hz"])
        return cls.inputs, {"out": Output("the quantized pitch (same unit)", range=rng)}, cls.params

    def prepare(self, ctx):
        super().prepare(ctx)
        self._degrees = scale_degrees(self.opts.get("scale") or "chromatic")
        self._root = root_class(self.opts.get("root") or "C")
        self._unit = QUANT_UNITS[self.opts.get("unit") or "hz"]
        self._a4 = float(self.opts.get("a4") or 440.0)

    def process(self, n, t):
        K.quantize_kernel(self.out["out"], n, self.inp["in"], self._unit, self._degrees, self._root, self._a4)


# ---------------------------------------------------------------- clock
def _positive_number(body, key, default, lo, hi):
    v = body.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        _fail(body, key, f"{key} must be a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


@register("clock")
class Clock(Node):
    """Tempo clock: ``division`` ticks per beat at ``bpm``, with swing; trigger pulses and a gate.

    Tick ``k`` lands on sample ``round(k * 60 / bpm / division * sr)`` at a
    constant tempo (tick 0 on sample 0), sample-exact however the piece is
    cut into blocks; the tempo can be modulated. ``swing`` delays every
    second tick by that fraction of a tick (1/3: a triplet shuffle). ``trig``
    is a one-sample pulse (1.0) on each tick; ``gate`` (also plain ``clk``)
    is high for the first ``duty`` of each tick's interval (drives an adsr's
    gate; its rising edges are the ticks). A ``trigger``
    event restarts the clock: a tick on that sample.

    Example: ``clk: {type: clock, bpm: 124, division: 4, swing: 0.2}`` then ``gate: clk.gate``
    """

    outputs = {
        "trig": Output("one-sample pulse (1.0) on each tick", channels=1, range=(0.0, 1.0)),
        "gate": Output("1.0 for the first 'duty' of each tick, else 0", channels=1, range=(0.0, 1.0)),
        "out": Output("the gate again, so that plain 'clk' means 'clk.gate'", channels=1, range=(0.0, 1.0)),
    }
    params = {
        "bpm": Param(120.0, (1.0, 1000.0), "", "exp", doc="tempo in beats per minute"),
        "swing": Param(0.0, (0.0, 0.75), doc="delay of every second tick, as a fraction of a tick (1/3: shuffle)"),
        "duty": Param(0.5, (0.0, 1.0), doc="fraction of each tick the gate is high"),
    }
    options = {"division": Option(4.0, kind=float, doc="ticks per beat (4: sixteenth notes, 1: quarter notes)")}
    events = {"trigger": "restart: a tick now"}

    @classmethod
    def expand(cls, body):
        _positive_number(body, "division", 4.0, 1e-3, 192.0)
        return body

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._div = float(self.opts.get("division") or 4.0)
        self.reset()

    def reset(self):
        self.state = np.zeros(K.CLOCK_STATE_SIZE, dtype=np.float64)
        self.state[0] = 1.0

    def event(self, kind, value=1.0):
        if kind != "trigger":
            super().event(kind, value)
        self.state[0] = 1.0

    def process(self, n, t):
        p = self.par
        g = self.out["gate"]
        K.clock_kernel(self.out["trig"][0], g[0], n, p["bpm"], p["swing"], p["duty"], self._div, self.sr, self.state)
        self.out["out"][:, :n] = g[:, :n]


# ---------------------------------------------------------------- sequencer
REST = ("-", "~", "_", "r", "rest", ".")


def parse_steps(body):
    """``(pitches Hz with NaN rests, gates, durations in beats)`` of a sequencer body, validated."""
    pitches = body.get("pitches")
    if not isinstance(pitches, list) or not pitches:
        _fail(body, "pitches", "pitches must be a non-empty list like [C4, E4, -, G4, 220]",
              hint="note names, numbers in Hz, and '-' (or null) for a rest")
    if len(pitches) > 4096:
        _fail(body, "pitches", f"at most 4096 steps, got {len(pitches)}")
    hz = []
    for k, p in enumerate(pitches):
        if p is None or (isinstance(p, str) and p.strip().lower() in REST):
            hz.append(np.nan)
            continue
        try:
            f = parse_value(p, "Hz")
        except UnitError as e:
            _fail(body, "pitches", f"step {k + 1}: {e}", hint="a rest is '-' or null")
        if not 0.0 < f <= 24000.0:
            _fail(body, "pitches", f"step {k + 1}: {f:g} Hz is out of range (0, 24000]")
        hz.append(f)
    N = len(hz)

    def per_step(key, default, lo, hi, what):
        v = body.get(key, default)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v] * N
        if not isinstance(v, list) or not v:
            _fail(body, key, f"{key} must be a number or a list of {what}")
        vals = []
        for k, x in enumerate(v):
            if isinstance(x, bool):
                x = 1.0 if x else 0.0
            if not isinstance(x, (int, float)) or not lo <= x <= hi:
                _fail(body, key, f"{key}: step {k + 1} must be a number from {lo:g} to {hi:g}, got {x!r}")
            vals.append(float(x))
        # a shorter list repeats (gates: [1, 0.5] alternates)
        return np.array([vals[k % len(vals)] for k in range(N)], dtype=np.float64)

    division = _positive_number(body, "division", 4.0, 1e-3, 192.0)
    gates = per_step("gates", 0.5, 0.0, 1.0, "gate lengths (0..1 of the step; 1 ties into the next)")
    durs = per_step("durations", 1.0 / division, 1e-3, 1e4, "step lengths in beats")
    return np.array(hz, dtype=np.float64), gates, durs


@register("sequencer")
class Sequencer(Node):
    """Step sequencer: pitches (notes, Hz or rests), gate lengths and step durations, at a tempo or a clock.

    ``pitches`` is a list of note names (``C4``), numbers in Hz, or rests
    (``-`` or null); ``gates`` the part of each step the gate is high (0..1;
    1 ties into the next step, no retrigger); ``durations`` each step's
    length in beats (default ``1 / division``: sixteenths). Shorter lists
    repeat. Step ``j`` starts on sample ``round(beat_j * 60 / bpm * sr)``
    (step 0 on sample 0). With a ``clock`` input connected, its rising edges
    drive the sequence instead: the first edge starts step 0, and a step
    lasts ``durations * division`` ticks. ``loop: false`` plays once. The
    ``pitch`` output holds through rests (release tails keep their note);
    ``gate`` drives an adsr; ``trig`` pulses at each sounding step; ``step``
    is the current step's index; plain ``seq`` is ``seq.pitch``. A
    ``trigger`` event restarts at step 0.

    Example: ``seq: {type: sequencer, bpm: 128, pitches: [A2, A2, C3, -, E3, G2], gates: [0.5, 0.25, 1, 0, 0.5, 0.5]}``
    """

    inputs = {"clock": Input("rising edges (> 0.5) are clock ticks (instead of bpm)", channels=1, optional=True)}
    params = {
        "bpm": Param(120.0, (1.0, 1000.0), "", "exp", doc="tempo in beats per minute (without a clock)"),
        "transpose": Param(0.0, (-48.0, 48.0), "st", doc="transposition of every pitch, in semitones"),
    }
    options = {
        "pitches": Option(None, kind=list, required=True, doc="notes (C4), Hz, or rests ('-' or null)"),
        "gates": Option(0.5, kind=None, doc="gate length per step, 0..1 of the step (a number or a list)"),
        "durations": Option(None, kind=None, doc="step lengths in beats (a number or a list; default 1/division)"),
        "division": Option(4.0, kind=float, doc="steps per beat when durations are not given; clock ticks per beat"),
        "loop": Option(True, kind=bool, doc="start over after the last step (false: play once)"),
    }
    events = {"trigger": "restart from the first step"}
    contract_settings = {"pitches": ["C4", "E4", "-", "G4", 220.0], "gates": [0.5, 1.0, 0.5, 0.25, 0.0],
                         "clock": "clock"}

    @classmethod
    def expand(cls, body):
        parse_steps(body)
        return body

    @classmethod
    def _steps(cls, opts):
        body = {k: v for k, v in opts.items() if v is not None}
        return parse_steps(body)

    @classmethod
    def ports(cls, opts):
        try:
            hz, _, _ = cls._steps(opts)
            notes = hz[np.isfinite(hz)]
            prange = (float(notes.min()), float(notes.max())) if notes.size else (20.0, 20000.0)
            if prange[0] == prange[1]:
                prange = (prange[0] / 2.0, prange[0] * 2.0)
            count = hz.size
        except PatchError:
            prange, count = (20.0, 20000.0), 1
        outputs = {
            "pitch": Output("pitch of the current (or last sounding) step, Hz", channels=1, range=prange),
            "gate": Output("1.0 while the step's gate is on", channels=1, range=(0.0, 1.0)),
            "trig": Output("one-sample pulse at the start of each sounding step", channels=1, range=(0.0, 1.0)),
            "step": Output("index of the current step (0 = first)", channels=1, range=(0.0, max(1.0, count - 1.0))),
            "out": Output("the pitch again, so that plain 'seq' means 'seq.pitch'", channels=1, range=prange),
        }
        return cls.inputs, outputs, cls.params

    def configure(self, in_channels):
        self._clocked = "clock" in in_channels
        return {"pitch": 1, "gate": 1, "trig": 1, "step": 1, "out": 1}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._pitches, self._gates, self._durs = self._steps(self.opts)
        self._div = float(self.opts.get("division") or 4.0)
        self._ticks = np.maximum(1.0, np.round(self._durs * self._div))
        self._loop = bool(self.opts.get("loop", True))
        notes = self._pitches[np.isfinite(self._pitches)]
        self._first = float(notes[0]) if notes.size else 440.0
        self.reset()

    def reset(self):
        self.state = np.zeros(K.SEQ_STATE_SIZE, dtype=np.float64)
        self.state[K._S_FRESH] = 1.0
        self.state[K._S_PITCH] = self._first

    def event(self, kind, value=1.0):
        if kind != "trigger":
            super().event(kind, value)
        keep = self.state[[K._S_LASTC, K._S_PERIOD, K._S_PITCH]].copy()
        self.reset()
        self.state[[K._S_LASTC, K._S_PERIOD, K._S_PITCH]] = keep
        if self._clocked:
            # the next clock edge starts step 0 (it is not a tick of the step before)
            self.state[K._S_FRESH] = 1.0

    def process(self, n, t):
        o, p = self.out, self.par
        K.seq_kernel(o["pitch"][0], o["gate"][0], o["trig"][0], o["step"][0], n, self.inp["clock"], self._clocked,
                     p["bpm"], p["transpose"], self._pitches, self._gates, self._durs, self._ticks, self._loop,
                     self._div, self.sr, self.state)
        o["out"][:, :n] = o["pitch"][:, :n]


# ---------------------------------------------------------------- conversions
class _Convert(Node):
    inputs = {"in": Input("values to convert")}
    op = K.CONV_MIDI_TO_HZ

    def prepare(self, ctx):
        super().prepare(ctx)
        self._a4 = float(self.opts.get("a4") or 440.0)
        self._floor = float(self.opts.get("floor", -120.0))

    def process(self, n, t):
        K.conv_kernel(self.out["out"], n, self.inp["in"], self.op, self._a4, self._floor)


A4 = {"a4": Option(440.0, kind=float, doc="tuning: Hz of A4 (MIDI note 69)")}


def _check_a4(body):
    _positive_number(body, "a4", 440.0, 100.0, 1000.0)
    return body


@register("midi_to_hz")
class MidiToHz(_Convert):
    """MIDI note numbers to Hz (69 = A4 = 440 Hz; fractions are cents between notes).

    Example: ``f: {type: midi_to_hz, in: notes}`` then ``freq: f``
    """

    outputs = {"out": Output("frequency in Hz", range=(8.175798915643707, 12543.853951415975))}
    options = A4
    op = K.CONV_MIDI_TO_HZ
    expand = classmethod(lambda cls, body: _check_a4(body))


@register("hz_to_midi")
class HzToMidi(_Convert):
    """Hz to MIDI note numbers (440 Hz = 69; fractional); 0 Hz or less reads as 1 mHz.

    Example: ``m: {type: hz_to_midi, in: seq.pitch}``
    """

    outputs = {"out": Output("MIDI note number", range=(0.0, 127.0))}
    options = A4
    op = K.CONV_HZ_TO_MIDI
    expand = classmethod(lambda cls, body: _check_a4(body))


@register("db_to_amp")
class DbToAmp(_Convert):
    """Decibels to a linear amplitude factor (0 dB = 1, -6 dB = 0.501).

    Example: ``g: {type: db_to_amp, in: level_db}`` then ``gain: g``
    """

    outputs = {"out": Output("linear amplitude", range=(0.0, 1.0))}
    op = K.CONV_DB_TO_AMP


@register("amp_to_db")
class AmpToDb(_Convert):
    """Linear amplitude to decibels (|x|; never below ``floor``, so silence is not -inf).

    Example: ``lvl: {type: amp_to_db, in: env, floor: -90}``
    """

    options = {"floor": Option(-120.0, kind=float, doc="lowest output in dB (what silence reads as)")}
    op = K.CONV_AMP_TO_DB

    @classmethod
    def expand(cls, body):
        _positive_number(body, "floor", -120.0, -400.0, 0.0)
        return body

    @classmethod
    def ports(cls, opts):
        floor = float(opts.get("floor", -120.0))
        return cls.inputs, {"out": Output("level in dB", range=(floor, 0.0))}, cls.params


# ---------------------------------------------------------------- math
OPS_DOC = {
    "add": "a + b", "subtract": "a - b", "multiply": "a * b", "divide": "a / b (0 where b is 0)",
    "min": "the smaller of a and b", "max": "the larger of a and b", "clip": "a limited to [lo, hi]",
    "abs": "|a|", "neg": "-a", "expr": "the expression in 'expr' of a, b, c, d and t",
}


@register("math")
class Math(Node):
    """Arithmetic on signals: add, subtract, multiply, divide, min, max, clip, abs, neg, or an expression.

    ``op`` combines inputs ``a`` and ``b`` (unconnected inputs read 0);
    ``divide`` gives 0 where ``b`` is 0; ``clip`` limits ``a`` to the params
    ``lo``..``hi``. ``expr`` is a formula in a small, safe language (no
    Python): inputs ``a, b, c, d``, time ``t`` (s), ``sr``, ``pi``; operators
    ``+ - * / % ** < <= > >= == !=``; functions sin, cos, tan, tanh, exp,
    log, log2, log10, sqrt, abs, min, max, clip(x, lo, hi), floor, ceil,
    round, frac, sign, mix(x, y, k) (= lerp), if(c, x, y), pow, atan, atan2,
    hypot, mtof, ftom, db2amp, amp2db. It never gives NaN or inf: a division
    by 0 is 0, log of 0 or less is log(1e-30), results are clamped to +-1e30.

    Example: ``shaped: {type: math, expr: "tanh(3 * a) * (0.5 + 0.5 * b)", a: osc, b: lfo}``
    """

    outputs = {"out": Output("the result", range=(-1.0, 1.0))}
    options = {
        "op": Option("add", choices=K.MATH_OPS + ("expr",), doc="; ".join(f"{k}: {v}" for k, v in OPS_DOC.items())),
        "expr": Option(None, kind=str, doc="an expression of a, b, c, d, t (implies op: expr)"),
    }

    @classmethod
    def expand(cls, body):
        from patchlib.patch import LineDict

        op = body.get("op")
        text = body.get("expr")
        if text is not None:
            if op not in (None, "expr"):
                _fail(body, "expr", f"give either op: {op} or an expr, not both")
            try:
                _expr.parse(text)
            except PatchError as e:
                e.where = Where(line=_line(body, "expr"), key="expr")
                raise
            if op is None:
                out = LineDict(body)
                out.line = getattr(body, "line", 0)
                out.lines = dict(getattr(body, "lines", {}))
                out["op"] = "expr"
                out.lines["op"] = _line(body, "expr")
                return out
        elif op == "expr":
            _fail(body, "op", "op: expr needs 'expr: FORMULA' (e.g. expr: \"a * b + 0.5\")")
        return body

    @classmethod
    def ports(cls, opts):
        op = opts.get("op") or "add"
        names = {"expr": "abcd", "add": "ab", "subtract": "ab", "multiply": "ab", "divide": "ab", "min": "ab",
                 "max": "ab"}.get(op, "a")
        inputs = {k: Input(f"operand {k} (0 when unconnected)", optional=True) for k in names}
        params = {}
        if op == "clip":
            params = {"lo": Param(-1.0, WIDE, doc="lowest value let through"),
                      "hi": Param(1.0, WIDE, doc="highest value let through")}
        return inputs, cls.outputs, params

    def prepare(self, ctx):
        super().prepare(ctx)
        op = self.opts.get("op") or "add"
        self._zeros = np.zeros(ctx.block_size, dtype=np.float32)  # lo/hi of ops that have none
        self._prog = None
        if op == "expr":
            self._prog = _expr.compile_expr(self.opts["expr"], ctx.sample_rate)
            self._regs = self._prog.pool(ctx.block_size)
            self._sr = float(ctx.sample_rate)
        else:
            self._op = K.MATH_OPS.index(op)
        zero = np.zeros((1, ctx.block_size), dtype=np.float32)
        self._ins = [self.inp.get(k, zero) for k in "abcd"]

    def process(self, n, t):
        a, b, c, d = self._ins
        if self._prog is not None:
            pr = self._prog
            K.expr_kernel(self.out["out"], n, a, b, c, d, float(t), self._sr, pr.prog, pr.consts, self._regs)
            return
        lo = self.par.get("lo", self._zeros)
        hi = self.par.get("hi", self._zeros)
        K.math_kernel(self.out["out"], n, a, b, self._op, lo, hi)
