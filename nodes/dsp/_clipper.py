"""Kernels (numba) for the virtual-analog diode clipper (:mod:`nodes.dsp.clipper`).

The circuit (Yeh and Smith 2008; Zolzer, DAFX 2nd ed.): a series resistor R
into a capacitor C in parallel with an antiparallel pair of diodes::

    dV/dt = (Vin - V) / (R C) - (2 Is / C) sinh(V / (n Vt))

It is solved per sample with the trapezoidal rule at ``2**stages`` times the
sample rate. Each step solves ``A V + B sinh(V / nVt) = c`` (``A = 1 + T/(2RC)``,
``B = T Is / C``), a strictly increasing function of V, with Newton-Raphson
*safeguarded by a bracket*: the root lies between 0 and
``sign(c) min(|c| / A, nVt asinh(|c| / B))``, every iterate that leaves the
bracket is replaced by bisection, so the solver can never diverge and sinh
never overflows. The initial guess is the explicit Euler prediction. It stops
when the Newton step is below ``TOL`` volts (1e-9 V, about -180 dB of the
0.65 V clipping level) or after ``MAX_ITER`` iterations. Measured at 4x
(192 kHz): 2 to 3 iterations on average for sines up to 30 V, 2.4 to 6.8
for the worst case of held white noise, never more than 12; a bisection
halves the bracket, so 40 reach 1e-9 V from any bracket up to 1000 V.

The oversampling reuses the waveshaper's linear-phase halfband FIR stages
(:func:`nodes.dsp._effects.halfband_taps`, same layout and latency as
:func:`nodes.dsp._effects.ws_latency`). After decimation a TPT one-pole
lowpass (the tone control) and the output level.

All streaming state of one channel lives in one float64 row (:func:`clip_state`).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._effects import HB_K, halfband_down, halfband_up, ws_latency

__all__ = ["R", "C", "IS", "NVT", "TOL", "MAX_ITER", "GAIN_DB", "TONE_HZ", "clip_state", "clip_kernel",
           "clip_batch", "ode_step", "drive_gain", "tone_cutoff"]

#: circuit values (Yeh and Smith 2008): 2.2 kOhm, 10 nF (cutoff 7.23 kHz), 1N914-like diodes
R = 2.2e3
C = 10e-9
IS = 2.52e-9
NVT = 1.752 * 25.85e-3
#: Newton tolerance in volts and iteration cap
TOL = 1e-9
MAX_ITER = 40
#: gain knob 0..1 -> input drive GAIN_DB[0]..GAIN_DB[1] dB (1.0 full scale = 1 V at 0 dB)
GAIN_DB = (-24.0, 36.0)
#: tone knob 0..1 -> lowpass cutoff TONE_HZ[0]..TONE_HZ[1] Hz, exponentially (capped at 0.45 fs)
TONE_HZ = (350.0, 16000.0)
_LN10_20 = math.log(10.0) / 20.0
_FLUSH = 1e-30


def drive_gain(gain):
    """Input gain (volts per full scale) for a gain knob value 0..1."""
    return 10.0 ** ((GAIN_DB[0] + (GAIN_DB[1] - GAIN_DB[0]) * np.asarray(gain, dtype=np.float64)) / 20.0)


def tone_cutoff(tone, sr):
    """Tone lowpass cutoff in Hz for a tone knob value 0..1 at sample rate ``sr``."""
    fc = TONE_HZ[0] * (TONE_HZ[1] / TONE_HZ[0]) ** np.asarray(tone, dtype=np.float64)
    return np.minimum(fc, 0.45 * sr)


def _cols(stages, latency):
    cols = 0
    for k in range(stages):
        cols += 5 * HB_K[k]
    # + 8 slots of top-rate delay, ODE (V, s), tone state, 2 scratch levels
    return cols + 8 + 2 + 1 + 2 * (1 << stages)


def clip_state(channels: int, stages: int):
    """Fresh state for :func:`clip_kernel`: float64 ``(C, cols)`` zeros, and ``(latency, extra)``."""
    lat, extra = ws_latency(stages)
    return np.zeros((int(channels), _cols(stages, lat)), dtype=np.float64), lat, extra


@numba.njit(cache=True, nogil=True, inline="always")
def _solve(c, A, B, guess):
    """Root of ``A v + B sinh(v / NVT) = c`` (A, B > 0): bracketed Newton. Returns (v, iterations)."""
    if c == 0.0:
        return 0.0, 0
    s = 1.0 if c > 0.0 else -1.0
    ac = abs(c)
    hi = min(ac / A, NVT * math.asinh(ac / B))
    lo = 0.0
    v = s * guess
    if not (lo < v < hi):
        v = 0.5 * (lo + hi)
    it = 0
    while it < MAX_ITER:
        it += 1
        # |u| <= asinh(|c| / B): exp never overflows
        e = math.exp(v / NVT)
        ie = 1.0 / e
        h = A * v + B * 0.5 * (e - ie) - ac
        if h > 0.0:
            hi = v
        else:
            lo = v
        d = h / (A + (B / NVT) * 0.5 * (e + ie))
        if abs(d) < TOL:
            # converged: take the last step as is (it may touch the bracket's end by rounding)
            v -= d
            break
        vn = v - d
        if not (lo < vn < hi):
            vn = 0.5 * (lo + hi)
        v = vn
        if hi - lo < TOL:
            break
    return s * v, it


@numba.njit(cache=True, nogil=True, inline="always")
def _step(vin, T, st, o):
    """One trapezoidal step of the ODE with input ``vin``; state ``st[o]`` = V, ``st[o+1]`` = s."""
    k = T / (2.0 * R * C)
    A = 1.0 + k
    B = T * IS / C
    v0 = st[o]
    s0 = st[o + 1]
    c = s0 + k * vin
    # explicit Euler prediction from the stored derivative 2 (s0 - v0) / T
    v, _ = _solve(c, A, B, 2.0 * s0 - v0)
    # s = V + T/2 f(V, vin), with (2 Is / C) sinh(V/nVt) = (2/T)(c - A V)
    s = v + k * (vin - v) - (c - A * v)
    if -_FLUSH < v < _FLUSH:
        v = 0.0
    if -_FLUSH < s < _FLUSH:
        s = 0.0
    st[o] = v
    st[o + 1] = s
    return v


@numba.njit(cache=True, nogil=True)
def ode_step(vin, T):
    """The bare solver on a whole signal (tests): V after each trapezoidal step of length T."""
    st = np.zeros(2)
    out = np.empty(vin.size)
    for i in range(vin.size):
        out[i] = _step(vin[i], T, st, 0)
    return out


@numba.njit(cache=True, nogil=True)
def clip_kernel(x, y, n, gain, tone, level, stages, extra, sr, taps, state):
    """Oversampled diode clipper, tone lowpass and level for ``n`` samples.

    Per base sample the driven input (``x * drive_gain(gain)`` volts) is
    interpolated by ``2**stages`` through the halfband stages, the ODE is
    stepped once per top-rate sample (plus ``extra`` top-rate samples of
    delay so the latency is whole base samples), the capacitor voltage is
    decimated back, lowpassed (TPT one-pole at ``tone_cutoff(tone)``) and
    scaled by ``level`` (linear, 1 V -> 1.0 full scale).

    Args:
        x: float32 ``(Cx, frames)``; channel c reads ``x[min(c, Cx-1)]``.
        y: float32 ``(C, frames)``; ``y[:, :n]`` written.
        gain, tone, level: float32 ``(>= n,)`` knob values 0..1 per sample.
        stages: 0..3 (oversampling 1, 2, 4, 8).
        extra: from :func:`nodes.dsp._effects.ws_latency`.
        sr: base sample rate.
        taps: :func:`nodes.dsp._effects.halfband_taps`.
        state: float64 ``(>= C, cols)`` from :func:`clip_state`.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    F = 1 << stages
    T = 1.0 / (sr * F)
    off = 0
    for k in range(stages):
        off += 5 * HB_K[k]
    o_ex = off
    o_ode = off + 8
    o_tone = o_ode + 2
    o_sa = o_tone + 1
    o_sb = o_sa + F
    g_lo = GAIN_DB[0] * _LN10_20
    g_span = (GAIN_DB[1] - GAIN_DB[0]) * _LN10_20
    t_lo = math.log(TONE_HZ[0])
    t_span = math.log(TONE_HZ[1] / TONE_HZ[0])
    fmax = 0.45 * sr
    for c in range(nch):
        xc = c if c < cx else cx - 1
        st = state[c]
        for i in range(n):
            gk = min(max(np.float64(gain[i]), 0.0), 1.0)
            g = math.exp(g_lo + g_span * gk)
            # ---- up
            cur = o_sa
            nxt = o_sb
            st[cur] = g * np.float64(x[xc, i])
            cur, nxt = halfband_up(st, taps, stages, cur, nxt)
            # ---- the circuit at the top rate
            for j in range(F):
                v = st[cur + j]
                if extra > 0:
                    d = st[o_ex + extra - 1]
                    for q in range(extra - 1, 0, -1):
                        st[o_ex + q] = st[o_ex + q - 1]
                    st[o_ex] = v
                    v = d
                st[cur + j] = _step(v, T, st, o_ode)
            # ---- down
            cur = halfband_down(st, taps, stages, cur, nxt)
            wet = st[cur]
            # ---- tone: TPT one-pole lowpass
            tk = min(max(np.float64(tone[i]), 0.0), 1.0)
            fc = min(math.exp(t_lo + t_span * tk), fmax)
            gt = math.tan(math.pi * fc / sr)
            G = gt / (1.0 + gt)
            s = st[o_tone]
            vv = (wet - s) * G
            yt = vv + s
            s = yt + vv
            if -_FLUSH < s < _FLUSH:
                s = 0.0
            st[o_tone] = s
            lv = min(max(np.float64(level[i]), 0.0), 1.0)
            y[c, i] = lv * yt


@numba.njit(cache=True, nogil=True)
def clip_batch(x, y, n, gain, tone, level, stages, extra, sr, taps, state):
    """:func:`clip_kernel` for V stacked nodes (row v of every array is member v)."""
    for v in range(y.shape[0]):
        clip_kernel(x[v], y[v], n, gain[v], tone[v], level[v], stages, extra, sr, taps, state[v])
