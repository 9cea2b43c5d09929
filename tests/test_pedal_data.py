"""The neural pedal's training data (nodes/dsp/pedal_data.py), rendered tiny.

The manifest matches the files, dry and wet are sample-aligned (the
clipper's latency compensated), levels are sane, the same seed gives the
same bytes, and the held-out knob settings are not in the grid.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate

from nodes.dsp import pedal_data

SECONDS = 2.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("pedal")
    manifest = pedal_data.make_dataset(str(out), seconds=SECONDS, sample_rate=48000, seed=3)
    return out, manifest


def test_manifest_matches_the_files(dataset):
    out, m = dataset
    assert json.loads((out / "manifest.json").read_text()) == m
    names = {"dry.wav", "manifest.json"} | {p["wet"] for p in m["pairs"]}
    assert set(os.listdir(out)) == names
    assert len(m["pairs"]) == len(pedal_data.GRID) + len(pedal_data.HELD_OUT)
    assert m["sample_rate"] == 48000 and m["seed"] == 3 and "pedal_data" in m["command"]
    for p in m["pairs"]:
        for key in ("dry", "wet"):
            info = sf.info(str(out / p[key]))
            assert info.samplerate == 48000 and info.frames == m["frames"] and info.channels == 1
        assert hashlib.sha256((out / p["wet"]).read_bytes()).hexdigest() == p["sha256"]
        assert p["wet"] == pedal_data._name(p["knobs"]["gain"], p["knobs"]["tone"])
    assert m["frames"] == int(SECONDS * 48000)
    # a model may be played over the grid's span, and every held-out setting lies inside it, off the grid
    for i, knob in enumerate(("gain", "tone")):
        vals = [s[i] for s in pedal_data.GRID]
        assert m["knobs"][knob] == [min(vals), max(vals)]
        for s in pedal_data.HELD_OUT:
            assert min(vals) < s[i] < max(vals)
    assert not set(pedal_data.HELD_OUT) & set(pedal_data.GRID)
    tr, va = m["split"]["train"], m["split"]["validation"]
    assert tr[0] == 0 and tr[1] == va[0] and va[1] == m["frames"] and va[1] - va[0] > 0.15 * m["frames"]
    # each part of the time split holds every kind of material
    for lo, hi in (tr, va):
        kinds = {s["kind"] for s in m["segments"] if lo <= s["start"] < hi}
        assert kinds == set(pedal_data.KINDS)


def test_every_segment_sounds_and_nothing_clips(dataset):
    out, m = dataset
    dry, _ = sf.read(str(out / "dry.wav"))
    for s in m["segments"]:
        seg = dry[s["start"]:s["start"] + s["frames"]]
        assert np.max(np.abs(seg)) == pytest.approx(s["peak"], rel=1e-5), s["kind"]
    assert np.max(np.abs(dry)) < 1.0
    for p in m["pairs"]:
        wet, _ = sf.read(str(out / p["wet"]))
        assert np.all(np.isfinite(wet))
        assert 0.05 < np.max(np.abs(wet)) < 1.0
        assert np.sqrt(np.mean(wet ** 2)) > 0.01


def test_dry_and_wet_are_aligned(dataset):
    out, m = dataset
    lat = m["reference"]["latency_compensated"]
    assert lat == 62  # 4x oversampling's halfband filters
    dry, _ = sf.read(str(out / "dry.wav"))
    lags = np.arange(-dry.size + 1, dry.size)
    for p in m["pairs"]:
        wet, _ = sf.read(str(out / p["wet"]))
        lag = lags[np.argmax(correlate(wet, dry, mode="full", method="fft"))]
        # what remains is the circuit's own phase: the RC and tone lowpasses delay by a few samples
        # (more at a dark tone), never the 62 samples of the oversampling filters
        assert 0 <= lag <= 6, (p["wet"], lag)
        if p["knobs"]["tone"] >= 0.7:
            assert lag <= 2, (p["wet"], lag)


def test_wet_is_the_clipper_output_advanced_by_its_latency():
    rng = np.random.default_rng(0)
    dry = (0.5 * rng.standard_normal(3000)).astype(np.float32)
    wet, lat = pedal_data.render_wet(dry, 0.5, 0.5)
    raw, _ = pedal_data._render({"sample_rate": 48000, "nodes": {
        "d": {"type": "input"}, "p": {"type": "diode_clipper", "in": "d", "gain": 0.5, "tone": 0.5,
                                      "level": pedal_data.LEVEL}}, "out": "p"}, dry.size, 48000, dry)
    assert lat == 62 and np.array_equal(wet[:dry.size - lat], raw[0, lat:])


def test_same_seed_same_bytes(dataset, tmp_path):
    out, m = dataset
    m2 = pedal_data.make_dataset(str(tmp_path), seconds=SECONDS, sample_rate=48000, seed=3)
    for name in ["dry.wav"] + [p["wet"] for p in m["pairs"]]:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    m.pop("command"), m2.pop("command")
    assert m == m2
    d3, _, _ = pedal_data.make_dry(0.5, 48000, seed=4)
    d4, _, _ = pedal_data.make_dry(0.5, 48000, seed=3)
    assert not np.array_equal(d3, d4)


def test_held_out_knobs_are_not_in_the_grid(dataset):
    _, m = dataset
    grid = {(k["gain"], k["tone"]) for k in m["grid"]}
    held = {(k["gain"], k["tone"]) for k in m["heldout"]}
    assert held and not held & grid
    for p in m["pairs"]:
        key = (p["knobs"]["gain"], p["knobs"]["tone"])
        assert key in (grid if p["set"] == "grid" else held)
    # held-out settings lie inside the grid's span (interpolation, not extrapolation)
    gains = [g for g, _ in grid]
    tones = [t for _, t in grid]
    for g, t in held:
        assert min(gains) < g < max(gains) and min(tones) < t < max(tones)


def test_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, nodes.dsp.pedal_data; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert res.stdout.strip() == "False"


def test_24_bit_files_are_reproducible_and_close_to_float(tmp_path, dataset):
    out, m = dataset
    a = pedal_data.make_dataset(str(tmp_path / "a"), seconds=SECONDS, seed=3, subtype="PCM_24")
    pedal_data.make_dataset(str(tmp_path / "b"), seconds=SECONDS, seed=3, subtype="PCM_24")
    for p in a["pairs"]:
        assert (tmp_path / "a" / p["wet"]).read_bytes() == (tmp_path / "b" / p["wet"]).read_bytes()
        assert sf.info(str(tmp_path / "a" / p["wet"])).subtype == "PCM_24"
        w24, _ = sf.read(str(tmp_path / "a" / p["wet"]))
        w32, _ = sf.read(str(out / p["wet"]))
        assert np.max(np.abs(w24 - w32)) < 2.0 ** -22
