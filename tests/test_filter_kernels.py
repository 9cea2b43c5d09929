"""Tests of the filter kernels (nodes/dsp/_filters.py), called directly.

The patch-level measurements (responses against the cookbook written out
independently, ladder tuning, clicks) are in tests/test_filters.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.dsp import _filters as F
from nodes.dsp._filters import (
    MODE_ALLPASS,
    MODE_BANDPASS,
    MODE_HIGHPASS,
    MODE_HIGHSHELF,
    MODE_LOWPASS,
    MODE_LOWSHELF,
    MODE_NOTCH,
    MODE_PEAK,
    SVF_STATE_COLS,
    rbj_biquad,
    svf_batch,
    svf_kernel,
    svf_state,
)

SR = 48000.0
ALL_MODES = tuple(range(8))


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _run(x, cutoff, q, mode, channels=None, state=None, sr=SR, gain=0.0):
    """Filter a whole (C, n) float32 signal in one call."""
    x = _f32(np.atleast_2d(x))
    n = x.shape[1]
    c = x.shape[0] if channels is None else channels
    y = np.zeros((c, n), np.float32)
    if state is None:
        state = svf_state(c)
    svf_kernel(x, y, n, _f32(np.broadcast_to(cutoff, (n,))), _f32(np.broadcast_to(q, (n,))),
               _f32(np.broadcast_to(gain, (n,))), mode, sr, state)
    return y


def _run_chunked(x, cutoff, q, gain, mode, sizes, channels):
    n = x.shape[1]
    y = np.zeros((channels, n), np.float32)
    state = svf_state(channels)
    pos = 0
    k = 0
    while pos < n:
        m = min(sizes[k % len(sizes)], n - pos)
        yc = np.zeros((channels, m), np.float32)
        svf_kernel(_f32(x[:, pos:pos + m]), yc, m, _f32(cutoff[pos:pos + m]), _f32(q[pos:pos + m]),
                   _f32(gain[pos:pos + m]), mode, SR, state)
        y[:, pos:pos + m] = yc
        pos += m
        k += 1
    return y


def _modulation(rng, n):
    """Cutoff, q, gain moving every sample, with holds, jumps and values past the clamps."""
    t = np.arange(n) / SR
    fc = 2000 * 2 ** (3 * np.sin(2 * np.pi * 3 * t))
    fc[rng.random(n) < 0.01] = 0.0  # abrupt jumps to the clamp
    fc[5000:5100] = 1e9
    fc[7000:7700] = 900.0  # held: whole chunks with nothing moving
    q = np.where((np.arange(n) // 700) % 2 == 0, 0.707, 12.0)
    q[rng.random(n) < 0.005] = 150.0
    gain = np.where((np.arange(n) // 900) % 2 == 0, 6.0, -18.0)
    gain[rng.random(n) < 0.003] = 100.0
    return _f32(fc), _f32(q), _f32(gain)


def test_state_shape():
    s = svf_state(3)
    assert s.shape == (3, SVF_STATE_COLS) and s.dtype == np.float64
    assert not s.any()


def test_tan_pi_accuracy():
    """The Pade prewarp: relative error far below 1e-5 over 0 < f/sr < 0.49 (and up to 0.4999)."""
    x = np.concatenate([np.geomspace(1e-7, 0.01, 2000), np.linspace(0.01, 0.4999, 200001)])
    got = np.array([F.tan_pi(v) for v in x[::50]])
    ref = np.tan(np.pi * x[::50])
    assert np.max(np.abs(got / ref - 1)) < 2e-8
    assert F.tan_pi(0.25) == pytest.approx(1.0, rel=2e-8)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("fc,q,gain", [(1000.0, 0.707, 6.0), (5000.0, 4.0, -12.0), (100.0, 20.0, 18.0),
                                       (15000.0, 0.5, -3.0), (23000.0, 2.0, 24.0)])
def test_impulse_response_equals_rbj_lfilter(mode, fc, q, gain):
    n = 8192
    imp = np.zeros((1, n), np.float32)
    imp[0, 0] = 1.0
    y = _run(imp, fc, q, mode, gain=gain)
    b, a = rbj_biquad(mode, fc, q, SR, gain)
    ref = ss.lfilter(b, a, imp[0].astype(np.float64))
    np.testing.assert_allclose(y[0], ref, rtol=0, atol=2e-6 * max(1.0, np.abs(ref).max()))


def test_gain_at_cutoff():
    for q in (0.3, 0.707, 4.0, 50.0):
        for mode, expect in ((MODE_BANDPASS, 1.0), (MODE_LOWPASS, q), (MODE_HIGHPASS, q), (MODE_ALLPASS, 1.0),
                             (MODE_PEAK, 10 ** (9 / 20)), (MODE_LOWSHELF, 10 ** (4.5 / 20)),
                             (MODE_HIGHSHELF, 10 ** (4.5 / 20))):
            b, a = rbj_biquad(mode, 2000.0, q, SR, 9.0)
            _, h = ss.freqz(b, a, worN=[2000.0], fs=SR)
            assert abs(abs(h[0]) - expect) < 1e-9 * max(1.0, expect)


def test_modes_sum_relations():
    """Simper identities on real output: notch = low + high, allpass = notch - band."""
    rng = np.random.default_rng(5)
    n = 4096
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc = _f32(np.exp(rng.uniform(np.log(20), np.log(20000), n)))
    q = _f32(np.exp(rng.uniform(np.log(0.1), np.log(30), n)))
    lo, hi, bp, no, ap = (_run(x, fc, q, m)[0].astype(np.float64) for m in range(5))
    np.testing.assert_allclose(lo + hi, no, atol=1e-3)
    np.testing.assert_allclose(no - bp, ap, atol=1e-3)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_chunking_is_bit_exact_with_modulated_params(mode):
    rng = np.random.default_rng(42)
    n = 20000
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc, q, gain = _modulation(rng, n)
    ref = _run(x, fc, q, mode, channels=2, gain=gain)
    for sizes in ([1], [64], [100], [8193], [1, 64, 100, 8193, 3, 5000]):
        got = _run_chunked(x, fc, q, gain, mode, sizes, channels=2)
        assert np.array_equal(got, ref), sizes
    # Mono input broadcasts: both output channels identical.
    assert np.array_equal(ref[0], ref[1])


@pytest.mark.parametrize("mode", [MODE_LOWPASS, MODE_NOTCH, MODE_LOWSHELF])
@pytest.mark.parametrize("channels", [1, 2])
def test_batch_equals_node_by_node(mode, channels):
    """One batched call (lanes four at a time, interleaved, the rest one by one; flush
    counters equal or not) gives the same bits as calling the kernel node by node."""
    rng = np.random.default_rng(7)
    V, n = 7, 3000
    x = _f32(rng.uniform(-1, 1, (V, 1, n)))
    fc = np.empty((V, n), np.float32)
    q = np.empty((V, n), np.float32)
    gain = np.empty((V, n), np.float32)
    for v in range(V):
        fc[v], q[v], gain[v] = (a[:n] for a in _modulation(rng, 8000))
        fc[v] *= 1 + 0.1 * v
    fc[2] = 700.0  # a lane that holds still beside moving ones
    for stagger in (False, True):
        st_b = np.zeros((V, channels, SVF_STATE_COLS))
        if stagger:  # members reset at other times: their flush counters differ
            st_b[:, :, 5] = np.array([0, 17, 63, 5, 0, 40, 1])[:, None]
        st_s = st_b.copy()
        yb = np.zeros((V, channels, n), np.float32)
        for pos, m in ((0, 1000), (1000, 37), (1037, n - 1037)):
            yc = np.zeros((V, channels, m), np.float32)
            svf_batch(_f32(x[:, :, pos:pos + m]), yc, m, _f32(fc[:, pos:pos + m]), _f32(q[:, pos:pos + m]),
                      _f32(gain[:, pos:pos + m]), mode, SR, st_b)
            yb[:, :, pos:pos + m] = yc
        for v in range(V):
            ys = np.zeros((channels, n), np.float32)
            svf_kernel(x[v], ys, n, fc[v], q[v], gain[v], mode, SR, st_s[v])
            assert np.array_equal(ys, yb[v]), (stagger, v)
        assert np.array_equal(st_s, st_b)


def test_batch_shares_one_gain_row():
    rng = np.random.default_rng(8)
    V, n = 5, 500
    x = _f32(rng.uniform(-1, 1, (V, 1, n)))
    fc = _f32(rng.uniform(100, 9000, (V, n)))
    q = np.full((V, n), 2.0, np.float32)
    g1 = _f32(rng.uniform(-12, 12, (1, n)))
    y1 = np.zeros((V, 1, n), np.float32)
    svf_batch(x, y1, n, fc, q, g1, MODE_PEAK, SR, np.zeros((V, 1, SVF_STATE_COLS)))
    yv = np.zeros((V, 1, n), np.float32)
    svf_batch(x, yv, n, fc, q, np.repeat(g1, V, axis=0), MODE_PEAK, SR, np.zeros((V, 1, SVF_STATE_COLS)))
    assert np.array_equal(y1, yv)


def test_per_channel_input_and_only_first_n_written():
    rng = np.random.default_rng(1)
    x = _f32(rng.uniform(-1, 1, (2, 600)))
    y = np.full((2, 600), 7.0, np.float32)
    st_ = svf_state(2)
    svf_kernel(x, y, 500, _f32(np.full(600, 800.0)), _f32(np.full(600, 2.0)), _f32(np.zeros(600)),
               MODE_LOWPASS, SR, st_)
    assert np.all(y[:, 500:] == 7.0)
    b, a = rbj_biquad(MODE_LOWPASS, 800.0, 2.0, SR)
    for c in range(2):
        np.testing.assert_allclose(y[c, :500], ss.lfilter(b, a, x[c, :500]), atol=1e-5)


def test_clamps():
    rng = np.random.default_rng(2)
    x = _f32(rng.uniform(-1, 1, (1, 3000)))
    assert np.array_equal(_run(x, 0.0, 1.0, 0), _run(x, 1.0, 1.0, 0))
    assert np.array_equal(_run(x, -5.0, 1.0, 0), _run(x, 1.0, 1.0, 0))
    assert np.array_equal(_run(x, 1e9, 1.0, 0), _run(x, 0.49 * SR, 1.0, 0))
    assert np.array_equal(_run(x, 500.0, 0.0, 1), _run(x, 500.0, -3.0, 1))
    # float32(0.05) is a hair above the clamp, so not bit-equal here.
    np.testing.assert_allclose(_run(x, 500.0, 0.0, 1), _run(x, 500.0, 0.05, 1), atol=1e-5)
    assert np.array_equal(_run(x, 500.0, 1e6, 1), _run(x, 500.0, 100.0, 1))
    assert np.array_equal(_run(x, 500.0, 1.0, MODE_PEAK, gain=500.0), _run(x, 500.0, 1.0, MODE_PEAK, gain=60.0))
    for mode in ALL_MODES:
        assert np.isfinite(_run(x, np.nan, np.nan, mode, gain=np.nan)).all()


def test_silence_flushes_state_to_exact_zero():
    imp = np.zeros((1, 48000), np.float32)
    imp[0, 0] = 1.0
    st_ = svf_state(1)
    _run(imp, 1000.0, 0.707, 0, state=st_)
    assert st_[0, 0] == 0.0 and st_[0, 1] == 0.0


@st.composite
def _stress(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    jump_p = draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]))
    mode = draw(st.sampled_from(ALL_MODES))
    sig = draw(st.sampled_from(["noise", "square", "dc", "resonant"]))
    return seed, jump_p, mode, sig


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_stress())
def test_stability_under_audio_rate_modulation(params):
    """Beyond the nodes' ranges: cutoff 1 Hz..0.49 sr, Q 0.05..100, gain +-60 dB, any jumps."""
    seed, jump_p, mode, sig = params
    rng = np.random.default_rng(seed)
    n = 2000
    lo, hi = np.log(1.0), np.log(0.49 * SR)
    t = np.arange(n) / SR
    fc = np.exp(lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 5000) * t)))
    q = np.exp(np.log(0.05) + np.log(2000) * (0.5 + 0.5 * np.sin(
        2 * np.pi * rng.uniform(1, 5000) * t + rng.uniform(0, 6.3))))
    gain = 60 * np.sin(2 * np.pi * rng.uniform(1, 5000) * t)
    jumps = rng.random(n) < jump_p
    fc[jumps] = np.where(rng.random(jumps.sum()) < 0.5, rng.choice([1.0, 0.49 * SR], jumps.sum()),
                         np.exp(rng.uniform(lo, hi, jumps.sum())))
    jq = rng.random(n) < jump_p
    q[jq] = rng.choice([0.05, 100.0, 0.707, 10.0], jq.sum())
    gain[rng.random(n) < jump_p] = 60.0
    if sig == "noise":
        x = rng.uniform(-1, 1, n)
    elif sig == "square":
        x = np.sign(np.sin(2 * np.pi * rng.uniform(20, 20000) * t))
    elif sig == "dc":
        x = np.ones(n)
    else:  # a sine at the (initial) cutoff, q pinned high: maximal resonance
        f0 = rng.uniform(20, 20000)
        x = np.sin(2 * np.pi * f0 * t)
        fc[: n // 2] = f0
        q[: n // 2] = 100.0
    y = _run(x[None], fc, q, mode, gain=gain)
    assert np.isfinite(y).all()
    # Static: Q 100 gains ~100 at the cutoff, +60 dB shelves 1000; anything
    # that actually blows up grows without bound (and overflows within n samples).
    assert np.abs(y).max() < 1e7 * max(np.abs(x).max(), 1e-12)


def _reference_svf(x, cutoff, q, gain, mode, sr=SR):
    """Plain-Python SVF in Simper's form, exact tan, coefficients recomputed every sample."""
    ic1 = ic2 = 0.0
    out = np.zeros(len(x))
    for i in range(len(x)):
        fc = min(max(float(cutoff[i]), 1.0), 0.49 * sr)
        qq = min(max(float(q[i]), 0.05), 100.0)
        A = 10 ** (min(max(float(gain[i]), -60.0), 60.0) / 40)
        g = np.tan(np.pi * fc / sr)
        k = 1.0 / qq
        m = {MODE_LOWPASS: (0, 0, 1), MODE_HIGHPASS: (1, -k, -1), MODE_BANDPASS: (0, k, 0),
             MODE_NOTCH: (1, -k, 0), MODE_ALLPASS: (1, -2 * k, 0)}.get(mode)
        if mode == MODE_PEAK:
            k = 1 / (qq * A)
            m = (1, k * (A * A - 1), 0)
        elif mode == MODE_LOWSHELF:
            g /= np.sqrt(A)
            m = (1, k * (A - 1), A * A - 1)
        elif mode == MODE_HIGHSHELF:
            g *= np.sqrt(A)
            m = (A * A, k * (1 - A) * A, 1 - A * A)
        a1 = 1.0 / (1.0 + g * (g + k))
        a2 = g * a1
        a3 = g * a2
        v0 = float(x[i])
        v3 = v0 - ic2
        v1 = a1 * ic1 + a2 * v3
        v2 = ic2 + a2 * ic1 + a3 * v3
        ic1 = 2 * v1 - ic1
        ic2 = 2 * v2 - ic2
        out[i] = m[0] * v0 + m[1] * v1 + m[2] * v2
    return out


@pytest.mark.parametrize("mode", ALL_MODES)
def test_modulated_matches_plain_reference(mode):
    """The fast paths (held chunks, cutoff-only chunks, the Pade tan, the rearranged
    recursion) are the textbook SVF recomputed every sample."""
    rng = np.random.default_rng(17)
    n = 600
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc = np.repeat(np.exp(rng.uniform(np.log(20), np.log(30000), n // 6)), 6)
    fc[::7] = rng.uniform(0, 24000, len(fc[::7]))
    fc[200:330] = 1234.0
    q = np.repeat(np.exp(rng.uniform(np.log(0.02), np.log(200), n // 4)), 4)
    q[100:400] = 3.0
    gain = np.repeat(rng.uniform(-20, 20, n // 50), 50)
    fc, q, gain = _f32(fc), _f32(q), _f32(gain)
    y = _run(x, fc, q, mode, gain=gain)[0]
    ref = _reference_svf(x[0], fc, q, gain, mode)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))


def test_in_place():
    rng = np.random.default_rng(4)
    x = _f32(rng.uniform(-1, 1, (2, 1000)))
    fc = _f32(np.linspace(100, 10000, 1000))
    q = _f32(np.full(1000, 3.0))
    ref = _run(x, fc, q, MODE_BANDPASS)
    buf = x.copy()
    svf_kernel(buf, buf, 1000, fc, q, q, MODE_BANDPASS, SR, svf_state(2))
    assert np.array_equal(buf, ref)


# ---------------------------------------------------------------- the other kernels
def _other(name, x, params, channels, state=None, sizes=None):
    """Run ladder / onepole / dcblock / svf_multi over x (C, n), optionally in chunks; returns outputs."""
    n = x.shape[1]
    if state is None:
        state = {"ladder": F.ladder_state, "onepole": F.onepole_state, "dcblock": F.dcblock_state,
                 "multi": F.svf_state}[name](channels)
    nout = 5 if name == "multi" else 1
    ys = [np.zeros((channels, n), np.float32) for _ in range(nout)]
    pos = 0
    k = 0
    sizes = sizes or [n]
    while pos < n:
        m = min(sizes[k % len(sizes)], n - pos)
        xs = _f32(x[:, pos:pos + m])
        ps = [_f32(p[pos:pos + m]) for p in params]
        yc = [np.zeros((channels, m), np.float32) for _ in range(nout)]
        if name == "ladder":
            F.ladder_kernel(xs, yc[0], m, ps[0], ps[1], ps[2], SR, state)
        elif name == "onepole":
            F.onepole_kernel(xs, yc[0], m, ps[0], True, SR, state)
        elif name == "dcblock":
            F.dcblock_kernel(xs, yc[0], m, ps[0], SR, state)
        else:
            F.svf_multi_kernel(xs, *yc, m, ps[0], ps[1], SR, state)
        for y, c in zip(ys, yc):
            y[:, pos:pos + m] = c
        pos += m
        k += 1
    return ys


@pytest.mark.parametrize("name", ["ladder", "onepole", "dcblock", "multi"])
def test_other_kernels_chunking_is_bit_exact(name):
    rng = np.random.default_rng(3)
    n = 6000
    x = _f32(rng.uniform(-2, 2, (1, n)))
    fc = _f32(np.exp(rng.uniform(np.log(5), np.log(20000), n)))
    fc[1000:2000] = 440.0
    p2 = _f32(rng.uniform(0, 1, n) if name == "ladder" else np.exp(rng.uniform(np.log(0.1), np.log(40), n)))
    drive = _f32(np.exp(rng.uniform(np.log(0.1), np.log(20), n)))
    params = [fc, p2, drive]
    ref = _other(name, x, params, 2)
    for sizes in ([1], [64], [777], [1, 64, 100, 3, 2000]):
        got = _other(name, x, params, 2, sizes=sizes)
        for a, b in zip(got, ref):
            assert np.array_equal(a, b), sizes
    for y in ref:
        assert np.isfinite(y).all()


def test_svf_multi_outputs_are_the_modes():
    rng = np.random.default_rng(6)
    n = 3000
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc = _f32(np.exp(rng.uniform(np.log(50), np.log(15000), n)))
    q = _f32(np.exp(rng.uniform(np.log(0.2), np.log(20), n)))
    out, lp, hp, bp, notch = _other("multi", x, [fc, q], 1)
    assert np.array_equal(out, lp)
    for y, mode in ((lp, MODE_LOWPASS), (hp, MODE_HIGHPASS), (bp, MODE_BANDPASS), (notch, MODE_NOTCH)):
        np.testing.assert_allclose(y, _run(x, fc, q, mode), atol=2e-6)


def test_ladder_is_bounded_by_its_tanh():
    """Whatever the input and modulation, |u| <= 1 and the stages contract: the output stays small."""
    rng = np.random.default_rng(9)
    n = 20000
    x = _f32(rng.uniform(-100, 100, (1, n)))
    fc = _f32(np.exp(rng.uniform(np.log(1), np.log(30000), n)))
    res = _f32(rng.uniform(-1, 3, n))
    drive = _f32(np.exp(rng.uniform(np.log(0.01), np.log(1000), n)))
    (y,) = _other("ladder", x, [fc, res, drive], 1)
    assert np.isfinite(y).all() and np.abs(y).max() < 100
