"""Filter kernels (numba): TPT state-variable biquads, ZDF ladder, one-pole, DC blocker.

**State-variable biquads.** Andrew Simper's (Cytomic) linear trapezoidal
state-variable filter, "SvfLinearTrapOptimised2": a topology-preserving
transform (TPT) of the analog SVF, integrated with the trapezoidal rule and
prewarped with ``g = tan(pi * fc / sr)``. For fixed settings it is the
bilinear transform (prewarped at the cutoff) of the analog prototypes of
Robert Bristow-Johnson's Audio-EQ-Cookbook, so every mode's transfer function
equals the cookbook biquad (:func:`rbj_biquad`), peak and shelves included.
Unlike a direct-form biquad its two integrator states keep a physical meaning
when the coefficients move, so cutoff, Q and gain can be modulated at audio
rate without blow-ups or zipper transients.

Per sample (``k = 1 / Q``), in Simper's notation::

    a1 = 1 / (1 + g * (g + k)); a2 = g * a1; a3 = g * a2
    v3 = v0 - ic2eq
    v1 = a1 * ic1eq + a2 * v3          # band (peak gain Q)
    v2 = ic2eq + a2 * ic1eq + a3 * v3  # low
    ic1eq = 2 * v1 - ic1eq
    ic2eq = 2 * v2 - ic2eq
    out = m0 * v0 + m1 * v1 + m2 * v2

with the mixes (``A = 10 ** (gain_dB / 40)``)::

    lowpass   m = (0, 0, 1)          highpass  m = (1, -k, -1)
    bandpass  m = (0, k, 0)          notch     m = (1, -k, 0)
    allpass   m = (1, -2k, 0)
    peak      k = 1 / (Q A),  m = (1, k (A^2 - 1), 0)
    lowshelf  g = g / sqrt(A), m = (1, k (A - 1), A^2 - 1)
    highshelf g = g * sqrt(A), m = (A^2, k (1 - A) A, 1 - A^2)

How the SVF kernels are fast (the cutoff of a synth voice moves every
sample, so the coefficients are the bulk of the work):

* The recursion is rearranged so that its loop-carried dependency is three
  operations long: ``t = v0 - ic2``; ``ic1 <- (2 a1 - 1) ic1 + 2 a2 t``;
  ``ic2 <- ic2 + 2 a2 ic1 + 2 a3 t``; ``v1``, ``v2`` are the means of the old
  and new states. Same transfer function, same states.
* ``g`` comes from :func:`tan_pi` (a Pade approximant, relative error
  < 2e-8 over ``0 <= f/sr < 0.5``) as a fraction ``p/q``, and ``2 a1 - 1,
  2 a2, 2 a3`` from one division: ``2 / (q^2 + p (p + k q))``.
* Samples go in chunks of up to 64, on a grid counted in the state (the
  subnormal flush falls on its edges). Per chunk and lane: if cutoff, Q and
  gain equal the previous sample's, the coefficients are not recomputed at
  all; if only the cutoff moves, they are computed for the whole chunk in a
  SIMD-vectorised loop (``k`` and the mix held); otherwise per sample, the
  Q/gain part (the shelves' ``exp``) only where they change. Every path
  gives the same bits for the same raw values.
* Four lanes (node x channel of a batch) run interleaved, sample by sample:
  four independent recursions hide each other's latency.
* Two compiled variants: the lowpass (no output mix) and every other mode
  (``m0, m1, m2`` per sample). The mode test sits outside the sample loops.

**Ladder.** A zero-delay-feedback TPT model of the Moog 4-pole ladder
(Zavalishin, "The Art of VA Filter Design", ch. 5): four TPT one-pole
lowpasses in series, the output fed back negatively with gain ``k`` through a
``tanh`` saturator at the input summing point, ``u = tanh(drive * x - k * y4)``.
Each sample the implicit equation ``u = tanh(a - c u)`` (``y4`` is linear in
``u``) is solved: a linearised first guess (``tanh(v) ~ v * T`` with ``T`` the
``tanh(v)/v`` ratio of the previous sample, Mystran's "cheap" trick), then one
Newton step, clipped to [-1, 1]. The loop has no unit delay, so with the
prewarped ``g`` it self-oscillates at the cutoff frequency; ``u`` is bounded
and each stage contracts its state, so no modulation can make it blow up.

**One-pole** is the TPT one-pole (lowpass, and highpass = input - lowpass):
-3 dB exactly at the cutoff. **DC blocker** is the classic
``y = x - x[n-1] + R y[n-1]`` with ``R = exp(-2 pi fc / sr)``.

Every kernel is a module-level ``@numba.njit(cache=True, nogil=True, error_model="numpy")``
function ``kernel(x, y, n, <per-sample params>, ..., sr, state)`` for one
node, with a ``*_batch`` twin taking every array with a leading row axis (one
row per node of a batch). Everything that survives a block boundary lives in
the float64 ``state``, so N samples in one call are bit-identical to any
split into consecutive chunks, also with per-sample modulation.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "MODE_LOWPASS", "MODE_HIGHPASS", "MODE_BANDPASS", "MODE_NOTCH", "MODE_ALLPASS", "MODE_PEAK",
    "MODE_LOWSHELF", "MODE_HIGHSHELF", "MODES", "GAIN_MODES",
    "SVF_STATE_COLS", "CUTOFF_MIN", "CUTOFF_MAX_RATIO", "Q_MIN", "Q_MAX", "GAIN_MIN", "GAIN_MAX",
    "tan_pi", "svf_state", "svf_kernel", "svf_batch",
    "svf_multi_kernel", "svf_multi_batch", "rbj_biquad",
    "LADDER_STATE_COLS", "LADDER_K_MAX", "LADDER_SEED_LEVEL", "ladder_state", "ladder_kernel", "ladder_batch",
    "ONEPOLE_STATE_COLS", "onepole_state", "onepole_kernel", "onepole_batch",
    "DCBLOCK_STATE_COLS", "dcblock_state", "dcblock_kernel", "dcblock_batch",
]

#: Lowpass (RBJ "LPF"), 12 dB/octave, gain Q at the cutoff.
MODE_LOWPASS = 0
#: Highpass (RBJ "HPF"), 12 dB/octave, gain Q at the cutoff.
MODE_HIGHPASS = 1
#: Bandpass with a constant 0 dB peak (RBJ "BPF constant 0 dB peak gain").
MODE_BANDPASS = 2
#: Notch (RBJ "notch"), 0 dB far from the cutoff, a zero at the cutoff.
MODE_NOTCH = 3
#: Allpass (RBJ "APF"), unit magnitude, phase -180 degrees at the cutoff.
MODE_ALLPASS = 4
#: Peaking EQ (RBJ "peakingEQ"): ``gain`` dB at the cutoff, 0 dB far away.
MODE_PEAK = 5
#: Low shelf (RBJ "lowShelf"): ``gain`` dB below the cutoff, half of it at the cutoff.
MODE_LOWSHELF = 6
#: High shelf (RBJ "highShelf"): ``gain`` dB above the cutoff, half of it at the cutoff.
MODE_HIGHSHELF = 7
#: Mode names, index = mode number.
MODES = ("lowpass", "highpass", "bandpass", "notch", "allpass", "peak", "lowshelf", "highshelf")
#: The modes that use the gain (dB).
GAIN_MODES = (MODE_PEAK, MODE_LOWSHELF, MODE_HIGHSHELF)

#: Columns of the SVF state, one row per channel:
#: ``[ic1eq, ic2eq, last raw cutoff, last raw q, last raw gain, flush counter]``.
SVF_STATE_COLS = 6
_IC1 = 0
_IC2 = 1
_LFC = 2
_LQ = 3
_LG = 4
_CNT = 5

#: Cutoff clamp: ``[CUTOFF_MIN, CUTOFF_MAX_RATIO * sr]`` Hz (every kernel).
CUTOFF_MIN = 1.0
CUTOFF_MAX_RATIO = 0.49
#: Q clamp (RBJ Q; 0.7071 is Butterworth; for shelves 0.7071 is RBJ's S = 1).
Q_MIN = 0.05
Q_MAX = 100.0
#: Gain clamp (dB) of the peak and shelf modes.
GAIN_MIN = -60.0
GAIN_MAX = 60.0

#: States smaller than this are flushed to zero, so a filter left ringing out
#: in silence never lingers on (slow) subnormal numbers. It is ~-600 dB: far
#: below anything audible or measurable in float32. Checked every
#: ``_FLUSH_PERIOD`` samples (counted in the state, so chunk-invariant): a
#: per-sample test would sit on the recursion's critical path.
_FLUSH = 1e-30
_FLUSH_PERIOD = 64

_LN10_40 = math.log(10.0) / 40.0
_LN10_80 = math.log(10.0) / 80.0


# ------------------------------------------------------------------ helpers
@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _tan_pi_nd(x):
    """``(num, den)`` with ``num / den = tan(pi * x)``, for ``0 <= x < 0.5``.

    The [5/4] Pade approximant of tan on ``[0, pi/4]`` (relative error below
    1.4e-8 there) and ``tan(pi x) = 1 / tan(pi (1/2 - x))`` above ``x = 1/4``
    (``0.5 - x`` is exact in floating point). Returned as a fraction so the
    caller can fold the division into its own.
    """
    hi = x > 0.25
    z = np.pi * (0.5 - x if hi else x)
    z2 = z * z
    p = z * (945.0 + z2 * (z2 - 105.0))
    q = 945.0 + z2 * (15.0 * z2 - 420.0)
    if hi:
        return q, p
    return p, q


@numba.njit(cache=True, nogil=True, error_model="numpy")
def tan_pi(x):
    """``tan(pi * x)`` for ``0 <= x < 0.5`` (relative error < 2e-8): the kernels' prewarp."""
    p, q = _tan_pi_nd(x)
    return p / q


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _clamp_fc(fc, hi):
    # Written so that NaN lands on the lower bound.
    if not fc >= CUTOFF_MIN:
        fc = CUTOFF_MIN
    if fc > hi:
        fc = hi
    return fc


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _clamp(v, lo, hi):
    if not v >= lo:
        v = lo
    if v > hi:
        v = hi
    return v


# ------------------------------------------------------------------ SVF
def svf_state(channels: int) -> np.ndarray:
    """Fresh (all-zero) state for the SVF kernels.

    Args:
        channels: Output channel count C.

    Returns:
        float64 ``(C, SVF_STATE_COLS)``: per channel ``[ic1eq, ic2eq, last raw
        cutoff, last raw q, last raw gain, flush counter]``. Zeros are the
        prepared state (silent integrators; a "last" cutoff/q of 0 just clamps
        and is recomputed on the first sample that differs).
    """
    return np.zeros((int(channels), SVF_STATE_COLS), dtype=np.float64)


# --- per-chunk coefficient scratch ``co[lane, row, j]``: the recursion's
# coefficients and the output mix of each sample of the chunk
_CHUNK = _FLUSH_PERIOD
_R_B1 = 0   # 2 a2
_R_C11 = 1  # 2 a1 - 1
_R_B2 = 2   # 2 a3
_R_M0 = 3   # output mix m0 v0 + m1 v1 + m2 v2
_R_M1 = 4
_R_M2 = 5
_NROWS = 6
# --- per-lane values of the last sample seen ``cur[lane, col]``: raw
# cutoff, q, gain, the shelf's g scale, then the _NROWS coefficients
_U_FC = 0
_U_Q = 1
_U_G = 2
_U_GS = 3
_U_CO = 4
_NCUR = _U_CO + _NROWS


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_kq(q, gdb, mode):
    """Q/gain-dependent values ``(k, m0, m1, m2, gscale)`` of a mode (k folded into the mix)."""
    k = 1.0 / _clamp(q, Q_MIN, Q_MAX)
    gs = 1.0
    if mode == MODE_HIGHPASS:
        return k, 1.0, -k, -1.0, gs
    if mode == MODE_BANDPASS:
        return k, 0.0, k, 0.0, gs
    if mode == MODE_NOTCH:
        return k, 1.0, -k, 0.0, gs
    if mode == MODE_ALLPASS:
        return k, 1.0, -2.0 * k, 0.0, gs
    if mode == MODE_PEAK:
        a = math.exp(_LN10_40 * _clamp(gdb, GAIN_MIN, GAIN_MAX))
        k = k / a
        return k, 1.0, k * (a * a - 1.0), 0.0, gs
    if mode == MODE_LOWSHELF:
        sa = math.exp(_LN10_80 * _clamp(gdb, GAIN_MIN, GAIN_MAX))
        a = sa * sa
        return k, 1.0, k * (a - 1.0), a * a - 1.0, 1.0 / sa
    if mode == MODE_HIGHSHELF:
        sa = math.exp(_LN10_80 * _clamp(gdb, GAIN_MIN, GAIN_MAX))
        a = sa * sa
        return k, a * a, k * (1.0 - a) * a, 1.0 - a * a, sa
    return k, 0.0, 0.0, 1.0, gs  # lowpass


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_g(fc, k, gs, inv_sr, hi):
    """Cutoff-dependent coefficients ``(2 a2, 2 a1 - 1, 2 a3)``, with one division."""
    p, q = _tan_pi_nd(_clamp_fc(fc, hi) * inv_sr)
    p *= gs  # g = gs * p / q
    inv2 = 2.0 / (q * q + p * (p + k * q))
    return p * q * inv2, q * q * inv2 - 1.0, p * p * inv2


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_set_cur(cur, l, fc, q, g, mode, inv_sr, hi):
    """A lane's current values from raw cutoff, q, gain."""
    k, m0, m1, m2, gs = _svf_kq(q, g, mode)
    b1, c11, b2 = _svf_g(fc, k, gs, inv_sr, hi)
    cur[l, _U_FC] = fc
    cur[l, _U_Q] = q
    cur[l, _U_G] = g
    cur[l, _U_GS] = gs
    cur[l, _U_CO + _R_B1] = b1
    cur[l, _U_CO + _R_C11] = c11
    cur[l, _U_CO + _R_B2] = b2
    cur[l, _U_CO + _R_M0] = m0
    cur[l, _U_CO + _R_M1] = m1
    cur[l, _U_CO + _R_M2] = m2


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_moves(cutoff, q, gain, i0, m, cur, l, mode):
    """Does lane ``l`` move over samples ``i0 .. i0+m-1``: ``(cutoff moves, q or gain moves)``.

    Branch-free counts (vectorised) rather than early exits, in float32,
    which the raw values are (``float64(a) != float64(b)`` iff ``a != b``).
    Indices are unsigned: numba then skips its negative-index handling.
    """
    lfc = np.float32(cur[l, _U_FC])
    lq = np.float32(cur[l, _U_Q])
    df = 0
    dq = 0
    for j in range(m):
        i = i0 + np.uint64(j)
        df += cutoff[i] != lfc
        dq += q[i] != lq
    if mode == MODE_PEAK or mode == MODE_LOWSHELF or mode == MODE_HIGHSHELF:
        lg = np.float32(cur[l, _U_G])
        for j in range(m):
            dq += gain[i0 + np.uint64(j)] != lg
    return df != 0, dq != 0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _svf_fill(co, cur, l, cutoff, q, gain, i0, m, qmoves, mode, inv_sr, hi, mix):
    """Coefficients of lane ``l`` for samples ``i0 .. i0+m-1`` into ``co[l, :, :m]``.

    Only the cutoff moving: a vectorised loop (the Pade tan and one division
    per sample), ``k`` and the mix held. Q or gain moving too: every
    coefficient per sample, the q/gain part only where they change. Either
    gives the same bits as :func:`_svf_set_cur` for the same raw values, and
    leaves the last sample's values in ``cur``. ``mix`` False (lowpass)
    skips the mix rows.
    """
    lq = cur[l, _U_Q]
    lg = cur[l, _U_G]
    use_gain = mode == MODE_PEAK or mode == MODE_LOWSHELF or mode == MODE_HIGHSHELF
    r_b1 = co[l, _R_B1]
    r_c11 = co[l, _R_C11]
    r_b2 = co[l, _R_B2]
    r_m0 = co[l, _R_M0]
    r_m1 = co[l, _R_M1]
    r_m2 = co[l, _R_M2]
    k, m0, m1, m2, gs = _svf_kq(lq, lg, mode)
    if not qmoves:
        if mix:
            for j in range(m):
                r_m0[j] = m0
                r_m1[j] = m1
                r_m2[j] = m2
        for j in range(m):
            b1, c11, b2 = _svf_g(np.float64(cutoff[i0 + np.uint64(j)]), k, gs, inv_sr, hi)
            r_b1[j] = b1
            r_c11[j] = c11
            r_b2[j] = b2
    else:
        for j in range(m):
            i = i0 + np.uint64(j)
            qq = np.float64(q[i])
            gg = np.float64(gain[i]) if use_gain else lg
            if qq != lq or gg != lg:
                lq = qq
                lg = gg
                k, m0, m1, m2, gs = _svf_kq(qq, gg, mode)
            b1, c11, b2 = _svf_g(np.float64(cutoff[i]), k, gs, inv_sr, hi)
            r_b1[j] = b1
            r_c11[j] = c11
            r_b2[j] = b2
            if mix:
                r_m0[j] = m0
                r_m1[j] = m1
                r_m2[j] = m2
    e = i0 + np.uint64(m - 1)
    _svf_set_cur(cur, l, np.float64(cutoff[e]), np.float64(q[e]),
                 np.float64(gain[e]) if use_gain else lg, mode, inv_sr, hi)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_chunk(co, cur, l, cutoff, q, gain, i0, m, mode, inv_sr, hi, mix):
    """Prepare lane ``l`` for a chunk; True when nothing moves (its values stay in ``cur``)."""
    fmoves, qmoves = _svf_moves(cutoff, q, gain, i0, m, cur, l, mode)
    if not (fmoves or qmoves):
        return True
    _svf_fill(co, cur, l, cutoff, q, gain, i0, m, qmoves, mode, inv_sr, hi, mix)
    return False


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_copy(co, cur, l, m, mix):
    """A lane that holds still over the chunk, beside others that move: its values into ``co[l, :, :m]``."""
    for r in range(_NROWS if mix else _R_M0):
        val = cur[l, _U_CO + r]
        row = co[l, r]
        for j in range(m):
            row[j] = val


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_step(v0, ic1, ic2, k, mix):
    """One sample of one lane with coefficients ``k = (b1, c11, b2, m0, m1, m2)``:
    ``(new ic1, new ic2, output)``."""
    b1 = k[0]
    t = v0 - ic2
    n1 = k[1] * ic1 + b1 * t
    n2 = ic2 + b1 * ic1 + k[2] * t
    v2 = 0.5 * (ic2 + n2)  # low
    if mix:
        v1 = 0.5 * (ic1 + n1)  # band, peak gain Q
        out = k[3] * v0 + k[4] * v1 + k[5] * v2
    else:
        out = v2
    return n1, n2, out


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _co_at(co, l, j):
    return co[l, 0, j], co[l, 1, j], co[l, 2, j], co[l, 3, j], co[l, 4, j], co[l, 5, j]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _cur_co(cur, l):
    c = _U_CO
    return cur[l, c], cur[l, c + 1], cur[l, c + 2], cur[l, c + 3], cur[l, c + 4], cur[l, c + 5]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _flush(s):
    return 0.0 if -_FLUSH < s < _FLUSH else s


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_count(s):
    """The flush counter from the state (0 for a foreign value: never loop on it)."""
    c = np.int64(s) if s == s else np.int64(0)
    if c < 0 or c >= _FLUSH_PERIOD:
        c = np.int64(0)
    return c


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _svf_lanes1(x, y, n, cutoff, q, gain, state, mode, inv_sr, hi, co, cur, lane, mix):
    """One lane (row ``v``, channel ``c``) on its own."""
    nc = y.shape[1]
    v = lane // nc
    c = lane % nc
    # contiguous views (a batch's param rows are strided views of one
    # block: typed as such, numba's loops over them would not vectorise)
    xs = np.ascontiguousarray(x[v, min(c, x.shape[1] - 1)])
    ys = y[v, c]
    cf = np.ascontiguousarray(cutoff[v])
    qf = np.ascontiguousarray(q[v])
    gf = np.ascontiguousarray(gain[min(v, gain.shape[0] - 1)])
    l = lane - lane  # lane 0 of the scratch (an int64, not a literal)
    _svf_set_cur(cur, l, state[v, c, _LFC], state[v, c, _LQ], state[v, c, _LG], mode, inv_sr, hi)
    s1 = state[v, c, _IC1]
    s2 = state[v, c, _IC2]
    cnt = _svf_count(state[v, c, _CNT])
    i0 = n * 0
    while i0 < n:
        # chunks end on the flush grid (every _FLUSH_PERIOD samples of the lane's life)
        m = min(_FLUSH_PERIOD - cnt, n - i0)
        u0 = np.uint64(i0)
        if _svf_chunk(co, cur, l, cf, qf, gf, u0, m, mode, inv_sr, hi, mix):
            k = _cur_co(cur, l)  # nothing moves: coefficients in registers
            for j in range(m):
                i = u0 + np.uint64(j)
                s1, s2, ys[i] = _svf_step(np.float64(xs[i]), s1, s2, k, mix)
        else:
            for j in range(m):
                i = u0 + np.uint64(j)
                s1, s2, ys[i] = _svf_step(np.float64(xs[i]), s1, s2, _co_at(co, l, j), mix)
        i0 += m
        cnt += m
        if cnt >= _FLUSH_PERIOD:
            cnt = 0
            s1 = _flush(s1)
            s2 = _flush(s2)
    state[v, c, _IC1] = s1
    state[v, c, _IC2] = s2
    state[v, c, _CNT] = cnt
    state[v, c, _LFC] = cur[l, _U_FC]
    state[v, c, _LQ] = cur[l, _U_Q]
    state[v, c, _LG] = cur[l, _U_G]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _svf_lanes4(x, y, n, cutoff, q, gain, state, mode, inv_sr, hi, co, cur, lane, mix):
    """Four lanes interleaved sample by sample: four independent recursions in
    flight hide each one's latency (about twice the throughput of one lane).
    Each lane does exactly what :func:`_svf_lanes1` does, bit for bit: a
    chunk ends where any lane's flush falls (lanes reset at other times than
    their neighbours only make the chunks shorter)."""
    nc = y.shape[1]
    cx = x.shape[1] - 1
    gx = gain.shape[0] - 1
    va = lane // nc
    ca = lane % nc
    vb = (lane + 1) // nc
    cb = (lane + 1) % nc
    vc = (lane + 2) // nc
    cc = (lane + 2) % nc
    vd = (lane + 3) // nc
    cd = (lane + 3) % nc
    xa = np.ascontiguousarray(x[va, min(ca, cx)])
    xb = np.ascontiguousarray(x[vb, min(cb, cx)])
    xc = np.ascontiguousarray(x[vc, min(cc, cx)])
    xd = np.ascontiguousarray(x[vd, min(cd, cx)])
    ya = y[va, ca]
    yb = y[vb, cb]
    yc = y[vc, cc]
    yd = y[vd, cd]
    for l in range(4):
        vl = (lane + l) // nc
        cl = (lane + l) % nc
        _svf_set_cur(cur, l, state[vl, cl, _LFC], state[vl, cl, _LQ], state[vl, cl, _LG], mode, inv_sr, hi)
    a1 = state[va, ca, _IC1]
    a2 = state[va, ca, _IC2]
    b1 = state[vb, cb, _IC1]
    b2 = state[vb, cb, _IC2]
    c1 = state[vc, cc, _IC1]
    c2 = state[vc, cc, _IC2]
    d1 = state[vd, cd, _IC1]
    d2 = state[vd, cd, _IC2]
    na = _svf_count(state[va, ca, _CNT])
    nb = _svf_count(state[vb, cb, _CNT])
    ncc = _svf_count(state[vc, cc, _CNT])
    nd = _svf_count(state[vd, cd, _CNT])
    i0 = n * 0
    while i0 < n:
        # up to the next lane's flush point (the lanes usually share it)
        m = min(_FLUSH_PERIOD - max(max(na, nb), max(ncc, nd)), n - i0)
        u0 = np.uint64(i0)
        held = 0  # bit l: lane l holds still over this chunk
        for l in range(4):
            vl = (lane + l) // nc
            if _svf_chunk(co, cur, l, np.ascontiguousarray(cutoff[vl]), np.ascontiguousarray(q[vl]),
                          np.ascontiguousarray(gain[min(vl, gx)]), u0, m, mode, inv_sr, hi, mix):
                held |= 1 << l
        if held == 15:
            # nothing moves: the coefficients stay in registers
            ka = _cur_co(cur, 0)
            kb = _cur_co(cur, 1)
            kc = _cur_co(cur, 2)
            kd = _cur_co(cur, 3)
            for j in range(m):
                i = u0 + np.uint64(j)
                a1, a2, ya[i] = _svf_step(np.float64(xa[i]), a1, a2, ka, mix)
                b1, b2, yb[i] = _svf_step(np.float64(xb[i]), b1, b2, kb, mix)
                c1, c2, yc[i] = _svf_step(np.float64(xc[i]), c1, c2, kc, mix)
                d1, d2, yd[i] = _svf_step(np.float64(xd[i]), d1, d2, kd, mix)
        else:
            for l in range(4):
                if held & (1 << l):
                    _svf_copy(co, cur, l, m, mix)
            for j in range(m):
                i = u0 + np.uint64(j)
                a1, a2, ya[i] = _svf_step(np.float64(xa[i]), a1, a2, _co_at(co, 0, j), mix)
                b1, b2, yb[i] = _svf_step(np.float64(xb[i]), b1, b2, _co_at(co, 1, j), mix)
                c1, c2, yc[i] = _svf_step(np.float64(xc[i]), c1, c2, _co_at(co, 2, j), mix)
                d1, d2, yd[i] = _svf_step(np.float64(xd[i]), d1, d2, _co_at(co, 3, j), mix)
        i0 += m
        na += m
        if na >= _FLUSH_PERIOD:
            na = 0
            a1 = _flush(a1)
            a2 = _flush(a2)
        nb += m
        if nb >= _FLUSH_PERIOD:
            nb = 0
            b1 = _flush(b1)
            b2 = _flush(b2)
        ncc += m
        if ncc >= _FLUSH_PERIOD:
            ncc = 0
            c1 = _flush(c1)
            c2 = _flush(c2)
        nd += m
        if nd >= _FLUSH_PERIOD:
            nd = 0
            d1 = _flush(d1)
            d2 = _flush(d2)
    state[va, ca, _IC1] = a1
    state[va, ca, _IC2] = a2
    state[va, ca, _CNT] = na
    state[vb, cb, _CNT] = nb
    state[vc, cc, _CNT] = ncc
    state[vd, cd, _CNT] = nd
    state[vb, cb, _IC1] = b1
    state[vb, cb, _IC2] = b2
    state[vc, cc, _IC1] = c1
    state[vc, cc, _IC2] = c2
    state[vd, cd, _IC1] = d1
    state[vd, cd, _IC2] = d2
    for l in range(4):
        vl = (lane + l) // nc
        cl = (lane + l) % nc
        state[vl, cl, _LFC] = cur[l, _U_FC]
        state[vl, cl, _LQ] = cur[l, _U_Q]
        state[vl, cl, _LG] = cur[l, _U_G]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _svf_rows(x, y, n, cutoff, q, gain, sr, state, mode, mix):
    """Every lane (row, channel) of a batch: four at a time interleaved, the
    rest one by one. A scratch of ~3 kB is allocated per call."""
    inv_sr = 1.0 / sr
    hi = CUTOFF_MAX_RATIO * sr
    co = np.empty((4, _NROWS, _CHUNK))
    cur = np.empty((4, _NCUR))
    nc = y.shape[1]
    lanes = y.shape[0] * nc
    lane = nc * 0  # an int64 (a literal 0 would compile the callees twice)
    while lane + 4 <= lanes:
        _svf_lanes4(x, y, n, cutoff, q, gain, state, mode, inv_sr, hi, co, cur, lane, mix)
        lane += 4
    while lane < lanes:
        _svf_lanes1(x, y, n, cutoff, q, gain, state, mode, inv_sr, hi, co, cur, lane, mix)
        lane += 1


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_dispatch(x, y, n, cutoff, q, gain, mode, sr, state):
    # Two compiled variants: the lowpass (the common, benchmarked case: no
    # output mix) and every other mode (a per-sample mix m0 v0 + m1 v1 + m2 v2).
    if mode == MODE_LOWPASS:
        _svf_rows(x, y, n, cutoff, q, gain, sr, state, MODE_LOWPASS, False)
    else:
        _svf_rows(x, y, n, cutoff, q, gain, sr, state, mode, True)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def svf_kernel(x, y, n, cutoff, q, gain, mode, sr, state):
    """TPT state-variable filter (Simper's SvfLinearTrapOptimised2), one node.

    Args:
        x: float32 input ``(Cx, frames)``; channel c reads ``x[min(c, Cx-1)]``
            (a mono input broadcasts to every output channel).
        y: float32 output ``(C, frames)``, ``y[:, :n]`` is written. May be the
            same array as ``x`` (in place) when the shapes match.
        n: Number of samples.
        cutoff: float32 ``(>= n,)`` cutoff in Hz per sample, clamped to
            ``[1, 0.49 * sr]``.
        q: float32 ``(>= n,)`` RBJ Q per sample, clamped to ``[0.05, 100]``.
        gain: float32 ``(>= n,)`` gain in dB per sample, clamped to
            ``[-60, 60]``; read only in the peak and shelf modes.
        mode: 0..7, see :data:`MODES` (an int from Python).
        sr: Sample rate in Hz.
        state: float64 ``(C, 6)`` from :func:`svf_state`, updated in place.
    """
    _svf_dispatch(x[None], y[None], n, cutoff[None], q[None], gain[None], mode, sr, state[None])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def svf_batch(x, y, n, cutoff, q, gain, mode, sr, state):
    """:func:`svf_kernel` for a batch of nodes, row ``v`` of every array is node ``v``.

    ``x (V, Cx, B)``, ``y (V, C, B)``, ``cutoff, q (V, B)``, ``gain (V or 1, B)``
    (one row serves every node), ``state (V, C, 6)``. The same samples as
    calling :func:`svf_kernel` node by node, bit for bit.
    """
    _svf_dispatch(x, y, n, cutoff, q, gain, mode, sr, state)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _svf_multi_run(x, out, lp, hp, bp, notch, n, cutoff, q, sr, state):
    nch = lp.shape[0]
    cx = x.shape[0]
    inv_sr = 1.0 / sr
    hi = CUTOFF_MAX_RATIO * sr
    for c in range(nch):
        xs = x[c if c < cx else cx - 1]
        ic1 = state[c, _IC1]
        ic2 = state[c, _IC2]
        lfc = state[c, _LFC]
        lq = state[c, _LQ]
        cnt = np.int64(state[c, _CNT])
        k = 1.0 / _clamp(lq, Q_MIN, Q_MAX)
        b1, c11, b2 = _svf_g(lfc, k, 1.0, inv_sr, hi)
        for i in range(n):
            fc = np.float64(cutoff[i])
            qq = np.float64(q[i])
            if qq != lq:
                lq = qq
                lfc = fc
                k = 1.0 / _clamp(qq, Q_MIN, Q_MAX)
                b1, c11, b2 = _svf_g(fc, k, 1.0, inv_sr, hi)
            elif fc != lfc:
                lfc = fc
                b1, c11, b2 = _svf_g(fc, k, 1.0, inv_sr, hi)
            v0 = np.float64(xs[i])
            t = v0 - ic2
            n1 = c11 * ic1 + b1 * t
            n2 = ic2 + b1 * ic1 + b2 * t
            kv1 = k * 0.5 * (ic1 + n1)
            v2 = 0.5 * (ic2 + n2)
            ic1 = n1
            ic2 = n2
            out[c, i] = v2
            lp[c, i] = v2
            hp[c, i] = v0 - kv1 - v2
            bp[c, i] = kv1
            notch[c, i] = v0 - kv1
            cnt += 1
            if cnt >= _FLUSH_PERIOD:
                cnt = 0
                ic1 = _flush(ic1)
                ic2 = _flush(ic2)
        state[c, _IC1] = ic1
        state[c, _IC2] = ic2
        state[c, _LFC] = lfc
        state[c, _LQ] = lq
        state[c, _CNT] = cnt


@numba.njit(cache=True, nogil=True, error_model="numpy")
def svf_multi_kernel(x, out, lp, hp, bp, notch, n, cutoff, q, sr, state):
    """State-variable filter with four simultaneous responses (one node).

    Args:
        x: float32 input ``(Cx, frames)`` (mono broadcasts).
        out, lp, hp, bp, notch: float32 outputs ``(C, frames)``: lowpass
            (twice: the default port and ``lp``), highpass (both gain Q at
            the cutoff), bandpass (0 dB peak) and notch, each exactly its
            RBJ cookbook response.
        n: Number of samples.
        cutoff, q: float32 ``(>= n,)`` per sample (clamped as in :func:`svf_kernel`).
        sr: Sample rate in Hz.
        state: float64 ``(C, 6)`` from :func:`svf_state` (its gain column unused).
    """
    _svf_multi_run(x, out, lp, hp, bp, notch, n, cutoff, q, sr, state)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def svf_multi_batch(x, out, lp, hp, bp, notch, n, cutoff, q, sr, state):
    """:func:`svf_multi_kernel` for a batch (leading row axis on every array)."""
    for v in range(lp.shape[0]):
        _svf_multi_run(x[v], out[v], lp[v], hp[v], bp[v], notch[v], n, cutoff[v], q[v], sr, state[v])


def rbj_biquad(mode: int, cutoff: float, q: float, sr: float, gain: float = 0.0):
    """RBJ Audio-EQ-Cookbook biquad matching the SVF kernels' mode.

    The same clamps as the kernels are applied to ``cutoff``, ``q`` and ``gain``.

    Args:
        mode: 0..7, see :data:`MODES`.
        cutoff: Cutoff (centre, shelf midpoint) frequency in Hz.
        q: RBJ Q (for the shelves ``alpha = sin(w0) / (2 Q)``: Q 0.7071 is S = 1).
        sr: Sample rate in Hz.
        gain: dB, for peak and shelves.

    Returns:
        ``(b, a)`` float64 arrays of length 3, normalised so ``a[0] == 1``,
        usable with ``scipy.signal.lfilter`` / ``freqz``.
    """
    fc = min(max(float(cutoff), CUTOFF_MIN), CUTOFF_MAX_RATIO * sr)
    qq = min(max(float(q), Q_MIN), Q_MAX)
    A = 10.0 ** (min(max(float(gain), GAIN_MIN), GAIN_MAX) / 40.0)
    w0 = 2.0 * np.pi * fc / sr
    cw = np.cos(w0)
    alpha = np.sin(w0) / (2.0 * qq)
    a = [1.0 + alpha, -2.0 * cw, 1.0 - alpha]
    if mode == MODE_LOWPASS:
        b = [(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0]
    elif mode == MODE_HIGHPASS:
        b = [(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0]
    elif mode == MODE_BANDPASS:
        b = [alpha, 0.0, -alpha]
    elif mode == MODE_NOTCH:
        b = [1.0, -2.0 * cw, 1.0]
    elif mode == MODE_ALLPASS:
        b = [1.0 - alpha, -2.0 * cw, 1.0 + alpha]
    elif mode == MODE_PEAK:
        b = [1.0 + alpha * A, -2.0 * cw, 1.0 - alpha * A]
        a = [1.0 + alpha / A, -2.0 * cw, 1.0 - alpha / A]
    elif mode in (MODE_LOWSHELF, MODE_HIGHSHELF):
        s = 1.0 if mode == MODE_LOWSHELF else -1.0
        t = 2.0 * np.sqrt(A) * alpha
        b = [A * ((A + 1) - s * (A - 1) * cw + t), s * 2 * A * ((A - 1) - s * (A + 1) * cw),
             A * ((A + 1) - s * (A - 1) * cw - t)]
        a = [(A + 1) + s * (A - 1) * cw + t, -s * 2 * ((A - 1) + s * (A + 1) * cw),
             (A + 1) + s * (A - 1) * cw - t]
    else:
        raise ValueError(f"unknown SVF mode {mode!r}; known: 0..7 {MODES}")
    a0 = a[0]
    return np.asarray(b, dtype=np.float64) / a0, np.asarray(a, dtype=np.float64) / a0


# ------------------------------------------------------------------ ladder
#: Columns of the ladder state, one row per channel:
#: ``[s1, s2, s3, s4, tanh ratio T of the last sample, last raw cutoff, noise seed]``.
LADDER_STATE_COLS = 7
#: Feedback gain at resonance 1. The linear ladder oscillates from k = 4; a
#: margin above it makes the oscillation start within a fraction of a second
#: at low cutoffs, the tanh then limits its amplitude.
LADDER_K_MAX = 4.8
#: Level of the seed noise added at the summing point (-140 dB): enough to
#: start self-oscillation without an input, far below anything audible.
LADDER_SEED_LEVEL = 1e-7
_L_S1 = 0
_L_T = 4
_L_FC = 5
_L_SEED = 6


def ladder_state(channels: int) -> np.ndarray:
    """Fresh state for :func:`ladder_kernel`: ``(C, LADDER_STATE_COLS)`` float64.

    Stages at rest, tanh ratio 1, noise seeds ``1 + c``.
    """
    s = np.zeros((int(channels), LADDER_STATE_COLS), dtype=np.float64)
    s[:, _L_T] = 1.0
    s[:, _L_SEED] = 1.0 + np.arange(int(channels))
    return s


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ladder_run(x, y, n, cutoff, resonance, drive, sr, state):
    nch = y.shape[0]
    cx = x.shape[0]
    inv_sr = 1.0 / sr
    hi = CUTOFF_MAX_RATIO * sr
    for c in range(nch):
        xc = c if c < cx else cx - 1
        s1 = state[c, _L_S1]
        s2 = state[c, _L_S1 + 1]
        s3 = state[c, _L_S1 + 2]
        s4 = state[c, _L_S1 + 3]
        tr = state[c, _L_T]
        lfc = state[c, _L_FC]
        seed = np.int64(state[c, _L_SEED])
        p, q = _tan_pi_nd(_clamp_fc(lfc, hi) * inv_sr)
        G = p / (p + q)  # one-pole gain g / (1 + g)
        B = 1.0 - G
        G4 = (G * G) * (G * G)
        for i in range(n):
            fc = np.float64(cutoff[i])
            if fc != lfc:
                lfc = fc
                p, q = _tan_pi_nd(_clamp_fc(fc, hi) * inv_sr)
                G = p / (p + q)
                B = 1.0 - G
                G4 = (G * G) * (G * G)
            k = LADDER_K_MAX * _clamp(np.float64(resonance[i]), 0.0, 1.0)
            d = _clamp(np.float64(drive[i]), 0.0, 100.0)
            seed = (seed * 1664525 + 1013904223) & 0xFFFFFFFF
            xin = d * np.float64(x[xc, i]) + LADDER_SEED_LEVEL * (seed * 2.3283064365386963e-10 - 0.5)
            # y4 = G^4 u + S; solve u = tanh(xin - k y4) = tanh(a - cc u)
            S = B * (s4 + G * (s3 + G * (s2 + G * s1)))
            a = xin - k * S
            cc = k * G4
            u = tr * a / (1.0 + tr * cc)  # linearised with last sample's tanh(v)/v
            v = a - cc * u
            th = math.tanh(v)
            u -= (u - th) / (1.0 + cc * (1.0 - th * th))  # one Newton step
            if u > 1.0:
                u = 1.0
            elif u < -1.0:
                u = -1.0
            tr = th / v if (v > 1e-6 or v < -1e-6) else 1.0
            y1 = G * u + B * s1
            s1 = 2.0 * y1 - s1
            y2 = G * y1 + B * s2
            s2 = 2.0 * y2 - s2
            y3 = G * y2 + B * s3
            s3 = 2.0 * y3 - s3
            y4 = G * y3 + B * s4
            s4 = 2.0 * y4 - s4
            y[c, i] = y4
        state[c, _L_S1] = s1
        state[c, _L_S1 + 1] = s2
        state[c, _L_S1 + 2] = s3
        state[c, _L_S1 + 3] = s4
        state[c, _L_T] = tr
        state[c, _L_FC] = lfc
        state[c, _L_SEED] = seed


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ladder_kernel(x, y, n, cutoff, resonance, drive, sr, state):
    """Moog-style 4-pole ZDF ladder lowpass with a tanh at the feedback summing point.

    Args:
        x: float32 input ``(Cx, frames)`` (mono broadcasts).
        y: float32 output ``(C, frames)``.
        n: Number of samples.
        cutoff: float32 ``(>= n,)`` Hz, clamped to ``[1, 0.49 sr]``.
        resonance: float32 ``(>= n,)`` 0..1 (feedback ``k = 4.8 r``; the
            linear ladder self-oscillates from ``r = 4 / 4.8 = 0.83``).
        drive: float32 ``(>= n,)`` input gain into the tanh, clamped to [0, 100].
        sr: Sample rate in Hz.
        state: float64 ``(C, 7)`` from :func:`ladder_state`.
    """
    _ladder_run(x, y, n, cutoff, resonance, drive, sr, state)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def ladder_batch(x, y, n, cutoff, resonance, drive, sr, state):
    """:func:`ladder_kernel` for a batch (leading row axis on every array)."""
    for v in range(y.shape[0]):
        _ladder_run(x[v], y[v], n, cutoff[v], resonance[v], drive[v], sr, state[v])


# ------------------------------------------------------------------ one-pole
#: Columns of the one-pole state: ``[s, last raw cutoff, flush counter]``.
ONEPOLE_STATE_COLS = 3


def onepole_state(channels: int) -> np.ndarray:
    """Fresh (all-zero) state for :func:`onepole_kernel`: ``(C, 3)`` float64."""
    return np.zeros((int(channels), ONEPOLE_STATE_COLS), dtype=np.float64)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _onepole_run(x, y, n, cutoff, highpass, sr, state):
    nch = y.shape[0]
    cx = x.shape[0]
    inv_sr = 1.0 / sr
    hi = CUTOFF_MAX_RATIO * sr
    for c in range(nch):
        xc = c if c < cx else cx - 1
        s = state[c, 0]
        lfc = state[c, 1]
        cnt = np.int64(state[c, 2])
        p, q = _tan_pi_nd(_clamp_fc(lfc, hi) * inv_sr)
        G = p / (p + q)
        for i in range(n):
            fc = np.float64(cutoff[i])
            if fc != lfc:
                lfc = fc
                p, q = _tan_pi_nd(_clamp_fc(fc, hi) * inv_sr)
                G = p / (p + q)
            v0 = np.float64(x[xc, i])
            v = G * (v0 - s)
            lp = v + s
            s = lp + v
            y[c, i] = v0 - lp if highpass else lp
            cnt += 1
            if cnt >= _FLUSH_PERIOD:
                cnt = 0
                if -_FLUSH < s < _FLUSH:
                    s = 0.0
        state[c, 0] = s
        state[c, 1] = lfc
        state[c, 2] = cnt


@numba.njit(cache=True, nogil=True, error_model="numpy")
def onepole_kernel(x, y, n, cutoff, highpass, sr, state):
    """TPT one-pole lowpass (or highpass = input - lowpass), -3 dB at the cutoff.

    Args:
        x: float32 input ``(Cx, frames)`` (mono broadcasts).
        y: float32 output ``(C, frames)``.
        n: Number of samples.
        cutoff: float32 ``(>= n,)`` Hz, clamped to ``[1, 0.49 sr]``.
        highpass: bool, the highpass output instead of the lowpass.
        sr: Sample rate in Hz.
        state: float64 ``(C, 3)`` from :func:`onepole_state`.
    """
    _onepole_run(x, y, n, cutoff, highpass, sr, state)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def onepole_batch(x, y, n, cutoff, highpass, sr, state):
    """:func:`onepole_kernel` for a batch (leading row axis on every array)."""
    for v in range(y.shape[0]):
        _onepole_run(x[v], y[v], n, cutoff[v], highpass, sr, state[v])


# ------------------------------------------------------------------ DC blocker
#: Columns of the DC blocker state: ``[x1, y1, last raw cutoff, flush counter]``.
DCBLOCK_STATE_COLS = 4


def dcblock_state(channels: int) -> np.ndarray:
    """Fresh (all-zero) state for :func:`dcblock_kernel`: ``(C, 4)`` float64."""
    return np.zeros((int(channels), DCBLOCK_STATE_COLS), dtype=np.float64)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _dcblock_run(x, y, n, cutoff, sr, state):
    nch = y.shape[0]
    cx = x.shape[0]
    w = -2.0 * np.pi / sr
    hi = CUTOFF_MAX_RATIO * sr
    for c in range(nch):
        xc = c if c < cx else cx - 1
        x1 = state[c, 0]
        y1 = state[c, 1]
        lfc = state[c, 2]
        cnt = np.int64(state[c, 3])
        r = math.exp(w * _clamp_fc(lfc, hi))
        for i in range(n):
            fc = np.float64(cutoff[i])
            if fc != lfc:
                lfc = fc
                r = math.exp(w * _clamp_fc(fc, hi))
            v0 = np.float64(x[xc, i])
            y1 = v0 - x1 + r * y1
            x1 = v0
            y[c, i] = y1
            cnt += 1
            if cnt >= _FLUSH_PERIOD:
                cnt = 0
                if -_FLUSH < y1 < _FLUSH:
                    y1 = 0.0
        state[c, 0] = x1
        state[c, 1] = y1
        state[c, 2] = lfc
        state[c, 3] = cnt


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dcblock_kernel(x, y, n, cutoff, sr, state):
    """DC blocker ``y = x - x[n-1] + R y[n-1]``, ``R = exp(-2 pi cutoff / sr)``.

    A zero at DC and a pole at R just inside it: about -3 dB at the cutoff
    (for cutoffs far below the sample rate), flat above. At 10 Hz and 48 kHz,
    R = 0.99869.

    Args:
        x: float32 input ``(Cx, frames)`` (mono broadcasts).
        y: float32 output ``(C, frames)``.
        n: Number of samples.
        cutoff: float32 ``(>= n,)`` Hz, clamped to ``[1, 0.49 sr]``.
        sr: Sample rate in Hz.
        state: float64 ``(C, 4)`` from :func:`dcblock_state`.
    """
    _dcblock_run(x, y, n, cutoff, sr, state)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dcblock_batch(x, y, n, cutoff, sr, state):
    """:func:`dcblock_kernel` for a batch (leading row axis on every array)."""
    for v in range(y.shape[0]):
        _dcblock_run(x[v], y[v], n, cutoff[v], sr, state[v])
