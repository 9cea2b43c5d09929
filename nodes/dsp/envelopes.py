"""Envelopes."""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Output, Param, register

from . import _envelope

TIME = dict(unit="s", curve="exp", rate="control", smooth=0.0)


@register("adsr")
class ADSR(Node):
    """Attack-decay-sustain-release envelope, 0..1 times the trigger velocity.

    Opened by a ``trigger`` event (score or OSC) or while the ``gate`` input
    is above 0.5; closed by ``release`` or the gate falling. The attack is
    linear from the current level (a retrigger never jumps); decay and
    release are exponential, reaching within -60 dB of their target at
    their stated time.

    Example::

        env: {type: adsr, attack: 5ms, decay: 200ms, sustain: 0.6, release: 1s}
        amp: {type: gain, in: osc, gain: env}
        # score: - {at: 0.5, trigger: env, length: 0.25}
    """

    inputs = {"gate": Input("gate signal: on while > 0.5", channels=1, optional=True)}
    outputs = {"out": Output("envelope 0..1", channels=1, range=(0.0, 1.0))}
    params = {
        "attack": Param(0.01, (0.0, 60.0), doc="time to rise from 0 to full", **TIME),
        "decay": Param(0.1, (0.0, 60.0), doc="time to fall to the sustain level", **TIME),
        "sustain": Param(0.7, (0.0, 1.0), "x", rate="control", doc="level held while the gate is on"),
        "release": Param(0.3, (0.0, 60.0), doc="time to fall to silence after release", **TIME),
    }
    events = {"trigger": "open the gate (value: velocity, default 1)", "release": "close the gate"}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._gate = np.zeros(ctx.block_size, dtype=np.float32)
        self._y = self.out["out"][0]
        self.reset()

    def reset(self):
        self.state = _envelope.adsr_state()
        self.event_gate = 0.0
        self.velocity = 1.0

    def event(self, kind, value=1.0):
        if kind == "trigger":
            st = self.state
            v = float(value)
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
        g = self._gate
        if self._gate_connected:
            np.maximum(self.inp["gate"][0, :n], self.event_gate, out=g[:n])
        else:
            g[:n] = self.event_gate
        p = self.par
        _envelope.adsr_kernel(self._y, n, g, p["attack"], p["decay"], p["sustain"], p["release"],
                              self.sr, self.state)
        if self.velocity != 1.0:
            self._y[:n] *= self.velocity
