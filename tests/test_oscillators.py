"""The oscillator family measured: FM, PM, hard sync, pulse, wavetable, phasor, lfo, brown noise.

Renders real patches (and, for the exactness checks, the numba kernels
directly) and measures the audio: aliasing by FFT, pitch by zero
crossings, FM/PM sidebands against Bessel functions, a brute-force
band-limited render of the modulated saw/triangle/pulse, LFO shapes against
their formulas, the brown noise's spectral slope. Run with ``-s`` to see
the measured numbers.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.special import jv

import patchlib
from nodes.dsp import _osc as osc
from nodes.dsp import _wavetable as wt

from conftest import SR, bin_amplitude, render_engine, render_patch, rms, zero_crossing_freq

# ---------------------------------------------------------------- instruments
NFFT = 1 << 16
GUARD = 8  # bins either side of a harmonic: the Blackman-Harris main lobe is +-4


def blackman_harris(m):
    a0, a1, a2, a3 = 0.35875, 0.48829, 0.14128, 0.01168
    x = 2.0 * np.pi * np.arange(m) / m
    return a0 - a1 * np.cos(x) + a2 * np.cos(2 * x) - a3 * np.cos(3 * x)


def alias_db(x, f0, sr=SR):
    """Energy off the harmonics of f0 relative to the energy on them, in dB.

    The last NFFT samples (a steady tone) are windowed (Blackman-Harris,
    -92 dB side lobes); bins within GUARD of k*f0 (k*f0 <= Nyquist) are
    harmonic, the few bins next to DC are ignored, everything else counts as
    alias. The window's leakage puts the floor near -92 dB.
    """
    seg = np.asarray(x[-NFFT:], np.float64)
    p = np.abs(np.fft.rfft(seg * blackman_harris(NFFT))) ** 2
    harm = np.zeros(p.size, bool)
    for k in range(1, int(sr / 2 / f0) + 1):
        b = int(round(k * f0 * NFFT / sr))
        harm[max(b - GUARD, 0): b + GUARD + 1] = True
    alias = ~harm
    alias[: GUARD + 1] = False
    return 10.0 * np.log10(p[alias].sum() / p[harm].sum())


def one(nodes, frames, out="x", sr=SR, **patch):
    """Render a patch of nodes; float64 mono of ``out``."""
    p = {"sample_rate": sr, "nodes": nodes, "out": out, **patch}
    return render_patch(p, frames=frames)[0].astype(np.float64)


SAW_HARMONICS = [1.0 / k for k in range(1, 400)]


def test_alias_instrument_sees_aliasing_and_not_a_clean_tone():
    f0, n = 4117.4, NFFT + 4096
    t = np.arange(n) / SR
    ideal = sum((2 / np.pi) / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, int(SR / 2 / f0) + 1))
    naive = 2.0 * ((f0 * t) % 1.0) - 1.0
    print(f"instrument: additive saw {alias_db(ideal, f0):.1f} dB, naive saw {alias_db(naive, f0):.1f} dB")
    assert alias_db(ideal, f0) < -85.0
    assert alias_db(naive, f0) > -20.0


# ---------------------------------------------------------------- aliasing
# A 4 kHz tone at 48 kHz repeats every 12 samples, so every alias lands
# exactly on a harmonic and no FFT can see it: the bar is checked a quarter
# tone above 4 kHz (and at 4 kHz at 44.1 kHz), where aliases fall between
# the harmonics.
ALIAS_CASES = [
    ("saw", {}, 4117.4, SR),
    ("saw", {}, 4000.0, 44100),
    ("square", {}, 4117.4, SR),
    ("triangle", {}, 4117.4, SR),
    ("pulse", {"pw": 0.3}, 4117.4, SR),
    ("pulse", {"pw": 0.3}, 4000.0, 44100),
    ("wavetable", {"harmonics": SAW_HARMONICS}, 4117.4, SR),
    ("wavetable", {"harmonics": SAW_HARMONICS}, 4000.0, 44100),
]


@pytest.mark.parametrize("kind,extra,f0,sr", ALIAS_CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in ALIAS_CASES])
def test_aliasing_at_4khz_is_50db_down(kind, extra, f0, sr):
    y = one({"x": {"type": kind, "freq": f0, **extra}}, NFFT + 4096, sr=sr)
    db = alias_db(y, f0, sr)
    print(f"{kind} {extra.get('pw', '')} {f0} Hz at {sr}: alias {db:.1f} dB")
    assert db <= -50.0


@pytest.mark.parametrize("f0", [55.0, 110.0 * 1.0137, 1000.0 * 1.0137])
def test_wavetable_low_notes_interpolate_cleanly(f0):
    # 256 harmonics in a 2048-point table: the cubic lookup's images stay far down
    y = one({"x": {"type": "wavetable", "freq": f0, "harmonics": SAW_HARMONICS}}, NFFT + 4096)
    db = alias_db(y, f0)
    print(f"wavetable saw {f0:.1f} Hz: alias {db:.1f} dB")
    assert db <= -60.0


def test_wavetable_never_plays_a_harmonic_above_nyquist():
    # every quarter octave from 40 Hz to 20 kHz, with 40 equal harmonics (a
    # pulse train: its top harmonics are as loud as its first)
    worst = -300.0
    for f0 in 40.0 * 2.0 ** (np.arange(0, 36) / 4 + 0.13):
        y = one({"x": {"type": "wavetable", "freq": float(f0), "harmonics": [1.0] * 40}}, NFFT + 2048)
        worst = max(worst, alias_db(y, f0))
    print(f"wavetable, 40 equal harmonics, 40 Hz - 20 kHz: worst alias {worst:.1f} dB")
    assert worst <= -60.0


def test_wavetable_plays_the_richest_level_that_fits_below_nyquist():
    levels = 40
    for speed in np.geomspace(1e-4, 0.5, 500):
        m = wt._level(speed, levels)
        k = wt.level_harmonics(m)
        assert k * speed <= 0.5 + 1e-12  # never above Nyquist
        if m < levels - 1:
            assert wt.level_harmonics(m + 1) * speed > 0.5  # the next level would not fit
            assert (k + 1) * speed > 0.5 * 2 ** -0.25  # what is left out is within a quarter octave of Nyquist
    assert wt._level(0.0, levels) == levels - 1 and wt._level(0.7, levels) == 0


def test_pwm_pulse_stays_band_limited_where_the_plain_square_does_not():
    # pw swept by a sine at f0/4: the signal repeats every 4 cycles, so its
    # harmonics are those of f0/4; the pulse places each PWM edge exactly
    f0 = 1234.5
    pw = {"from": "m", "range": [0.1, 0.9], "curve": "lin"}
    nodes = {"m": {"type": "sine", "freq": f0 / 4}}
    got = {}
    for kind in ("pulse", "square"):
        y = one({**nodes, "x": {"type": kind, "freq": f0, "pw": pw}}, NFFT + 4096)
        got[kind] = alias_db(y, f0 / 4)
    print(f"PWM at f0/4, f0 {f0}: pulse {got['pulse']:.1f} dB, square {got['square']:.1f} dB")
    assert got["pulse"] <= -70.0
    assert got["pulse"] < got["square"] - 10.0


@pytest.mark.parametrize("kind,bar", [("saw", 45.0), ("triangle", 65.0), ("pulse", 40.0)])
def test_through_zero_fm_and_pm_stay_band_limited(kind, bar):
    # Carrier 2 x the modulator: the result repeats at the modulator's
    # period. FM index 2.5 (deviation 2.5 x fm > carrier: the frequency goes
    # negative), PM 0.4 cycles. The kernels match the brute-force render of
    # their model (below) to 1e-5 here; what aliasing is left comes from the
    # model itself: the frequency is held over each sample (the modulator is
    # a sampled signal), which puts a little of the saw's very high
    # sidebands at n * fm +- sr, and those fold. A naive render of the same
    # phase shows what the band-limiting removes.
    fmod = 1234.5
    for port, depth in (("fm", 2.5 * fmod), ("pm", 0.4)):
        nodes = {"m": {"type": "sine", "freq": fmod},
                 "x": {"type": kind, "freq": 2 * fmod, port: "m", f"{port}_depth": depth}}
        y = one(nodes, NFFT + 4096)
        m = one(nodes, NFFT + 4096, out="m").astype(np.float32).astype(np.float64)
        if port == "fm":
            theta = np.concatenate([[0.0], np.cumsum(2 * fmod + depth * m[:-1])]) / SR
        else:
            theta = np.arange(m.size) * 2 * fmod / SR + np.float32(depth) * m
        naive = brute_naive(kind, theta % 1.0)
        db, naive_db = alias_db(y, fmod), alias_db(naive, fmod)
        print(f"{kind} {port}: alias {db:.1f} dB (naive {naive_db:.1f} dB)")
        assert db <= -bar
        assert db < naive_db - 20.0


def brute_naive(kind, theta, pw=0.3):
    """The naive waveform at phase theta (0..1)."""
    return _naive(kind, pw)[0](theta)


# ---------------------------------------------------------------- hard sync
def _fundamental_freq(y, f_guess):
    """Frequency of the component near f_guess: every other bin zeroed, then zero crossings."""
    spec = np.fft.rfft(y)
    f = np.fft.rfftfreq(y.size, 1 / SR)
    spec[np.abs(f - f_guess) > 0.2 * f_guess] = 0.0
    return zero_crossing_freq(np.fft.irfft(spec, y.size)[2000:-2000])


@pytest.mark.parametrize("fmaster,ratio,bar", [(1234.5, 2.37, 65.0), (4117.4, 2.37, 40.0), (4117.4, 1.5, 40.0)])
def test_synced_saw_has_the_masters_period_and_little_aliasing(fmaster, ratio, bar):
    nodes = {"m": {"type": "sine", "freq": fmaster}, "x": {"type": "saw", "freq": fmaster * ratio, "sync": "m"}}
    y = one(nodes, NFFT + 4096)
    f = _fundamental_freq(y[4096:], fmaster)
    db = alias_db(y, fmaster)
    print(f"sync saw {fmaster * ratio:.1f} Hz to a {fmaster} Hz sine: fundamental {f:.4f} Hz, alias {db:.1f} dB")
    assert f == pytest.approx(fmaster, abs=2e-3)
    # all but -bar dB of the energy lies on the master's harmonics: the
    # period is the master's. What is left is mostly the jitter of the
    # linearly interpolated crossing of the sine master (next test: with an
    # exact crossing the synced saw is as clean as a free one).
    assert db <= -bar


def _kernel(kind, n, freq, fm=0.0, fmd=1.0, pm=0.0, pmd=1.0, sync=0.0, pw=0.5, pos=0.0, tables=None, sr=48000.0,
            phase=0.0, chunks=None, state=None):
    """Render a modulated kernel directly, whole or in chunks; returns (out, state)."""
    def f32(x):
        a = np.empty(n, np.float32)
        a[:] = x
        return a

    fr, fm, fmd, pm, pmd, sync, pw, pos = (f32(v) for v in (freq, fm, fmd, pm, pmd, sync, pw, pos))
    st = osc.periodic_state(phase, pw[0]) if state is None else state.copy()
    out = np.full(n + 3, 7.0, np.float32)
    sizes = [n] if chunks is None else list(chunks)
    i = k = 0
    while i < n:
        m = min(sizes[k % len(sizes)], n - i)
        k += 1
        s = slice(i, None)
        args = (out[s], m, fr[s], fm[s], fmd[s], pm[s], pmd[s], sync[s])
        if kind == "sine":
            osc.sine_mod_kernel(*args, sr, st)
        elif kind == "saw":
            osc.saw_mod_kernel(*args, sr, st)
        elif kind == "triangle":
            osc.triangle_mod_kernel(*args, sr, st)
        elif kind == "pulse":
            osc.pulse_mod_kernel(*args, pw[s], sr, st)
        elif kind == "wavetable":
            wt.wavetable_kernel(*args, pos[s], tables, sr, st)
        else:
            raise ValueError(kind)
        i += m
    assert np.all(out[n:] == 7.0), "wrote past out[:n]"
    return out[:n].astype(np.float64), st


_SAWTABLE = wt.build_tables(wt.spectrum_from_harmonics(SAW_HARMONICS)[None])


@pytest.mark.parametrize("kind,bar", [("saw", 85.0), ("triangle", 85.0), ("pulse", 85.0), ("sine", 40.0),
                                      ("wavetable", 25.0)])
def test_sync_to_an_exact_ramp_is_band_limited(kind, bar):
    # A naive ramp crosses zero linearly, so the interpolated crossing is
    # exact: what is left is the slave's own aliasing. The saw, triangle and
    # pulse reach the instrument's floor; the sine and wavetable get a
    # minBLEP for the jump only, their slope change stays naive (documented).
    fmaster, n = 1234.5, NFFT + 4096
    ramp = 2.0 * ((np.arange(n) * fmaster / 48000.0 + 0.5) % 1.0) - 1.0
    y, _ = _kernel(kind, n, fmaster * 2.37, sync=ramp, pw=0.3, tables=_SAWTABLE)
    db = alias_db(y, fmaster)
    print(f"{kind} synced at 2.37 x {fmaster} Hz to an exact ramp: alias {db:.1f} dB")
    assert db <= -bar


def test_sync_restarts_at_the_start_phase_between_samples():
    # a slow saw synced by a square whose rising edge falls at sample 100.25
    n = 400
    sync = np.full(n, -1.0)
    sync[101:] = 3.0  # -1 -> 3 between samples 100 and 101: crossing at 100.25
    y, _ = _kernel("saw", n, 100.0, sync=sync)
    ref, _ = _kernel("saw", n, 100.0)
    assert np.array_equal(y[:100], ref[:100])  # before the sync: untouched (the residual starts after)
    # well after: the saw restarted at 100.25 (phase 0), so it reads as a
    # fresh saw delayed by 100.25 samples
    # (the ramp, like every saw here, is compensated for the filter's delay TAU)
    t = np.arange(200, 330) - 100.25 - osc.TAU  # (its next edge is at 340.25)
    assert np.max(np.abs(y[200:330] - 2.0 * (t * 100.0 / 48000.0))) < 1e-5


# ---------------------------------------------------------------- exactness
def _naive(kind, pw):
    """Naive waveform and its antiderivative F (F(0) = 0) over one cycle; F over a whole cycle."""
    if kind == "saw":
        return (lambda p: np.where(p < 0.5, 2 * p, 2 * p - 2)), (lambda p: np.where(p < 0.5, p * p, (1 - p) ** 2)), 0.0
    if kind == "triangle":
        w = lambda p: np.where(p < 0.25, 4 * p, np.where(p < 0.75, 2 - 4 * p, 4 * p - 4))  # noqa: E731
        f = lambda p: np.where(p < 0.25, 2 * p * p,  # noqa: E731
                               np.where(p < 0.75, 2 * p - 2 * p * p - 0.25, 2 * (1 - p) ** 2))
        return w, f, 0.0
    return (lambda p: np.where(p < pw, 1.0, -1.0)), (lambda p: np.where(p < pw, p, 2 * pw - p)), 2 * pw - 1


def brute_force(kind, freq, fm, pm, sync, sr, phase=0.0, pw=0.5):
    """The modulated kernels' model, rendered the slow way.

    The phase path of each interval between samples (linear base phase at
    (freq + fm) / sr, linear phase modulation the short way round, a sync
    at the linearly interpolated crossing restarting the base phase) is
    box-averaged exactly on a 64x grid through the waveform's
    antiderivative, and the grid is convolved with the minBLEP filter.
    """
    os_ = osc.MINBLEP_OVERSAMPLING
    n = len(freq)
    w, big_f, f1 = _naive(kind, pw)

    def anti(u):  # unwrapped antiderivative
        fl = np.floor(u)
        return fl * f1 + big_f(u - fl)

    def cells(a, rate, t0, t1):  # mean of w over [t0, t1] with theta = a + rate * t
        if abs(rate) < 1e-12:
            return w(np.asarray(a - np.floor(a)))
        return (anti(a + rate * t1) - anti(a + rate * t0)) / (rate * (t1 - t0))

    dmax = 0.5 - 1e-6
    grid = np.arange(os_ + 1) / os_
    rows = np.empty((n, os_))
    p, pm_prev, s_prev, dt = phase, 0.0, 0.0, 0.0
    for j in range(n):  # interval (j-1, j]
        pmj = pm[j] - np.floor(pm[j])
        dpm = pmj - pm_prev
        dpm -= np.floor(dpm + 0.5)
        rate = dt + dpm
        a = (p + pm_prev) % 1.0
        tau = s_prev / (s_prev - sync[j]) if (s_prev <= 0 < sync[j]) else -1.0
        if tau >= 0:
            th_r = (phase + pm_prev + dpm * tau) % 1.0
            for c in range(os_):
                t0, t1 = grid[c], grid[c + 1]
                acc = 0.0
                if t0 < tau:
                    e = min(t1, tau)
                    acc += cells(a, rate, t0, e) * (e - t0)
                if t1 > tau:
                    s = max(t0, tau)
                    acc += cells(th_r - rate * tau, rate, s, t1) * (t1 - s)
                rows[j, c] = acc * os_
            p = (phase + dt * (1 - tau)) % 1.0
        else:
            rows[j] = cells(a, rate, grid[:-1], grid[1:])
            p = (p + dt) % 1.0
        pm_prev, s_prev = pmj, sync[j]
        dt = float(np.clip((freq[j] + fm[j]) / sr, -dmax, dmax))
    big_m = osc.RING_LEN * os_
    hist = np.full(big_m, float(w(np.asarray(phase % 1.0))))
    a_all = np.concatenate([hist, rows.ravel()])
    step = osc._BLEP[: big_m + 1] + 1.0
    wts = np.diff(np.concatenate([[0.0], step]))
    windows = np.lib.stride_tricks.sliding_window_view(a_all, big_m)
    g = big_m + (np.arange(n) + 1) * os_
    return windows[g - big_m] @ wts[big_m:0:-1]


def _wild_inputs(n, sr=48000.0):
    t = np.arange(n) / sr
    freq = (1800.0 * (1 + 0.3 * np.sin(2 * np.pi * 40 * t)) + 6000.0 * (t > 0.02)).astype(np.float32)
    fm = (4000.0 * np.sin(2 * np.pi * 700 * t)).astype(np.float32)  # through zero: down to -2200 Hz
    pm = (0.3 * np.sin(2 * np.pi * 310 * t) + 0.45 * (t > 0.03)).astype(np.float32)  # a jump of 0.45 cycles
    sync = np.sin(2 * np.pi * 437.0 * t).astype(np.float32)
    return freq, fm, pm, sync


@pytest.mark.parametrize("kind", ["saw", "triangle", "pulse"])
def test_modulated_kernels_match_a_brute_force_render(kind):
    n = 2400
    freq, fm, pm, sync = _wild_inputs(n)
    y, _ = _kernel(kind, n, freq, fm=fm, pm=pm, sync=sync, pw=0.3, phase=0.1)
    f32 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731  (the kernel reads float32)
    ref = brute_force(kind, f32(freq), f32(fm), f32(pm), f32(sync), 48000.0, phase=0.1, pw=0.3)
    err = np.max(np.abs(y - ref))
    print(f"{kind}: max |kernel - brute force| under FM, PM and sync = {err:.2e}")
    assert err < 5e-4


@pytest.mark.parametrize("kind", ["sine", "saw", "triangle", "pulse"])
def test_modulated_kernel_with_nothing_connected_is_the_plain_kernel(kind):
    n, sr = 20000, 48000.0
    t = np.arange(n) / sr
    freq = (900.0 * np.exp(2.0 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    freq[3000:3100] = 0.0
    y, _ = _kernel(kind, n, freq, pw=0.3, phase=0.2)
    ref = np.zeros(n, np.float32)
    st = osc.periodic_state(0.2, 0.3)
    if kind == "sine":
        osc.sine_kernel(ref, n, freq, np.zeros(n, np.float32), sr, st)
    elif kind == "saw":
        osc.saw_kernel(ref, n, freq, sr, st)
    elif kind == "triangle":
        osc.triangle_kernel(ref, n, freq, sr, st)
    else:
        osc.pulse_kernel(ref, n, freq, np.full(n, 0.3, np.float32), sr, st)
    assert np.max(np.abs(y - ref)) < 1e-6


def test_unconnected_inputs_run_the_plain_kernel():
    _, e = render_engine({"sample_rate": SR, "nodes": {"m": {"type": "sine", "freq": 3},
                                                       "a": {"type": "saw"}, "b": {"type": "saw", "fm": "m"},
                                                       "c": {"type": "sine", "sync": "m"},
                                                       "d": {"type": "triangle", "pm": "m"},
                                                       "mix": {"type": "mix", "in": ["a", "b", "c", "d"]}},
                          "out": "mix"}, frames=64)
    assert not e.nodes["a"].modulated and not e.nodes["m"].modulated
    assert e.nodes["b"].modulated and e.nodes["c"].modulated and e.nodes["d"].modulated


@pytest.mark.parametrize("kind", ["sine", "saw", "triangle", "pulse", "wavetable"])
def test_modulated_kernels_are_block_size_invariant(kind):
    n = 12000
    freq, fm, pm, sync = _wild_inputs(n)
    rng = np.random.default_rng(5)
    pw = rng.uniform(0, 1, n)
    pos = rng.uniform(-0.2, 1.2, n)
    tables = wt.build_tables(np.stack([wt.spectrum_from_harmonics(SAW_HARMONICS[:50]),
                                       wt.spectrum_from_harmonics([1.0] * 50)]))
    kw = dict(fm=fm, pm=pm, sync=sync, pw=pw, pos=pos, tables=tables)
    whole, s_whole = _kernel(kind, n, freq, **kw)
    for chunks in ([1, 64, 100, 7, 1, 1, 600], [1], [333]):
        split, s_split = _kernel(kind, n, freq, chunks=chunks, **kw)
        assert np.array_equal(whole, split), chunks
        assert np.array_equal(s_whole, s_split), chunks


_H_L1 = float(np.abs(np.diff(np.concatenate([[0.0], osc._BLEP + 1.0]))).sum())


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["sine", "saw", "triangle", "pulse", "wavetable"]),
       data=st.lists(st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 5),
                     min_size=1, max_size=150))
# phases landing exactly on an edge, where the counted edges and the naive
# waveform read the point through different float paths (found by hypothesis)
@example(kind="pulse", data=[(0.0,) * 5] * 5 + [(0.0, 0.0, 0.125, -4.0, 0.0), (0.0, 0.0, 0.0, 1.0, 0.0)])
@example(kind="triangle", data=[(0.0,) * 5] * 2 + [(-4.0, -4.0, 0.0, 0.0, 0.0)] + [(2.0, -4.0, 0.0, 0.0, 0.0)] * 2
         + [(0.0,) * 5])
def test_any_modulation_is_finite_and_bounded(kind, data):
    freq, fm, pm, sync, pw = (np.array(c, np.float32) for c in zip(*data))
    y, s = _kernel(kind, len(freq), freq, fm=fm, fmd=1000.0, pm=pm, pmd=3.0, sync=sync, pw=pw, pos=pw,
                   tables=_SAWTABLE)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(s))
    # saw/triangle/pulse: exactly the minBLEP filter applied to a waveform in
    # -1..1, whatever the modulation; sine/wavetable: naive plus BLEPs of jumps
    assert np.max(np.abs(y)) <= (_H_L1 + 1e-3 if kind in ("saw", "triangle", "pulse") else 8.0)


# ---------------------------------------------------------------- pitch
PITCH_CASES = [
    ("sine", {}), ("saw", {}), ("square", {}), ("triangle", {}), ("pulse", {"pw": 0.3}),
    ("wavetable", {"harmonics": [1.0, 0.5, 0.25]}), ("saw", {"fm": "zero"}), ("sine", {"pm": "zero"}),
]


@pytest.mark.parametrize("kind,extra", PITCH_CASES, ids=[f"{k}-{'-'.join(e)}" for k, e in PITCH_CASES])
def test_pitch_is_exact(kind, extra):
    f0 = 261.6256  # C4
    nodes = {"zero": {"type": "constant", "value": 0.0}, "x": {"type": kind, "freq": f0, **extra}}
    y = one(nodes, SR)
    y = y - y.mean()
    measured = zero_crossing_freq(y[480:])
    print(f"{kind} {extra}: {measured:.5f} Hz")
    assert measured == pytest.approx(f0, abs=2e-3)


def test_phasor_ramps_0_to_1_at_the_exact_rate_and_syncs():
    from nodes.dsp.oscillators import Phasor

    assert Phasor.outputs["out"].range == (0.0, 1.0)
    f0 = 123.4
    y = one({"x": {"type": "phasor", "freq": f0}}, SR)
    assert y[0] == 0.0 and y.min() >= 0.0 and y.max() < 1.0
    assert np.allclose(y[:100], (np.arange(100) * f0 / SR) % 1.0, atol=1e-6)
    assert zero_crossing_freq(y - 0.5) == pytest.approx(f0, abs=1e-3)
    # synced by a square at 50 Hz: restarts at each rising edge (every 960 samples)
    z = one({"c": {"type": "square", "freq": 50.0}, "x": {"type": "phasor", "freq": f0, "sync": "c", "phase": 0.25}},
            SR // 2)
    wraps = np.flatnonzero(np.diff(z) < -0.1) + 1
    restarts = [w for w in wraps if abs(z[w] - 0.25) < 0.01]
    assert np.all(np.diff(restarts) == 960)


# ---------------------------------------------------------------- FM / PM
def _sidebands(y, fc, fmod, count):
    return np.array([bin_amplitude(y, fc + k * fmod) for k in range(-count, count + 1)])


def test_pm_index_1_gives_bessel_sidebands():
    fc, fmod = 6000.0, 500.0
    nodes = {"m": {"type": "sine", "freq": fmod},
             "x": {"type": "sine", "freq": fc, "pm": "m", "pm_depth": 1 / (2 * np.pi)}}
    y = one(nodes, SR)
    got = _sidebands(y, fc, fmod, 3)
    want = np.abs(jv(np.arange(-3, 4), 1.0))
    print("PM index 1 sidebands -3..3:", np.round(got, 5), "Bessel:", np.round(want, 5))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_fm_index_1_gives_bessel_sidebands():
    fc, fmod = 6000.0, 500.0
    nodes = {"m": {"type": "sine", "freq": fmod}, "x": {"type": "sine", "freq": fc, "fm": "m", "fm_depth": fmod}}
    y = one(nodes, SR)
    got = _sidebands(y, fc, fmod, 3)
    # the phase is the running sum of the frequency: index 2 pi depth / (sr * 2 sin(pi fm / sr)) (~1)
    beta = 2 * np.pi * (fmod / SR) / (2 * np.sin(np.pi * fmod / SR))
    want = np.abs(jv(np.arange(-3, 4), beta))
    print("FM index 1 sidebands -3..3:", np.round(got, 5), "Bessel:", np.round(want, 5))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_through_zero_fm_runs_the_phase_backwards():
    # 200 Hz carrier, deviation 900 Hz at 50 Hz: the frequency spends much of
    # each cycle negative; the phase is the running sum of freq + fm.
    fc, fmod, dev = 200.0, 50.0, 900.0
    nodes = {"m": {"type": "sine", "freq": fmod}, "x": {"type": "sine", "freq": fc, "fm": "m", "fm_depth": dev}}
    y = one(nodes, 9600)
    m = one({"m": {"type": "sine", "freq": fmod}}, 9600, out="m")
    f = fc + dev * m.astype(np.float32).astype(np.float64)
    phase = np.concatenate([[0.0], np.cumsum(f[:-1] / SR)])
    ref = np.sin(2 * np.pi * phase)
    assert np.min(f) < -600.0
    assert np.max(np.abs(y - ref)) < 2e-5


# ---------------------------------------------------------------- pulse, wavetable
def test_pulse_harmonics_follow_its_width():
    y = one({"x": {"type": "pulse", "freq": 200.0, "pw": 0.3}}, SR)[240:]  # the first edge is not band-limited
    for k in (1, 2, 3, 4):
        assert bin_amplitude(y, 200 * k) == pytest.approx(4 / (np.pi * k) * abs(np.sin(np.pi * k * 0.3)), rel=1e-3)
    assert np.mean(y > 0) == pytest.approx(0.3, abs=0.01)


def test_wavetable_plays_its_harmonics():
    amps, phases = [1.0, 0.5, 0.0, 0.25], [0.0, 0.25, 0.0, 0.5]
    y = one({"x": {"type": "wavetable", "freq": 200.0, "harmonics": amps, "phases": phases,
                   "normalize": False}}, SR)
    got = [bin_amplitude(y, 200.0 * k) for k in range(1, 6)]
    print("wavetable harmonic amplitudes:", np.round(got, 5))
    np.testing.assert_allclose(got, amps + [0.0], atol=2e-4)
    # phases in cycles: sum of a_k sin(2 pi (k theta + phi_k)), starting at theta = 0
    assert y[0] == pytest.approx(0.5 * np.sin(2 * np.pi * 0.25) + 0.25 * np.sin(2 * np.pi * 0.5), abs=1e-4)
    # normalized: one gain for every mipmap level, so the loudest level peaks at 1
    z = one({"x": {"type": "wavetable", "freq": 200.0, "harmonics": amps}}, SR)
    assert 0.9 < np.max(np.abs(z)) <= 1.0 + 1e-3
    assert np.max(np.abs(wt.build_tables(wt.spectrum_from_harmonics(amps)[None]))) == pytest.approx(1.0)


def _write_cycles(path, cycles):
    sf.write(str(path), np.concatenate(cycles).astype(np.float32), 48000, subtype="FLOAT")


def test_wavetable_from_a_file_and_position_morph(tmp_path):
    m = 600
    th = np.arange(m) / m
    a = 0.8 * np.sin(2 * np.pi * th) + 0.2 * np.sin(2 * np.pi * 3 * th)
    b = 0.5 * np.sin(2 * np.pi * 2 * th)
    _write_cycles(tmp_path / "two.wav", [a, b])
    patch = tmp_path / "p.yaml"
    for pos, want in ((0.0, [0.8, 0.0, 0.2]), (1.0, [0.0, 0.5, 0.0]), (0.5, [0.4, 0.25, 0.1])):
        patch.write_text("sample_rate: 48000\nnodes:\n"
                         f"  x: {{type: wavetable, freq: 300, file: two.wav, cycles: 2, position: {pos},"
                         " normalize: false}\nout: x\n")
        y = render_patch(str(patch), frames=SR)[0].astype(np.float64)
        got = [bin_amplitude(y, 300.0 * k) for k in (1, 2, 3)]
        np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("settings_,message", [
    ({"file": "missing.wav"}, "missing.wav"),
    ({"file": "bad.wav"}, "bad.wav"),
    ({}, "exactly one of harmonics, tables or file"),
    ({"harmonics": [1], "file": "x.wav"}, "exactly one"),
    ({"harmonics": [0, 0]}, "silent"),
    ({"harmonics": [1, "a"]}, "list of numbers"),
    ({"tables": [[1], 3]}, "list of numbers"),
    ({"tables": [[1]], "phases": [0.5]}, "phases go with harmonics"),
])
def test_wavetable_errors_name_the_problem(tmp_path, settings_, message):
    (tmp_path / "bad.wav").write_text("not audio")
    patch = {"sample_rate": SR, "nodes": {"x": {"type": "wavetable", **settings_}}, "out": "x"}
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(patch))
    with pytest.raises(patchlib.PatchError) as e:
        patchlib.Engine(patchlib.load_patch(str(tmp_path / "p.yaml")))
    print(e.value)
    assert message in str(e.value)
    assert "'x'" in str(e.value)  # names the node


# ---------------------------------------------------------------- lfo
LFO_FORMULAS = {
    "sine": lambda p: np.sin(2 * np.pi * p),
    "triangle": lambda p: np.where(p < 0.25, 4 * p, np.where(p < 0.75, 2 - 4 * p, 4 * p - 4)),
    "saw": lambda p: 2 * p - 1,
    "ramp": lambda p: 1 - 2 * p,
    "square": lambda p: np.where(p < 0.5, 1.0, -1.0),
}


@pytest.mark.parametrize("shape", list(LFO_FORMULAS))
@pytest.mark.parametrize("unipolar", [False, True])
def test_lfo_shapes_match_their_formulas(shape, unipolar):
    f0, phase = 3.0, 0.1
    y = one({"x": {"type": "lfo", "shape": shape, "freq": f0, "phase": phase, "unipolar": unipolar}}, SR)
    p = (phase + np.arange(SR) * f0 / SR) % 1.0
    want = LFO_FORMULAS[shape](p)
    if unipolar:
        want = 0.5 + 0.5 * want
    bad = np.abs(y - want) > 1e-5
    # the square's and saw's jumps may fall a sample early or late by rounding
    assert np.sum(bad) <= 3 * 2, np.flatnonzero(bad)[:10]
    lo, hi = (0.0, 1.0) if unipolar else (-1.0, 1.0)
    assert y.min() >= lo - 1e-6 and y.max() <= hi + 1e-6


def test_lfo_declares_its_range():
    from nodes.dsp.oscillators import LFO

    assert LFO.ports({"unipolar": True})[1]["out"].range == (0.0, 1.0)
    assert LFO.ports({})[1]["out"].range == (-1.0, 1.0)
    # a unipolar LFO drives a param across exactly the given range
    nodes = {"l": {"type": "lfo", "freq": 5.0, "shape": "square", "unipolar": True},
             "x": {"type": "constant", "value": {"from": "l", "range": [100, 200], "curve": "lin"}}}
    y = one(nodes, SR // 4)
    assert y[2000:].min() == pytest.approx(100.0, abs=1e-3) and y[2000:].max() == pytest.approx(200.0, abs=1e-3)


def test_lfo_random_holds_a_value_per_cycle_and_smooth_glides():
    f0, n = 10.3, SR
    r = one({"x": {"type": "lfo", "shape": "random", "freq": f0, "seed": 3}}, n)
    starts = np.flatnonzero(np.diff(r) != 0) + 1  # a new value at each cycle start, constant between
    assert len(starts) == int(f0) and np.allclose(np.diff(starts), SR / f0, atol=1)
    vals = r[np.concatenate([[0], starts])]
    assert len(np.unique(vals)) == len(vals) and np.all(np.abs(vals) <= 1.0)
    assert np.array_equal(r, one({"x": {"type": "lfo", "shape": "random", "freq": f0, "seed": 3}}, n))
    assert not np.array_equal(r, one({"x": {"type": "lfo", "shape": "random", "freq": f0, "seed": 4}}, n))
    s = one({"x": {"type": "lfo", "shape": "smooth", "freq": f0, "seed": 3}}, n)
    # smooth passes through the held values at the cycle starts and never jumps
    np.testing.assert_allclose(s[starts], r[starts], atol=1e-6)
    assert np.max(np.abs(np.diff(s))) < np.pi * f0 / SR + 1e-6
    # a fast random LFO is uniform in -1..1
    held = one({"x": {"type": "lfo", "shape": "random", "freq": 100.0, "seed": 1}}, 48000, sr=4800)[::48]
    assert abs(held.mean()) < 0.08 and held.std() == pytest.approx(1 / np.sqrt(3), rel=0.1)


def test_lfo_restarts_on_each_rising_edge_of_a_gate():
    # a 0/1 gate (a unipolar square at 5 Hz) restarts a slow saw LFO at -1
    nodes = {"g": {"type": "lfo", "shape": "square", "freq": 5.0, "unipolar": True},
             "x": {"type": "lfo", "shape": "saw", "freq": 1.7, "sync": "g"}}
    x = one(nodes, SR)
    restarts = np.flatnonzero(np.diff(x) < -0.5) + 1
    assert list(restarts) == [9600, 19200, 28800, 38400]
    assert np.all(x[restarts] < -0.999)


def test_lfo_rate_is_exact():
    y = one({"x": {"type": "lfo", "shape": "sine", "freq": 7.3}}, SR * 2)
    assert zero_crossing_freq(y) == pytest.approx(7.3, abs=1e-4)


# ---------------------------------------------------------------- brown noise
def test_brown_noise_slope_level_and_seeding():
    from scipy.signal import welch

    y = one({"x": {"type": "noise", "color": "brown", "seed": 5}}, SR * 20)
    f, p = welch(y, fs=SR, nperseg=1 << 14)
    lo = 100.0 * 2.0 ** np.arange(7)  # octaves 100-200 ... 6400-12800 Hz
    lev = np.array([10 * np.log10(p[(f >= a) & (f < 2 * a)].mean()) for a in lo])
    slope = np.polyfit(np.log2(lo[:-1]), lev[:-1], 1)[0]  # to 6.4 kHz: above, the sampled integrator flattens
    print(f"brown: rms {rms(y):.3f}, peak {np.max(np.abs(y)):.2f}, dB/octave {np.round(np.diff(lev), 2)}, "
          f"fit to 6.4 kHz {slope:.2f}")
    assert slope == pytest.approx(-6.0, abs=0.3)
    assert np.all(np.abs(np.diff(lev)[:-1] + 6.0) < 0.8)
    assert rms(y) == pytest.approx(osc.BROWN_RMS, rel=0.12)
    assert abs(y.mean()) < 0.05 and np.max(np.abs(y)) < 2.0
    assert np.array_equal(y[:1000], one({"x": {"type": "noise", "color": "brown", "seed": 5}}, 1000))
