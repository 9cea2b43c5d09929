"""Neural Amp Modeler ``.nam`` files in the ``pedal`` node, checked against an independent reference.

The oracle here is a small numpy (float64) implementation of NAM's WaveNet
and LSTM written from NAM's sources (neural-amp-modeler ``nam/models``,
NeuralAmpModelerCore ``NAM/wavenet.cpp``, ``NAM/lstm.cpp``, ``NAM/conv1d.cpp``,
``NAM/dsp.cpp``): it reads the JSON itself, walks the flat weight list in
NAM's order and runs the model as NAM does (WaveNet: valid convolutions on
the input padded with ``receptive_field - 1`` zeros; LSTM: the file's
initial state, 0.5 s of silence pre-warm at the file's sample rate, then the
input). Files are written here with seeded random weights.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import patchlib  # noqa: E402
from patchlib import PatchError  # noqa: E402

from conftest import write_patch  # noqa: E402
from nodes.neural import checkpoint  # noqa: E402
from nodes.neural.lstm import LSTM  # noqa: E402
from nodes.neural.nam import load_nam, save_nam  # noqa: E402
from nodes.neural.wavenet import WaveNet, wavenet_config  # noqa: E402

SR = 48000
TOL = 1e-5  # the bar


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread, as the pedal node runs (many threads fight over small blocks on a busy machine)."""
    from nodes.neural.torchnode import set_threads

    set_threads(1)


# ---------------------------------------------------------------- the reference (numpy, from NAM's semantics)
class _Flat:
    def __init__(self, w):
        self.w, self.at = np.asarray(w, dtype=np.float64), 0

    def take(self, *shape):
        n = int(np.prod(shape))
        out = self.w[self.at:self.at + n].reshape(shape)
        self.at += n
        return out


_ACT = {"Tanh": np.tanh, "ReLU": lambda z: np.maximum(z, 0.0), "Hardtanh": lambda z: np.clip(z, -1.0, 1.0),
        "Sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z))}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ref_wavenet(nam: dict, x: np.ndarray) -> np.ndarray:
    """NAM's WaveNet on the whole signal ``x`` (zero-padded start), float64."""
    cfg, f = nam["config"], _Flat(nam["weights"])
    rf = 1 + sum((la["kernel_size"] - 1) * d for la in cfg["layers"] for d in la["dilations"])
    cond = np.concatenate([np.zeros(rf - 1), np.asarray(x, np.float64)])[None]  # (1, T)
    h, head = cond, None
    for la in cfg["layers"]:
        C, K = la["channels"], la["kernel_size"]
        mid = 2 * C if la["gated"] else C
        h = f.take(C, la["input_size"]) @ h
        for d in la["dilations"]:
            Wc, bc = f.take(mid, C, K), f.take(mid)
            Wm = f.take(mid, la["condition_size"])
            W1, b1 = f.take(C, C), f.take(C)
            n = h.shape[1] - (K - 1) * d  # valid convolution: tap K-1 is the current frame
            z = sum(Wc[:, :, k] @ h[:, k * d:k * d + n] for k in range(K)) + bc[:, None]
            z = z + Wm @ cond[:, -n:]
            a = _ACT[la["activation"]](z[:C]) * _sigmoid(z[C:]) if la["gated"] else _ACT[la["activation"]](z)
            h = h[:, -n:] + W1 @ a + b1[:, None]
            head = a if head is None else head[:, -n:] + a
        Wh = f.take(la["head_size"], C)
        head = Wh @ head + (f.take(la["head_size"])[:, None] if la["head_bias"] else 0.0)
    scale = f.take(1)[0]
    assert f.at == f.w.size
    return scale * head[0, -len(x):]


def ref_lstm(nam: dict, x: np.ndarray, prewarm: bool = True) -> np.ndarray:
    """NAM core's LSTM: file state, 0.5 s of silence at the file's rate, then ``x``; float64."""
    cfg, f = nam["config"], _Flat(nam["weights"])
    H = cfg["hidden_size"]
    cells = []
    for i in range(cfg["num_layers"]):
        n_in = cfg["input_size"] if i == 0 else H
        cells.append([f.take(4 * H, n_in + H), f.take(4 * H), f.take(H).copy(), f.take(H).copy()])
    hw, hb = f.take(H), f.take(1)[0]
    assert f.at == f.w.size

    def step(v):
        inp = np.array([v])
        for cell in cells:
            W, b, h, c = cell
            g = W @ np.concatenate([inp, h]) + b  # gates i, f, g, o
            c = _sigmoid(g[H:2 * H]) * c + _sigmoid(g[:H]) * np.tanh(g[2 * H:3 * H])
            h = _sigmoid(g[3 * H:]) * np.tanh(c)
            cell[2], cell[3] = h, c
            inp = h
        return hw @ inp + hb

    if prewarm:
        for _ in range(int(0.5 * nam.get("sample_rate", 48000))):
            step(0.0)
    return np.array([step(v) for v in x])


# ---------------------------------------------------------------- files with known weights
def _nam_wavenet(layers, head_scale=0.02, seed=0, scale=0.15, sr=SR):
    n = 0
    for la in layers:
        C, mid = la["channels"], la["channels"] * (2 if la["gated"] else 1)
        n += C * la["input_size"] + la["head_size"] * C + (la["head_size"] if la["head_bias"] else 0)
        n += len(la["dilations"]) * (mid * C * la["kernel_size"] + mid + mid * la["condition_size"] + C * C + C)
    w = np.random.default_rng(seed).uniform(-scale, scale, n + 1)
    w[-1] = head_scale
    return {"version": "0.5.4", "architecture": "WaveNet", "sample_rate": sr,
            "config": {"layers": layers, "head": None, "head_scale": head_scale},
            "weights": [float(v) for v in w.astype(np.float32)], "metadata": {"name": "test"}}


def _layer(inp, ch, head, dil, gated=False, head_bias=False, k=3, act="Tanh"):
    return {"input_size": inp, "condition_size": 1, "head_size": head, "channels": ch, "kernel_size": k,
            "dilations": dil, "activation": act, "gated": gated, "head_bias": head_bias}


SMALL = [_layer(1, 4, 3, [1, 2, 4]), _layer(4, 3, 1, [1, 3], gated=True, head_bias=True, k=2)]
STANDARD = [_layer(1, 16, 8, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
            _layer(16, 8, 1, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], head_bias=True)]


def _nam_lstm(hidden=6, layers=2, seed=1, sr=8000):
    rng = np.random.default_rng(seed)
    w = []
    for i in range(layers):
        n_in = 1 if i == 0 else hidden
        w += list(rng.uniform(-0.5, 0.5, 4 * hidden * (n_in + hidden) + 4 * hidden))
        w += list(rng.uniform(-0.3, 0.3, 2 * hidden))  # initial h, c
    w += list(rng.uniform(-0.5, 0.5, hidden + 1))
    return {"version": "0.5.4", "architecture": "LSTM", "sample_rate": sr,
            "config": {"input_size": 1, "hidden_size": hidden, "num_layers": layers},
            "weights": [float(v) for v in np.float32(w)], "metadata": {}}


def _write(folder, name, doc):
    path = folder / "models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _signal(n, seed=3):
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * 110 * t) + 0.2 * rng.standard_normal(n)).astype(np.float32)


def _stream(model, x, bs):
    """Our streaming model (as the pedal runs it: prepare, reset, blocks) on ``x``."""
    with torch.inference_mode():
        model.prepare(bs)
        cond = torch.from_numpy(x)[None, None]
        return np.concatenate([model(cond[..., i:i + bs])[0, 0].numpy() for i in range(0, len(x), bs)])


def _built(path):
    data = checkpoint.load(str(path))
    return checkpoint.build(str(path), data, streaming=True)


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("layers,scale,head_scale,bss", [(SMALL, 0.6, 1.0, (1, 7, 64, 65)),
                                                         (STANDARD, 0.15, 0.5, (64, 256, 600))],
                         ids=["small", "standard"])
def test_wavenet_matches_the_reference_streaming(tmp_path, layers, scale, head_scale, bss):
    doc = _nam_wavenet(layers, head_scale=head_scale, scale=scale)
    path = _write(tmp_path, "wn.nam", doc)
    x = _signal(6000)
    want = ref_wavenet(doc, x)
    assert np.std(want) > 0.01
    model = _built(path)
    assert model.receptive_field == 1 + sum((la["kernel_size"] - 1) * d for la in layers for d in la["dilations"])
    for bs in bss:
        got = _stream(model, x, bs)
        err = np.abs(got - want).max()
        assert err < TOL, (bs, err)
    offline = checkpoint.build(str(path), checkpoint.load(str(path)), streaming=False)
    with torch.no_grad():  # one whole-signal pass (zero-padded per layer) gives the same
        got = offline(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(got - want).max() < TOL


def test_lstm_matches_the_reference_streaming(tmp_path):
    doc = _nam_lstm()
    path = _write(tmp_path, "lstm.nam", doc)
    x = _signal(1500)
    want = ref_lstm(doc, x)
    model = _built(path)
    for bs in (1, 7, 64, 65):
        err = np.abs(_stream(model, x, bs) - want).max()
        assert err < TOL, (bs, err)
    # without the pre-warm: the file's states as they are (NAM's Python package)
    raw = load_nam(str(path), prewarm=False)
    m2 = checkpoint.build(str(path), raw)
    assert np.abs(_stream(m2, x, 64) - ref_lstm(doc, x, prewarm=False)).max() < TOL


@pytest.mark.parametrize("arch", ["WaveNet", "LSTM"])
def test_pedal_node_plays_a_nam_file_like_the_reference(tmp_path, arch):
    doc = _nam_wavenet(SMALL, head_scale=1.0, scale=0.6) if arch == "WaveNet" else _nam_lstm()
    ref = ref_wavenet if arch == "WaveNet" else ref_lstm
    _write(tmp_path, "amp.nam", doc)
    text = ("sample_rate: 48000\nnodes:\n  dry: {type: saw, freq: 110}\n  quiet: {type: gain, in: dry, gain: 0.5}\n"
            "  amp: {type: pedal, in: quiet, model: models/amp.nam}\nout: amp\n")
    dry_text = (text.replace("  amp: {type: pedal, in: quiet, model: models/amp.nam}\n", "")
                .replace("out: amp", "out: quiet"))
    n = 2400
    dry = patchlib.Engine(patchlib.load_patch(write_patch(tmp_path, dry_text, "dry.yaml")), block_size=64).render(n)
    want = ref(doc, dry[0])
    assert np.std(want) > 1e-3
    spec = patchlib.load_patch(write_patch(tmp_path, text))
    assert spec.nodes["amp"].ports()[2] == {}  # a NAM capture has no knobs
    for bs in (1, 64, 65):
        e = patchlib.Engine(spec, block_size=bs)
        out = np.concatenate([e.process(min(bs, n - i)).copy() for i in range(0, n, bs)], axis=1)
        assert np.abs(out[0] - want).max() < TOL, bs
    # the torch modules give the same (the default engine on the CPU is the fused one)
    torch_spec = patchlib.load_patch(write_patch(tmp_path, text.replace("amp.nam}", "amp.nam, engine: torch}"),
                                                 "torch.yaml"))
    out = patchlib.Engine(torch_spec, block_size=64).render(n)
    assert np.abs(out[0] - want).max() < TOL
    e.reset()  # reset pre-warms again: same output
    again = np.concatenate([e.process(min(bs, n - i)).copy() for i in range(0, n, bs)], axis=1)
    assert np.abs(again[0] - want).max() < TOL


def test_round_trip_through_save_nam(tmp_path):
    torch.manual_seed(0)
    wn = WaveNet(**wavenet_config("tiny"))
    save_nam(tmp_path / "wn.nam", wn)
    data = load_nam(str(tmp_path / "wn.nam"))
    sd = wn.state_dict()
    assert set(data["state_dict"]) == set(sd)
    for k, v in sd.items():
        torch.testing.assert_close(data["state_dict"][k], v, rtol=0, atol=0)
    doc = json.loads((tmp_path / "wn.nam").read_text())
    save_nam(tmp_path / "again.nam", data)  # a checkpoint dict exports to the same flat list
    assert json.loads((tmp_path / "again.nam").read_text())["weights"] == doc["weights"]
    x = _signal(3000)
    assert np.abs(_stream(_built(tmp_path / "wn.nam"), x, 64) - ref_wavenet(doc, x)).max() < TOL

    lstm = LSTM(hidden_size=5, num_layers=2)
    with torch.no_grad():
        lstm._initial_hidden.uniform_(-0.2, 0.2)
        lstm._initial_cell.uniform_(-0.2, 0.2)
    save_nam(tmp_path / "l.nam", lstm)
    raw = load_nam(str(tmp_path / "l.nam"), prewarm=False)["state_dict"]
    want = lstm.state_dict()
    for k in want:  # NAM stores one bias (b_ih + b_hh): compare the sum
        if k.startswith("_core.bias_"):
            continue
        torch.testing.assert_close(raw[k], want[k], rtol=0, atol=0)
    for i in range(2):
        torch.testing.assert_close(raw[f"_core.bias_ih_l{i}"] + raw[f"_core.bias_hh_l{i}"],
                                   want[f"_core.bias_ih_l{i}"] + want[f"_core.bias_hh_l{i}"])
    with pytest.raises(ValueError, match="knobs"):
        save_nam(tmp_path / "k.nam", WaveNet(**wavenet_config("tiny", knobs=1)))
    with pytest.raises(ValueError, match="skip"):
        save_nam(tmp_path / "s.nam", LSTM(skip=True))


def _fails(tmp_path, name, *words):
    text = ("sample_rate: 48000\nnodes:\n  dry: {type: saw, freq: 110}\n"
            f"  amp: {{type: pedal, in: dry, model: models/{name}}}\nout: amp\n")
    with pytest.raises(PatchError) as ei:
        patchlib.Engine(patchlib.load_patch(write_patch(tmp_path, text, f"{name}.yaml")), block_size=64)
    msg = str(ei.value)
    for w in (f"models/{name}",) + words:
        assert w in msg, msg
    assert "Traceback" not in msg
    return msg


def test_corrupted_nam_files_stop_the_load_with_a_clear_error(tmp_path):
    doc = _nam_wavenet(SMALL)
    good = json.dumps(doc)
    (tmp_path / "models").mkdir()
    (tmp_path / "models/trunc.nam").write_text(good[: len(good) // 2])
    _fails(tmp_path, "trunc.nam", "not valid .nam JSON")
    short = dict(doc, weights=doc["weights"][:-3])
    _write(tmp_path, "short.nam", short)
    n = len(doc["weights"])
    _fails(tmp_path, "short.nam", f"expected {n}", f"got {n - 3}")
    _write(tmp_path, "conv.nam", dict(doc, architecture="ConvNet"))
    _fails(tmp_path, "conv.nam", "unknown architecture 'ConvNet'")
    lstm = _nam_lstm()
    _write(tmp_path, "lstm.nam", dict(lstm, weights=lstm["weights"] + [0.0]))
    _fails(tmp_path, "lstm.nam", "expected", "got")
    bad = json.loads(good)
    bad["config"]["layers"][0]["activation"] = "Swish"
    _write(tmp_path, "act.nam", bad)
    _fails(tmp_path, "act.nam", "Swish")
    newer = json.loads(good)
    newer["config"]["layers"][1]["groups_input"] = 3
    _write(tmp_path, "groups.nam", newer)
    _fails(tmp_path, "groups.nam", "groups_input=3", "not supported")
    neutral = json.loads(good)  # newer keys holding the classic architecture's values load
    neutral["config"]["layers"][0].update(bottleneck=4, groups_input=1, groups_1x1=1)
    assert load_nam(str(_write(tmp_path, "neutral.nam", neutral)))["config"]["layers"][0]["channels"] == 4
    _fails(tmp_path, "missing.nam", "no such file")
