"""Kernels (numba) for the effects and dynamics nodes.

Every kernel is a module-level ``@numba.njit(cache=True, nogil=True)``
function that renders one node for ``n`` samples. Everything that survives a
sample lives in explicit float64 arrays passed in (``state`` and, for delay
lines, ``buf``), so N samples in one call are identical to any split into
consecutive calls. Constant tables (filter taps, layouts) are passed as
arguments too, never kept as globals that change.

Contents:

* Oversampling: linear-phase halfband FIR stages (Kaiser-windowed sinc),
  polyphase: an interpolator by 2 computes one FIR phase (the other is a pure
  delay), a decimator by 2 computes only the kept output.
  :func:`halfband_taps` designs them, :func:`ws_kernel` runs them around a
  memoryless waveshaper.
* :func:`crush_kernel`: sample-and-hold rate reduction and quantisation.
* :func:`mod_delay_kernel`: chorus / flanger (modulated fractional delays,
  4-point Hermite interpolation).
* :func:`fdn_kernel`: feedback delay network reverb (Jot): orthogonal
  Hadamard or Householder matrix, per-line two-band absorption giving the
  requested T60 below and above a crossover.
* :func:`comp_kernel`: feed-forward compressor (Giannoulis, Massberg and
  Reiss 2012: soft-knee gain computer, smooth decoupled peak detector in the
  log domain).
* :func:`limiter_kernel`: lookahead brickwall limiter (running minimum of
  the needed gain, instant attack and exponential release, then a box
  average as long as the lookahead; never above the ceiling).
* :func:`width_kernel`: mid/side stereo width.
* :func:`player_kernel`: sample playback with cubic interpolation.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._fastmath import sin2pi
from ._interp import hermite as _hermite

__all__ = [
    "SHAPES", "HB_K", "halfband_taps", "ws_latency", "ws_state", "ws_kernel", "shape_curve",
    "crush_kernel", "mod_delay_kernel",
    "FDN_MOD_DEPTH", "FDN_SIZE_MAX", "FDN_DIFF_MS", "FDN_DIFF_MAX", "fdn_lengths", "fdn_state", "fdn_kernel",
    "comp_kernel", "gain_computer", "TP_K", "true_peak_taps", "limiter_kernel", "width_kernel",
    "player_kernel", "ring_size",
]

#: values smaller than this are flushed to zero (about -600 dB) so decaying
#: recursions never run on slow subnormal numbers
_FLUSH = 1e-30
_LN10_20 = math.log(10.0) / 20.0


def ring_size(samples: float) -> int:
    """Smallest power of two ``>= samples + 8`` (a ring with guard taps)."""
    need = int(math.ceil(max(float(samples), 1.0))) + 8
    return 1 << (need - 1).bit_length()


@numba.njit(cache=True, nogil=True, inline="always")
def _read(buf, base, mask, w, d):
    """Value ``d`` samples before slot ``w`` of the ring ``buf[base:base+mask+1]``.

    ``d >= 1`` (the slot ``w`` itself is not read): Hermite over the taps
    ``m-1 .. m+2`` samples back for ``d >= 2``, linear between 1 and 2.
    """
    m = np.int64(d)
    f = d - m
    if m >= 2:
        return _hermite(buf[base + ((w - m + 1) & mask)], buf[base + ((w - m) & mask)],
                        buf[base + ((w - m - 1) & mask)], buf[base + ((w - m - 2) & mask)], f)
    z0 = buf[base + ((w - 1) & mask)]
    return z0 + f * (buf[base + ((w - 2) & mask)] - z0)


# ================================================================ oversampling
#: halfband stages: K per stage (taps 4K - 1) and Kaiser beta. Stage 1 (next
#: to the base rate) is steep: passband to 0.44 fs, stopband from 0.56 fs,
#: about -98 dB; later stages only guard a band that is ever smaller.
HB_K = (28, 7, 5)
_HB_BETA = (10.0, 10.0, 10.0)


def halfband_taps():
    """The even-indexed taps of each halfband stage, ``(3, 2 * HB_K[0])`` float64.

    Stage k's filter has ``N = 4K - 1`` taps ``h`` centred on ``c = 2K - 1``
    with ``h[c] = 0.5`` and zeros at every other odd index; row k holds
    ``h[0], h[2], ..., h[4K - 2]`` (the 2K taps of the phase that is computed),
    normalised so they sum to exactly 0.5 (unit gain at DC).
    """
    out = np.zeros((len(HB_K), 2 * HB_K[0]))
    for k, (K, beta) in enumerate(zip(HB_K, _HB_BETA)):
        N = 4 * K - 1
        c = (N - 1) // 2
        nn = np.arange(N)
        h = 0.5 * np.sinc((nn - c) / 2.0) * np.kaiser(N, beta)
        even = h[0::2]
        out[k, :2 * K] = even * (0.5 / even.sum())
    return out


def ws_latency(stages: int) -> tuple[int, int]:
    """``(latency in base samples, extra delay E in top-rate samples)`` for ``2**stages`` oversampling.

    Each up and down stage k (k = 1 at the base rate) delays by ``2K - 1``
    samples at its rate ``2**k fs``; ``E`` top-rate samples are added so the
    total is a whole number of base samples (the dry path is delayed alike).
    """
    F = 1 << stages
    top = 0
    for k in range(stages):
        top += 2 * (2 * HB_K[k] - 1) * (F >> (k + 1))
    extra = (-top) % F
    return (top + extra) // F, extra


def _ws_cols(stages, latency):
    """Columns of a row of the waveshaper state: per stage k an interpolator history (2K), the
    decimator's even (2K) and odd (K) histories; 8 slots of top-rate delay; the dry ring (latency)
    and its position; the DC blocker (2); two scratch levels of 2**stages values."""
    cols = 0
    for k in range(stages):
        cols += 5 * HB_K[k]
    return cols + 8 + latency + 1 + 2 + 2 * (1 << stages)


def ws_state(channels: int, stages: int):
    """Fresh state for :func:`ws_kernel`: float64 ``(C, cols)`` zeros, and ``(latency, extra)``."""
    lat, extra = ws_latency(stages)
    return np.zeros((int(channels), _ws_cols(stages, lat)), dtype=np.float64), lat, extra


#: shape numbers of :func:`_shape`
SHAPES = ("tanh", "soft", "hard", "fold", "trifold", "asym")


@numba.njit(cache=True, nogil=True, inline="always")
def _shape(u, shape):
    if shape == 0:  # tanh
        return math.tanh(u)
    if shape == 1:  # cubic soft clip: 1.5u - 0.5u^3, flat beyond |u| = 1
        if u >= 1.0:
            return 1.0
        if u <= -1.0:
            return -1.0
        return u * (1.5 - 0.5 * u * u)
    if shape == 2:  # hard clip
        if u > 1.0:
            return 1.0
        if u < -1.0:
            return -1.0
        return u
    if shape == 3:  # sine folder
        return sin2pi(0.25 * u)
    if shape == 4:  # triangle folder: reflects at +-1
        v = u + 1.0
        v -= 4.0 * math.floor(v * 0.25)
        return 1.0 - abs(v - 2.0)
    # asym (tube-like): tanh above zero, a softer exponential knee below
    if u >= 0.0:
        return math.tanh(u)
    if u < -700.0:
        return -1.0
    return math.expm1(u)


@numba.njit(cache=True, nogil=True)
def shape_curve(u, shape):
    """The static curve as a vectorised helper (tests): ``y[i] = shape(u[i])``."""
    y = np.empty_like(u)
    for i in range(u.size):
        y[i] = _shape(u[i], shape)
    return y


@numba.njit(cache=True, nogil=True, inline="always")
def _stage_off(k):
    off = 0
    for kk in range(k):
        off += 5 * HB_K[kk]
    return off


@numba.njit(cache=True, nogil=True, inline="always")
def halfband_up(st, taps, stages, cur, nxt):
    """Upsample the one value at ``st[cur]`` through ``stages`` halfband stages (2x each).

    Polyphase: each stage's history lives at ``_stage_off(k)``; the
    ``2**stages`` values end up at the returned ``cur`` (``nxt`` is scratch).
    """
    ln = 1
    for k in range(stages):
        K = HB_K[k]
        hu = _stage_off(k)
        for j in range(ln):
            v = st[cur + j]
            acc = 0.0
            for q in range(2 * K - 1, 0, -1):
                st[hu + q] = st[hu + q - 1]
                acc += taps[k, q] * st[hu + q]
            st[hu] = v
            acc += taps[k, 0] * v
            st[nxt + 2 * j] = 2.0 * acc
            st[nxt + 2 * j + 1] = st[hu + K - 1]
        cur, nxt = nxt, cur
        ln *= 2
    return cur, nxt


@numba.njit(cache=True, nogil=True, inline="always")
def halfband_down(st, taps, stages, cur, nxt):
    """Decimate the ``2**stages`` values at ``st[cur]`` back to one; returns where it is."""
    ln = 1 << stages
    for k in range(stages - 1, -1, -1):
        K = HB_K[k]
        he = _stage_off(k) + 2 * K
        ho = he + 2 * K
        ln //= 2
        for j in range(ln):
            ev = st[cur + 2 * j]
            od = st[cur + 2 * j + 1]
            acc = 0.0
            for q in range(2 * K - 1, 0, -1):
                st[he + q] = st[he + q - 1]
                acc += taps[k, q] * st[he + q]
            st[he] = ev
            acc += taps[k, 0] * ev + 0.5 * st[ho + K - 1]
            for q in range(K - 1, 0, -1):
                st[ho + q] = st[ho + q - 1]
            st[ho] = od
            st[nxt + j] = acc
        cur, nxt = nxt, cur
    return cur


@numba.njit(cache=True, nogil=True)
def ws_kernel(x, y, n, drive_db, bias, mix, level_db, shape, stages, extra, latency, dc_r, taps, state):
    """Oversampled waveshaper: ``level * ((1 - mix) * dry + mix * dc(shape(g x + b) - shape(b)))``.

    Per base sample the driven input ``g x`` (``g = 10**(drive/20)``) is
    interpolated by ``2**stages`` through the halfband stages, shaped at the
    top rate (plus ``extra`` samples of delay), decimated back through the
    same stages. The dry signal is delayed by ``latency`` so the mix does not
    comb. ``dc_r`` > 0 enables a one-pole DC blocker on the wet signal.

    Args:
        x: float32 ``(Cx, frames)``; channel c reads ``x[min(c, Cx-1)]``.
        y: float32 ``(C, frames)``; ``y[:, :n]`` written.
        drive_db, bias, mix, level_db: float32 ``(>= n,)`` per sample.
        shape: index into :data:`SHAPES`.
        stages: 0..3 (oversampling 1, 2, 4, 8).
        extra, latency: from :func:`ws_latency`.
        dc_r: DC blocker pole (0 disables it).
        taps: :func:`halfband_taps`.
        state: float64 ``(>= C, cols)`` from :func:`ws_state`.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    F = 1 << stages
    # layout of one row (see _ws_cols): per stage [up 2K | even 2K | odd K]
    off = 0
    for k in range(stages):
        off += 5 * HB_K[k]
    o_ex = off
    off += 8
    o_dry = off
    off += latency
    o_pos = off
    off += 1
    o_dc = off
    off += 2
    o_sa = off
    o_sb = off + F
    for c in range(nch):
        xc = c if c < cx else cx - 1
        st = state[c]
        pos = np.int64(st[o_pos])
        for i in range(n):
            g = math.exp(np.float64(drive_db[i]) * _LN10_20)
            b = np.float64(bias[i])
            xin = np.float64(x[xc, i])
            # ---- up: level k has 2**k values in the scratch area
            cur = o_sa
            nxt = o_sb
            st[cur] = g * xin
            cur, nxt = halfband_up(st, taps, stages, cur, nxt)
            # ---- shape at the top rate
            sb = _shape(b, shape)
            for j in range(F):
                v = st[cur + j]
                if extra > 0:
                    d = st[o_ex + extra - 1]
                    for q in range(extra - 1, 0, -1):
                        st[o_ex + q] = st[o_ex + q - 1]
                    st[o_ex] = v
                    v = d
                st[cur + j] = _shape(v + b, shape) - sb
            # ---- down
            cur = halfband_down(st, taps, stages, cur, nxt)
            wet = st[cur]
            if dc_r > 0.0:
                yd = wet - st[o_dc] + dc_r * st[o_dc + 1]
                if -_FLUSH < yd < _FLUSH:
                    yd = 0.0
                st[o_dc] = wet
                st[o_dc + 1] = yd
                wet = yd
            if latency > 0:
                dry = st[o_dry + pos]
                st[o_dry + pos] = xin
                pos += 1
                if pos >= latency:
                    pos = 0
            else:
                dry = xin
            m = np.float64(mix[i])
            lvl = math.exp(np.float64(level_db[i]) * _LN10_20)
            y[c, i] = lvl * ((1.0 - m) * dry + m * wet)
        st[o_pos] = pos


# ================================================================ bitcrush
@numba.njit(cache=True, nogil=True)
def crush_kernel(x, y, n, bits, rate, mix, sr, state):
    """Sample-and-hold at ``rate`` Hz, then quantisation to ``2**(bits-1)`` steps per polarity.

    Args:
        x, y: float32 ``(Cx, frames)`` in, ``(C, frames)`` out.
        bits: float32 per sample, 1..24 (continuous: steps ``2**(bits-1)``).
        rate: float32 per sample, hold rate in Hz (>= sr: every sample).
        mix: float32 per sample, 0 dry .. 1 crushed.
        state: float64 ``(1 + C,)``: ``[phase, held value per channel]``;
            a fresh state is ``[1, 0...]`` (the first sample is taken).
    """
    nch = y.shape[0]
    cx = x.shape[0]
    ph = state[0]
    for i in range(n):
        r = np.float64(rate[i]) / sr
        if not r > 0.0:
            r = 0.0
        ph += r
        take = ph >= 1.0
        if take:
            ph -= math.floor(ph)
        bt = np.float64(bits[i])
        if not bt >= 1.0:
            bt = 1.0
        if bt > 24.0:
            bt = 24.0
        steps = math.exp2(bt - 1.0)
        m = np.float64(mix[i])
        for c in range(nch):
            xv = np.float64(x[c if c < cx else cx - 1, i])
            if take:
                state[1 + c] = xv
            q = math.floor(state[1 + c] * steps + 0.5) / steps
            y[c, i] = (1.0 - m) * xv + m * q
    state[0] = ph


# ================================================================ chorus / flanger
@numba.njit(cache=True, nogil=True)
def mod_delay_kernel(x, y, n, rate, depth, delay, feedback, mix, spread, sr, voices, chorus, buf, state):
    """Modulated fractional delay lines: a chorus (voices panned across a stereo pair) or a flanger.

    Each voice v reads its channel's line ``delay + depth * (1 + sin(2 pi
    (phi + o_v))) / 2`` seconds back (Hermite interpolation; at least 1
    sample). The line takes ``x + feedback * wet``.

    * chorus (``chorus`` true, ``y`` stereo): voice v has phase offset
      ``v / voices`` (times ``2 * spread``), pan from hard left to hard right;
      left voices read line 0, right voices line 1 (the same for a mono
      input); the wet pair is normalised so identical voices sum to unity;
      both lines are fed back with the wet mid signal.
    * flanger: one voice per output channel, channel c has phase offset
      ``c * spread``; each line feeds back its own tap.

    Output: ``(1 - mix) * dry + mix * wet`` per channel.

    Args:
        buf: float64 ``(C, size)`` rings, size a power of two (:func:`ring_size`).
        state: float64 ``(2,)``: ``[LFO phase in cycles, write position]``.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    mask = buf.shape[1] - 1
    hi = float(buf.shape[1] - 8)
    ph = state[0]
    w = np.int64(state[1])
    for i in range(n):
        fb = np.float64(feedback[i])
        if not fb >= -0.99:
            fb = -0.99
        if fb > 0.99:
            fb = 0.99
        dl = np.float64(delay[i]) * sr
        dp = np.float64(depth[i]) * sr
        if not dp >= 0.0:
            dp = 0.0
        sp = np.float64(spread[i])
        m = np.float64(mix[i])
        if chorus:
            wl = 0.0
            wr = 0.0
            nl = 0.0
            nr = 0.0
            for v in range(voices):
                if voices > 1:
                    p = -1.0 + 2.0 * v / (voices - 1)
                    off = 2.0 * sp * v / voices
                else:
                    p = 0.0
                    off = 0.0
                d = dl + dp * 0.5 * (1.0 + sin2pi(ph + off))
                if not d >= 1.0:
                    d = 1.0
                if d > hi:
                    d = hi
                row = 0 if p <= 0.0 else 1
                if row >= buf.shape[0]:
                    row = buf.shape[0] - 1
                tap = _read(buf[row], 0, mask, w, d)
                gl = math.cos((p + 1.0) * 0.25 * math.pi)
                gr = math.sin((p + 1.0) * 0.25 * math.pi)
                wl += gl * tap
                wr += gr * tap
                nl += gl
                nr += gr
            wl /= nl
            wr /= nr
            mid = 0.5 * (wl + wr)
            xl = np.float64(x[0, i])
            xr = np.float64(x[1 if cx > 1 else 0, i])
            for r in range(buf.shape[0]):
                vv = (xl if r == 0 else xr) + fb * mid
                if -_FLUSH < vv < _FLUSH:
                    vv = 0.0
                buf[r, w] = vv
            y[0, i] = (1.0 - m) * xl + m * wl
            y[1, i] = (1.0 - m) * xr + m * wr
        else:
            for c in range(nch):
                d = dl + dp * 0.5 * (1.0 + sin2pi(ph + c * sp))
                if not d >= 1.0:
                    d = 1.0
                if d > hi:
                    d = hi
                tap = _read(buf[c], 0, mask, w, d)
                xv = np.float64(x[c if c < cx else cx - 1, i])
                vv = xv + fb * tap
                if -_FLUSH < vv < _FLUSH:
                    vv = 0.0
                buf[c, w] = vv
                y[c, i] = (1.0 - m) * xv + m * tap
        w = (w + 1) & mask
        r = np.float64(rate[i]) / sr
        if not r >= 0.0:
            r = 0.0
        ph += r
        if ph >= 1.0:
            ph -= math.floor(ph)
    state[0] = ph
    state[1] = w


# ================================================================ reverb
_FDN_MS_8 = (29.7, 37.1, 41.9, 47.3, 53.9, 61.1, 67.7, 79.3)
_FDN_MS_16 = (21.1, 24.7, 27.9, 31.3, 34.9, 38.3, 42.1, 45.7, 49.9, 53.3, 57.7, 61.9, 66.1, 71.3, 76.1, 81.7)
#: depth of the line modulation at mod = 1 (seconds)
FDN_MOD_DEPTH = 0.0006
#: longest size factor
FDN_SIZE_MAX = 2.0
#: input diffusers: 4 Schroeder allpasses per input channel (ms), left then right
FDN_DIFF_MS = (4.771, 3.595, 2.734, 1.987, 4.913, 3.711, 2.621, 1.873)
FDN_DIFF_MAX = 0.006

# state layout (1D): a header, then per line blocks of N
_F_W = 0        # write position of the lines
_F_PW = 1       # write position of the predelay rings
_F_DEC = 2      # cached raw decay, damping, crossover, size
_F_DAMP = 3
_F_XO = 4
_F_SIZE = 5
_F_XG = 6       # crossover one-pole coefficient a = G / (1 + G)
_F_DW = 7       # write position of the diffuser rings
_F_HDR = 8
_F_BLOCKS = 7   # phase, lp, g0, gpi, len, rate, allpass-interpolator output


def fdn_lengths(lines: int) -> np.ndarray:
    """Line lengths at size 1, in seconds."""
    return np.array(_FDN_MS_8 if lines == 8 else _FDN_MS_16) / 1000.0


def fdn_state(lines: int):
    """Fresh state for :func:`fdn_kernel`: float64 ``(8 + 7 * lines,)``."""
    st = np.zeros(_F_HDR + _F_BLOCKS * lines)
    st[_F_DEC:_F_SIZE + 1] = -1.0  # no cached params: computed on the first sample
    o_rate = _F_HDR + 5 * lines
    st[o_rate:o_rate + lines] = 0.31 + 0.53 * np.arange(lines) / max(lines - 1, 1) + 0.017 * (np.arange(lines) % 3)
    st[_F_HDR:_F_HDR + lines] = (np.arange(lines) * 0.618034) % 1.0
    return st


@numba.njit(cache=True, nogil=True, inline="always")
def _fwht(v, N):
    """In-place orthonormal fast Walsh-Hadamard transform of v[:N] (N a power of two)."""
    h = 1
    while h < N:
        for i in range(0, N, 2 * h):
            for j in range(i, i + h):
                a = v[j]
                b = v[j + h]
                v[j] = a + b
                v[j + h] = a - b
        h *= 2
    s = 1.0 / math.sqrt(N)
    for j in range(N):
        v[j] *= s


@numba.njit(cache=True, nogil=True)
def fdn_kernel(x, y, n, decay, damping, crossover, size, predelay, mod, diffusion, mix, sr, N, householder, ms,
               buf, line_size, pre_size, diff_size, state, tmp):
    """Feedback delay network reverb, mono or stereo in, stereo out.

    Per sample: each input channel goes through its predelay ring (Hermite
    read) and 4 Schroeder allpasses (gain ``diffusion``), then feeds the N
    delay lines (alternating signs; a stereo input alternates channels).
    Line j is read ``ms[j] * size * sr`` samples back (+ a slow sine
    modulation of up to ``mod * 0.6 ms``) through a first-order allpass
    interpolator (lossless, so the decay is only what is asked), then a
    first-order shelf (TPT one-pole split at ``crossover``) with gains
    ``10**(-3 d / (T60 sr))`` for the line's length d, T60 = ``decay`` below
    and ``decay * (1 - damping)`` above the crossover: every mode decays at
    the requested rate. The filtered taps go through the orthonormal
    feedback matrix (Hadamard, or Householder ``I - 2/N 11^T``) back into the
    lines. Left and right are two orthogonal sign patterns over the taps.

    Stable at every setting: the matrix is orthonormal, the allpasses are
    lossless, the shelf's gain is at most its DC gain < 1.

    Args:
        x: float32 ``(Cx, frames)`` (Cx 1 or 2); y: float32 ``(2, frames)``.
        decay..mix: float32 per sample param buffers.
        N: number of lines (8 or 16); householder: bool.
        ms: float64 ``(N,)`` line lengths at size 1, seconds.
        buf: float64 flat: N rings of ``line_size``, Cx predelay rings of
            ``pre_size``, then 4 * Cx diffuser rings of ``diff_size``.
        state: float64 from :func:`fdn_state`; tmp: float64 ``(N,)`` scratch.
    """
    cx = x.shape[0]
    lmask = line_size - 1
    pmask = pre_size - 1
    dmask = diff_size - 1
    pbase = N * line_size
    dbase = pbase + cx * pre_size
    o_ph = _F_HDR
    o_lp = o_ph + N
    o_g0 = o_lp + N
    o_gp = o_g0 + N
    o_len = o_gp + N
    o_rt = o_len + N
    o_ap = o_rt + N
    w = np.int64(state[_F_W])
    pw = np.int64(state[_F_PW])
    dw = np.int64(state[_F_DW])
    dhi = float(line_size - 8)
    phi = float(pre_size - 8)
    inv = 1.0 / math.sqrt(N)
    for i in range(n):
        dec = np.float64(decay[i])
        dmp = np.float64(damping[i])
        xo = np.float64(crossover[i])
        sz = np.float64(size[i])
        if dec != state[_F_DEC] or dmp != state[_F_DAMP] or xo != state[_F_XO] or sz != state[_F_SIZE]:
            state[_F_DEC] = dec
            state[_F_DAMP] = dmp
            state[_F_XO] = xo
            state[_F_SIZE] = sz
            if not dec >= 0.01:
                dec = 0.01
            if not dmp >= 0.0:
                dmp = 0.0
            if dmp > 0.99:
                dmp = 0.99
            if not sz >= 0.05:
                sz = 0.05
            if sz > FDN_SIZE_MAX:
                sz = FDN_SIZE_MAX
            if not xo >= 20.0:
                xo = 20.0
            if xo > 0.45 * sr:
                xo = 0.45 * sr
            G = math.tan(math.pi * xo / sr)
            state[_F_XG] = G / (1.0 + G)
            dhf = dec * (1.0 - dmp)
            for j in range(N):
                d = ms[j] * sz * sr
                state[o_len + j] = d
                state[o_g0 + j] = math.pow(10.0, -3.0 * d / (dec * sr))
                state[o_gp + j] = math.pow(10.0, -3.0 * d / (dhf * sr))
        a = state[_F_XG]
        md = np.float64(mod[i])
        if not md >= 0.0:
            md = 0.0
        md *= FDN_MOD_DEPTH * sr
        gd = np.float64(diffusion[i])
        if not gd >= 0.0:
            gd = 0.0
        if gd > 0.9:
            gd = 0.9
        # ---- input: predelay (written first: a predelay of 0 passes straight), diffusers
        pd = np.float64(predelay[i]) * sr
        if not pd >= 0.0:
            pd = 0.0
        if pd > phi:
            pd = phi
        xin0 = 0.0
        xin1 = 0.0
        for c in range(cx):
            rb = pbase + c * pre_size
            buf[rb + pw] = np.float64(x[c, i])
            m = np.int64(pd)
            f = pd - m
            if m >= 1:
                v = _hermite(buf[rb + ((pw - m + 1) & pmask)], buf[rb + ((pw - m) & pmask)],
                             buf[rb + ((pw - m - 1) & pmask)], buf[rb + ((pw - m - 2) & pmask)], f)
            else:
                z0 = buf[rb + pw]
                v = z0 + f * (buf[rb + ((pw - 1) & pmask)] - z0)
            for k in range(4):
                db = dbase + (4 * c + k) * diff_size
                D = np.int64(FDN_DIFF_MS[4 * c + k] * 1e-3 * sr)
                if D < 1:
                    D = 1
                if D > dmask:
                    D = dmask
                old = buf[db + ((dw - D) & dmask)]
                wv = v + gd * old
                if -_FLUSH < wv < _FLUSH:
                    wv = 0.0
                buf[db + dw] = wv
                v = old - gd * wv
            if c == 0:
                xin0 = v
            else:
                xin1 = v
        if cx == 1:
            xin1 = xin0
        pw = (pw + 1) & pmask
        dw = (dw + 1) & dmask
        # ---- read (allpass-interpolated), absorb
        yl = 0.0
        yr = 0.0
        for j in range(N):
            d = state[o_len + j] + md * (1.0 + sin2pi(state[o_ph + j]))
            if d > dhi:
                d = dhi
            # integer part m >= 1 with the fraction in [0.5, 1.5): the
            # allpass coefficient stays in (-0.2, 0.34], far from its pole
            m = np.int64(d - 0.5)
            f = d - m
            eta = (1.0 - f) / (1.0 + f)
            base = j * line_size
            v0 = buf[base + ((w - m) & lmask)]
            v1 = buf[base + ((w - m - 1) & lmask)]
            s = eta * (v0 - state[o_ap + j]) + v1
            if -_FLUSH < s < _FLUSH:
                s = 0.0
            state[o_ap + j] = s
            lp0 = state[o_lp + j]
            vv = (s - lp0) * a
            lp = vv + lp0
            lpn = lp + vv
            if -_FLUSH < lpn < _FLUSH:
                lpn = 0.0
            state[o_lp + j] = lpn
            g0 = state[o_g0 + j]
            gp = state[o_gp + j]
            t = gp * s + (g0 - gp) * lp
            tmp[j] = t
            # two orthogonal sign patterns: (+ - + - ...) and (+ + - - ...)
            yl += t if (j & 1) == 0 else -t
            yr += t if (j & 2) == 0 else -t
            p = state[o_ph + j] + state[o_rt + j] / sr
            if p >= 1.0:
                p -= 1.0
            state[o_ph + j] = p
        # ---- feedback matrix
        if householder:
            tot = 0.0
            for j in range(N):
                tot += tmp[j]
            tot *= 2.0 / N
            for j in range(N):
                tmp[j] -= tot
        else:
            _fwht(tmp, N)
        for j in range(N):
            sgn = 1.0 if (j % 4) < 2 else -1.0
            v = tmp[j] + inv * sgn * (xin0 if (j & 1) == 0 else xin1)
            if -_FLUSH < v < _FLUSH:
                v = 0.0
            buf[j * line_size + w] = v
        w = (w + 1) & lmask
        m = np.float64(mix[i])
        wl = yl * inv
        wr = yr * inv
        xl = np.float64(x[0, i])
        xr = np.float64(x[1 if cx > 1 else 0, i])
        y[0, i] = (1.0 - m) * xl + m * wl
        y[1, i] = (1.0 - m) * xr + m * wr
    state[_F_W] = w
    state[_F_PW] = pw
    state[_F_DW] = dw


# ================================================================ compressor
@numba.njit(cache=True, nogil=True, inline="always")
def _gc(xdb, thr, ratio, knee):
    """Soft-knee static curve: output level (dB) for input level ``xdb``."""
    over = xdb - thr
    if 2.0 * over < -knee:
        return xdb
    if knee > 0.0 and 2.0 * abs(over) <= knee:
        t = over + 0.5 * knee
        return xdb + (1.0 / ratio - 1.0) * t * t / (2.0 * knee)
    return thr + over / ratio


@numba.njit(cache=True, nogil=True)
def gain_computer(xdb, thr, ratio, knee):
    """Vectorised static curve (tests): output dB for each input dB."""
    out = np.empty_like(xdb)
    for i in range(xdb.size):
        out[i] = _gc(xdb[i], thr, ratio, knee)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _coef(t, sr):
    if not t > 1e-6:
        return 0.0
    return math.exp(-1.0 / (t * sr))


@numba.njit(cache=True, nogil=True)
def comp_kernel(x, sc, y, gout, n, thr, ratio, knee, attack, release, makeup, rms, rms_coef, sr, state):
    """Feed-forward, stereo-linked compressor.

    The detector reads ``sc`` (the main input or the sidechain): the largest
    ``|s|`` over its channels (peak) or a one-pole mean of the channels'
    mean square (``rms``, coefficient ``rms_coef``), in dB. The soft-knee
    curve gives the gain reduction r (dB >= 0), smoothed in the log domain
    by Giannoulis' smooth decoupled peak detector::

        y1 = max(r, aR y1 + (1 - aR) r);  yl = aA yl + (1 - aA) y1

    (``a = exp(-1 / (t sr))``: attack and release are time constants). Every
    channel is multiplied by ``10**((makeup - yl) / 20)``, also written to
    ``gout``.

    Args:
        state: float64 ``(8,)``: ``[mean square, y1, yl, last attack, aA,
            last release, aR, unused]``.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    cs = sc.shape[0]
    ms = state[0]
    y1 = state[1]
    yl = state[2]
    for i in range(n):
        at = np.float64(attack[i])
        if at != state[3]:
            state[3] = at
            state[4] = _coef(at, sr)
        rl = np.float64(release[i])
        if rl != state[5]:
            state[5] = rl
            state[6] = _coef(rl, sr)
        aa = state[4]
        ar = state[6]
        if rms:
            e = 0.0
            for c in range(cs):
                v = np.float64(sc[c, i])
                e += v * v
            e /= cs
            ms = rms_coef * ms + (1.0 - rms_coef) * e
            if ms < 1e-30:
                ms = 0.0
            xdb = 10.0 * math.log10(ms + 1e-30)
        else:
            pk = 0.0
            for c in range(cs):
                v = abs(np.float64(sc[c, i]))
                if v > pk:
                    pk = v
            xdb = 20.0 * math.log10(pk + 1e-15)
        rt = np.float64(ratio[i])
        if not rt >= 1.0:
            rt = 1.0
        kn = np.float64(knee[i])
        if not kn >= 0.0:
            kn = 0.0
        r = xdb - _gc(xdb, np.float64(thr[i]), rt, kn)
        if not r >= 0.0:
            r = 0.0
        rel = ar * y1 + (1.0 - ar) * r
        y1 = r if r > rel else rel
        yl = aa * yl + (1.0 - aa) * y1
        if yl < 1e-12:
            yl = 0.0
        g = math.exp((np.float64(makeup[i]) - yl) * _LN10_20)
        gout[0, i] = g
        for c in range(nch):
            y[c, i] = np.float64(x[c if c < cx else cx - 1, i]) * g
    state[0] = ms
    state[1] = y1
    state[2] = yl


# ================================================================ limiter
#: true-peak detection: 4x polyphase interpolation, 2 * TP_K taps per phase
TP_K = 8


def true_peak_taps():
    """Kaiser-windowed sinc taps of the 3 in-between phases of a 4x interpolator, ``(3, 2 * TP_K)``.

    Row r - 1 gives the value at ``m + r / 4`` from ``x[m - TP_K + 1 .. m + TP_K]``
    (oldest first), normalised to unit gain at DC.
    """
    j = np.arange(-TP_K + 1, TP_K + 1)
    out = np.zeros((3, 2 * TP_K))
    for r in range(1, 4):
        t = j - r / 4.0
        h = np.sinc(t) * np.i0(7.0 * np.sqrt(1.0 - (t / TP_K) ** 2))  # Kaiser window on the continuous time
        out[r - 1] = h / h.sum()
    return out


@numba.njit(cache=True, nogil=True)
def limiter_kernel(x, y, n, ceiling_db, release, gain_db, look, tp, taps, sr, buf, state):
    """Lookahead brickwall limiter; the output lags by ``look + tp`` samples.

    Per sample, after the input gain, the peak p is the largest ``|x|`` over
    channels (with ``tp`` > 0: also of the 3 values a 4x interpolator puts
    between the sample ``tp`` back and the next: a true-peak estimate, whose
    sample it stands for is ``tp`` back). The needed gain ``q = min(1,
    ceiling / p)`` enters a window of the last ``look + 1`` values; its
    minimum m goes through instant attack / exponential release (``r <=
    m``); the gain applied to the audio ``look + tp`` samples back is the
    mean of the last ``look + 1`` values of r. Every term of that mean is at
    most the needed gain of that sample (its window contains it), so the
    output never exceeds the ceiling (a final clamp catches rounding);
    below the ceiling the output is the input delayed, exactly.

    Args:
        look: lookahead in samples; tp: 0, or TP_K for true-peak detection.
        taps: :func:`true_peak_taps`.
        buf: float64 ``(C + 2, M)``, ``M >= max(look + tp + 1, 2 tp)``: audio
            rings of M slots per channel, then the q and r rings (their first
            ``look + 1`` slots).
        state: float64 ``(5,)``: ``[audio write slot, r, last release, aR,
            q/r write slot]``; a fresh state has ``r = 1`` and the q and r
            rows at 1.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    M = buf.shape[1]
    W = look + 1
    w = np.int64(state[0])
    r = state[1]
    wq = np.int64(state[4])
    qv = buf[nch]
    rv = buf[nch + 1]
    lag = look + tp
    for i in range(n):
        rl = np.float64(release[i])
        if rl != state[2]:
            state[2] = rl
            state[3] = _coef(rl, sr)
        ar = state[3]
        ceil = math.exp(np.float64(ceiling_db[i]) * _LN10_20)
        gin = math.exp(np.float64(gain_db[i]) * _LN10_20)
        pk = 0.0
        for c in range(nch):
            v = np.float64(x[c if c < cx else cx - 1, i]) * gin
            row = buf[c]
            row[w] = v
            if tp > 0:
                k = w - tp
                a = abs(row[k + M if k < 0 else k])
                if a > pk:
                    pk = a
                first = w - 2 * tp + 1
                if first < 0:
                    first += M
                for ph in range(3):
                    acc = 0.0
                    k = first
                    for j in range(2 * tp):
                        acc += taps[ph, j] * row[k]
                        k += 1
                        if k == M:
                            k = 0
                    if abs(acc) > pk:
                        pk = abs(acc)
            elif abs(v) > pk:
                pk = abs(v)
        q = ceil / pk if pk > ceil else 1.0
        qv[wq] = q
        mn = q
        for j in range(W):
            mn = min(mn, qv[j])
        if mn < r:
            r = mn
        else:
            r = r + (1.0 - ar) * (mn - r)
        rv[wq] = r
        s = 0.0
        for j in range(W):
            s += rv[j]
        s /= W
        rd = w - lag
        if rd < 0:
            rd += M
        for c in range(nch):
            v = buf[c, rd] * s
            if v > ceil:
                v = ceil
            elif v < -ceil:
                v = -ceil
            y[c, i] = v
        w += 1
        if w == M:
            w = 0
        wq += 1
        if wq == W:
            wq = 0
    state[0] = w
    state[1] = r
    state[4] = wq


# ================================================================ width
@numba.njit(cache=True, nogil=True)
def width_kernel(x, y, n, width):
    """Mid/side width: ``M = (L + R) / 2``, ``S = width (L - R) / 2``, out ``(M + S, M - S)``."""
    cx = x.shape[0]
    for i in range(n):
        l = np.float64(x[0, i])
        r = np.float64(x[1 if cx > 1 else 0, i])
        m = 0.5 * (l + r)
        s = 0.5 * (l - r) * np.float64(width[i])
        y[0, i] = m + s
        y[1, i] = m - s


# ================================================================ sample player
# voice fields (two voices: 0 the playing one, 1 one fading out after a retrigger)
_V_MODE = 0   # 0 off, 1 playing, 2 fading out, 3 start pending
_V_POS = 1    # position in samples of the file
_V_AMP = 2    # velocity (and fade multiplier in mode 2)
_V_FADE = 3   # fade multiplier
_V_COLS = 4


@numba.njit(cache=True, nogil=True, inline="always")
def _ptap(audio, c, k, lo, hi, loop):
    if loop:
        span = hi - lo
        if k < lo or k >= hi:
            k = lo + ((k - lo) % span)
        return np.float64(audio[c, k])
    if k < 0 or k >= audio.shape[1]:
        return 0.0
    return np.float64(audio[c, k])


@numba.njit(cache=True, nogil=True)
def player_kernel(audio, y, n, speed, gain, lo, hi, loop, fade_n, state):
    """Plays ``audio[:, lo:hi]`` at ``speed`` (negative: backwards) with cubic interpolation.

    Voice 0 plays; voice 1 finishes a fade-out after a retrigger. A voice in
    mode 3 starts on its next sample at ``lo`` (``hi - 1`` when the speed is
    negative). Releasing fades out over ``fade_n`` samples; without
    ``loop`` the voice also fades over its last ``fade_n`` samples before
    the end, and stops there.

    Args:
        audio: float32 ``(C, frames)`` (at the engine's rate).
        y: float32 ``(C, block)``.
        speed, gain: float32 per sample.
        lo, hi: the played region, in samples (``lo < hi``).
        state: float64 ``(2, 4)`` (see ``_V_*``).
    """
    nch = y.shape[0]
    for i in range(n):
        for c in range(nch):
            y[c, i] = 0.0
        sp = np.float64(speed[i])
        gn = np.float64(gain[i])
        for v in range(2):
            st = state[v]
            mode = st[_V_MODE]
            if mode == 0.0:
                continue
            if mode == 3.0:
                st[_V_POS] = float(lo) if sp >= 0.0 else float(hi - 1)
                st[_V_MODE] = 1.0
                st[_V_FADE] = 1.0
                mode = 1.0
            pos = st[_V_POS]
            if not loop and (pos >= hi or pos < lo):
                st[_V_MODE] = 0.0
                continue
            k = np.int64(math.floor(pos))
            f = pos - k
            g = st[_V_AMP] * st[_V_FADE] * gn
            if not loop:
                if sp > 0.0:
                    left = (hi - pos) / sp
                elif sp < 0.0:
                    left = (pos - lo + 1.0) / -sp
                else:
                    left = 1e18
                if left < fade_n:
                    g *= left / fade_n
            for c in range(nch):
                s = _hermite(_ptap(audio, c, k - 1, lo, hi, loop), _ptap(audio, c, k, lo, hi, loop),
                             _ptap(audio, c, k + 1, lo, hi, loop), _ptap(audio, c, k + 2, lo, hi, loop), f)
                y[c, i] += g * s
            if mode == 2.0:
                fd = st[_V_FADE] - 1.0 / fade_n
                if fd <= 0.0:
                    st[_V_MODE] = 0.0
                    fd = 0.0
                st[_V_FADE] = fd
            pos += sp
            if loop:
                span = float(hi - lo)
                if pos >= hi:
                    pos -= span * math.floor((pos - lo) / span)
                elif pos < lo:
                    pos += span * math.ceil((lo - pos) / span)
                    if pos >= hi:
                        pos -= span
            st[_V_POS] = pos
