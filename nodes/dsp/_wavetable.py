"""Mipmapped, band-limited wavetables and their oscillator kernel (numba).

A wavetable is one or more single cycles (for ``position`` morphing), each
given as harmonic coefficients: ``w(theta) = sum_k Re(C_k exp(2 pi i k theta))``
for k = 1..K (no DC). From a harmonic list, ``C_k = a_k exp(i (2 pi phi_k -
pi / 2))``, so a list of amplitudes with zero phases is a sum of sines that
starts at 0, rising, like the other oscillators. From audio, the cycle's DFT.

Band-limiting is by mipmapping: table ``m`` keeps only the harmonics
``k <= floor(2 ** (m / LEVELS_PER_OCTAVE))`` (a new table every quarter
octave), and the kernel plays the richest table whose harmonics all fit
below Nyquist (``k * |speed| <= 0.5``) at the phase's speed over the last
sample, modulation included: no pitch, FM or PM plays a harmonic above
Nyquist. The top harmonic played is within a quarter octave of Nyquist
(above 20.1 kHz at 48 kHz, 18.5 kHz at 44.1 kHz, for rich enough tables).
Tables are picked, not crossfaded: a crossfade would play the richer table's
top harmonics above Nyquist.

Lookup is 4-point cubic (Catmull-Rom) interpolation in ``TABLE_SIZE``
points; at most ``MAX_HARMONICS`` harmonics are kept (a table holds >= 4
points per period of its top harmonic), which keeps the interpolation's
images below about -70 dB re the harmonic (tests/test_oscillators.py).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._interp import hermite as _hermite
from ._osc import (
    _BLEP,
    _BLEP_D,
    _MASK,
    _RING,
    _add_residual,
    _finite,
    _mod_load,
    _mod_store,
    _pm_step,
    _signed_rate,
    _sync_time,
    _wrap,
)

#: Points per table (one cycle).
TABLE_SIZE = 2048
#: Mipmap levels per octave of pitch.
LEVELS_PER_OCTAVE = 4
#: Most harmonics a table keeps (a quarter of TABLE_SIZE: >= 4 points per period).
MAX_HARMONICS = TABLE_SIZE // 4
#: Guard points: one before and two after the cycle, for the cubic lookup.
GUARD = 3


def spectrum_from_harmonics(amps, phases=None) -> np.ndarray:
    """Complex coefficients ``C_k`` (k = 1..K) of ``sum_k a_k sin(2 pi (k theta + phi_k))``.

    Args:
        amps: Amplitudes of harmonics 1, 2, ... (any real numbers).
        phases: Phases in cycles, one per harmonic (missing ones are 0).

    Returns:
        complex128 array of length ``len(amps)``.
    """
    a = np.asarray(amps, dtype=np.float64)
    ph = np.zeros(len(a))
    if phases is not None:
        p = np.asarray(phases, dtype=np.float64)[: len(a)]
        ph[: len(p)] = p
    return a * np.exp(1j * (2.0 * np.pi * ph - 0.5 * np.pi))


def spectra_from_audio(x: np.ndarray, cycles: int = 1) -> np.ndarray:
    """Coefficients of ``cycles`` consecutive single cycles of equal length in ``x``.

    Args:
        x: Mono samples; ``len(x) // cycles`` samples per cycle (a remainder
            is ignored).
        cycles: How many cycles the samples hold.

    Returns:
        complex128 array ``(cycles, K)``, K = (samples per cycle - 1) // 2:
        the DFT bins 1..K scaled to amplitudes (DC and a Nyquist bin dropped).
    """
    x = np.asarray(x, dtype=np.float64)
    m = len(x) // cycles
    parts = x[: m * cycles].reshape(cycles, m)
    spec = np.fft.rfft(parts, axis=1) * (2.0 / m)
    k = (m - 1) // 2
    return spec[:, 1 : k + 1]


def level_harmonics(m: int) -> int:
    """Harmonics kept by mipmap level ``m``."""
    return int(math.floor(2.0 ** (m / LEVELS_PER_OCTAVE) + 1e-9))


def build_tables(spectra: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Mipmapped tables for one or more cycles.

    Args:
        spectra: complex ``(T, K)``: the coefficients of harmonics 1..K of T
            cycles (position 0 is the first).
        normalize: Scale all tables by one gain so the loudest peak is 1.

    Returns:
        float32 ``(T, L, TABLE_SIZE + GUARD)``: ``[t, m, j + 1]`` is table m
        of cycle t at phase ``j / TABLE_SIZE`` for j = -1 .. TABLE_SIZE + 1.

    Raises:
        ValueError: If every coefficient is zero.
    """
    spectra = np.atleast_2d(np.asarray(spectra, dtype=np.complex128))
    t_count = spectra.shape[0]
    nz = np.flatnonzero(np.any(np.abs(spectra) > 1e-12, axis=0))
    if nz.size == 0:
        raise ValueError("the wavetable is silent: every harmonic is zero")
    kmax = min(int(nz[-1]) + 1, MAX_HARMONICS)
    levels = 1
    while level_harmonics(levels - 1) < kmax:
        levels += 1
    n = TABLE_SIZE
    tables = np.zeros((t_count, levels, n + GUARD), dtype=np.float64)
    for m in range(levels):
        k = min(level_harmonics(m), kmax)
        spec = np.zeros((t_count, n // 2 + 1), dtype=np.complex128)
        spec[:, 1 : k + 1] = spectra[:, :k] * (n / 2.0)
        cyc = np.fft.irfft(spec, n, axis=1)
        tables[:, m, 1 : n + 1] = cyc
        tables[:, m, 0] = cyc[:, -1]
        tables[:, m, n + 1] = cyc[:, 0]
        tables[:, m, n + 2] = cyc[:, 1]
    if normalize:
        peak = float(np.max(np.abs(tables)))
        if peak > 0.0:
            tables /= peak
    return np.ascontiguousarray(tables, dtype=np.float32)


@numba.njit(cache=True, nogil=True, inline="always")
def _level(speed, levels):
    """Mipmap level for a phase speed (cycles/sample): the richest whose top harmonic stays <= Nyquist.

    ``k`` harmonics fit while ``k * speed <= 0.5``; level m holds
    ``floor(2 ** (m / P))`` of them, which is ``<= kfit`` exactly when
    ``m < P * log2(kfit + 1)``.
    """
    if not (speed > 1e-9):  # also NaN: stalled, the richest table
        return levels - 1
    kfit = math.floor(0.5 / speed)
    if kfit < 1.0:  # above Nyquist whatever we do: the plainest table
        return 0
    m = math.ceil(LEVELS_PER_OCTAVE * math.log2(kfit + 1.0)) - 1
    if m > levels - 1:
        return levels - 1
    return int(m)


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup(row, th, size):
    """Catmull-Rom interpolation of one table row at phase th in [0, 1)."""
    x = th * size
    j = int(x)
    if j >= size:  # th just below 1.0 rounding up
        j = size - 1
    f = x - j
    y0 = row[j]
    y1 = row[j + 1]
    y2 = row[j + 2]
    y3 = row[j + 3]
    return _hermite(y0, y1, y2, y3, f)


@numba.njit(cache=True, nogil=True, inline="always")
def _value(tables, t0, frac, lvl, th, size):
    y = _lookup(tables[t0, lvl], th, size)
    if frac > 0.0:
        y += frac * (_lookup(tables[t0 + 1, lvl], th, size) - y)
    return y


@numba.njit(cache=True, nogil=True)
def wavetable_kernel(out, n, freq, fm, fm_depth, pm, pm_depth, sync, position, tables, sr, state):
    """Wavetable oscillator with mipmaps, position morphing, through-zero FM, PM and hard sync.

    The phase model is ``_osc.sine_mod_kernel``'s; the waveform is the
    table for the phase's speed over the last interval (see the module
    docstring), crossfaded between neighbouring cycles by ``position``. A
    sync's jump gets a minBLEP of its height, as on the sine.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample.
        fm, fm_depth, pm, pm_depth, sync: as ``_osc.sine_mod_kernel``.
        position: float32 per sample, 0..1 across the cycles (clamped).
        tables: float32 ``(T, L, TABLE_SIZE + GUARD)`` from ``build_tables``.
        sr: Sample rate in Hz.
        state: float64 array from ``_osc.periodic_state``, updated in place.
    """
    t_count = tables.shape[0]
    levels = tables.shape[1]
    size = tables.shape[2] - 3
    inv_sr = 1.0 / sr
    p, idx, dt, rate, pm_prev, s_prev, ph0 = _mod_load(state)
    lvl_rate = rate
    lvl = _level(abs(rate), levels)
    for i in range(n):
        pmi, dpm, rate = _pm_step(pm[i], pm_depth[i], pm_prev, dt)
        if rate != lvl_rate:
            lvl_rate = rate
            lvl = _level(abs(rate), levels)
        pos = position[i]
        if not (pos > 0.0):  # also NaN
            pos = 0.0
        elif pos > 1.0:
            pos = 1.0
        pos *= t_count - 1
        t0 = int(pos)
        frac = pos - t0
        if t0 >= t_count - 1:
            t0 = t_count - 1
            frac = 0.0
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        if tau >= 0.0:
            th_s = _wrap(p + pm_prev + rate * tau)
            th_r = _wrap(ph0 + pm_prev + dpm * tau)
            jump = _value(tables, t0, frac, lvl, th_r, size) - _value(tables, t0, frac, lvl, th_s, size)
            _add_residual(state, idx, _BLEP, _BLEP_D, jump, 1.0 - tau)
            p = ph0 + dt * (1.0 - tau)
        else:
            p += dt
        p = _wrap(p)
        s = _RING + idx
        out[i] = _value(tables, t0, frac, lvl, _wrap(p + pmi), size) + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        pm_prev = pmi
        s_prev = sc
        dt = _signed_rate(float(freq[i]) + float(fm[i]) * float(fm_depth[i]), inv_sr)
    _mod_store(state, p, idx, dt, rate, pm_prev, s_prev)
