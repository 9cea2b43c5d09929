"""Tests of the TPT state-variable filter kernel (nodes/dsp/_filters.py)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.dsp._filters import (
    MODE_ALLPASS,
    MODE_BANDPASS,
    MODE_HIGHPASS,
    MODE_LOWPASS,
    MODE_NOTCH,
    SVF_STATE_COLS,
    rbj_biquad,
    svf_kernel,
    svf_state,
)

SR = 48000.0
ALL_MODES = (MODE_LOWPASS, MODE_HIGHPASS, MODE_BANDPASS, MODE_NOTCH, MODE_ALLPASS)


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _run(x, cutoff, q, mode, channels=None, state=None, sr=SR):
    """Filter a whole (C, n) float32 signal in one call."""
    x = _f32(np.atleast_2d(x))
    n = x.shape[1]
    c = x.shape[0] if channels is None else channels
    y = np.zeros((c, n), np.float32)
    cutoff = _f32(np.broadcast_to(cutoff, (n,)))
    q = _f32(np.broadcast_to(q, (n,)))
    if state is None:
        state = svf_state(c)
    svf_kernel(x, y, n, cutoff, q, mode, sr, state)
    return y


def _run_chunked(x, cutoff, q, mode, sizes, channels):
    n = x.shape[1]
    y = np.zeros((channels, n), np.float32)
    state = svf_state(channels)
    pos = 0
    k = 0
    while pos < n:
        m = min(sizes[k % len(sizes)], n - pos)
        yc = np.zeros((channels, m), np.float32)
        svf_kernel(_f32(x[:, pos:pos + m]), yc, m, _f32(cutoff[pos:pos + m]),
                   _f32(q[pos:pos + m]), mode, SR, state)
        y[:, pos:pos + m] = yc
        pos += m
        k += 1
    return y


def test_state_shape():
    s = svf_state(3)
    assert s.shape == (3, SVF_STATE_COLS) and s.dtype == np.float64
    assert not s.any()


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("fc,q", [(1000.0, 0.707), (5000.0, 4.0), (100.0, 20.0),
                                  (15000.0, 0.5), (23000.0, 2.0)])
def test_impulse_response_equals_rbj_lfilter(mode, fc, q):
    n = 8192
    imp = np.zeros((1, n), np.float32)
    imp[0, 0] = 1.0
    y = _run(imp, fc, q, mode)
    b, a = rbj_biquad(mode, fc, q, SR)
    ref = ss.lfilter(b, a, imp[0].astype(np.float64))
    np.testing.assert_allclose(y[0], ref, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def white():
    rng = np.random.default_rng(20240611)
    return _f32(rng.standard_normal((1, 1 << 17)))


@pytest.mark.parametrize("mode", (MODE_LOWPASS, MODE_HIGHPASS, MODE_BANDPASS))
@pytest.mark.parametrize("fc", (1000.0, 5000.0))
@pytest.mark.parametrize("q", (0.707, 4.0))
def test_magnitude_response_matches_rbj(white, mode, fc, q):
    """Welch H1 estimate (Pxy / Pxx) on white noise vs freqz of the cookbook."""
    y = _run(white, fc, q, mode)
    x64 = white[0].astype(np.float64)
    y64 = y[0].astype(np.float64)
    nper = 16384
    f, pxy = ss.csd(x64, y64, fs=SR, nperseg=nper, window="hann")
    _, pxx = ss.welch(x64, fs=SR, nperseg=nper, window="hann")
    sel = (f >= 50.0) & (f <= 0.8 * SR / 2)
    est_db = 20 * np.log10(np.abs(pxy[sel] / pxx[sel]))
    b, a = rbj_biquad(mode, fc, q, SR)
    _, h = ss.freqz(b, a, worN=f[sel], fs=SR)
    ref_db = 20 * np.log10(np.abs(h))
    dev = np.abs(est_db - ref_db)
    assert dev.max() < 0.5, (dev.max(), f[sel][dev.argmax()])


def test_bandpass_peak_is_0db_and_gain_at_cutoff():
    for q in (0.3, 0.707, 4.0, 50.0):
        for mode, expect in ((MODE_BANDPASS, 1.0), (MODE_LOWPASS, q), (MODE_HIGHPASS, q),
                             (MODE_ALLPASS, 1.0)):
            b, a = rbj_biquad(mode, 2000.0, q, SR)
            _, h = ss.freqz(b, a, worN=[2000.0], fs=SR)
            assert abs(abs(h[0]) - expect) < 1e-9 * max(1.0, expect)


def test_modes_sum_relations():
    """Simper identities on real output: notch = low + high, ap = notch - band."""
    rng = np.random.default_rng(5)
    n = 4096
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc = _f32(np.exp(rng.uniform(np.log(20), np.log(20000), n)))
    q = _f32(np.exp(rng.uniform(np.log(0.1), np.log(30), n)))
    lo, hi, bp, no, ap = (_run(x, fc, q, m)[0].astype(np.float64) for m in ALL_MODES)
    np.testing.assert_allclose(lo + hi, no, atol=1e-3)
    np.testing.assert_allclose(no - bp, ap, atol=1e-3)


@pytest.mark.parametrize("mode", (MODE_LOWPASS, MODE_BANDPASS, MODE_ALLPASS))
def test_chunking_is_bit_exact_with_modulated_params(mode):
    rng = np.random.default_rng(42)
    n = 20000
    x = _f32(rng.uniform(-1, 1, (1, n)))
    t = np.arange(n) / SR
    fc = 2000 * 2 ** (3 * np.sin(2 * np.pi * 3 * t))
    fc[rng.random(n) < 0.01] = 0.0  # abrupt jumps to the clamp
    fc[5000:5100] = 1e9
    q = np.where((np.arange(n) // 700) % 2 == 0, 0.707, 12.0)
    q[rng.random(n) < 0.005] = 150.0
    fc, q = _f32(fc), _f32(q)
    ref = _run(x, fc, q, mode, channels=2)
    for sizes in ([1], [64], [100], [8193], [1, 64, 100, 8193, 3, 5000]):
        got = _run_chunked(x, fc, q, mode, sizes, channels=2)
        assert np.array_equal(got, ref), sizes
    # Mono input broadcasts: both output channels identical.
    assert np.array_equal(ref[0], ref[1])


def test_per_channel_input_and_only_first_n_written():
    rng = np.random.default_rng(1)
    x = _f32(rng.uniform(-1, 1, (2, 600)))
    y = np.full((2, 600), 7.0, np.float32)
    st_ = svf_state(2)
    svf_kernel(x, y, 500, _f32(np.full(600, 800.0)), _f32(np.full(600, 2.0)),
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
    assert np.isfinite(_run(x, np.nan, np.nan, 2)).all()


def test_silence_flushes_state_to_exact_zero():
    imp = np.zeros((1, 48000), np.float32)
    imp[0, 0] = 1.0
    st_ = svf_state(1)
    _run(imp, 1000.0, 0.707, 0, state=st_)
    assert st_[0, 0] == 0.0 and st_[0, 1] == 0.0


@st.composite
def _modulation(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    jump_p = draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]))
    mode = draw(st.sampled_from(ALL_MODES))
    sig = draw(st.sampled_from(["noise", "square", "dc", "resonant"]))
    return seed, jump_p, mode, sig


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_modulation())
def test_stability_under_audio_rate_modulation(params):
    seed, jump_p, mode, sig = params
    rng = np.random.default_rng(seed)
    n = 2000
    lo, hi = np.log(1.0), np.log(0.49 * SR)
    # Smooth audio-rate sweeps of cutoff and q over the whole range ...
    t = np.arange(n) / SR
    fc = np.exp(lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 5000) * t)))
    q = np.exp(np.log(0.05) + np.log(2000) * (0.5 + 0.5 * np.sin(
        2 * np.pi * rng.uniform(1, 5000) * t + rng.uniform(0, 6.3))))
    # ... with abrupt jumps to random values and to the extremes.
    jumps = rng.random(n) < jump_p
    fc[jumps] = np.where(rng.random(jumps.sum()) < 0.5, rng.choice([1.0, 0.49 * SR], jumps.sum()),
                         np.exp(rng.uniform(lo, hi, jumps.sum())))
    jq = rng.random(n) < jump_p
    q[jq] = rng.choice([0.05, 100.0, 0.707, 10.0], jq.sum())
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
    y = _run(x[None], fc, q, mode)
    assert np.isfinite(y).all()
    # A static Q = 100 filter gains ~100 at the cutoff, and the notch/allpass
    # mixes add up to 2k = 40 times the band state; anything that actually
    # blows up grows without bound (and overflows to inf within n samples).
    assert np.abs(y).max() < 1e5 * max(np.abs(x).max(), 1e-12)


def _reference_svf(x, cutoff, q, mode, sr=SR):
    """Plain-Python SVF, coefficients recomputed every sample."""
    ic1 = ic2 = 0.0
    out = np.zeros(len(x))
    for i in range(len(x)):
        fc = min(max(float(cutoff[i]), 1.0), 0.49 * sr)
        qq = min(max(float(q[i]), 0.05), 100.0)
        g = np.tan(np.pi * fc / sr)
        k = 1.0 / qq
        a1 = 1.0 / (1.0 + g * (g + k))
        a2 = g * a1
        a3 = g * a2
        v0 = float(x[i])
        v3 = v0 - ic2
        v1 = a1 * ic1 + a2 * v3
        v2 = ic2 + a2 * ic1 + a3 * v3
        ic1 = 2 * v1 - ic1
        ic2 = 2 * v2 - ic2
        out[i] = (v2, v0 - k * v1 - v2, k * v1, v0 - k * v1, v0 - 2 * k * v1)[mode]
    return out


@pytest.mark.parametrize("mode", ALL_MODES)
def test_modulated_matches_plain_reference(mode):
    """Coefficient caching (tan skipped on repeats) changes nothing."""
    rng = np.random.default_rng(17)
    n = 600
    x = _f32(rng.uniform(-1, 1, (1, n)))
    fc = np.repeat(np.exp(rng.uniform(np.log(20), np.log(30000), n // 6)), 6)
    fc[::7] = rng.uniform(0, 24000, len(fc[::7]))
    q = np.repeat(np.exp(rng.uniform(np.log(0.02), np.log(200), n // 4)), 4)
    fc, q = _f32(fc), _f32(q)
    y = _run(x, fc, q, mode)[0]
    np.testing.assert_allclose(y, _reference_svf(x[0], fc, q, mode), rtol=1e-5, atol=1e-5)


def test_in_place():
    rng = np.random.default_rng(4)
    x = _f32(rng.uniform(-1, 1, (2, 1000)))
    fc = _f32(np.linspace(100, 10000, 1000))
    q = _f32(np.full(1000, 3.0))
    ref = _run(x, fc, q, MODE_BANDPASS)
    buf = x.copy()
    svf_kernel(buf, buf, 1000, fc, q, MODE_BANDPASS, SR, svf_state(2))
    assert np.array_equal(buf, ref)
