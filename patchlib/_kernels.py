"""Numba kernels of the engine itself: param ramps, modulation maps, guards.

Every kernel works sample by sample from explicit state, so a block split
anywhere gives the same numbers (block-size invariance).
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def ramp_lin(buf, n, state):
    """Linear ramp. state = [value, increment, remaining samples, target]."""
    v = state[0]
    inc = state[1]
    rem = state[2]
    target = state[3]
    # the start value on the event's sample, the target exactly `count` samples later
    for i in range(n):
        buf[i] = v
        if rem > 0.0:
            v += inc
            rem -= 1.0
            if rem <= 0.0:
                v = target
    state[0] = v
    state[2] = rem


@numba.njit(cache=True, nogil=True)
def ramp_exp(buf, n, state):
    """Exponential ramp. state = [value, ratio per sample, remaining, target]."""
    v = state[0]
    r = state[1]
    rem = state[2]
    target = state[3]
    # the start value on the event's sample, the target exactly `count` samples later
    for i in range(n):
        buf[i] = v
        if rem > 0.0:
            v *= r
            rem -= 1.0
            if rem <= 0.0:
                v = target
    state[0] = v
    state[2] = rem


@numba.njit(cache=True, nogil=True)
def map_affine(src, buf, n, a, b, lo, hi):
    """buf = clip(a * mean_channels(src) + b, lo, hi)."""
    c = src.shape[0]
    for i in range(n):
        x = src[0, i]
        for k in range(1, c):
            x += src[k, i]
        if c > 1:
            x /= c
        y = a * x + b
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        buf[i] = y


@numba.njit(cache=True, nogil=True)
def map_exp(src, buf, n, base, k, lo, hi):
    """buf = clip(base * exp(k * (x + 1) / 2), lo, hi): -1..1 onto [base, base*e^k]."""
    # float32 exp (the result is float32 anyway): 0.3 ppm, half the time of float64
    c = src.shape[0]
    half_k = np.float32(k * 0.5)
    base32 = np.float32(base)
    one = np.float32(1.0)
    for i in range(n):
        x = src[0, i]
        for j in range(1, c):
            x += src[j, i]
        if c > 1:
            x /= c
        y = base32 * np.exp(half_k * (x + one))
        if y < lo:
            y = lo
        elif y > hi:
            y = hi
        buf[i] = y


@numba.njit(cache=True, nogil=True)
def map_batch(src, dst, n, args):
    """Modulation of one param of a batch: row v maps src[v] with args[v] = (a, b, lo, hi, kind).

    kind 0 is :func:`map_affine`, 1 :func:`map_exp`.
    """
    for v in range(dst.shape[0]):
        a, b, lo, hi = args[v, 0], args[v, 1], args[v, 2], args[v, 3]
        if args[v, 4] == 0.0:
            map_affine(src[v], dst[v], n, a, b, lo, hi)
        else:
            map_exp(src[v], dst[v], n, a, b, lo, hi)


@numba.njit(cache=True, nogil=True)
def all_finite(x, n):
    """True when x[:, :n] holds no NaN or inf."""
    for c in range(x.shape[0]):
        for i in range(n):
            v = x[c, i]
            if not (v - v == 0.0):
                return False
    return True


@numba.njit(cache=True, nogil=True)
def zero_nonfinite(x, n):
    for c in range(x.shape[0]):
        for i in range(n):
            v = x[c, i]
            if not (v - v == 0.0):
                x[c, i] = 0.0
