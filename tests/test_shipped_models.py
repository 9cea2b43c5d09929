"""The models shipped in patches/models/, measured on audio they never saw.

``overdrive.pt`` is a WaveNet trained by ``patchlib train pedal`` on the
virtual-analog ``diode_clipper`` (the command is stored in the checkpoint).
Here it plays, through the ``pedal`` node in a patch, a dry signal rendered
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
MODEL = os.path.join("patches", "models", "overdrive.pt")
SR = 48000


@pytest.fixture(scope="module")
def dry():
    y, _, _ = pedal_data.make_dry(4.0, SR, seed=1234)  # the training data used seed 0
    return np.asarray(y, dtype=np.float32)


def _through_pedal(dry, gain, tone):
    spec = patchlib.load_patch({"sample_rate": SR, "block_size": 64, "nodes": {
        "dry": {"type": "input"},
        "p": {"type": "pedal", "in": "dry", "model": MODEL, "gain": gain, "tone": tone}}, "out": "p"})
    e = patchlib.Engine(spec, audio_inputs={"": (dry[None, :], SR)})
    return e.render(dry.shape[0])[0]


def test_checkpoint_says_what_made_it(monkeypatch):
    monkeypatch.chdir(ROOT)
    hdr = checkpoint.header(MODEL)
    assert os.path.getsize(MODEL) < 2 * 1024 * 1024
    assert [k["name"] for k in hdr["knobs"]] == ["gain", "tone"]
    assert hdr["train_command"].startswith("patchlib train pedal")
    assert hdr["sample_rate"] == SR


@pytest.mark.parametrize("group", ["grid", "heldout"])
def test_overdrive_matches_the_clipper_on_unseen_audio(dry, group, monkeypatch):
    monkeypatch.chdir(ROOT)
    settings = pedal_data.GRID if group == "grid" else pedal_data.HELD_OUT
    scores = []
    for gain, tone in settings:
        wet, _ = pedal_data.render_wet(dry, gain, tone, pedal_data.LEVEL, SR)
        pred = _through_pedal(dry, gain, tone)
        scores.append(float(esr(np.asarray(wet, np.float64), pred.astype(np.float64))))
    print(group, [round(s, 4) for s in scores])
    assert max(scores) < BOUND[group], scores


# Measured on this unseen audio when the model was shipped: grid 0.013..0.028,
# held-out 0.070..0.088. The bounds leave a little room; the targets
# (0.01 on trained knobs, 0.03 held out) are NOT met yet by this CPU-trained
# model (patches/models/README.md).
BOUND = {"grid": 0.04, "heldout": 0.12}
