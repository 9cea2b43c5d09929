"""The ``mapper`` node and its models: kNN, MLP, linear/poly regression, kNN classification, files, recording."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import patchlib
from nodes.mapping import _models as M
from nodes.mapping.mapper import MapperCore

SR = 16000


def smooth_map(X):
    """A known smooth nonlinear map from 3 inputs in [-1, 1] to 4 outputs inside 0..1."""
    x0, x1, x2 = X.T
    return np.stack([0.5 + 0.4 * np.sin(2 * x0) * np.cos(x1),
                     0.5 + 0.3 * np.tanh(x0 + x1 - x2),
                     0.2 + 0.6 * x2 ** 2,
                     0.5 + 0.2 * x0 * x1 + 0.2 * x2], axis=1)


def engine(nodes, out="map", block_size=64):
    return patchlib.Engine(patchlib.load_patch({"sample_rate": SR, "nodes": nodes, "out": out}), block_size=block_size)


def const_inputs(values):
    return {f"c{j}": {"type": "constant", "value": float(v)} for j, v in enumerate(values)}


# ---------------------------------------------------------------- models
def test_knn_reproduces_its_training_examples_exactly():
    rng = np.random.default_rng(1)
    X = rng.uniform(-5, 5, (120, 4))
    Y = rng.uniform(0, 1, (120, 3))
    for k in (1, 3, 7):
        model = M.fit(X, Y, kind="knn", k=k)
        np.testing.assert_array_equal(model.predict(X), Y)
    # between examples: a distance-weighted mean, so inside the neighbours' range
    mid = model.predict((X[0] + X[1]) / 2)
    assert np.all(mid >= Y.min(axis=0)) and np.all(mid <= Y.max(axis=0))


def test_mlp_learns_a_smooth_map_and_generalises():
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (300, 3))
    Xt = rng.uniform(-1, 1, (200, 3))  # held out: never trained on
    # a step budget, not a time limit, so the result does not depend on the machine's load (~1-2 s)
    model = M.fit(X, smooth_map(X), kind="mlp", hidden=(16, 16), steps=600, max_seconds=120.0, seed=0)
    train = np.sqrt(np.mean((model.predict(X) - smooth_map(X)) ** 2))
    err = model.predict(Xt) - smooth_map(Xt)
    rmse, worst = np.sqrt(np.mean(err ** 2)), np.abs(err).max()
    # stated bounds (outputs span 0..1): training RMSE < 0.01; on the 200 held-out points RMSE < 0.015
    # and no output of any point off by more than 0.08 (measured: 0.0036, 0.0048, 0.030)
    assert train < 0.01, train
    assert rmse < 0.015 and worst < 0.08, (rmse, worst)


def test_linear_regression_recovers_a_known_linear_map():
    rng = np.random.default_rng(3)
    A = rng.uniform(-0.05, 0.05, (5, 3))
    b = np.array([0.3, 0.5, 0.6])
    X = rng.uniform(-2, 2, (40, 5))
    model = M.fit(X, X @ A + b, kind="linear")
    Xt = rng.uniform(-2, 2, (100, 5))
    np.testing.assert_allclose(model.predict(Xt), Xt @ A + b, atol=1e-10)
    # the map itself: the response to a unit step of each input is its row of A
    base = model.predict(np.zeros(5))
    for j in range(5):
        np.testing.assert_allclose(model.predict(np.eye(5)[j]) - base, A[j], atol=1e-10)
    np.testing.assert_allclose(base, b, atol=1e-10)


def test_polynomial_regression_fits_a_quadratic_exactly():
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (60, 2))
    f = lambda X: 0.5 + 0.2 * X[:, :1] * X[:, 1:] - 0.1 * X[:, :1] ** 2 + 0.05 * X[:, 1:]  # noqa: E731
    model = M.fit(X, f(X), kind="poly", degree=2)
    Xt = rng.uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(model.predict(Xt), f(Xt), atol=1e-9)
    assert len(model.P) == 6  # 1, x, y, x^2, xy, y^2


def test_knn_classifier_outputs_classes_and_normalised_ports():
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0], [3, 0], [0, 3]])
    X = np.concatenate([c + 0.3 * rng.standard_normal((20, 2)) for c in centres])
    labels = np.repeat([1, 2, 3], 20)
    Y = np.stack([labels, rng.uniform(0, 1, 60)], axis=1)  # one classifier, one continuous output
    model = M.fit(X, Y, kind="knn", k=5, classes=[3, 0])
    pred = model.predict(centres + 0.1)
    np.testing.assert_array_equal(pred[:, 0], [1, 2, 3])
    # on the node's ports, class c of 3 is (c - 1) / 2
    nodes = const_inputs([3.05, 0.1])
    nodes["map"] = {"type": "mapper", "inputs": 2, "outputs": 2, "model": "knn", "k": 5, "classes": [3, 0],
                    "in0": "c0", "in1": "c1", "data": np.concatenate([X, Y], axis=1).tolist()}
    e = engine(nodes)
    y = e.render(256)
    assert y[0, -1] == pytest.approx(0.5)


# ---------------------------------------------------------------- the node
def test_node_binds_outputs_to_params_in_their_own_ranges():
    data = [[0.0, 0.0, 0.25, 1.0], [1.0, 1.0, 0.75, 0.0]]
    nodes = const_inputs([1.0, 1.0])
    nodes["map"] = {"type": "mapper", "inputs": 2, "outputs": 2, "model": "knn", "in0": "c0", "in1": "c1",
                    "data": data}
    nodes["cut"] = {"type": "constant", "value": {"from": "map.out0", "range": [200, 2000]}}
    nodes["lvl"] = {"type": "constant", "value": {"from": "map.out1", "range": [-1, 1]}}
    y = engine(nodes, out="cut").render(512)
    assert y[0, -1] == pytest.approx(200 + 0.75 * 1800, rel=1e-5)
    nodes2 = dict(nodes)
    y2 = engine(nodes2, out="lvl").render(512)
    assert y2[0, -1] == pytest.approx(-1.0, abs=1e-6)
    e = engine(nodes)
    out = e.render(256)
    assert out.shape[0] == 2  # 'out' carries every output as a channel
    np.testing.assert_allclose(out[:, -1], [0.75, 0.0], atol=1e-7)


def test_smoothing_is_a_one_pole_of_the_stated_time_constant():
    nodes = {"step": {"type": "constant", "value": 0.0}}
    nodes["map"] = {"type": "mapper", "inputs": 1, "outputs": 1, "model": "knn", "in0": "step",
                    "data": [[0.0, 0.0], [1.0, 1.0]], "smooth": 0.05}
    patch = {"sample_rate": SR, "nodes": nodes, "out": "map",
             "score": [{"at": 0.1, "set": "step.value", "to": 1.0, "over": 0}]}
    y = patchlib.Engine(patchlib.load_patch(patch), block_size=64).render(int(0.4 * SR))[0]
    t63 = np.argmax(y >= 1 - np.exp(-1)) / SR - 0.1
    assert t63 == pytest.approx(0.05, abs=0.004)
    assert np.all(np.diff(y) >= -1e-9) and y[-1] < 1.0 + 1e-9


def test_nan_input_holds_the_last_value_and_nothing_breaks():
    nodes = const_inputs([0.0])
    nodes["map"] = {"type": "mapper", "inputs": 1, "outputs": 1, "model": "linear", "in0": "c0",
                    "data": [[0.0, 0.2], [1.0, 0.8]]}
    e = engine(nodes)
    e.process(64)
    node = e.nodes["map"]
    before = node.out["out0"][0, 63]
    e.nodes["c0"].out["out"][:] = np.nan  # a sensor sends garbage: the node sees NaN
    node.process(64, e.frame)
    assert np.all(np.isfinite(node.out["out0"][0, :64]))
    assert node.out["out0"][0, 63] == before


def test_bad_input_gives_clear_errors_and_loses_nothing():
    core = MapperCore(3, 2, kind="knn")
    with pytest.raises(ValueError, match="no examples to train on"):
        core.train()
    assert core.model is None
    core.set_outputs([0.2, 0.9])
    core.start_recording()
    core.feed([1, 2, 3])
    with pytest.raises(ValueError, match="expected 3 inputs, got 2"):
        core.feed([1, 2])
    with pytest.raises(ValueError, match="NaN"):
        core.feed([1, float("nan"), 3])
    with pytest.raises(ValueError, match="0..1"):
        core.set_outputs([0.2, 7.0])
    with pytest.raises(ValueError, match="expected 2 output values"):
        core.set_outputs([0.2])
    core.stop_recording()
    X, Y = core.examples()
    np.testing.assert_array_equal(X, [[1, 2, 3]])
    np.testing.assert_array_equal(Y, [[0.2, 0.9]])
    model = core.train()
    with pytest.raises(ValueError, match="the mapper has 3 and 2"):
        core.install(M.fit(np.zeros((2, 2)), np.zeros((2, 2)), kind="linear"))
    assert core.model is model


def test_bad_patch_settings_are_patch_errors(tmp_path):
    for extra, match in (({"classes": [3]}, "classes"), ({"inputs": 0}, "inputs"),
                         ({"data": [[1, 2]]}, "each row"), ({"model_file": "../x.json"}, "outside")):
        nodes = {"map": {"type": "mapper", "inputs": 2, "outputs": 2, **extra}}
        with pytest.raises(patchlib.PatchError, match=match):
            engine(nodes)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "pickle"}))
    p = tmp_path / "p.yaml"
    p.write_text("nodes:\n  map: {type: mapper, inputs: 2, outputs: 2, model_file: bad.json}\nout: map\n")
    with pytest.raises(patchlib.PatchError, match="not a patchlib-mapper model"):
        patchlib.Engine(patchlib.load_patch(str(p)), block_size=64)


def test_examples_and_model_round_trip_through_files(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.uniform(-1, 1, (50, 3))
    Y = np.clip(smooth_map(X)[:, :2], 0, 1)
    core = MapperCore(3, 2, kind="poly", degree=3, input_names=["ax", "ay", "az"], output_names=["gain", "tone"])
    core.add_examples(X, Y)
    core.train()
    core.save(str(tmp_path / "m.json"), str(tmp_path / "m.csv"))
    X2, Y2, ins, outs = M.load_examples(str(tmp_path / "m.csv"))
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(Y2, Y)
    assert (ins, outs) == (["ax", "ay", "az"], ["gain", "tone"])
    json.loads((tmp_path / "m.json").read_text())  # plain JSON, no pickle
    # a patch beside the files plays the saved model
    (tmp_path / "p.yaml").write_text(
        "nodes:\n"
        "  a: {type: constant, value: 0.3}\n  b: {type: constant, value: -0.2}\n  c: {type: constant, value: 0.7}\n"
        "  map: {type: mapper, inputs: 3, outputs: 2, model: poly, in0: a, in1: b, in2: c,\n"
        "        examples: m.csv, model_file: m.json}\n"
        "out: map\n")
    e = patchlib.Engine(patchlib.load_patch(str(tmp_path / "p.yaml")), block_size=64)
    y = e.render(128)
    np.testing.assert_allclose(y[:, -1], core.model.predict([0.3, -0.2, 0.7]), atol=1e-6)
    assert e.nodes["map"].core.n_examples == 50


def test_recording_from_signal_inputs():
    nodes = const_inputs([0.25, -0.5])
    nodes["map"] = {"type": "mapper", "inputs": 2, "outputs": 1, "model": "knn", "in0": "c0", "in1": "c1",
                    "record_rate": 100.0}
    e = engine(nodes)
    core = e.nodes["map"].core
    core.set_outputs([0.6])
    core.start_recording()
    e.render(SR // 2)  # half a second at 100 examples a second
    core.stop_recording()
    X, Y = core.examples()
    assert len(X) == 50
    np.testing.assert_array_equal(X, np.tile([0.25, -0.5], (50, 1)))
    np.testing.assert_array_equal(Y, np.full((50, 1), 0.6))


def test_training_swaps_the_model_in_while_playing():
    nodes = const_inputs([0.5])
    nodes["map"] = {"type": "mapper", "inputs": 1, "outputs": 1, "model": "linear", "in0": "c0",
                    "initial": [0.1]}
    e = engine(nodes)
    assert e.render(256)[0, -1] == pytest.approx(0.1)  # untrained: the hand-set value
    core = e.nodes["map"].core
    core.add_examples([[0.0], [1.0]], [[0.0], [1.0]])
    core.train()
    core.start_running()
    assert e.render(256)[0, -1] == pytest.approx(0.5)


def test_bench_mapper_runs():
    from patchlib.wekinator import bench_mapper

    ms = bench_mapper("knn", blocks=50)
    assert 0 < ms < 50


def test_outputs_from_the_target_params():
    from nodes.mapping.mapper import bindings, outputs_from_params

    nodes = const_inputs([0.0])
    nodes["map"] = {"type": "mapper", "inputs": 1, "outputs": 3, "model": "knn", "in0": "c0"}
    nodes["osc"] = {"type": "saw", "freq": {"from": "map.out0", "range": [55, 220]}}  # exp: the param's curve
    nodes["amp"] = {"type": "gain", "in": "osc", "gain": {"from": "map.out1", "range": [0, 0.5]}}
    e = engine(nodes, out="amp")
    assert sorted(b[:3] for b in bindings(e, "map")) == [(0, "osc", "freq"), (1, "amp", "gain")]
    y = outputs_from_params(e, "map", {"osc.freq": 110.0, "amp.gain": 0.125})
    np.testing.assert_allclose(y, [0.5, 0.25, 0.0])  # 110 Hz is halfway on an exp 55..220; out2 unbound
    e.render(256)
    assert e.params["osc"]["freq"].value == pytest.approx(110.0, rel=1e-5)  # heard now, recorded next


def test_gesture_templates_round_trip_and_load_with_the_patch(tmp_path):
    t = np.linspace(0, 2 * np.pi, 30)
    core = MapperCore(2, 1, kind="knn", gestures=2)
    core.start_dtw_recording(1)
    for x in np.stack([np.cos(t), np.sin(t)], axis=1):
        core.feed(x)
    core.stop_dtw_recording()
    core.start_dtw_recording(2)
    for x in np.stack([np.linspace(-1, 1, 20), np.zeros(20)], axis=1):
        core.feed(x)
    core.stop_dtw_recording()
    with pytest.raises(ValueError, match="1..2"):
        core.start_dtw_recording(0)
    assert core.train() is None  # gestures only: no regression model
    core.save(str(tmp_path / "g.json"), None)
    assert (tmp_path / "g.gestures.json").exists() and not (tmp_path / "g.json").exists()
    (tmp_path / "p.yaml").write_text("nodes:\n  map: {type: mapper, inputs: 2, outputs: 1, gestures: 2, "
                                     "model_file: g.json}\nout: map\n")
    e = patchlib.Engine(patchlib.load_patch(str(tmp_path / "p.yaml")), block_size=64)
    c2 = e.nodes["map"].core
    assert c2.running and c2.gestures.threshold == pytest.approx(core.gestures.threshold)
    hits = [c2.feed(x) or c2.pop_match() for x in np.stack([np.linspace(-1, 1, 24), np.zeros(24)], axis=1)]
    assert [h for h in hits if h] == [2]
    e.render(64)
    assert e.nodes["map"].out["gesture"][0, -1] == 1.0


def test_shipped_patch_plays_the_generator_at_the_mapped_pitch():
    """patches/map-sensors-pedal.yaml: the mapper's pitch output drives the SING voice; where the mapped pitch
    holds still (within 6 %), the voice's measured pitch is within 25 cents of it."""
    from patchlib.dataset import yin_f0

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    e = patchlib.Engine(patchlib.load_patch(os.path.join(root, "patches", "map-sensors-pedal.yaml")), block_size=256)
    sr = e.sample_rate
    voice, pitch = [], []
    for _ in range(int(8 * sr) // 256):
        e.process(256)
        voice.append(e.nodes["voice"].out["out"][0].copy())
        pitch.append(e.nodes["voice"].par["pitch"].copy())
    voice, pitch = np.concatenate(voice), np.concatenate(pitch)
    checked = 0
    for k in range(8):  # the middle of each bowed note
        a, b = int((k + 0.35) * sr), int((k + 0.6) * sr)
        if pitch[a:b].max() / pitch[a:b].min() > 1.06:
            continue
        f0 = np.asarray(yin_f0(voice[a:b], sr, frame=4096, hop=512))
        f0 = f0[0] if f0.ndim > 1 else f0
        cents = 1200 * np.log2(np.median(f0[f0 > 0]) / np.median(pitch[a:b]))
        assert abs(cents) < 25, (k, cents)
        checked += 1
    assert checked >= 4
    assert np.ptp(np.log2(pitch)) > 1.0  # the mapping moves it over more than an octave
