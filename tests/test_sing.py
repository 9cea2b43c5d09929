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
