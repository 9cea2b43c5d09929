"""Shaped adsr (curves lin/exp/log, retrigger/legato) and the ar envelope, measured on rendered audio.

Every time is checked to the sample: an edge at sample ``e`` with a
segment of ``T`` seconds lands on its target at sample ``e + round(T * sr)``.
"""
from __future__ import annotations

import numpy as np
import pytest

import patchlib
from nodes.dsp._envelope import QMIN

SR = 48000


def render(node, score, seconds, block_size=256, extra=None):
    nodes = {"x": node, **(extra or {})}
    spec = patchlib.load_patch({"sample_rate": SR, "nodes": nodes, "out": "x", "score": score})
    e = patchlib.Engine(spec, block_size=block_size)
    y = e.render(int(round(seconds * SR)))[0].astype(np.float64)
    assert not e.warnings
    return y


def adsr(curve, **kw):
    node = {"type": "adsr", "curve": curve, "attack": "10ms", "decay": "100ms", "sustain": 0.5,
            "release": "200ms"}
    node.update(kw)
    return node


def first(y, cond, start=0):
    hits = np.flatnonzero(cond(y[start:]))
    assert hits.size, "never happens"
    return start + int(hits[0])


def shape(u, c):
    """Progress 0..1 of a segment with bend c at u in [0, 1] (nodes/dsp/_envelope.py)."""
    if c == 0:
        return u
    q = QMIN ** abs(c)
    y = (1 - q ** u) / (1 - q)
    return y if c > 0 else 1 - (1 - q ** (1 - u)) / (1 - q)


# ---------------------------------------------------------------- segment times
@pytest.mark.parametrize("curve", ["lin", "exp", "log"])
@pytest.mark.parametrize("times", [(0.01, 0.1, 0.2), (0.0031, 0.0507, 0.0123)])
@pytest.mark.parametrize("block_size", [1, 256])
def test_every_segment_reaches_its_target_on_the_exact_sample(curve, times, block_size):
    a, d, r = times
    on, off = 4800, 24000
    y = render(adsr(curve, attack=a, decay=d, sustain=0.4, release=r),
               [{"at": on / SR, "trigger": "x"}, {"at": off / SR, "release": "x"}], 0.8, block_size)
    assert np.all(y[:on + 1] == 0.0)
    peak = first(y, lambda v: v == 1.0)
    assert peak == on + round(a * SR)
    assert np.all(np.diff(y[on:peak + 1]) > 0)  # rises all the way, no plateau
    sus = first(y, lambda v: v == np.float32(0.4), peak)
    assert sus == peak + round(d * SR)
    assert np.all(np.diff(y[peak:sus + 1]) < 0)
    assert np.all(y[sus:off + 1] == np.float32(0.4))  # sustain held exactly
    zero = first(y, lambda v: v == 0.0, off)
    assert zero == off + round(r * SR)
    assert np.all(np.diff(y[off:zero + 1]) < 0) and np.all(y[zero:] == 0.0)


@pytest.mark.parametrize("curve, bends", [("lin", (0, 0, 0)), ("exp", (0.3, 1.0, 1.0)),
                                          ("log", (-0.5, -0.5, -0.5))])
def test_segments_follow_the_analytic_curve(curve, bends):
    """attack 0 -> 1, decay 1 -> s and release s -> 0 follow y(u) of the documented bend."""
    on, off, s = 4800, 24000, 0.3
    A, D, R = 480, 4800, 9600
    y = render(adsr(curve, attack=A / SR, decay=D / SR, sustain=s, release=R / SR),
               [{"at": on / SR, "trigger": "x"}, {"at": off / SR, "release": "x"}], 0.8)
    u = np.arange(A + 1) / A
    np.testing.assert_allclose(y[on:on + A + 1], shape(u, bends[0]), atol=2e-6)
    u = np.arange(D + 1) / D
    np.testing.assert_allclose(y[on + A:on + A + D + 1], 1 + (s - 1) * shape(u, bends[1]), atol=2e-6)
    u = np.arange(R + 1) / R
    np.testing.assert_allclose(y[off:off + R + 1], s * (1 - shape(u, bends[2])), atol=2e-6)


def test_exp_is_rc_like_and_log_is_its_mirror():
    on = 4800
    sc = [{"at": on / SR, "trigger": "x", "length": 0.3}]
    lin, ex, lg = (render(adsr(c), sc, 0.6) for c in ("lin", "exp", "log"))
    att = slice(on + 1, on + 480)
    assert np.all(ex[att] > lin[att]) and np.all(lg[att] < lin[att])  # RC charge: fast start
    dec = slice(on + 481, on + 480 + 4800)
    assert np.all(ex[dec] < lin[dec]) and np.all(lg[dec] > lin[dec])  # RC discharge: fast fall first
    # the exp release falls to -60 dB of its start well before its end, like an analog one
    off = on + int(0.3 * SR)
    assert ex[off + int(0.9 * 9600)] < 0.5 * 1.1e-3 * 2


def test_curve_params_override_the_preset_per_segment():
    on = 4800
    sc = [{"at": on / SR, "trigger": "x", "length": 0.3}]
    y = render(adsr("lin", attack_curve=0.8), sc, 0.5)
    ref = render(adsr("lin"), sc, 0.5)
    u = np.arange(481) / 480
    np.testing.assert_allclose(y[on:on + 481], shape(u, 0.8), atol=2e-6)
    np.testing.assert_array_equal(y[on + 480:], ref[on + 480:])  # decay and release untouched


def test_classic_is_the_default_and_unchanged():
    sc = [{"at": 0.1, "trigger": "x", "length": 0.3, "velocity": 0.8}, {"at": 0.25, "trigger": "x"}]
    base = {"type": "adsr", "attack": "10ms", "decay": "100ms", "sustain": 0.5, "release": "200ms"}
    y = render(base, sc, 0.8)
    np.testing.assert_array_equal(y, render({**base, "curve": "classic", "mode": "retrigger"}, sc, 0.8))
    assert "attack_curve" not in patchlib.registry.get("adsr").ports({"curve": "classic"})[2]


def test_zero_times_jump_on_the_edge():
    y = render(adsr("exp", attack=0, decay=0, release=0, sustain=0.25),
               [{"at": 0.01, "trigger": "x"}, {"at": 0.02, "release": "x"}], 0.03)
    assert y[479] == 0.0 and y[480] == 1.0 and y[481] == np.float32(0.25)
    assert y[959] == np.float32(0.25) and np.all(y[960:] == 0.0)


# ---------------------------------------------------------------- retrigger / legato
@pytest.mark.parametrize("curve", ["classic", "lin", "exp", "log"])
def test_retrigger_restarts_the_attack_from_the_current_level(curve):
    node = adsr(curve, attack="20ms")
    # held: retrigger mid-decay; released: retrigger mid-release
    for sc, at in (([{"at": 0.1, "trigger": "x"}, {"at": 0.15, "trigger": "x"}], 0.15),
                   ([{"at": 0.1, "trigger": "x", "length": 0.1}, {"at": 0.25, "trigger": "x"}], 0.25)):
        y = render(node, sc, 0.4)
        e = int(at * SR)
        assert 0.05 < y[e - 1] < 0.99
        assert np.all(np.diff(y[e:e + 5]) > 0)  # rising again at once
        # never a click: no step bigger than the attack's own steepest (plus the half step it snaps)
        bend = {"classic": 0.0, "lin": 0.0, "exp": 0.3, "log": -0.5}[curve]
        steepest = np.max(np.diff(shape(np.arange(961) / 960, bend)))
        assert np.max(np.abs(np.diff(y))) <= 1.5 * steepest + 1e-6
        peak = first(y, lambda v: v == 1.0, e)
        assert peak < e + 960  # from part way up: sooner than a full attack


@pytest.mark.parametrize("curve", ["classic", "exp"])
def test_legato_ignores_triggers_while_held(curve):
    node = adsr(curve, mode="legato")
    one = render(node, [{"at": 0.1, "trigger": "x"}, {"at": 0.5, "release": "x"}], 0.8)
    two = render(node, [{"at": 0.1, "trigger": "x"}, {"at": 0.13, "trigger": "x", "velocity": 0.5},
                        {"at": 0.3, "trigger": "x"}, {"at": 0.5, "release": "x"}], 0.8)
    np.testing.assert_array_equal(one, two)
    # once released, a trigger is a new note again (an attack from the current level)
    y = render(node, [{"at": 0.1, "trigger": "x", "length": 0.1}, {"at": 0.25, "trigger": "x"}], 0.4)
    e = int(0.25 * SR)
    assert y[e + 100] > y[e] > 0.0


def test_legato_with_the_gate_input_held():
    extra = {"g": {"type": "constant", "value": 1.0}}
    node = adsr("lin", mode="legato", gate="g")
    held = render(node, [], 0.3, extra=extra)
    trig = render(node, [{"at": 0.1, "trigger": "x"}], 0.3, extra=extra)
    np.testing.assert_array_equal(held, trig)
    retrig = render(adsr("lin", gate="g"), [{"at": 0.1, "trigger": "x"}], 0.3, extra=extra)
    assert np.all(np.diff(retrig[4800:4850]) > 0)  # retrigger mode restarts even under a held gate


def test_retrigger_at_lower_velocity_glides_down_without_a_click():
    y = render(adsr("exp"), [{"at": 0.1, "trigger": "x"}, {"at": 0.2, "trigger": "x", "velocity": 0.2}], 0.6)
    e = int(0.2 * SR)
    assert abs(y[e] - y[e - 1]) < 1e-3
    assert y[-1] == pytest.approx(0.5 * 0.2, abs=1e-6)


def test_shaped_adsr_is_block_size_invariant_under_modulation():
    extra = {"g": {"type": "square", "freq": 7, "pw": 0.3}, "lfo": {"type": "sine", "freq": 3}}
    node = adsr("exp", gate="g", attack={"from": "lfo", "range": [0.001, 0.05]},
                sustain={"from": "lfo", "range": [0.2, 0.8]},
                decay_curve={"from": "lfo", "range": [-1, 1]})
    sc = [{"at": 0.05, "trigger": "x", "velocity": 0.7}, {"at": 0.31, "release": "x"}]
    ref = render(node, sc, 0.5, 1, extra)
    for bs in (7, 64, 600):
        np.testing.assert_array_equal(render(node, sc, 0.5, bs, extra), ref)
    assert np.all((ref >= 0) & (ref <= 1))


# ---------------------------------------------------------------- ar
@pytest.mark.parametrize("a, r", [(0.002, 0.15), (0.0, 0.05), (0.01, 0.0103)])
def test_ar_is_percussive_and_exact(a, r):
    on = 2400
    y = render({"type": "ar", "attack": a, "release": r, "release_curve": 0.7}, [{"at": on / SR, "trigger": "x"}],
               0.4)
    peak = first(y, lambda v: v == 1.0)
    assert peak == on + round(a * SR)
    zero = first(y, lambda v: v == 0.0, peak)
    assert zero == peak + round(r * SR)
    assert np.all(y[zero:] == 0.0)


def test_ar_from_a_gate_ignores_the_gate_length_unless_held():
    extra = {"g": {"type": "clock", "bpm": 120, "division": 1, "duty": 0.5}}  # high 250 ms, low 250 ms
    y = render({"type": "ar", "gate": "g.gate", "attack": 0.01, "release": 0.05}, [], 1.0, extra=extra)
    peaks = np.flatnonzero(y == 1.0)
    assert peaks.tolist() == [480, 24480]  # one hit per rising edge
    assert y[480 + 2400] == 0.0  # gone long before the gate falls (at 12000)
    h = render({"type": "ar", "gate": "g.gate", "attack": 0.01, "release": 0.05, "hold": True}, [], 1.0, extra=extra)
    assert np.all(h[480:12000] == 1.0)  # held while the gate is high
    assert h[12000 + 2400] == 0.0 and h[12000 + 2399] > 0.0


def test_ar_velocity_and_retrigger_without_click():
    y = render({"type": "ar", "attack": 0.005, "release": 0.2, "release_curve": 0},
               [{"at": 0.1, "trigger": "x", "velocity": 0.5}, {"at": 0.2, "trigger": "x", "velocity": 1.0}], 0.5)
    assert y.max() == pytest.approx(1.0) and y[: int(0.2 * SR)].max() == pytest.approx(0.5)
    assert np.max(np.abs(np.diff(y))) <= 1.5 / 240 + 1e-6


def test_ar_hold_with_events():
    y = render({"type": "ar", "hold": True, "attack": 0.001, "release": 0.01},
               [{"at": 0.1, "trigger": "x", "length": 0.2}], 0.4)
    assert np.all(y[4848:14400] == 1.0) and y[14400 + 480] == 0.0


# ---------------------------------------------------------------- ramp
def test_ramp_lin_reaches_end_exactly_and_holds():
    y = render({"type": "ramp", "start": 2, "end": -1, "time": 0.1}, [{"at": 0.05, "trigger": "x"}], 0.3)
    e, N = 2400, 4800
    assert np.all(y[:e + 1] == 2.0)
    np.testing.assert_allclose(y[e:e + N + 1], 2 - 3 * np.arange(N + 1) / N, atol=1e-6)
    assert np.all(y[e + N:] == -1.0)


def test_ramp_exp_sweeps_in_equal_ratios_and_retriggers():
    node = {"type": "ramp", "unit": "Hz", "start": "2kHz", "end": 50, "time": "50ms", "curve": "exp"}
    y = render(node, [{"at": 0.01, "trigger": "x"}, {"at": 0.2, "trigger": "x"}], 0.3)
    e, N = 480, 2400
    np.testing.assert_allclose(y[e:e + N + 1], 2000 * (50 / 2000) ** (np.arange(N + 1) / N), rtol=1e-6)
    assert y[e + N] == 50.0 and np.all(y[e + N:9600] == 50.0)
    assert y[9600] == 2000.0 and y[9600 + N] == 50.0


def test_ramp_from_a_trig_input():
    extra = {"c": {"type": "clock", "bpm": 120, "division": 2}}  # a tick every 250 ms
    y = render({"type": "ramp", "trig": "c.trig", "time": 0.1}, [], 0.7, extra=extra)
    for tick in (0, 12000, 24000):
        assert y[tick] == 0.0 and y[tick + 4800] == 1.0 and y[tick + 4799] < 1.0
