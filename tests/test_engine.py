"""The engine, measured on audio rendered through real patches.

Scheduling (events on their exact sample, whatever the block size), param
automation and modulation mapping, block-size invariance, determinism, the
NaN/inf output guard, stereo, feedback through a delay, audio input and
third-party node types.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import patchlib
from patchlib import Input, Node, Output, Param, PatchError, register, registry
from patchlib.cli import main

from conftest import SR, load, render_engine, render_patch, rms, write_patch, zero_crossing_freq

# The first patch of the engine issue, exactly as written there.
ISSUE_PATCH = """\
sample_rate: 48000
block_size: 256
nodes:
  lfo:    {type: sine, freq: 0.3}
  osc:    {type: saw, freq: 110}
  filter: {type: lowpass, in: osc, cutoff: {from: lfo, range: [300, 3000], curve: exp}, q: 4}
  amp:    {type: gain, in: filter, gain: 0.3}
out: amp
"""

# Everything that keeps state across a block boundary at once: oscillators,
# seeded noise, filters swept by an LFO and by an envelope, an adsr driven by
# the score (triggers with length and velocity, a control-rate param ramp),
# a delay with feedback whose time is ramped, sets and ramps at times that
# fall inside blocks, and a pan to stereo.
BUSY_PATCH = """\
sample_rate: 48000
seed: 7
nodes:
  lfo:   {type: sine, freq: 3}
  osc:   {type: saw, freq: 110}
  sq:    {type: square, freq: 220, pw: 0.3}
  tri:   {type: triangle, freq: 330}
  hiss:  {type: noise, color: pink}
  wn:    {type: noise}
  env:   {type: adsr, attack: 5ms, decay: 80ms, sustain: 0.5, release: 120ms}
  voice: {type: mix, in: [osc, sq, tri, hiss], gains: [0.3, 0.2, 0.2, 0.2]}
  filt:  {type: lowpass, in: voice, cutoff: {from: lfo, range: [300, 3000], curve: exp}, q: 4}
  bp:    {type: bandpass, in: wn, cutoff: 1200, q: 2}
  hp:    {type: highpass, in: bp, cutoff: {from: env, range: [100, 2000]}}
  vca:   {type: gain, in: filt, gain: env}
  echo:  {type: delay, in: vca, time: 37ms, feedback: 0.6}
  wet:   {type: mix, in: [vca, echo, hp], gains: [1, 0.5, 0.3]}
  pan:   {type: pan, in: wet, pan: {from: lfo}}
out: pan
score:
  - {at: 0.01, trigger: env, length: 0.1}
  - {at: 0.0517, set: osc.freq, to: 220}
  - {at: 0.07, ramp: filt.q, to: 1, over: 0.05, curve: exp}
  - {at: 0.09, ramp: env.sustain, to: 0.3, over: 0.05}
  - {at: 0.123456, trigger: env, velocity: 0.8}
  - {at: 0.15, ramp: echo.time, to: 20ms, over: 0.04}
  - {at: 0.2, set: sq.pw, to: 0.6, over: 0}
  - {at: 0.21, release: env}
  - {at: 0.4, trigger: env, length: 0.2}
  - {at: 0.45, set: filt.q, to: 8}
"""


# ---------------------------------------------------------------- the issue's patch
@pytest.fixture(scope="module")
def issue_render():
    audio, engine = render_engine(ISSUE_PATCH, 3.4)  # a little more than one LFO period (3.33 s)
    return audio[0].astype(np.float64), engine


def test_issue_patch_renders_clean(issue_render):
    x, engine = issue_render
    assert x.size == int(3.4 * SR)
    assert np.all(np.isfinite(x))
    assert not engine.warnings
    peak = np.max(np.abs(x))
    assert peak < 1.0, f"clips: peak {peak}"
    assert rms(x) > 0.05, "silent"


def _lfo_cutoff(t):
    """What the patch asks for: 300..3000 Hz, exponentially, from sin(2 pi 0.3 t)."""
    return 300.0 * 10.0 ** ((np.sin(2 * np.pi * 0.3 * t) + 1.0) / 2.0)


def test_issue_patch_cutoff_really_sweeps(issue_render):
    x, _ = issue_render
    n, hop = 4096, 2048
    win = np.hanning(n)
    f = np.fft.rfftfreq(n, 1 / SR)
    centroid, predicted = [], []
    for s in range(0, x.size - n, hop):
        p = np.abs(np.fft.rfft(x[s:s + n] * win)) ** 2
        centroid.append(np.sum(f * p) / np.sum(p))
        predicted.append(_lfo_cutoff((s + n / 2) / SR))
    centroid, predicted = np.log(centroid), np.log(predicted)
    r = np.corrcoef(centroid, predicted)[0, 1]
    assert r > 0.95, f"spectral centroid does not follow the LFO's cutoff (r = {r:.3f})"
    # and by a lot: brightest frames are more than twice the centroid of the darkest
    top = centroid[predicted > np.log(2000)].mean()
    bottom = centroid[predicted < np.log(450)].mean()
    assert np.exp(top - bottom) > 2.0


def test_constant_cutoff_gives_a_steady_spectrum():
    """Control for the sweep test: the same measurement on a fixed cutoff does not move."""
    patch = ISSUE_PATCH.replace("cutoff: {from: lfo, range: [300, 3000], curve: exp}", "cutoff: 900")
    x = render_patch(patch, 1.0)[0].astype(np.float64)
    n = 4096
    win = np.hanning(n)
    f = np.fft.rfftfreq(n, 1 / SR)
    cs = []
    for s in range(4096, x.size - n, 2048):
        p = np.abs(np.fft.rfft(x[s:s + n] * win)) ** 2
        cs.append(np.sum(f * p) / np.sum(p))
    assert np.ptp(cs) / np.mean(cs) < 0.05


# ---------------------------------------------------------------- block-size invariance
@pytest.fixture(scope="module")
def invariance_refs():
    """Per patch: a block-size-1 render of 0.25 s, and the patch's own block size over 1 s."""
    refs = {}
    for name, patch in (("issue", ISSUE_PATCH), ("busy", BUSY_PATCH)):
        spec = load(patch)
        one = patchlib.Engine(spec, block_size=1).render(SR // 4)
        full = patchlib.Engine(spec, block_size=256).render(SR)
        refs[name] = (spec, one, full)
    return refs


@pytest.mark.parametrize("name", ["issue", "busy"])
def test_block_size_one_matches(invariance_refs, name):
    _, one, full = invariance_refs[name]
    assert rms(one) > 0.01
    np.testing.assert_allclose(one, full[:, :one.shape[1]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["issue", "busy"])
@pytest.mark.parametrize("block_size", [64, 65, 100, 128, 8193])
def test_block_size_invariance(invariance_refs, name, block_size):
    spec, _, full = invariance_refs[name]
    audio = patchlib.Engine(spec, block_size=block_size).render(full.shape[1])
    assert audio.shape == full.shape
    np.testing.assert_allclose(audio, full, rtol=0, atol=1e-6)


def test_busy_patch_is_busy(invariance_refs):
    """The invariance patch really exercises what it claims: stereo, moving, not silent."""
    _, _, full = invariance_refs["busy"]
    assert full.shape[0] == 2
    assert np.all(np.isfinite(full)) and np.max(np.abs(full)) < 1.0
    # the score shapes the sound: silent before the first trigger at 10 ms,
    # loud while the envelope is open
    assert np.max(np.abs(full[:, :int(0.01 * SR)])) < 0.05
    assert rms(full[:, int(0.02 * SR):int(0.1 * SR)]) > 0.05
    assert not np.allclose(full[0], full[1])  # the LFO pans


# ---------------------------------------------------------------- event timing
def _timing_patch(at):
    return {
        "sample_rate": SR,
        "nodes": {
            "c": {"type": "constant", "value": 0.25},
            "env": {"type": "adsr", "attack": 0, "decay": "100ms", "sustain": 0.5},
        },
        "out": ["c", "env"],
        "score": [
            {"at": at, "set": "c.value", "to": 0.75, "over": 0},
            {"at": at, "trigger": "env"},
        ],
    }


@pytest.mark.parametrize("block_size", [64, 100, 256])
@pytest.mark.parametrize("at", [0.5, 0.123456, "1500ms"])
def test_event_lands_on_its_sample(block_size, at):
    frame = {0.5: 24000, 0.123456: round(0.123456 * SR), "1500ms": 72000}[at]
    audio = render_patch(_timing_patch(at), frames=frame + 1000, block_size=block_size)
    c, env = audio
    changed = np.flatnonzero(c != c[0])
    assert changed[0] == frame, f"set landed on {changed[0]}, not {frame}"
    assert c[frame - 1] == pytest.approx(0.25) and c[frame] == pytest.approx(0.75)
    assert np.flatnonzero(env)[0] == frame
    assert env[frame] == 1.0  # attack 0: full level on the trigger's own sample


def test_same_time_events_apply_in_written_order():
    patch = _timing_patch(0.01)
    patch["score"] = [
        {"at": 0.01, "set": "c.value", "to": 0.5, "over": 0},
        {"at": 0.01, "set": "c.value", "to": 0.9, "over": 0},
    ]
    c = render_patch(patch, frames=1000)[0]
    assert c[480] == pytest.approx(0.9) and c[479] == pytest.approx(0.25)


# ---------------------------------------------------------------- ramps and sets
def _ramp(event, frames=2 * SR, value=100):
    patch = {"sample_rate": SR, "nodes": {"c": {"type": "constant", "value": value}}, "out": "c",
             "score": [event]}
    return render_patch(patch, frames=frames)[0].astype(np.float64)


def test_linear_ramp():
    x = _ramp({"at": 0.5, "ramp": "c.value", "to": 1100, "over": 1.0})
    step = 1000.0 / SR
    start, mid, end = int(0.5 * SR), SR, int(1.5 * SR)
    assert np.all(x[:start] == 100.0)
    assert x[mid] == pytest.approx(600.0, abs=1.5 * step)
    # a straight line all the way, within about a step (float32 holds the value)
    line = 100.0 + (np.arange(start, end) - start) * step
    assert np.max(np.abs(x[start:end] - line)) < 1.5 * step + 1e-4
    assert np.all(np.diff(x[start:end]) >= 0)
    assert np.all(x[end:] == 1100.0)


def test_exponential_ramp_hits_geometric_mean_at_midpoint():
    x = _ramp({"at": 0.5, "ramp": "c.value", "to": 1100, "over": 1.0, "curve": "exp"})
    start, mid, end = int(0.5 * SR), SR, int(1.5 * SR)
    assert x[mid] == pytest.approx(np.sqrt(100.0 * 1100.0), rel=1e-3)  # 331.7, not 600
    # equal ratios per sample: the log is a straight line
    logline = np.log(100.0) + (np.arange(start, end) - start) * np.log(11.0) / SR
    assert np.max(np.abs(np.log(x[start:end]) - logline)) < 1e-3
    assert np.all(x[end:] == 1100.0)


def test_set_without_over_glides_over_the_smoothing_time():
    smooth = registry.get("constant").params["value"].smooth  # seconds
    x = _ramp({"at": 0.5, "set": "c.value", "to": 1100})
    start = int(0.5 * SR)
    d = np.diff(x)
    moving = np.flatnonzero(d)
    # no jump: the largest step is the glide's per-sample step
    expected_step = 1000.0 / (smooth * SR)
    assert d.max() <= expected_step * 1.001
    # the glide lasts the smoothing time and ends on the target
    # Web Audio semantics: the old value on the event's sample, the target
    # exactly `smooth` later
    assert x[start] == 100.0 and moving[0] == start
    assert (moving[-1] - moving[0] + 1) == round(smooth * SR)
    assert x[start + round(smooth * SR) - 1] < 1100.0
    assert x[start + round(smooth * SR)] == 1100.0


def test_set_with_over_zero_jumps():
    x = _ramp({"at": 0.5, "set": "c.value", "to": 1100, "over": 0})
    assert x[23999] == 100.0 and x[24000] == 1100.0


def test_set_replaces_a_modulation():
    patch = {"sample_rate": SR, "nodes": {
        "lfo": {"type": "sine", "freq": 5},
        "c": {"type": "constant", "value": {"from": "lfo", "range": [200, 400]}}}, "out": "c",
        "score": [{"at": 0.5, "set": "c.value", "to": 700, "over": 0}]}
    x = render_patch(patch, 1.0)[0]
    assert 200 <= x[:24000].min() < 210 and 390 < x[:24000].max() <= 400
    assert np.all(x[24000:] == 700)


# ---------------------------------------------------------------- modulation mapping
@pytest.mark.parametrize("raw, lin, exp", [(-1.0, 300.0, 300.0), (0.0, 1650.0, 948.683), (1.0, 3000.0, 3000.0)])
def test_modulation_maps_nominal_range_onto_param_range(raw, lin, exp):
    # a constant node outputs its 'value' param: what the param receives is what we hear
    patch = {"sample_rate": SR, "nodes": {
        "m": {"type": "constant", "value": raw},
        "p_lin": {"type": "constant", "value": {"from": "m", "range": [300, 3000], "curve": "lin"}},
        "p_exp": {"type": "constant", "value": {"from": "m", "range": [300, 3000], "curve": "exp"}},
    }, "out": ["p_lin", "p_exp"]}
    a = render_patch(patch, frames=256).astype(np.float64)
    assert a[0, -1] == pytest.approx(lin, rel=1e-5)
    assert a[1, -1] == pytest.approx(exp, rel=1e-5)


@pytest.mark.parametrize("raw, lin, exp", [(-1.0, 0.1, 0.1), (0.0, 0.5, 0.3), (1.0, 0.9, 0.9)])
def test_modulated_gain_scales_a_signal(raw, lin, exp):
    """A gain node's gain driven through [0.1, 0.9] by a modulator, applied to a steady 1.0."""
    patch = {"sample_rate": SR, "nodes": {
        "m": {"type": "constant", "value": raw},
        "one": {"type": "constant", "value": 1.0},
        "g_lin": {"type": "gain", "in": "one", "gain": {"from": "m", "range": [0.1, 0.9], "curve": "lin"}},
        "g_exp": {"type": "gain", "in": "one", "gain": {"from": "m", "range": [0.1, 0.9], "curve": "exp"}},
    }, "out": ["g_lin", "g_exp"]}
    a = render_patch(patch, frames=256).astype(np.float64)
    assert a[0, -1] == pytest.approx(lin, rel=1e-5)
    assert a[1, -1] == pytest.approx(exp, rel=1e-5)


def test_envelope_nominal_range_and_raw_signal():
    """An envelope (nominal 0..1) maps 0 -> low and 1 -> high; a bare name takes it raw."""
    patch = {"sample_rate": SR, "nodes": {
        "env": {"type": "adsr", "attack": 0, "decay": 0, "sustain": 1.0},
        "one": {"type": "constant", "value": 1.0},
        "mapped": {"type": "gain", "in": "one", "gain": {"from": "env", "range": [0.2, 0.6]}},
        "raw": {"type": "gain", "in": "one", "gain": "env"},
    }, "out": ["mapped", "raw"], "score": [{"at": 0.01, "trigger": "env"}]}
    a = render_patch(patch, frames=1000).astype(np.float64)
    assert a[0, 100] == pytest.approx(0.2) and a[0, 900] == pytest.approx(0.6)
    assert a[1, 100] == 0.0 and a[1, 900] == pytest.approx(1.0)


def test_modulation_is_clamped_to_the_param_range():
    patch = {"sample_rate": SR, "nodes": {
        "m": {"type": "constant", "value": 1e5},
        "osc": {"type": "constant", "unit": "Hz", "value": "A4"},
        "p": {"type": "pan", "in": "osc", "pan": "m"},  # pan's range is -1..1
    }, "out": "p"}
    a = render_patch(patch, frames=256).astype(np.float64)
    assert a[0, -1] == pytest.approx(0.0, abs=1e-4) and a[1, -1] == pytest.approx(440.0)


# ---------------------------------------------------------------- determinism
NOISY = """\
sample_rate: 48000
duration: 0.5
seed: {seed}
nodes:
  hiss: {{type: noise}}
  pink: {{type: noise, color: pink}}
  osc:  {{type: saw, freq: 220}}
  sum:  {{type: mix, in: [hiss, pink, osc], gains: [0.3, 0.3, 0.2]}}
  filt: {{type: lowpass, in: sum, cutoff: 3kHz}}
out: filt
"""


def _cli_render(tmp_path, seed, name, *extra):
    path = write_patch(tmp_path, NOISY.format(seed=seed), f"noisy{seed}.yaml")
    wav = tmp_path / name
    assert main(["render", path, "-o", str(wav), "-q", *extra]) == 0
    return wav


def test_cli_render_is_deterministic(tmp_path):
    a = _cli_render(tmp_path, 1, "a.wav")
    b = _cli_render(tmp_path, 1, "b.wav")
    c = _cli_render(tmp_path, 1, "c.wav", "--block-size", "77")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    x, rate = sf.read(str(a))
    assert rate == SR and x.shape == (SR // 2,) and rms(x) > 0.05


def test_other_seed_other_noise(tmp_path):
    x, _ = sf.read(str(_cli_render(tmp_path, 1, "a.wav")))
    y, _ = sf.read(str(_cli_render(tmp_path, 2, "b.wav")))
    assert rms(x - y) > 0.5 * rms(x)
    # the noise differs, the saw does not: both share the same deterministic part
    assert abs(rms(x) - rms(y)) < 0.1 * rms(x)


# ---------------------------------------------------------------- output guard
_BAD_AT = 12000


class _BadAfter(Node):
    """Test-only: a steady 0.1, then NaN (or inf) from frame 12000 on."""

    outputs = {"out": Output("0.1 then garbage", channels=1)}
    garbage = float("nan")

    def process(self, n, t):
        y = self.out["out"][0, :n]
        y[:] = 0.1
        k = max(0, min(n, _BAD_AT - t))
        y[k:] = self.garbage


@pytest.mark.parametrize("garbage", [float("nan"), float("inf"), -float("inf")])
def test_output_guard_mutes_the_culprit(monkeypatch, scratch_registry, garbage):
    register("nan_test")(_BadAfter)
    monkeypatch.setattr(_BadAfter, "garbage", garbage)
    patch = {"sample_rate": SR, "nodes": {
        "bad": {"type": "nan_test"},
        "tone": {"type": "sine", "freq": 440},
        "sum": {"type": "mix", "in": ["bad", "tone"], "gains": [1, 0.5]},
        "filt": {"type": "lowpass", "in": "sum", "cutoff": 4000},
    }, "out": "filt"}
    audio, engine = render_engine(patch, 1.0)
    x = audio[0].astype(np.float64)
    assert np.all(np.isfinite(x))
    # named once, the culprit only (not the mix or filter its garbage went through)
    assert [w.node for w in engine.warnings] == ["bad"]
    assert "bad" in str(engine.warnings[0]) and "NaN" in str(engine.warnings[0])
    # before: tone plus the steady 0.1 offset; after: the tone goes on through the filter
    before = x[2000:_BAD_AT - 256]
    assert before.mean() == pytest.approx(0.1, abs=0.01)
    after = x[_BAD_AT + 4800:]
    assert rms(after) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    assert abs(after.mean()) < 0.01  # the muted node contributes nothing
    assert zero_crossing_freq(after) == pytest.approx(440.0, rel=1e-4)


@pytest.mark.parametrize("loop", [False, True], ids=["delay_feedback", "graph_loop"])
def test_output_guard_cleans_a_delay_line(scratch_registry, loop):
    """A delay line that stored the NaN while its output was still finite is cleaned too.

    Otherwise it plays the garbage back 10 ms later, is blamed as a second
    culprit and muted for good, and the echo is lost.
    """
    register("nan_test")(_BadAfter)
    nodes = {
        "bad": {"type": "nan_test"},
        "tone": {"type": "sine", "freq": 440},
        "src": {"type": "mix", "in": ["bad", "tone"], "gains": [1, 1]},
    }
    if loop:  # the feedback runs through the graph
        nodes["wet"] = {"type": "mix", "in": ["src", "echo"], "gains": [1, 0.5]}
        nodes["echo"] = {"type": "delay", "in": "wet", "time": "10ms"}
    else:  # the delay's own feedback
        nodes["echo"] = {"type": "delay", "in": "src", "time": "10ms", "feedback": 0.5}
        nodes["wet"] = {"type": "mix", "in": ["src", "echo"], "gains": [1, 1]}
    audio, engine = render_engine({"sample_rate": SR, "nodes": nodes, "out": "wet"}, 1.0)
    assert np.all(np.isfinite(audio))
    assert [w.node for w in engine.warnings] == ["bad"]  # not 'echo'
    # the echo goes on once the garbage is gone: tone + echoes, as without the bad node
    clean = {k: v for k, v in nodes.items() if k != "bad"}
    clean["src"] = {"type": "mix", "in": ["tone"], "gains": [1]}
    ref = render_patch({"sample_rate": SR, "nodes": clean, "out": "wet"}, 1.0)
    assert rms(audio[0, -SR // 4:]) == pytest.approx(rms(ref[0, -SR // 4:]), rel=0.05)


# ---------------------------------------------------------------- stereo
@pytest.mark.parametrize("out", [{"left": "a", "right": "b"}, ["a", "b"]])
def test_left_right_outputs(out):
    patch = {"sample_rate": SR, "nodes": {"a": {"type": "sine", "freq": 440},
                                          "b": {"type": "sine", "freq": 660}}, "out": out}
    audio = render_patch(patch, 1.0)
    assert audio.shape == (2, SR)
    assert zero_crossing_freq(audio[0]) == pytest.approx(440.0, rel=1e-5)
    assert zero_crossing_freq(audio[1]) == pytest.approx(660.0, rel=1e-5)


def test_channels_2_plays_mono_in_both():
    patch = {"sample_rate": SR, "channels": 2, "nodes": {"a": {"type": "saw", "freq": 440}}, "out": "a"}
    audio = render_patch(patch, 0.1)
    assert audio.shape == (2, 4800)
    assert rms(audio[0]) > 0.1
    assert np.array_equal(audio[0], audio[1])


@pytest.mark.parametrize("pan, gains", [(-1, (1.0, 0.0)), (0, (0.70710678, 0.70710678)), (1, (0.0, 1.0)),
                                        (0.5, (np.cos(0.375 * np.pi), np.sin(0.375 * np.pi)))])
def test_pan_is_equal_power(pan, gains):
    patch = {"sample_rate": SR, "nodes": {"src": {"type": "sine", "freq": 1000},
                                          "p": {"type": "pan", "in": "src", "pan": pan}}, "out": "p"}
    src = render_patch({"sample_rate": SR, "nodes": {"src": {"type": "sine", "freq": 1000}}, "out": "src"}, 0.1)
    audio = render_patch(patch, 0.1).astype(np.float64)
    level = rms(src)
    assert rms(audio[0]) / level == pytest.approx(gains[0], abs=1e-5)
    assert rms(audio[1]) / level == pytest.approx(gains[1], abs=1e-5)
    # total power is constant
    assert (rms(audio[0]) ** 2 + rms(audio[1]) ** 2) / level ** 2 == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- feedback through a delay
FEEDBACK = {
    "sample_rate": SR,
    "nodes": {
        "src": {"type": "adsr", "attack": 0, "decay": 0, "sustain": 0, "release": 0},  # a one-sample click
        "a": {"type": "mix", "in": ["src", "d"], "gains": [1, 0.5]},
        "d": {"type": "delay", "in": "a", "time": "10ms"},
    },
    "out": "a",
    "score": [{"at": 0.1, "trigger": "src"}],
}


@pytest.mark.parametrize("block_size", [64, 256, 478])
def test_feedback_loop_through_delay_echoes(block_size):
    x = render_patch(FEEDBACK, 0.2, block_size=block_size)[0].astype(np.float64)
    click, spacing = int(0.1 * SR), 480  # 10 ms: at least a block + 2 samples, so exact
    peaks = list(range(click, x.size, spacing))
    assert len(peaks) == 10
    for k, p in enumerate(peaks):
        assert x[p] == pytest.approx(0.5 ** k, rel=1e-4), f"echo {k}"
    rest = x.copy()
    for p in peaks:
        rest[p - 2:p + 3] = 0.0
    assert np.max(np.abs(rest)) < 1e-4  # nothing between the echoes


def test_loop_delay_is_at_least_a_block_plus_two():
    """The documented rule: inside a loop the delay reads earlier blocks only."""
    x = render_patch(FEEDBACK, 0.2, block_size=1024)[0].astype(np.float64)
    click = int(0.1 * SR)
    assert x[click] == 1.0
    assert np.max(np.abs(x[click + 1:click + 1026 - 2])) < 1e-4
    assert x[click + 1026] == pytest.approx(0.5, rel=1e-4)


def test_cycle_without_delay_is_rejected():
    patch = {**FEEDBACK, "nodes": {**FEEDBACK["nodes"], "d": {"type": "gain", "in": "a", "gain": 1}}}
    with pytest.raises(PatchError) as ei:
        load(patch)
    assert "cycle without a delay" in str(ei.value)
    assert "a -> d -> a" in str(ei.value)


# ---------------------------------------------------------------- audio input
def _sine(freq, rate, seconds, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_input_node_from_cli_input(tmp_path):
    x = _sine(1000, SR, 0.5)
    sf.write(str(tmp_path / "dry.wav"), x, SR, subtype="FLOAT")
    path = write_patch(tmp_path, """\
        duration: 0.5
        nodes:
          dry: {type: input}
          amp: {type: gain, in: dry, gain: -6dB}
        out: amp
        """)
    wav = tmp_path / "wet.wav"
    assert main(["render", path, "--input", str(tmp_path / "dry.wav"), "-o", str(wav), "-q",
                 "--format", "float"]) == 0
    y, rate = sf.read(str(wav), dtype="float32")
    assert rate == SR
    np.testing.assert_allclose(y, x * np.float32(10 ** (-6 / 20)), atol=1e-7)


def test_input_node_from_file_option_and_stereo(tmp_path):
    left, right = _sine(500, SR, 0.25), _sine(700, SR, 0.25, amp=0.25)
    (tmp_path / "media").mkdir()
    sf.write(str(tmp_path / "media" / "st.wav"), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    path = write_patch(tmp_path, """\
        nodes:
          dry: {type: input, file: media/st.wav}
        out: dry
        """)
    audio = render_patch(path, 0.3)  # longer than the file: silence after its end
    assert audio.shape == (2, int(0.3 * SR))
    np.testing.assert_array_equal(audio[0, :left.size], left)
    np.testing.assert_array_equal(audio[1, :right.size], right)
    assert np.all(audio[:, left.size:] == 0)


def test_input_node_loops(tmp_path):
    x = _sine(100, SR, 0.1)  # ten whole periods
    sf.write(str(tmp_path / "loop.wav"), x, SR, subtype="FLOAT")
    path = write_patch(tmp_path, """\
        nodes:
          dry: {type: input, file: loop.wav, loop: true}
        out: dry
        """)
    y = render_patch(path, 0.35)[0]
    np.testing.assert_array_equal(y[:x.size], x)
    np.testing.assert_array_equal(y[x.size:2 * x.size], x)
    np.testing.assert_array_equal(y[3 * x.size:], x[:y.size - 3 * x.size])


@pytest.mark.parametrize("rate", [44100, 22050])
def test_input_file_at_another_rate_is_resampled(tmp_path, rate):
    sf.write(str(tmp_path / "in.wav"), _sine(1000, rate, 1.0), rate, subtype="FLOAT")
    path = write_patch(tmp_path, """\
        nodes:
          dry: {type: input, file: in.wav}
        out: dry
        """)
    y = render_patch(path, 1.0)[0]
    body = y[2000:-2000]  # away from the resampler's edges
    assert zero_crossing_freq(body) == pytest.approx(1000.0, rel=1e-3)
    assert rms(body) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


# ---------------------------------------------------------------- third-party nodes
def test_registered_node_is_usable_in_a_patch(scratch_registry):
    @register("test_invert")
    class Invert(Node):
        """Multiplies the signal by -depth."""

        inputs = {"in": Input("signal")}
        params = {"depth": Param(1.0, (0.0, 1.0), doc="how much")}

        def process(self, n, t):
            self.out["out"][:, :n] = -self.inp["in"][:, :n] * self.par["depth"][:n]

    base = {"sample_rate": SR, "nodes": {"osc": {"type": "saw", "freq": 220}}, "out": "osc"}
    patch = {"sample_rate": SR, "nodes": {"osc": {"type": "saw", "freq": 220},
                                          "inv": {"type": "test_invert", "in": "osc", "depth": 0.5}},
             "out": "inv", "score": [{"at": 0.05, "set": "inv.depth", "to": 1.0, "over": 0}]}
    x = render_patch(base, 0.1)[0]
    y = render_patch(patch, 0.1)[0]
    np.testing.assert_allclose(y[:2400], -0.5 * x[:2400], atol=1e-7)
    np.testing.assert_allclose(y[2400:], -x[2400:], atol=1e-7)
    # and the checker knows its params like a built-in's
    with pytest.raises(PatchError, match="did you mean 'depth'"):
        load({"nodes": {"osc": {"type": "saw"}, "inv": {"type": "test_invert", "in": "osc", "deph": 1}},
              "out": "inv"})


def test_duplicate_registration_needs_override(scratch_registry):
    class Other(Node):
        def process(self, n, t):
            self.out["out"][:, :n] = 0.0

    with pytest.raises(ValueError, match="already registered"):
        register("sine")(Other)
    assert registry.get("sine") is not Other

    @register("test_dup")
    class First(Other):
        pass

    with pytest.raises(ValueError, match="override=True"):
        register("test_dup")(Other)
    assert registry.get("test_dup") is First
    register("test_dup", override=True)(Other)
    assert registry.get("test_dup") is Other


def test_register_refuses_a_non_node(scratch_registry):
    with pytest.raises(TypeError):
        register("test_not_a_node")(object)


def test_scratch_registry_leaves_no_trace():
    """The test-only types above are gone once their tests end."""
    names = registry.all_types()
    assert not {"nan_test", "test_invert", "test_dup", "test_fail_midway"} & set(names)
    assert {"sine", "lowpass", "delay", "input"} <= set(names)


@pytest.mark.parametrize("curve", ["lin", "exp"])
def test_ramp_starts_on_its_sample_and_ends_exactly_over_later(curve):
    """Like the Web Audio API: v0 on the event's sample, the target at start + over."""
    patch = {"sample_rate": SR, "nodes": {"c": {"type": "constant", "value": 10}}, "out": "c",
             "score": [{"at": 0.5, "ramp": "c.value", "to": 490, "over": 0.01, "curve": curve}]}
    x = render_patch(patch, 0.6)[0]
    start, count = int(0.5 * SR), int(0.01 * SR)
    assert x[start] == 10.0 and x[start + 1] > 10.0
    assert x[start + count - 1] < 490.0 and x[start + count] == 490.0
