"""Tests of the ADSR envelope kernel (nodes/dsp/_envelope.py)."""
from __future__ import annotations

import numpy as np
import pytest

from nodes.dsp._envelope import (
    ADSR_STATE_SIZE,
    STAGE_IDLE,
    adsr_kernel,
    adsr_state,
)

SR = 48000.0


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _full(v, n):
    return _f32(np.broadcast_to(np.asarray(v, np.float32), (n,)))


def _gate(n, *spans):
    g = np.zeros(n, np.float32)
    for a, b in spans:
        g[a:b] = 1.0
    return g


def _run(gate, a, d, s, r, state=None):
    n = len(gate)
    out = np.full(n, -1.0, np.float32)
    st = adsr_state() if state is None else state
    adsr_kernel(out, n, _f32(gate), _full(a, n), _full(d, n), _full(s, n), _full(r, n), SR, st)
    return out.astype(np.float64), st


def test_state_layout():
    s = adsr_state()
    assert s.shape == (ADSR_STATE_SIZE,) and s.dtype == np.float64 and not s.any()


def test_attack_reaches_one_at_exact_sample():
    e = 100
    out, _ = _run(_gate(2000, (e, 2000)), 0.010, 0.1, 0.5, 0.2)
    assert np.all(out[:e + 1] == 0.0)  # the edge sample is the start level
    k = np.arange(480)
    np.testing.assert_allclose(out[e:e + 480], k / 480.0, atol=1e-6)
    assert out[e + 479] < 1.0
    assert out[e + 480] == 1.0
    assert out[e + 481] < 1.0  # decay starts on the next sample
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_decay_reaches_minus_60db_of_distance_in_decay_time():
    e, s, dec = 10, 0.4, 0.1
    out, _ = _run(_gate(12000, (e, 12000)), 0.002, dec, s, 0.2)
    peak = e + 96
    assert out[peak] == 1.0
    dist = (out - s) / (1.0 - s)
    first = peak + int(np.argmax(dist[peak:] <= 1e-3))
    assert abs(first - (peak + dec * SR)) <= 1
    # Exponential: constant ratio per sample on the way.
    ratios = dist[peak + 1:peak + 4000] / dist[peak:peak + 3999]
    np.testing.assert_allclose(ratios, 1e-3 ** (1 / (dec * SR)), rtol=1e-4)
    # Sustain is held (snapped exactly onto it eventually).
    assert out[-1] == np.float32(s)


def test_release_from_sustain_reaches_minus_60db_in_release_time_and_snaps():
    s, rel = 0.5, 0.05
    off = 10000
    out, st = _run(_gate(30000, (0, off)), 0.001, 0.02, s, rel)
    assert out[off - 1] == np.float32(s)
    assert out[off] == np.float32(s)  # the edge sample is the start level
    first = off + int(np.argmax(out[off:] <= 1e-3 * s * (1 + 1e-6)))
    assert abs(first - (off + rel * SR)) <= 1
    # Snaps to exactly 0 once below 1e-6 and goes idle.
    nz = out[off:] > 0
    last_nz = off + int(np.nonzero(nz)[0][-1])
    assert out[last_nz] >= 1e-6 * 0.99 and out[last_nz + 1] == 0.0
    expect = off + rel * SR * np.log(1e-6 / s) / np.log(1e-3)
    assert abs(last_nz - expect) <= 2
    assert np.all(out[last_nz + 1:] == 0.0)
    assert st[0] == STAGE_IDLE and st[1] == 0.0


def test_retrigger_during_release_has_no_jump():
    att = 0.005
    g = _gate(20000, (0, 5000), (5400, 20000))
    out, _ = _run(g, att, 0.05, 0.7, 0.1)
    jumps = np.abs(np.diff(out))
    inc = 1.0 / (att * SR)
    assert jumps.max() <= inc + 1e-7  # float32 output rounding
    # It restarts from the release level and rises linearly from there.
    lvl = out[5399]
    assert 0.0 < lvl < 0.7
    assert out[5400] < lvl  # still the release step at the edge instant
    np.testing.assert_allclose(np.diff(out[5400:5410]), inc, rtol=1e-4)
    # Reaches 1.0 after (1 - level) * attack samples.
    peak = int(np.argmax(out[5400:] == 1.0))
    assert abs(peak - round((1 - out[5400]) * att * SR)) <= 1


def test_release_during_attack_starts_from_current_level():
    g = _gate(6000, (0, 200))
    out, _ = _run(g, 0.01, 0.1, 0.5, 0.05)
    assert abs(out[199] - 199 / 480) < 1e-6 and abs(out[200] - 200 / 480) < 1e-6
    assert out[201] < out[200]
    assert np.abs(np.diff(out)).max() <= 1 / 480 + 1e-7


def test_zero_times_jump_without_division_by_zero():
    g = _gate(100, (10, 50))
    out, _ = _run(g, 0.0, 0.0, 0.3, 0.0)
    assert np.all(out[:10] == 0.0)
    assert out[10] == 1.0  # zero attack: 1.0 on the edge sample
    assert out[11] == np.float32(0.3)  # zero decay: sustain on the next one
    assert np.all(out[11:50] == np.float32(0.3))
    assert np.all(out[50:] == 0.0)  # zero release: 0 on the edge sample
    for bad in (-1.0, np.nan):
        out, _ = _run(g, bad, bad, 0.3, bad)
        assert np.isfinite(out).all() and out[10] == 1.0 and out[50] == 0.0


def test_sustain_param_is_clamped_and_followed():
    g = _gate(20000, (0, 20000))
    s = np.full(20000, 2.0, np.float32)
    s[10000:] = 0.25
    out = np.zeros(20000, np.float32)
    adsr_kernel(out, 20000, g, _full(0.001, 20000), _full(0.01, 20000), s,
                _full(0.1, 20000), SR, adsr_state())
    assert out.max() == 1.0 and np.all(out[48:10000] == 1.0)
    assert out[-1] == np.float32(0.25)
    assert np.abs(np.diff(out[10000:])).max() < 0.75 * (1 - 1e-3 ** (1 / 480)) + 1e-6


def _random_program(seed, n):
    rng = np.random.default_rng(seed)
    g = np.zeros(n, np.float32)
    pos = 0
    on = False
    while pos < n:
        span = int(rng.integers(1, 3000))
        g[pos:pos + span] = 1.0 if on else 0.0
        on = not on
        pos += span
    t = np.arange(n) / SR
    a = _f32(np.abs(0.005 + 0.02 * np.sin(2 * np.pi * 1.3 * t)) * (rng.random(n) > 0.01))
    d = _f32(0.05 + 0.04 * np.sin(2 * np.pi * 0.7 * t))
    s = _f32(0.5 + 0.5 * np.sin(2 * np.pi * 0.9 * t))
    r = _f32(np.where(rng.random(n) < 0.001, 0.0, 0.03 + 0.02 * np.sin(2 * np.pi * 2.1 * t)))
    return g, a, d, s, r


def test_chunking_is_bit_exact_with_varying_params():
    n = 40000
    g, a, d, s, r = _random_program(99, n)
    ref = np.zeros(n, np.float32)
    adsr_kernel(ref, n, g, a, d, s, r, SR, adsr_state())
    assert np.all((ref >= 0.0) & (ref <= 1.0))
    for sizes in ([1], [64], [100], [8193], [1, 64, 100, 8193, 13]):
        st = adsr_state()
        got = np.zeros(n, np.float32)
        pos = k = 0
        while pos < n:
            m = min(sizes[k % len(sizes)], n - pos)
            oc = np.zeros(m, np.float32)
            sl = slice(pos, pos + m)
            adsr_kernel(oc, m, _f32(g[sl]), _f32(a[sl]), _f32(d[sl]), _f32(s[sl]),
                        _f32(r[sl]), SR, st)
            got[sl] = oc
            pos += m
            k += 1
        assert np.array_equal(got, ref), sizes


def test_only_first_n_written():
    out = np.full(300, 5.0, np.float32)
    adsr_kernel(out, 200, _full(1.0, 300), _full(0.001, 300), _full(0.1, 300),
                _full(0.5, 300), _full(0.1, 300), SR, adsr_state())
    assert np.all(out[200:] == 5.0) and out[:200].max() <= 1.0


@pytest.mark.parametrize("att_ms", [1.0, 10.0, 100.0])
def test_attack_length_scales(att_ms):
    A = att_ms * 1e-3 * SR
    out, _ = _run(_gate(int(A) + 100, (0, int(A) + 100)), att_ms * 1e-3, 1.0, 0.5, 1.0)
    assert int(np.argmax(out == 1.0)) == round(A)
