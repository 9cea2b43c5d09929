"""Effects and dynamics, measured on rendered audio.

waveshaper (static curve, latency, aliasing with and without oversampling),
bitcrush (levels, hold), chorus and flanger (the modulated delay measured
from impulses, moving notches, stereo decorrelation), reverb (T60 by
Schroeder integration, echo density, decorrelation, stability), compressor
(static curve, attack and release times, sidechain), limiter (ceiling,
transparency, latency), width (mid/side).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import db, render_engine
from nodes.dsp import _effects

SR = 48000


def run(node, x, sr=SR, extra=None, score=None):
    """Render ``x`` (mono or (C, frames)) through ``node``; returns (float64 audio, the node)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    nodes = {"src": {"type": "input"}, "dut": {"in": "src", **node}}
    nodes.update(extra or {})
    patch = {"sample_rate": sr, "nodes": nodes, "out": "dut"}
    if score:
        patch["score"] = score
    audio, engine = render_engine(patch, frames=x.shape[1], audio_inputs={"": (x, sr)})
    return audio.astype(np.float64), engine.nodes["dut"]


def sine(freq, seconds, amp=1.0, sr=SR):
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr)


# ================================================================ waveshaper
@pytest.mark.parametrize("shape", _effects.SHAPES)
@pytest.mark.parametrize("oversample", [1, 4])
def test_waveshaper_static_curve_at_low_frequency(shape, oversample):
    x = sine(50.0, 0.2, 0.9)
    drive, bias = 4.0, 0.2
    y, node = run({"type": "waveshaper", "shape": shape, "drive": drive, "bias": bias, "oversample": oversample,
                   "dc_block": False}, x)
    lat = node.latency
    g = 10 ** (drive / 20)
    want = _effects.shape_curve(g * x + bias, _effects.SHAPES.index(shape)) - \
        _effects.shape_curve(np.array([bias]), _effects.SHAPES.index(shape))[0]
    got = y[0, lat:]
    err = np.max(np.abs(got[2000:] - want[2000:x.size - lat]))
    # the kinks of hard clip and the triangle folder ring a little through the halfband filters
    tol = 2e-3 if shape in ("hard", "trifold") and oversample > 1 else 1e-5
    assert err < tol, f"{shape} x{oversample}: max error {err:.2e}"


@pytest.mark.parametrize("oversample,latency", [(1, 0), (2, 55), (4, 62), (8, 64)])
def test_waveshaper_latency_is_reported_and_the_dry_path_matches(oversample, latency):
    x = np.zeros(2000)
    x[300] = 1e-3  # small: the hard clip is linear here
    y, node = run({"type": "waveshaper", "shape": "hard", "drive": 0, "oversample": oversample}, x)
    assert node.latency == latency
    assert int(np.argmax(np.abs(y[0]))) == 300 + latency
    # half dry, half wet: the paths are aligned, so a (band-limited) signal comes out unchanged, delayed
    x = 1e-3 * (sine(1000.0, 0.05) + sine(7000.0, 0.05))
    y, _ = run({"type": "waveshaper", "shape": "hard", "drive": 0, "oversample": oversample, "mix": 0.5,
                "dc_block": False}, x)
    err = np.max(np.abs(y[0, latency + 200:] - x[200:x.size - latency]))  # after the onset
    assert err < 1e-4 * 2e-3


def _alias_db(y, f0=5000):
    """Energy of everything below 20 kHz that is not a harmonic of f0, re the fundamental (dB)."""
    X = np.abs(np.fft.rfft(y)) / y.size * 2
    f = np.arange(X.size) * SR / y.size
    harm = np.isclose(f % f0, 0) | np.isclose(f % f0, f0)
    band = (f > 0) & (f < 20000)
    return 20 * np.log10(np.sqrt(np.sum(X[band & ~harm] ** 2)) / X[int(round(f0 * y.size / SR))])


@pytest.mark.parametrize("shape,gain_db", [("tanh", 60.0), ("asym", 30.0), ("hard", 15.0)])
def test_waveshaper_oversampling_lowers_aliasing(shape, gain_db):
    """A 5 kHz sine driven +18 dB: aliases below 20 kHz, 1x versus 4x (tanh: -25 dB vs -119 dB)."""
    x = sine(5000.0, 0.6, 0.5)
    al = {}
    for os_ in (1, 4):
        y, node = run({"type": "waveshaper", "shape": shape, "drive": 18, "oversample": os_}, x)
        al[os_] = _alias_db(y[0, 4800:4800 + SR // 2])
    assert al[4] < al[1] - gain_db, al


def test_waveshaper_dc_block_and_overdrive():
    x = sine(220.0, 0.5, 0.8)
    y, _ = run({"type": "overdrive"}, x)
    tail = y[0, SR // 4:]
    assert abs(np.mean(tail)) < 1e-3 * np.sqrt(np.mean(tail ** 2))  # no DC left
    X = np.abs(np.fft.rfft(tail))
    k = int(round(220 * tail.size / SR))
    assert X[2 * k] > 0.03 * X[k]  # the asymmetric curve makes even harmonics
    y2, _ = run({"type": "overdrive", "dc_block": False}, x)
    assert abs(np.mean(y2[0, SR // 4:])) > 0.01


# ================================================================ bitcrush
def test_bitcrush_quantises_and_holds():
    x = sine(100.0, 0.1, 0.9)
    y, _ = run({"type": "bitcrush", "bits": 3, "rate": 192000}, x)
    np.testing.assert_allclose(y[0], np.floor(x * 4 + 0.5) / 4, atol=1e-6)
    y, _ = run({"type": "bitcrush", "bits": 24, "rate": 1000}, x)
    runs = np.diff(np.flatnonzero(np.diff(y[0]) != 0))
    assert np.all(np.abs(runs - 48) <= 1)  # held for 48 samples: 1 kHz at 48 kHz
    # continuous bits: between 4 and 5 bits the error lies between theirs
    e = [np.sqrt(np.mean((run({"type": "bitcrush", "bits": b, "rate": 192000}, x)[0][0] - x) ** 2))
         for b in (4.0, 4.5, 5.0)]
    assert e[0] > e[1] > e[2]


# ================================================================ chorus / flanger
def _impulse_delays(y, starts, sr=SR):
    """Centroid delay (samples) of the response to each impulse."""
    out = []
    for s in starts:
        seg = y[s:s + 1200]
        w = seg ** 2
        out.append(np.sum(np.arange(seg.size) * w) / np.sum(w))
    return np.array(out)


@pytest.mark.parametrize("kind", ["flanger", "chorus"])
def test_modulated_delay_follows_the_lfo(kind):
    delay, depth, rate = 0.01, 0.005, 2.0
    x = np.zeros(SR // 2)
    starts = np.arange(1000, x.size - 1200, 1200)
    x[starts] = 1.0
    node = {"type": kind, "delay": delay, "depth": depth, "rate": rate, "feedback": 0, "mix": 1}
    if kind == "chorus":
        node["voices"] = 1
    y, _ = run(node, x)
    got = _impulse_delays(y[0], starts)
    # the tap read at output sample t is d(t) back: t - d(t) = start
    t = np.arange(x.size)
    d = (delay + depth * 0.5 * (1 + np.sin(2 * np.pi * rate * t / SR))) * SR
    want = np.array([np.interp(0.0, t[s:s + 1200] - d[s:s + 1200] - s, t[s:s + 1200] - s) for s in starts])
    assert np.max(np.abs(got - want)) < 0.3, np.max(np.abs(got - want))
    assert got.max() - got.min() > 0.9 * depth * SR  # it really sweeps the whole depth


def test_flanger_notches_move():
    """White noise through a flanger: the first comb notch sits at 1 / (2 delay) and moves with it."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(2 * SR) * 0.3
    node = {"type": "flanger", "delay": 0.001, "depth": 0.003, "rate": 0.5, "feedback": 0, "mix": 0.5}
    y, _ = run(node, x)
    notches = []
    for centre in (0.5, 1.5):  # LFO at its top (4 ms) and at its bottom (1 ms)
        s = int(centre * SR) - 4096
        win = np.hanning(8192)
        H = np.abs(np.fft.rfft(y[0, s:s + 8192] * win)) / (np.abs(np.fft.rfft(x[s:s + 8192] * win)) + 1e-9)
        f = np.fft.rfftfreq(8192, 1 / SR)
        d = 0.001 + 0.003 * 0.5 * (1 + np.sin(2 * np.pi * 0.5 * centre))
        first = 1 / (2 * d)
        band = (f > 0.5 * first) & (f < 1.5 * first)
        smooth = np.convolve(H, np.ones(5) / 5, mode="same")
        notches.append((f[band][np.argmin(smooth[band])], first))
    for got, want in notches:
        assert abs(got - want) < 0.1 * want, notches
    assert notches[1][0] > 3 * notches[0][0]


def test_chorus_is_stereo_and_decorrelated():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(SR // 2) * 0.3
    y, _ = run({"type": "chorus", "voices": 3, "mix": 1.0, "depth": 0.006, "rate": 1.5}, x)
    assert y.shape[0] == 2
    l, r = y[0, 4000:], y[1, 4000:]
    assert np.corrcoef(l, r)[0, 1] < 0.5
    assert 0.7 < np.std(l) / np.std(r) < 1.4


# ================================================================ reverb
def reverb_ir(seconds, sr=SR, **params):
    x = np.zeros(int(seconds * sr))
    x[0] = 1.0
    node = {"type": "reverb", "predelay": 0, "mix": 1, **params}
    return run(node, x, sr)[0]


def t60(h, sr=SR):
    """T60 from the Schroeder backward integral, line fitted between -5 and -35 dB."""
    e = np.cumsum((h ** 2)[::-1])[::-1]
    edb = 10 * np.log10(e / e[0] + 1e-300)
    i5, i35 = np.argmax(edb <= -5), np.argmax(edb <= -35)
    slope = np.polyfit(np.arange(i5, i35) / sr, edb[i5:i35], 1)[0]
    return -60.0 / slope


def echo_density(h, win=1024):
    """Abel and Huang's normalised echo density per window (1 = Gaussian-dense)."""
    return np.array([np.mean(np.abs(h[s:s + win]) > np.std(h[s:s + win])) / 0.3173
                     for s in range(0, h.size - win, win)])


@pytest.mark.parametrize("decay,opts", [(0.5, {}), (1.2, {}), (2.5, {}), (1.0, {"lines": 16}),
                                        (1.0, {"matrix": "householder"}), (1.0, {"size": 0.4, "mod": 1.0})])
def test_reverb_t60_matches_the_decay(decay, opts):
    h = reverb_ir(1.4 * decay + 0.3, decay=decay, damping=0, **opts)
    for ch in h:
        measured = t60(ch)
        assert abs(measured - decay) < 0.15 * decay, f"asked {decay} s, measured {measured:.3f} s"
        assert abs(measured - decay) < 0.05 * decay  # in fact within a few per cent


def test_reverb_damping_shortens_the_highs():
    from scipy.signal import butter, sosfilt

    h = reverb_ir(2.6, decay=2.0, damping=0.6, crossover=2000)
    low = sosfilt(butter(4, 300, "low", fs=SR, output="sos"), h[0])
    high = sosfilt(butter(4, [9000, 14000], "band", fs=SR, output="sos"), h[0])
    assert abs(t60(low) - 2.0) < 0.15 * 2.0
    assert abs(t60(high) - 0.8) < 0.25 * 0.8  # decay x (1 - damping), up to the shelf's slope


def test_reverb_tail_is_dense_and_decorrelated():
    h = reverb_ir(1.0, decay=1.5)
    ned = echo_density(h[0])
    tail = ned[int(0.1 * SR / 1024):int(0.8 * SR / 1024)]
    assert np.mean(tail) > 0.9 and np.min(tail) > 0.75, tail
    assert abs(np.corrcoef(h[0, 4800:], h[1, 4800:])[0, 1]) < 0.2


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(decay=st.floats(0.1, 30.0), damping=st.floats(0.0, 0.95), crossover=st.floats(200, 16000),
       size=st.floats(0.25, 2.0), mod=st.floats(0.0, 1.0), diffusion=st.floats(0.0, 0.9),
       lines=st.sampled_from([8, 16]), matrix=st.sampled_from(["hadamard", "householder"]))
def test_reverb_never_blows_up(decay, damping, crossover, size, mod, diffusion, lines, matrix):
    sr = 16000
    x = np.random.default_rng(3).standard_normal(sr) * 0.5
    x[sr // 2:] = 0.0
    y, _ = run({"type": "reverb", "decay": decay, "damping": damping, "crossover": crossover, "size": size,
                "mod": mod, "diffusion": diffusion, "lines": lines, "matrix": matrix, "mix": 1}, x, sr)
    assert np.all(np.isfinite(y))
    # once the input stops the tail never grows (0.4 s later it is at most where it was)
    e1, e2 = np.sum(y[:, sr // 2 + 1000:sr // 2 + 3000] ** 2), np.sum(y[:, -2000:] ** 2)
    assert e2 <= e1 * 1.2 + 1e-12
    assert np.max(np.abs(y)) < 20


# ================================================================ compressor
def _steady_steps(levels_db, seconds=0.25, freq=1000.0):
    """A 1 kHz sine whose peak level steps through levels_db."""
    parts = [sine(freq, seconds, 10 ** (L / 20)) for L in levels_db]
    return np.concatenate(parts), int(round(seconds * SR))


@pytest.mark.parametrize("detector", ["peak", "rms"])
@pytest.mark.parametrize("thr,ratio,knee", [(-20.0, 4.0, 6.0), (-30.0, 2.0, 0.0), (-12.0, 10.0, 12.0)])
def test_compressor_static_curve(detector, thr, ratio, knee):
    levels = np.arange(-45.0, 1.0, 5.0)
    x, seg = _steady_steps(levels)
    y, _ = run({"type": "compressor", "threshold": thr, "ratio": ratio, "knee": knee, "attack": 0.002,
                "release": 0.05, "makeup": 3.0, "detector": detector}, x)
    for k, L in enumerate(levels):
        s = slice(k * seg + seg // 2, (k + 1) * seg)
        out_peak = db(np.max(np.abs(y[0, s])))
        # the curve applies to the detected level: the peak, or the RMS (peak - 3.01 dB for a sine)
        det = L if detector == "peak" else L - 10 * np.log10(2)
        want = L + (_effects.gain_computer(np.array([det]), thr, ratio, knee)[0] - det) + 3.0
        assert abs(out_peak - want) < 0.5, f"in {L} dB: out {out_peak:.2f} dB, curve {want:.2f} dB"


def _time_to(gdb, start, frac):
    """Seconds after ``start`` until the gain (dB) has moved ``frac`` of the way to its final value."""
    g0, g1 = gdb[start - 10], np.median(gdb[-2000:])
    target = g0 + frac * (g1 - g0)
    seg = gdb[start:]
    return (np.argmax(seg <= target) if g1 < g0 else np.argmax(seg >= target)) / SR


def _gain_db(node, x):
    """The compressor's applied gain (its ``gain`` output) in dB."""
    xs = np.atleast_2d(x.astype(np.float32))
    patch = {"sample_rate": SR, "out": "meter", "nodes": {
        "src": {"type": "input"}, "dut": {"in": "src", **node}, "meter": {"type": "gain", "in": "dut.gain"}}}
    g, _ = render_engine(patch, frames=xs.shape[1], audio_inputs={"": (xs, SR)})
    return db(g[0].astype(np.float64))


@pytest.mark.parametrize("attack,release", [(0.005, 0.1), (0.02, 0.3)])
def test_compressor_attack_and_release_times(attack, release):
    """Steps of 34 dB: the gain moves 63 % of the way in one time constant."""
    node = {"type": "compressor", "threshold": -30.0, "ratio": 8.0, "knee": 0.0, "attack": attack,
            "release": release}
    up = np.concatenate([sine(1000, 0.2, 0.01), sine(1000, 8 * attack + 0.05, 0.5)])
    measured = _time_to(_gain_db(node, up), int(0.2 * SR), 1 - np.exp(-1))
    assert abs(measured - attack) < 0.1 * attack + 0.0005, f"attack {attack} s, measured {measured:.4f} s"
    down = np.concatenate([sine(1000, 0.3, 0.5), sine(1000, 6 * release, 0.01)])
    measured = _time_to(_gain_db(node, down), int(0.3 * SR), 1 - np.exp(-1))
    # the release runs through the attack's smoothing too: it may lag by up to one attack time
    assert -0.1 * release < measured - release < 0.1 * release + attack, \
        f"release {release} s, measured {measured:.4f} s"


def test_compressor_sidechain_ducks():
    """A pad well above the threshold is left alone until the sidechain (a kick) gets loud."""
    patch = {"sample_rate": SR, "out": "dut", "nodes": {
        "pad": {"type": "sine", "freq": 220},
        "padl": {"type": "gain", "in": "pad", "gain": 0.3},
        "kick": {"type": "sine", "freq": 60},
        "kenv": {"type": "constant", "value": 0},
        "kickl": {"type": "gain", "in": "kick", "gain": "kenv"},
        "dut": {"type": "compressor", "in": "padl", "sidechain": "kickl", "threshold": -30.0, "ratio": 10.0,
                "attack": 0.002, "release": 0.1}},
        "score": [{"at": 0.3, "set": "kenv.value", "to": 0.9, "over": 0}]}
    y, _ = render_engine(patch, 0.6)
    before = np.max(np.abs(y[0, int(0.2 * SR):int(0.3 * SR)]))
    after = np.max(np.abs(y[0, int(0.5 * SR):]))
    assert abs(db(before) - db(0.3)) < 0.05  # the detector does not listen to the pad
    want = (db(0.9) + 30.0) * (1 - 1 / 10)  # the kick's gain reduction
    assert abs(db(before) - db(after) - want) < 1.0


# ================================================================ limiter
@pytest.mark.parametrize("true_peak", [False, True])
def test_limiter_never_exceeds_the_ceiling(true_peak):
    from scipy.signal import resample_poly

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, SR)) * np.repeat(rng.uniform(0.05, 4.0, 20), SR // 20)[None, :]
    x[:, SR // 2:SR // 2 + 10] = 8.0  # a burst from nowhere
    y, node = run({"type": "limiter", "ceiling": -1.0, "release": 0.05, "gain": 6.0, "true_peak": true_peak}, x)
    ceil = 10 ** (-1 / 20)
    assert np.max(np.abs(y)) <= ceil + 1e-6
    assert node.latency == 240 + (8 if true_peak else 0)
    # peaks between the samples (4x interpolation, as a true-peak meter): full-band noise pushed 20 dB
    # into the ceiling overshoots by 1.4 dB with sample-peak detection, 0.3 dB with true_peak
    true_peak_db = db(np.max(np.abs(resample_poly(y, 4, 1, axis=1))))
    assert true_peak_db < (-0.5 if true_peak else 1.0), true_peak_db


@pytest.mark.parametrize("true_peak", [False, True])
def test_limiter_is_transparent_below_the_ceiling(true_peak):
    rng = np.random.default_rng(5)
    x = rng.uniform(-0.5, 0.5, (1, SR // 4))
    y, node = run({"type": "limiter", "ceiling": -3.0, "lookahead": 2.0, "true_peak": true_peak}, x)
    L = node.latency
    assert L == 96 + (8 if true_peak else 0)
    if not true_peak:  # (uniform noise has peaks between its samples above -3 dB)
        np.testing.assert_allclose(y[0, L:], x[0, :-L].astype(np.float32), atol=1e-7)
    x = 0.5 * sine(3000.0, 0.25)[None, :]  # a band-limited signal below the ceiling, even between samples
    y, node = run({"type": "limiter", "ceiling": -3.0, "lookahead": 2.0, "true_peak": true_peak}, x)
    np.testing.assert_allclose(y[0, L:], x[0, :-L].astype(np.float32), atol=1e-7)


# ================================================================ width
def test_width_scales_the_side_signal():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4800)) * 0.3
    m, s = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    for w in (0.0, 1.0, 2.0):
        y, _ = run({"type": "width", "width": w}, x)
        np.testing.assert_allclose((y[0] + y[1]) / 2, m, atol=1e-6)
        np.testing.assert_allclose((y[0] - y[1]) / 2, w * s, atol=1e-6)
