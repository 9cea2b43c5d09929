"""The models shipped in patches/models/, measured on audio they never saw.

``overdrive.pt`` (an LSTM) and ``overdrive-wavenet.pt`` (a WaveNet) were
trained by ``patchlib train pedal`` on the virtual-analog ``diode_clipper``
(the command is stored in each checkpoint).
Here each plays, through the ``pedal`` node in a patch, a dry signal rendered
with another seed than its training data, at the training grid's knob
settings and at held-out ones; the error against the clipper itself is the
ESR after pre-emphasis, as in training.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import patchlib
from nodes.dsp import pedal_data
from nodes.neural import checkpoint
from nodes.neural.train import esr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the shipped pedal models: the LSTM the example patch plays, and a WaveNet (paper size + input gain)
MODELS = {"lstm": os.path.join("patches", "models", "overdrive.pt"),
          "wavenet": os.path.join("patches", "models", "overdrive-wavenet.pt")}
ARCH = pytest.mark.parametrize("arch", sorted(MODELS))
SR = 48000


@pytest.fixture(scope="module")
def dry():
    y, _, _ = pedal_data.make_dry(4.0, SR, seed=1234)  # the training data used seed 0
    return np.asarray(y, dtype=np.float32)


def _through_pedal(dry, model, gain, tone):
    spec = patchlib.load_patch({"sample_rate": SR, "block_size": 64, "nodes": {
        "dry": {"type": "input"},
        "p": {"type": "pedal", "in": "dry", "model": model, "gain": gain, "tone": tone}}, "out": "p"})
    e = patchlib.Engine(spec, audio_inputs={"": (dry[None, :], SR)})
    return e.render(dry.shape[0])[0]


@ARCH
def test_checkpoint_says_what_made_it(monkeypatch, arch):
    monkeypatch.chdir(ROOT)
    hdr = checkpoint.header(MODELS[arch])
    assert hdr["arch"] == arch
    assert os.path.getsize(MODELS[arch]) < 2 * 1024 * 1024
    assert [k["name"] for k in hdr["knobs"]] == ["gain", "tone"]
    assert hdr["train_command"].startswith("patchlib train pedal")
    assert hdr["sample_rate"] == SR


@ARCH
@pytest.mark.parametrize("group", ["grid", "heldout"])
def test_overdrive_matches_the_clipper_on_unseen_audio(dry, group, arch, monkeypatch):
    monkeypatch.chdir(ROOT)
    # the knob settings the model was trained on and held out from, as its checkpoint records them
    per_pair = checkpoint.header(MODELS[arch])["validation"]["per_pair"].values()
    settings = [(p["knobs"]["gain"], p["knobs"]["tone"]) for p in per_pair if p["set"] == group]
    assert len(settings) >= (9 if group == "grid" else 3)
    scores = []
    for gain, tone in settings:
        wet, _ = pedal_data.render_wet(dry, gain, tone, pedal_data.LEVEL, SR)
        pred = _through_pedal(dry, MODELS[arch], gain, tone)
        scores.append(float(esr(np.asarray(wet, np.float64), pred.astype(np.float64))))
    print(arch, group, [round(s, 4) for s in scores])
    assert max(scores) < BOUND[group], scores


# The targets (validation ESR <= 0.01 at the trained knob settings, <= 0.03 at held-out ones),
# asked here of every single setting on audio the model never saw. Measured when the model was shipped
# (patches/models/README.md): the LSTM grid 0.0001..0.0027, held-out 0.0006..0.0008; the WaveNet
# grid 0.0004..0.0035, held-out 0.0038..0.0045.
BOUND = {"grid": 0.01, "heldout": 0.03}


@ARCH
def test_recorded_validation_meets_the_targets(monkeypatch, arch):
    monkeypatch.chdir(ROOT)
    v = checkpoint.header(MODELS[arch])["validation"]
    assert v["esr"] <= BOUND["grid"] and v["esr_heldout"] <= BOUND["heldout"], v
    assert all(p["esr"] <= BOUND[p["set"]] for p in v["per_pair"].values())


def test_the_neural_patch_sounds_like_the_clipper_patch_while_its_gain_is_swept(monkeypatch):
    """patches/fx-neural-overdrive.yaml and fx-diode-clipper.yaml play one riff with one LFO sweeping gain
    over the model's whole range: the model follows the clipper through every knob value in between."""
    monkeypatch.chdir(ROOT)
    out = {}
    for name in ("fx-neural-overdrive", "fx-diode-clipper"):
        e = patchlib.Engine(patchlib.load_patch(os.path.join("patches", f"{name}.yaml")))
        out[name] = (e.render(int(8.0 * e.sample_rate))[0].astype(np.float64), e)
    y, _ = out["fx-neural-overdrive"]
    ref, clipper = out["fx-diode-clipper"]
    lat = int(clipper.nodes["pedal"].latency)  # the clipper's oversampling filters delay it; the model is causal
    assert lat > 0
    score = float(esr(ref[lat:], y[:y.size - lat]))
    print("swept-gain ESR", round(score, 5))
    assert score < BOUND["grid"]
    assert float(esr(ref, y)) > 10 * score  # unaligned they differ: the comparison can fail
