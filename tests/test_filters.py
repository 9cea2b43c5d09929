"""The filter family (nodes/dsp/filters.py), measured on audio rendered through real patches.

* Every biquad type against the analytic RBJ Audio-EQ-Cookbook response,
  written out here from the cookbook (not taken from the kernel), measured
  from the impulse response (FFT) at several cutoffs, Qs and gains.
* ``svf``'s four outputs, ``onepole`` and ``dcblock`` against their
  analytic responses; the ladder's small-signal response against the linear
  4-pole ladder, and its self-oscillation pitch against its cutoff.
* No NaN/inf for any parameter in range, driven at audio rate by random
  trajectories, with random loud inputs (hypothesis), for every filter type.
* No clicks: an audio-rate cutoff sweep on a sine gives no step larger than
  the swept sine's own slope allows.

Run ``python tests/test_filters.py`` for the kernel micro-benchmark (not a test).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SR, db, render_engine, render_patch, zero_crossing_freq

# ---------------------------------------------------------------- references
# Robert Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter
# coefficients": w0 = 2 pi f0 / Fs, alpha = sin(w0) / (2 Q), A = 10^(dBgain/40).


def rbj(kind, f0, q, gain_db=0.0, sr=SR):
    """``(b, a)`` of the cookbook biquad (not normalised)."""
    A = 10.0 ** (gain_db / 40.0)
    w0 = 2 * np.pi * f0 / sr
    c, s = np.cos(w0), np.sin(w0)
    al = s / (2 * q)
    if kind == "lowpass":
        b, a = [(1 - c) / 2, 1 - c, (1 - c) / 2], [1 + al, -2 * c, 1 - al]
    elif kind == "highpass":
        b, a = [(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + al, -2 * c, 1 - al]
    elif kind == "bandpass":  # constant 0 dB peak gain
        b, a = [al, 0, -al], [1 + al, -2 * c, 1 - al]
    elif kind == "notch":
        b, a = [1, -2 * c, 1], [1 + al, -2 * c, 1 - al]
    elif kind == "allpass":
        b, a = [1 - al, -2 * c, 1 + al], [1 + al, -2 * c, 1 - al]
    elif kind == "peak":
        b, a = [1 + al * A, -2 * c, 1 - al * A], [1 + al / A, -2 * c, 1 - al / A]
    elif kind == "lowshelf":
        r = 2 * np.sqrt(A) * al
        b = [A * ((A + 1) - (A - 1) * c + r), 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - r)]
        a = [(A + 1) + (A - 1) * c + r, -2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - r]
    elif kind == "highshelf":
        r = 2 * np.sqrt(A) * al
        b = [A * ((A + 1) + (A - 1) * c + r), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - r)]
        a = [(A + 1) - (A - 1) * c + r, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - r]
    else:
        raise ValueError(kind)
    return np.asarray(b, float), np.asarray(a, float)


def response(b, a, f, sr=SR):
    """``H(e^{jw})`` of a rational transfer function in ``z^-1`` at frequencies ``f``."""
    z1 = np.exp(-2j * np.pi * np.asarray(f) / sr)
    return np.polyval(np.asarray(b)[::-1], z1) / np.polyval(np.asarray(a)[::-1], z1)


# ---------------------------------------------------------------- measuring
N_IMPULSE = 1 << 16  # 1.4 s: every response here has rung out by then


def impulse_response(node, port="", frames=N_IMPULSE, amplitude=1.0):
    """Render a unit impulse through ``node`` (fed by an input node); ``(freqs, H)`` from its FFT.

    With the whole (decayed) impulse response in the window, the DFT is the
    filter's frequency response exactly at every bin.
    """
    x = np.zeros((1, frames), np.float32)
    x[0, 0] = amplitude
    nodes = {"dry": {"type": "input"}, "f": {"in": "dry", **node}}
    if port:
        nodes["o"] = {"type": "gain", "in": f"f.{port}", "gain": 1.0}
    patch = {"sample_rate": SR, "nodes": nodes, "out": "o" if port else "f"}
    y = render_patch(patch, frames=frames, audio_inputs={"": (x, SR)})[0].astype(np.float64)
    return np.fft.rfftfreq(frames, 1 / SR), np.fft.rfft(y) / amplitude


def band(f, lo=20.0):
    """Bins compared: from ``lo`` to 0.8 x Nyquist."""
    return (f >= lo) & (f <= 0.8 * SR / 2)


def assert_matches(f, h_meas, h_ref, floor_db=-90.0, notch=False, what=""):
    """|H| within 0.5 dB of the reference wherever the reference is above ``floor_db``.

    ``floor_db``: float32 audio holds a response only down to about -90..-100
    dB relative to its peak (below, rounding noise dominates), so deeper
    stopbands are not compared. ``notch``: where the reference is below -20
    dB (the notch's zero, whose dB value runs to -inf on a bin that happens
    to sit on it), compare linear magnitudes instead: within 0.006, which is
    0.5 dB of -20 dB. Returns the worst error in dB over the dB-compared bins.
    """
    sel = band(f)
    mref = np.abs(h_ref[sel])
    mmeas = np.abs(h_meas[sel])
    ref_db = db(mref)
    lin = ref_db < -20.0 if notch else np.zeros_like(ref_db, bool)
    use = (ref_db > floor_db) & ~lin
    assert use.sum() > 1000
    err = db(mmeas[use]) - ref_db[use]
    worst = int(np.argmax(np.abs(err)))
    assert np.abs(err).max() < 0.5, f"{what}: {err[worst]:+.3f} dB at {f[sel][use][worst]:.0f} Hz"
    if lin.any():
        lerr = np.abs(mmeas[lin] - mref[lin])
        assert lerr.max() < 0.006, f"{what}: linear error {lerr.max():.4f} near the notch"
    return float(np.abs(err).max())


# ---------------------------------------------------------------- biquads vs RBJ
BIQUAD_CASES = [
    # kind, cutoff, q, gain dB
    *[(k, fc, q, 0.0) for k in ("lowpass", "highpass", "bandpass", "notch", "allpass")
      for fc, q in ((120.0, 0.707), (1000.0, 4.0), (6000.0, 0.5), (15000.0, 2.0))],
    *[(k, fc, q, g) for k in ("peak", "lowshelf", "highshelf")
      for fc, q, g in ((120.0, 0.707, 12.0), (1000.0, 2.0, -9.0), (6000.0, 0.5, 18.0), (15000.0, 1.0, -24.0))],
]

_WORST: dict = {}


@pytest.mark.parametrize("kind,cutoff,q,gain", BIQUAD_CASES)
def test_biquad_matches_rbj_cookbook(kind, cutoff, q, gain):
    node = {"type": kind, "cutoff": cutoff, "q": q}
    if kind in ("peak", "lowshelf", "highshelf"):
        node["gain"] = gain
    f, h = impulse_response(node)
    b, a = rbj(kind, cutoff, q, gain)
    worst = assert_matches(f, h, response(b, a, f), notch=kind == "notch", what=f"{kind} {cutoff} Hz Q {q} {gain} dB")
    _WORST[(kind, cutoff, q, gain)] = worst
    if kind == "allpass":  # and the phase: -180 degrees at the cutoff
        k = int(round(cutoff * N_IMPULSE / SR))
        assert abs(abs(np.angle(h[k], deg=True)) - 180.0) < 1.0


@pytest.mark.parametrize("mode", ["lowpass", "highpass", "bandpass", "notch", "allpass", "peak", "lowshelf",
                                  "highshelf"])
def test_biquad_mode_is_the_named_type(mode):
    """``biquad`` with a mode renders exactly what the convenience type does, modulated too."""
    def render(node):
        nodes = {"n": {"type": "noise", "seed": 3}, "lfo": {"type": "sine", "freq": 300},
                 "f": {"in": "n", "cutoff": {"from": "lfo", "range": [200, 9000], "curve": "exp"},
                       "q": 3.0, **node}}
        if mode in ("peak", "lowshelf", "highshelf"):
            nodes["f"]["gain"] = {"from": "lfo", "range": [-12, 12]}
        return render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 0.2)

    np.testing.assert_array_equal(render({"type": "biquad", "mode": mode}), render({"type": mode}))


def test_peak_and_shelf_levels():
    """The gains where the cookbook puts them: peak at the cutoff, shelves at the ends, half at the cutoff."""
    f, h = impulse_response({"type": "peak", "cutoff": 1000.0, "q": 2.0, "gain": 9.0})
    at = lambda hh, fr: float(np.interp(fr, f, db(hh)))  # noqa: E731
    assert at(h, 1000) == pytest.approx(9.0, abs=0.02)
    assert abs(at(h, 50)) < 0.05 and abs(at(h, 15000)) < 0.1
    f, h = impulse_response({"type": "lowshelf", "cutoff": 500.0, "gain": -12.0})
    assert at(h, 30) == pytest.approx(-12.0, abs=0.05)
    assert at(h, 500) == pytest.approx(-6.0, abs=0.05)
    assert abs(at(h, 15000)) < 0.05
    f, h = impulse_response({"type": "highshelf", "cutoff": 4000.0, "gain": 6.0})
    assert at(h, 18000) == pytest.approx(6.0, abs=0.1)
    assert at(h, 4000) == pytest.approx(3.0, abs=0.05)
    assert abs(at(h, 50)) < 0.05


# ---------------------------------------------------------------- svf
@pytest.mark.parametrize("port,kind", [("lp", "lowpass"), ("hp", "highpass"), ("bp", "bandpass"),
                                       ("notch", "notch"), ("out", "lowpass")])
@pytest.mark.parametrize("cutoff,q", [(700.0, 0.707), (3000.0, 5.0)])
def test_svf_outputs_match_rbj(port, kind, cutoff, q):
    f, h = impulse_response({"type": "svf", "cutoff": cutoff, "q": q}, port=port)
    b, a = rbj(kind, cutoff, q)
    assert_matches(f, h, response(b, a, f), notch=kind == "notch", what=f"svf.{port}")


def test_svf_outputs_are_the_single_mode_filters():
    """Modulated, each svf output equals the single-mode filter of the same settings (to float32)."""
    def render(out, node):
        nodes = {"n": {"type": "noise", "seed": 5}, "lfo": {"type": "saw", "freq": 170},
                 "f": {"in": "n", "cutoff": {"from": "lfo", "range": [100, 12000], "curve": "exp"},
                       "q": {"from": "lfo", "range": [0.5, 8], "curve": "exp"}, **node},
                 "o": {"type": "gain", "in": out, "gain": 1.0}}
        return render_patch({"sample_rate": SR, "nodes": nodes, "out": "o"}, 0.3)[0]

    for port, kind in (("lp", "lowpass"), ("hp", "highpass"), ("bp", "bandpass"), ("notch", "notch")):
        np.testing.assert_allclose(render(f"f.{port}", {"type": "svf"}), render("f", {"type": kind}), atol=2e-6)


# ---------------------------------------------------------------- one-pole, DC blocker
@pytest.mark.parametrize("mode", ["lowpass", "highpass"])
@pytest.mark.parametrize("cutoff", [30.0, 1000.0, 9000.0])
def test_onepole_matches_bilinear_one_pole(mode, cutoff):
    # the TPT one-pole is the bilinear transform of 1 / (1 + s/wc), prewarped:
    # H = g (1 + z^-1) / ((1 + g) - (1 - g) z^-1), g = tan(pi fc / sr); highpass = 1 - H
    g = np.tan(np.pi * cutoff / SR)
    b, a = np.array([g, g]), np.array([1 + g, -(1 - g)])
    if mode == "highpass":
        b = a - b
    f, h = impulse_response({"type": "onepole", "mode": mode, "cutoff": cutoff})
    assert_matches(f, h, response(b, a, f), what=f"onepole {mode}")
    k = int(round(cutoff * N_IMPULSE / SR))
    assert db(abs(response(b, a, [f[k]])[0])) == pytest.approx(db(abs(h[k])), abs=0.01)
    assert db(abs(h[k])) == pytest.approx(-3.01, abs=0.05)  # -3 dB at the cutoff (bin near it)


@pytest.mark.parametrize("cutoff", [5.0, 10.0, 40.0])
def test_dcblock_response_and_dc_removal(cutoff):
    R = np.exp(-2 * np.pi * cutoff / SR)
    f, h = impulse_response({"type": "dcblock", "cutoff": cutoff}, frames=1 << 18)
    assert_matches(f, h, response([1.0, -1.0], [1.0, -R], f), floor_db=-60.0, what="dcblock")
    assert db(abs(np.interp(cutoff, f, np.abs(h)))) == pytest.approx(-3.0, abs=0.1)
    assert db(abs(np.interp(20 * cutoff, f, np.abs(h)))) > -0.02  # flat above
    # a sine riding on a DC offset: the offset is gone after a few time constants
    nodes = {"s": {"type": "sine", "freq": 220}, "dc": {"type": "constant", "value": 0.5},
             "m": {"type": "mix", "in": ["s", "dc"], "gains": [0.3, 1.0]},
             "f": {"type": "dcblock", "in": "m", "cutoff": cutoff}}
    y = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 12.0 / cutoff + 1.0)[0].astype(np.float64)
    tail = y[-SR // 2:]
    assert abs(tail.mean()) < 1e-3 and 0.29 < np.abs(tail).max() < 0.31


# ---------------------------------------------------------------- ladder
def ladder_reference(f, cutoff, resonance, sr=SR):
    """The linear ZDF ladder: four TPT one-poles G(z) in a loop with gain -k: G^4 / (1 + k G^4)."""
    from nodes.dsp._filters import LADDER_K_MAX

    g = np.tan(np.pi * cutoff / sr)
    G = response([g, g], [1 + g, -(1 - g)], f, sr)
    k = LADDER_K_MAX * resonance
    return G ** 4 / (1 + k * G ** 4)


@pytest.mark.parametrize("cutoff", [300.0, 2000.0, 8000.0])
@pytest.mark.parametrize("resonance", [0.0, 0.5, 0.75])
def test_ladder_small_signal_response(cutoff, resonance):
    """At small levels the tanh is linear: the response is the linear ladder's (24 dB/octave, resonant peak)."""
    f, h = impulse_response({"type": "ladder", "cutoff": cutoff, "resonance": resonance}, amplitude=0.01)
    # the -140 dB seed noise and the impulse's 0.01 set the floor: compare above -50 dB
    assert_matches(f, h, ladder_reference(f, cutoff, resonance), floor_db=-50.0, what="ladder")


LADDER_FREQS = [100.0, 220.0, 500.0, 1000.0, 2500.0, 5000.0, 8000.0]
_LADDER_ERR: dict = {}


@pytest.mark.parametrize("cutoff", LADDER_FREQS)
def test_ladder_self_oscillates_at_its_cutoff(cutoff):
    """Resonance 1, no input: a steady oscillation at the cutoff (within 2 %, measured on the last second)."""
    nodes = {"z": {"type": "constant", "value": 0.0},
             "f": {"type": "ladder", "in": "z", "cutoff": cutoff, "resonance": 1.0}}
    y = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 2.5)[0].astype(np.float64)
    last = y[-SR:]
    freq = zero_crossing_freq(last)
    _LADDER_ERR[cutoff] = freq / cutoff - 1
    assert freq == pytest.approx(cutoff, rel=0.02)
    # steady: the level of the two halves of the last second agree
    a, b = np.abs(last[: SR // 2]).max(), np.abs(last[SR // 2:]).max()
    assert 0.05 < b < 1.0 and a == pytest.approx(b, rel=0.01)


def test_ladder_below_threshold_does_not_sing():
    nodes = {"z": {"type": "constant", "value": 0.0},
             "f": {"type": "ladder", "in": "z", "cutoff": 1000.0, "resonance": 0.75}}
    y = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 1.0)[0]
    assert np.abs(y).max() < 1e-6


def test_ladder_drive_saturates():
    """Drive pushes the input into the tanh: linear when quiet, saturating when loud, never above 1."""
    def level(drive, amp):
        nodes = {"s": {"type": "saw", "freq": 110}, "g": {"type": "gain", "in": "s", "gain": amp},
                 "f": {"type": "ladder", "in": "g", "cutoff": 2000.0, "resonance": 0.6, "drive": drive}}
        y = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 0.5)[0].astype(np.float64)
        return float(np.sqrt(np.mean(y[SR // 4:] ** 2))), float(np.abs(y).max())

    quiet, _ = level(1.0, 0.01)
    r1, p1 = level(1.0, 1.0)
    r320, p320 = level(20.0, 16.0)
    assert r1 == pytest.approx(quiet * 100, rel=0.35)  # 100x the input, about 100x the output
    assert r320 < 10 * r1  # 320x the gain into the tanh, under 10x the level
    assert p1 < 1.0 and p320 <= 1.0 + 1e-6  # the tanh bounds the loop, the stages do not overshoot


# ---------------------------------------------------------------- stability (hypothesis)
FILTER_TYPES = {
    # type: (settings, {param: (lo, hi, curve)})
    "lowpass": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "highpass": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "bandpass": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "notch": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "allpass": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "peak": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp"), "gain": (-24, 24, "lin")}),
    "lowshelf": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp"), "gain": (-24, 24, "lin")}),
    "highshelf": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp"), "gain": (-24, 24, "lin")}),
    "svf": ({}, {"cutoff": (10, 24000, "exp"), "q": (0.1, 40, "exp")}),
    "ladder": ({}, {"cutoff": (10, 24000, "exp"), "resonance": (0, 1, "lin"), "drive": (0.1, 20, "exp")}),
    "onepole": ({}, {"cutoff": (1, 24000, "exp")}),
    "dcblock": ({}, {"cutoff": (1, 200, "exp")}),
}
_SOURCES = ["noise", "sine", "square", "saw"]


@st.composite
def _trajectory(draw, lo, hi, curve):
    """A param driven at audio rate: a source (noise, or an oscillator up to 8 kHz), over a random sub-range."""
    kind = draw(st.sampled_from(_SOURCES))
    a = draw(st.floats(0, 1))
    b = draw(st.floats(0, 1))
    if curve == "exp":
        lo_, hi_ = (lo * (hi / lo) ** a, lo * (hi / lo) ** b)
    else:
        lo_, hi_ = (lo + (hi - lo) * a, lo + (hi - lo) * b)
    src = {"type": kind, "seed": draw(st.integers(0, 1000))} if kind == "noise" else \
        {"type": kind, "freq": draw(st.floats(0.5, 8000))}
    return src, {"range": [lo_, hi_], "curve": curve}


@st.composite
def _case(draw, tname):
    settings_, params = FILTER_TYPES[tname]
    nodes = {}
    node = {"type": tname, **settings_}
    if tname == "onepole":
        node["mode"] = draw(st.sampled_from(["lowpass", "highpass"]))
    for p, (lo, hi, curve) in params.items():
        if draw(st.booleans()):
            src, mod = draw(_trajectory(lo, hi, curve))
            nodes[f"m_{p}"] = src
            node[p] = {"from": f"m_{p}", **mod}
        else:
            node[p] = draw(st.sampled_from([lo, hi, (lo * hi) ** 0.5 if curve == "exp" else (lo + hi) / 2]))
    kind = draw(st.sampled_from(_SOURCES + ["dc"]))
    nodes["src"] = {"type": "constant", "value": 1.0} if kind == "dc" else (
        {"type": kind, "seed": 9} if kind == "noise" else {"type": kind, "freq": draw(st.floats(20, 12000))})
    nodes["loud"] = {"type": "gain", "in": "src", "gain": draw(st.sampled_from([1.0, 4.0, 16.0]))}
    nodes["f"] = {"in": "loud", **node}
    out = "f." + draw(st.sampled_from(["lp", "hp", "bp", "notch"])) if tname == "svf" else "f"
    nodes["o"] = {"type": "gain", "in": out, "gain": 1.0}
    return {"sample_rate": SR, "nodes": nodes, "out": "o"}


@pytest.mark.parametrize("tname", list(FILTER_TYPES))
def test_no_nan_under_audio_rate_modulation_and_loud_input(tname):
    @settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_case(tname))
    def check(patch):
        y, engine = render_engine(patch, frames=3000, block_size=256)
        assert np.isfinite(y).all()
        assert not engine.warnings
        # bounded: 16x loud input, Q 40 resonance, +24 dB: far below anything that runs away
        assert np.abs(y).max() < 1e4

    check()


# ---------------------------------------------------------------- clicks
CLICK_TYPES = [
    ("lowpass", {}), ("highpass", {}), ("bandpass", {}), ("notch", {}), ("allpass", {}),
    ("peak", {"gain": 12.0}), ("lowshelf", {"gain": 12.0}), ("highshelf", {"gain": -12.0}),
    ("svf", {}), ("ladder", {"resonance": 0.5}), ("onepole", {}), ("dcblock", {}),
]


def max_step(y):
    """Largest sample-to-sample step, relative to the signal's own peak."""
    return float(np.abs(np.diff(y)).max() / np.abs(y).max())


def swept_sine(tname, extra, lfo=100.0):
    """A 440 Hz sine through ``tname`` while its cutoff sweeps at ``lfo`` Hz over 200 Hz..8 kHz
    (1..200 Hz for the DC blocker)."""
    rng = [1.0, 200.0] if tname == "dcblock" else [200.0, 8000.0]
    nodes = {"s": {"type": "sine", "freq": 440}, "lfo": {"type": "sine", "freq": lfo},
             "f": {"type": tname, "in": "s", "cutoff": {"from": "lfo", "range": rng, "curve": "exp"}, **extra}}
    return render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 0.5)[0].astype(np.float64)[2000:]


SINE_SLOPE = 2 * np.pi * 440 / SR  # steepest step of a 440 Hz sine, relative to its peak


@pytest.mark.parametrize("tname,extra", CLICK_TYPES)
def test_audio_rate_cutoff_sweep_does_not_click(tname, extra):
    """The swept output's steps stay within 2.5 x the sine's own steepest step. The sweep
    modulates level and phase, which steepens the slope a little (at most 2x measured, the
    ladder); a click (a state jump, a coefficient glitch) is a step of the order of the peak."""
    y = swept_sine(tname, extra)
    assert max_step(y) < 2.5 * SINE_SLOPE, max_step(y) / SINE_SLOPE


def test_click_measure_sees_a_click():
    """The measure is not blind: switching abruptly between two filters' outputs fails it."""
    y = swept_sine("lowpass", {})
    nodes = {"s": {"type": "sine", "freq": 440}, "f": {"type": "allpass", "in": "s", "cutoff": 3000.0}}
    y2 = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 0.5)[0].astype(np.float64)[2000:]
    i = y.size // 2 + int(np.argmax(np.abs(y - y2)[y.size // 2:y.size // 2 + 200]))
    assert max_step(np.concatenate([y[:i], y2[i:]])) > 2.5 * SINE_SLOPE


def test_q_and_gain_sweeps_do_not_click():
    nodes = {"s": {"type": "sine", "freq": 440}, "lfo": {"type": "sine", "freq": 100},
             "f": {"type": "peak", "in": "s", "cutoff": 500.0,
                   "q": {"from": "lfo", "range": [0.3, 10], "curve": "exp"},
                   "gain": {"from": "lfo", "range": [-18, 18]}}}
    y = render_patch({"sample_rate": SR, "nodes": nodes, "out": "f"}, 0.5)[0].astype(np.float64)[2000:]
    assert max_step(y) < 2.5 * SINE_SLOPE


# ---------------------------------------------------------------- micro-benchmark (not a test)
def bench(blocks=400, repeats=7, block=256, voices=16):
    """Time per ``block``-sample block for ``voices`` lowpass filters (Q 4): one batched call, and one call each.

    Cutoff held, and swept every sample (as the engine benchmark's LFOs do). Best of ``repeats``.
    """
    import time

    from nodes.dsp import _filters as F

    rng = np.random.default_rng(0)
    n = block * blocks
    t = np.arange(n) / SR
    x = rng.uniform(-1, 1, (voices, 1, n)).astype(np.float32)
    rates = 0.1 + 1.9 * np.arange(voices) / max(voices - 1, 1)
    swept = (300 * 10 ** (0.5 + 0.5 * np.sin(2 * np.pi * rates[:, None] * t))).astype(np.float32)
    held = np.full((voices, n), 1000.0, np.float32)
    q = np.full((voices, block), 4.0, np.float32)
    gain = np.zeros((1, block), np.float32)
    y = np.zeros((voices, 1, block), np.float32)
    out = {}
    for label, fc in (("held cutoff", held), ("audio-rate cutoff", swept)):
        xb = [np.ascontiguousarray(x[:, :, i * block:(i + 1) * block]) for i in range(blocks)]
        fb = [np.ascontiguousarray(fc[:, i * block:(i + 1) * block]) for i in range(blocks)]
        state = np.zeros((voices, 1, F.SVF_STATE_COLS))

        def batched():
            for i in range(blocks):
                F.svf_batch(xb[i], y, block, fb[i], q, gain, F.MODE_LOWPASS, float(SR), state)

        def one_by_one():
            for i in range(blocks):
                xi, fi = xb[i], fb[i]
                for v in range(voices):
                    F.svf_kernel(xi[v], y[v], block, fi[v], q[v], gain[0], F.MODE_LOWPASS, float(SR), state[v])

        for name, fn in (("batched", batched), ("one call per filter", one_by_one)):
            fn()
            best = min(_timed(fn, time) for _ in range(repeats))
            out[(label, name)] = best / blocks * 1e6
    return out


def _timed(fn, time):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    for (label, name), us in bench().items():
        print(f"16 lowpass filters, Q 4, {label:17s} {name:20s} {us:7.2f} us per 256-sample block")
