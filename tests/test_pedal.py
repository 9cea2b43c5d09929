"""The ``pedal`` node in a patch: knobs from the model file, streaming, errors that stop the load.

Models here are tiny random-weight checkpoints written to a tmp patch folder.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import patchlib  # noqa: E402
from patchlib import PatchError  # noqa: E402

from conftest import write_patch  # noqa: E402
from nodes.neural import checkpoint  # noqa: E402
from nodes.neural.lstm import LSTM  # noqa: E402
from nodes.neural.wavenet import WaveNet, wavenet_config  # noqa: E402

SR = 48000
KNOBS = [{"name": "gain", "range": [0.0, 10.0], "default": 5.0, "doc": "drive"},
         {"name": "tone", "range": [0.0, 1.0], "default": 0.5, "doc": "brightness"}]


def _wavenet_file(folder, name="models/od.pt", seed=0, knob_scale=3.0):
    torch.manual_seed(seed)
    cfg = wavenet_config("tiny", knobs=2)
    model = WaveNet(**cfg)
    with torch.no_grad():  # make the knobs matter clearly in a random net
        for la in model._layers:
            for layer in la._layers:
                layer._input_mixer.weight[:, 1:] *= knob_scale
    checkpoint.save(folder / name, "wavenet", cfg, model.state_dict(), SR, knobs=KNOBS,
                    validation={"esr": None}, train_command="test fixture")
    return model


def _lstm_file(folder, name="models/lstm.pt"):
    torch.manual_seed(0)
    cfg = {"input_size": 3, "hidden_size": 8, "num_layers": 1, "skip": True}
    model = LSTM(**cfg)
    checkpoint.save(folder / name, "lstm", cfg, model.state_dict(), SR, knobs=KNOBS)
    return model


PATCH = """\
sample_rate: 48000
nodes:
  dry: {type: saw, freq: 110}
  quiet: {type: gain, in: dry, gain: 0.5}
  lfo: {type: sine, freq: 3}
  drive: {type: pedal, in: quiet, model: MODEL, gain: GAIN, tone: 0.3}
out: drive
"""


def _patch(tmp_path, model="models/od.pt", gain="7"):
    return write_patch(tmp_path, PATCH.replace("MODEL", model).replace("GAIN", gain))


def _render(path, bs, frames=2400):
    e = patchlib.Engine(patchlib.load_patch(path), block_size=bs)
    return np.concatenate([e.process(min(bs, frames - i)).copy() for i in range(0, frames, bs)], axis=1), e


@pytest.mark.parametrize("arch", ["wavenet", "lstm"])
def test_block_sizes_give_the_same_output_and_reset_repeats(tmp_path, arch):
    if arch == "wavenet":
        _wavenet_file(tmp_path)
        path = _patch(tmp_path)
    else:
        _lstm_file(tmp_path)
        path = _patch(tmp_path, "models/lstm.pt")
    ref, e = _render(path, 64)
    assert np.all(np.isfinite(ref)) and np.std(ref) > 1e-3
    for bs in (1, 7, 65, 256):
        out, _ = _render(path, bs)
        np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=f"block {bs}")
    e.reset()
    again = np.concatenate([e.process(64).copy() for _ in range(0, 2400, 64)], axis=1)[:, :2400]
    np.testing.assert_array_equal(again, ref)
    node = e.nodes["drive"]
    assert node.latency == 0
    assert node.time_ratio > 0  # the self-test timed one block


def test_node_equals_the_offline_model_with_normalised_knobs(tmp_path):
    model = _wavenet_file(tmp_path).eval()
    out, e = _render(_patch(tmp_path, gain="7"), 64)
    assert e.nodes["drive"].receptive_field == model.receptive_field == 21
    dry, _ = _render(write_patch(tmp_path, PATCH.replace("drive: {type: pedal, in: quiet, model: MODEL, gain: GAIN, "
                                                         "tone: 0.3}", "").replace("out: drive", "out: quiet"),
                                 "dry.yaml"), 64)
    cond = np.stack([dry[0], np.full(2400, 0.7), np.full(2400, 0.3)]).astype(np.float32)[None]
    with torch.no_grad():
        want = model(torch.from_numpy(cond))[0].numpy()
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_knobs_come_from_the_file_and_are_checked(tmp_path):
    _wavenet_file(tmp_path)
    spec = patchlib.load_patch(_patch(tmp_path))
    params = spec.nodes["drive"].ports()[2]
    assert set(params) == {"gain", "tone"} and params["gain"].range == (0.0, 10.0)
    with pytest.raises(PatchError, match="gain"):  # out of the declared range
        patchlib.load_patch(_patch(tmp_path, gain="12"))
    bad = write_patch(tmp_path, PATCH.replace("MODEL", "models/od.pt").replace("gain: GAIN", "gian: 3"), "typo.yaml")
    with pytest.raises(PatchError, match="gian") as ei:
        patchlib.load_patch(bad)
    assert "gain" in str(ei.value)  # suggests the knob the model declares


def test_swept_knob_is_smooth_and_audible(tmp_path):
    """An LFO on gain: no sample-to-sample jump beyond what the model gives at fixed settings."""
    _wavenet_file(tmp_path)
    frames = 9600
    swept, _ = _render(_patch(tmp_path, gain="{from: lfo, range: [0, 10]}"), 64, frames)
    fixed = {g: _render(_patch(tmp_path, gain=str(g)), 64, frames)[0] for g in (0, 2.5, 5, 7.5, 10)}
    # the knob does something: the extremes differ clearly
    assert np.sqrt(np.mean((fixed[0] - fixed[10]) ** 2)) > 0.1 * np.sqrt(np.mean(fixed[5] ** 2))
    jump_fixed = max(np.abs(np.diff(y[0])).max() for y in fixed.values())
    jump_swept = np.abs(np.diff(swept[0])).max()
    assert jump_swept <= 1.05 * jump_fixed, (jump_swept, jump_fixed)
    # and away from the saw's own edges the swept output moves as little as the fixed ones
    d_sw = np.sort(np.abs(np.diff(swept[0])))[int(0.95 * frames)]
    d_fx = max(np.sort(np.abs(np.diff(y[0])))[int(0.95 * frames)] for y in fixed.values())
    assert d_sw <= 1.2 * d_fx


def _fails_cleanly(path, *words):
    with pytest.raises(PatchError) as ei:
        patchlib.Engine(patchlib.load_patch(path), block_size=64)  # never built
    for w in words:
        assert w in str(ei.value), str(ei.value)
    return str(ei.value)


def test_bad_model_files_stop_the_load_with_the_file_named(tmp_path):
    _wavenet_file(tmp_path)
    good = (tmp_path / "models/od.pt").read_bytes()
    (tmp_path / "models/trunc.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "models/junk.pt").write_bytes(b"not a model at all" * 50)
    _fails_cleanly(_patch(tmp_path, "models/trunc.pt"), "models/trunc.pt", "cannot read")
    _fails_cleanly(_patch(tmp_path, "models/junk.pt"), "models/junk.pt")
    _fails_cleanly(_patch(tmp_path, "models/missing.pt"), "models/missing.pt", "no such file")
    # shapes that do not fit the declared architecture: found when the engine is built
    cfg = wavenet_config("tiny", knobs=2)
    wide = wavenet_config("tiny", knobs=2)
    wide["layers"][0]["channels"] = 5
    wide["layers"][1]["input_size"] = 5
    checkpoint.save(tmp_path / "models/wide.pt", "wavenet", cfg, WaveNet(**wide).state_dict(), SR, knobs=KNOBS)
    msg = _fails_cleanly(_patch(tmp_path, "models/wide.pt"), "models/wide.pt", "shape", "node 'drive'")
    assert "Traceback" not in msg


def test_model_path_must_stay_in_the_patch_folder(tmp_path):
    inner = tmp_path / "patchdir"
    inner.mkdir()
    _wavenet_file(tmp_path, "outside.pt")
    _fails_cleanly(_patch(inner, "../outside.pt"), "outside the patch's folder")
    _fails_cleanly(_patch(inner, str(tmp_path / "outside.pt")), "absolute path")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    _wavenet_file(tmp_path)
    path = write_patch(tmp_path, PATCH.replace("MODEL", "models/od.pt").replace("GAIN", "3")
                       .replace("tone: 0.3}", "tone: 0.3, device: cuda}"), "gpu.yaml")
    _fails_cleanly(path, "cuda")


def test_dsp_only_start_up_does_not_import_torch():
    code = ("import sys, patchlib.registry as r; r.load_plugins(); assert r.get('pedal');"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_knobs_driven_by_noise_across_their_range(tmp_path):
    """The contract suite cannot see a model's knobs (they come from the file): drive them here."""
    _wavenet_file(tmp_path)
    text = (PATCH.replace("MODEL", "models/od.pt").replace("GAIN", "{from: wild, range: [0, 10], curve: lin}")
            .replace("tone: 0.3", "tone: {from: wild, range: [0, 1], curve: lin}")
            .replace("  lfo:", "  wild: {type: noise, seed: 2, color: white}\n  lfo:"))
    e = patchlib.Engine(patchlib.load_patch(write_patch(tmp_path, text, "wild.yaml")), block_size=64)
    out = e.render(2400)
    assert np.all(np.isfinite(out)) and not e.warnings


def test_a_model_trained_at_another_rate_plays_with_a_warning(tmp_path):
    _wavenet_file(tmp_path)
    path = _patch(tmp_path)
    seen = []
    e = patchlib.Engine(patchlib.load_patch(path), sample_rate=44100, on_warning=seen.append)
    assert len(seen) == 1 and seen[0] is e.warnings[0] and seen[0].node == "drive"
    msg = seen[0].message
    assert "models/od.pt" in msg and "48000 Hz" in msg and "44100 Hz" in msg
    assert np.isfinite(e.render(512)).all()
    same = patchlib.Engine(patchlib.load_patch(path), on_warning=seen.append)  # at its own rate: no warning
    assert same.warnings == [] and len(seen) == 1
