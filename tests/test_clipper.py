"""The virtual-analog diode clipper, measured on rendered audio.

Small-signal response vs the analytic RC lowpass, saturation at the diodes'
forward voltage, odd harmonics of a symmetric clipper, the implicit solver
against a stiff reference integrator (scipy Radau at rtol 1e-10), aliasing
with and without oversampling, block-size invariance under modulation.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import bin_amplitude, db, render_engine
from nodes.dsp import _clipper

SR = 48000


def run(node, x, sr=SR):
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    patch = {"sample_rate": sr, "nodes": {"src": {"type": "input"}, "dut": {"type": "diode_clipper", "in": "src",
                                                                             **node}}, "out": "dut"}
    audio, engine = render_engine(patch, frames=x.shape[1], audio_inputs={"": (x, sr)})
    return audio.astype(np.float64)[0], engine.nodes["dut"]


def sine(freq, seconds, amp=1.0):
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(seconds * SR))) / SR)


def tone_response(f, tone):
    """|H| of the TPT one-pole tone lowpass (bilinear transform, prewarped) at ``f`` Hz."""
    g = np.tan(np.pi * _clipper.tone_cutoff(tone, SR) / SR)
    z1 = np.exp(-2j * np.pi * f / SR)
    return np.abs(g * (1 + z1) / (g * (1 + z1) + 1 - z1))


def test_small_signal_response_is_the_rc_lowpass():
    fc = 1.0 / (2 * np.pi * _clipper.R * _clipper.C)
    assert abs(fc - 7234.0) < 1.0
    amp, level = 0.5, 0.9
    g = float(_clipper.drive_gain(0.0))
    errs = []
    for f in (100, 300, 1000, 2000, 3000, 4000, 5000):
        y, node = run({"gain": 0.0, "tone": 0.8, "level": level}, sine(f, 0.6, amp))
        got = bin_amplitude(y[SR // 10:SR // 10 + SR // 2], f)
        want = level * g * amp / np.abs(1 + 1j * f / fc) * tone_response(f, 0.8)
        errs.append(db(got / want))
    assert np.max(np.abs(errs)) < 0.5, errs
    assert np.max(np.abs(errs)) < 0.05, errs  # in fact it is far closer


def test_high_drive_saturates_at_the_diode_forward_voltage_scaled_by_level():
    peaks = {}
    for amp in (0.5, 1.0):
        for level in (0.5, 1.0):
            y, _ = run({"gain": 1.0, "tone": 1.0, "level": level}, sine(200, 0.3, amp))
            peaks[amp, level] = np.max(np.abs(y[SR // 10:]))
    for amp in (0.5, 1.0):
        assert peaks[amp, 0.5] == pytest.approx(0.5 * peaks[amp, 1.0], rel=1e-3)
        assert 0.6 < peaks[amp, 1.0] < 0.8  # silicon diodes: about 0.65-0.75 V at these currents
    # 6 dB more input: under 0.5 dB more output (n Vt ln 2 = 31 mV more across the diodes)
    assert db(peaks[1.0, 1.0] / peaks[0.5, 1.0]) < 0.5


def test_symmetric_clipper_makes_odd_harmonics():
    f = 200
    y, _ = run({"gain": 0.8, "tone": 1.0, "level": 1.0}, sine(f, 0.6, 0.8))
    seg = y[SR // 10:SR // 10 + SR // 2]
    h1, h2, h3, h4, h5 = (bin_amplitude(seg, k * f) for k in (1, 2, 3, 4, 5))
    assert db(h3 / h1) > -20  # strongly clipped
    assert db(h5 / h1) > -30
    assert db(h2 / h1) < -120 and db(h4 / h1) < -120  # even harmonics: numerical noise only


@pytest.mark.parametrize("amp,oversample,tol", [(4.0, 4, 5e-4), (30.0, 4, 1e-2), (30.0, 16, 1e-3)])
def test_implicit_solver_matches_a_stiff_reference_integrator(amp, oversample, tol):
    from scipy.integrate import solve_ivp

    R, C, IS, NVT = _clipper.R, _clipper.C, _clipper.IS, _clipper.NVT
    f = 200.0
    T = 1.0 / (SR * oversample)
    te = np.arange(int(round(0.01 / T))) * T

    def rhs(t, v):
        return (amp * np.sin(2 * np.pi * f * t) - v) / (R * C) - 2 * IS / C * np.sinh(v / NVT)

    def jac(t, v):
        return [[-1 / (R * C) - 2 * IS / (C * NVT) * np.cosh(v[0] / NVT)]]

    ref = solve_ivp(rhs, (0, te[-1]), [0.0], method="Radau", t_eval=te, rtol=1e-10, atol=1e-12, jac=jac,
                    max_step=4 * T).y[0]
    got = _clipper.ode_step(amp * np.sin(2 * np.pi * f * te), T)
    assert np.max(np.abs(got - ref)) < tol
    assert np.max(np.abs(ref)) > 0.55  # the test does clip


def test_solver_is_second_order():
    # halving the step shrinks the error about 4x (trapezoidal rule), checked against a 64x run
    x = lambda F: 4.0 * np.sin(2 * np.pi * 200 * np.arange(int(0.01 * SR * F)) / (SR * F))  # noqa: E731
    ref = _clipper.ode_step(x(64), 1 / (SR * 64))[::16]
    e4 = np.max(np.abs(_clipper.ode_step(x(4), 1 / (SR * 4)) - ref))
    e8 = np.max(np.abs(_clipper.ode_step(x(8), 1 / (SR * 8))[::2] - ref))
    assert 3.0 < e4 / e8 < 5.0


def test_solver_never_diverges_on_extreme_input():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal(4000) * 1e3, np.full(100, 1e6), np.full(100, -1e6), np.zeros(100)])
    v = _clipper.ode_step(x, 1 / SR)
    assert np.all(np.isfinite(v)) and np.max(np.abs(v)) < 1.5


def alias_db(oversample):
    """Worst component below 20 kHz that is not a harmonic of 5 kHz, dB re the fundamental."""
    f = 5000
    y, _ = run({"gain": 0.7, "tone": 1.0, "level": 1.0, "oversample": oversample}, sine(f, 0.6, 0.7))
    seg = y[SR // 10:SR // 10 + SR // 2]
    spec = np.abs(np.fft.rfft(seg)) * 2 / seg.size
    freqs = np.fft.rfftfreq(seg.size, 1 / SR)
    harm = np.isclose(np.mod(freqs + 1.0, f), 1.0, atol=0.5)
    band = (freqs > 50) & (freqs < 20000) & ~harm
    return db(spec[band].max() / bin_amplitude(seg, f))


def test_oversampling_reduces_aliasing():
    # measured: 1x -24 dB, 2x -41 dB, 4x -65 dB, 8x -91 dB (the hard-clipped sine's 37th and 39th
    # harmonics fold at 4x; the RC lowpass and the clipping's roll-off keep them this low)
    a1, a2, a4 = alias_db(1), alias_db(2), alias_db(4)
    assert a1 > -40  # without oversampling the clipped 5 kHz sine folds audibly
    assert a2 < a1 - 12
    assert a4 < a1 - 35 and a4 < -60


@pytest.mark.parametrize("oversample,latency", [(1, 0), (2, 55), (4, 62), (8, 64)])
def test_latency_is_reported(oversample, latency):
    x = np.zeros(400)
    x[10] = 1.0
    y, node = run({"gain": 0.0, "tone": 1.0, "level": 1.0, "oversample": oversample}, x)
    assert node.latency == latency
    # the impulse response's centre of energy sits at 10 + latency (+ the causal RC/tone lowpass' few samples)
    peak = int(np.argmax(np.abs(y)))
    assert 10 + latency <= peak <= 10 + latency + 3


def test_block_size_invariance_under_audio_rate_modulation():
    patch = {"sample_rate": SR, "nodes": {
        "src": {"type": "input"},
        "lfo": {"type": "sine", "freq": 3.0},
        "dut": {"type": "diode_clipper", "in": "src", "gain": {"from": "lfo", "range": [0.1, 0.95]},
                "tone": {"from": "lfo", "range": [0.9, 0.2]}, "level": 0.7}}, "out": "dut"}
    x = np.atleast_2d(np.random.default_rng(2).standard_normal(6000).astype(np.float32) * 0.5)
    outs = [render_engine(patch, frames=x.shape[1], block_size=bs, audio_inputs={"": (x, SR)})[0]
            for bs in (1, 37, 512)]
    assert np.all(np.isfinite(outs[0])) and np.max(np.abs(outs[0])) > 0.1
    for o in outs[1:]:
        assert np.max(np.abs(o - outs[0])) < 1e-6
