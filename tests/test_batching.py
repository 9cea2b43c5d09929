"""Batching: identical nodes of one level run as one call, and sound exactly as one by one.

The engine stacks the members' outputs, params and state row-wise; these
tests compare a batched engine with ``batching=False`` sample for sample,
through events, modulation, reset and the NaN guard.
"""
from __future__ import annotations

import numpy as np
import pytest

import patchlib
from patchlib import Input, Node, Param
from patchlib.node import stacked_rows

SR = 16000


class _Acc(Node):
    """Test node: a phase accumulator (state in one array) times its input."""

    inputs = {"in": Input("signal", optional=True)}
    params = {"rate": Param(100.0, (0.0, 4000.0), "Hz", doc="rate"),
              "bad_after": Param(0.0, (0.0, 10.0), "s", doc="NaN from this time on (0: never)")}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = ctx.sample_rate
        self.connected = "in" in ctx.in_channels
        self.reset()

    def reset(self):
        self.state = np.zeros(2)

    def _one(self, y, x, rate, bad, state, n, t):
        ph = state[0]
        for i in range(n):
            ph = (ph + rate[i] / self.sr) % 1.0
            v = np.sin(2 * np.pi * ph) * (x[0, i] if self.connected else 1.0)
            if bad[i] > 0 and (t + i) / self.sr >= bad[i]:
                v = np.nan
            y[0, i] = v
        state[0] = ph

    def process(self, n, t):
        self._one(self.out["out"], self.inp["in"], self.par["rate"], self.par["bad_after"], self.state, n, t)

    @classmethod
    def process_batch(cls, b, n, t):
        cls.calls += 1
        for v, node in enumerate(b.nodes):
            node._one(b.out["out"][v], b.inp["in"][v], b.par["rate"][v], b.par["bad_after"][v],
                      b.state["state"][v], n, t)


class _Plain(Node):
    """Test node: a sine that never batches (so the accumulators must gather their inputs)."""

    params = {"freq": Param(100.0, (0.0, 4000.0), "Hz", doc="frequency")}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = ctx.sample_rate

    def process(self, n, t):
        self.out["out"][0, :n] = np.sin(2 * np.pi * self.par["freq"][0] * (t + np.arange(n)) / self.sr)


def _patch(voices=6, bad=None):
    nodes = {}
    for k in range(voices):
        nodes[f"lfo{k}"] = {"type": "test_acc", "rate": 2.0 + k}
        nodes[f"src{k}"] = {"type": "test_plain", "freq": 200 * (k + 1)}
        nodes[f"acc{k}"] = {"type": "test_acc", "in": f"src{k}", "rate": 50 + 10 * k,
                            "bad_after": bad if (bad and k == 2) else 0}
        nodes[f"amp{k}"] = {"type": "gain", "in": f"acc{k}", "gain": {"from": f"lfo{k}", "range": [0.1, 0.5]}}
    nodes["sum"] = {"type": "mix", "in": [f"amp{k}" for k in range(voices)]}
    return {"sample_rate": SR, "nodes": nodes, "out": "sum",
            "score": [{"at": 0.05, "ramp": "acc1.rate", "to": 900, "over": 0.02},
                      {"at": 0.07, "set": "amp3.gain", "to": 1.5}]}


@pytest.fixture
def acc(scratch_registry):
    cls = type("_AccT", (_Acc,), {"calls": 0})
    scratch_registry.register("test_acc")(cls)
    scratch_registry.register("test_plain")(_Plain)
    return cls


def _render(patch, batching, block=64, frames=3200):
    e = patchlib.Engine(patchlib.load_patch(patch), block_size=block, batching=batching)
    return e.render(frames), e


def test_batched_equals_one_by_one(acc):
    ref, e0 = _render(_patch(), False)
    assert not e0.batches
    out, e = _render(_patch(), True)
    sizes = sorted(len(b.names) for b in e.batches)
    assert sizes == [6, 6, 6]  # lfo*, acc*, amp*
    assert acc.calls > 0
    np.testing.assert_array_equal(out, ref)
    assert np.abs(out).max() > 0.1


def test_batch_reads_stacked_sources_without_copies(acc):
    _, e = _render(_patch(), True, frames=64)
    amp = next(b for b in e.batches if b.names[0].startswith("amp"))
    acc_b = next(b for b in e.batches if b.names[0].startswith("acc"))
    # the gains' input is the accumulators' stacked output itself, in row order
    assert not amp.gathers
    assert np.shares_memory(amp.batch.inp["in"], acc_b.out["out"])
    assert [n[3:] for n in amp.names] == [n[3:] for n in acc_b.names]
    # the plain sources do not batch, so the accumulators gather their inputs
    assert acc_b.gathers
    # the mix reads all six gains' rows in one view
    assert e.nodes["sum"]._xs is not None


def test_block_sizes_and_reset(acc):
    ref, _ = _render(_patch(), True, block=1, frames=1000)
    for bs in (7, 64, 1000):
        out, e = _render(_patch(), True, block=bs, frames=1000)
        np.testing.assert_array_equal(out, ref)
    e.reset()
    np.testing.assert_array_equal(e.render(1000), ref)


def test_nan_in_one_member_mutes_only_it(acc):
    warnings = []
    patch = _patch(bad=0.1)
    e = patchlib.Engine(patchlib.load_patch(patch), block_size=64, on_warning=warnings.append)
    out = e.render(3200)
    assert np.all(np.isfinite(out))
    assert [w.node for w in warnings] == ["acc2"]
    # the others go on exactly as a one-by-one engine without the bad voice
    ref_patch = _patch()
    ref_patch["nodes"]["amp2"]["gain"] = 0
    ref_patch["score"] = patch["score"]
    ref, _ = _render(ref_patch, False)
    np.testing.assert_allclose(out[:, 1700:], ref[:, 1700:], atol=1e-6)
    e.reset()
    again = e.render(3200)
    np.testing.assert_array_equal(again, out)


def test_stacked_rows():
    a = np.zeros((4, 2, 8), dtype=np.float32)
    v = stacked_rows([a[i] for i in range(4)])
    assert v.shape == (4, 2, 8) and np.shares_memory(v, a)
    assert stacked_rows([a[0], a[2]]).shape == (2, 2, 8)
    assert stacked_rows([a[1], a[0]]) is None
    assert stacked_rows([a[0], np.zeros((2, 8), dtype=np.float32)]) is None


def test_an_event_refreshes_only_its_nodes_and_plays_as_a_full_refresh(acc, monkeypatch):
    """After an event the engine rebuilds the fill lists of the event's node (and its batch) only; the sound
    is the same, sample for sample, as with every node's lists rebuilt after every event: ramps and sets on
    batched members, and a set that stops a modulated gain's batched mapping."""
    score = [{"at": 0.01 * k, "ramp": f"acc{k % 6}.rate", "to": 100 + 50 * k, "over": 0.005 * (k % 3)}
             for k in range(1, 12)]
    score += [{"at": 0.02, "set": "amp4.gain", "to": 1.5}, {"at": 0.03, "ramp": "lfo2.rate", "to": 9, "over": 0.01}]
    patch = dict(_patch(), score=_patch()["score"] + score)
    calls = []
    real = patchlib.Engine._refresh_active

    def spy(self, names=None):
        calls.append(names)
        real(self, names)

    monkeypatch.setattr(patchlib.Engine, "_refresh_active", spy)
    out, e = _render(patch, True)
    assert any(c is not None and len(c) == 1 for c in calls)  # targeted refreshes happened
    monkeypatch.setattr(patchlib.Engine, "_refresh_active", lambda self, names=None: real(self, None))
    ref, _ = _render(patch, True)
    np.testing.assert_array_equal(out, ref)
    unbatched, _ = _render(patch, False)
    np.testing.assert_array_equal(out, unbatched)
