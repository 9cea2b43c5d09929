"""Kernels for the small utility nodes (gain, mix, pan, output)."""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def gain_kernel(x, y, n, g):
    """y[c] = x[min(c, Cx-1)] * g (mono input broadcasts)."""
    cx = x.shape[0]
    for c in range(y.shape[0]):
        xc = x[min(c, cx - 1)]
        yc = y[c]
        for i in range(n):
            yc[i] = xc[i] * g[i]


@numba.njit(cache=True, nogil=True)
def mac_kernel(x, y, n, g, first):
    """y += x * g, or y = x * g when ``first`` (the first input of a mix)."""
    cx = x.shape[0]
    for c in range(y.shape[0]):
        xc = x[min(c, cx - 1)]
        yc = y[c]
        if first:
            for i in range(n):
                yc[i] = xc[i] * g[i]
        else:
            for i in range(n):
                yc[i] += xc[i] * g[i]


@numba.njit(cache=True, nogil=True)
def pan_kernel(x, y, n, pan):
    """Equal-power pan of a mono signal: -1 left, 0 centre (-3 dB each), +1 right."""
    quarter_pi = np.pi / 4.0
    for i in range(n):
        p = pan[i]
        if p < -1.0:
            p = -1.0
        elif p > 1.0:
            p = 1.0
        a = (p + 1.0) * quarter_pi
        s = x[0, i]
        y[0, i] = s * np.cos(a)
        y[1, i] = s * np.sin(a)


@numba.njit(cache=True, nogil=True)
def lr_kernel(left, right, y, n, g):
    for i in range(n):
        y[0, i] = left[0, i] * g[i]
        y[1, i] = right[0, i] * g[i]


@numba.njit(cache=True, nogil=True)
def gain_batch(x, y, n, g):
    """gain_kernel for a batch: x (V, Cx, B), y (V, C, B), g (V, B)."""
    for v in range(y.shape[0]):
        gain_kernel(x[v], y[v], n, g[v])


@numba.njit(cache=True, nogil=True)
def mix_stacked(xs, g, y, n):
    """y = sum_k xs[k] * g[k] for sources stacked as xs (K, Cx, B), gains g (K, B)."""
    cx = xs.shape[1]
    for c in range(y.shape[0]):
        yc = y[c]
        ci = min(c, cx - 1)
        for i in range(n):
            yc[i] = 0.0
        for k in range(xs.shape[0]):
            xk = xs[k, ci]
            gk = g[k]
            for i in range(n):
                yc[i] += xk[i] * gk[i]


@numba.njit(cache=True, nogil=True)
def mac_batch(x, y, n, g, first):
    """mac_kernel for a batch: x (V, Cx, B), y (V, C, B), g (V, B)."""
    for v in range(y.shape[0]):
        mac_kernel(x[v], y[v], n, g[v], first)


@numba.njit(cache=True, nogil=True)
def pan_batch(x, y, n, pan):
    for v in range(y.shape[0]):
        pan_kernel(x[v], y[v], n, pan[v])
