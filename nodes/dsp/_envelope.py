"""ADSR envelope kernel (numba).

The output is the continuous-time envelope sampled at each sample: a gate edge
at sample ``e`` happens at time ``e / sr``, so ``out[e]`` is the level at the
edge (the new stage starts from there) and, for a rise from 0 with an attack
of ``A = attack * sr`` samples, ``out[e + k] = k / A`` until it reaches exactly
1.0 at ``out[e + round(A)]`` (10 ms at 48 kHz: sample ``e + 480``).

Stages (``state[0]``):

* 0 idle: level 0.
* 1 attack: linear rise by ``1 / (attack * sr)`` per sample from the current
  level (a retrigger during release starts where the level is, no jump).
  ``attack`` is the time of a full 0 -> 1 rise. The step that lands within
  half a step of 1 snaps to exactly 1.0 and hands over to decay; the stage
  change is therefore on the exact sample.
* 2 decay/sustain: exponential approach to ``sustain`` with a per-sample
  factor ``0.001 ** (1 / (decay * sr))``: ``decay`` seconds after the peak the
  remaining distance is 0.1 % (-60 dB) of what it was. The level keeps
  following ``sustain`` (per sample, clamped to [0, 1]) while the gate is on;
  once within 1e-6 of it, it snaps onto it.
* 3 release: the same exponential approach toward 0 with ``release`` seconds
  for -60 dB; below 1e-6 (-120 dB) it snaps to exactly 0 and goes idle.

A rising gate edge (``gate[i] > 0.5`` after ``<= 0.5``) restarts the attack
from the current level; a falling edge starts the release from the current
level, whatever the stage. A zero (or sub-half-sample) attack jumps to 1.0 on
the edge sample itself; a zero release jumps to 0.0 on the edge sample; a
zero decay reaches sustain on the sample after the peak. No division by zero.

Per sample: first advance one sample in the current stage (with the current
sample's parameters), then apply a gate edge, then output the level.
Everything that survives a block lives in the float64 state, so rendering N
samples at once is bit-identical to any split into consecutive chunks.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "ADSR_STATE_SIZE",
    "STAGE_IDLE",
    "STAGE_ATTACK",
    "STAGE_DECAY",
    "STAGE_RELEASE",
    "SNAP",
    "adsr_state",
    "adsr_kernel",
]

STAGE_IDLE = 0
STAGE_ATTACK = 1
STAGE_DECAY = 2
STAGE_RELEASE = 3

#: ``state = [stage, level, last gate (0.0 / 1.0)]``.
ADSR_STATE_SIZE = 3
_ST = 0
_LV = 1
_GT = 2

#: Release snaps to 0 (and decay onto sustain) within this distance (-120 dB).
SNAP = 1e-6
_LN_1E_3 = np.log(1e-3)
#: Below this many samples a time counts as zero (no division by ~0).
_TINY = 1e-9


def adsr_state() -> np.ndarray:
    """Fresh state: float64 ``[stage, level, last gate]``, all zero (idle)."""
    return np.zeros(ADSR_STATE_SIZE, dtype=np.float64)


@numba.njit(cache=True, nogil=True, inline="always")
def _coef(seconds, sr):
    """Per-sample factor reaching 1e-3 of the distance after ``seconds``."""
    ns = np.float64(seconds) * sr
    if not ns > _TINY:  # also NaN
        return 0.0
    return np.exp(_LN_1E_3 / ns)


@numba.njit(cache=True, nogil=True, inline="always")
def _inc(seconds, sr):
    """Per-sample attack step for a full 0 -> 1 rise in ``seconds``."""
    ns = np.float64(seconds) * sr
    if not ns > _TINY:  # also NaN
        return 1.0 / _TINY
    return 1.0 / ns


@numba.njit(cache=True, nogil=True)
def adsr_kernel(out, n, gate, attack, decay, sustain, release, sr, state):
    """Render ``n`` samples of an ADSR envelope into ``out[:n]`` (0..1).

    Args:
        out: float32 1-D output; ``out[:n]`` is written.
        n: Number of samples.
        gate: float32 ``(>= n,)``; ``> 0.5`` means on.
        attack: float32 ``(>= n,)`` seconds for a full 0 -> 1 linear rise.
        decay: float32 ``(>= n,)`` seconds to reach -60 dB of the distance to
            sustain.
        sustain: float32 ``(>= n,)`` level, clamped to [0, 1].
        release: float32 ``(>= n,)`` seconds to reach -60 dB of the level.
        sr: Sample rate in Hz.
        state: float64 ``[stage, level, last gate]`` from :func:`adsr_state`,
            updated in place.
    """
    stage = np.int64(state[_ST])
    level = state[_LV]
    last = state[_GT] > 0.5
    # Parameter -> coefficient caches (NaN: recompute on the first sample).
    # Pure functions of the value, so they need not survive the call.
    la = np.nan
    ld = np.nan
    lr = np.nan
    inc = 0.0
    cd = 0.0
    cr = 0.0
    for i in range(n):
        # 1. Advance from the previous sample's time to this one.
        if stage == STAGE_ATTACK:
            a = attack[i]
            if a != la:
                la = a
                inc = _inc(a, sr)
            level += inc
            if level >= 1.0 - 0.5 * inc:
                level = 1.0
                stage = STAGE_DECAY
        elif stage == STAGE_DECAY:
            d = decay[i]
            if d != ld:
                ld = d
                cd = _coef(d, sr)
            s = np.float64(sustain[i])
            if not s >= 0.0:  # also NaN
                s = 0.0
            if s > 1.0:
                s = 1.0
            level = s + (level - s) * cd
            if -SNAP < level - s < SNAP:
                level = s
        elif stage == STAGE_RELEASE:
            r = release[i]
            if r != lr:
                lr = r
                cr = _coef(r, sr)
            level *= cr
            if level < SNAP:
                level = 0.0
                stage = STAGE_IDLE
        # 2. Gate edges at this sample's time.
        g = gate[i] > 0.5
        if g and not last:
            stage = STAGE_ATTACK
            a = attack[i]
            if a != la:
                la = a
                inc = _inc(a, sr)
            if level >= 1.0 - 0.5 * inc:  # zero (or tiny) attack: jump now
                level = 1.0
                stage = STAGE_DECAY
        elif last and not g:
            if stage != STAGE_IDLE:
                stage = STAGE_RELEASE
                r = release[i]
                if r != lr:
                    lr = r
                    cr = _coef(r, sr)
                if cr == 0.0 or level < SNAP:  # zero release: jump now
                    level = 0.0
                    stage = STAGE_IDLE
        last = g
        out[i] = level
    state[_ST] = stage
    state[_LV] = level
    state[_GT] = 1.0 if last else 0.0
