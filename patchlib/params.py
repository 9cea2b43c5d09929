"""Runtime state of one param: a constant, an automation, or a modulation.

* A **constant** changed by an event (score ``set``, OSC) glides to the new
  value over the param's ``smooth`` time, so a jump makes no click.
* An **automation** ramps linearly or exponentially to a target over a
  duration (like the Web Audio API's AudioParam ramps).
* A **modulation** reads another node's output each block and maps its
  nominal -1..1 onto a range, linearly or exponentially
  (``{from: lfo, range: [300, 3000], curve: exp}``), or takes it raw
  (``{from: env}``, optionally ``scale``/``offset``).

Each param fills a float32 buffer with one value per sample; the node reads
it every sample (audio rate) or on the control grid (control rate).
Everything is computed per sample from explicit state, so how the engine
splits blocks never changes the values.
"""
from __future__ import annotations

import math

import numpy as np

from . import _kernels as K
from .node import Param

CONST, RAMP_LIN, RAMP_EXP, MOD = 0, 1, 2, 3


class ParamState:
    """One param of one node in a compiled plan."""

    __slots__ = ("spec", "name", "buf", "mode", "state", "sr", "src", "map_args", "fresh", "lo", "hi",
                 "_initial")

    def __init__(self, spec: Param, name: str, value: float, block_size: int, sample_rate: float,
                 buf: np.ndarray | None = None):
        self.spec = spec
        self.name = name
        self.sr = float(sample_rate)
        if buf is None:
            buf = np.empty(block_size, dtype=np.float32)
        buf[:] = value
        self.buf = buf  # may be a row of the engine's stacked param array
        # state: [value, increment or ratio, remaining samples, target]
        self.state = np.array([value, 0.0, 0.0, value], dtype=np.float64)
        self.mode = CONST
        self.src = None
        self.map_args = ()
        self.fresh = False  # True while the buffer must be refilled once
        self.lo, self.hi = (float(spec.range[0]), float(spec.range[1]))
        self._initial = None

    def snapshot(self) -> None:
        """Remember the current setting as the one :meth:`restore` returns to."""
        self._initial = (self.mode, self.state.copy(), self.src, self.map_args)

    def restore(self) -> None:
        """Back to the snapshot (the patch's own setting)."""
        mode, state, self.src, self.map_args = self._initial
        self.state[:] = state
        self.mode = mode
        if mode == MOD:
            self.fresh = False
        else:
            self.mode, self.fresh = CONST, True

    # ---- what the engine calls each block --------------------------------
    @property
    def active(self) -> bool:
        """Whether the buffer changes from block to block."""
        return self.mode != CONST or self.fresh

    def fill(self, n: int) -> None:
        mode = self.mode
        if mode == MOD:
            src = self.src
            a0, a1, lo, hi, kind = self.map_args
            if kind == 0:
                K.map_affine(src, self.buf, n, a0, a1, lo, hi)
            else:
                K.map_exp(src, self.buf, n, a0, a1, lo, hi)
        elif mode == RAMP_LIN:
            K.ramp_lin(self.buf, n, self.state)
            if self.state[2] <= 0.0:
                self._settle()
        elif mode == RAMP_EXP:
            K.ramp_exp(self.buf, n, self.state)
            if self.state[2] <= 0.0:
                self._settle()
        elif self.fresh:
            self.buf.fill(self.state[0])
            self.fresh = False

    def _settle(self) -> None:
        # The rest of this block already holds the target; the next block
        # must see it everywhere.
        self.mode = CONST
        self.fresh = True

    # ---- what events do -------------------------------------------------
    @property
    def value(self) -> float:
        """The current value (for a modulated param: the last sample)."""
        if self.mode == MOD:
            return float(self.buf[0])
        return float(self.state[0])

    def set(self, value: float, seconds: float | None = None) -> None:
        """Go to ``value`` over ``seconds`` (default: the param's smoothing time)."""
        if seconds is None:
            seconds = self.spec.smooth
        self.ramp(value, seconds, "lin")

    def ramp(self, target: float, seconds: float, curve: str = "lin") -> None:
        """Start a ramp from the current value to ``target`` now."""
        target = min(max(float(target), self.lo), self.hi)
        v0 = self.value
        self.src = None
        count = int(round(max(seconds, 0.0) * self.sr))
        st = self.state
        st[0], st[3] = v0, target
        if count <= 0 or v0 == target:
            st[0], st[2] = target, 0.0
            self.mode, self.fresh = CONST, True
            return
        st[2] = float(count)
        if curve == "exp" and v0 > 0 and target > 0:
            st[1] = (target / v0) ** (1.0 / count)
            self.mode = RAMP_EXP
        else:
            st[1] = (target - v0) / count
            self.mode = RAMP_LIN

    def connect(self, src: np.ndarray, range_=None, curve: str | None = None,
                scale: float = 1.0, offset: float = 0.0, nominal=(-1.0, 1.0)) -> None:
        """Drive the param from a source buffer ``(channels, block)``.

        With ``range_``, the source's nominal range (-1..1 for an
        oscillator, 0..1 for an envelope) maps onto it (``curve`` lin/exp,
        default the param's own curve); without, the source value is used as
        is, times ``scale`` plus ``offset``. The result is clamped to the
        param's declared range.
        """
        self.src = src
        self.mode = MOD
        lo, hi = self.lo, self.hi
        if range_ is not None:
            r0, r1 = float(range_[0]), float(range_[1])
            s0, s1 = float(nominal[0]), float(nominal[1])
            curve = curve or self.spec.curve
            if curve == "exp" and r0 > 0 and r1 > 0:
                # r0 * exp(log(r1/r0) * u), u = (x - s0) / (s1 - s0); the kernel
                # computes base * exp(k * (x + 1) / 2), so fold the nominal range in
                k = math.log(r1 / r0) * 2.0 / (s1 - s0)
                base = r0 * math.exp(-k * (s0 + 1.0) / 2.0)
                self.map_args = (base, k, lo, hi, 1)
                return
            a = (r1 - r0) / (s1 - s0)
            self.map_args = (a, r0 - a * s0, lo, hi, 0)
        else:
            self.map_args = (float(scale), float(offset), lo, hi, 0)
