"""``patchlib train pedal``: real (tiny) training runs, latency alignment, the checkpoint in a patch, the CLI.

Every training here is a real optimisation of a tiny WaveNet on a few
seconds of synthetic audio (noise bursts and sines at random levels), small
enough for CI on two cores.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import patchlib  # noqa: E402
from patchlib import cli  # noqa: E402

from conftest import write_patch  # noqa: E402
from nodes.dsp.pedal_data import write_wav  # noqa: E402
from nodes.neural import checkpoint  # noqa: E402
from nodes.neural import train as tr  # noqa: E402

SR = 48000


def synth_dry(seconds=4.0, seed=0):
    """Noise bursts (decaying) and sines (faded), back to back, each at a random level up to 0.9."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        m = min(int(rng.uniform(0.05, 0.3) * SR), n - pos)
        a = rng.uniform(0.05, 0.9)
        k = np.arange(m)
        if rng.random() < 0.5:
            seg = rng.standard_normal(m) * a / 3 * np.exp(-k / (0.3 * m))
        else:
            seg = a * np.sin(2 * np.pi * rng.uniform(60, 3000) * k / SR + rng.uniform(0, 6))
            seg *= np.minimum(1.0, np.minimum(k, m - k) / 200.0)
        x[pos:pos + m] = seg
        pos += m
    return x.astype(np.float32)


def _cfg(tmp_path, **kw):
    base = dict(output=str(tmp_path / "models" / "m.pt"), size="tiny", steps=300, batch=4, segment=2048, lr=1e-2,
                lr_final=1e-3, eval_every=50, patience=0, threads=1, quiet=True, seed=0)
    base.update(kw)
    return tr.TrainConfig(**base)


@pytest.fixture(scope="module")
def tanh_run(tmp_path_factory):
    """A tiny WaveNet trained on dry -> tanh(3 dry) for 300 steps (a few seconds)."""
    d = tmp_path_factory.mktemp("tanh")
    dry = synth_dry(4.0)
    write_wav(d / "dry.wav", dry, SR)
    write_wav(d / "wet.wav", np.tanh(3.0 * dry), SR)
    res = tr.train(_cfg(d, dry=str(d / "dry.wav"), wet=str(d / "wet.wav")), log=lambda *a: None)
    return d, dry, res


def test_tiny_wavenet_learns_tanh_to_validation_esr_below_005(tanh_run):
    d, dry, res = tanh_run
    assert res["esr"] < 0.05, res["history"]
    # a real run: the validation ESR fell from where it started by a large factor
    assert res["history"][0]["val_esr"] > res["esr"]
    assert res["esr_heldout"] is None  # no held-out pairs given
    # the checkpoint carries what it should
    data = checkpoint.load(res["output"])
    assert data["arch"] == "wavenet" and data["sample_rate"] == SR and data["knobs"] == []
    assert data["validation"]["esr"] == pytest.approx(res["esr"], rel=1e-4)
    assert data["validation"]["per_pair"]["wet.wav"]["lag"] == 0
    assert data["train_command"].startswith("patchlib train pedal -o ")
    assert "--size tiny" in data["train_command"] and "--seed 0" in data["train_command"]
    with open(res["report"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_saved_checkpoint_plays_in_a_patch_like_the_validation_output(tanh_run):
    d, dry, res = tanh_run
    lo, hi = res["pairs"][0]["val"]
    x = dry[lo:hi]
    path = write_patch(d, """\
        sample_rate: 48000
        nodes:
          src: {type: input}
          fx: {type: pedal, in: src, model: models/m.pt}
        out: fx
        """)
    e = patchlib.Engine(patchlib.load_patch(path), block_size=64, audio_inputs={"": (x[None, :], SR)})
    out = e.render(x.size)[0]
    model = checkpoint.build(res["output"], checkpoint.load(res["output"]), streaming=False)
    want = tr.predict(model, x, np.zeros(0, np.float32))
    np.testing.assert_allclose(out, want, atol=1e-5)
    # and it scores what the checkpoint says (the patch starts from silence: skip the receptive field)
    rf = model.receptive_field
    t = np.tanh(3.0 * x.astype(np.float64))[rf:]
    got = float(tr.esr(t, out[rf:].astype(np.float64)))
    assert got == pytest.approx(res["esr"], rel=0.05, abs=1e-3)


@pytest.mark.parametrize("input_gain", [False, True])
def test_knobs_condition_the_model_and_held_out_settings_are_scored(tmp_path, input_gain):
    dry = synth_dry(3.0, seed=1)
    write_wav(tmp_path / "dry.wav", dry, SR)
    pairs = []
    for drive, s in ((0.0, "grid"), (1.0, "grid"), (0.5, "heldout")):
        name = f"wet{drive}.wav"
        write_wav(tmp_path / name, np.tanh((1.0 + 2.0 * drive) * dry), SR)
        pairs.append((str(tmp_path / "dry.wav"), str(tmp_path / name), {"drive": drive}, s))
    res = tr.train(_cfg(tmp_path, pairs=pairs, steps=250, input_gain=input_gain), log=lambda *a: None)
    data = checkpoint.load(res["output"])
    assert data["config"].get("input_gain", False) is input_gain
    assert ("--input-gain" in data["train_command"]) is input_gain
    assert [k["name"] for k in data["knobs"]] == ["drive"] and data["knobs"][0]["range"] == [0.0, 1.0]
    assert res["per_pair"]["wet0.5.wav"]["set"] == "heldout"
    assert data["validation"]["esr_heldout"] == pytest.approx(res["esr_heldout"], rel=1e-4)
    assert res["esr"] < 0.1 and res["esr_heldout"] < 0.15, (res["per_pair"], res["history"])
    # the knob matters: at drive 0 and 1 the model's outputs differ like the targets do
    model = res["model"]
    lo, hi = res["pairs"][0]["val"]
    y0, y1 = (tr.predict(model, dry[lo:hi], np.array([v], np.float32)) for v in (0.0, 1.0))
    assert np.sqrt(np.mean((y1 - y0) ** 2)) > 0.5 * np.sqrt(np.mean((np.tanh(3 * dry[lo:hi]) - np.tanh(dry[lo:hi])) ** 2))
    assert "--pair" in data["train_command"] and "--heldout-pair" in data["train_command"]


def test_alignment_detects_an_injected_lag(tmp_path):
    dry = synth_dry(2.0, seed=2)
    wet = np.tanh(3.0 * dry)
    for lag in (37, 0, 700):
        delayed = np.concatenate([np.zeros(lag, np.float32), wet])[:dry.size]
        assert tr.detect_lag(dry, delayed) == lag
    early = wet[25:]
    assert tr.detect_lag(dry, early) == -25
    # inverted and low-passed (a one-pole, its impulse response peaks at 0) still reads the delay
    from scipy.signal import lfilter

    coloured = -lfilter([0.3], [1.0, -0.7], np.concatenate([np.zeros(120), wet])[:dry.size])
    assert tr.detect_lag(dry, coloured) == 120
    # load_data shifts by the detected lag (minus the safety margin) and reports it
    write_wav(tmp_path / "dry.wav", dry, SR)
    write_wav(tmp_path / "wet.wav", np.concatenate([np.zeros(37, np.float32), wet]), SR)
    cfg = _cfg(tmp_path, dry=str(tmp_path / "dry.wav"), wet=str(tmp_path / "wet.wav"), latency_safety=0)
    p = tr.load_data(cfg, log=lambda *a: None)["pairs"][0]
    assert p["lag"] == 37 and p["shift"] == 37
    np.testing.assert_allclose(p["wet"], np.tanh(3.0 * p["dry"]), atol=1e-6)
    cfg.latency_safety = 4
    p = tr.load_data(cfg, log=lambda *a: None)["pairs"][0]
    assert p["shift"] == 33 and np.allclose(p["wet"][4:], np.tanh(3.0 * p["dry"][:-4]), atol=1e-6)


def test_esr_with_pre_emphasis_matches_its_definition():
    rng = np.random.default_rng(3)
    y = rng.standard_normal(1000)
    yh = y + 0.1 * rng.standard_normal(1000)
    pe = lambda s: s[1:] - 0.85 * s[:-1]  # noqa: E731
    assert tr.esr(y, yh) == pytest.approx(np.sum((pe(y) - pe(yh)) ** 2) / np.sum(pe(y) ** 2))
    assert tr.esr(y, y) == 0.0 and tr.esr(y, 0 * y) == pytest.approx(1.0)


def test_training_is_deterministic_for_a_seed_on_cpu(tmp_path):
    dry = synth_dry(1.5, seed=4)
    write_wav(tmp_path / "dry.wav", dry, SR)
    write_wav(tmp_path / "wet.wav", np.tanh(2.0 * dry), SR)
    runs = [tr.train(_cfg(tmp_path, output=str(tmp_path / f"m{i}.pt"), dry=str(tmp_path / "dry.wav"),
                          wet=str(tmp_path / "wet.wav"), steps=20, eval_every=10, seed=seed), log=lambda *a: None)
            for i, seed in enumerate((5, 5, 6))]
    a, b, c = (checkpoint.load(r["output"])["state_dict"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_cli_train_pedal_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "pedal", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for word in ("--manifest", "--make-data", "--dry", "--pair", "--arch", "--size", "--stft-weight", "--steps",
                 "--seed", "--device", "pre-emphasis", "ESR", "held-out", "examples:"):
        assert word in out, word
    assert cli.main(["train", "pedal", "-o", "x.pt"]) == 2  # no data: a clear error, not a traceback
    assert "no data" in capsys.readouterr().err
    # the parser does not import torch
    code = "import sys, patchlib.cli as c; c.build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_make_data_end_to_end_from_the_cli(tmp_path, capsys):
    out = tmp_path / "models" / "od.pt"
    rc = cli.main(["train", "pedal", "--make-data", str(tmp_path / "data"), "--data-seconds", "4", "-o", str(out),
                   "--size", "tiny", "--steps", "40", "--batch", "2", "--segment", "2048", "--eval-every", "20",
                   "--threads", "1", "-q"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held-out knob settings" in printed and "lag" in printed
    data = checkpoint.load(str(out))
    v = data["validation"]
    assert [k["name"] for k in data["knobs"]] == ["gain", "tone"]  # level is fixed in the data: not a knob
    assert v["fixed_knobs"] == {"level": 1.0}
    assert np.isfinite(v["esr"]) and np.isfinite(v["esr_heldout"])
    from nodes.dsp import pedal_data

    assert sum(p["set"] == "heldout" for p in v["per_pair"].values()) == len(pedal_data.HELD_OUT)
    # the model's knobs span the grid it was trained on (and no further)
    assert [k["range"] for k in data["knobs"]] == [[0.25, 0.7], [0.2, 0.8]]
    assert os.path.isfile(tmp_path / "data" / "manifest.json") and os.path.isfile(out.with_suffix(".png"))
    # the recorded command parses back to the same run
    argv = shlex.split(data["train_command"])
    assert argv[:3] == ["patchlib", "train", "pedal"]
    a = cli.build_parser().parse_args(argv[1:])
    assert (a.make_data, a.data_seconds, a.size, a.steps, a.seed) == (str(tmp_path / "data"), 4.0, "tiny", 40, 0)


def test_lstm_with_the_stft_term_trains_and_its_checkpoint_builds(tmp_path):
    dry = synth_dry(1.5, seed=6)
    write_wav(tmp_path / "dry.wav", dry, SR)
    write_wav(tmp_path / "wet.wav", np.tanh(2.0 * dry), SR)
    res = tr.train(_cfg(tmp_path, arch="lstm", dry=str(tmp_path / "dry.wav"), wet=str(tmp_path / "wet.wav"),
                        steps=40, eval_every=20, stft_weight=0.1), log=lambda *a: None)
    data = checkpoint.load(res["output"])
    assert data["arch"] == "lstm" and "STFT" in data["validation"]["loss"]
    model = checkpoint.build(res["output"], data, streaming=False)
    assert res["esr"] < 0.9  # better than silence (ESR 1) after 40 steps
    assert model.condition_size == 1


def test_chunked_prediction_equals_one_pass():
    torch.manual_seed(0)
    model, _ = tr.build_model("wavenet", "tiny", 1)
    x = synth_dry(0.2, seed=7)
    one = tr.predict(model.eval(), x, np.array([0.3], np.float32), chunk=1 << 20)
    np.testing.assert_allclose(tr.predict(model, x, np.array([0.3], np.float32), chunk=700), one, atol=1e-6)


def test_lstm_hidden_size_and_skip_can_be_chosen():
    model, cfg = tr.build_model("lstm", "paper", knobs=2, hidden=12, skip=False)
    assert cfg == {"hidden_size": 12, "num_layers": 1, "skip": False, "input_size": 3}
    assert model._core.hidden_size == 12 and model.skip is False
    assert tr.build_model("lstm", "paper", knobs=0)[1]["skip"] is True  # the size's default
    with pytest.raises(ValueError, match="LSTM options"):
        tr.build_model("wavenet", "tiny", knobs=0, hidden=8)
    with pytest.raises(ValueError, match="WaveNet option"):
        tr.build_model("lstm", "tiny", knobs=1, input_gain=True)
    with pytest.raises(ValueError, match="needs knobs"):
        tr.build_model("wavenet", "tiny", knobs=0, input_gain=True)
    cmd = tr.TrainConfig(output="m.pt", dry="d.wav", wet="w.wav", arch="lstm", hidden=12, skip=False).command()
    assert "--hidden 12 --no-skip" in cmd
    a = cli.build_parser().parse_args(["train", "pedal", "-o", "m.pt", "--dry", "d.wav", "--wet", "w.wav", "--arch", "lstm",
                                       "--hidden", "12", "--no-skip"])
    assert a.hidden == 12 and a.skip is False
    assert cli.build_parser().parse_args(["train", "pedal", "-o", "m.pt", "--dry", "d.wav", "--wet", "w.wav"]).skip is None
