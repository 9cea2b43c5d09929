"""The streaming neural runtime: cached-padding convs, WaveNet and LSTM, checkpoints.

Streaming (block by block, any block sizes) must compute what one offline
pass over the whole signal computes, to 1e-5 in float32; the receptive
field each model reports must be the length of its measured response to a
perturbation; checkpoints must refuse files that do not match.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from patchlib import PatchError  # noqa: E402

from nodes.neural import checkpoint  # noqa: E402
from nodes.neural.lstm import LSTM  # noqa: E402
from nodes.neural.streaming import CausalConv1d, realtime_factor  # noqa: E402
from nodes.neural.wavenet import WaveNet, wavenet_config  # noqa: E402

BLOCKS = (1, 7, 64, 65, 256)
N = 1500


def _pair(make):
    torch.manual_seed(1)
    off = make(False)
    st = make(True)
    st.load_state_dict(off.state_dict())
    return off.eval(), st.eval()


def _stream(model, x, bs):
    model.reset()
    return torch.cat([model(x[..., i:i + bs]) for i in range(0, x.shape[-1], bs)], dim=-1)


def _wavenet(gated):
    cfg = wavenet_config("tiny", knobs=2)
    for la in cfg["layers"]:
        la["gated"] = gated
    return lambda streaming: WaveNet(**cfg, streaming=streaming)


MODELS = {
    "wavenet-tanh": _wavenet(False),
    "wavenet-gated": _wavenet(True),
    "lstm": lambda streaming: LSTM(input_size=3, hidden_size=8, num_layers=2, skip=True, streaming=streaming),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_streaming_equals_whole_signal(kind):
    off, st = _pair(MODELS[kind])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, N, generator=g)
    x[:, 1:] = torch.rand(1, 2, N, generator=g)  # knob rows 0..1
    with torch.inference_mode():
        ref = off(x)
        st.prepare(max(BLOCKS))
        for bs in BLOCKS:
            y = _stream(st, x, bs)
            assert y.shape == ref.shape
            err = (y - ref).abs().max().item()
            assert err < 1e-5, f"block {bs}: {err}"
        # reset gives the same again
        assert torch.equal(_stream(st, x, 65), _stream(st, x, 65))


def test_causal_conv_cache_longer_than_block():
    """A dilation far above the block size: the cache spans many blocks."""
    torch.manual_seed(0)
    off = CausalConv1d(2, 3, 3, dilation=40)
    st = CausalConv1d(2, 3, 3, dilation=40, streaming=True)
    st.load_state_dict(off.state_dict())
    x = torch.randn(1, 2, 500)
    with torch.no_grad():
        ref = off(x)
        st.prepare(16)
        for bs in (1, 7, 16):
            assert (_stream(st, x, bs) - ref).abs().max().item() < 1e-5
        with pytest.raises(ValueError, match="prepared maximum"):
            st(torch.zeros(1, 2, 17))


@pytest.mark.parametrize("gated", [False, True])
def test_receptive_field_is_the_measured_response_length(gated):
    """Perturb one input sample: the output changes exactly on [t0, t0 + rf - 1] (causal, latency 0)."""
    torch.manual_seed(3)
    model = _wavenet(gated)(False).eval()
    rf = model.receptive_field
    cfg = wavenet_config("tiny")
    want = 1 + sum((la["kernel_size"] - 1) * d for la in cfg["layers"] for d in la["dilations"])
    assert rf == want == 21
    assert model.latency == 0
    x = torch.randn(1, 3, 200)
    x2 = x.clone()
    t0 = 50
    x2[0, 0, t0] += 1.0
    with torch.no_grad():
        diff = (model(x2) - model(x)).abs()[0, 0]
    changed = torch.nonzero(diff > 1e-7).flatten()
    assert changed.min().item() == t0            # nothing before: causal, no latency
    assert changed.max().item() == t0 + rf - 1    # the response is exactly rf samples long


def test_named_sizes():
    std = WaveNet(**wavenet_config("standard"))
    assert std.receptive_field == 4093           # NAM's standard WaveNet
    assert WaveNet(**wavenet_config("paper")).receptive_field == 2047
    assert std.macs_per_sample == 13320          # the 13.3k multiply-adds per sample
    n_std = sum(p.numel() for p in std.parameters())
    assert 10_000 < n_std < 20_000               # ~13.8k weights, as NAM's standard
    # knobs widen only the input mixers: one column per knob per layer
    k2 = WaveNet(**wavenet_config("standard", knobs=2))
    extra = sum(p.numel() for p in k2.parameters()) - n_std
    assert extra == 2 * (10 * 16 + 10 * 8)


def test_lstm_state_is_carried_and_reset():
    off, st = _pair(MODELS["lstm"])
    x = torch.randn(1, 3, 300)
    with torch.inference_mode():
        st.prepare(64)
        a = _stream(st, x, 64)
        b = torch.cat([st(x[..., :64]), st(x[..., :64])], dim=-1)  # no reset: the state carries on
        assert not torch.allclose(b[..., :64], b[..., 64:])
        st.reset()
        assert torch.equal(st(x[..., :64]), a[..., :64])


# ---------------------------------------------------------------- checkpoints
def _save(path, model, cfg, **kw):
    checkpoint.save(path, "wavenet", cfg, model.state_dict(), 48000,
                    knobs=[{"name": "gain", "range": [0, 10], "default": 5}], **kw)


def test_checkpoint_round_trip(tmp_path):
    cfg = wavenet_config("tiny", knobs=1)
    torch.manual_seed(0)
    model = WaveNet(**cfg)
    p = tmp_path / "m.pt"
    _save(p, model, cfg, validation={"esr": 0.01}, train_command="patchlib train pedal x.wav y.wav")
    data = checkpoint.load(str(p))
    assert data["sample_rate"] == 48000 and data["validation"] == {"esr": 0.01}
    assert data["train_command"].startswith("patchlib train")
    assert data["knobs"][0]["name"] == "gain" and data["knobs"][0]["range"] == [0.0, 10.0]
    back = checkpoint.build(str(p), data, streaming=False)
    x = torch.randn(1, 2, 100)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert checkpoint.header(str(p))["arch"] == "wavenet"


def test_checkpoint_errors_name_the_file(tmp_path):
    cfg = wavenet_config("tiny", knobs=1)
    torch.manual_seed(0)
    good = WaveNet(**cfg)
    # wrong shapes: weights of a wider net under the tiny config
    wide = wavenet_config("tiny", knobs=1)
    wide["layers"][0]["channels"] = 6
    wide["layers"][1]["input_size"] = 6
    p = tmp_path / "wide.pt"
    checkpoint.save(p, "wavenet", cfg, WaveNet(**wide).state_dict(), 48000, knobs=[{"name": "gain", "range": [0, 1]}])
    with pytest.raises(PatchError, match=r"wide\.pt.*shape"):
        checkpoint.build(str(p), checkpoint.load(str(p)))
    # an unknown tensor
    sd = dict(good.state_dict(), extra=torch.zeros(2))
    p = tmp_path / "extra.pt"
    checkpoint.save(p, "wavenet", cfg, sd, 48000, knobs=[{"name": "gain", "range": [0, 1]}])
    with pytest.raises(PatchError, match=r"extra\.pt.*unknown \['extra'\]"):
        checkpoint.build(str(p), checkpoint.load(str(p)))
    # knob count does not fit the conditioning width
    p = tmp_path / "knobs.pt"
    checkpoint.save(p, "wavenet", cfg, good.state_dict(), 48000, knobs=[])
    with pytest.raises(PatchError, match=r"knobs\.pt.*conditioning"):
        checkpoint.build(str(p), checkpoint.load(str(p)))
    # truncated, garbage, missing
    p = tmp_path / "trunc.pt"
    _save(p, good, cfg)
    p.write_bytes(p.read_bytes()[:600])
    with pytest.raises(PatchError, match=r"trunc\.pt.*cannot read"):
        checkpoint.load(str(p))
    with pytest.raises(PatchError, match=r"nothere\.pt.*no such file"):
        checkpoint.load(str(tmp_path / "nothere.pt"))


def test_realtime_factor_runs_a_streaming_model():
    model = WaveNet(**wavenet_config("tiny", knobs=1), streaming=True).eval()
    assert realtime_factor(model, 256, seconds=0.05) > 0
