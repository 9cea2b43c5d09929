"""patchlib.dataset: labelled notes and parameter sweeps, in-process and on Dask.

Measured properties only: the f0 label against the pitch measured on the
audio, the loudness curves against RMS computed here, byte-identical files
from a two-worker LocalCluster and from this process, resumption that
renders exactly what is missing, held-out splits, and sweeps whose spectral
centroid rises with the swept cutoff.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from patchlib import dataset as ds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INST = os.path.join(ROOT, "patches", "instruments")
TINY = dict(instruments=[os.path.join(INST, "pluck.yaml"), os.path.join(INST, "saw.yaml")],
            pitches=[45, 57, 64], velocities=[64, 127], seconds=1.0, release=0.7,
            heldout_pitch_every=3, heldout_velocities=[64], valid_fraction=0.0, progress=False)


def _files(root):
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                  if os.path.isfile(p))


def _read(path):
    x, sr = sf.read(path, dtype="float64")
    return x, sr


def _pitch(x, sr, fmin=50.0, fmax=2000.0):
    """f0 by normalised autocorrelation: the first lag whose peak is within 10 % of the best."""
    x = x - x.mean()
    n = 1 << int(np.ceil(np.log2(2 * x.size)))
    spec = np.fft.rfft(x, n)
    r = np.fft.irfft(np.abs(spec) ** 2, n)[: x.size]
    r /= r[0]
    lo, hi = int(sr / fmax), int(sr / fmin)
    seg = r[lo:hi]
    peaks = [i for i in range(1, seg.size - 1) if seg[i] > seg[i - 1] and seg[i] >= seg[i + 1]]
    best = max(seg[i] for i in peaks)
    i = next(i for i in peaks if seg[i] >= 0.9 * best)
    y0, y1, y2 = seg[i - 1], seg[i], seg[i + 1]
    shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    return sr / (lo + i + shift)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ds") / "inproc")
    man = ds.render_dataset(ds.DatasetConfig(out=out, workers=0, **TINY))
    return out, man


def test_instruments_are_four_and_play_notes():
    files = ds.instrument_files([INST])
    assert {"pluck", "bowed", "saw", "bell"} <= set(files)
    # each is a different instrument: spectral centroid and decay differ clearly at one note
    cents, tails = {}, {}
    for name in ("pluck", "bowed", "saw", "bell"):
        cfg = ds.DatasetConfig(out="", instruments=[files[name]], pitches=[60], velocities=[100],
                               seconds=1.5, release=1.0)
        job = ds.make_jobs(cfg)[0]
        res = ds.render_note(job)
        x = ds._decode_wav(res["wav"])[0].astype(np.float64)
        assert np.all(np.isfinite(x)) and 1e-3 < np.max(np.abs(x)) < 1.0
        mag = np.abs(np.fft.rfft(x[:16000]))
        f = np.fft.rfftfreq(16000, 1 / 16000)
        cents[name] = float((mag * f).sum() / mag.sum())
        tails[name] = float(np.sqrt(np.mean(x[12000:16000] ** 2)) / np.sqrt(np.mean(x[:4000] ** 2)))
    # the bowed string sustains (as loud at the end of the held note as at its start), the pluck decays
    assert tails["bowed"] > 0.5 > tails["pluck"]
    # every pair differs by a fifth in spectral centroid or by 2x in how much of the sound is left
    names = sorted(cents)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            bright = abs(np.log(cents[a] / cents[b])) > np.log(1.5)
            decay = abs(np.log(tails[a] / tails[b])) > np.log(2)
            assert bright or decay, (a, b, cents, tails)


def test_files_labels_and_manifest(rendered):
    out, man = rendered
    assert len(man["notes"]) == 2 * 3 * 2
    for n in man["notes"]:
        lab = json.load(open(os.path.join(out, n["labels"])))
        x, sr = _read(os.path.join(out, n["audio"]))
        assert sr == 16000 and x.size == 16000
        info = sf.info(os.path.join(out, n["audio"]))
        assert info.subtype == "PCM_16"
        assert (lab["instrument"], lab["pitch"], lab["velocity"]) == (n["instrument"], n["pitch"], n["velocity"])
        frames = x.size // 256 + 1
        for key in ("f0_hz", "f0_measured_hz", "f0_confidence", "loudness_db", "rms_db"):
            assert len(lab[key]) == frames, key
        assert lab["f0_hz"][0] == pytest.approx(440 * 2 ** ((n["pitch"] - 69) / 12), abs=1e-3)


@pytest.mark.parametrize("inst", ["pluck", "saw"])
def test_f0_label_matches_measured_pitch(rendered, inst):
    out, man = rendered
    for n in man["notes"]:
        if n["instrument"] != inst:
            continue
        lab = json.load(open(os.path.join(out, n["labels"])))
        x, sr = _read(os.path.join(out, n["audio"]))
        f0 = lab["f0_hz"][0]
        heard = _pitch(x[1600:8000], sr)  # 0.1-0.5 s: the note held
        assert abs(1200 * np.log2(heard / f0)) < 25, (n["note"], heard, f0)
        # the label's own measured curve agrees where it is confident
        fm = np.array(lab["f0_measured_hz"])[6:31]
        conf = np.array(lab["f0_confidence"])[6:31]
        ok = fm[conf > 0.8]
        assert ok.size > 10
        assert abs(1200 * np.log2(np.median(ok) / f0)) < 25, n["note"]


def test_loudness_tracks_rms(rendered):
    out, man = rendered
    for n in man["notes"]:
        lab = json.load(open(os.path.join(out, n["labels"])))
        x, sr = _read(os.path.join(out, n["audio"]))
        hop, frame = lab["hop"], lab["frame"]
        pad = np.concatenate([np.zeros(frame // 2), x, np.zeros(frame)])
        mine = np.array([10 * np.log10(max(np.mean(pad[i * hop:i * hop + frame] ** 2), 1e-30))
                         for i in range(len(lab["rms_db"]))])
        rms = np.array(lab["rms_db"])
        loud = np.array(lab["loudness_db"])
        keep = mine > -90
        assert np.max(np.abs(rms[keep] - mine[keep])) < 0.02
        # the A-weighted curve follows the same envelope (highly correlated), and falls after the release
        assert np.corrcoef(loud[keep], mine[keep])[0, 1] > 0.9
        rel = int(lab["release_s"] * sr / hop)
        assert loud[rel + 8] < loud[rel - 2] - 3
    # a harder note is louder
    by = {(n["instrument"], n["pitch"], n["velocity"]): n for n in man["notes"]}
    for inst in ("pluck", "saw"):
        soft = json.load(open(os.path.join(out, by[(inst, 57, 64)]["labels"])))
        hard = json.load(open(os.path.join(out, by[(inst, 57, 127)]["labels"])))
        assert np.mean(hard["loudness_db"][2:40]) > np.mean(soft["loudness_db"][2:40]) + 3


def test_analysis_functions_on_known_signals():
    sr = 16000
    t = np.arange(sr) / sr
    for f in (65.4, 220.0, 1046.5):
        f0, conf = ds.yin_f0(0.5 * np.sin(2 * np.pi * f * t), sr)
        mid = f0[5:-5]
        assert np.all(np.abs(1200 * np.log2(mid / f)) < 2) and np.all(conf[5:-5] > 0.95)
    assert np.all(ds.yin_f0(np.zeros(sr), sr)[0] == 0)
    # a 1 kHz sine reads its plain RMS (A-weighting is 0 dB there); a 100 Hz one about 19 dB less
    one_k = ds.loudness_db(np.sin(2 * np.pi * 1000 * t), sr)[5:-5]
    assert np.allclose(one_k, 20 * np.log10(np.sqrt(0.5)), atol=0.1)
    low = ds.loudness_db(np.sin(2 * np.pi * 100 * t), sr)[5:-5]
    assert np.median(one_k - low) == pytest.approx(19.1, abs=0.5)


def test_splits_keep_heldout_out_of_training(rendered, tmp_path):
    out, man = rendered
    assert man["heldout_pitches"] == [57] and man["heldout_velocities"] == [64]
    for n in man["notes"]:
        held = n["pitch"] in man["heldout_pitches"] or n["velocity"] in man["heldout_velocities"]
        assert (n["split"] == "test") == held
    train = ds.load_split(out, "train")
    assert train and all(lab["pitch"] != 57 and lab["velocity"] != 64 for lab in train)
    # default: every 5th pitch from the middle of each group, and a valid fraction of the rest
    cfg = ds.DatasetConfig(out="", pitches=list(range(36, 85)))
    hp = ds.heldout_pitches(cfg)
    assert hp == list(range(38, 85, 5)) and 36 not in hp
    names = [f"x_{p}-{v}" for p in range(200) for v in (1, 2)]
    valid = sum(ds.split_of(nm, 0, 0, [], [], 0.1, 0) == "valid" for nm in names)
    assert 20 < valid < 60


def test_resume_renders_only_what_is_missing(rendered, tmp_path):
    out, man = rendered
    work = str(tmp_path / "resume")
    shutil.copytree(out, work)
    gone = man["notes"][3]["note"]
    os.unlink(os.path.join(work, "audio", gone + ".wav"))
    bad = man["notes"][7]["note"]
    with open(os.path.join(work, "audio", bad + ".wav"), "r+b") as fh:  # a damaged file: its hash differs
        fh.seek(2000)
        fh.write(b"\x7f" * 16)
    again = ds.render_dataset(ds.DatasetConfig(out=work, workers=0, **TINY))
    assert sorted(again["rendered"]) == sorted([gone, bad])
    assert _files(work) == _files(out)
    for f in _files(out):
        assert open(os.path.join(work, f), "rb").read() == open(os.path.join(out, f), "rb").read(), f
    # nothing left to do: nothing rendered; a changed setting renders everything
    assert ds.render_dataset(ds.DatasetConfig(out=work, workers=0, **TINY))["rendered"] == []
    changed = dict(TINY, release=0.6)
    assert len(ds.render_dataset(ds.DatasetConfig(out=work, workers=0, **changed))["rendered"]) == 12


def test_a_new_renderer_version_renders_everything_again(rendered, tmp_path, monkeypatch):
    """Notes rendered before a change that alters the sound (``RENDERER``) are not mixed with new ones."""
    out, man = rendered
    assert man["renderer"] == ds.RENDERER
    work = str(tmp_path / "old")
    shutil.copytree(out, work)
    monkeypatch.setattr(ds, "RENDERER", ds.RENDERER + 1)
    again = ds.render_dataset(ds.DatasetConfig(out=work, workers=0, **TINY))
    assert sorted(again["rendered"]) == sorted(n["note"] for n in man["notes"])
    assert again["renderer"] == ds.RENDERER


def test_local_cluster_of_two_workers_gives_identical_bytes(rendered, tmp_path):
    out, _ = rendered
    dist = str(tmp_path / "dask")
    ds.render_dataset(ds.DatasetConfig(out=dist, workers=2, **TINY))  # real worker processes
    assert _files(dist) == _files(out)
    for f in _files(out):
        assert open(os.path.join(dist, f), "rb").read() == open(os.path.join(out, f), "rb").read(), f


SWEEP_PATCH = """\
duration: 0.5s
sample_rate: 16000
nodes:
  osc:  {type: saw, freq: 110}
  filt: {type: lowpass, in: osc, cutoff: {from: lfo, range: [300, 900]}, q: 0.707}
  lfo:  {type: sine, freq: 0.2}
  amp:  {type: gain, in: filt, gain: 0.3}
out: amp
"""


def _centroid(path):
    """Power-weighted spectral centroid (Hann window) after the first 50 ms."""
    x, sr = _read(path)
    x = x[800:]
    power = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return float((power * f).sum() / power.sum())


def test_sweep_renders_one_file_per_point(tmp_path):
    patch = tmp_path / "tone.yaml"
    patch.write_text(SWEEP_PATCH)
    out = str(tmp_path / "sweep")
    man = ds.render_sweep(str(patch), out, ["cutoff=200:4kHz:4:log"], workers=0, progress=False)
    pts = man["points"]
    assert len(pts) == 4 and sorted(os.listdir(out)) == sorted([p["file"] for p in pts] + ["manifest.json"])
    vals = [p["params"]["filt.cutoff"] for p in pts]
    assert vals[0] == 200 and vals[-1] == 4000
    assert np.allclose(np.diff(np.log(vals)), np.log(20) / 3, rtol=1e-4)  # equal ratios
    cents = [_centroid(os.path.join(out, p["file"])) for p in pts]
    assert all(b > 1.15 * a for a, b in zip(cents, cents[1:])), cents
    assert json.load(open(os.path.join(out, "manifest.json")))["points"][2]["sha256"] == pts[2]["sha256"]
    # a grid of two params on the Dask path (threads in this process: the executor is the same), same bytes
    grid = str(tmp_path / "grid")
    man2 = ds.render_sweep(str(patch), grid, ["filt.cutoff=200:4000:2", "amp.gain=0.1:0.3:3"], workers=2,
                           progress=False, processes=False)
    assert len(man2["points"]) == 6
    assert [p["params"] for p in man2["points"]][:3] == [
        {"filt.cutoff": 200.0, "amp.gain": g} for g in (0.1, 0.2, 0.3)]
    g1, g3 = (_read(os.path.join(grid, man2["points"][i]["file"]))[0] for i in (3, 5))
    assert np.sqrt(np.mean(g3 ** 2)) / np.sqrt(np.mean(g1 ** 2)) == pytest.approx(3.0, rel=0.02)
    again = ds.render_sweep(str(patch), str(tmp_path / "again"), ["filt.cutoff=200:4000:2", "amp.gain=0.1:0.3:3"],
                            workers=0, progress=False)
    assert [p["sha256"] for p in again["points"]] == [p["sha256"] for p in man2["points"]]


def test_sweep_errors_name_the_problem(tmp_path):
    patch = tmp_path / "tone.yaml"
    patch.write_text(SWEEP_PATCH)
    for bad, msg in (("cutoff=200:2000", "expected"), ("nope=1:2:3", "on no node"),
                     ("filt.cutoff=5:30000:3", "out of range"), ("osc.cutoff=200:2000:2", "no param")):
        with pytest.raises(ValueError, match=msg):
            ds.render_sweep(str(patch), str(tmp_path / "x"), [bad], workers=0, progress=False)


def _cli():
    p = argparse.ArgumentParser(prog="patchlib")
    sub = p.add_subparsers(dest="command")
    ds.add_dataset_parser(sub)
    r = sub.add_parser("render")  # as patchlib.cli builds it
    r.add_argument("patch")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--input")
    r.add_argument("--seconds", type=float)
    r.add_argument("--block-size", type=int)
    r.add_argument("--sample-rate", type=int)
    r.add_argument("--spectrogram")
    r.add_argument("--format", default="pcm24")
    r.add_argument("-q", "--quiet", action="store_true")
    ds.add_sweep_args(r)
    return p, r


def test_command_line(tmp_path, capsys):
    p, r = _cli()
    assert "patchlib render" in r.format_help() and "--sweep" in r.format_help()
    d_help = p._subparsers._group_actions[0].choices["dataset"].format_help()
    assert "examples:" in d_help and "--scheduler" in d_help and "patchlib dataset -o" in d_help
    out = str(tmp_path / "cli")
    a = p.parse_args(["dataset", "-o", out, "--instruments", os.path.join(INST, "bell.yaml"), "--pitches", "60,72",
                      "--velocities", "100", "--seconds", "0.5", "--release", "0.3", "--workers", "0",
                      "--format", "float"])
    assert a.handler(a) == 0
    assert "2 notes (2 rendered" in capsys.readouterr().out
    assert sf.info(os.path.join(out, "audio", "bell_060-100.wav")).subtype == "FLOAT"
    patch = tmp_path / "tone.yaml"
    patch.write_text(SWEEP_PATCH)
    a = p.parse_args(["render", str(patch), "-o", str(tmp_path / "sw"), "--sweep", "cutoff=300:600:2",
                      "--workers", "0", "-q", "--seconds", "0.2"])
    assert ds.run_sweep(a) == 0
    assert len(json.load(open(tmp_path / "sw" / "manifest.json"))["points"]) == 2
    assert sf.info(str(next((tmp_path / "sw").glob("*.wav")))).frames == 3200
    a = p.parse_args(["render", str(patch), "-o", str(tmp_path / "x.wav"), "--sweep", "cutoff=300:600:2"])
    assert ds.run_sweep(a) == 2
    a = p.parse_args(["render", str(patch), "-o", str(tmp_path / "y"), "--sweep", "cutoff=300:600"])
    assert ds.run_sweep(a) == 2
    assert "expected [NODE.]PARAM=LO:HI:N" in capsys.readouterr().err


def test_the_real_command_line_runs_dataset_and_sweeps(tmp_path, capsys):
    """Through patchlib.cli.main, as a user types it."""
    from patchlib.cli import main

    out = str(tmp_path / "d")
    assert main(["dataset", "-o", out, "--instruments", os.path.join(INST, "pluck.yaml"), "--pitches", "60",
                 "--velocities", "100", "--seconds", "0.4", "--release", "0.3", "--workers", "0", "-q"]) == 0
    assert os.path.exists(os.path.join(out, "audio", "pluck_060-100.wav"))
    patch = tmp_path / "tone.yaml"
    patch.write_text(SWEEP_PATCH)
    assert main(["render", str(patch), "-o", str(tmp_path / "sw"), "--sweep", "cutoff=300:600:3",
                 "--workers", "0", "-q", "--seconds", "0.1"]) == 0
    assert len(list((tmp_path / "sw").glob("*.wav"))) == 3
