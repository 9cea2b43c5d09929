"""The fused numba engine computes what the torch models compute, streaming at any block size."""
from __future__ import annotations

import numba
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import patchlib  # noqa: E402

from conftest import write_patch  # noqa: E402
from nodes.neural import checkpoint, fast  # noqa: E402
from nodes.neural.lstm import LSTM  # noqa: E402
from nodes.neural.torchnode import set_threads  # noqa: E402
from nodes.neural.wavenet import WaveNet, wavenet_config  # noqa: E402

set_threads(1)  # as the pedal node does; two threads on a busy machine make torch's reference LSTM crawl

BLOCKS = (1, 7, 64, 65, 256)


def _layer(inp, cond, ch, head, dil, gated, act="Tanh", head_bias=True, k=3):
    return {"input_size": inp, "condition_size": cond, "channels": ch, "head_size": head, "kernel_size": k,
            "dilations": dil, "activation": act, "gated": gated, "head_bias": head_bias}


def _configs(knobs):
    c = 1 + knobs
    return {
        "tiny": wavenet_config("tiny", knobs=knobs),  # ungated array then gated array
        "ungated": {"layers": [_layer(1, c, 6, 3, [1, 2, 4, 8, 16, 32, 64], False, head_bias=False),
                               _layer(6, c, 3, 1, [1, 4, 16, 64], False)], "head_scale": 0.3},
        "gated": {"layers": [_layer(1, c, 5, 1, [1, 2, 4, 8, 16, 32, 64, 128], True, k=2)], "head_scale": 0.8},
        "relu-hardtanh": {"layers": [_layer(1, c, 4, 4, [1, 3, 9], False, "ReLU", head_bias=False),
                                     _layer(4, c, 4, 1, [2, 5], True, "Hardtanh")], "head_scale": 1.0},
    }


def _cond(rows, frames, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 48000.0
    x = np.empty((rows, frames), np.float32)
    x[0] = 0.5 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(frames)
    for j in range(1, rows):  # knobs: slow sweeps over 0..1
        x[j] = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + j) * t + j)
    return x


def _offline(model_cls, cfg, state, cond):
    """The whole signal in one non-streaming torch pass (zero-padded history)."""
    ref = model_cls(**cfg, streaming=False).eval()
    ref.load_state_dict(state)
    with torch.inference_mode():
        return ref(torch.from_numpy(cond)[None])[0, 0].numpy()


def _stream(fm, cond, block, out_len=None):
    """Feed ``cond`` block by block through a copy-per-block buffer, as the node does."""
    rows, frames = cond.shape
    buf = np.zeros((rows, block), np.float32)
    out = np.zeros(block, np.float32)
    y = np.zeros(frames, np.float32)
    for i in range(0, frames, block):
        n = min(block, frames - i)
        buf[:, :n] = cond[:, i:i + n]
        fm(buf, out, n)
        y[i:i + n] = out[:n]
    return y


def _random_wavenet(cfg, seed):
    torch.manual_seed(seed)
    m = WaveNet(**cfg, streaming=True).eval()
    with torch.no_grad():  # larger weights than the init so every layer and knob matters
        for p in m.parameters():
            p.mul_(2.0)
    return m


@pytest.mark.parametrize("knobs", [0, 2])
@pytest.mark.parametrize("name", ["tiny", "ungated", "gated", "relu-hardtanh"])
def test_fast_wavenet_equals_torch_at_every_block_size(name, knobs):
    cfg = _configs(knobs)[name]
    m = _random_wavenet(cfg, seed=3)
    frames = 1500
    cond = _cond(1 + knobs, frames)
    want = _offline(WaveNet, cfg, m.state_dict(), cond)
    assert np.std(want) > 1e-3
    for block in BLOCKS:
        # a small slack makes the history move to the front many times within the signal
        fm = fast.FastWaveNet(m, block, slack=37)
        got = _stream(fm, cond, block)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{name} knobs={knobs} block {block}")
        fm.reset()
        np.testing.assert_array_equal(_stream(fm, cond, block), got)  # reset repeats exactly


@pytest.mark.parametrize("name", ["tiny", "gated"])
def test_input_gain_wavenet_fast_equals_torch(name):
    """The learnt input gain x * 10 ** (w . knobs + b), per sample, in both engines and at every block size."""
    cfg = dict(_configs(2)[name], input_gain=True)
    m = _random_wavenet(cfg, seed=5)
    with torch.no_grad():  # a gain that swings over about 30 dB as the knobs sweep
        m._input_gain.weight.copy_(torch.tensor([[[1.1], [-0.4]]]))
        m._input_gain.bias.fill_(-0.5)
    cond = _cond(3, 1500)
    want = _offline(WaveNet, cfg, m.state_dict(), cond)
    plain = cfg.copy()
    plain.pop("input_gain")
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("_input_gain")}
    assert np.max(np.abs(want - _offline(WaveNet, plain, state, cond))) > 1e-2  # the gain matters
    scaled = cond.copy()
    scaled[0] *= 10.0 ** (1.1 * cond[1] - 0.4 * cond[2] - 0.5)
    np.testing.assert_allclose(want, _offline(WaveNet, plain, state, scaled), atol=1e-5)  # and is that product
    for block in BLOCKS:
        got = _stream(fast.FastWaveNet(m, block, slack=37), cond, block)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{name} block {block}")


def test_knob_rows_matter_in_the_fast_engine():
    cfg = _configs(2)["gated"]
    m = _random_wavenet(cfg, seed=1)
    cond = _cond(3, 800)
    other = cond.copy()
    other[1] = 1.0 - other[1]
    a = _stream(fast.FastWaveNet(m, 64), cond, 64)
    b = _stream(fast.FastWaveNet(m, 64), other, 64)
    assert np.max(np.abs(a - b)) > 1e-3
    np.testing.assert_allclose(b, _offline(WaveNet, cfg, m.state_dict(), other), atol=1e-5)


def test_nam_standard_size_wavenet_matches_over_its_receptive_field():
    cfg = wavenet_config("standard", knobs=1)
    m = _random_wavenet(cfg, seed=0)
    frames = m.receptive_field + 700  # 4793: the history reaches back over all of it
    cond = _cond(2, frames, seed=2)
    want = _offline(WaveNet, cfg, m.state_dict(), cond)
    for block in (65, 256):
        got = _stream(fast.FastWaveNet(m, block, slack=300), cond, block)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"block {block}")


@pytest.mark.parametrize("layers,hidden,knobs,skip", [(1, 16, 0, False), (3, 8, 2, True), (2, 5, 1, False)])
def test_fast_lstm_equals_torch_at_every_block_size(layers, hidden, knobs, skip):
    cfg = {"input_size": 1 + knobs, "hidden_size": hidden, "num_layers": layers, "skip": skip}
    torch.manual_seed(layers)
    m = LSTM(**cfg, streaming=True).eval()
    with torch.no_grad():  # a learnt-looking initial state, which reset must put back
        m._initial_hidden.normal_(0, 0.3)
        m._initial_cell.normal_(0, 0.3)
    cond = _cond(1 + knobs, 1200, seed=layers)
    want = _offline(LSTM, cfg, m.state_dict(), cond)
    assert np.std(want) > 1e-3
    for block in BLOCKS:
        fm = fast.compile_model(m, block)
        assert isinstance(fm, fast.FastLSTM)
        got = _stream(fm, cond, block)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"block {block}")
        fm.reset()
        np.testing.assert_array_equal(_stream(fm, cond, block), got)


def test_fast_tanh_and_sigmoid_are_float32_accurate():
    x = np.linspace(-20, 20, 400001).astype(np.float32)
    out = np.empty_like(x)
    fast._tanh_array(x, out)
    assert np.max(np.abs(out - np.tanh(x.astype(np.float64)))) < 5e-7
    assert np.max(np.abs(out)) <= 1.0 and out[200000] == 0.0
    np.testing.assert_array_equal(out[::-1], -out)  # odd
    sig = np.empty_like(x)
    _sigmoid_array(x, sig)
    assert np.max(np.abs(sig - 1.0 / (1.0 + np.exp(-x.astype(np.float64))))) < 3e-7


@numba.njit
def _sigmoid_array(x, out):
    for i in range(x.size):
        out[i] = fast.fast_sigmoid(x[i])


def test_too_long_a_block_is_refused():
    m = WaveNet(**wavenet_config("tiny"), streaming=True)
    fm = fast.compile_model(m, 16)
    with pytest.raises(ValueError, match="prepared maximum"):
        fm(np.zeros((1, 32), np.float32), np.zeros(32, np.float32))


PATCH = """\
sample_rate: 48000
nodes:
  dry: {type: saw, freq: 110}
  lfo: {type: sine, freq: 3}
  drive: {type: pedal, in: dry, model: MODEL, gain: {from: lfo, range: [1, 9]}, tone: 0.3ENGINE}
out: drive
"""


@pytest.mark.parametrize("arch", ["wavenet", "lstm"])
def test_pedal_engines_fast_and_torch_agree_in_a_patch(tmp_path, arch):
    knobs = [{"name": "gain", "range": [0.0, 10.0], "default": 5.0}, {"name": "tone", "range": [0.0, 1.0]}]
    torch.manual_seed(0)
    if arch == "wavenet":
        cfg = wavenet_config("tiny", knobs=2)
        model = _random_wavenet(cfg, seed=0)
    else:
        cfg = {"input_size": 3, "hidden_size": 8, "num_layers": 2, "skip": True}
        model = LSTM(**cfg)
    checkpoint.save(tmp_path / "models" / "m.pt", arch, cfg, model.state_dict(), 48000, knobs=knobs)
    outs = {}
    for engine in ("torch", "fast", "auto"):
        path = write_patch(tmp_path, PATCH.replace("MODEL", "models/m.pt")
                           .replace("ENGINE", f", engine: {engine}"), f"{engine}.yaml")
        for bs in (64, 65):
            e = patchlib.Engine(patchlib.load_patch(path), block_size=bs)
            y = np.concatenate([e.process(bs).copy() for _ in range(0, 3000, bs)], axis=1)[:, :3000]
            outs[engine, bs] = y
        assert e.nodes["drive"].engine == ("torch" if engine == "torch" else "fast")
    ref = outs["torch", 64]
    assert np.all(np.isfinite(ref)) and np.std(ref) > 1e-3
    for key, y in outs.items():
        np.testing.assert_allclose(y, ref, atol=1e-5, err_msg=str(key))


def test_bench_models_reports_both_engines():
    rows = fast.bench_models(seconds=0.02, block_sizes=(64,), models=["wavenet-tiny", "lstm-1x16"])
    assert [r["model"] for r in rows] == ["wavenet-tiny", "lstm-1x16"]
    for r in rows:
        assert r["macs"] > 0 and r["torch_x"] > 0 and r["fast_x"] > 0 and r["fast_gflops"] > 0
    assert "fast x" in fast.format_table(rows)
