"""SING (nodes/neural/sing.py): training, streaming, and the shipped model measured on held-out notes.

The shipped model's claims (issue 6): the median YIN f0 of a generated note
is within 25 cents of the asked pitch, at pitches the model never trained on;
its multi-resolution log-spectral distance to the ground-truth render of the
same note is under half the distance between that render and the other
instruments' at the same pitch; the node runs well faster than real time.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

import patchlib
from conftest import dataset_note, tiny_note_dataset
from nodes.neural import sing
from nodes.neural.metrics import multires_log_spectral_distance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
LATENCY = 768
SHIPPED = os.path.join(ROOT, "patches", "models", "sing.pt")
INSTRUMENTS = ("bell", "bowed", "pluck", "saw")  # the model's order (sorted names)
HELD_OUT = (43, 58, 73)  # held-out pitches of the default dataset (every 5th from 38)


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _note_patch(model, pitch_hz, instrument, velocity=0.8, release=None, seconds=4.0, tail=1.0):
    score = [{"at": 0.0, "trigger": "v", "velocity": velocity}]
    if release is not None:
        score.append({"at": release, "release": "v"})
    return {"sample_rate": SR, "duration": seconds,
            "nodes": {"v": {"type": "sing", "model": model, "pitch": pitch_hz, "instrument": instrument, "tail": tail}},
            "out": "v", "score": score}


def _render(spec, frames, block_size=256):
    e = patchlib.Engine(patchlib.load_patch(spec), block_size=block_size)
    return e.render(frames)[0], e


def _median_f0(x, lo=0.1, hi=2.9):
    from patchlib.dataset import yin_f0

    f, _ = yin_f0(x, SR)
    f = f[int(lo * SR) // 256:int(hi * SR) // 256]
    f = f[f > 0]
    return float(np.median(f)) if f.size else 0.0


def _midi_hz(m):
    return 440.0 * 2.0 ** ((m - 69) / 12.0)


# ------------------------------------------------------------------ metric
def test_metric_is_a_distance_in_db():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    a = 0.5 * np.sin(2 * np.pi * 220 * t)
    assert multires_log_spectral_distance(a, a, SR) == 0.0
    b = 0.5 * np.sign(np.sin(2 * np.pi * 220 * t))
    n = 0.1 * rng.standard_normal(SR)
    assert multires_log_spectral_distance(a, b, SR) == pytest.approx(multires_log_spectral_distance(b, a, SR))
    # a louder copy is closer than a different sound; +6 dB reads as ~6 dB where both are above the floor
    assert multires_log_spectral_distance(a, 2 * a, SR) < multires_log_spectral_distance(a, n, SR)
    assert 4.0 < multires_log_spectral_distance(n, 2 * n, SR) < 6.5


# ------------------------------------------------------------------ training
def _tiny_dataset(tmp_path):
    return tiny_note_dataset(tmp_path)


def _tiny_cfg(root, out, **kw):
    from nodes.neural.train_sing import SingTrainConfig

    base = dict(output=out, data=root, size="tiny", ae_steps=25, latent_steps=10, gen_steps=25, batch=4, crop=10,
                lr=1e-2, lr_final=3e-3, save_every=10, quiet=True, seed=3, eval_velocity=100)
    base.update(kw)
    return SingTrainConfig(**base)


def test_tiny_training_loss_falls_and_resumes_exactly(tmp_path):
    import torch

    from nodes.neural.train_sing import train

    root = _tiny_dataset(tmp_path)
    logs = []
    full = train(_tiny_cfg(root, str(tmp_path / "a.pt")), log=logs.append)
    h = np.array(full["history"])
    for stage in (0, 2):  # the spectral-loss stages
        loss = h[h[:, 0] == stage, 2]
        assert loss[-5:].mean() < 0.9 * loss[:5].mean(), (stage, loss[:5], loss[-5:])
    v = full["validation"]
    assert set(v["heldout"]) == {"pluck", "saw"} and v["heldout_notes"]
    assert os.path.isfile(str(tmp_path / "a.png"))
    # interrupted in stage 3 right after a saved state, then the same command again: the same weights
    with pytest.raises(KeyboardInterrupt):
        train(_tiny_cfg(root, str(tmp_path / "b.pt"), interrupt_at=20), log=logs.append)
    resumed = train(_tiny_cfg(root, str(tmp_path / "b.pt")), log=logs.append)
    assert any("resuming" in line for line in logs)
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the shipped file loads in the node and plays
    m = sing.load(str(tmp_path / "a.pt"))
    assert m["instruments"] == ["pluck", "saw"] and m["data"]["train_command"].startswith("patchlib train sing")


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("model", ["patches/models/test-tiny-sing.pt", "patches/models/sing.pt"])
def test_streaming_equals_offline(model):
    assert os.path.isfile(model), f"{model} is shipped (see patches/models/README.md)"
    m = sing.load(model)["model"]
    lat = m.frame - m.hop
    release, seconds = 0.5, 1.0
    ref = sing.generate(m, 1.4, 250.0, 0.7, seconds, release=release, tail=0.25)
    assert np.max(np.abs(ref)) > 1e-4
    spec = _note_patch(model, 250.0, 1.4, 0.7, release=release + lat / SR, tail=0.25)
    for bs in (1, 37, 256) if "tiny" in model else (64, 1000):
        y, e = _render(spec, int(seconds * SR) + lat, bs)
        assert e.nodes["v"].latency == lat
        tol = 2e-5 * max(1.0, float(np.max(np.abs(ref))))
        np.testing.assert_allclose(y[lat:], ref, atol=tol, err_msg=f"block {bs}")


def test_intonation_head_streams_as_offline(tmp_path):
    """A model with an intonation head that moves its pitch by tens of cents from frame to frame: the node
    (numba, phases running on from each frame's own f0) plays what the torch model generates offline."""
    import torch

    torch.manual_seed(1)
    m = sing.build_model(dict(sing.TINY_CONFIG, tune=True))
    with torch.no_grad():
        m.tune.weight.normal_(0.0, 2.0)  # far from the trained head's small offsets: large, varying
        m.tune.bias.fill_(0.3)
    path = str(tmp_path / "tune.pt")
    sing.save(path, m, ["a", "b", "c", "d"])
    mm = sing.load(path)["model"]
    ft = torch.from_numpy(sing.note_conditioning(57.0, 0.7, 30, None, mm.frame, mm.hop, SR)[0])[None]
    cents = mm.generate(torch.tensor([1.4]), ft, cents=True)[1][0].detach().numpy()
    assert np.ptp(cents) > 10.0 and np.abs(cents).max() <= sing._sing.TUNE_MAX, cents
    lat = mm.frame - mm.hop
    ref = sing.generate(mm, 1.4, 220.0, 0.7, 0.4, release=0.25, tail=0.25)
    import yaml

    patch = tmp_path / "p.yaml"  # the model file beside the patch (a patch names files inside its folder)
    patch.write_text(yaml.safe_dump(_note_patch("tune.pt", 220.0, 1.4, 0.7, release=0.25 + lat / SR, tail=0.25)))
    for bs in (1, 64, 200):
        e = patchlib.Engine(patchlib.load_patch(str(patch)), block_size=bs)
        y = e.render(int(0.4 * SR) + lat)[0]
        np.testing.assert_allclose(y[lat:], ref, atol=2e-5 * max(1.0, float(np.max(np.abs(ref)))), err_msg=f"block {bs}")


def test_intonation_target_follows_a_vibrato():
    """The training target of the intonation head: YIN's f0, placed at the middle of what YIN compares and
    read at each SING frame's centre, follows a sine's +-12 cent vibrato at 5 Hz within 1.5 cents (rms), at
    the right phase, about the note's own pitch (a note played 7 cents sharp has the same target); noise
    has no trusted pitch (weight: the prior's)."""
    from nodes.neural.train_sing import TUNE_PRIOR, intonation_target

    f0, sec, frame, hop = 330.0, 2.0, 1024, 256
    t = np.arange(int(sec * SR)) / SR
    cents = 12.0 * np.sin(2 * np.pi * 5.0 * t + 0.7)
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f0 * 2 ** (cents / 1200)) / SR)
    T = sing.note_frames(x.size, frame, hop)
    tgt, w = intonation_target(x, SR, f0, T, frame, hop)
    sharp, _ = intonation_target(x, SR, f0 * 2 ** (-7 / 1200), T, frame, hop)
    np.testing.assert_allclose(sharp, tgt, atol=1e-3)
    centre = (np.arange(T) * hop - (frame - hop) + 0.5 * frame) / SR
    inside = (centre > 0.1) & (centre < sec - 0.1)
    assert (w[inside] == 1.0).all()
    truth = 12.0 * np.sin(2 * np.pi * 5.0 * centre + 0.7)
    err = tgt[inside] - truth[inside]
    assert np.sqrt(np.mean(err ** 2)) < 1.5, err
    tgt, w = intonation_target(np.random.default_rng(0).standard_normal(x.size) * 0.3, SR, f0, T, frame, hop)
    assert (w == TUNE_PRIOR).all() and (tgt == 0).all()


# ------------------------------------------------------------------ the shipped model
def shipped(test):
    """A test of the shipped model: it fails (does not skip) when patches/models/sing.pt is missing."""
    import functools

    @functools.wraps(test)
    def run(*args, **kwargs):
        assert os.path.isfile(SHIPPED), "patches/models/sing.pt is shipped (see patches/models/README.md)"
        return test(*args, **kwargs)

    return run


@shipped
@pytest.mark.parametrize("inst", ["bowed", "pluck", "saw"])
def test_heldout_pitches_in_tune(inst):
    """Median YIN f0 within 25 cents at pitches never trained on (the bell's hum reads an octave low on its
    ground truth too: see test_bell_pitch)."""
    errs = []
    for p in HELD_OUT:
        f0 = _midi_hz(p)
        spec = _note_patch("patches/models/sing.pt", f0, INSTRUMENTS.index(inst), 100 / 127,
                           release=3.0 + LATENCY / SR)
        y, _ = _render(spec, 4 * SR + LATENCY)
        fm = _median_f0(y[LATENCY:])
        errs.append(1200 * math.log2(fm / f0) if fm > 0 else float("inf"))
    assert max(abs(e) for e in errs) < 25.0, dict(zip(HELD_OUT, errs))


def _truth(inst, pitch, velocity=100):
    return dataset_note(inst, pitch, velocity, SR)


@shipped
def test_bell_pitch():
    """The bell sounds where its ground truth does: its hum, an octave below the struck note.

    A church bell's lowest partial (the hum, 0.5 x the note) is what a period tracker hears, so the bell's own
    renders measure an octave low (patches/instruments/bell.yaml). The pitch the conditioning asks of a bell
    is therefore the note an octave down: the ground truth must measure there, and the generated bell too,
    both within 25 cents, at every held-out pitch.
    """
    bell = INSTRUMENTS.index("bell")
    errs = {}
    for p in HELD_OUT:
        hum = _midi_hz(p) / 2.0
        truth = _median_f0(_truth("bell", p))
        spec = _note_patch("patches/models/sing.pt", _midi_hz(p), bell, 100 / 127, release=3.0 + LATENCY / SR)
        y, _ = _render(spec, 4 * SR + LATENCY)
        gen = _median_f0(y[LATENCY:])
        errs[p] = tuple(1200 * math.log2(f / hum) if f > 0 else float("inf") for f in (truth, gen))
    assert all(abs(t) < 25.0 and abs(g) < 25.0 for t, g in errs.values()), errs


@shipped
@pytest.mark.parametrize("pitch", [48, 63])
def test_timbre_closer_to_its_instrument_than_instruments_to_each_other(pitch):
    m = sing.load(SHIPPED)["model"]
    truths = {i: _truth(i, pitch) for i in INSTRUMENTS}
    ratios = {}
    for k, inst in enumerate(INSTRUMENTS):
        y = sing.generate(m, k, _midi_hz(pitch), 100 / 127, 4.0, release=3.0)
        d = multires_log_spectral_distance(y, truths[inst], SR)
        others = [multires_log_spectral_distance(truths[inst], truths[o], SR) for o in INSTRUMENTS if o != inst]
        ratios[inst] = d / float(np.mean(others))
    assert max(ratios.values()) < 0.5, ratios


def _ratio(m, inst, pitch, velocity):
    truths = {i: _truth(i, pitch, velocity) for i in INSTRUMENTS}
    y = sing.generate(m, INSTRUMENTS.index(inst), _midi_hz(pitch), velocity / 127, 4.0, release=3.0)
    d = multires_log_spectral_distance(y, truths[inst], SR)
    return d / float(np.mean([multires_log_spectral_distance(truths[inst], truths[o], SR)
                              for o in INSTRUMENTS if o != inst]))


@shipped
def test_bowed_vibrato_notes_within_bound():
    """The notes the model before the learnt intonation missed (its partials sat still while the bowed
    string's vibrato moved): the bowed string at MIDI 83 (velocity 100) and 73 (the held-out velocity 75)."""
    m = sing.load(SHIPPED)["model"]
    got = {(83, 100): _ratio(m, "bowed", 83, 100), (73, 75): _ratio(m, "bowed", 73, 75)}
    assert max(got.values()) < 0.5, got


@shipped
@pytest.mark.slow
def test_every_heldout_note_within_bound():
    """All 80 held-out notes (10 pitches x 4 instruments, velocities 100 and the held-out 75): what
    docs/generators.md reports. Every one is under 0.5 (the worst: the bowed string at MIDI 83, 0.47)."""
    m = sing.load(SHIPPED)["model"]
    over = {}
    for v in (100, 75):
        for p in range(38, 84, 5):
            for inst in INSTRUMENTS:
                r = _ratio(m, inst, p, v)
                if r >= 0.5:
                    over[(inst, p, v)] = round(r, 3)
    assert not over, over


@shipped
def test_poly_patch_plays_three_notes_at_once():
    spec = {"sample_rate": SR, "duration": 2.0,
            "voices": {"note": {"nodes": {"g": {"type": "sing", "model": "patches/models/sing.pt", "pitch": "pitch",
                                                "instrument": 3}}, "out": "g"}},
            "nodes": {"keys": {"type": "poly", "voice": "note", "voices": 4}}, "out": "keys",
            "score": [{"at": 0.0, "note": "keys", "pitch": ["C3", "E3", "G3"], "velocity": 0.8, "length": 1.5}]}
    e = patchlib.Engine(patchlib.load_patch(spec), block_size=256)
    y = e.render(int(1.2 * SR))[0]
    active = [v for v in range(4) if e.nodes[f"keys/{v}/g"].state[0] > 0.5]
    assert len(active) == 3
    seg = y[int(0.3 * SR):int(1.1 * SR)].astype(np.float64)
    spec_ = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    freqs = np.fft.rfftfreq(seg.size, 1 / SR)
    floor = np.median(spec_[(freqs > 50) & (freqs < 2000)])
    for midi in (48, 52, 55):
        f = _midi_hz(midi)
        peak = spec_[(freqs > f * 0.985) & (freqs < f * 1.015)].max()
        assert 20 * np.log10(peak / floor) > 20, (midi, peak, floor)


@shipped
@pytest.mark.slow  # a speed target: the benchmark (patchlib bench generators) reports it
def test_faster_than_50x_real_time():
    spec = _note_patch("patches/models/sing.pt", 220.0, 2.0, 0.8, seconds=10.0)
    e = patchlib.Engine(patchlib.load_patch(spec), block_size=256)
    e.render(SR)  # warm (kernels compiled and cached)
    best = math.inf
    for _ in range(3):
        e.reset()
        e.process(256)  # the trigger
        t0 = time.perf_counter()
        e.render(5 * SR)
        best = min(best, time.perf_counter() - t0)
    assert 5.0 / best > 50.0, f"{5.0 / best:.0f}x real time"
