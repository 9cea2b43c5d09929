"""Tests of the fractional feedback delay kernels (nodes/dsp/_delay.py)."""
from __future__ import annotations

import numpy as np
import pytest

from nodes.dsp._delay import (
    delay_kernel,
    delay_read,
    delay_ring_size,
    delay_state,
    delay_write,
)

SR = 48000.0


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _full(v, n):
    return _f32(np.broadcast_to(np.asarray(v, np.float32), (n,)))


def _run(x, time, fb, max_delay, channels=1, state=None):
    x = _f32(np.atleast_2d(x))
    n = x.shape[1]
    y = np.zeros((channels, n), np.float32)
    ring, idx = delay_state(channels, max_delay) if state is None else state
    delay_kernel(x, y, n, _full(time, n), _full(fb, n), SR, ring, idx)
    return y


def _catmull_rom_weights(f):
    """Weights of the taps delayed m-1, m, m+1, m+2 for a delay of m + f."""
    f2, f3 = f * f, f * f * f
    return np.array([(-f3 + 2 * f2 - f) / 2, (3 * f3 - 5 * f2 + 2) / 2,
                     (-3 * f3 + 4 * f2 + f) / 2, (f3 - f2) / 2])


def test_state_layout():
    ring, idx = delay_state(2, 48000)
    size = ring.shape[1]
    assert ring.shape[0] == 2 and ring.dtype == np.float64 and not ring.any()
    assert size & (size - 1) == 0 and size >= 48004 and size // 2 < 48004
    assert idx.dtype == np.int64 and idx.shape == (2,)
    assert idx[0] == 0 and idx[1] == 48000
    assert delay_ring_size(1) == 8 and delay_ring_size(4) == 8 and delay_ring_size(5) == 16


def test_impulse_10_5_ms_peaks_at_504():
    n = 2000
    x = np.zeros((1, n), np.float32)
    x[0, 0] = 1.0
    y = _run(x, 0.0105, 0.0, 48000)[0]
    assert int(np.argmax(np.abs(y))) == 504
    assert abs(y[504] - 1.0) < 1e-4
    assert abs(y.sum() - 1.0) < 1e-5
    assert np.abs(np.delete(y, [502, 503, 504, 505, 506])).max() == 0.0


@pytest.mark.parametrize("d_target", [504.5, 504.25, 504.9, 100.125, 2.5, 7.75])
def test_fractional_delay_interpolation_weights(d_target):
    n = 1000
    x = np.zeros((1, n), np.float32)
    x[0, 0] = 1.0
    t32 = np.float32(d_target / SR)
    d = float(t32) * SR  # the delay the kernel actually sees
    m = int(np.floor(d))
    f = d - m
    y = _run(x, t32, 0.0, 48000)[0].astype(np.float64)
    expect = np.zeros(n)
    expect[m - 1:m + 3] = _catmull_rom_weights(f)
    np.testing.assert_allclose(y, expect, atol=1e-6)
    if abs(d_target - 504.5) < 1e-9:
        # Energy split evenly between 504 and 505.
        assert abs(y[504] - 0.5625) < 1e-4 and abs(y[505] - 0.5625) < 1e-4
        assert abs(y[503] + 0.0625) < 1e-4 and abs(y[506] + 0.0625) < 1e-4


def test_short_delays_linear_below_two_samples():
    n = 50
    x = np.zeros((1, n), np.float32)
    x[0, 10] = 1.0
    for d_target, expect in ((1.0, {11: 1.0}), (1.5, {11: 0.5, 12: 0.5}),
                             (1.25, {11: 0.75, 12: 0.25}), (0.0, {11: 1.0}),
                             (-3.0, {11: 1.0})):
        t32 = np.float32(d_target / SR)
        y = _run(x, t32, 0.0, 100)[0]
        e = np.zeros(n)
        for k, v in expect.items():
            e[k] = v
        np.testing.assert_allclose(y, e, atol=1e-5)


@pytest.mark.parametrize("time", [0.0105, 0.015625])
def test_feedback_half_gives_6db_echoes(time):
    n = 12000
    x = np.zeros((1, n), np.float32)
    x[0, 0] = 1.0
    y = _run(x, time, 0.5, 48000)[0].astype(np.float64)
    d = float(np.float32(time)) * SR
    energies = []
    for k in range(1, int(n / d)):
        c = int(round(k * d))
        energies.append(np.sum(y[c - 4:c + 5] ** 2))
        assert int(np.argmax(np.abs(y[c - 100:c + 100]))) == 100  # echo k at k*d
    drops = 10 * np.log10(np.array(energies[:-1]) / np.array(energies[1:]))
    assert len(drops) >= 10
    np.testing.assert_allclose(drops, 20 * np.log10(2.0), atol=0.01)
    # Nothing between the echoes.
    mask = np.ones(n, bool)
    for k in range(0, int(n / d) + 1):
        c = int(round(k * d))
        mask[max(c - 4, 0):c + 5] = False
    assert np.abs(y[mask]).max() < 1e-6


def test_feedback_clamped_and_nan_safe():
    rng = np.random.default_rng(3)
    x = _f32(rng.uniform(-1, 1, (1, 3000)))
    assert np.array_equal(_run(x, 0.001, 5.0, 200), _run(x, 0.001, 1.0, 200))
    assert np.array_equal(_run(x, 0.001, -5.0, 200), _run(x, 0.001, -1.0, 200))
    assert np.array_equal(_run(x, 0.001, np.nan, 200), _run(x, 0.001, 0.0, 200))
    # Clamped to 0.999: even at "feedback 1" a constant input stays bounded.
    y = _run(np.ones((1, 20000), np.float32), 0.0001, 1.0, 10)
    assert np.isfinite(y).all() and np.abs(y).max() < 1000.0


def test_max_delay_clamp():
    n = 3000
    x = np.zeros((1, n), np.float32)
    x[0, 0] = 1.0
    y = _run(x, 10.0, 0.0, 1000)[0]
    assert int(np.argmax(y)) == 1000 and y[1000] == 1.0
    assert np.array_equal(_run(x, 10.0, 0.0, 1000), _run(x, 100.0, 0.0, 1000))
    # An all-zero idx (no max recorded) clamps at size - 4.
    ring, idx = delay_state(1, 1000)
    idx[:] = 0
    y = _run(x, 10.0, 0.0, 1000, state=(ring, idx))[0]
    assert int(np.argmax(y)) == ring.shape[1] - 4


def test_modulated_time_is_smooth():
    """A chorus/vibrato sweep of a sine equals the analytically delayed sine."""
    n = 24000
    t = np.arange(n) / SR
    f0 = 440.0
    x = _f32(np.sin(2 * np.pi * f0 * t)[None])
    # 5..15 ms at 0.8 Hz plus a fast 7 Hz vibrato of +-0.5 ms.
    d_sec = 0.010 + 0.005 * np.sin(2 * np.pi * 0.8 * t) + 0.0005 * np.sin(2 * np.pi * 7 * t)
    time = _f32(d_sec)
    ring, idx = delay_state(1, 0.02 * SR)
    y = np.zeros((1, n), np.float32)
    delay_kernel(x, y, n, time, _full(0.0, n), SR, ring, idx)
    d = time.astype(np.float64)  # seconds, as the kernel saw them
    ideal = np.sin(2 * np.pi * f0 * (t - d))
    start = int(0.02 * SR)
    err = np.abs(y[0, start:] - ideal[start:])
    assert err.max() < 1e-4, err.max()
    # No clicks: the sample-to-sample step never exceeds the sine's own slope
    # with the Doppler factor.
    dd = np.abs(np.diff(d * SR)).max()
    assert np.abs(np.diff(y[0, start:])).max() <= 2 * np.pi * f0 / SR * (1 + dd) * 1.001


def _chunked(x, time, fb, sizes, channels, max_delay):
    n = x.shape[1]
    ring, idx = delay_state(channels, max_delay)
    y = np.zeros((channels, n), np.float32)
    pos = k = 0
    while pos < n:
        m = min(sizes[k % len(sizes)], n - pos)
        yc = np.zeros((channels, m), np.float32)
        delay_kernel(_f32(x[:, pos:pos + m]), yc, m, _f32(time[pos:pos + m]),
                     _f32(fb[pos:pos + m]), SR, ring, idx)
        y[:, pos:pos + m] = yc
        pos += m
        k += 1
    return y


def test_chunking_is_bit_exact_with_modulation():
    rng = np.random.default_rng(7)
    n = 20000
    t = np.arange(n) / SR
    x = _f32(rng.uniform(-1, 1, (1, n)))
    # Sweeps through the linear region (< 2 samples), the clamps and back,
    # with a ring small enough to wrap many times.
    time = (1500 + 1500 * np.sin(2 * np.pi * 5 * t)) / SR
    time[rng.random(n) < 0.01] = 1.5 / SR
    time[8000:8100] = 1.0  # beyond max
    fb = 0.9 * np.sin(2 * np.pi * 2 * t)
    fb[100:200] = 3.0
    time, fb = _f32(time), _f32(fb)
    ref = _chunked(x, time, fb, [n], 2, 3000)
    assert np.array_equal(ref[0], ref[1])  # mono broadcast
    assert np.isfinite(ref).all()
    for sizes in ([1], [64], [100], [8193], [1, 64, 100, 8193, 7]):
        assert np.array_equal(_chunked(x, time, fb, sizes, 2, 3000), ref), sizes


def test_only_first_n_written_and_stereo_input():
    rng = np.random.default_rng(8)
    x = _f32(rng.uniform(-1, 1, (2, 600)))
    y = np.full((2, 600), 9.0, np.float32)
    ring, idx = delay_state(2, 100)
    delay_kernel(x, y, 500, _full(20 / SR, 600), _full(0.0, 600), SR, ring, idx)
    assert np.all(y[:, 500:] == 9.0)
    d = float(np.float32(20 / SR)) * SR
    assert abs(d - 20) < 1e-3
    np.testing.assert_allclose(y[:, 20:500], x[:, :480], atol=1e-3)
    assert idx[0] == 500 % ring.shape[1]


@pytest.mark.parametrize("block", [64, 100, 1])
def test_split_read_write_equals_per_sample_kernel(block):
    rng = np.random.default_rng(11)
    n = 12000
    t = np.arange(n) / SR
    x = _f32(rng.uniform(-1, 1, (1, n)))
    lo = block + 2
    d = lo + 0.3 + (1000 - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    time = _f32(d / SR)
    assert (time.astype(np.float64) * SR >= lo).all()
    fb = _f32(0.8 * np.sin(2 * np.pi * 1.5 * t))
    ref = _chunked(x, time, fb, [n], 2, 1200)
    ring, idx = delay_state(2, 1200)
    got = np.zeros((2, n), np.float32)
    for pos in range(0, n, block):
        m = min(block, n - pos)
        yc = np.zeros((2, m), np.float32)
        delay_read(yc, m, _f32(time[pos:pos + m]), SR, ring, idx)
        delay_write(_f32(x[:, pos:pos + m]), yc, m, _f32(fb[pos:pos + m]), ring, idx)
        got[:, pos:pos + m] = yc
    assert np.array_equal(got, ref)


def test_read_clamps_to_block_plus_two():
    n = 64
    ring, idx = delay_state(1, 1000)
    x = np.zeros((1, 256), np.float32)
    x[0, 0] = 1.0
    outs = []
    for b in range(4):
        y = np.zeros((1, n), np.float32)
        delay_read(y, n, _full(0.0, n), SR, ring, idx)  # asks for 0 s
        delay_write(_f32(x[:, b * n:(b + 1) * n]), y, n, _full(0.0, n), ring, idx)
        outs.append(y[0])
    y = np.concatenate(outs)
    assert int(np.argmax(y)) == n + 2 and y[n + 2] == 1.0


def test_in_place():
    rng = np.random.default_rng(12)
    x = _f32(rng.uniform(-1, 1, (2, 3000)))
    t = _f32(np.linspace(0.5, 40.0, 3000) / SR)
    fb = _full(0.6, 3000)
    ref = np.zeros_like(x)
    ring, idx = delay_state(2, 64)
    delay_kernel(x, ref, 3000, t, fb, SR, ring, idx)
    buf = x.copy()
    ring, idx = delay_state(2, 64)
    delay_kernel(buf, buf, 3000, t, fb, SR, ring, idx)
    assert np.array_equal(buf, ref)
