"""The WaveNet generator: training, the kernel against the torch model, streaming, and the shipped model."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nodes.neural import wavenet_gen as wg  # noqa: E402
from nodes.neural.train_wavenet_gen import (  # noqa: E402
    GenTrainConfig, load_notes, multires_log_spectral_distance, note_pitch_cents, train)
from patchlib import Engine, load_patch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "patches", "models", "wavenet-gen.pt")
SR = 16000


def _tiny_data(tmp_path):
    from patchlib.dataset import DatasetConfig, render_dataset

    out = str(tmp_path / "notes")
    render_dataset(DatasetConfig(out=out, instruments=[os.path.join(ROOT, "patches", "instruments", "saw.yaml"),
                                                       os.path.join(ROOT, "patches", "instruments", "bowed.yaml")],
                                 pitches=[55, 62], velocities=[100], seconds=0.6, release=0.4, workers=0,
                                 progress=False))
    return out


def _cfg(tmp_path, data, **kw):
    base = dict(output=str(tmp_path / "g.pt"), data=data, size="tiny", steps=60, batch=4, segment=256,
                lr=5e-2, lr_final=1e-2, eval_every=10, quiet=True)
    base.update(kw)
    return GenTrainConfig(**base)


def test_tiny_training_loss_falls_and_resume_repeats(tmp_path):
    data = _tiny_data(tmp_path)
    res = train(_cfg(tmp_path, data), log=lambda *a: None)
    h = res["history"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"] - 0.3, h
    assert h[0]["step"] == 0 and h[-1]["step"] == 60
    assert os.path.isfile(str(tmp_path / "g.pt")) and os.path.isfile(str(tmp_path / "g.png"))
    # the checkpoint plays in the node's loader
    data_ck = wg.load_checkpoint(str(tmp_path / "g.pt"))
    assert data_ck["config"]["instrument_names"] == ["bowed", "saw"]
    # interrupted at step 20 and resumed: the same weights as the straight run
    out2 = str(tmp_path / "r.pt")
    part = train(_cfg(tmp_path, data, output=out2, stop_after=20), log=lambda *a: None)
    assert part["interrupted"] == 20
    res2 = train(_cfg(tmp_path, data, output=out2, resume=True), log=lambda *a: None)
    assert [x["valid_loss"] for x in res2["history"]] == [x["valid_loss"] for x in h]
    for k, v in res["model"].state_dict().items():
        assert torch.equal(v, res2["model"].state_dict()[k]), k
    # --eval-only measures the saved best weights again, at another temperature, without training
    res3 = train(_cfg(tmp_path, data, output=out2, eval_only=True, temperature=0.3), log=lambda *a: None)
    assert res3["validation"]["eval_temperature"] == 0.3 and res3["validation"]["steps"] == 60
    assert wg.load_checkpoint(out2)["validation"]["best_step"] == res2["validation"]["best_step"]


def test_drift_and_phase_harmonics_train_and_are_recorded(tmp_path):
    """--input-drift, --phase-harmonics, --channels and --feedback: a tiny training with both learns (the loss falls), the checkpoint's
    model has the extra phase rows and its command names both; a negative drift bound and 0 phase harmonics are refused."""
    data = _tiny_data(tmp_path)
    res = train(_cfg(tmp_path, data, input_drift=0.2, phase_harmonics=4, channels=6, feedback=0.25),
                log=lambda *a: None)
    h = res["history"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"] - 0.3, h
    ck = wg.load_checkpoint(str(tmp_path / "g.pt"))
    assert ck["model"].harmonics == 4 and ck["model"].local == wg.local_rows(4) + 2  # tiny: two period rows
    assert "--phase-harmonics 4" in ck["train_command"] and "--input-drift 0.2" in ck["train_command"]
    # --channels sets the residual channels (skip and head twice that); --feedback is measured and recorded
    assert (ck["config"]["channels"], ck["config"]["skip"], ck["config"]["head"]) == (6, 12, 12)
    assert ck["model"].macs_per_sample > wg.load_checkpoint(wg.TEST_MODEL)["model"].macs_per_sample
    assert ck["validation"]["eval_feedback"] == 0.25 and "--feedback 0.25" in ck["train_command"]
    assert "--channels 6" in ck["train_command"]
    with pytest.raises(ValueError, match="feedback"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "x.pt"), feedback=1.5), log=lambda *a: None)
    with pytest.raises(ValueError, match="input-drift"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "x.pt"), input_drift=-0.1), log=lambda *a: None)
    with pytest.raises(ValueError, match=r"phase_harmonics is 1\.\.16"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "y.pt"), phase_harmonics=0), log=lambda *a: None)


def test_gain_norm_training_fits_the_scale_and_loss_falls(tmp_path):
    """--gain-norm: the scale is fitted so the normalised notes stay inside -1..1 (all but the loudest 0.1 % of
    the samples above -50 dB), it is saved in the checkpoint with the command, and the loss falls."""
    data = _tiny_data(tmp_path)
    res = train(_cfg(tmp_path, data, gain_norm=True, mean_output=True), log=lambda *a: None)
    h = res["history"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"] - 0.3, h
    ck = wg.load_checkpoint(str(tmp_path / "g.pt"))
    gn = ck["config"]["gain_norm"]
    assert gn["floor_db"] == -70.0 and 0.5 < gn["scale"] < 50.0, gn
    assert "--gain-norm" in ck["train_command"] and ck["validation"]["eval_output"] == "mean"
    over, count = 0, 0  # the samples louder than -50 dB: 0.1 % of them beyond full scale once normalised
    for n in load_notes(data, "train", ck["config"]["instrument_names"]):
        sel = n["loud"] > -50.0
        a = gn["scale"] * 10.0 ** (np.maximum(n["loud"][sel], gn["floor_db"]) / 20.0)
        over += int(np.sum(np.abs(n["audio"][sel] / a) > 1.0))
        count += int(sel.sum())
    assert 0 < over <= 0.0011 * count, (over, count)


def test_input_drift_offsets_the_whole_past_and_keeps_the_targets():
    """--input-drift: the input classes and the period input read the past offset by ``drift`` (coded again to
    8 bits), the targets stay the clean classes; no drift leaves the excerpt as it was."""
    from nodes.neural.train_wavenet_gen import excerpt

    n, f0 = 4000, 200.0
    x = (0.5 * np.sin(2 * np.pi * f0 * np.arange(n) / SR)).astype(np.float32)
    c = wg.mu_law_encode(x)
    note = {"classes": c, "dec": wg.mu_law_decode(c), "f0_curve": np.full(n, f0, np.float32),
            "loud": np.full(n, -20.0, np.float32), "phase": (f0 * np.arange(n) / SR) % 1.0, "sr": SR}
    s, T = 1500, 1000
    prev0, tgt0, cond0 = excerpt(note, s, T, period_input=1)
    prev, tgt, cond = excerpt(note, s, T, period_input=1, drift=0.2)
    assert np.array_equal(tgt, tgt0) and np.array_equal(tgt, c[s:s + T])
    step = 0.05  # an 8-bit mu-law step near 0.7 is about 0.03
    np.testing.assert_allclose(wg.mu_law_decode(prev), wg.mu_law_decode(prev0) + 0.2, atol=step)
    np.testing.assert_allclose(cond[-1], cond0[-1] + 0.2, atol=step)  # the period row: one period back, offset
    np.testing.assert_array_equal(cond[:-1], cond0[:-1])  # phase, pitch and loudness rows untouched
    assert np.array_equal(excerpt(note, s, T, 1, None, 0.0)[0], prev0)


def test_input_shape_adds_a_periodic_error_to_the_whole_past():
    """--input-shape: the input classes and the period input read the past plus a waveform on the note's
    fundamental phase (its harmonics the given complex amplitudes), coded again to 8 bits; the targets stay clean."""
    from nodes.neural.train_wavenet_gen import excerpt, shape_error

    n, f0 = 4000, 200.0
    x = (0.3 * np.sin(2 * np.pi * f0 * np.arange(n) / SR)).astype(np.float32)
    c = wg.mu_law_encode(x)
    phase = (f0 * np.arange(n) / SR + 0.1) % 1.0
    note = {"classes": c, "dec": wg.mu_law_decode(c), "f0_curve": np.full(n, f0, np.float32),
            "loud": np.full(n, -20.0, np.float32), "phase": phase, "sr": SR}
    shape = np.array([0.0, 0.1j, 0.0, 0.05])  # harmonic 2 (sine phase) and 4 (cosine phase)
    err = shape_error(note, 0, n, shape)
    w = 2 * np.pi * phase
    np.testing.assert_allclose(err, -0.1 * np.sin(2 * w) + 0.05 * np.cos(4 * w), atol=1e-12)
    s, T = 1500, 1000
    prev0, tgt0, cond0 = excerpt(note, s, T, period_input=1)
    prev, tgt, cond = excerpt(note, s, T, period_input=1, drift=0.1, shape=shape)
    assert np.array_equal(tgt, tgt0) and np.array_equal(tgt, c[s:s + T])
    step = 0.03  # an 8-bit mu-law step near 0.5 is about 0.02
    want = wg.mu_law_decode(prev0) + 0.1 + err[s - 1:s + T - 1]
    np.testing.assert_allclose(wg.mu_law_decode(prev), want, atol=step)
    period = int(round(SR / f0))  # the period row: one period back, with the same error (it is periodic)
    np.testing.assert_allclose(cond[-1], cond0[-1] + 0.1 + err[s - period:s + T - period], atol=step)
    np.testing.assert_array_equal(cond[:-1], cond0[:-1])
    # an excerpt from the note's first sample: the silence before it is left silent but for the drift
    prev_a, _, _ = excerpt(note, 0, T, period_input=1, shape=shape)
    assert prev_a[0] == wg.CLASSES // 2
    np.testing.assert_allclose(wg.mu_law_decode(prev_a[1:]), note["dec"][:T - 1] + err[:T - 1], atol=step)


def test_self_feed_gives_the_network_its_own_teacher_forced_means():
    """--self-feed (parallel scheduled sampling at feedback 0): a chosen excerpt's inputs become the classes of
    the means the network predicted one sample earlier from the clean inputs, and its period row reads that same
    past; the excerpts not chosen are left as they were."""
    from nodes.neural.train_wavenet_gen import excerpt, period_rows, self_feed

    n, f0 = 3000, 250.0
    x = (0.4 * np.sin(2 * np.pi * f0 * np.arange(n) / SR) + 0.1 * np.sin(6 * np.pi * f0 * np.arange(n) / SR))
    c = wg.mu_law_encode(x.astype(np.float32))
    note = {"classes": c, "dec": wg.mu_law_decode(c), "f0_curve": np.full(n, f0, np.float32),
            "loud": np.full(n, -20.0, np.float32), "phase": (f0 * np.arange(n) / SR) % 1.0, "sr": SR}
    torch.manual_seed(1)
    model = wg.build_model(dict(wg.PRESETS["tiny"], instruments=2, instrument_names=["a", "b"])).eval()
    T, starts = 700, [900, 1600]
    parts = [excerpt(note, s, T, period_input=2) for s in starts]  # the tiny preset: two period rows
    prev = np.stack([p for p, _, _ in parts])
    cond = np.stack([k for _, _, k in parts])
    inst = np.array([0, 1])
    prev0, cond0 = prev.copy(), cond.copy()
    dec = torch.from_numpy(wg.mu_law_decode(np.arange(wg.CLASSES)).astype(np.float32))
    self_feed(model, prev, cond, inst, [(note, s, 0.0, None) for s in starts], np.array([False, True]),
              2, dec)
    assert np.array_equal(prev[0], prev0[0]) and np.array_equal(cond[0], cond0[0])
    with torch.no_grad():
        lg = model(torch.from_numpy(prev0[1:]), torch.from_numpy(cond0[1:]), torch.from_numpy(inst[1:]))[0]
    mu = (torch.softmax(lg, 0).T @ dec).numpy()
    assert prev[1, 0] == prev0[1, 0] and np.array_equal(prev[1, 1:], wg.mu_law_encode(mu[:-1]))
    assert not np.array_equal(prev[1], prev0[1])  # an untrained network's means are not the note
    rows = period_rows(note, starts[1], prev[1], 2)
    np.testing.assert_array_equal(cond[1, -rows.shape[0]:], rows)
    np.testing.assert_array_equal(cond[1, :-rows.shape[0]], cond0[1, :-rows.shape[0]])  # phase, pitch, loudness


def test_input_shape_self_feed_and_mean_loss_train_and_are_recorded(tmp_path):
    """--input-shape, --self-feed and --mean-loss: a tiny training with all three learns (the loss falls; with
    the mean loss the loss curve is still the cross-entropy), the command names them, and values out of range
    are refused."""
    data = _tiny_data(tmp_path)
    res = train(_cfg(tmp_path, data, input_shape=0.05, self_feed=0.5, mean_loss=2.0, gain_norm=True),
                log=lambda *a: None)
    h = res["history"]
    assert h[-1]["valid_loss"] < h[0]["valid_loss"] - 0.3, h
    cmd = wg.load_checkpoint(str(tmp_path / "g.pt"))["train_command"]
    assert "--self-feed 0.5" in cmd and "--mean-loss 2" in cmd and "--input-shape 0.05" in cmd
    with pytest.raises(ValueError, match="input-shape"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "x.pt"), input_shape=-0.1), log=lambda *a: None)
    with pytest.raises(ValueError, match="self-feed"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "x.pt"), self_feed=1.5), log=lambda *a: None)
    with pytest.raises(ValueError, match="mean-loss"):
        train(_cfg(tmp_path, data, output=str(tmp_path / "x.pt"), mean_loss=-1.0), log=lambda *a: None)


def _forced(logits: dict, **cfg):
    """A tiny model whose head ignores its input: fixed logits (class -> value; the rest -50)."""
    torch.manual_seed(0)
    model = wg.build_model(dict(wg.PRESETS["tiny"], instruments=2, instrument_names=["a", "b"], **cfg)).eval()
    with torch.no_grad():
        model.head2.weight.zero_()
        model.head2.bias.fill_(-50.0)
        for c, v in logits.items():
            model.head2.bias[c] = v
    return model


def test_gain_norm_output_follows_the_loudness_param():
    """With loudness normalisation the output is a = s 10^(max(loudness, floor) / 20) times the decoded class:
    a network that always draws the same class plays exactly that envelope, floor and clipping included."""
    model = _forced({200: 50.0}, gain_norm={"scale": 4.0, "floor_db": -60.0})
    loud = np.linspace(-90.0, 10.0, 3000).astype(np.float32)
    y = wg.generate(model, np.full(loud.size, 220.0), loud, 0.0, 1.0, SR)
    want = np.clip(4.0 * 10.0 ** (np.maximum(loud, -60.0) / 20.0) * wg.mu_law_decode(np.array([200]))[0], -1, 1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-7)
    assert np.all(y[:300] == y[0]) and y[-1] == 1.0  # held at the floor at first, clipped at the end


def test_preemphasis_is_undone_at_the_output():
    """With pre-emphasis the network's classes are those of y[t] - a y[t-1]: the kernel de-emphasises, so a
    network that always draws the same class d plays y[t] = d + a y[t-1], and a primer comes out as itself
    (within 8-bit mu-law's rounding, shaped by the de-emphasis)."""
    model = _forced({200: 50.0}, preemph=0.5)
    d = float(wg.mu_law_decode(np.array([200]))[0])
    y = wg.generate(model, np.full(400, 220.0), -20.0, 0.0, 1.0, SR)
    want = np.zeros(400)
    for t in range(400):
        want[t] = d + 0.5 * (want[t - 1] if t else 0.0)
    np.testing.assert_allclose(y, want, rtol=1e-5)
    x = 0.3 * np.sin(2 * np.pi * 330 * np.arange(1600) / SR)
    y = wg.generate(model, np.full(2000, 220.0), -20.0, 0.0, 1.0, SR, primer=x)
    assert np.max(np.abs(y[:1600] - x)) < 0.006
    with pytest.raises(ValueError, match="pre-emphasis"):
        _forced({}, preemph=1.0)


def test_mean_output_is_the_mean_of_the_distribution():
    """output: mean plays the mean of the distribution drawn from (here two classes at equal odds, so their
    average), while output: sample plays one of them at each sample; the draws are the same in both."""
    model = _forced({60: 10.0, 190: 10.0})
    d = wg.mu_law_decode(np.array([60, 190]))
    n = 2000
    s = wg.generate(model, np.full(n, 220.0), -20.0, 0.0, 1.0, SR, seed=2)
    m = wg.generate(model, np.full(n, 220.0), -20.0, 0.0, 1.0, SR, seed=2, mean_out=True)
    assert set(np.unique(s)) == set(d) and 0.4 < np.mean(s == d[0]) < 0.6
    np.testing.assert_allclose(m, d.mean(), rtol=1e-5)



def test_feedback_shrinks_each_draw_towards_the_mean():
    """feedback g: the network is fed mean + g (draw - mean), as a class; output: sample plays that, output: mean
    still the mean. The draws themselves are the same as at g = 1 (one random number per sample)."""
    model = _forced({60: 10.0, 190: 10.0})
    d = wg.mu_law_decode(np.array([60, 190])).astype(np.float64)
    mu = d.mean()
    n = 2000

    def gen(fb, mean=False):
        return wg.generate(model, np.full(n, 220.0), -20.0, 0.0, 1.0, SR, seed=2, mean_out=mean, feedback=fb)

    draws = gen(1.0)
    assert set(np.unique(draws)) == set(d.astype(np.float32))
    half = gen(0.5)
    want = wg.mu_law_decode(wg.mu_law_encode(mu + 0.5 * (draws.astype(np.float64) - mu)))
    np.testing.assert_array_equal(half, want)
    assert len(np.unique(half)) == 2 and np.all(np.abs(half - mu) < np.abs(draws - mu))
    np.testing.assert_array_equal(gen(0.0), np.full(n, wg.mu_law_decode(wg.mu_law_encode(mu))))
    np.testing.assert_allclose(gen(0.5, mean=True), mu, rtol=1e-5)
    np.testing.assert_array_equal(gen(np.nan), draws)  # NaN: the classic draw; out of range: clamped
    np.testing.assert_array_equal(gen(7.0), draws)
    np.testing.assert_array_equal(gen(-3.0), gen(0.0))


def test_feedback_zero_feeds_the_network_its_own_mean():
    """With feedback 0 every sample the network hears is the mean of the distribution it predicted for it:
    teacher-forcing the generated signal gives back, at every sample, a distribution whose mean encodes to that
    sample's class (a real network, whose distribution depends on what it is fed)."""
    torch.manual_seed(3)
    model = wg.build_model(dict(wg.PRESETS["tiny"], instruments=2, instrument_names=["a", "b"])).eval()
    with torch.no_grad():  # a sharper head than random weights give, so the means wander over many classes
        model.head2.weight.mul_(40.0)
    n = 3000
    _, pitch, loud, inst = _random_inputs(n, model.instruments, seed=4)
    y = wg.generate(model, pitch, loud, inst, 1.0, SR, seed=5, feedback=0.0)
    classes = wg.mu_law_encode(y)
    assert len(np.unique(classes)) > 20  # a signal, not a constant
    logp = wg.Generator(model, SR).teacher_forced(classes, pitch, loud, inst)
    means = np.exp(logp.astype(np.float64)) @ wg.mu_law_decode(np.arange(wg.CLASSES)).astype(np.float64)
    hit = wg.mu_law_encode(means) == classes
    assert hit.mean() > 0.995 and np.all(np.abs(wg.mu_law_encode(means) - classes) <= 1)
    other = wg.generate(model, pitch, loud, inst, 1.0, SR, seed=6, feedback=0.0)
    np.testing.assert_array_equal(other, y)  # deterministic: the seed no longer matters

def _random_inputs(n, instruments, seed=0):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 256, n)
    pitch = (220.0 * 2 ** (rng.standard_normal(n).cumsum() * 0.002)).astype(np.float32)
    loud = np.clip(-30 + 3 * rng.standard_normal(n).cumsum() * 0.05, -100, 0).astype(np.float32)
    inst = np.full(n, min(1.4, instruments - 1), np.float32)
    return classes, pitch, loud, inst


@pytest.mark.parametrize("path", [wg.TEST_MODEL, SHIPPED, "harmonics-5"])
def test_kernel_is_the_model(path):
    """The numba generation kernel's probabilities equal the torch model's, teacher-forced on the same inputs
    (also for a model with 5 phase harmonics in its conditioning and the period input)."""
    if path == "harmonics-5":
        torch.manual_seed(3)
        model = wg.build_model(dict(wg.PRESETS["tiny"], instruments=3, sample_rate=SR, phase_harmonics=5,
                                    period_input=1))
        assert model.local == wg.local_rows(5) + 1 == 13
    else:
        assert os.path.isfile(path), f"{path} is shipped (see patches/models/README.md)"
        model = wg.load_checkpoint(path)["model"]
    n = 1500 if path != SHIPPED else 2500  # more than the shipped model's receptive field (1024)
    classes, pitch, loud, inst = _random_inputs(n, model.instruments)
    cond, _ = wg.local_conditioning(pitch, loud, SR, harmonics=model.harmonics)
    nl = wg.local_rows(model.harmonics)
    if model.local > nl:  # the period input: the given signal one period earlier
        past = wg.mu_law_decode(classes[:-1])
        cond = np.concatenate([cond] + [wg.period_row(past, pitch, SR, 0, o)[None]
                                        for o in wg.period_offsets(model.local - nl)])
    prev = np.concatenate([[wg.CLASSES // 2], classes[:-1]])
    with torch.no_grad():
        lg = model(torch.from_numpy(prev)[None], torch.from_numpy(cond)[None], torch.tensor([float(inst[0])]))
        ref = torch.log_softmax(lg, 1)[0].T.numpy()
    got = wg.Generator(model, SR).teacher_forced(classes, pitch, loud, inst)
    assert np.max(np.abs(got - ref)) < 2e-4


def test_mu_law_round_trip():
    x = np.linspace(-1, 1, 10001)
    y = wg.mu_law_decode(wg.mu_law_encode(x))
    # 8-bit mu-law: the half step grows with the level, ln(256) / 255 = 2.2 % of it
    assert np.all(np.abs(y - x) <= 0.0221 * (np.abs(x) + 1 / 255))
    assert np.array_equal(wg.mu_law_encode(wg.mu_law_decode(np.arange(256))), np.arange(256))


PATCH = """
sample_rate: 16000
nodes:
  lfo: {type: lfo, freq: 3}
  g: {type: wavenet_gen, model: %s, pitch: {from: lfo, range: [150, 400], curve: exp},
      loudness: -20, instrument: 1.5, temperature: 1.0, seed: 4}
out: g
"""


def _render(text, frames, block_size, tmp_path, name="p.yaml"):
    import shutil

    os.makedirs(tmp_path / "models", exist_ok=True)
    shutil.copy(wg.TEST_MODEL, tmp_path / "models" / "tiny.pt")
    p = tmp_path / name
    p.write_text(text)
    eng = Engine(load_patch(str(p)), block_size=block_size)
    return eng, eng.render(frames)


def test_block_size_invariance_and_reset(tmp_path):
    text = PATCH % "models/tiny.pt"
    ref = None
    for bs in (1, 37, 512):
        eng, y = _render(text, 3000, bs, tmp_path)
        if ref is None:
            ref = y
            eng.reset()
            assert np.array_equal(eng.render(3000), ref)  # reset repeats it, random draws included
        else:
            assert np.array_equal(y, ref), bs
    assert np.all(np.isfinite(ref)) and np.max(np.abs(ref)) <= 1.0
    _, other = _render(text.replace("seed: 4", "seed: 5"), 3000, 64, tmp_path)
    assert not np.array_equal(other, ref)  # the seed is the sampling generator's


def test_primer_is_played_then_continued(tmp_path):
    import soundfile as sf

    t = np.arange(800) / SR
    sf.write(str(tmp_path / "primer.wav"), 0.5 * np.sin(2 * np.pi * 200 * t), SR, subtype="FLOAT")
    text = PATCH % "models/tiny.pt"
    text = text.replace("seed: 4}", "seed: 4, primer: primer.wav}")
    _, y = _render(text, 2000, 64, tmp_path)
    want = wg.mu_law_decode(wg.mu_law_encode(0.5 * np.sin(2 * np.pi * 200 * t)))
    assert np.allclose(y[0, :800], want, atol=1e-6)
    _, y2 = _render(text, 2000, 7, tmp_path)
    assert np.array_equal(y, y2)


# ------------------------------------------------------------------ the shipped model
@pytest.fixture(scope="module")
def shipped_notes(tmp_path_factory):
    """Ground-truth renders (labels: pitch and loudness curves) at held-out pitches of the shipped model."""
    assert os.path.isfile(SHIPPED), "patches/models/wavenet-gen.pt is shipped (see patches/models/README.md)"
    from patchlib.dataset import DatasetConfig, render_dataset

    out = str(tmp_path_factory.mktemp("heldout"))
    render_dataset(DatasetConfig(out=out, pitches=[50, 55, 60, 65, 70], velocities=[100], seconds=2.0, release=1.5,
                                 workers=0, progress=False, heldout_pitch_every=0))
    ck = wg.load_checkpoint(SHIPPED)
    names = ck["config"]["instrument_names"]
    notes = load_notes(out, "train", names) + load_notes(out, "valid", names) + load_notes(out, "test", names)
    return ck, {(n["instrument"], n["pitch"]): n for n in notes}


def _gen(ck, note, seconds=1.5, temp=None):
    n = int(seconds * SR)
    temp = ck["validation"].get("eval_temperature", 1.0) if temp is None else temp
    mean = ck["validation"].get("eval_output") == "mean"  # measured as the patches play it (output: mean)
    fb = ck["validation"].get("eval_feedback", 1.0)  # and at the node's default feedback
    return wg.generate(ck["model"], note["f0_curve"][:n], note["loud"][:n], note["inst"], temp, SR, seed=1,
                       mean_out=mean, feedback=fb)


@pytest.mark.parametrize("inst,pitch", [("saw", 55), ("bowed", 65), ("pluck", 60), ("pluck", 70), ("bell", 60)])
def test_shipped_heldout_pitch_within_25_cents(shipped_notes, inst, pitch):
    """Notes at pitches the model never heard are in tune: median YIN f0 of the held part (the bell, whose
    own render YIN hears one or two octaves low: its strongest partial near the pitch, as its truth's)."""
    ck, notes = shipped_notes
    note = notes[(inst, pitch)]
    assert pitch in ck["validation"]["heldout_pitches"]
    cents, truth, how = note_pitch_cents(_gen(ck, note), note["audio"], SR, note["f0"])
    assert how == ("partial" if inst == "bell" else "yin")
    assert abs(cents) <= 25.0 and abs(truth) <= 25.0, (cents, truth)


@pytest.mark.parametrize("inst,pitch", [("pluck", 65), ("bell", 55), ("saw", 65)])
def test_shipped_timbre_nearer_its_instrument(shipped_notes, inst, pitch):
    """A generated note is nearer its own instrument's ground truth than half the distance between instruments
    (the issue's timbre target; met by every pluck and bell note, 3 of the 5 saw and 2 of the 5 bowed notes)."""
    ck, notes = shipped_notes
    note = notes[(inst, pitch)]
    d = multires_log_spectral_distance(_gen(ck, note, seconds=2.0), note["audio"])
    inter = np.mean([multires_log_spectral_distance(note["audio"], notes[(o, pitch)]["audio"])
                     for o in ck["config"]["instrument_names"] if o != inst])
    assert d / inter < 0.5, d / inter


def test_shipped_free_run_does_not_drift_off_zero(shipped_notes):
    """--input-drift's purpose, measured: running free for 2 s at a held-out pitch (MIDI 60), no instrument's
    waveform drifts off zero; the mean over every 0.1 s stays within 0.03 (the truths: within 0.016; the model
    trained without the option drifted to 0.21 on the bowed string and 0.04 on the pluck)."""
    ck, notes = shipped_notes
    for inst in ck["config"]["instrument_names"]:
        y = _gen(ck, notes[(inst, 60)], seconds=2.0)
        means = y[:y.size // 1600 * 1600].reshape(-1, 1600).mean(axis=1)
        assert np.sqrt(np.mean(y ** 2)) > 0.01, inst  # a note, not silence
        assert np.abs(means).max() < 0.03, (inst, np.round(means, 3))


@pytest.mark.slow
def test_shipped_all_heldout_pitch_timbre_and_speed(shipped_notes):
    """Every instrument at every held-out pitch: what the shipped model measures (patches/models/README.md), as
    the node plays it by default (temperature 1, feedback 0, output: mean; the same for any seed).

    Every note is in tune (within 25 cents; the largest error is 13.5 cents, a pluck). The issue's timbre target
    (ratio < 0.5) is met by 15 of the 20 notes: every bell and pluck, the saw at MIDI 55, 65 and 70 and the bowed
    string at 50 and 55; NOT by the saw at 50 and 60 (0.51, 0.55) nor the bowed string at 60, 65 and 70
    (0.53-0.57; docs/generators.md). This guards what there is: every bell and pluck under 0.5, at least 3 saw
    and 2 bowed notes, a mean under 0.4 and none above 0.7. The kernel runs at least real time.
    """
    ck, notes = shipped_notes
    names = ck["config"]["instrument_names"]
    ratios, bad = {}, {}
    for (inst, p), note in notes.items():
        y = _gen(ck, note, seconds=2.0)
        cents, _, _ = note_pitch_cents(y, note["audio"], SR, note["f0"])
        if not abs(cents) <= 25.0:
            bad[(inst, p)] = cents
        d = multires_log_spectral_distance(y, note["audio"])
        inter = np.mean([multires_log_spectral_distance(note["audio"], notes[(o, p)]["audio"])
                         for o in names if o != inst])
        ratios[(inst, p)] = d / inter
    assert not bad, bad
    r = np.array(list(ratios.values()))
    assert r.mean() < 0.4 and r.max() < 0.7, ratios
    assert all(v < 0.5 for (inst, _), v in ratios.items() if inst in ("pluck", "bell")), ratios
    assert sum(v < 0.5 for (inst, _), v in ratios.items() if inst == "saw") >= 3, ratios
    assert sum(v < 0.5 for (inst, _), v in ratios.items() if inst == "bowed") >= 2, ratios
    g = wg.Generator(ck["model"], SR)
    out = np.zeros(SR, np.float32)
    a = [np.full(SR, v, np.float32) for v in (220.0, -25.0, 1.0, 1.0)]
    g(out, SR, *a)
    t0 = time.perf_counter()
    g(out, SR, *a)
    assert time.perf_counter() - t0 < 1.0


def test_the_node_plays_the_shipped_model_as_measured(tmp_path):
    """The node's temperature and feedback defaults are the ones the checkpoint was measured at (1 and 0 for the
    shipped model; 1 and 1 for a checkpoint that records none), and a patch without them plays exactly what
    generate() gives at those values."""
    import shutil

    ck = wg.load_checkpoint(SHIPPED)
    assert (ck["validation"]["eval_temperature"], ck["validation"]["eval_feedback"]) == (1.0, 0.0)
    os.makedirs(tmp_path / "models")
    shutil.copy(SHIPPED, tmp_path / "models" / "g.pt")
    shutil.copy(wg.TEST_MODEL, tmp_path / "models" / "tiny.pt")
    p = tmp_path / "p.yaml"
    p.write_text("sample_rate: 16000\nnodes:\n  g: {type: wavenet_gen, model: models/g.pt, pitch: 220, "
                 "loudness: -25, instrument: 3}\n  t: {type: wavenet_gen, model: models/tiny.pt}\n"
                 "  m: {type: mix, in: [g, t], gains: [1, 0]}\nout: m\n")
    spec = load_patch(str(p))
    params = spec.nodes["g"].ports()[2]
    assert (params["temperature"].default, params["feedback"].default) == (1.0, 0.0)
    assert spec.nodes["t"].ports()[2]["feedback"].default == 1.0
    y = Engine(spec, block_size=256).render(4000)[0]
    want = wg.generate(ck["model"], np.full(4000, 220.0), -25.0, 3.0, 1.0, SR, seed=1234, mean_out=True,
                       feedback=0.0)  # feedback 0: the seed does not matter
    np.testing.assert_allclose(y, want, atol=1e-6)
