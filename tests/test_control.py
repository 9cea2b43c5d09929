"""Control nodes measured on rendered audio: sample & hold, slew, quantize, clock,
sequencer (sample-exact at several tempos and block sizes), unit conversions,
math and the expression language (precedence, errors, and hypothesis: random
valid expressions never give NaN/inf, garbage only ever raises PatchError).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import patchlib
from nodes.dsp import expr as E
from nodes.dsp.control import SCALES, root_class, scale_degrees
from patchlib import PatchError

SR = 48000


def render(nodes, out, seconds, block_size=256, score=None, signal=None, sample_rate=SR):
    """Render ``out`` (a node or ``node.port``; a list renders each in turn, one row each).

    Returns float64 ``(rows, frames)``. ``signal`` (1-D) feeds the node
    ``{type: input}`` in ``nodes``.
    """
    if isinstance(out, list):
        return np.concatenate([render(nodes, o, seconds, block_size, score, signal, sample_rate)[:1] for o in out])
    spec = patchlib.load_patch({"sample_rate": sample_rate, "nodes": nodes, "out": out, "score": score or []})
    inputs = {"": (np.asarray(signal, np.float32)[None, :], sample_rate)} if signal is not None else None
    e = patchlib.Engine(spec, block_size=block_size, audio_inputs=inputs)
    y = e.render(int(round(seconds * sample_rate))).astype(np.float64)
    assert not e.warnings
    return y


def ticks(y):
    return np.flatnonzero(y > 0.5)


def rising(y):
    on = y > 0.5
    return np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))


def no_ties(times):
    """The sample-exact tests avoid times (nearly) halfway between two samples."""
    frac = np.asarray(times) % 1.0
    assert np.all(np.abs(frac - 0.5) > 1e-4)


def f32(v):
    """A param's value as the node sees it (params are float32 buffers)."""
    return float(np.float32(v))


# ---------------------------------------------------------------- clock
@pytest.mark.parametrize("bpm, division", [(120, 4), (97, 4), (133.3, 3), (174, 1), (61.7, 8)])
@pytest.mark.parametrize("block_size", [1, 64, 1000])
def test_clock_ticks_are_sample_exact(bpm, division, block_size):
    sr = 8000 if block_size == 1 else SR  # one-sample blocks are slow: a lower rate, the same rule
    y = render({"c": {"type": "clock", "bpm": bpm, "division": division}}, "c.trig", 4.0, block_size,
               sample_rate=sr)[0]
    period = 60.0 / f32(bpm) / division * sr
    k = np.arange(int(4.0 * sr / period) + 1)
    want = np.round(k * period).astype(int)
    want = want[want < y.size]
    no_ties(k * period)
    assert ticks(y).tolist() == want.tolist()
    assert set(np.unique(y)) == {0.0, 1.0}


@pytest.mark.parametrize("swing, duty", [(0.0, 0.5), (1 / 3, 0.25), (0.5, 0.9)])
def test_clock_swing_and_gate_duty(swing, duty):
    nodes = {"c": {"type": "clock", "bpm": 100, "division": 4, "swing": swing, "duty": duty}}
    y = render(nodes, ["c.trig", "c.gate"], 3.0, 128)
    trig, gate = y
    P = 60 / 100 / 4 * SR  # 7200 samples
    k = np.arange(int(3 * SR / P))
    t_tick = k * P + (k % 2) * swing * P
    assert ticks(trig).tolist() == np.round(t_tick).astype(int).tolist()
    assert rising(gate).tolist() == ticks(trig).tolist()  # the gate rises on every tick
    interval = np.where(k % 2 == 0, 1 + swing, 1 - swing) * P
    falls = np.flatnonzero((gate[:-1] > 0.5) & (gate[1:] <= 0.5)) + 1
    np.testing.assert_array_equal(falls[:len(k) - 1], np.round(t_tick + duty * interval).astype(int)[:len(k) - 1])
    plain = render(nodes, "c", 1.0, 128)[0]
    np.testing.assert_array_equal(plain, gate[:SR])  # plain 'c' is the gate
    stereo = render(nodes, "c", 0.1, 128)
    assert stereo.shape[0] == 1


def test_clock_follows_a_tempo_ramp_and_restarts_on_trigger():
    nodes = {"c": {"type": "clock", "bpm": 60, "division": 1}}
    score = [{"at": 0, "ramp": "c.bpm", "to": 240, "over": 4}, {"at": 4.2, "trigger": "c"}]
    y = render(nodes, "c.trig", 5.0, 100, score)[0]
    t = ticks(y)
    gaps = np.diff(t[t < 4 * SR])
    assert np.all(np.diff(gaps) < 0)  # speeding up
    # exactness under a changing tempo: each tick is where the integral of bpm/60 passes a whole beat
    bpm = 60 + 180 * np.minimum(np.arange(y.size), 4 * SR) / (4 * SR)
    beats = np.cumsum(bpm / 60 / SR) - 0.5 * bpm / 60 / SR
    assert np.all(np.abs(np.interp(t[t < 4 * SR], np.arange(y.size), beats) - np.round(beats[t[t < 4 * SR]])) < 0.01)
    assert int(4.2 * SR) in t.tolist()  # restarted on the trigger's sample
    assert np.diff(t[t >= 4.2 * SR]).tolist() == [SR // 4] * (len(t[t >= 4.2 * SR]) - 1)


# ---------------------------------------------------------------- sequencer
def step_starts(durs, bpm, seconds, sr=SR):
    beats = np.concatenate([[0.0], np.cumsum(np.tile(durs, 64))])
    times = beats * 60.0 / f32(bpm) * sr
    no_ties(times[times < seconds * sr])
    return np.round(times[times < seconds * sr]).astype(int)


@pytest.mark.parametrize("bpm", [120, 93.7, 151])
@pytest.mark.parametrize("block_size", [1, 77, 512])
def test_sequencer_steps_are_sample_exact(bpm, block_size):
    durs = [0.5, 0.25, 0.25, 1.0, 1 / 3]
    seq = {"type": "sequencer", "bpm": bpm, "pitches": ["C4", "E4", 300, "G#3", "A4"], "durations": durs,
           "gates": [0.5, 1.0, 0.25, 0.75, 0.5]}
    sr = 8000 if block_size == 1 else SR
    trig, step = render({"s": seq}, ["s.trig", "s.step"], 6.0, block_size, sample_rate=sr)
    starts = step_starts(durs, bpm, 6.0, sr)
    assert ticks(trig).tolist() == starts.tolist()
    changes = np.flatnonzero(np.diff(step)) + 1
    assert changes.tolist() == starts[1:].tolist()
    assert step[0] == 0 and set(np.unique(step)) == {0, 1, 2, 3, 4}


def test_sequencer_pitch_gate_rests_and_ties():
    bpm = 120  # a sixteenth = 6000 samples
    seq = {"type": "sequencer", "bpm": bpm, "pitches": ["A3", "-", "C4", None, "E4", "E4"],
           "gates": [0.5, 1, 1, 0.5, 0.25, 0.0]}
    pitch, gate, trig = render({"s": seq}, ["s.pitch", "s.gate", "s.trig"], 1.5)
    S = 6000
    assert pitch[0] == pytest.approx(220.0) and pitch[S + 10] == pytest.approx(220.0)  # rest: pitch holds
    assert pitch[2 * S] == pytest.approx(261.6255653, rel=1e-6)
    assert np.all(gate[:S // 2] == 1.0) and np.all(gate[S // 2:2 * S] == 0.0)  # 0.5 gate, then a rest
    assert np.all(gate[2 * S:3 * S] == 1.0) and np.all(gate[3 * S:4 * S] == 0.0)  # full gate, then null rest
    assert np.all(gate[4 * S:4 * S + S // 4] == 1.0) and np.all(gate[4 * S + S // 4:6 * S] == 0.0)
    assert ticks(trig).tolist() == [0, 2 * S, 4 * S, 6 * S, 8 * S, 10 * S]  # rests and gate 0 give no trig


def test_sequencer_without_loop_stops():
    seq = {"type": "sequencer", "bpm": 120, "pitches": ["C4", "D4"], "loop": False, "gates": 1.0}
    pitch, gate = render({"s": seq}, ["s.pitch", "s.gate"], 0.5)
    assert np.all(gate[:12000] == 1.0) and np.all(gate[12000:] == 0.0)
    assert pitch[-1] == pytest.approx(293.6647679, rel=1e-6)


def test_sequencer_transpose_and_restart():
    seq = {"type": "sequencer", "bpm": 120, "pitches": ["A4", "C5", "E5"], "transpose": -12}
    pitch, step = render({"s": seq}, ["s.pitch", "s.step"], 0.5, score=[{"at": 0.2, "trigger": "s"}])
    assert pitch[0] == pytest.approx(220.0)
    assert step[int(0.2 * SR) - 1] == 1 and step[int(0.2 * SR)] == 0


@pytest.mark.parametrize("block_size", [1, 64, 300])
def test_sequencer_follows_a_clock(block_size):
    nodes = {"c": {"type": "clock", "bpm": 140, "division": 4},
             "s": {"type": "sequencer", "clock": "c.trig", "pitches": ["C3", "D3", "E3"],
                   "durations": [0.25, 0.5, 0.25], "gates": 0.5}}
    sr = 8000 if block_size == 1 else SR
    trig, gate, step = render(nodes, ["s.trig", "s.gate", "s.step"], 3.0, block_size, sample_rate=sr)
    P = 60 / f32(140) / 4 * sr
    tick_at = np.round(np.arange(100) * P).astype(int)
    # steps of 1, 2, 1 ticks
    want = [tick_at[i] for i in np.cumsum([0] + [1, 2, 1] * 12) if tick_at[i] < trig.size]
    assert ticks(trig).tolist() == want
    changes = np.flatnonzero(np.diff(step)) + 1
    assert changes.tolist() == want[1:]
    # gate: half of each step, measured from the clock's period
    assert rising(gate).tolist() == want
    lengths = np.array([np.argmax(gate[w:] < 0.5) for w in want[1:-1]])
    expect = np.array([0.5 * [1, 2, 1][(i + 1) % 3] * P for i in range(len(lengths))])
    assert np.all(np.abs(lengths - expect) <= 1.5)


def test_sequencer_gate_drives_an_adsr():
    nodes = {"s": {"type": "sequencer", "bpm": 120, "pitches": ["C4", "E4", "G4", "-"], "gates": 0.5},
             "env": {"type": "adsr", "gate": "s.gate", "attack": 0.001, "decay": 0.05, "sustain": 0.5,
                     "release": 0.01}}
    env = render(nodes, "env", 1.0)[0]
    assert [int(np.argmax(env[k * 6000:(k + 1) * 6000] == 1.0)) for k in range(3)] == [48, 48, 48]
    assert env[3 * 6000 + 100:4 * 6000].max() < 1e-3  # rest: silence


@pytest.mark.parametrize("body, match", [
    ({"pitches": "C4"}, "non-empty list"),
    ({"pitches": ["C4", "H4"]}, "step 2"),
    ({"pitches": ["C4"], "gates": [2]}, "gates: step 1"),
    ({"pitches": ["C4"], "durations": [0]}, "durations"),
    ({"pitches": ["C4"], "division": 0}, "division"),
])
def test_sequencer_errors_name_the_key(body, match):
    text = "nodes:\n  s: " + str({"type": "sequencer", **body}).replace("'", '"').replace("None", "null") + \
           "\nout: s\n"
    with pytest.raises(PatchError, match=match) as info:
        patchlib.load_patch(text)
    assert info.value.where.node == "s" and info.value.where.line == 2


# ---------------------------------------------------------------- sample & hold
def test_sample_hold_takes_the_input_on_rising_edges():
    x = np.sin(2 * np.pi * 3.7 * np.arange(SR) / SR)
    nodes = {"in": {"type": "input"}, "c": {"type": "clock", "bpm": 150, "division": 4},
             "sh": {"type": "sample_hold", "in": "in", "trig": "c.trig"}}
    y, trig = render(nodes, ["sh", "c.trig"], 1.0, 100, signal=x)
    edges = ticks(trig)
    for k, e in enumerate(edges):
        end = edges[k + 1] if k + 1 < len(edges) else y.size
        assert np.all(y[e:end] == np.float32(x[e]))
    assert np.all(y[:edges[0]] == 0.0)


@pytest.mark.parametrize("rate", [7.0, 13.3])
@pytest.mark.parametrize("block_size", [1, 256])
def test_sample_hold_at_a_rate(rate, block_size):
    x = np.arange(SR, dtype=np.float64) / SR  # a slow ramp: each sample is its own time
    y = render({"in": {"type": "input"}, "sh": {"type": "sample_hold", "in": "in", "rate": rate}}, "sh", 1.0,
               block_size, signal=x)[0]
    k = np.arange(int(rate) + 1)
    want = np.round(k * SR / rate).astype(int)
    no_ties(k * SR / rate)
    changes = np.concatenate([[0], np.flatnonzero(np.diff(y)) + 1])
    assert changes.tolist() == want[want < SR].tolist()
    np.testing.assert_allclose(y[changes], x[changes].astype(np.float32))


# ---------------------------------------------------------------- slew
def _step_response(node, seconds=1.0):
    nodes = {"v": {"type": "constant", "value": 0.0}, "sl": {"in": "v", **node}}
    score = [{"at": 0.1, "set": "v.value", "to": 1.0, "over": 0}, {"at": 0.5, "set": "v.value", "to": 0.0, "over": 0}]
    return render(nodes, "sl", seconds, 64, score)[0]


def test_slew_lin_measures_its_rise_and_fall_times():
    y = _step_response({"type": "slew", "rise": 0.05, "fall": 0.2})
    up, down = int(0.1 * SR), int(0.5 * SR)
    assert first_index(y, lambda v: v >= 1.0, up) - up == round(0.05 * SR) - 1
    np.testing.assert_allclose(np.diff(y[up:up + 2000]), 1 / 2400, rtol=1e-4)
    assert first_index(y, lambda v: v <= 0.0, down) - down == round(0.2 * SR) - 1


def first_index(y, cond, start):
    return start + int(np.flatnonzero(cond(y[start:]))[0])


def test_slew_exp_reaches_minus_60_db_in_its_time():
    y = _step_response({"type": "slew", "mode": "exp", "rise": 0.02, "fall": 0.1})
    up, down = int(0.1 * SR), int(0.5 * SR)
    assert abs(first_index(y, lambda v: v >= 1 - 1e-3, up) - (up + 0.02 * SR)) <= 1
    assert abs(first_index(y, lambda v: v <= 1e-3, down) - (down + 0.1 * SR)) <= 1
    ratios = (1 - y[up + 1:up + 500]) / (1 - y[up:up + 499])
    np.testing.assert_allclose(ratios, 1e-3 ** (1 / (0.02 * SR)), rtol=1e-4)


def test_slew_starts_at_the_input_and_passes_through_at_zero_time():
    nodes = {"v": {"type": "constant", "value": 440.0}, "sl": {"type": "slew", "in": "v", "rise": 1, "fall": 1}}
    assert np.all(render(nodes, "sl", 0.1)[0] == 440.0)
    y = _step_response({"type": "slew", "rise": 0, "fall": 0})
    assert y[int(0.1 * SR)] == 1.0 and y[int(0.5 * SR)] == 0.0


# ---------------------------------------------------------------- quantize
def nearest(m, degrees):
    """Brute force: the nearest note of the scale to each of ``m`` (ties down)."""
    cands = np.array(sorted(12 * o + d for o in range(-30, 30) for d in degrees))
    dist = np.abs(cands[None, :] - np.asarray(m)[:, None])
    best = dist.min(axis=1, keepdims=True)
    return np.where(dist <= best + 1e-9, cands[None, :], np.inf).min(axis=1)


@pytest.mark.parametrize("scale, root", [("major", "C"), ("minor_pentatonic", "A"), ("blues", "D#"),
                                         ("harmonic_minor", "Eb"), ([0, 3.5, 7], "F#"), ("chromatic", "C")])
@pytest.mark.parametrize("unit", ["midi", "semitones", "hz"])
def test_quantize_maps_every_input_to_the_nearest_scale_note(scale, root, unit):
    rng = np.random.default_rng(1)
    midi = np.concatenate([rng.uniform(20, 110, 4000), np.arange(30, 90, 0.5)])  # includes exact ties
    r = root_class(root)
    x = {"midi": midi, "semitones": midi - 60, "hz": 440 * 2 ** ((midi - 69) / 12)}[unit]
    y = render({"in": {"type": "input"}, "q": {"type": "quantize", "in": "in", "scale": scale, "root": root,
                                               "unit": unit}}, "q", x.size / SR, signal=x)[0]
    degrees = scale_degrees(scale)
    xin = x.astype(np.float32).astype(np.float64)
    if unit == "hz":
        m_in = 69 + 12 * np.log2(xin / 440) - r
        m_out = 69 + 12 * np.log2(y / 440) - r
    elif unit == "midi":
        m_in, m_out = xin - r, y - r
    else:
        m_in, m_out = xin, y
    want = nearest(m_in, degrees)
    np.testing.assert_allclose(m_out, want, atol=1e-4)
    pcs = np.mod(np.round(m_out, 4), 12)
    assert np.all(np.min(np.abs(pcs[:, None] - np.concatenate([degrees, [12]])[None, :]), axis=1) < 1e-3)


def test_quantize_output_range_and_bad_settings():
    cls = patchlib.registry.get("quantize")
    assert cls.ports({"unit": "midi"})[1]["out"].range == (0.0, 127.0)
    for body, key in ((("scale", "lydianish"), "scale"), (("root", "H"), "root"), (("scale", []), "scale")):
        text = f"nodes:\n  q: {{type: quantize, in: q0, {body[0]}: {body[1]!r}}}\n  q0: {{type: sine}}\nout: q\n"
        with pytest.raises(PatchError) as info:
            patchlib.load_patch(text)
        assert info.value.where.key == key and info.value.where.line == 2
    assert set(SCALES) >= {"chromatic", "major", "minor", "harmonic_minor", "dorian", "pentatonic",
                           "minor_pentatonic", "blues", "whole_tone"}


# ---------------------------------------------------------------- conversions
def test_conversions():
    x = np.array([69, 60, 81, -300, 1000, 0.5] * 100, dtype=np.float64)
    nodes = {"in": {"type": "input"}, "hz": {"type": "midi_to_hz", "in": "in"},
             "hz432": {"type": "midi_to_hz", "in": "in", "a4": 432},
             "back": {"type": "hz_to_midi", "in": "hz"}}
    hz, hz432, back = render(nodes, ["hz", "hz432", "back"], x.size / SR, signal=x)
    assert hz[0] == 440.0 and hz[1] == pytest.approx(261.6255653, rel=1e-6) and hz[2] == pytest.approx(880.0)
    assert hz432[0] == 432.0
    assert np.all(np.isfinite(hz)) and hz[3] > 0
    np.testing.assert_allclose(back[[0, 1, 2]], [69, 60, 81], atol=1e-3)
    db = np.array([0, -6, -20, 20, -1e6, 1e6] * 100, dtype=np.float64)
    nodes = {"in": {"type": "input"}, "amp": {"type": "db_to_amp", "in": "in"},
             "lvl": {"type": "amp_to_db", "in": "amp", "floor": -90}}
    amp, lvl = render(nodes, ["amp", "lvl"], db.size / SR, signal=db)
    assert amp[0] == 1.0 and amp[1] == pytest.approx(0.501187, rel=1e-5) and amp[3] == pytest.approx(10.0)
    assert amp[4] == 0.0 and np.all(np.isfinite(amp))
    np.testing.assert_allclose(lvl[:4], [0, -6, -20, 20], atol=1e-4)
    assert lvl[4] == -90.0  # silence reads as the floor
    assert patchlib.registry.get("amp_to_db").ports({"floor": -60.0})[1]["out"].range == (-60.0, 0.0)


# ---------------------------------------------------------------- math
@pytest.mark.parametrize("op, fn", [
    ("add", lambda a, b: a + b), ("subtract", lambda a, b: a - b), ("multiply", lambda a, b: a * b),
    ("min", np.minimum), ("max", np.maximum), ("abs", lambda a, b: np.abs(a)), ("neg", lambda a, b: -a),
    ("divide", lambda a, b: np.where(b == 0, 0.0, a / np.where(b == 0, 1, b))),
    ("clip", lambda a, b: np.clip(a, -0.3, 0.6)),
])
def test_math_ops(op, fn):
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 4800)
    x[::7] = 0.0
    nodes = {"in": {"type": "input"}, "b": {"type": "noise", "seed": 3, "color": "white"},
             "m": {"type": "math", "op": op, "a": "in", **({"b": "b"} if op not in ("abs", "neg", "clip") else {}),
                   **({"lo": -0.3, "hi": 0.6} if op == "clip" else {})}}
    y, a, b = render(nodes, ["m", "in", "b"], 0.1, signal=x)
    np.testing.assert_allclose(y, np.float32(fn(a, b)), rtol=1e-6, atol=1e-7)


def test_math_divide_by_zero_is_zero():
    x = np.array([1.0, 0.0, -2.0, 0.0] * 1200)
    nodes = {"in": {"type": "input"}, "one": {"type": "constant", "value": 1.0},
             "m": {"type": "math", "op": "divide", "a": "one", "b": "in"}}
    y = render(nodes, "m", x.size / SR, signal=x)[0]
    np.testing.assert_array_equal(y[:4], [1.0, 0.0, -0.5, 0.0])


def test_math_unconnected_inputs_read_zero():
    y = render({"one": {"type": "constant", "value": 2.0}, "m": {"type": "math", "op": "subtract", "b": "one"}},
               "m", 0.01)[0]
    assert np.all(y == -2.0)


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize("text, want", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("-2 ** 2", -4), ("2 ** 3 ** 2", 512), ("2 ^ -1", 0.5),
    ("10 % 3", 1), ("-7 % 3", 2), ("7 / 2 / 2", 1.75), ("1 - 2 - 3", -4), ("1 < 2 == 1", 1),
    ("3 >= 3", 1), ("2 != 2", 0), ("1 + 2 > 2", 1), ("--1", 1), ("+-+1", -1),
    ("min(3, 1, 2)", 1), ("max(3, 1, 2)", 3), ("clip(5, 0, 1)", 1), ("mix(2, 4, 0.25)", 2.5),
    ("if(0, 1, 2)", 2), ("if(1 > 0, 1, 2)", 1), ("sqrt(-4)", 0), ("1 / 0", 0), ("5 % 0", 0),
    ("log(0)", math.log(1e-30)), ("exp(1000)", 1e30), ("pi", math.pi), ("floor(-1.5)", -2),
    ("mtof(69)", 440), ("round(2.5)", 3), ("abs(-3) + sign(-2)", 2), ("frac(-0.25)", 0.75),
    ("(-8) ** (1/3)", 0), ("0 ** -1", 0), ("1e3 * .5", 500), ("tanh(1e30)", 1), ("db2amp(-20)", 0.1),
])
def test_expression_precedence_and_safe_values(text, want):
    assert float(E.compile_expr(text)()) == pytest.approx(want, rel=1e-12)


def test_expression_inputs_time_and_sample_rate():
    p = E.compile_expr("a * b + c - d + t * sr", sample_rate=1000)
    assert p.uses == {"a", "b", "c", "d", "t"}
    np.testing.assert_allclose(p(a=[1, 2], b=3, c=0.5, d=1, t=[0, 0.001]), [2.5, 6.5])


@pytest.mark.parametrize("text, pos, match", [
    ("a + * b", 5, "expected a number, an input"),
    ("sin(a", 6, "expected ',' or '\\)' in the call of sin"),
    ("(a + b", 7, "expected '\\)' to close the '\\(' at position 1"),
    ("a + b)", 6, "unbalanced '\\)'"),
    ("a b", 3, "expected an operator"),
    ("foo(a)", 1, "unknown function 'foo'"),
    ("x + 1", 1, "unknown name 'x'"),
    ("a $ b", 3, "unexpected character '\\$'"),
    ("1e999", 1, "too large"),
    ("", 1, "empty expression"),
    ("min(a)", 1, "min\\(\\) takes at least 2 arguments"),
    ("sin(a, b)", 1, "sin\\(\\) takes 1 argument, got 2"),
    ("sin + 1", 5, "expected '\\(' after the function name 'sin'"),
    ("2 **", 5, "found the end of the expression"),
    ("(" * 100 + "a" + ")" * 100, 61, "nested too deeply"),
])
def test_expression_errors_say_where_and_what(text, pos, match):
    with pytest.raises(PatchError, match=match) as info:
        E.compile_expr(text)
    assert f"at position {pos}" in str(info.value)
    assert info.value.where.key == "expr"


def test_expression_error_in_a_patch_names_file_line_and_key(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text('nodes:\n  osc: {type: sine}\n  m: {type: math, a: osc, expr: "tanh(3 * a"}\nout: m\n')
    with pytest.raises(PatchError) as info:
        patchlib.load_patch(str(path))
    w = info.value.where
    assert (w.line, w.node, w.key) == (3, "m", "expr") and w.file == str(path)
    assert "at position 11" in str(info.value) and "^" in str(info.value)
    with pytest.raises(PatchError, match="not both"):
        patchlib.load_patch({"nodes": {"m": {"type": "math", "op": "add", "expr": "a"}}, "out": "m"})
    with pytest.raises(PatchError, match="needs 'expr"):
        patchlib.load_patch({"nodes": {"m": {"type": "math", "op": "expr"}}, "out": "m"})


def test_expression_node_matches_numpy_and_is_block_size_invariant():
    nodes = {"osc": {"type": "sine", "freq": 220}, "lfo": {"type": "sine", "freq": 3},
             "m": {"type": "math", "expr": "tanh(3 * a) * (0.5 + 0.5 * b) + 0.1 * sin(2 * pi * 5 * t)",
                   "a": "osc", "b": "lfo"}}
    ref = render(nodes, ["m", "osc", "lfo"], 0.3, 1)
    y, a, b = ref
    t = np.arange(y.size) / SR
    np.testing.assert_allclose(y, np.tanh(3 * a) * (0.5 + 0.5 * b) + 0.1 * np.sin(2 * np.pi * 5 * t), atol=1e-6)
    for bs in (7, 64, 600):
        np.testing.assert_array_equal(render(nodes, ["m", "osc", "lfo"], 0.3, bs), ref)


def test_expression_on_stereo_inputs():
    nodes = {"osc": {"type": "sine", "freq": 220}, "p": {"type": "pan", "in": "osc", "pan": 0.5},
             "m": {"type": "math", "expr": "a * 2", "a": "p"}}
    y = render(nodes, "m", 0.05)
    p = render(nodes, "p", 0.05)
    assert y.shape[0] == 2
    np.testing.assert_allclose(y, 2 * p, atol=1e-6)


# ---- property tests
NAMES = ["a", "b", "c", "d", "t", "sr", "pi", "e"]
UNARY = [f for f, (_, n) in E.FUNCTIONS.items() if n == 1]
BINARY_F = [f for f, (_, n) in E.FUNCTIONS.items() if n in (2, -2)]
TERNARY = [f for f, (_, n) in E.FUNCTIONS.items() if n == 3]
OPS = ["+", "-", "*", "/", "%", "**", "^", "<", "<=", ">", ">=", "==", "!="]

leaf = st.one_of(st.sampled_from(NAMES),
                 st.floats(0, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
                 st.sampled_from(["0", "1e-30", "1e30", "0.5"]))


def _extend(inner):
    return st.one_of(
        st.tuples(inner, st.sampled_from(OPS), inner).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
        st.tuples(st.sampled_from(UNARY), inner).map(lambda x: f"{x[0]}({x[1]})"),
        st.tuples(st.sampled_from(BINARY_F), inner, inner).map(lambda x: f"{x[0]}({x[1]}, {x[2]})"),
        st.tuples(st.sampled_from(TERNARY), inner, inner, inner).map(lambda x: f"{x[0]}({x[1]}, {x[2]}, {x[3]})"),
        inner.map(lambda x: f"-{x}"),
    )


expressions = st.recursive(leaf, _extend, max_leaves=25)
EXTREMES = np.array([0.0, -0.0, 1.0, -1.0, 1e-38, -1e-38, 3e38, -3e38, 1e30, -1e30, 0.5, 2.0, -7.3, 1e-7],
                    dtype=np.float32).astype(np.float64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, st.integers(0, 2**31 - 1))
def test_random_valid_expressions_never_give_nan_or_inf(text, seed):
    prog = E.compile_expr(text)
    rng = np.random.default_rng(seed)
    cols = [rng.permutation(EXTREMES) for _ in range(4)]
    t = rng.choice([0.0, 1e-3, 1.0, 3600.0], EXTREMES.size)
    y = prog(*cols, t=t)
    assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1e30)
    assert np.all(np.isfinite(y.astype(np.float32)))


ALPHABET = "ab cdt()+-*/%^<>=!,.e0123456789sinmaxlogpqz$#_\"'\\[]{}@:;\n\t"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(ALPHABET, max_size=60), st.text(max_size=40), expressions.map(lambda s: s[:-1]),
                 expressions.map(lambda s: s.replace("(", "", 1))))
def test_garbage_only_ever_raises_patch_error(text):
    try:
        prog = E.compile_expr(text)
    except PatchError as e:
        assert "position" in str(e) or "too long" in str(e)
        return
    assert np.all(np.isfinite(prog(a=EXTREMES, b=1.0, c=-1.0, d=0.0, t=1.0)))


def test_non_text_and_huge_expressions_are_patch_errors():
    for bad in (5, None, ["a"]):
        with pytest.raises(PatchError):
            E.compile_expr(bad)
    with pytest.raises(PatchError, match="too long"):
        E.compile_expr("a + " * 1000 + "a")
    with pytest.raises(PatchError, match="too long"):
        E.compile_expr("+".join(["a"] * 500))
    chain = E.compile_expr("-".join(["a"] * 200))  # the longest chain compiles (399 terms)
    assert float(chain(a=1.0)) == -198.0


# ---------------------------------------------------------------- every option, any block size
W = "wild"
CASES = {
    "adsr-exp-legato": {"type": "adsr", "curve": "exp", "mode": "legato", "gate": "sq",
                        "attack": {"from": W, "range": [0, 0.01]}, "decay_curve": {"from": W, "range": [-1, 1]}},
    "adsr-log": {"type": "adsr", "curve": "log", "gate": "sq", "release": {"from": W, "range": [0, 0.02]},
                 "sustain": {"from": W, "range": [0, 1]}},
    "ar-hold": {"type": "ar", "hold": True, "gate": "sq", "attack_curve": {"from": W, "range": [-1, 1]}},
    "ar": {"type": "ar", "gate": "sq", "release": {"from": W, "range": [0, 0.01]}},
    "ramp-exp": {"type": "ramp", "curve": "exp", "trig": "sq", "start": {"from": W, "range": [-5, 5]},
                 "end": 3, "time": {"from": W, "range": [0, 0.01]}},
    "sample_hold-rate": {"type": "sample_hold", "in": "src", "rate": {"from": W, "range": [0.01, 2000]}},
    "slew-exp": {"type": "slew", "mode": "exp", "in": "src", "rise": {"from": W, "range": [0, 0.01]}},
    "slew-lin": {"type": "slew", "in": "src", "fall": {"from": W, "range": [0, 0.01]}},
    "quantize-hz": {"type": "quantize", "in": "big", "scale": "blues", "root": "Eb"},
    "quantize-st": {"type": "quantize", "in": "big", "unit": "semitones", "scale": [0, 2.5, 7]},
    "clock": {"type": "clock", "bpm": {"from": W, "range": [1, 1000]}, "swing": {"from": W, "range": [0, 0.75]},
              "duty": {"from": W, "range": [0, 1]}, "division": 16},
    "sequencer-bpm": {"type": "sequencer", "pitches": ["C4", None, 300, "-"], "durations": [0.01, 0.02],
                      "bpm": {"from": W, "range": [1, 1000]}, "transpose": {"from": W, "range": [-48, 48]},
                      "loop": True},
    "sequencer-once": {"type": "sequencer", "pitches": ["C4", "D4"], "durations": 0.02, "loop": False,
                       "bpm": 900},
    "math-expr": {"type": "math", "expr": "a / b + c ** d - log(a) * exp(b * 1000) + sin(t * sr) % c",
                  "a": "src", "b": "big", "c": W, "d": "sq"},
    "math-clip": {"type": "math", "op": "clip", "a": "big", "lo": {"from": W, "range": [-1e6, 1e6]}},
    "amp_to_db": {"type": "amp_to_db", "in": "src"},
    "db_to_amp": {"type": "db_to_amp", "in": "big"},
    "midi_to_hz": {"type": "midi_to_hz", "in": "big", "a4": 415},
    "hz_to_midi": {"type": "hz_to_midi", "in": "big"},
}


@pytest.mark.parametrize("name", list(CASES))
def test_options_are_block_size_invariant_finite_and_reset(name):
    dut = CASES[name]
    port = {"sequencer-bpm": "dut.gate", "sequencer-once": "dut.step", "clock": "dut.trig"}.get(name, "dut")
    patch = {"sample_rate": 16000, "nodes": {
        "src": {"type": "noise", "seed": 1}, "wild": {"type": "noise", "seed": 2, "color": "white"},
        "sq": {"type": "square", "freq": 30}, "big": {"type": "gain", "in": "wild", "gain": 16},
        "dut": dut}, "out": port}
    spec = patchlib.load_patch(patch)
    ref = patchlib.Engine(spec, block_size=1).render(2400)
    assert np.all(np.isfinite(ref)) and np.any(ref != ref[:, :1])
    for bs in (7, 64, 600):
        e = patchlib.Engine(spec, block_size=bs)
        np.testing.assert_array_equal(e.render(2400), ref, err_msg=f"block size {bs}")
        assert not e.warnings
        e.reset()
        np.testing.assert_array_equal(e.render(2400), ref, err_msg="after reset")
