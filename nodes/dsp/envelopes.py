"""Envelopes: adsr (classic or with curved segments, retrigger or legato), ar, and the follower (envelope follower)."""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Option, Output, Param, register

from . import _envelope

TIME = dict(unit="s", curve="exp", rate="control", smooth=0.0)
BEND = dict(range=(-1.0, 1.0), rate="control", smooth=0.0)
#: per-preset default bends (attack, decay, release): see nodes/dsp/_envelope.py
PRESETS = {"lin": (0.0, 0.0, 0.0), "exp": (0.3, 1.0, 1.0), "log": (-0.5, -0.5, -0.5)}
CURVE_DOC = ("segment shape: classic (linear attack, -60 dB exponential decay/release, asymptotic), "
             "lin (straight), exp (analog RC: fast then bending into the target), log (slow then fast); "
             "lin/exp/log segments reach their targets exactly at their times and add the params "
             "attack_curve, decay_curve, release_curve (-1..1)")
MODE_DOC = ("retrigger: a trigger while the gate is held restarts the attack from the current level; "
            "legato: it changes nothing (the note goes on)")


def _bends(names, preset):
    out = {}
    for name, default in zip(names, PRESETS[preset]):
        out[f"{name}_curve"] = Param(default, doc=f"bend of the {name}: 0 straight, >0 RC-like (fast, then "
                                     "bending into the target), <0 slow then fast", **BEND)
    return out


@register("adsr")
class ADSR(Node):
    """Attack-decay-sustain-release envelope, 0..1 times the trigger velocity.

    Opened by a ``trigger`` event (score or OSC) or while the ``gate`` input
    is above 0.5; closed by ``release`` or the gate falling. With the default
    ``curve: classic`` the attack is linear from the current level (a
    retrigger never jumps); decay and release are exponential, reaching
    within -60 dB of their target at their stated time.

    ``curve: lin | exp | log`` shapes every segment (``exp``: analog RC
    curves; ``log``: the mirror, slow then fast; ``lin``: straight), each
    reaching its target exactly at its time: the attack peaks ``attack``
    seconds after a trigger from silence, the decay lands on sustain
    ``decay`` seconds after the peak, the release on 0 ``release`` seconds
    after the gate falls, on the exact sample. The bends are params
    (``attack_curve``...: 0 straight, +1 steep RC, -1 its mirror), so they
    can be set per segment or modulated. ``mode: legato`` ignores triggers
    while the gate is held (no restart); the default ``retrigger`` restarts
    the attack from the current level (never from 0: no click).

    Example::

        env: {type: adsr, attack: 5ms, decay: 200ms, sustain: 0.6, release: 1s}
        amp: {type: gain, in: osc, gain: env}
        # score: - {at: 0.5, trigger: env, length: 0.25}
        pluck: {type: adsr, curve: exp, attack: 2ms, decay: 400ms, sustain: 0.2, release: 300ms}
    """

    inputs = {"gate": Input("gate signal: on while > 0.5", channels=1, optional=True)}
    outputs = {"out": Output("envelope 0..1", channels=1, range=(0.0, 1.0))}
    params = {
        "attack": Param(0.01, (0.0, 60.0), doc="time to rise from 0 to full", **TIME),
        "decay": Param(0.1, (0.0, 60.0), doc="time to fall to the sustain level", **TIME),
        "sustain": Param(0.7, (0.0, 1.0), "x", rate="control", doc="level held while the gate is on"),
        "release": Param(0.3, (0.0, 60.0), doc="time to fall to silence after release", **TIME),
    }
    options = {
        "curve": Option("classic", choices=("classic", "lin", "exp", "log"), doc=CURVE_DOC),
        "mode": Option("retrigger", choices=("retrigger", "legato"), doc=MODE_DOC),
    }
    events = {"trigger": "open the gate (value: velocity, default 1)", "release": "close the gate"}

    @classmethod
    def ports(cls, opts):
        curve = opts.get("curve") or "classic"
        if curve == "classic":
            return cls.inputs, cls.outputs, cls.params
        return cls.inputs, cls.outputs, {**cls.params, **_bends(("attack", "decay", "release"), curve)}

    @property
    def _shaped(self):
        return (self.opts.get("curve") or "classic") != "classic"

    @property
    def _legato(self):
        return self.opts.get("mode") == "legato"

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._gate = np.zeros(ctx.block_size, dtype=np.float32)
        self._y = self.out["out"][0]
        self.reset()

    batch_state = ("state", "ctl")

    def reset(self):
        self.ctl = np.array([0.0, 1.0])  # [event gate, velocity] (classic), stacked when batched
        if self._shaped:
            self.state = _envelope.env_state()
            return
        self.state = _envelope.adsr_state()

    # the classic envelope's gate and velocity live in ``ctl`` so a batch can stack them
    @property
    def event_gate(self):
        return self.ctl[0]

    @event_gate.setter
    def event_gate(self, value):
        self.ctl[0] = value

    @property
    def velocity(self):
        return self.ctl[1]

    @velocity.setter
    def velocity(self, value):
        self.ctl[1] = value

    def batch_key(self):
        return (self._shaped,)  # legato only changes how events are taken

    @classmethod
    def process_batch(cls, b, n, t):
        p = b.par
        if b._shaped:
            _envelope.env_batch(b.out["out"], n, b.inp["gate"], p["attack"], p["decay"], p["sustain"],
                                p["release"], p["attack_curve"], p["decay_curve"], p["release_curve"],
                                b.sr, _envelope.KIND_ADSR, b.state["state"])
        else:
            _envelope.adsr_batch(b.out["out"], n, b.inp["gate"], b._gate_connected, b.state["ctl"], b._gate,
                                 p["attack"], p["decay"], p["sustain"], p["release"], b.sr, b.state["state"])

    def event(self, kind, value=1.0):
        if self._shaped:
            if kind == "trigger":
                _envelope.env_trigger(self.state, value, retrigger=not self._legato)
            elif kind == "release":
                _envelope.env_release(self.state)
            else:
                super().event(kind, value)
            return
        if kind == "trigger":
            st = self.state
            v = float(value)
            if self._legato and (self.event_gate > 0.5 or st[2] > 0.5):
                self.event_gate = 1.0  # held: the note goes on, untouched
                return
            if self.event_gate > 0.5:
                st[2] = 0.0  # make the next sample a rising edge: retrigger
            if st[1] > 0.0 and v > 0.0 and v != self.velocity:
                # The output is level x velocity: rescale the level so that a
                # retrigger at another velocity starts from what sounds now
                # (no click), as a retrigger at the same velocity does.
                level = st[1] * self.velocity / v
                if level >= 1.0:
                    # already above the new note's peak: no attack, glide down to sustain
                    st[0], st[1], st[2] = _envelope.STAGE_DECAY, level, 1.0
                else:
                    st[1] = level
            self.event_gate = 1.0
            self.velocity = v
        elif kind == "release":
            self.event_gate = 0.0
        else:
            super().event(kind, value)

    def configure(self, in_channels):
        self._gate_connected = "gate" in in_channels
        return super().configure(in_channels)

    def process(self, n, t):
        p = self.par
        if self._shaped:
            _envelope.env_kernel(self._y, n, self.inp["gate"][0], p["attack"], p["decay"], p["sustain"],
                                 p["release"], p["attack_curve"], p["decay_curve"], p["release_curve"],
                                 self.sr, _envelope.KIND_ADSR, self.state)
            return
        g = self._gate
        if self._gate_connected:
            np.maximum(self.inp["gate"][0, :n], self.event_gate, out=g[:n])
        else:
            g[:n] = self.event_gate
        _envelope.adsr_kernel(self._y, n, g, p["attack"], p["decay"], p["sustain"], p["release"],
                              self.sr, self.state)
        if self.velocity != 1.0:
            self._y[:n] *= np.float32(self.velocity)


@register("ar")
class AR(Node):
    """Attack-release envelope: percussive (attack, then straight into the release) or held.

    Started by a ``trigger`` event or a rising edge of the ``gate`` input
    (above 0.5). By default it is percussive: the gate's length does not
    matter, the level rises to full in ``attack`` and falls to exactly 0 in
    ``release``. With ``hold: true`` it stays at full while the gate is on
    (an ASR: ``release`` events or the gate's fall end it). Both segments are
    shaped by ``attack_curve`` / ``release_curve`` (0 straight, +1 RC-like,
    -1 the mirror) and reach their targets on the exact sample; a retrigger
    restarts the attack from the current level (no click). Output 0..1 times
    the trigger velocity.

    Example: ``hit: {type: ar, gate: clk.trig, attack: 1ms, release: 150ms}``
    """

    inputs = {"gate": Input("rising edges (> 0.5) start the envelope; held high it holds with hold: true",
                            channels=1, optional=True)}
    outputs = {"out": Output("envelope 0..1", channels=1, range=(0.0, 1.0))}
    params = {
        "attack": Param(0.002, (0.0, 60.0), doc="time to rise from 0 to full", **TIME),
        "release": Param(0.3, (0.0, 60.0), doc="time to fall from the peak (or wherever it is) to 0", **TIME),
        "attack_curve": Param(0.0, doc="bend of the attack: 0 straight, >0 RC-like, <0 slow then fast", **BEND),
        "release_curve": Param(1.0, doc="bend of the release: 0 straight, >0 RC-like (fast, then "
                               "bending into 0), <0 slow then fast", **BEND),
    }
    options = {"hold": Option(False, kind=bool, doc="hold at full while the gate is on (attack-sustain-release)")}
    events = {"trigger": "start the envelope (value: velocity, default 1)",
              "release": "close the gate (with hold: true)"}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._ones = np.ones(ctx.block_size, dtype=np.float32)  # the sustain level of a held AR
        self._y = self.out["out"][0]
        self._kind = _envelope.KIND_ASR if self.opts.get("hold") else _envelope.KIND_AR
        self.reset()

    def reset(self):
        self.state = _envelope.env_state()

    def event(self, kind, value=1.0):
        if kind == "trigger":
            _envelope.env_trigger(self.state, value)
            if self._kind == _envelope.KIND_AR:
                self.state[4] = 0.0  # percussive: a trigger is a pulse, not a held gate
        elif kind == "release":
            _envelope.env_release(self.state)
        else:
            super().event(kind, value)

    def process(self, n, t):
        p = self.par
        # no decay stage: the release time and bend stand in for it (only used when a
        # quieter retrigger lands above the new peak and glides down to it)
        _envelope.env_kernel(self._y, n, self.inp["gate"][0], p["attack"], p["release"], self._ones,
                             p["release"], p["attack_curve"], p["release_curve"], p["release_curve"],
                             self.sr, self._kind, self.state)


@register("follower")
class Follower(Node):
    """Envelope follower: the amplitude of a signal, rising and falling with their own times.

    Turns any sound into a control signal (pyo's ``Follower2``,
    SuperCollider's ``Amplitude``): a drum loop's follower can open a filter,
    duck a pad or make a generator breathe with it. ``out`` is the envelope
    as a linear amplitude (1 = full scale), ``db`` the same in dB (floored at
    -100 dB), ready for a param in dB such as a generator's volume.

    ``attack`` and ``release`` are time constants: after a step up the
    envelope covers 63.2 % (1 - 1/e) of the step in ``attack`` seconds;
    after the sound stops it falls to 36.8 % of its level in ``release``
    seconds (an exponential, -8.7 dB per ``release``); 0 is instant.
    ``mode: peak`` (the default) holds the peak of ``|x|``, falling with
    the release, and rises toward it with the attack: a sine of amplitude
    A reads A (less a droop of about ``period / (2 release)``). ``mode:
    rms`` averages ``x**2`` over the attack time and holds it, falling no
    faster than the release, then takes the square root: a sine reads
    A / sqrt(2) once the attack spans a few periods; in rms mode the times
    are those of the power (``out**2``). Each channel is followed on its own.

    Example: ``env: {type: follower, in: drums, attack: 5ms, release: 150ms}``
    (then ``volume: env.db`` or ``gain: {from: env, range: [0, 1]}``)
    """

    inputs = {"in": Input("signal to follow")}
    outputs = {"out": Output("envelope, linear amplitude (1 = full scale)", range=(0.0, 1.0)),
               "db": Output("envelope in dB (20 log10), floored at -100 dB", range=(-100.0, 0.0))}
    params = {
        "attack": Param(0.01, (0.0, 10.0), doc="rise time constant: 63.2 % of a step up in this time", **TIME),
        "release": Param(0.1, (0.0, 10.0), doc="fall time constant: down to 36.8 % in this time", **TIME),
    }
    options = {"mode": Option("peak", choices=("peak", "rms"),
                              doc="peak: the held peak of |x| (a sine reads its amplitude); "
                                  "rms: the root of the mean square over the attack time (a sine reads 0.707 A)")}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._mode = _envelope.FOLLOW_RMS if self.opts.get("mode") == "rms" else _envelope.FOLLOW_PEAK
        self._channels = self.out["out"].shape[0]
        self.reset()

    def reset(self):
        self.state = _envelope.follower_state(self._channels)

    def batch_key(self):
        return (self.opts.get("mode") or "peak",)  # asked before prepare

    def process(self, n, t):
        _envelope.follower_kernel(self.inp["in"], self.out["out"], self.out["db"], n, self.par["attack"],
                                  self.par["release"], self.sr, self._mode, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        _envelope.follower_batch(b.inp["in"], b.out["out"], b.out["db"], n, b.par["attack"], b.par["release"],
                                 b.sr, b._mode, b.state["state"])
