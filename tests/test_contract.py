"""The contract every node type must keep, checked for every registered type.

For each type: it renders with its defaults; ``reset()`` gives the same
output twice; every param works at both ends of its range, and driven by a
wild audio-rate signal, with no NaN or inf; the output is the same at
several block sizes; its declarations are complete (units, ranges, docs).
A new node type gets all of this for free by being registered.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import patchlib
from patchlib import registry

SR = 16000
FRAMES = 2400
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch):
    # dict patches resolve files (a sample for 'file') from the working directory
    monkeypatch.chdir(ROOT)

# How to give each type an input it accepts; everything else gets defaults.
SPECIAL = {
    "mix": {"in": ["src", "src2"]},
    "output": {"in": "src"},
    "pan": {"in": "src"},
}


def _types():
    # 'poly' plays a voice template from the patch's top level: tests/test_poly.py
    return [n for n in registry.all_types() if not n.startswith(("nan_", "test_", "fold")) and n != "poly"]


def _patch(tname, extra=None, drive=None):
    """src (noise) -> node under test; ``drive`` = (param, range) to modulate from noise."""
    cls = registry.get(tname)
    node = {"type": tname}
    # a type that needs settings to run (a file, a list...) declares them as
    # ``contract_settings``; inputs it does not set are wired to the noise source
    settings = SPECIAL.get(tname, getattr(cls, "contract_settings", None) or {})
    node.update(settings)
    opts = {k: o.default for k, o in cls.options.items()}
    opts.update({k: v for k, v in settings.items() if k in cls.options})
    inputs, _, params = cls.ports(opts)
    for port, inp in inputs.items():
        if (tname in SPECIAL and port not in ("gate",)) or port in settings:
            continue
        if port == "gate":
            node[port] = "clock"
        elif port not in ("left", "right"):
            node[port] = "src"
    node.update(extra or {})
    if drive:
        pname, rng = drive
        node[pname] = {"from": "wild", "range": list(rng), "curve": "lin"}
    nodes = {
        "src": {"type": "noise", "seed": 1},
        "src2": {"type": "sine", "freq": 440},
        "clock": {"type": "square", "freq": 30},
        "wild": {"type": "noise", "seed": 2, "color": "white"},
        "dut": node,
    }
    if tname == "output":  # an explicit output node is the patch's output
        return {"sample_rate": SR, "nodes": nodes}
    return {"sample_rate": SR, "nodes": nodes, "out": "dut"}


def _inputs():
    t = np.arange(SR) / SR
    return {"": (0.5 * np.sin(2 * np.pi * 330 * t)[None, :].astype(np.float32), SR)}


def _engine(patch, block_size=64):
    return patchlib.Engine(patchlib.load_patch(patch), block_size=block_size, audio_inputs=_inputs())


def _render_dut(patch, block_size=64, frames=FRAMES):
    e = _engine(patch, block_size)
    out = np.concatenate([e.process(min(block_size, frames - i)).copy() for i in range(0, frames, block_size)], axis=1)
    return out, e


TYPES = _types()


def test_registry_has_the_first_nodes():
    want = {"sine", "saw", "square", "triangle", "noise", "constant", "gain", "mix", "pan", "lowpass",
            "highpass", "bandpass", "adsr", "delay", "input", "output"}
    assert want <= set(TYPES)


@pytest.mark.parametrize("tname", TYPES)
def test_declarations_complete(tname):
    cls = registry.get(tname)
    assert cls.summary(), "needs a docstring"
    _, outputs, params = cls.ports({k: o.default for k, o in cls.options.items()})
    assert outputs
    for pname, p in params.items():
        lo, hi = p.range
        assert lo < hi and lo <= p.default <= hi, pname
        assert p.doc, f"{pname} needs a doc line"


@pytest.mark.parametrize("tname", TYPES)
def test_renders_and_reset_repeats(tname):
    out1, e = _render_dut(_patch(tname))
    assert np.all(np.isfinite(out1))
    e.reset()
    out2 = np.concatenate([e.process(64).copy() for _ in range(0, FRAMES, 64)], axis=1)[:, :FRAMES]
    np.testing.assert_array_equal(out1, out2)


@pytest.mark.parametrize("tname", TYPES)
def test_block_size_invariance(tname):
    ref, _ = _render_dut(_patch(tname), block_size=1, frames=600)
    for bs in (7, 64, 600):
        out, _ = _render_dut(_patch(tname), block_size=bs, frames=600)
        np.testing.assert_allclose(out, ref, atol=1e-6, err_msg=f"block size {bs}")


def _param_cases():
    cases = []
    for tname in TYPES:
        cls = registry.get(tname)
        _, _, params = cls.ports({k: o.default for k, o in cls.options.items()})
        for pname in params:
            cases.append((tname, pname))
    return cases


@pytest.mark.parametrize("tname,pname", _param_cases())
def test_param_extremes_and_audio_rate_drive(tname, pname):
    cls = registry.get(tname)
    p = cls.ports({k: o.default for k, o in cls.options.items()})[2][pname]
    lo, hi = p.range
    for value in (lo, hi):
        out, e = _render_dut(_patch(tname, {pname: value}), frames=1200)
        assert np.all(np.isfinite(out)), f"{pname}={value}"
        assert not e.warnings, f"{pname}={value}: {e.warnings}"
    # driven by white noise across its whole range, every sample
    out, e = _render_dut(_patch(tname, drive=(pname, (lo, hi))), frames=1200)
    assert np.all(np.isfinite(out))
    assert not e.warnings, e.warnings


def _batched_types():
    from patchlib.node import Node

    return [t for t in TYPES if registry.get(t).process_batch.__func__ is not Node.process_batch.__func__]


@pytest.mark.parametrize("tname", _batched_types())
def test_batch_equals_one_by_one(tname):
    """Three copies of a batchable type (one plain, one driven, one at an extreme, one triggered)
    sound exactly the same run as one batch as run one by one."""
    cls = registry.get(tname)
    base = _patch(tname)
    dut = base["nodes"].pop("dut")
    params = list(cls.ports({k: o.default for k, o in cls.options.items()})[2].items())
    copies = [dict(dut), dict(dut), dict(dut)]
    if params:  # all driven by one source, so the copies stay on one level of the graph
        pname, p = params[0]
        for c, rng in zip(copies, ([p.default, p.default], list(p.range), [p.range[1], p.range[1]])):
            c[pname] = {"from": "wild", "range": rng, "curve": "lin"}
    for k, c in enumerate(copies):
        base["nodes"][f"dut{k}"] = c
    base["nodes"]["sum"] = {"type": "mix", "in": ["dut0", "dut1", "dut2"]}
    base["out"] = "sum"
    if "trigger" in cls.events:
        base["score"] = [{"at": 0.01, "trigger": "dut1", "velocity": 0.7}, {"at": 0.02, "trigger": "dut2"}]
    ref, _ = _render_dut(dict(base), frames=1200)
    e = patchlib.Engine(patchlib.load_patch(base), block_size=64, audio_inputs=_inputs())
    assert any(set(b.names) >= {"dut0", "dut1", "dut2"} for b in e.batches), [b.names for b in e.batches]
    out = e.render(1200)
    e1 = patchlib.Engine(patchlib.load_patch(base), block_size=64, audio_inputs=_inputs(), batching=False)
    np.testing.assert_array_equal(out, e1.render(1200))
    e.reset()
    np.testing.assert_array_equal(e.render(1200), out)


@pytest.mark.parametrize("tname", TYPES)
def test_takeover_continues_exactly(tname):
    """An engine compiled from the same patch that takes over a running one (a live edit, a
    reload) renders exactly what the old one would have: every bit of streaming state moved."""
    from patchlib.takeover import plan_takeover

    # (a delay at its default time would still be silent when the test ends)
    patch = _patch(tname, {"time": 0.01} if tname == "delay" else None)
    if "trigger" in registry.get(tname).events:
        patch["score"] = [{"at": 0.01, "trigger": "dut", "velocity": 0.7}]
    old = _engine(patch)
    old.render(1000)  # mid-block, mid-note, delay lines full
    new = _engine(patch)
    plan = plan_takeover(old, new)
    assert "dut" in plan.kept, (plan.kept, plan.changed)
    plan.apply()
    assert new.frame == old.frame
    np.testing.assert_array_equal(new.render(1400), old.render(1400))
