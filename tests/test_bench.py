"""Tests of `patchlib bench` (patchlib/bench.py): it runs the workloads, reports, and compares like with like.

No timing assertions here: the speed targets live in docs/benchmarks.md.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from patchlib import bench, cli, load_patch

SR = bench.SAMPLE_RATE
PYO = importlib.util.find_spec("pyo") is not None
needs_pyo = pytest.mark.skipif(not PYO, reason="pyo not installed")


def _rms(y) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(y * y)))


def test_run_reports_both_workloads(tmp_path):
    out = tmp_path / "sub" / "b.md"
    res = bench.run(seconds=0.3, block_sizes=(256,), output=str(out), repeats=1, quiet=True,
                    workloads="voices,strings")  # the neural pedals: test_neural_workload
    assert list(res["workloads"]) == ["voices", "strings"]
    voices, strings = res["workloads"]["voices"]["blocks"][256], res["workloads"]["strings"]["blocks"][256]
    assert res["blocks"][256] is voices  # the old shape still holds the voice bank
    for row, engines in ((voices, ["patchlib", "scipy"] + ["pyo"] * PYO), (strings, ["patchlib"] + ["pyo"] * PYO)):
        for e in engines:
            assert row[e] is not None and row[e] > 0, (e, res["errors"])
            assert row["rms"][e] > 0.005, e
    assert strings["scipy"] is None and strings["patchlib/scipy"] is None
    assert voices["patchlib/scipy"] == pytest.approx(voices["patchlib"] / voices["scipy"])
    if PYO:
        for row in (voices, strings):
            assert row["patchlib/pyo"] == pytest.approx(row["patchlib"] / row["pyo"])
    assert res["seconds"] == 0.3 and res["voices"] == 16 and res["strings"] == 8 and res["sample_rate"] == 48000

    # targets: ratios to pyo per workload, faster than scipy, start-up; each measured one says met or not
    goals = {(t["workload"], t["unit"]): t["goal"] for t in res["targets"]}
    assert goals == {("voices", "× pyo"): 1.0, ("voices", "× scipy"): 1.0, ("strings", "× pyo"): 2.0,
                     ("startup", "s"): 2.0}
    for t in res["targets"]:
        if t["unit"] == "× pyo" and not PYO:
            assert t["met"] is None
        else:
            assert t["met"] is (t["measured"] >= t["goal"] if t["unit"] == "× pyo" else
                                t["measured"] > t["goal"] if t["unit"] == "× scipy" else t["measured"] < t["goal"])
    assert res["all_met"] == all(t["met"] is True for t in res["targets"])
    s = res["startup"]
    assert set(s["workloads"]) == {"voices", "strings"} and 0 < s["import"] < s["total"] < s["process"]

    text = out.read_text(encoding="utf-8")
    order = [text.index(h) for h in ("## Voice bank", "## Plucked strings", "## Start-up",
                                     "## What each engine runs", "## How to reproduce")]
    assert order == sorted(order)
    assert "| block size | patchlib ×RT | pyo ×RT | scipy ×RT | patchlib/pyo | patchlib/scipy |" in text
    assert "| block size | patchlib ×RT | pyo ×RT | patchlib/pyo |" in text
    assert text.count("\n| 256 | ") == 2
    assert "plucked strings: patchlib ≥ 2.0× pyo at block 256" in text
    assert "Waveguide(" in text and "Biquad(" in text  # what pyo runs, per workload
    assert "patchlib bench" in text and res["machine"]["cpu"] in text
    assert ("All targets are met." in text) == res["all_met"]
    for t in res["targets"]:
        assert t["what"] in text
        if t["met"] is False:
            assert "**NO**" in text and "**Not met:**" in text


def test_skipped_engines_are_na_and_one_workload_runs(capsys):
    res = bench.run(seconds=0.1, block_sizes=(64,), output=None, pyo=False, scipy=False, repeats=1,
                    startup=False, workloads="voices")
    assert list(res["workloads"]) == ["voices"]
    row = res["blocks"][64]
    assert row["patchlib"] > 0 and row["pyo"] is None and row["scipy"] is None
    assert row["patchlib/pyo"] is None and row["patchlib/scipy"] is None
    assert res["errors"] == {"pyo": "not requested", "scipy": "not requested"}
    # skipped comparisons leave their targets unmeasured, never met
    assert [t["met"] for t in res["targets"]] == [None, None] and res["all_met"] is False
    assert "n/a" in capsys.readouterr().out
    text = bench.report(res)
    assert "## Plucked strings" not in text and "Targets not measured" in text


def test_strings_only_without_pyo():
    res = bench.run(seconds=0.1, block_sizes=(64,), output=None, pyo=False, repeats=1, startup=False,
                    quiet=True, workloads=["strings"])
    assert list(res["workloads"]) == ["strings"] and res["blocks"] == {}
    assert res["workloads"]["strings"]["blocks"][64]["patchlib"] > 0
    assert res["errors"] == {"strings/pyo": "not requested"}


def test_unknown_workload_is_an_error():
    with pytest.raises(ValueError, match="voices, strings, neural"):
        bench.run(seconds=0.1, output=None, workloads="voices,drums", quiet=True)
    assert bench._workloads("strings, voices") == ("voices", "strings")
    assert bench._workloads("neural,voices") == ("voices", "neural")
    assert bench.WORKLOADS == ("voices", "strings", "neural", "generators", "live")  # the default run has all


def test_patch_is_the_voice_bank():
    p = bench.voice_bank_patch(64)
    nodes = p["nodes"]
    assert p["block_size"] == 64 and p["sample_rate"] == 48000 and p["out"] == "sum"
    assert sum(1 for n in nodes.values() if n["type"] == "saw") == 16
    assert sum(1 for n in nodes.values() if n["type"] == "lowpass") == 16
    assert nodes["osc7"]["freq"] == pytest.approx(110.0)
    assert nodes["lfo0"]["freq"] == pytest.approx(0.1) and nodes["lfo15"]["freq"] == pytest.approx(2.0)
    assert nodes["flt3"]["cutoff"] == {"from": "lfo3", "range": [300.0, 3000.0], "curve": "exp"}
    assert nodes["sum"]["gains"] == [1 / 16] * 16


def test_strings_patch_plucks_eight_strings_every_half_second():
    p = bench.strings_patch(64, seconds=2.0)
    nodes = p["nodes"]
    assert p["block_size"] == 64 and p["out"] == "mix" and p["duration"] == 2.0
    strings = [nodes[f"s{k}"] for k in range(8)]
    assert all(n["type"] == "string" for n in strings)
    # E2 A2 D3 G3 B3 E4 A4 D5
    expect = [82.407, 110.0, 146.832, 195.998, 246.942, 329.628, 440.0, 587.330]
    assert [n["freq"] for n in strings] == pytest.approx(expect, abs=1e-3)
    assert nodes["mix"]["gains"] == [1 / 8] * 8 and nodes["mix"]["in"] == [f"s{k}" for k in range(8)]
    times = [ev["at"] for ev in p["score"]]
    assert times == sorted(times) and len(times) == 8 * 4
    for k in range(8):
        ts = [ev["at"] for ev in p["score"] if ev["trigger"] == f"s{k}"]
        assert ts == pytest.approx([k / 16 + 0.5 * j for j in range(4)])
    assert {ev["velocity"] for ev in p["score"]} == {0.8}
    # no two plucks on one sample
    assert len({round(t * SR) for t in times}) == len(times)
    spec = load_patch(p)  # a valid patch, score included
    assert len(spec.score) == 32


@pytest.mark.parametrize("block_size", [64, 256])
def test_patchlib_and_scipy_render_the_same_patch(block_size):
    # Same voices, same phases, same sweep: the scipy chains differ only by
    # their naive saw and block-rate cutoff, so the audio nearly coincides.
    a = bench.render_patchlib(0.5, block_size).astype(np.float64)
    b = bench.render_scipy(0.5, block_size).astype(np.float64)
    assert a.shape == b.shape == (24000,)
    ra, rb = _rms(a), _rms(b)
    assert 0.05 < ra < 0.5
    assert rb == pytest.approx(ra, rel=0.05)
    assert np.corrcoef(a, b)[0, 1] > 0.85


def test_scipy_block_size_barely_matters():
    # the hand-written chains update the cutoff per block: 64 vs 256 changes
    # the sweep's staircase, not the sound
    a = bench.render_scipy(0.5, 64).astype(np.float64)
    b = bench.render_scipy(0.5, 256).astype(np.float64)
    assert _rms(b) == pytest.approx(_rms(a), rel=0.02)


@needs_pyo
def test_pyo_renders_the_voice_bank_at_the_same_length_and_level():
    y = bench.render_pyo(0.5, 256)
    assert y.shape == (24000,)  # trimmed: pyo renders whole 256-frame buffers
    p = bench.render_patchlib(0.5, 256)
    # pyo's saw starts at its wrap, patchlib's at its zero crossing; with
    # octave-related voices that moves the mix level, but not by 2x
    assert 0.5 < _rms(y) / _rms(p) < 2.0


def _peak_prominence_db(y, f, sr=SR):
    """Spectrum level within ±1.5 % of ``f`` over the median level of the octave around it, in dB."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    near = spec[(freqs > f * 0.985) & (freqs < f * 1.015)].max()
    octave = spec[(freqs > f / 1.41) & (freqs < f * 1.41)]
    return 20 * np.log10(near / np.median(octave))


@needs_pyo
def test_strings_sound_alike_in_both_engines():
    # Both engines pluck the same eight strings at the same times: a similar
    # level, every string's pitch a clear spectral peak, and the plucks every
    # 0.5 s (level in each half second alike).
    seconds = 1.0
    a = bench.render_patchlib(seconds, 64, "strings").astype(np.float64)
    b = bench.render_pyo(seconds, 64, "strings").astype(np.float64)
    assert a.shape == b.shape == (48000,)
    assert np.isfinite(a).all() and np.abs(a).max() < 1.0
    ra, rb = _rms(a), _rms(b)
    assert 0.005 < ra < 0.3
    assert 0.5 < ra / rb < 2.0, (ra, rb)
    semitone = 2 ** (1 / 12)
    for f in bench.string_freqs():
        for y in (a, b):
            peak = _peak_prominence_db(y, f)
            assert peak > 9, f  # every string sounds at its pitch ...
            assert peak > _peak_prominence_db(y, f * semitone) + 6, f  # ... and not a semitone off
    halves = [_rms(a[i * 24000:(i + 1) * 24000]) for i in range(2)]
    assert 0.5 < halves[1] / halves[0] < 2.0  # retriggered, not one pluck dying away


def test_cli_bench_runs_and_rejects_bad_arguments(tmp_path, capsys):
    out = tmp_path / "b.md"
    assert cli.main(["bench", "--workloads", "voices", "--seconds", "0.1", "--block-sizes", "64", "--repeats", "1",
                     "--no-pyo", "--no-scipy", "--no-startup", "--output", str(out)]) == 0
    assert "## Voice bank" in out.read_text(encoding="utf-8")
    assert cli.main(["bench", "--workloads", "drums", "--output", "-"]) == 2
    assert "use voices, strings" in capsys.readouterr().err
    assert cli.main(["bench", "--block-sizes", "64,x", "--output", "-"]) == 2
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["bench"].format_help()
    for word in ("voices", "strings", "neural", "--workloads", "examples:", "patchlib bench --seconds 5",
                 "--workloads neural"):
        assert word in help_text


# ------------------------------------------------------------------ the neural pedals
def _macs(row):
    import torch

    from nodes.neural import checkpoint
    from nodes.neural.lstm import LSTM
    from nodes.neural.wavenet import WaveNet, wavenet_config

    if row == "nam-wavenet":
        return WaveNet(**wavenet_config("standard")).macs_per_sample
    if row == "nam-lstm":
        return LSTM(1, 18, 3).macs_per_sample
    path = bench.SHIPPED_MODELS[row]
    with torch.inference_mode():
        return checkpoint.build(path, checkpoint.load(path)).macs_per_sample


@pytest.mark.skipif(not all(map(os.path.isfile, bench.SHIPPED_MODELS.values())), reason="no shipped model")
def test_neural_workload(tmp_path):
    out = tmp_path / "n.md"
    res = bench.run(seconds=0.2, block_sizes=(64,), output=str(out), repeats=1, startup=False, quiet=True,
                    workloads="neural")
    assert list(res["workloads"]) == ["neural"] and res["blocks"] == {} and res["errors"] == {}
    sec = res["workloads"]["neural"]
    assert list(sec["rows"]) == list(bench.NEURAL_ROWS)
    peak = sec["peak"]
    figures = [peak[k] for k in ("numpy_matmul", "torch_matmul", "numba_fma") if peak[k]]
    assert figures and peak["best"] == max(figures) > 0
    for row, info in sec["rows"].items():
        cell = info["blocks"][64]
        pedal = row in bench.NEURAL_FILES
        assert info["engines"] == (["fast", "torch"] if pedal else ["patchlib"])
        for e in info["engines"]:
            assert cell["rt"][e] > 0, (row, e)
            assert cell["rt"][e] == pytest.approx(0.2 / cell["wall"][e])
            # finite (else an error) and not silent; random weights may give nearly a constant, never exactly
            assert cell["rms"][e] > 1e-3 and cell["ac_rms"][e] > 1e-5, (row, e)
        if not pedal:
            assert info["macs"] is None and cell["gflops"] == {"patchlib": None}
            continue
        # the MACs are the models' own count; the fast engine computes the torch model's function
        assert info["macs"] == _macs(row)
        assert cell["rms"]["fast"] == pytest.approx(cell["rms"]["torch"], rel=1e-3)
        assert cell["fast/torch"] == pytest.approx(cell["rt"]["fast"] / cell["rt"]["torch"])
        for e in ("fast", "torch"):
            assert cell["gflops"][e] == pytest.approx(2 * info["macs"] * SR * cell["rt"][e] / 1e9)
            assert cell["peak_pct"][e] == pytest.approx(100 * cell["gflops"][e] / peak["best"])
    assert sec["rows"]["nam-wavenet"]["macs"] == 13320  # the issue's 13.3k
    assert sec["rows"]["nam-wavenet"]["arch"] == "WaveNet" and sec["rows"]["nam-lstm"]["arch"] == "LSTM"

    # targets: the fast engine at block 64, each met when its real-time factor reaches the goal
    assert {t["row"]: t["goal"] for t in res["targets"]} == {"overdrive": 10.0, "overdrive-wavenet": 10.0,
                                                             "nam-wavenet": 5.0, "nam-lstm": 10.0}
    for t in res["targets"]:
        assert t["unit"] == "×RT" and t["measured"] == sec["rows"][t["row"]]["blocks"][64]["rt"]["fast"]
        assert t["met"] is (t["measured"] >= t["goal"])
    assert res["all_met"] == all(t["met"] for t in res["targets"])

    text = out.read_text(encoding="utf-8")
    order = [text.index(h) for h in ("## Neural pedals", "## What each engine runs", "## How to reproduce")]
    assert order == sorted(order) and "## Start-up" not in text and "## Voice bank" not in text
    assert "| patch | block | MAC/sample | fast ×RT | torch ×RT | fast/torch |" in text
    assert "| NAM standard WaveNet (`.nam`) | 64 | 13,320 |" in text
    assert text.count("\n| ") == 1 + 7 + 1 + 4  # the header and seven rows; the targets' header and four
    assert "quoted from the issue, measured elsewhere and not by this run" in text and bench.NAM_REFERENCE in text
    assert "one-thread float32 peak" in text and "pyo renders whole buffers" not in text
    assert "{" not in text and "}" not in text  # every placeholder was filled in
    assert f"renders min(0.2, {bench.TORCH_SECONDS:g}) s" in text
    for t in res["targets"]:
        assert t["what"] in text


def test_neural_targets_need_block_64_and_a_measurement():
    def sec(rt):
        return {"rows": {row: {"blocks": {bs: {"rt": {"fast": rt}} for bs in (64, 256)}}
                         for row in bench.NEURAL_TARGETS}}

    assert [t["met"] for t in bench._neural_targets(sec(12.0))] == [True] * 4
    assert [t["met"] for t in bench._neural_targets(sec(7.0))] == [False, False, True, False]
    assert [t["met"] for t in bench._neural_targets(sec(None))] == [None] * 4  # a row that failed
    only_256 = {"rows": {row: {"blocks": {256: {"rt": {"fast": 50.0}}}} for row in bench.NEURAL_TARGETS}}
    assert bench._neural_targets(only_256) == []


def test_neural_patches_load_from_the_models_folder(tmp_path):
    failed = bench.write_neural_models(str(tmp_path))
    assert list(failed) == [row for row, path in bench.SHIPPED_MODELS.items() if not os.path.isfile(path)]
    rows = [r for r in bench.NEURAL_ROWS if r not in failed]
    for row in rows:
        p = bench.neural_patch(row, 64, 2.0, engine="torch")
        path = tmp_path / f"{row}.yaml"
        path.write_text(json.dumps(p), encoding="utf-8")
        spec = load_patch(str(path))
        fx = p["nodes"].get("fx")
        assert p["out"] == ("src" if row == "source" else "fx")
        if row in bench.NEURAL_FILES:
            assert fx["type"] == "pedal" and fx["engine"] == "torch" and fx["threads"] == 1
            assert (tmp_path / fx["model"]).is_file()
        elif row != "source":
            assert fx == {"type": "diode_clipper", "in": "src", "oversample": int(row[8])}
        # the riff: a note and a pluck every 0.25 s
        plucks = [ev["at"] for ev in p["score"] if "trigger" in ev]
        assert plucks == pytest.approx([0.25 * j for j in range(8)]) and len(spec.score) == 16
    with pytest.raises(ValueError, match="unknown neural row"):
        bench.neural_patch("fuzz")


def test_generators_workload_renders_the_shipped_sing():
    res = bench.run(seconds=0.5, block_sizes=(256,), output=None, repeats=1, startup=False, quiet=True,
                    workloads="generators")
    sec = res["workloads"]["generators"]
    sing = sec["rows"]["sing"]
    assert sing["macs"] and sing["blocks"][256]["rt"] > 1.0 and sing["blocks"][256]["gflops"] > 0
    text = bench.report(res)
    assert "## Neural generators" in text and "SING decoder" in text
