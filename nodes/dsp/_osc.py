"""Band-limited oscillator and noise kernels (numba).

Every kernel is a module-level ``@numba.njit(cache=True, nogil=True)`` function
that renders ``n`` float32 samples into ``out[:n]`` from an explicit float64
state array. Everything that must survive a block boundary lives in that array,
so rendering N samples in one call is bit-identical to rendering them in any
split into consecutive chunks (block-size invariance).

Band-limiting follows Brandt's minBLEP (ICMC 2001): a Blackman-Harris windowed
sinc, oversampled ``MINBLEP_OVERSAMPLING`` times, is made minimum-phase through
the real cepstrum and integrated into a band-limited step. The kernels render
the trivial (naive) waveform and, at every discontinuity, add the
height-scaled residual ``bandlimited_step - ideal_step`` into a small ring
buffer kept in the state, linearly interpolated at the discontinuity's
fractional position inside the sample. Slope discontinuities (the triangle's
corners, and the kinks that frequency modulation puts into any ramp) get the
integrated residual (minBLAMP).

A minimum-phase filter delays low frequencies by ``TAU`` samples (its DC group
delay). Steps filtered this way keep their level, but a ramp comes out shifted
by ``slope * TAU``; left alone that is a DC offset of ``2 * f / sr * TAU`` on
the saw (about 0.24 at 1760 Hz / 48 kHz). The kernels therefore subtract
``slope * TAU`` from the naive ramp and use a BLAMP residual that starts at
``TAU`` (not 0), which makes the output exactly the sampled band-limited
continuous waveform, with zero latency, also under frequency modulation.

Phase convention (all periodic kernels): phase is in cycles, ``[0, 1)``.
Phase 0 is a rising zero crossing for sine, saw and triangle and the rising
edge of the pulse, so a freshly zeroed state starts the sine, saw and
triangle from silence without a click. The sample at index ``i`` is the
waveform at the phase held before the increment by ``freq[i] / sr``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._fastmath import sin2pi

__all__ = [
    "MINBLEP_ZERO_CROSSINGS",
    "MINBLEP_OVERSAMPLING",
    "MINBLEP_CUTOFF",
    "RING_LEN",
    "TAU",
    "OSC_STATE_SIZE",
    "NOISE_STATE_SIZE",
    "STATE_SIZE",
    "WHITE_RMS",
    "WHITE_PEAK",
    "PINK_RMS",
    "state_size",
    "osc_state",
    "noise_state",
    "sine_kernel",
    "saw_kernel",
    "pulse_kernel",
    "triangle_kernel",
    "white_kernel",
    "pink_kernel",
    "brown_kernel",
    "brown_coefs",
    "BROWN_RMS",
    "MOD_STATE_SIZE",
    "periodic_state",
    "sine_mod_kernel",
    "saw_mod_kernel",
    "pulse_mod_kernel",
    "triangle_mod_kernel",
    "lfo_kernel",
    "lfo_batch",
    "lfo_state",
    "PHASOR",
    "LFO_STATE_SIZE",
    "LFO_SHAPES",
]

# ---------------------------------------------------------------------------
# minBLEP / minBLAMP tables (built once at import, a few ms)
# ---------------------------------------------------------------------------

#: Zero crossings of the windowed sinc on each side (at the base rate). With
#: the cutoff below, 16 puts the stopband (-65 dB) right at Nyquist, so even
#: the harmonics just above Nyquist (the loudest aliases) are suppressed.
MINBLEP_ZERO_CROSSINGS = 16
#: Table points per sample; linear interpolation between them is then accurate
#: to about -90 dB, below the window's own stopband.
MINBLEP_OVERSAMPLING = 64
#: Cutoff as a fraction of Nyquist: -3 dB at 0.38 * sr (18.3 kHz at 48 kHz,
#: 16.8 kHz at 44.1 kHz), -65 dB at Nyquist. A sharper filter (e.g. 32 zero
#: crossings at 0.9) keeps more of the top octave but its minimum-phase
#: ringing lifts the peaks of high pulse waves above 2.0 (2.04 at 9.7 kHz,
#: pw 0.73); this one stays below 1.9 and costs half the work per edge.
MINBLEP_CUTOFF = 0.8
#: Samples each residual spans; also the ring-buffer length in the state. It is
#: the filter's length (2 * zero crossings), a power of two so the ring index
#: wraps with a mask.
RING_LEN = 32


def _blackman_harris(m: int) -> np.ndarray:
    """Four-term Blackman-Harris window (-92 dB side lobes).

    Args:
        m: Number of points (symmetric window).

    Returns:
        The window as float64.
    """
    a0, a1, a2, a3 = 0.35875, 0.48829, 0.14128, 0.01168
    x = 2.0 * np.pi * np.arange(m) / (m - 1)
    return a0 - a1 * np.cos(x) + a2 * np.cos(2 * x) - a3 * np.cos(3 * x)


def _minimum_phase(h: np.ndarray) -> np.ndarray:
    """Minimum-phase FIR with the same magnitude response (real cepstrum).

    Args:
        h: Linear-phase impulse response.

    Returns:
        Minimum-phase impulse response of the same length.
    """
    m = len(h)
    # 16x zero padding keeps time aliasing of the cepstrum below ~1e-7 of the
    # passband, and the -140 dB floor keeps log() finite in the deep stopband.
    nfft = 1 << int(np.ceil(np.log2(16 * m)))
    mag = np.abs(np.fft.rfft(h, nfft))
    logmag = np.log(np.maximum(mag, 1e-7 * mag.max()))
    cep = np.fft.irfft(logmag, nfft)
    # Fold the anti-causal half of the cepstrum onto the causal half.
    cep[1 : nfft // 2] *= 2.0
    cep[nfft // 2 + 1 :] = 0.0
    return np.fft.irfft(np.exp(np.fft.rfft(cep)), nfft)[:m]


def _build_tables():
    """Build the minBLEP and minBLAMP residual tables.

    Returns:
        ``(blep, blep_delta, blamp, blamp_delta, tau)``. ``blep[k]`` is the
        step residual ``bandlimited_step(t) - 1`` at ``t = k / OS`` samples
        after the discontinuity; ``blamp[k]`` is ``TAU + integral of blep``,
        the residual of a unit slope change relative to the slope-corrected
        ramp. The ``*_delta`` arrays hold ``table[k + 1] - table[k]`` for
        interpolation. Both tables are zero past the filter's end, and long
        enough to be read at ``t`` up to ``RING_LEN`` (``j + d`` with
        ``d`` in ``[0, 1]``).
    """
    zc, os_ = MINBLEP_ZERO_CROSSINGS, MINBLEP_OVERSAMPLING
    m = 2 * zc * os_ + 1
    t = (np.arange(m) - zc * os_) / os_
    h = MINBLEP_CUTOFF * np.sinc(MINBLEP_CUTOFF * t) * _blackman_harris(m)
    hm = _minimum_phase(h)
    hm /= hm.sum()
    # Trapezoidal running sum: the step's value at each grid point, so that
    # linear interpolation of it is consistent with the integral used below.
    step = np.cumsum(hm) - 0.5 * hm
    step /= step[-1] + 0.5 * hm[-1]
    n_tab = RING_LEN * os_ + 2
    blep = np.zeros(n_tab)
    blep[:m] = step - 1.0
    # Integral of the step residual (trapezoid on the same grid). Its final
    # value is -TAU: the minimum-phase filter's DC group delay in samples.
    integ = np.zeros(n_tab)
    integ[1:] = np.cumsum(0.5 * (blep[1:] + blep[:-1])) / os_
    tau = -integ[-1]
    blamp = tau + integ
    # The tail is numerically ~1e-10 already; pin it to exact zero so a
    # residual never leaves a constant behind when it leaves the ring.
    blamp[m:] = 0.0
    blep_d = np.zeros(n_tab)
    blep_d[:-1] = np.diff(blep)
    blamp_d = np.zeros(n_tab)
    blamp_d[:-1] = np.diff(blamp)
    return blep, blep_d, blamp, blamp_d, float(tau)


_BLEP, _BLEP_D, _BLAMP, _BLAMP_D, TAU = _build_tables()
#: DC group delay of the minimum-phase filter, in samples (~3.2): how far the
#: band-limited waveform's low frequencies lag the naive one.
TAU = float(TAU)
#: BLAMP residual at whole samples 1, 2, ... after a kink: frequency changes
#: happen on sample instants, so their kinks need no interpolation.
_BLAMP_INT = np.ascontiguousarray(
    _BLAMP[MINBLEP_OVERSAMPLING : (RING_LEN + 1) * MINBLEP_OVERSAMPLING : MINBLEP_OVERSAMPLING]
)

# ---------------------------------------------------------------------------
# State layout
# ---------------------------------------------------------------------------

# Periodic oscillators: [phase, ring index, previous dt, pulse low flag, ring]
_PH = 0  # phase in cycles, [0, 1)
_IX = 1  # ring read index (an integer held in a float64)
_DT = 2  # normalised frequency (cycles/sample) of the previous sample
_LO = 3  # pulse only: 1.0 while the naive pulse is low
_RING = 4  # RING_LEN accumulators of pending residuals
#: Float64 state length for sine/saw/pulse/triangle (sine uses only [0]).
OSC_STATE_SIZE = _RING + RING_LEN

# Noise: [rng high 32 bits, rng low 32 bits, pink filter b0..b6]
_NOISE_PINK = 2
#: Float64 state length for white/pink noise.
NOISE_STATE_SIZE = 2 + 7
#: One size that fits every kernel's state.
STATE_SIZE = max(OSC_STATE_SIZE, NOISE_STATE_SIZE)

_SIZES = {
    "sine": 1,
    "saw": OSC_STATE_SIZE,
    "pulse": OSC_STATE_SIZE,
    "square": OSC_STATE_SIZE,
    "triangle": OSC_STATE_SIZE,
    "white": NOISE_STATE_SIZE,
    "pink": NOISE_STATE_SIZE,
}


def state_size(kind: str) -> int:
    """Length of the float64 state array a kernel needs.

    Args:
        kind: One of ``sine``, ``saw``, ``pulse`` (``square``), ``triangle``,
            ``white``, ``pink``.

    Returns:
        The number of float64 elements. Larger arrays work too.

    Raises:
        KeyError: For an unknown kind.
    """
    return _SIZES[kind]


def osc_state(kind: str, phase: float = 0.0, pw: float = 0.5) -> np.ndarray:
    """Fresh state for a periodic oscillator, starting at ``phase``.

    A zeroed array is the same as ``osc_state(kind, 0.0)``. Starting at a
    non-zero phase jumps from silence to the waveform's value there; that
    first step is not band-limited.

    Args:
        kind: ``sine``, ``saw``, ``pulse``/``square`` or ``triangle``.
        phase: Start phase in cycles (wrapped into ``[0, 1)``).
        pw: Pulse only: the duty cycle the pulse starts with, so the naive
            level matches the phase (no spurious edge on the first sample).

    Returns:
        A float64 array of ``state_size(kind)``.
    """
    st = np.zeros(state_size(kind))
    ph = float(phase) % 1.0
    if not (0.0 <= ph < 1.0):  # -1e-20 % 1.0 == 1.0; NaN
        ph = 0.0
    st[_PH] = ph
    if kind in ("pulse", "square"):
        st[_LO] = 1.0 if ph >= min(max(pw, 0.01), 0.99) else 0.0
    return st


# ---------------------------------------------------------------------------
# Shared helpers (inlined by numba)
# ---------------------------------------------------------------------------

_OS = float(MINBLEP_OVERSAMPLING)
_MASK = RING_LEN - 1
_TWO_PI = 2.0 * np.pi
#: Largest normalised frequency: just below Nyquist, so a cycle always spans
#: more than two samples and at most one event of each kind falls per sample.
_DT_MAX = 0.5 - 1e-6


@numba.njit(cache=True, nogil=True, inline="always")
def _norm_freq(f, inv_sr):
    """freq in Hz -> cycles/sample, clamped to [0, _DT_MAX]; NaN -> 0."""
    dt = f * inv_sr
    if not (dt > 0.0):  # also catches NaN
        return 0.0
    if dt > _DT_MAX:
        return _DT_MAX
    return dt


@numba.njit(cache=True, nogil=True, inline="always")
def _add_residual(state, idx, tab, tab_d, scale, d):
    """Accumulate ``scale * tab(j + d)`` into ring slot ``idx + j``.

    ``d`` is the time (samples, in [0, 1]) from the event to the sample that
    ring slot ``idx`` will be read for.
    """
    for j in range(RING_LEN):
        x = (j + d) * _OS
        k = int(x)
        v = tab[k] + (x - k) * tab_d[k]
        s = _RING + ((idx + j) & _MASK)
        state[s] += scale * v


@numba.njit(cache=True, nogil=True, inline="always")
def _add_kink(state, idx, scale):
    """Accumulate a slope change of ``scale`` made one sample before slot idx."""
    for j in range(RING_LEN):
        s = _RING + ((idx + j) & _MASK)
        state[s] += scale * _BLAMP_INT[j]


@numba.njit(cache=True, nogil=True, inline="always")
def _event_time(excess, dt):
    """Samples since an event that lies ``excess`` cycles behind the phase."""
    if dt > 0.0:
        d = excess / dt
        if d < 0.0:
            return 0.0
        if d > 1.0:
            return 1.0
        return d
    return 0.0


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def sine_kernel(out, n, freq, phase_mod, sr, state):
    """Sine oscillator: ``out[i] = sin(2*pi*(phase + phase_mod[i]))``.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample (clamped to [0, sr/2)).
        phase_mod: float32 phase offset in cycles per sample (not
            accumulated; non-finite values read as 0).
        sr: Sample rate in Hz.
        state: float64 ``[phase]`` (cycles in [0, 1)), updated in place.
    """
    inv_sr = 1.0 / sr
    p = state[_PH]
    for i in range(n):
        # Wrap first: sin() of a small argument keeps full precision even for
        # phase_mod of many cycles. inf/NaN modulation reads as 0.
        x = p + phase_mod[i]
        x -= np.floor(x)
        if not (x >= 0.0):
            x = 0.0
        out[i] = sin2pi(x)
        p += _norm_freq(freq[i], inv_sr)
        if p >= 1.0:
            p -= 1.0
    state[_PH] = p


@numba.njit(cache=True, nogil=True)
def saw_kernel(out, n, freq, sr, state):
    """Band-limited rising sawtooth in [-1, 1] (minBLEP).

    The naive saw is ``2 * phase`` for phase < 0.5 and ``2 * phase - 2``
    after, so it rises through 0 at phase 0 and falls by 2 at phase 0.5.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample (clamped to [0, sr/2)).
        sr: Sample rate in Hz.
        state: float64 array of ``OSC_STATE_SIZE``, updated in place.
    """
    inv_sr = 1.0 / sr
    p = state[_PH]
    idx = int(state[_IX]) & _MASK  # a corrupt index must not write out of bounds
    dt_prev = state[_DT]
    for i in range(n):
        # Naive ramp minus the minimum-phase filter's delay of that ramp.
        y = 2.0 * p if p < 0.5 else 2.0 * p - 2.0
        y -= 2.0 * dt_prev * TAU
        s = _RING + idx
        out[i] = y + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        # Advance to the next sample; events land in (i, i + 1].
        dt = _norm_freq(freq[i], inv_sr)
        if dt != dt_prev:
            # FM kink at time i, one sample before the slot idx now reads.
            _add_kink(state, idx, 2.0 * (dt - dt_prev))
        q = p + dt
        if p < 0.5 and q >= 0.5:
            _add_residual(state, idx, _BLEP, _BLEP_D, -2.0, _event_time(q - 0.5, dt))
        if q >= 1.0:
            q -= 1.0
        p = q
        dt_prev = dt
    state[_PH] = p
    state[_IX] = idx
    state[_DT] = dt_prev


@numba.njit(cache=True, nogil=True)
def pulse_kernel(out, n, freq, pw, sr, state):
    """Band-limited pulse in [-1, 1] with duty cycle ``pw`` (minBLEP).

    High (+1) for phase in [0, pw), low (-1) for [pw, 1); ``pw = 0.5`` is a
    square. The naive level is tracked in the state, so modulating ``pw``
    never makes more than one falling edge per cycle.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample (clamped to [0, sr/2)).
        pw: float32 duty cycle per sample, clamped to [0.01, 0.99].
        sr: Sample rate in Hz.
        state: float64 array of ``OSC_STATE_SIZE``, updated in place.
    """
    inv_sr = 1.0 / sr
    p = state[_PH]
    idx = int(state[_IX]) & _MASK  # a corrupt index must not write out of bounds
    low = state[_LO] != 0.0
    for i in range(n):
        y = -1.0 if low else 1.0
        s = _RING + idx
        out[i] = y + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        dt = _norm_freq(freq[i], inv_sr)
        w = pw[i]
        if not (w >= 0.01):  # also NaN
            w = 0.01
        elif w > 0.99:
            w = 0.99
        q = p + dt
        if not low and q >= w:
            # Also fires right away (d clamped to 1) when pw drops below the
            # phase: the edge is then placed at the start of the interval.
            _add_residual(state, idx, _BLEP, _BLEP_D, -2.0, _event_time(q - w, dt))
            low = True
        if q >= 1.0:
            q -= 1.0
            _add_residual(state, idx, _BLEP, _BLEP_D, 2.0, _event_time(q, dt))
            low = False
            if q >= w:
                # Cycle shorter than pw * period: both edges in one sample.
                _add_residual(state, idx, _BLEP, _BLEP_D, -2.0, _event_time(q - w, dt))
                low = True
        p = q
    state[_PH] = p
    state[_IX] = idx
    state[_LO] = 1.0 if low else 0.0


@numba.njit(cache=True, nogil=True)
def triangle_kernel(out, n, freq, sr, state):
    """Band-limited triangle in [-1, 1] (minBLAMP at the corners).

    Rises through 0 at phase 0, peaks (+1) at 0.25, troughs (-1) at 0.75,
    like the sine.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample (clamped to [0, sr/2)).
        sr: Sample rate in Hz.
        state: float64 array of ``OSC_STATE_SIZE``, updated in place.
    """
    inv_sr = 1.0 / sr
    p = state[_PH]
    idx = int(state[_IX]) & _MASK  # a corrupt index must not write out of bounds
    dt_prev = state[_DT]
    for i in range(n):
        # Direction right after this sample's time; a corner exactly at this
        # sample was already credited (d = 0) with the slope after it.
        if p < 0.25:
            up = 1.0
            y = 4.0 * p
        elif p < 0.75:
            up = -1.0
            y = 2.0 - 4.0 * p
        else:
            up = 1.0
            y = 4.0 * p - 4.0
        y -= up * 4.0 * dt_prev * TAU
        s = _RING + idx
        out[i] = y + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        dt = _norm_freq(freq[i], inv_sr)
        if dt != dt_prev:
            _add_kink(state, idx, up * 4.0 * (dt - dt_prev))
        q = p + dt
        # Corners at 0.25 (slope +4dt -> -4dt), 0.75 and 1.25 (-4dt -> +4dt);
        # with dt < 0.5 at most one of them lies in (p, q].
        if p < 0.25 and q >= 0.25:
            _add_residual(state, idx, _BLAMP, _BLAMP_D, -8.0 * dt, _event_time(q - 0.25, dt))
        elif p < 0.75 and q >= 0.75:
            _add_residual(state, idx, _BLAMP, _BLAMP_D, 8.0 * dt, _event_time(q - 0.75, dt))
        elif q >= 1.25:
            _add_residual(state, idx, _BLAMP, _BLAMP_D, -8.0 * dt, _event_time(q - 1.25, dt))
        if q >= 1.0:
            q -= 1.0
        p = q
        dt_prev = dt
    state[_PH] = p
    state[_IX] = idx
    state[_DT] = dt_prev


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------

#: White noise is uniform in [-WHITE_PEAK, WHITE_PEAK]: RMS exactly 0.3.
WHITE_RMS = 0.3
WHITE_PEAK = WHITE_RMS * np.sqrt(3.0)
_U53 = 1.0 / 9007199254740992.0  # 2**-53
_PINK_IN = np.sqrt(3.0)  # uniform [-1, 1) -> unit-variance driver
#: Output gain that brings Kellet's filter, driven by unit-variance noise,
#: to an RMS of about PINK_RMS (unscaled RMS 3.0545, measured over 8 x 2 min).
_PINK_GAIN = 0.3 / 3.0545
PINK_RMS = 0.3

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LO32 = np.uint64(0xFFFFFFFF)


def noise_state(seed: int) -> np.ndarray:
    """Fresh noise state for ``white_kernel`` or ``pink_kernel``.

    The generator is splitmix64: a 64-bit counter (kept as two exact 32-bit
    halves, since a float64 holds only 53 bits) hashed per sample, so equal
    seeds give equal samples on every run, platform and chunking.

    Args:
        seed: Any Python int; it is reduced modulo 2**64.

    Returns:
        A zeroed-filter float64 state of ``NOISE_STATE_SIZE``.
    """
    s = int(seed) % (1 << 64)
    st = np.zeros(NOISE_STATE_SIZE)
    st[0] = float(s >> 32)
    st[1] = float(s & 0xFFFFFFFF)
    return st


@numba.njit(cache=True, nogil=True, inline="always")
def _load_rng(state):
    return (np.uint64(state[0]) << np.uint64(32)) | np.uint64(state[1])


@numba.njit(cache=True, nogil=True, inline="always")
def _store_rng(state, x):
    state[0] = float(x >> np.uint64(32))
    state[1] = float(x & _LO32)


@numba.njit(cache=True, nogil=True, inline="always")
def _splitmix(x):
    """One splitmix64 step: returns (new counter, uniform float in [-1, 1))."""
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    u = float(z >> np.uint64(11)) * _U53
    return x, 2.0 * u - 1.0


@numba.njit(cache=True, nogil=True)
def white_kernel(out, n, state):
    """Seeded white noise, uniform in [-0.52, 0.52] (RMS 0.3).

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        state: float64 array from ``noise_state(seed)``, updated in place.
    """
    x = _load_rng(state)
    for i in range(n):
        x, u = _splitmix(x)
        out[i] = WHITE_PEAK * u
    _store_rng(state, x)


@numba.njit(cache=True, nogil=True)
def pink_kernel(out, n, state):
    """Seeded pink noise (-3 dB/octave), RMS about 0.3.

    Paul Kellet's refined filter (seven parallel one-poles): within 0.05 dB
    of -3 dB/octave above 9.2 Hz at 44.1 kHz; its shape follows the sample
    rate, so at 48 kHz the band edges sit 9 % higher, still far below 100 Hz.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        state: float64 array from ``noise_state(seed)``, updated in place.
    """
    x = _load_rng(state)
    k = _NOISE_PINK
    b0 = state[k]
    b1 = state[k + 1]
    b2 = state[k + 2]
    b3 = state[k + 3]
    b4 = state[k + 4]
    b5 = state[k + 5]
    b6 = state[k + 6]
    for i in range(n):
        x, u = _splitmix(x)
        w = u * _PINK_IN
        b0 = 0.99886 * b0 + w * 0.0555179
        b1 = 0.99332 * b1 + w * 0.0750759
        b2 = 0.96900 * b2 + w * 0.1538520
        b3 = 0.86650 * b3 + w * 0.3104856
        b4 = 0.55000 * b4 + w * 0.5329522
        b5 = -0.7616 * b5 - w * 0.0168980
        y = b0 + b1 + b2 + b3 + b4 + b5 + b6 + w * 0.5362
        b6 = w * 0.115926
        out[i] = y * _PINK_GAIN
    _store_rng(state, x)
    state[k] = b0
    state[k + 1] = b1
    state[k + 2] = b2
    state[k + 3] = b3
    state[k + 4] = b4
    state[k + 5] = b5
    state[k + 6] = b6


@numba.njit(cache=True, nogil=True)
def brown_kernel(out, n, a, g, state):
    """Seeded brown (red) noise: leaky-integrated white noise, -6 dB/octave.

    ``y = a * y + g * w`` with ``w`` unit-variance white noise: a one-pole
    lowpass with its corner at ``BROWN_CORNER`` Hz (``brown_coefs``), so the
    spectrum falls 6 dB per octave above it and the signal stays bounded
    (a pure integrator would wander off). ``g`` sets the RMS to BROWN_RMS.

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        a: Pole (``exp(-2*pi*corner/sr)``).
        g: Input gain (``BROWN_RMS * sqrt(1 - a*a)``).
        state: float64 array from ``noise_state(seed)``, updated in place.
    """
    x = _load_rng(state)
    y = state[_NOISE_PINK]
    for i in range(n):
        x, u = _splitmix(x)
        y = a * y + g * _PINK_IN * u
        out[i] = y
    _store_rng(state, x)
    state[_NOISE_PINK] = y


#: Brown noise RMS (like white and pink) and the corner (Hz) of its leak.
BROWN_RMS = 0.3
BROWN_CORNER = 10.0


def brown_coefs(sr: float) -> tuple[float, float]:
    """``(a, g)`` for ``brown_kernel`` at sample rate ``sr``: corner BROWN_CORNER, RMS BROWN_RMS."""
    a = float(np.exp(-2.0 * np.pi * BROWN_CORNER / float(sr)))
    return a, BROWN_RMS * float(np.sqrt(1.0 - a * a))


# ---------------------------------------------------------------------------
# Modulated periodic kernels: through-zero FM, phase modulation, hard sync
# ---------------------------------------------------------------------------
#
# The plain kernels above are the fast path of an oscillator whose fm, pm and
# sync inputs are unconnected. The ``*_mod_kernel`` functions add them. Their
# model, for the interval (i-1, i] between two samples:
#
# * the base phase moves linearly at dt cycles/sample, dt = (freq[i-1] +
#   fm[i-1] * fm_depth[i-1]) / sr clamped to +-(0.5 - 1e-6): through-zero
#   FM, a negative frequency runs the waveform backwards;
# * the phase modulation (pm * pm_depth, cycles) moves linearly from its value
#   at i-1 to its value at i, the shorter way round: a jump of more than half
#   a cycle in one sample is read as the equivalent jump of less than half;
# * a rising zero crossing of ``sync`` (sync[i-1] <= 0 < sync[i]), at the
#   linearly interpolated fraction tau of the interval, resets the base phase
#   to the start phase (kept in the state).
#
# The effective phase theta = base + pm is thus piecewise linear in time and
# w(theta) piecewise smooth. Its jumps (the saw's edge, the pulse's edges, a
# sync) get minBLEP residuals and its slope changes (triangle corners, rate
# changes at sample instants, a sync) minBLAMP residuals, at their exact
# sub-sample times, travelling either way. The saw, triangle and pulse are
# piecewise linear in theta, so their output is exactly the sampled
# band-limited waveform (to the tables' interpolation), as for the plain
# kernels, which they reproduce when fm, pm and sync are zero.
#
# The sine (and the wavetable) are smooth and are not delayed by the filter,
# so a sync there gets a minBLEP for its jump only. The slope change it also
# makes is left naive (its aliases fall 12 dB/octave): a minBLAMP needs the
# TAU-delayed ramps of the saw; a zero-start variant (BLAMP + TAU * BLEP)
# was tried and cut the aliasing by 20 dB but added an in-band blip of up to
# 2 * TAU times the slope change per sync (peaks of 4.5 on a 9.8 kHz sine).
#
# Order inside the loop: a sample first settles the interval that ends at it
# (it needs pm[i] and sync[i]), then is written, then reads freq[i] + fm[i]
# for the next interval. So the state holds the base phase at the last
# written sample and the rate pending for the next interval.

_SYP = _RING + RING_LEN  # sync input at the last sample
_PMP = _SYP + 1  # phase modulation at the last sample (cycles, wrapped to [0, 1))
_RATE = _PMP + 1  # effective rate (cycles/sample) of the last interval: dt + d(pm)
_PWP = _RATE + 1  # pulse: pulse width at the last sample
_PH0 = _PWP + 1  # start phase: where a sync restarts the cycle
#: Float64 state length of every periodic kernel, plain or modulated.
MOD_STATE_SIZE = _PH0 + 1
_SIZES.update({"sine_mod": MOD_STATE_SIZE, "saw_mod": MOD_STATE_SIZE, "pulse_mod": MOD_STATE_SIZE,
               "triangle_mod": MOD_STATE_SIZE})


def _clamp_pw(pw: float) -> float:
    pw = float(pw)
    return 0.01 if not pw >= 0.01 else min(pw, 0.99)


def periodic_state(phase: float = 0.0, pw: float = 0.5) -> np.ndarray:
    """Fresh state for any periodic kernel (plain or modulated), starting at ``phase``.

    Args:
        phase: Start phase in cycles (wrapped into ``[0, 1)``); a sync
            restarts the cycle there.
        pw: Pulse only: the duty cycle the pulse starts with.

    Returns:
        A float64 array of ``MOD_STATE_SIZE``.
    """
    st = np.zeros(MOD_STATE_SIZE)
    base = osc_state("pulse", phase, pw)
    st[: len(base)] = base
    st[_PH0] = base[_PH]
    st[_PWP] = _clamp_pw(pw)
    return st


@numba.njit(cache=True, nogil=True, inline="always")
def _signed_rate(f, inv_sr):
    """freq in Hz -> cycles/sample, clamped to [-_DT_MAX, _DT_MAX]; NaN -> 0."""
    dt = f * inv_sr
    if dt > _DT_MAX:
        return _DT_MAX
    if dt < -_DT_MAX:
        return -_DT_MAX
    if dt == dt:
        return dt
    return 0.0


_BELOW_ONE = float(np.nextafter(1.0, 0.0))


@numba.njit(cache=True, nogil=True, inline="always")
def _wrap(x):
    """x modulo 1 in [0, 1); inf and NaN -> 0.

    A tiny negative x rounds to 1.0; it is read as the largest double below
    1, not as 0, so that the edge crossings (counted on the unwrapped phase)
    and the naive level (read on the wrapped one) agree.
    """
    y = x - math.floor(x)
    if y >= 0.0 and y < 1.0:
        return y
    if y == 1.0:
        return _BELOW_ONE
    return 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _finite(x):
    """x, or 0 for inf/NaN (and anything beyond +-1e30)."""
    if x > -1e30 and x < 1e30:
        return x
    return 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _sync_time(prev, cur):
    """Fraction [0, 1) of the interval at which the sync signal rises through 0, or -1 if it does not.

    Rising means from ``<= 0`` to ``> 0``, so a 0/1 gate syncs on its
    rising edge too; the crossing is placed by linear interpolation.
    """
    if prev <= 0.0 and cur > 0.0:
        return prev / (prev - cur)
    return -1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _crossings(state, idx, u0, u1, t0, span, tab, tab_d, height, signed):
    """A residual for every integer that ``u`` crosses moving from u0 to u1.

    ``u`` moves linearly from ``u0`` at time ``t0`` to ``u1`` at
    ``t0 + span`` (fractions of the interval that ends at the sample slot
    ``idx`` is read for). Integers in ``(u0, u1]`` are crossed going up and
    ``(u1, u0]`` going down, so a waveform that is right-continuous in phase
    gets each event exactly once. The residual is ``tab`` scaled by
    ``height``, negated for a downward crossing when ``signed`` (a step).
    """
    f0 = math.floor(u0)
    f1 = math.floor(u1)
    if f1 == f0:
        return
    du = u1 - u0
    if f1 > f0:
        m = f0 + 1.0
        last = f1
        h = height
    else:
        m = f1 + 1.0
        last = f0
        h = -height if signed else height
    k = 0
    while m <= last and k < 4:  # |u1 - u0| < 3 here: at most 3 crossings
        d = 1.0 - (t0 + span * (m - u0) / du)
        if d < 0.0:
            d = 0.0
        elif d > 1.0:
            d = 1.0
        _add_residual(state, idx, tab, tab_d, h, d)
        m += 1.0
        k += 1


@numba.njit(cache=True, nogil=True, inline="always")
def _seam(state, idx, u1, v, d, tab, tab_d, height, signed, up):
    """Reconcile the events counted up to ``u1`` with the naive waveform, which reads that point as ``v``.

    ``u1`` (the unwrapped end given to ``_crossings``) and ``v`` (the same
    point computed from the wrapped phase, another float path) agree modulo
    1 up to rounding. When they land on an edge they can fall on its two
    sides; the event the naive waveform took but the count missed (or the
    reverse) then gets its residual here, at time ``d`` before the sample, so
    the output stays the band-limited waveform (found by hypothesis: a
    pulse with sync and phase modulation landing exactly on its edge).
    ``miss`` counts integers the naive waveform passed beyond those counted
    (negative: counted too many); an unsigned event (``signed`` False, a
    corner's minBLAMP) has the same height whichever way it is passed, so
    its correction takes the direction of the move (``up``) instead.
    """
    k = math.floor(u1 - v + 0.5)
    miss = k + math.floor(v) - math.floor(u1)
    if miss != 0.0:
        if not signed and not up:
            miss = -miss
        _add_residual(state, idx, tab, tab_d, height * miss, d)


@numba.njit(cache=True, nogil=True, inline="always")
def _mod_load(state):
    """A modulated kernel's state at the start of a block: phase, ring index, pending rate, the last interval's
    rate, the last pm and sync inputs, the start phase."""
    return (state[_PH], int(state[_IX]) & _MASK, state[_DT], state[_RATE], state[_PMP], state[_SYP],
            state[_PH0])


@numba.njit(cache=True, nogil=True, inline="always")
def _mod_store(state, p, idx, dt, rate, pm_prev, s_prev):
    """Write back what ``_mod_load`` reads (the start phase never changes)."""
    state[_PH] = p
    state[_IX] = idx
    state[_DT] = dt
    state[_RATE] = rate
    state[_PMP] = pm_prev
    state[_SYP] = s_prev


@numba.njit(cache=True, nogil=True, inline="always")
def _pm_step(pm_i, depth_i, pm_prev, dt):
    """The phase modulation at this sample (cycles, wrapped), its step since the last (the shortest way round),
    and the interval's effective rate ``dt + step``."""
    pmi = _wrap(float(pm_i) * float(depth_i))
    dpm = pmi - pm_prev
    dpm -= math.floor(dpm + 0.5)
    return pmi, dpm, dt + dpm

@numba.njit(cache=True, nogil=True, inline="always")
def _saw(th):
    return 2.0 * th if th < 0.5 else 2.0 * th - 2.0


@numba.njit(cache=True, nogil=True, inline="always")
def _tri(th):
    if th < 0.25:
        return 4.0 * th
    if th < 0.75:
        return 2.0 - 4.0 * th
    return 4.0 * th - 4.0


@numba.njit(cache=True, nogil=True, inline="always")
def _tri_slope(th):
    """d tri / d theta, right-continuous (the slope after a corner at th)."""
    return -4.0 if 0.25 <= th < 0.75 else 4.0


@numba.njit(cache=True, nogil=True, inline="always")
def _pulse_level(th, w):
    return 1.0 if th < w else -1.0


@numba.njit(cache=True, nogil=True, inline="always")
def _pw(w):
    if not (w >= 0.01):  # also NaN
        return 0.01
    if w > 0.99:
        return 0.99
    return w


@numba.njit(cache=True, nogil=True)
def sine_mod_kernel(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """Sine with through-zero FM, phase modulation and hard sync.

    ``out[i] = sin(2*pi*theta_i)``, theta = base phase + pm * pm_depth (see
    the section comment for the model). A sync's jump gets a minBLEP of its
    height; its slope change is left as it is (see the section comment).

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample.
        fm: float32 FM input per sample; ``fm * fm_depth`` Hz is added to freq.
        fm_depth: float32 Hz per unit of fm, per sample.
        pm: float32 phase-modulation input per sample.
        pm_depth: float32 cycles per unit of pm, per sample.
        sync: float32 sync input per sample (rising zero crossings restart).
        sr: Sample rate in Hz.
        state: float64 array from ``periodic_state``, updated in place.
    """
    inv_sr = 1.0 / sr
    p, idx, dt, rate, pm_prev, s_prev, ph0 = _mod_load(state)
    for i in range(n):
        pmi, dpm, rate = _pm_step(pm[i], pm_depth[i], pm_prev, dt)
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        if tau >= 0.0:
            th_s = _wrap(p + pm_prev + rate * tau)
            th_r = _wrap(ph0 + pm_prev + dpm * tau)
            _add_residual(state, idx, _BLEP, _BLEP_D, sin2pi(th_r) - sin2pi(th_s), 1.0 - tau)
            p = ph0 + dt * (1.0 - tau)
        else:
            p += dt
        p = _wrap(p)
        s = _RING + idx
        out[i] = sin2pi(_wrap(p + pmi)) + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        pm_prev = pmi
        s_prev = sc
        dt = _signed_rate(float(freq[i]) + float(fm[i]) * float(fm_depth[i]), inv_sr)
    _mod_store(state, p, idx, dt, rate, pm_prev, s_prev)


@numba.njit(cache=True, nogil=True)
def saw_mod_kernel(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """Band-limited saw with through-zero FM, phase modulation and hard sync.

    Arguments as ``sine_mod_kernel``. The naive saw (``saw_kernel``) has its
    edge at theta = 0.5; the output is the sampled band-limited waveform.
    """
    inv_sr = 1.0 / sr
    p, idx, dt, rate_prev, pm_prev, s_prev, ph0 = _mod_load(state)
    for i in range(n):
        pmi, dpm, rate = _pm_step(pm[i], pm_depth[i], pm_prev, dt)
        a = _wrap(p + pm_prev)
        if rate != rate_prev:
            # slope change at the previous sample's instant
            _add_kink(state, idx, 2.0 * (rate - rate_prev))
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        if tau >= 0.0:
            u1 = a - 0.5 + rate * tau
            _crossings(state, idx, a - 0.5, u1, 0.0, tau, _BLEP, _BLEP_D, -2.0, True)
            th_s = _wrap(a + rate * tau)
            _seam(state, idx, u1, th_s - 0.5, 1.0 - tau, _BLEP, _BLEP_D, -2.0, True, True)
            th_r = _wrap(ph0 + pm_prev + dpm * tau)
            _add_residual(state, idx, _BLEP, _BLEP_D, _saw(th_r) - _saw(th_s), 1.0 - tau)
            rest = 1.0 - tau
            u1 = th_r - 0.5 + rate * rest
            _crossings(state, idx, th_r - 0.5, u1, tau, rest, _BLEP, _BLEP_D, -2.0, True)
            p = ph0 + dt * rest
        else:
            u1 = a - 0.5 + rate
            _crossings(state, idx, a - 0.5, u1, 0.0, 1.0, _BLEP, _BLEP_D, -2.0, True)
            p += dt
        p = _wrap(p)
        th = _wrap(p + pmi)
        _seam(state, idx, u1, th - 0.5, 0.0, _BLEP, _BLEP_D, -2.0, True, True)
        s = _RING + idx
        out[i] = _saw(th) - 2.0 * rate * TAU + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        rate_prev = rate
        pm_prev = pmi
        s_prev = sc
        dt = _signed_rate(float(freq[i]) + float(fm[i]) * float(fm_depth[i]), inv_sr)
    _mod_store(state, p, idx, dt, rate_prev, pm_prev, s_prev)


@numba.njit(cache=True, nogil=True, inline="always")
def _tri_corners(state, idx, a, dist, t0, span, speed, th_end):
    """minBLAMPs for the triangle's corners passed moving from theta a by dist cycles.

    ``th_end`` is where the naive waveform reads the end of the move.
    """
    _crossings(state, idx, a - 0.25, a - 0.25 + dist, t0, span, _BLAMP, _BLAMP_D, -8.0 * speed, False)
    _crossings(state, idx, a - 0.75, a - 0.75 + dist, t0, span, _BLAMP, _BLAMP_D, 8.0 * speed, False)
    d = 1.0 - (t0 + span)
    _seam(state, idx, a - 0.25 + dist, th_end - 0.25, d, _BLAMP, _BLAMP_D, -8.0 * speed, False, dist > 0.0)
    _seam(state, idx, a - 0.75 + dist, th_end - 0.75, d, _BLAMP, _BLAMP_D, 8.0 * speed, False, dist > 0.0)


@numba.njit(cache=True, nogil=True)
def triangle_mod_kernel(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """Band-limited triangle with through-zero FM, phase modulation and hard sync.

    Arguments as ``sine_mod_kernel``. A corner passed at speed ``r``
    cycles/sample changes the slope by ``+-8 |r|`` whichever way it is
    passed; a sync gets a minBLEP for its jump and a minBLAMP for its
    slope change.
    """
    inv_sr = 1.0 / sr
    p, idx, dt, rate_prev, pm_prev, s_prev, ph0 = _mod_load(state)
    for i in range(n):
        pmi, dpm, rate = _pm_step(pm[i], pm_depth[i], pm_prev, dt)
        a = _wrap(p + pm_prev)
        if rate != rate_prev:
            _add_kink(state, idx, _tri_slope(a) * (rate - rate_prev))
        speed = abs(rate)
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        if tau >= 0.0:
            th_s = _wrap(a + rate * tau)
            _tri_corners(state, idx, a, rate * tau, 0.0, tau, speed, th_s)
            th_r = _wrap(ph0 + pm_prev + dpm * tau)
            _add_residual(state, idx, _BLEP, _BLEP_D, _tri(th_r) - _tri(th_s), 1.0 - tau)
            ds = (_tri_slope(th_r) - _tri_slope(th_s)) * rate
            if ds != 0.0:
                _add_residual(state, idx, _BLAMP, _BLAMP_D, ds, 1.0 - tau)
            rest = 1.0 - tau
            p = _wrap(ph0 + dt * rest)
            th = _wrap(p + pmi)
            _tri_corners(state, idx, th_r, rate * rest, tau, rest, speed, th)
        else:
            p = _wrap(p + dt)
            th = _wrap(p + pmi)
            _tri_corners(state, idx, a, rate, 0.0, 1.0, speed, th)
        s = _RING + idx
        out[i] = _tri(th) - _tri_slope(th) * rate * TAU + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        rate_prev = rate
        pm_prev = pmi
        s_prev = sc
        dt = _signed_rate(float(freq[i]) + float(fm[i]) * float(fm_depth[i]), inv_sr)
    _mod_store(state, p, idx, dt, rate_prev, pm_prev, s_prev)


@numba.njit(cache=True, nogil=True, inline="always")
def _pulse_edges(state, idx, a, dist, w0, w1, t0, span, th_end):
    """minBLEPs for a pulse whose phase moves from a by dist while its width moves w0 -> w1.

    The naive pulse is ``2 * (floor(theta) - floor(theta - pw)) - 1``: it
    rises by 2 where theta crosses an integer and falls by 2 where
    ``theta - pw`` does. Both move linearly, so every edge, also those that
    a moving width makes (PWM), is placed at its exact time.
    """
    _crossings(state, idx, a, a + dist, t0, span, _BLEP, _BLEP_D, 2.0, True)
    _crossings(state, idx, a - w0, a + dist - w1, t0, span, _BLEP, _BLEP_D, -2.0, True)
    d = 1.0 - (t0 + span)
    _seam(state, idx, a + dist, th_end, d, _BLEP, _BLEP_D, 2.0, True, True)
    _seam(state, idx, a + dist - w1, th_end - w1, d, _BLEP, _BLEP_D, -2.0, True, True)


@numba.njit(cache=True, nogil=True)
def pulse_mod_kernel(out, n, freq, fm, fm_depth, pm, pm_depth, sync, pw, sr, state):
    """Band-limited pulse with exact PWM edges, through-zero FM, phase modulation and hard sync.

    High (+1) while ``theta < pw``, low (-1) after, like ``pulse_kernel``;
    but the width moves linearly between samples and the edges are placed
    where the moving phase meets the moving width, so audio-rate PWM stays
    band-limited. Other arguments as ``sine_mod_kernel``.

    Args:
        pw: float32 duty cycle per sample, clamped to [0.01, 0.99].
    """
    inv_sr = 1.0 / sr
    p, idx, dt, rate, pm_prev, s_prev, ph0 = _mod_load(state)
    w_prev = _pw(state[_PWP])
    for i in range(n):
        w = _pw(pw[i])
        pmi, dpm, rate = _pm_step(pm[i], pm_depth[i], pm_prev, dt)
        a = _wrap(p + pm_prev)
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        if tau >= 0.0:
            ws = w_prev + (w - w_prev) * tau
            th_s = _wrap(a + rate * tau)
            _pulse_edges(state, idx, a, rate * tau, w_prev, ws, 0.0, tau, th_s)
            th_r = _wrap(ph0 + pm_prev + dpm * tau)
            jump = _pulse_level(th_r, ws) - _pulse_level(th_s, ws)
            if jump != 0.0:
                _add_residual(state, idx, _BLEP, _BLEP_D, jump, 1.0 - tau)
            rest = 1.0 - tau
            p = _wrap(ph0 + dt * rest)
            th = _wrap(p + pmi)
            _pulse_edges(state, idx, th_r, rate * rest, ws, w, tau, rest, th)
        else:
            p = _wrap(p + dt)
            th = _wrap(p + pmi)
            _pulse_edges(state, idx, a, rate, w_prev, w, 0.0, 1.0, th)
        s = _RING + idx
        out[i] = _pulse_level(th, w) + state[s]
        state[s] = 0.0
        idx = (idx + 1) & _MASK
        pm_prev = pmi
        s_prev = sc
        w_prev = w
        dt = _signed_rate(float(freq[i]) + float(fm[i]) * float(fm_depth[i]), inv_sr)
    _mod_store(state, p, idx, dt, rate, pm_prev, s_prev)
    state[_PWP] = w_prev


# ---------------------------------------------------------------------------
# Batched forms: V nodes of one type stacked row-wise (see docs/writing-nodes.md)
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def sine_batch(out, n, freq, zeros, sr, state):
    """``sine_kernel`` for each row: out (V, 1, B), freq (V, B), zeros (B,), state (V, S)."""
    for v in range(out.shape[0]):
        sine_kernel(out[v, 0], n, freq[v], zeros, sr, state[v])


@numba.njit(cache=True, nogil=True)
def saw_batch(out, n, freq, sr, state):
    """``saw_kernel`` for each row."""
    for v in range(out.shape[0]):
        saw_kernel(out[v, 0], n, freq[v], sr, state[v])


@numba.njit(cache=True, nogil=True)
def triangle_batch(out, n, freq, sr, state):
    """``triangle_kernel`` for each row."""
    for v in range(out.shape[0]):
        triangle_kernel(out[v, 0], n, freq[v], sr, state[v])


@numba.njit(cache=True, nogil=True)
def pulse_batch(out, n, freq, pw, sr, state):
    """``pulse_kernel`` for each row."""
    for v in range(out.shape[0]):
        pulse_kernel(out[v, 0], n, freq[v], pw[v], sr, state[v])


@numba.njit(cache=True, nogil=True)
def sine_mod_batch(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """``sine_mod_kernel`` for each row; fm, pm, sync are (V, 1, B)."""
    for v in range(out.shape[0]):
        sine_mod_kernel(out[v, 0], n, freq[v], fm[v, 0], fm_depth[v], pm[v, 0], pm_depth[v], sync[v, 0], sr,
                        state[v])


@numba.njit(cache=True, nogil=True)
def saw_mod_batch(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """``saw_mod_kernel`` for each row."""
    for v in range(out.shape[0]):
        saw_mod_kernel(out[v, 0], n, freq[v], fm[v, 0], fm_depth[v], pm[v, 0], pm_depth[v], sync[v, 0], sr,
                       state[v])


@numba.njit(cache=True, nogil=True)
def triangle_mod_batch(out, n, freq, fm, fm_depth, pm, pm_depth, sync, sr, state):
    """``triangle_mod_kernel`` for each row."""
    for v in range(out.shape[0]):
        triangle_mod_kernel(out[v, 0], n, freq[v], fm[v, 0], fm_depth[v], pm[v, 0], pm_depth[v], sync[v, 0],
                            sr, state[v])


@numba.njit(cache=True, nogil=True)
def pulse_mod_batch(out, n, freq, fm, fm_depth, pm, pm_depth, sync, pw, sr, state):
    """``pulse_mod_kernel`` for each row."""
    for v in range(out.shape[0]):
        pulse_mod_kernel(out[v, 0], n, freq[v], fm[v, 0], fm_depth[v], pm[v, 0], pm_depth[v], sync[v, 0], pw[v],
                         sr, state[v])


# ---------------------------------------------------------------------------
# LFO and phasor (naive: control signals)
# ---------------------------------------------------------------------------

#: LFO shapes, in the order of the ``shape`` argument of ``lfo_kernel``;
#: ``PHASOR`` (after them) is the raw 0..1 phase.
LFO_SHAPES = ("sine", "triangle", "saw", "ramp", "square", "random", "smooth")
PHASOR = len(LFO_SHAPES)

# LFO state: [rng high, rng low, phase, sync at the last sample, held random
# value, next random value, start phase, rate pending for the next interval]
_L_PH = 2
_L_SYP = 3
_L_CUR = 4
_L_NXT = 5
_L_PH0 = 6
_L_DT = 7
#: Float64 state length of ``lfo_kernel``.
LFO_STATE_SIZE = 8


@numba.njit(cache=True, nogil=True)
def _lfo_draw_two(state):
    x = _load_rng(state)
    x, u = _splitmix(x)
    state[_L_CUR] = u
    x, u = _splitmix(x)
    state[_L_NXT] = u
    _store_rng(state, x)


def lfo_state(phase: float = 0.0, seed: int = 0) -> np.ndarray:
    """Fresh state for ``lfo_kernel``: start phase and the random shapes' seed.

    Args:
        phase: Start phase in cycles (wrapped into ``[0, 1)``); a sync
            restarts the cycle there.
        seed: Seed of the random shapes (any int, taken mod 2**64).

    Returns:
        A float64 array of ``LFO_STATE_SIZE``.
    """
    st = np.zeros(LFO_STATE_SIZE)
    st[:2] = noise_state(seed)[:2]
    ph = float(phase) % 1.0
    if not 0.0 <= ph < 1.0:
        ph = 0.0
    st[_L_PH] = st[_L_PH0] = ph
    _lfo_draw_two(st)
    return st


@numba.njit(cache=True, nogil=True)
def lfo_kernel(out, n, freq, sync, shape, unipolar, sr, state):
    """Naive LFO shapes (and the phasor) in -1..1, or 0..1 when ``unipolar``.

    Phase p in [0, 1): sine ``sin(2*pi*p)``; triangle 0 at p = 0, +1 at
    0.25, -1 at 0.75 (like the oscillator); saw ``2p - 1`` (rising from -1);
    ramp ``1 - 2p`` (falling from +1); square +1 for p < 0.5, -1 after;
    random holds a new uniform value each cycle; smooth glides from one
    random value to the next over a cycle (raised cosine, so the slope is
    0 at each cycle's start). ``shape == PHASOR`` writes p itself (0..1;
    ``unipolar`` does not apply). A rising zero crossing of ``sync``
    restarts the cycle at the start phase (and draws a new random value).

    Args:
        out: float32 output, ``out[:n]`` is written.
        n: Number of samples to render.
        freq: float32 frequency in Hz per sample (clamped to [0, sr/2)).
        sync: float32 sync input per sample.
        shape: Index into ``LFO_SHAPES``, or ``PHASOR``.
        unipolar: Map -1..1 onto 0..1.
        sr: Sample rate in Hz.
        state: float64 array from ``lfo_state``, updated in place.
    """
    inv_sr = 1.0 / sr
    x = _load_rng(state)
    p = state[_L_PH]
    s_prev = state[_L_SYP]
    cur = state[_L_CUR]
    nxt = state[_L_NXT]
    ph0 = state[_L_PH0]
    dt = state[_L_DT]
    for i in range(n):
        sc = _finite(sync[i])
        tau = _sync_time(s_prev, sc)
        new_cycle = False
        if tau >= 0.0:
            p = ph0 + dt * (1.0 - tau)
            new_cycle = True
        else:
            p += dt
        if p >= 1.0:
            p -= 1.0
            new_cycle = True
        if new_cycle:
            x, u = _splitmix(x)
            cur = nxt
            nxt = u
        if shape == 0:
            y = sin2pi(p)
        elif shape == 1:
            y = _tri(p)
        elif shape == 2:
            y = 2.0 * p - 1.0
        elif shape == 3:
            y = 1.0 - 2.0 * p
        elif shape == 4:
            y = 1.0 if p < 0.5 else -1.0
        elif shape == 5:
            y = cur
        elif shape == 6:
            y = cur + (nxt - cur) * (0.5 - 0.5 * sin2pi(0.5 * p + 0.25))  # (1 - cos(pi p)) / 2
        else:
            y = p
        if unipolar and shape != PHASOR:
            y = 0.5 + 0.5 * y
        out[i] = y
        s_prev = sc
        dt = _norm_freq(freq[i], inv_sr)
    _store_rng(state, x)
    state[_L_PH] = p
    state[_L_SYP] = s_prev
    state[_L_CUR] = cur
    state[_L_NXT] = nxt
    state[_L_DT] = dt


@numba.njit(cache=True, nogil=True)
def lfo_batch(out, n, freq, sync, shape, unipolar, sr, state):
    """``lfo_kernel`` for each row: out (V, 1, B), freq (V, B), sync (V, 1, B), state (V, S)."""
    for v in range(out.shape[0]):
        lfo_kernel(out[v, 0], n, freq[v], sync[v, 0], shape, unipolar, sr, state[v])
