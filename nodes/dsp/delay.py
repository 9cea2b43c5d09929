"""Delay line: fractional, modulatable time, feedback; closes feedback loops."""
from __future__ import annotations

import numpy as np

from patchlib import Input, Node, Option, Param, register

from . import _delay


@register("delay")
class Delay(Node):
    """Fractional delay line with feedback (outputs the delayed signal only).

    The time may be modulated per sample (chorus, flanger, vibrato): reads
    use 4-point cubic interpolation. Blend dry and wet with a ``mix`` node.

    A feedback loop in the graph (``a -> delay -> a``) is legal only through
    a delay: inside such a loop the delay reads samples written in earlier
    blocks, so its time is at least one block plus two samples.

    Example::

        echo: {type: delay, in: voice, time: 375ms, feedback: 0.4}
        wet:  {type: mix, in: [voice, echo], gains: [1, -6dB]}
    """

    inputs = {"in": Input("signal to delay")}
    params = {
        "time": Param(0.25, (0.0, 60.0), "s", smooth=0.05, doc="delay time (min 1 sample; in a loop, 1 block + 2)"),
        "feedback": Param(0.0, (-0.99, 0.99), "x", doc="share of the output fed back into the line"),
    }
    options = {"max_time": Option(2.0, kind=float, doc="longest delay in seconds (memory)")}
    breaks_cycles = True

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self.max_samples = int(np.ceil(float(self.opts["max_time"]) * self.sr)) + ctx.block_size + 4
        self.reset()

    def reset(self):
        self.ring, self.idx = _delay.delay_state(self.out["out"].shape[0], self.max_samples)

    def process(self, n, t):
        _delay.delay_kernel(self.inp["in"], self.out["out"], n, self.par["time"], self.par["feedback"],
                            self.sr, self.ring, self.idx)

    def process_read(self, n, t):
        _delay.delay_read(self.out["out"], n, self.par["time"], self.sr, self.ring, self.idx)

    def process_write(self, n, t):
        _delay.delay_write(self.inp["in"], self.out["out"], n, self.par["feedback"], self.ring, self.idx)
