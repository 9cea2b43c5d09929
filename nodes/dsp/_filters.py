"""State-variable filter kernel (numba) and the matching RBJ cookbook biquad.

The filter is Andrew Simper's (Cytomic) linear trapezoidal state-variable
filter, "SvfLinearTrapOptimised2": a topology-preserving transform (TPT) of the
analog SVF, integrated with the trapezoidal rule and prewarped with
``g = tan(pi * fc / sr)``. For fixed cutoff and Q it is the bilinear transform
(with prewarping at the cutoff) of the same analog prototypes that Robert
Bristow-Johnson's Audio-EQ-Cookbook uses, so its transfer function equals the
cookbook biquad returned by :func:`rbj_biquad`. Unlike a direct-form biquad,
its two integrator states keep a physical meaning when the coefficients
change, so cutoff and Q can be modulated at audio rate, across the whole
range, without blowing up or zipper transients.

Per sample (``k = 1 / Q``)::

    a1 = 1 / (1 + g * (g + k)); a2 = g * a1; a3 = g * a2
    v3 = v0 - ic2eq
    v1 = a1 * ic1eq + a2 * v3          # band (peak gain Q)
    v2 = ic2eq + a2 * ic1eq + a3 * v3  # low
    ic1eq = 2 * v1 - ic1eq
    ic2eq = 2 * v2 - ic2eq
    low = v2; band = k * v1 (0 dB peak); high = v0 - k * v1 - v2
    notch = v0 - k * v1; allpass = v0 - 2 * k * v1

Every kernel is a module-level ``@numba.njit(cache=True, nogil=True)``
function; everything that survives a block boundary lives in the float64
state, so N samples in one call are bit-identical to any split into
consecutive chunks, also with per-sample cutoff and Q.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "MODE_LOWPASS",
    "MODE_HIGHPASS",
    "MODE_BANDPASS",
    "MODE_NOTCH",
    "MODE_ALLPASS",
    "MODES",
    "SVF_STATE_COLS",
    "CUTOFF_MIN",
    "CUTOFF_MAX_RATIO",
    "Q_MIN",
    "Q_MAX",
    "svf_state",
    "svf_kernel",
    "rbj_biquad",
]

#: Lowpass (RBJ "LPF"), 12 dB/octave, gain Q at the cutoff.
MODE_LOWPASS = 0
#: Highpass (RBJ "HPF"), 12 dB/octave, gain Q at the cutoff.
MODE_HIGHPASS = 1
#: Bandpass with a constant 0 dB peak (RBJ "BPF constant 0 dB peak gain").
MODE_BANDPASS = 2
#: Notch (RBJ "notch"), 0 dB far from the cutoff, a zero at the cutoff.
MODE_NOTCH = 3
#: Allpass (RBJ "APF"), unit magnitude, phase -180 degrees at the cutoff.
MODE_ALLPASS = 4
#: Mode names, index = mode number.
MODES = ("lowpass", "highpass", "bandpass", "notch", "allpass")

#: Columns of the state array, one row per channel:
#: ``[ic1eq, ic2eq, last raw cutoff, last raw q, flush counter]``.
SVF_STATE_COLS = 5
_IC1 = 0
_IC2 = 1
_LFC = 2
_LQ = 3
_CNT = 4

#: Cutoff clamp: ``[CUTOFF_MIN, CUTOFF_MAX_RATIO * sr]`` Hz.
CUTOFF_MIN = 1.0
CUTOFF_MAX_RATIO = 0.49
#: Q clamp (RBJ Q; 0.7071 is Butterworth).
Q_MIN = 0.05
Q_MAX = 100.0

#: Integrator states smaller than this are flushed to zero, so a filter left
#: ringing out in silence never lingers on (slow) subnormal numbers. It is
#: ~-600 dB: far below anything audible or measurable in float32. Checked
#: every ``_FLUSH_PERIOD`` samples (counted in the state, so chunk-invariant).
_FLUSH = 1e-30
_FLUSH_PERIOD = 64


def svf_state(channels: int) -> np.ndarray:
    """Fresh (all-zero) state for :func:`svf_kernel`.

    Args:
        channels: Output channel count C.

    Returns:
        float64 ``(C, SVF_STATE_COLS)`` = ``(C, 5)``: per channel ``[ic1eq,
        ic2eq, last raw cutoff, last raw q, subnormal-flush counter]``. Zeros
        are the prepared state (silent integrators; a "last" cutoff/q of 0
        just clamps to 1 Hz / Q 0.05 and is recomputed on the first sample
        that differs).
    """
    return np.zeros((int(channels), SVF_STATE_COLS), dtype=np.float64)


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp_fc(fc, sr):
    # Written so that NaN lands on the lower bound.
    if not fc >= CUTOFF_MIN:
        fc = CUTOFF_MIN
    hi = CUTOFF_MAX_RATIO * sr
    if fc > hi:
        fc = hi
    return fc


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp_q(q):
    if not q >= Q_MIN:
        q = Q_MIN
    if q > Q_MAX:
        q = Q_MAX
    return q


@numba.njit(cache=True, nogil=True)
def svf_kernel(x, y, n, cutoff, q, mode, sr, state):
    """TPT state-variable filter (Simper's SvfLinearTrapOptimised2).

    Args:
        x: float32 input ``(Cx, frames)``; channel c reads ``x[min(c, Cx-1)]``
            (a mono input broadcasts to every output channel).
        y: float32 output ``(C, frames)``, ``y[:, :n]`` is written. May be the
            same array as ``x`` (in place) when the shapes match.
        n: Number of samples.
        cutoff: float32 ``(>= n,)`` cutoff in Hz per sample, clamped to
            ``[1, 0.49 * sr]``.
        q: float32 ``(>= n,)`` RBJ Q per sample, clamped to ``[0.05, 100]``.
        mode: 0 lowpass, 1 highpass, 2 bandpass (0 dB peak), 3 notch,
            4 allpass; anything else is lowpass.
        sr: Sample rate in Hz.
        state: float64 ``(C, 5)`` from :func:`svf_state`, updated in place.
            Rows beyond C are ignored; it must have at least C rows.

    The tan() is only evaluated when the raw cutoff or q differs from the
    previous sample's (and once per call per channel, from the values stored
    in the state, which is deterministic, so chunking stays bit-exact).
    """
    nch = y.shape[0]
    cx = x.shape[0]
    pi_over_sr = np.pi / sr
    for c in range(nch):
        xc = c if c < cx else cx - 1
        ic1 = state[c, _IC1]
        ic2 = state[c, _IC2]
        lfc = state[c, _LFC]
        lq = state[c, _LQ]
        cnt = np.int64(state[c, _CNT])
        # Coefficients of the last sample of the previous call.
        g = np.tan(pi_over_sr * _clamp_fc(lfc, sr))
        k = 1.0 / _clamp_q(lq)
        a1 = 1.0 / (1.0 + g * (g + k))
        a2 = g * a1
        a3 = g * a2
        for i in range(n):
            fc = np.float64(cutoff[i])
            qq = np.float64(q[i])
            if fc != lfc or qq != lq:
                lfc = fc
                lq = qq
                g = np.tan(pi_over_sr * _clamp_fc(fc, sr))
                k = 1.0 / _clamp_q(qq)
                a1 = 1.0 / (1.0 + g * (g + k))
                a2 = g * a1
                a3 = g * a2
            v0 = np.float64(x[xc, i])
            v3 = v0 - ic2
            v1 = a1 * ic1 + a2 * v3
            v2 = ic2 + a2 * ic1 + a3 * v3
            ic1 = 2.0 * v1 - ic1
            ic2 = 2.0 * v2 - ic2
            # Subnormal guard, every _FLUSH_PERIOD samples of absolute time
            # (a per-sample test would sit on the recursion's critical path
            # and double the cost).
            cnt += 1
            if cnt >= _FLUSH_PERIOD:
                cnt = 0
                if -_FLUSH < ic1 < _FLUSH:
                    ic1 = 0.0
                if -_FLUSH < ic2 < _FLUSH:
                    ic2 = 0.0
            if mode == MODE_HIGHPASS:
                out = v0 - k * v1 - v2
            elif mode == MODE_BANDPASS:
                out = k * v1
            elif mode == MODE_NOTCH:
                out = v0 - k * v1
            elif mode == MODE_ALLPASS:
                out = v0 - 2.0 * k * v1
            else:
                out = v2
            y[c, i] = out
        state[c, _IC1] = ic1
        state[c, _IC2] = ic2
        state[c, _LFC] = lfc
        state[c, _LQ] = lq
        state[c, _CNT] = cnt


def rbj_biquad(mode: int, cutoff: float, q: float, sr: float):
    """RBJ Audio-EQ-Cookbook biquad matching :func:`svf_kernel`'s mode.

    The same clamps as the kernel are applied to ``cutoff`` and ``q``.

    Args:
        mode: 0 lowpass, 1 highpass, 2 bandpass (constant 0 dB peak),
            3 notch, 4 allpass.
        cutoff: Cutoff (centre) frequency in Hz.
        q: RBJ Q.
        sr: Sample rate in Hz.

    Returns:
        ``(b, a)`` float64 arrays of length 3, normalised so ``a[0] == 1``,
        usable with ``scipy.signal.lfilter`` / ``freqz``.
    """
    fc = min(max(float(cutoff), CUTOFF_MIN), CUTOFF_MAX_RATIO * sr)
    qq = min(max(float(q), Q_MIN), Q_MAX)
    w0 = 2.0 * np.pi * fc / sr
    cw = np.cos(w0)
    sw = np.sin(w0)
    alpha = sw / (2.0 * qq)
    if mode == MODE_LOWPASS:
        b = [(1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0]
    elif mode == MODE_HIGHPASS:
        b = [(1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0]
    elif mode == MODE_BANDPASS:
        b = [alpha, 0.0, -alpha]
    elif mode == MODE_NOTCH:
        b = [1.0, -2.0 * cw, 1.0]
    elif mode == MODE_ALLPASS:
        b = [1.0 - alpha, -2.0 * cw, 1.0 + alpha]
    else:
        raise ValueError(f"unknown SVF mode {mode!r}; known: 0..4 {MODES}")
    a = [1.0 + alpha, -2.0 * cw, 1.0 - alpha]
    a0 = a[0]
    return np.asarray(b, dtype=np.float64) / a0, np.asarray(a, dtype=np.float64) / a0
