"""The envelope follower (``follower``): its attack and release times measured on stepped sines against
their definition (time constants: 63.2 % of a step), the peak and rms readings of a sine and a square,
the dB output, the rms mode's block-size invariance (the contract test checks the default peak mode), and
the generators of patches/gen-*-follower.yaml following the level of another signal."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

import patchlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 48000
T_ON = 0.05  # s: where the tone starts
F = 1000.0  # Hz: a whole number of periods in T_ON, so the tone starts on a peak


def _follow(x, port="out", block_size=256, **settings):
    """The follower's ``port`` output for input ``x`` (1-D or (channels, frames)) at SR."""
    x = np.atleast_2d(np.asarray(x, np.float32))
    node = {"type": "follower", "in": "src", **settings}
    spec = patchlib.load_patch({"sample_rate": SR, "nodes": {"src": {"type": "input"}, "f": node},
                                "out": f"f.{port}"})
    engine = patchlib.Engine(spec, block_size=block_size, audio_inputs={"": (x, SR)})
    return engine.render(x.shape[1]).astype(np.float64)


def _tone(seconds, amp=0.8, freq=F, on=T_ON, off=None, shape="sine"):
    """A tone stepped on at ``on`` (and off at ``off``), as a cosine: it starts on a peak."""
    t = np.arange(int(round(seconds * SR))) / SR
    ph = 2 * np.pi * freq * t
    x = amp * (np.cos(ph) if shape == "sine" else np.sign(np.cos(ph)))
    gate = (t >= on) & (t < (off if off is not None else np.inf))
    return (x * gate).astype(np.float32)


def _crossing(y, level, start, rising=True):
    """The time (s, linearly interpolated) at which ``y`` first crosses ``level`` after sample ``start``."""
    seg = y[start:]
    idx = np.flatnonzero(seg >= level if rising else seg <= level)
    assert idx.size, f"never crosses {level}"
    k = int(idx[0])
    assert k > 0
    a, b = seg[k - 1], seg[k]
    return (start + k - 1 + (level - a) / (b - a)) / SR


@pytest.mark.parametrize("attack", [0.005, 0.02, 0.08])
def test_peak_attack_is_the_63_percent_time_of_a_stepped_sine(attack):
    """A sine stepped on rises as a one-pole: 63.2 % of its final reading after ``attack`` seconds,
    10 % -> 90 % in ln(9) attack (2.197 attack)."""
    x = _tone(T_ON + 10 * attack + 0.05)
    y = _follow(x, attack=attack, release=0.5)[0]
    i0 = int(T_ON * SR)
    final = y[-int(0.02 * SR):].mean()
    assert final == pytest.approx(0.8, rel=2e-3)  # droop between peaks: 0.5 ms / 0.5 s
    t63 = _crossing(y, (1 - math.exp(-1)) * final, i0) - T_ON
    assert t63 == pytest.approx(attack, rel=0.02)
    t10_90 = _crossing(y, 0.9 * final, i0) - _crossing(y, 0.1 * final, i0)
    assert t10_90 == pytest.approx(math.log(9) * attack, rel=0.02)


@pytest.mark.parametrize("release", [0.03, 0.1, 0.4])
def test_peak_release_is_the_time_constant_of_the_fall(release):
    """After the sine stops the envelope falls exponentially: to 1/e of any level in ``release`` seconds,
    and the dB output by 20 log10(e) = 8.69 dB per ``release``, a straight line."""
    off = 0.3
    x = _tone(off + 6 * release, off=off)
    y = _follow(x, attack=0.002, release=release)[0]
    i1 = int(off * SR)
    lvl = 0.5 * y[i1 - 1]
    tau = _crossing(y, lvl * math.exp(-1), i1, rising=False) - _crossing(y, lvl, i1, rising=False)
    assert tau == pytest.approx(release, rel=0.005)
    d = _follow(x, "db", attack=0.002, release=release)[0]
    t = np.arange(d.size) / SR
    sel = (t > off + 0.2 * release) & (t < off + 4 * release)
    slope, _ = np.polyfit(t[sel], d[sel], 1)
    assert slope == pytest.approx(-20 * math.log10(math.e) / release, rel=0.005)


def test_rms_times_are_those_of_the_power():
    """rms mode: out**2 (the power) rises 63.2 % of the way in ``attack`` and falls to 1/e in ``release``."""
    attack, release, off = 0.02, 0.15, 0.4
    x = _tone(off + 5 * release, off=off)
    p = _follow(x, mode="rms", attack=attack, release=release)[0] ** 2
    i0, i1 = int(T_ON * SR), int(off * SR)
    final = p[i1 - int(0.05 * SR):i1].mean()
    assert final == pytest.approx(0.8 ** 2 / 2, rel=0.01)
    assert _crossing(p, (1 - math.exp(-1)) * final, i0) - T_ON == pytest.approx(attack, rel=0.03)
    lvl = 0.5 * final
    tau = _crossing(p, lvl * math.exp(-1), i1, rising=False) - _crossing(p, lvl, i1, rising=False)
    assert tau == pytest.approx(release, rel=0.01)


@pytest.mark.parametrize("amp", [1.0, 0.25])
def test_peak_reads_the_amplitude_and_rms_the_rms(amp):
    """A sine reads its amplitude in peak mode and amplitude / sqrt(2) in rms mode; a square reads its
    amplitude in both (its rms is its peak)."""
    x = _tone(1.0, amp=amp, freq=440.0, on=0.0)
    last = slice(-int(0.2 * SR), None)
    peak = _follow(x, attack=0.001, release=0.3)[0][last].mean()
    rms = _follow(x, mode="rms", attack=0.05, release=0.3)[0][last].mean()
    assert peak / amp == pytest.approx(1.0, abs=0.005)
    assert rms / amp == pytest.approx(1 / math.sqrt(2), rel=0.005)
    sq = _tone(1.0, amp=amp, freq=440.0, on=0.0, shape="square")
    assert _follow(sq, attack=0.001, release=0.3)[0][last].mean() / amp == pytest.approx(1.0, abs=0.005)
    assert _follow(sq, mode="rms", attack=0.05, release=0.3)[0][last].mean() / amp == pytest.approx(1.0, rel=0.005)


def test_db_output_is_20_log10_of_out_floored_at_minus_100():
    x = _tone(1.0, amp=0.1, off=0.6)
    out = _follow(x, attack=0.001, release=0.02)[0]
    d = _follow(x, "db", attack=0.001, release=0.02)[0]
    t = np.arange(d.size) / SR
    assert np.all(d[t < T_ON] == -100.0)  # silence before the tone
    # a 0.1 sine peaks at -20 dB (with a long release: the droop between peaks is 0.5 ms / 0.5 s)
    steady = _follow(x, "db", attack=0.001, release=0.5)[0]
    assert steady[(t > 0.3) & (t < 0.6)].mean() == pytest.approx(-20.0, abs=0.01)
    live = out > 1e-5
    np.testing.assert_allclose(d[live], 20 * np.log10(out[live]), atol=1e-3)
    assert np.all(d[~live] == -100.0) and np.all(d >= -100.0)
    assert d[-1] == -100.0  # 20 release times after the tone: floored
    rms_db = _follow(x, "db", mode="rms", attack=0.05, release=0.3)[0]
    assert rms_db[(t > 0.45) & (t < 0.6)].mean() == pytest.approx(-20 - 10 * math.log10(2), abs=0.05)


def test_each_channel_is_followed_on_its_own():
    x = np.stack([_tone(0.5, amp=0.5), _tone(0.5, amp=0.05, on=0.25)])
    y = _follow(x, attack=0.001, release=0.1)
    assert y.shape == (2, x.shape[1])
    assert y[0, -1] == pytest.approx(0.5, rel=0.01)
    assert y[1, int(0.2 * SR)] == 0.0 and y[1, -1] == pytest.approx(0.05, rel=0.01)


@pytest.mark.parametrize("mode", ["peak", "rms"])
def test_block_size_invariance_with_moving_times(mode):
    """Any block split gives the same samples, also with attack and release driven by LFOs."""
    spec = {"sample_rate": SR, "nodes": {
        "n": {"type": "noise", "seed": 3}, "l": {"type": "lfo", "freq": 7},
        "amp": {"type": "gain", "in": "n", "gain": {"from": "l", "range": [0, 1]}},
        "f": {"type": "follower", "in": "amp", "mode": mode, "attack": {"from": "l", "range": [0.0005, 0.05]},
              "release": {"from": "l", "range": [0.3, 0.005]}}}, "out": "f"}
    ref = patchlib.Engine(patchlib.load_patch(spec), block_size=1).render(4000)
    for bs in (7, 64, 1000):
        out = patchlib.Engine(patchlib.load_patch(spec), block_size=bs).render(4000)
        np.testing.assert_array_equal(out, ref, err_msg=f"block size {bs}")
    assert ref.max() > 0.1


@pytest.mark.parametrize("path,gen", [("gen-rnn-follower.yaml", "rnn"), ("gen-wavenet-follower.yaml", "gen")])
def test_the_follower_patches_make_the_generator_breathe_with_the_source(path, gen):
    """In patches/gen-*-follower.yaml the generator's level follows the follower of the other signal:
    over 3 s in 25 ms windows its RMS (dB) correlates with the follower's dB output at r > 0.85 and swings
    by more than 8 dB between the 10th and 90th percentiles (measured: r 0.92, 11 dB for the RNN;
    r 0.97, 13 dB for the WaveNet)."""
    spec = patchlib.load_patch(os.path.join(ROOT, "patches", path))
    engine = patchlib.Engine(spec, block_size=400)
    level, follow = [], []
    for _ in range(int(3.0 * engine.sample_rate) // 400):
        engine.process(400)
        g = engine.nodes[gen].out["out"][0, :400].astype(np.float64)
        level.append(20 * np.log10(np.sqrt(np.mean(g * g)) + 1e-12))
        follow.append(engine.nodes["fol"].out["db"][0, :400].mean())
    level, follow = np.array(level), np.array(follow)
    assert np.corrcoef(level, follow)[0, 1] > 0.85
    assert np.percentile(level, 90) - np.percentile(level, 10) > 8.0
