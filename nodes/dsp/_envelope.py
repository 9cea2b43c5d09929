"""Envelope kernels (numba): the classic ADSR, and shaped ADSR / AR segments.

The shaped kernel (:func:`env_kernel`: curved segments that land on their
targets on the exact sample, and the ar envelope) is documented further down,
where it starts. What follows is the classic :func:`adsr_kernel`.

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
    "STAGE_SUSTAIN",
    "QMIN",
    "KIND_ADSR",
    "KIND_AR",
    "KIND_ASR",
    "ENV_STATE_SIZE",
    "env_state",
    "env_kernel",
    "env_trigger",
    "env_release",
    "FOLLOW_PEAK",
    "FOLLOW_RMS",
    "FOLLOWER_STATE_SIZE",
    "follower_state",
    "follower_kernel",
    "follower_batch",
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


# ---------------------------------------------------------------------------
# Shaped envelopes: curved segments that reach their targets exactly on time
# ---------------------------------------------------------------------------
#
# A segment goes from its start level ``L0`` toward ``T`` in ``N = time * sr``
# samples with a bend ``c`` in [-1, 1]. Written as progress ``y(u)`` from 0 to
# 1 over ``u = k / N``, with ``q = QMIN ** |c|``:
#
# * ``c = 0``: straight, ``y = u``.
# * ``c > 0``: an RC (one-pole) curve, fast at first and bending into the
#   target: ``y = (1 - q**u) / (1 - q)``. It is a one-pole step toward a point
#   past the target, ``P = T + r (T - L0)`` with ``r = q / (1 - q)``, by the
#   factor ``q ** (1 / N)`` per sample, so the level lands on ``T`` at ``u = 1``
#   exactly (the analog ADSR's "overshoot comparator" trick). ``c = 1`` is as
#   steep as the classic -60 dB decay (``q = 1e-3``) but arrives.
# * ``c < 0``: the mirror image, slow at first then fast: the distance from a
#   point before the start, ``P = L0 - r (T - L0)``, grows by ``q ** (-1/N)``.
#
# The step that lands within half a step of ``T`` snaps onto it, so the
# stage change is on the exact sample ``round(N)`` after the segment started
# (float rounding can never move it by one). Attack is *rate* based: its
# curve is the one of a full 0 -> 1 rise, and a retrigger continues on that
# curve from the current level (no jump, and less time from higher up).
# Decay and release are *time* based: from wherever they start they take
# exactly their time.

#: Stage of a shaped envelope after the decay segment: following sustain.
STAGE_SUSTAIN = 4
#: Bend of ``|c| = 1``: the distance left to the overshoot point, as a
#: fraction of the whole segment (-60 dB, like the classic decay).
QMIN = 1e-3
_LN_QMIN = np.log(QMIN)
#: Below this bend a segment is straight (the curve differs from a line by
#: less than 1e-5 of its height there; avoids huge overshoot points).
CURVE_MIN = 1e-4

#: Envelope kinds of :func:`env_kernel`.
KIND_ADSR = 0
KIND_AR = 1  # percussive: attack, then release at once; the gate's fall is ignored
KIND_ASR = 2  # attack, hold at full while the gate is on, release

#: ``state = [stage, level, last gate, segment start, event gate, velocity,
#: pending trigger]``.
ENV_STATE_SIZE = 7
_L0 = 3
_EVG = 4
_VEL = 5
_PEND = 6


def env_state() -> np.ndarray:
    """Fresh shaped-envelope state: idle at 0, velocity 1."""
    s = np.zeros(ENV_STATE_SIZE, dtype=np.float64)
    s[_VEL] = 1.0
    return s


@numba.njit(cache=True, nogil=True, inline="always")
def _curve_coef(seconds, c, sr):
    """``(samples, factor, r)`` for a segment of ``seconds`` with bend ``c``.

    ``factor`` is the per-sample one-pole factor (``< 1`` for ``c > 0``,
    ``> 1`` for ``c < 0``; 1 for a straight segment), ``r`` the overshoot
    ratio. ``samples < 0.5`` means the segment is instantaneous.
    """
    ns = np.float64(seconds) * sr
    if not ns > 0.0:  # also NaN
        ns = 0.0
    cc = np.float64(c)
    if not cc == cc:
        cc = 0.0
    if cc > 1.0:
        cc = 1.0
    elif cc < -1.0:
        cc = -1.0
    ac = abs(cc)
    if ac < CURVE_MIN or ns < 0.5:
        return ns, 1.0, 0.0
    q = np.exp(_LN_QMIN * ac)
    r = q / (1.0 - q)
    f = np.exp(_LN_QMIN * ac / ns)
    if cc < 0.0:
        f = 1.0 / f
    return ns, f, r


@numba.njit(cache=True, nogil=True, inline="always")
def _seg(level, l0, target, ns, f, r):
    """One sample of a segment from ``l0`` toward ``target``: ``(level, done)``."""
    d = target - l0
    if ns < 0.5 or d == 0.0:
        return target, True
    sgn = 1.0 if d > 0.0 else -1.0
    if (target - level) * sgn <= 0.0:  # already there (or the target moved past us)
        return level, True
    if f == 1.0:
        new = level + d / ns
    elif f < 1.0:
        p = target + r * d
        new = p + (level - p) * f
    else:
        p = l0 - r * d
        new = p + (level - p) * f
    if (target - new) * sgn <= 0.5 * abs(new - level):
        return target, True
    return new, False


@numba.njit(cache=True, nogil=True)
def env_kernel(out, n, gate_in, attack, decay, sustain, release, acurve, dcurve, rcurve, sr, kind, state):
    """Render ``n`` samples of a shaped envelope (times velocity) into ``out[:n]``.

    Args:
        out: float32 1-D output.
        n: Number of samples.
        gate_in: float32 ``(>= n,)`` gate input (zeros when unconnected); the
            gate is on while ``max(gate_in, event gate) > 0.5``.
        attack, decay, release: float32 ``(>= n,)`` seconds; attack is the
            time of a full 0 -> 1 rise, decay the time from the peak to
            sustain, release the time from wherever it starts to 0.
        sustain: float32 ``(>= n,)`` level (clamped to [0, 1]; ignored
            unless ``kind`` is :data:`KIND_ADSR`).
        acurve, dcurve, rcurve: float32 ``(>= n,)`` bends in [-1, 1].
        sr: Sample rate in Hz.
        kind: :data:`KIND_ADSR`, :data:`KIND_AR` or :data:`KIND_ASR`.
        state: float64 from :func:`env_state`, updated in place. Events
            write ``[event gate, velocity, pending trigger]`` into it.
    """
    stage = np.int64(state[_ST])
    level = state[_LV]
    last = state[_GT] > 0.5
    l0 = state[_L0]
    evg = state[_EVG]
    vel = state[_VEL]
    pend = state[_PEND] > 0.5
    # parameter -> coefficient caches (pure functions of the values)
    la = np.nan
    lac = np.nan
    ld = np.nan
    ldc = np.nan
    lr = np.nan
    lrc = np.nan
    lsd = np.nan
    ans = af = ar_ = 0.0
    dns = df = dr = 0.0
    rns = rf = rr = 0.0
    cd = 0.0
    for i in range(n):
        if kind == KIND_ADSR:
            s = np.float64(sustain[i])
            if not s >= 0.0:  # also NaN
                s = 0.0
            if s > 1.0:
                s = 1.0
        else:
            s = 1.0
        # 1. advance from the previous sample's time to this one
        if stage == STAGE_ATTACK:
            a = attack[i]
            ac = acurve[i]
            if a != la or ac != lac:
                la = a
                lac = ac
                ans, af, ar_ = _curve_coef(a, ac, sr)
            level, done = _seg(level, 0.0, 1.0, ans, af, ar_)
            if done:
                l0 = level
                stage = STAGE_RELEASE if kind == KIND_AR else STAGE_DECAY
        elif stage == STAGE_DECAY:
            dd = decay[i]
            dc = dcurve[i]
            if dd != ld or dc != ldc:
                ld = dd
                ldc = dc
                dns, df, dr = _curve_coef(dd, dc, sr)
            level, done = _seg(level, l0, s, dns, df, dr)
            if done:
                stage = STAGE_SUSTAIN
        elif stage == STAGE_SUSTAIN:
            # follow a moving sustain smoothly (the classic -60 dB-in-decay one-pole)
            dd = decay[i]
            if dd != lsd:
                lsd = dd
                cd = _coef(dd, sr)
            level = s + (level - s) * cd
            if -SNAP < level - s < SNAP:
                level = s
        elif stage == STAGE_RELEASE:
            rl = release[i]
            rc = rcurve[i]
            if rl != lr or rc != lrc:
                lr = rl
                lrc = rc
                rns, rf, rr = _curve_coef(rl, rc, sr)
            level, done = _seg(level, l0, 0.0, rns, rf, rr)
            if done:
                level = 0.0
                stage = STAGE_IDLE
        # 2. gate edges at this sample's time
        gi = np.float64(gate_in[i])
        g = gi > 0.5 or evg > 0.5
        if (g and not last) or pend:
            pend = False
            stage = STAGE_ATTACK
            a = attack[i]
            ac = acurve[i]
            if a != la or ac != lac:
                la = a
                lac = ac
                ans, af, ar_ = _curve_coef(a, ac, sr)
            if ans < 0.5 or level >= 1.0:  # zero attack (or already at the top): peak now
                l0 = level if level > 1.0 else 1.0
                level = l0
                stage = STAGE_RELEASE if kind == KIND_AR else STAGE_DECAY
        elif last and not g and kind != KIND_AR:
            if stage != STAGE_IDLE:
                stage = STAGE_RELEASE
                l0 = level
                rl = release[i]
                rc = rcurve[i]
                if rl != lr or rc != lrc:
                    lr = rl
                    lrc = rc
                    rns, rf, rr = _curve_coef(rl, rc, sr)
                if rns < 0.5 or level < SNAP:  # zero release: silent now
                    level = 0.0
                    stage = STAGE_IDLE
        last = g
        out[i] = level * vel
    state[_ST] = stage
    state[_LV] = level
    state[_GT] = 1.0 if last else 0.0
    state[_L0] = l0
    state[_PEND] = 1.0 if pend else 0.0


def env_trigger(state, velocity, retrigger=True):
    """Apply a trigger event to a shaped-envelope state (between kernel calls).

    The attack starts on the next rendered sample, from the current level.
    A different velocity rescales the level so the output (level x
    velocity) does not jump; a level that ends above the new peak glides
    down instead of attacking. ``retrigger=False`` (legato): while the gate
    is held, the trigger changes nothing.
    """
    held = state[_GT] > 0.5 or state[_EVG] > 0.5
    if held and not retrigger:
        state[_EVG] = 1.0
        return
    v = float(velocity)
    old = state[_VEL]
    if state[_LV] > 0.0 and v > 0.0 and v != old:
        state[_LV] = state[_LV] * old / v
    if v > 0.0 or state[_LV] == 0.0:
        state[_VEL] = v
    state[_EVG] = 1.0
    state[_PEND] = 1.0


def env_release(state):
    """Apply a release event: the gate closes (unless the gate input holds it)."""
    state[_EVG] = 0.0


# ---------------------------------------------------------------- batches
@numba.njit(cache=True, nogil=True)
def adsr_batch(out, n, gate_in, connected, ctl, gbuf, attack, decay, sustain, release, sr, state):
    """:func:`adsr_kernel` for a batch of classic adsr nodes (row v = node v).

    ``ctl[v] = [event gate, velocity]``; the gate each node sees is the max of
    its gate input (when ``connected``) and its event gate, as one by one.
    """
    for v in range(out.shape[0]):
        eg = np.float32(ctl[v, 0])
        for i in range(n):
            g = eg
            if connected and gate_in[v, 0, i] > g:
                g = gate_in[v, 0, i]
            gbuf[i] = g
        y = out[v, 0]
        adsr_kernel(y, n, gbuf, attack[v], decay[v], sustain[v], release[v], sr, state[v])
        vel = np.float32(ctl[v, 1])
        if vel != 1.0:
            for i in range(n):
                y[i] *= vel


@numba.njit(cache=True, nogil=True)
def env_batch(out, n, gate_in, attack, decay, sustain, release, acurve, dcurve, rcurve, sr, kind, state):
    """:func:`env_kernel` for a batch of shaped envelopes (row v = node v)."""
    for v in range(out.shape[0]):
        env_kernel(out[v, 0], n, gate_in[v, 0], attack[v], decay[v], sustain[v], release[v], acurve[v],
                   dcurve[v], rcurve[v], sr, kind, state[v])


# ---------------------------------------------------------------------------
# Envelope follower: the amplitude of a signal (the ``follower`` node)
# ---------------------------------------------------------------------------
#
# Two stages per channel, after the decoupled peak detectors of Giannoulis,
# Massberg & Reiss (2012), arranged so that each time is exact:
#
# * peak: a held peak ``h = max(|x|, h * cr)`` (instant rise, exponential fall
#   with the release time), then the output rises toward ``h`` by the one-pole
#   ``y = h + (y - h) * ca`` and follows it down at once (``y = h`` whenever
#   ``h <= y``). A step up of a sine's amplitude therefore rises as a one-pole
#   with the attack time constant (``h`` reaches the new peak within a quarter
#   period), and a fall is the held peak's exponential with the release time
#   constant. With a release much longer than the period, a sine of amplitude
#   ``A`` reads ``A`` (less the droop between peaks, ``T / (2 release)``).
# * rms: the mean square ``m = x^2 + (m - x^2) * ca`` (a one-pole average over
#   the attack time), held as ``h = max(m, h * cr)`` (it falls no faster than
#   the release time) and the output is ``sqrt(h)``: here the times are those
#   of the power. A sine of amplitude ``A`` reads ``A / sqrt(2)`` once the
#   attack averages several periods.
#
# ``ca = exp(-1 / (attack * sr))`` and ``cr = exp(-1 / (release * sr))``: each
# time is a time constant, the 63.2 % (1 - 1/e) time of a step (a rise covers
# 63.2 % of the step in ``attack`` seconds, a fall drops to 36.8 % in
# ``release`` seconds). A zero time is instant (coefficient 0).

#: ``mode`` of :func:`follower_kernel`.
FOLLOW_PEAK = 0
FOLLOW_RMS = 1
#: per channel: ``[output level y (peak mode), held value h, mean square m (rms mode)]``
FOLLOWER_STATE_SIZE = 3
#: the ``db`` output's floor, and the amplitude below which it is reached
FOLLOWER_DB_FLOOR = -100.0
_FOLLOW_AMP_FLOOR = 1e-5
#: held values below this are flushed to 0 (no denormals in a long silence)
_FOLLOW_FLUSH = 1e-30


def follower_state(channels: int) -> np.ndarray:
    """Fresh follower state: float64 ``(channels, FOLLOWER_STATE_SIZE)``, all zero (silence)."""
    return np.zeros((int(channels), FOLLOWER_STATE_SIZE), dtype=np.float64)


@numba.njit(cache=True, nogil=True, inline="always")
def _pole(seconds, sr):
    """One-pole factor of time constant ``seconds`` (0 for a zero, tiny or NaN time: instant)."""
    ns = np.float64(seconds) * sr
    if not ns > _TINY:  # also NaN
        return 0.0
    return np.exp(-1.0 / ns)


@numba.njit(cache=True, nogil=True)
def follower_kernel(x, out, db, n, attack, release, sr, mode, state):
    """Follow the amplitude of ``x`` for ``n`` samples, channel by channel.

    Args:
        x: float32 ``(channels_in, >= n)`` input; output channel ``c`` reads
            input channel ``min(c, channels_in - 1)``.
        out: float32 ``(channels, >= n)``: the envelope, linear amplitude.
        db: float32 ``(channels, >= n)``: the envelope in dB (20 log10),
            floored at :data:`FOLLOWER_DB_FLOOR`.
        n: Number of samples.
        attack, release: float32 ``(>= n,)`` time constants in seconds (see
            the section comment: 63.2 % of a step).
        sr: Sample rate in Hz.
        mode: :data:`FOLLOW_PEAK` or :data:`FOLLOW_RMS`.
        state: float64 ``(channels, FOLLOWER_STATE_SIZE)`` from
            :func:`follower_state`, updated in place.
    """
    cin = x.shape[0]
    for c in range(out.shape[0]):
        xc = x[min(c, cin - 1)]
        y = state[c, 0]
        h = state[c, 1]
        m = state[c, 2]
        # parameter -> coefficient caches (pure functions of the values)
        la = np.nan
        lr = np.nan
        ca = 0.0
        cr = 0.0
        for i in range(n):
            a = attack[i]
            if a != la:
                la = a
                ca = _pole(a, sr)
            r = release[i]
            if r != lr:
                lr = r
                cr = _pole(r, sr)
            s = np.float64(xc[i])
            if not abs(s) < 1e15:  # NaN, inf: no sound to follow (and no inf from s * s)
                s = 0.0
            if mode == FOLLOW_PEAK:
                s = abs(s)
                h *= cr
                if s > h:
                    h = s
                if h < _FOLLOW_FLUSH:
                    h = 0.0
                if h > y:
                    y = h + (y - h) * ca
                else:
                    y = h
                lvl = y
            else:
                p = s * s
                m = p + (m - p) * ca
                if m < _FOLLOW_FLUSH:
                    m = 0.0
                h *= cr
                if m > h:
                    h = m
                if h < _FOLLOW_FLUSH:
                    h = 0.0
                lvl = np.sqrt(h)
            out[c, i] = lvl
            if lvl > _FOLLOW_AMP_FLOOR:
                db[c, i] = 20.0 * np.log10(lvl)
            else:
                db[c, i] = FOLLOWER_DB_FLOOR
        state[c, 0] = y
        state[c, 1] = h
        state[c, 2] = m


@numba.njit(cache=True, nogil=True)
def follower_batch(x, out, db, n, attack, release, sr, mode, state):
    """:func:`follower_kernel` for a batch of followers (row v = node v)."""
    for v in range(out.shape[0]):
        follower_kernel(x[v], out[v], db[v], n, attack[v], release[v], sr, mode, state[v])
