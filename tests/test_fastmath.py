"""The fast per-sample maths is as accurate as its docstring says."""
import numba
import numpy as np

from nodes.dsp._fastmath import sin2pi


@numba.njit
def _sweep(xs, out):
    for i in range(xs.size):
        out[i] = sin2pi(xs[i])


def test_sin2pi_error_below_float32_resolution():
    xs = np.concatenate([np.linspace(0, 1, 200001, endpoint=False), np.array([-3.7, -0.25, 1.0, 2.5, 7.125])])
    out = np.empty_like(xs)
    _sweep(xs, out)
    err = np.max(np.abs(out - np.sin(2 * np.pi * xs)))
    assert err < 2e-8, err
    # exact where it matters: zero crossings and peaks
    assert out[0] == 0.0 and abs(out[50000] - 1.0) < 1e-9 and abs(out[150000] + 1.0) < 1e-9
