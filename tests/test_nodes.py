"""The built-in DSP nodes, measured through real patches.

Filters against the analytic RBJ cookbook response, oscillator pitch, level
and aliasing, seeded noise, the adsr against the score, delay timing, gains
in dB. Each test renders a patch and measures the audio.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from nodes.dsp import _filters

from conftest import SR, bin_amplitude, db, render_engine, render_patch, rms, zero_crossing_freq


def tone(node, seconds=1.0, **patch):
    """Render one node (a dict) as the whole patch; float64 mono."""
    p = {"sample_rate": SR, "nodes": {"x": node}, "out": "x", **patch}
    return render_patch(p, seconds)[0].astype(np.float64)


# ---------------------------------------------------------------- filters
# White noise followed by silence long enough for the filter to ring out,
# fed through the input node: the DFT of the output over the whole render is
# then exactly H(f) times the DFT of the input (the linear convolution fits),
# so Y/X is the filter's response at every bin, not an estimate.
_NOISE_N, _TAIL_N = 32768, 16384


@pytest.fixture(scope="module")
def white():
    rng = np.random.default_rng(1234)
    x = np.zeros(_NOISE_N + _TAIL_N, dtype=np.float32)
    x[:_NOISE_N] = 0.3 * rng.standard_normal(_NOISE_N)
    return x


def measured_response(white, node):
    patch = {"sample_rate": SR, "nodes": {"dry": {"type": "input"}, "f": {"in": "dry", **node}}, "out": "f"}
    y = render_patch(patch, frames=white.size, audio_inputs={"": (white[None, :], SR)})[0]
    f = np.fft.rfftfreq(white.size, 1 / SR)
    return f, np.fft.rfft(y.astype(np.float64)) / np.fft.rfft(white.astype(np.float64))


MODES = {"lowpass": _filters.MODE_LOWPASS, "highpass": _filters.MODE_HIGHPASS,
         "bandpass": _filters.MODE_BANDPASS}


@pytest.mark.parametrize("kind", list(MODES))
@pytest.mark.parametrize("q", [0.707, 4.0])
@pytest.mark.parametrize("cutoff", [500.0, 4000.0])
def test_filter_matches_rbj_biquad(white, kind, q, cutoff):
    f, h_meas = measured_response(white, {"type": kind, "cutoff": cutoff, "q": q})
    b, a = _filters.rbj_biquad(MODES[kind], cutoff, q, SR)
    _, h_ref = signal.freqz(b, a, worN=f, fs=SR)
    ref_db = db(h_ref)
    # below 0.8 x Nyquist, from 20 Hz, where float32 audio still holds the
    # response (above -90 dB: a highpass at 4 kHz is -150 dB at 20 Hz)
    band = (f >= 20) & (f <= 0.8 * SR / 2) & (ref_db > -90)
    assert band.sum() > 10000
    err = db(h_meas[band]) - ref_db[band]
    worst = np.argmax(np.abs(err))
    assert np.abs(err).max() < 0.5, f"{err[worst]:+.2f} dB at {f[band][worst]:.0f} Hz"


@pytest.mark.parametrize("kind, at_cutoff", [("lowpass", -3.01), ("highpass", -3.01), ("bandpass", 0.0)])
def test_filter_level_at_cutoff_and_slope(white, kind, at_cutoff):
    fc = 1500.0
    f, h = measured_response(white, {"type": kind, "cutoff": fc, "q": 0.7071})
    mag = db(h)

    def at(freq):
        return float(np.interp(freq, f, mag))

    assert at(fc) == pytest.approx(at_cutoff, abs=0.05)
    if kind == "lowpass":
        assert at(fc / 10) == pytest.approx(0.0, abs=0.05)
        # 12 dB/octave, an octave well below Nyquist (the bilinear transform
        # steepens it on the way to its zero at Nyquist)
        assert at(2 * fc) - at(4 * fc) == pytest.approx(12.0, abs=1.0)
        assert at(4 * fc) - at(8 * fc) > 12.0
    elif kind == "highpass":
        assert at(8 * fc) == pytest.approx(0.0, abs=0.1)
        assert at(fc / 8) - at(fc / 16) == pytest.approx(12.0, abs=0.2)
    else:
        assert at(fc) == pytest.approx(mag[(f > 100) & (f < 20000)].max(), abs=0.05)  # the peak
        assert at(fc / 16) < -20 and at(fc * 8) < -15


def test_resonance_peak_is_q():
    """Lowpass at Q 4: the gain at the cutoff is Q (+12 dB), measured on a sine at the cutoff."""
    patch = {"sample_rate": SR, "nodes": {"s": {"type": "sine", "freq": 1000},
                                          "f": {"type": "lowpass", "in": "s", "cutoff": 1000, "q": 4}},
             "out": "f"}
    y = render_patch(patch, 1.0)[0].astype(np.float64)
    assert rms(y[SR // 2:]) / np.sqrt(0.5) == pytest.approx(4.0, rel=0.01)


def test_swept_filter_stays_stable():
    """Cutoff swept at audio rate across the whole range, high Q: bounded, finite output."""
    patch = {"sample_rate": SR, "nodes": {
        "osc": {"type": "saw", "freq": 110},
        "fm": {"type": "sine", "freq": 2000},
        "f": {"type": "lowpass", "in": "osc", "cutoff": {"from": "fm", "range": [20, 22000], "curve": "exp"},
              "q": 20}}, "out": "f"}
    y = render_patch(patch, 0.5)[0]
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 50


# ---------------------------------------------------------------- oscillators
def test_sine_pitch_and_level():
    x = tone({"type": "sine", "freq": "1kHz"})
    assert zero_crossing_freq(x) == pytest.approx(1000.0, abs=0.01)
    assert bin_amplitude(x, 1000) == pytest.approx(1.0, abs=1e-5)
    assert np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-6)


def test_note_names_are_pitches():
    assert zero_crossing_freq(tone({"type": "sine", "freq": "A4"})) == pytest.approx(440.0, abs=0.01)
    assert zero_crossing_freq(tone({"type": "sine", "freq": "C4"})) == pytest.approx(261.6256, abs=0.01)


def _harmonic_mask(f, f0, width):
    mask = np.zeros(f.size, dtype=bool)
    for k in range(1, int(f[-1] / f0) + 1):
        mask |= np.abs(f - k * f0) <= width
    return mask


def test_saw_1760_aliasing():
    x = tone({"type": "saw", "freq": 1760})
    n = x.size
    w = signal.get_window("blackmanharris", n)  # -92 dB side lobes
    p = np.abs(np.fft.rfft(x * w)) ** 2
    f = np.fft.rfftfreq(n, 1 / SR)
    harm = _harmonic_mask(f, 1760.0, 8.0)  # main lobe: +-4 bins of 1 Hz
    other = ~harm & (f > 8.0)
    ratio_db = 10 * np.log10(p[harm].sum() / p[other].sum())
    assert ratio_db >= 40.0, f"aliasing only {ratio_db:.1f} dB below the harmonics"
    # and no single alias stands out either
    assert 10 * np.log10(p[other].max() / p.max()) < -60.0


def test_saw_level_and_harmonics():
    x = tone({"type": "saw", "freq": 200})
    for k in range(1, 6):  # a saw's harmonics are 2 / (pi k)
        assert bin_amplitude(x, 200 * k) == pytest.approx(2 / (np.pi * k), rel=1e-3)
    assert zero_crossing_freq(x - x.mean()) == pytest.approx(200.0, abs=0.01)
    assert abs(x.mean()) < 1e-3


def test_square_pitch_and_level():
    x = tone({"type": "square", "freq": 220})
    assert zero_crossing_freq(x) == pytest.approx(220.0, abs=0.01)
    for k in (1, 3, 5, 7):  # odd harmonics 4 / (pi k)
        assert bin_amplitude(x, 220 * k) == pytest.approx(4 / (np.pi * k), rel=1e-3)
    for k in (2, 4):  # pw 0.5: no even harmonics
        assert bin_amplitude(x, 220 * k) < 1e-3 * bin_amplitude(x, 220)
    assert rms(x) == pytest.approx(1.0, abs=0.01)
    assert abs(x.mean()) < 1e-3


def test_pulse_width():
    x = tone({"type": "square", "freq": 200, "pw": 0.25})
    # a 25 % pulse: harmonic k is (4 / (pi k)) |sin(pi k pw)|, so the 4th vanishes
    for k in (1, 2, 3):
        assert bin_amplitude(x, 200 * k) == pytest.approx(4 / (np.pi * k) * abs(np.sin(np.pi * k * 0.25)), rel=1e-3)
    assert bin_amplitude(x, 800) < 1e-3
    assert np.mean(x > 0) == pytest.approx(0.25, abs=0.01)


def test_triangle_pitch_and_level():
    x = tone({"type": "triangle", "freq": 330})
    assert zero_crossing_freq(x) == pytest.approx(330.0, abs=0.01)
    for k in (1, 3, 5):  # odd harmonics 8 / (pi k)^2
        assert bin_amplitude(x, 330 * k) == pytest.approx(8 / (np.pi * k) ** 2, rel=1e-3)
    assert bin_amplitude(x, 660) < 1e-4
    assert rms(x) == pytest.approx(1 / np.sqrt(3), rel=1e-3)
    assert np.max(np.abs(x)) == pytest.approx(1.0, abs=0.01)


def test_oscillator_follows_a_scored_pitch_change():
    x = tone({"type": "sine", "freq": 500}, 1.0,
             score=[{"at": 0.5, "set": "x.freq", "to": 750, "over": 0}])
    assert zero_crossing_freq(x[:SR // 2]) == pytest.approx(500.0, abs=0.01)
    assert zero_crossing_freq(x[SR // 2 + 10:]) == pytest.approx(750.0, abs=0.01)
    assert np.max(np.abs(np.diff(x))) < 2 * np.pi * 750 / SR * 1.01  # phase-continuous: no click


# ---------------------------------------------------------------- noise
NOISE = {"sample_rate": SR, "seed": 5, "nodes": {
    "a": {"type": "noise"}, "b": {"type": "noise"},
    "c": {"type": "noise", "seed": 99}, "d": {"type": "noise", "seed": 99}}, "out": ["a", "b"]}


def _noise(**over):
    a = render_patch({**NOISE, **over}, 1.0).astype(np.float64)
    return a


def test_noise_is_seeded_and_deterministic():
    x = _noise()
    np.testing.assert_array_equal(x, _noise())
    np.testing.assert_array_equal(x, render_patch(NOISE, 1.0, block_size=77).astype(np.float64))
    a, b = x
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02  # each node its own stream
    other = _noise(seed=6)
    assert abs(np.corrcoef(a, other[0])[0, 1]) < 0.02  # another patch seed, another stream
    pinned = _noise(out=["c", "d"])
    np.testing.assert_array_equal(pinned[0], pinned[1])  # the same 'seed' option pins the stream
    np.testing.assert_array_equal(pinned, _noise(out=["c", "d"], seed=6))  # whatever the patch seed


@pytest.mark.parametrize("color, slope_db", [("white", 0.0), ("pink", -3.01)])
def test_noise_level_and_spectrum(color, slope_db):
    x = tone({"type": "noise", "color": color}, 4.0)
    assert rms(x) == pytest.approx(0.3, rel=0.03)
    assert abs(x.mean()) < (0.01 if color == "white" else 0.03)  # pink wanders more at low frequencies
    f, p = signal.welch(x, SR, nperseg=8192)
    centres = [125 * 2 ** k for k in range(7)]  # 125 Hz .. 8 kHz
    levels = [10 * np.log10(p[(f >= c / np.sqrt(2)) & (f < c * np.sqrt(2))].mean()) for c in centres]
    slope = np.polyfit(np.arange(len(centres)), levels, 1)[0]
    assert slope == pytest.approx(slope_db, abs=0.3), f"{slope:.2f} dB/octave"


# ---------------------------------------------------------------- adsr
def _env(score, seconds=1.0, **params):
    node = {"type": "adsr", "attack": "10ms", "decay": "100ms", "sustain": 0.5, "release": "200ms", **params}
    return tone(node, seconds, score=score)


def test_adsr_timing_through_the_score():
    e = _env([{"at": 0.1, "trigger": "x"}, {"at": 0.5, "release": "x"}])
    on, off = 4800, 24000
    assert np.all(e[:on + 1] == 0.0)
    # attack: linear, 10 ms from 0 to 1
    np.testing.assert_allclose(e[on:on + 481], np.arange(481) / 480, atol=1e-6)
    peak = on + 480
    assert e[peak] == 1.0 and np.argmax(e) == peak
    # decay: -60 dB of the way to sustain 100 ms after the peak
    assert e[peak + 4800] - 0.5 == pytest.approx(0.5e-3, rel=0.01)
    assert e[off - 1] == pytest.approx(0.5, abs=1e-6)
    # release: -60 dB 200 ms after the release, then silence
    assert e[off + 9600] == pytest.approx(0.5e-3, rel=0.01)
    assert np.all(np.diff(e[off:]) <= 0)
    assert e[-1] == 0.0


def test_adsr_length_and_velocity():
    e = _env([{"at": 0.1, "trigger": "x", "length": 0.25, "velocity": 0.8}])
    assert np.max(e) == pytest.approx(0.8)
    assert e[int(0.35 * SR) - 1] == pytest.approx(0.4, abs=1e-6)  # sustain x velocity
    assert e[int(0.35 * SR) + 9600] == pytest.approx(0.4e-3, rel=0.01)  # released at 0.35 s


def test_adsr_retrigger_starts_from_current_level():
    e = _env([{"at": 0.1, "trigger": "x", "length": 0.1}, {"at": 0.25, "trigger": "x"}], seconds=0.4)
    at = int(0.25 * SR)
    start = e[at]
    assert 0.01 < start < 0.5 and abs(start - e[at - 1]) < 1e-3  # mid-release, no jump
    # then the same 10 ms attack slope from there: 1/480 per sample up to 1.0
    k = int((1.0 - start) * 480) - 1
    np.testing.assert_allclose(e[at:at + k], start + np.arange(k) / 480, atol=1e-6)
    assert np.argmax(e[at:]) == pytest.approx(round((1.0 - start) * 480), abs=1)


@pytest.mark.parametrize("first, second", [(1.0, 0.3), (0.3, 1.0), (1.0, 0.2)])
@pytest.mark.parametrize("gap", [0.15, 0.3])  # retrigger while released / while held
def test_adsr_retrigger_at_another_velocity_does_not_click(first, second, gap):
    e = _env([{"at": 0.1, "trigger": "x", "velocity": first, "length": 0.1},
              {"at": 0.1 + gap, "trigger": "x", "velocity": second, "length": 0.3}] if gap < 0.2 else
             [{"at": 0.1, "trigger": "x", "velocity": first},
              {"at": 0.1 + gap, "trigger": "x", "velocity": second}], seconds=0.8)
    at = int((0.1 + gap) * SR)
    # never faster than an attack step (plus the half step the attack may snap onto 1.0)
    assert np.max(np.abs(np.diff(e))) <= 1.5 * max(first, second) / 480
    assert e[at - 1] > 0.01  # still sounding when retriggered
    assert e[at + int(0.25 * SR)] == pytest.approx(0.5 * second, rel=1e-3)  # then the new note's sustain


def test_adsr_gate_input():
    node = {"type": "adsr", "attack": 0, "decay": 0, "sustain": 1, "release": 0, "gate": "g"}
    patch = {"sample_rate": SR, "nodes": {"g": {"type": "square", "freq": 10}, "x": node}, "out": "x"}
    e = render_patch(patch, 0.2)[0]
    # open while the 10 Hz square is high (first 50 ms of each 100 ms), closed while low
    assert np.mean(e[:2400] == 1.0) > 0.95 and np.mean(e[2400:4800] == 0.0) > 0.95


# ---------------------------------------------------------------- delay
def _click_through(delay, seconds=0.2):
    patch = {"sample_rate": SR, "nodes": {
        "click": {"type": "adsr", "attack": 0, "decay": 0, "sustain": 0, "release": 0},
        "d": {"type": "delay", "in": "click", **delay}}, "out": ["click", "d"],
        "score": [{"at": 0.05, "trigger": "click"}]}
    return render_patch(patch, seconds).astype(np.float64)


def test_delay_impulse_lands_on_the_right_sample():
    click, d = _click_through({"time": "10ms"})
    assert np.flatnonzero(click).tolist() == [2400]
    assert np.argmax(np.abs(d)) == 2400 + 480
    assert d[2880] == pytest.approx(1.0, abs=1e-4)
    assert np.sum(np.abs(d)) == pytest.approx(1.0, abs=1e-3)  # one impulse, not smeared


def test_delay_fractional_time_interpolates():
    click, d = _click_through({"time": 100.5 / SR})
    # Catmull-Rom half way: -1/16, 9/16, 9/16, -1/16 around 2400 + 100.5
    np.testing.assert_allclose(d[2499:2503], [-0.0625, 0.5625, 0.5625, -0.0625], atol=1e-3)
    assert d.sum() == pytest.approx(1.0, abs=1e-3)


def test_delay_feedback_echoes():
    _, d = _click_through({"time": "20ms", "feedback": 0.5}, seconds=0.3)
    for k in range(5):
        assert d[2400 + 960 * (k + 1)] == pytest.approx(0.5 ** k, rel=1e-3)


# ---------------------------------------------------------------- gains and mixing
def _const_through(node, value=1.0):
    patch = {"sample_rate": SR, "nodes": {"one": {"type": "constant", "value": value},
                                          "g": {"in": "one", **node}}, "out": "g"}
    return render_patch(patch, frames=64)[0].astype(np.float64)


def test_gain_in_db():
    assert _const_through({"type": "gain", "gain": "-6dB"})[-1] == pytest.approx(0.501187, abs=1e-6)
    assert _const_through({"type": "gain", "gain": "-6dB"})[-1] == pytest.approx(0.501, abs=5e-4)
    assert _const_through({"type": "gain", "gain": "+6dB"})[-1] == pytest.approx(1.995262, abs=1e-6)
    assert _const_through({"type": "gain", "gain": 0.25})[-1] == pytest.approx(0.25)


def test_plus_and_minus_6db_is_identity():
    patch = {"sample_rate": SR, "nodes": {
        "osc": {"type": "saw", "freq": 220},
        "up": {"type": "gain", "in": "osc", "gain": "6dB"},
        "down": {"type": "gain", "in": "up", "gain": "-6dB"}}, "out": ["osc", "down"]}
    a = render_patch(patch, 0.1)
    np.testing.assert_allclose(a[1], a[0], atol=1e-6)


def test_mix_sums_with_gains():
    patch = {"sample_rate": SR, "nodes": {
        "a": {"type": "constant", "value": 0.5}, "b": {"type": "constant", "value": 0.25},
        "m": {"type": "mix", "in": ["a", "b"], "gains": ["-6dB", 2]}}, "out": "m"}
    y = render_patch(patch, frames=64)[0]
    assert y[-1] == pytest.approx(0.5 * 0.501187 + 0.5, abs=1e-6)


def test_constant_with_units():
    patch = {"sample_rate": SR, "nodes": {"p": {"type": "constant", "unit": "Hz", "value": "A2"},
                                          "t": {"type": "constant", "unit": "s", "value": "250ms"}},
             "out": ["p", "t"]}
    y = render_patch(patch, frames=64)
    assert y[0, -1] == pytest.approx(110.0) and y[1, -1] == pytest.approx(0.25)


def test_output_gain_and_warnings_free_render():
    audio, engine = render_engine({"sample_rate": SR, "nodes": {"o": {"type": "sine", "freq": 100},
                                                                "out": {"type": "output", "in": "o", "gain": "-12dB"}}},
                                  0.1)
    assert np.max(np.abs(audio)) == pytest.approx(10 ** (-12 / 20), rel=1e-3)
    assert not engine.warnings
