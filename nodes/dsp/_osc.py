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

import numba
import numpy as np

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
        out[i] = np.sin(_TWO_PI * x)
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
