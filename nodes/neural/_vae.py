"""Numba kernels of the VAE nodes: a streaming frame analyser (FFT, loudness, YIN, encoder) and decoder.

Both nodes run one kernel call per block; inside it, a frame is computed
every ``hop`` samples counted from the reset (absolute time), so any block
split renders the same samples.

Encoder state (``state``, float64)::

    0 samples received (mod hop)    1 write position in the ring buffer
    2 last voiced f0 (Hz)           3 loudness of the last frame (dB)

Decoder state (``state``, float64)::

    0 samples until the next frame  1 theta (phase of f0/2 at the next frame start, rad, mod 2 pi)
    2 OLA read position             3 the noise generator's state (Park-Miller, 1 .. 2^31 - 2)

The maths mirrors :class:`nodes.neural.vae.VaeNet` (torch) line for line;
``tests/test_vae.py`` checks that both give the same numbers.
"""
from __future__ import annotations

import math

import numba
import numpy as np

# SING's kernels serve the decoder as they are (same maths, one copy)
from ._sing import (PITCH_PERIODS, N_PITCH, _hidden2, _matvec, harmonic_frame, hz_to_midi,  # noqa: F401
                    next_theta, ola_add, ola_take, pitch_features)

N_COND = N_PITCH + 1  # pitch features (SING's) + loudness feature
LOUD_FLOOR = -100.0  # dB: silence
SQRT3 = math.sqrt(3.0)
F0_MIN = 20.0  # Hz: the lowest f0 the decoder plays (an unvoiced encoder says 0)
ENC_STATE = 4
DEC_STATE = 4
NOISE_SEED = 20240601.0  # the decoder's noise generator after a reset


@numba.njit(cache=True, nogil=True)
def cond_features(f0, loud, out):
    """Decoder conditioning ``out[:N_COND]``: SING's pitch features of f0 (smooth in pitch) and the loudness."""
    pitch_features(hz_to_midi(f0), out)
    out[N_PITCH] = (max(loud, LOUD_FLOOR) + 40.0) / 40.0


# ------------------------------------------------------------------ analysis
@numba.njit(cache=True, nogil=True)
def fft_inplace(re, im, cos_t, sin_t, rev):
    """Radix-2 complex FFT of ``re + i im`` (length a power of two), in place; tables from :func:`fft_tables`."""
    n = re.size
    for i in range(n):
        j = rev[i]
        if j > i:
            t = re[i]
            re[i] = re[j]
            re[j] = t
            t = im[i]
            im[i] = im[j]
            im[j] = t
    size = 2
    while size <= n:
        half = size // 2
        step = n // size
        for start in range(0, n, size):
            for k in range(half):
                c = cos_t[k * step]
                s = sin_t[k * step]
                a = start + k
                b = a + half
                tr = re[b] * c + im[b] * s
                ti = im[b] * c - re[b] * s
                re[b] = re[a] - tr
                im[b] = im[a] - ti
                re[a] += tr
                im[a] += ti
        size *= 2


def fft_tables(n: int):
    """``(cos, sin, bit-reversal)`` tables of a length-``n`` FFT (``X_k = sum x_j e^{-2 pi i jk/n}``)."""
    if n & (n - 1):
        raise ValueError(f"frame length {n} is not a power of two")
    k = np.arange(n // 2)
    bits = int(round(math.log2(n)))
    rev = np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)], dtype=np.int64)
    return np.cos(2 * np.pi * k / n), np.sin(2 * np.pi * k / n), rev


@numba.njit(cache=True, nogil=True, fastmath=True)
def yin(x, w, max_lag, min_lag, sr, threshold, d, dn):
    """YIN f0 (Hz, 0 if unvoiced) of the frame ``x`` (float64): :func:`patchlib.dataset.yin_f0`'s steps, direct.

    ``w``: the integration window (``x.size - max_lag``); ``d``, ``dn``: scratch of ``max_lag`` values.
    """
    e0 = 0.0
    for j in range(w):
        e0 += x[j] * x[j]
    if e0 / w < 1e-10:
        return 0.0
    d[0] = 0.0
    dn[0] = 1.0
    cum = 0.0
    for tau in range(1, max_lag):
        s = 0.0
        for j in range(w):
            v = x[j] - x[j + tau]
            s += v * v
        d[tau] = s
        cum += s
        dn[tau] = s / max(cum / tau, 1e-20)
    t = -1
    for tau in range(min_lag, max_lag - 1):
        if dn[tau] < threshold:
            t = tau
            break
    if t >= 0:
        while t + 1 < max_lag - 1 and dn[t + 1] < dn[t]:
            t += 1
    else:
        t = min_lag
        for tau in range(min_lag, max_lag - 1):
            if dn[tau] < dn[t]:
                t = tau
    c = 1.0 - dn[t]
    if c < 1.0 - 2.0 * threshold:
        return 0.0
    y0, y1, y2 = d[t - 1], d[t], d[t + 1]
    den = y0 - 2.0 * y1 + y2
    shift = 0.5 * (y0 - y2) / den if den > 1e-12 else 0.0
    return sr / (t + max(-0.5, min(0.5, shift)))


@numba.njit(cache=True, nogil=True, fastmath=True)
def analyse_frame(x, hann, aw, mel, cos_t, sin_t, rev, re, im, feat):
    """Loudness (A-weighted dBFS, as :func:`patchlib.dataset.loudness_db`) and the encoder's input of one frame.

    ``feat[m] = (10 log10(mel_m + 1e-12) - loudness) / 20``: the frame's
    log-mel spectrum relative to its loudness (the latent carries the
    spectral shape; pitch and loudness travel as their own signals).
    Returns the loudness in dB.
    """
    N = x.size
    sw = 0.0
    for i in range(N):
        re[i] = x[i] * hann[i]
        im[i] = 0.0
        sw += hann[i] * hann[i]
    fft_inplace(re, im, cos_t, sin_t, rev)
    nb = N // 2 + 1
    ms = 0.0
    for k in range(nb):
        p = re[k] * re[k] + im[k] * im[k]
        re[k] = p  # re[:nb] now holds the power spectrum
        f = 1.0 if (k == 0 or k == nb - 1) else 2.0
        ms += f * aw[k] * p
    ms = ms / N / sw
    loud = max(10.0 * math.log10(max(ms, 1e-30)), -120.0)
    for m in range(mel.shape[0]):
        s = 0.0
        for k in range(nb):
            s += mel[m, k] * re[k]
        feat[m] = (10.0 * math.log10(s + 1e-12) - loud) / 20.0
    return loud


@numba.njit(cache=True, nogil=True, fastmath=True)
def encode_frame(feat, W1, b1, W2, b2, Wm, bm, Wv, bv, h1, h2, mu, std):
    """The encoder's MLP: ``mu`` and ``std = exp(logvar / 2)`` of the latent from ``feat``."""
    _hidden2(W1, b1, W2, b2, feat, h1, h2)
    _matvec(Wm, h2, bm, mu)
    _matvec(Wv, h2, bv, std)
    for j in range(std.size):
        std[j] = math.exp(0.5 * min(max(std[j], -20.0), 20.0))


@numba.njit(cache=True, nogil=True)
def encoder_block(x, n, z_out, std_out, f0_out, loud_out, state, ring, frame, re, im, feat, h1, h2, mu, std,
                  d, dn, hann, aw, mel, cos_t, sin_t, rev, W1, b1, W2, b2, Wm, bm, Wv, bv, hop, sr, max_lag,
                  min_lag, threshold):
    """Stream ``n`` samples of ``x`` (float32) through the analyser; outputs hold each frame's values.

    A frame (the last ``N`` samples, zeros before the reset) is analysed
    after every ``hop``-th sample; its values are written from the next
    sample on (``mu``/``std`` keep the last frame's values between frames).
    """
    N = ring.size
    D = mu.size
    w = N - max_lag
    for i in range(n):
        p = int(state[1])
        ring[p] = x[i]
        p = (p + 1) % N
        state[1] = p
        # outputs first: the frame analysed at the end of this sample shows from the next one
        for k in range(D):
            z_out[k, i] = mu[k]
            std_out[k, i] = std[k]
        f0_out[0, i] = state[2]
        loud_out[0, i] = state[3]
        c = state[0] + 1.0
        if c >= hop:
            c = 0.0
            for j in range(N):
                frame[j] = ring[(p + j) % N]
            loud = analyse_frame(frame, hann, aw, mel, cos_t, sin_t, rev, re, im, feat)
            encode_frame(feat, W1, b1, W2, b2, Wm, bm, Wv, bv, h1, h2, mu, std)
            f = yin(frame, w, max_lag, min_lag, sr, threshold, d, dn)
            if f > 0.0:
                state[2] = f
            state[3] = max(loud, LOUD_FLOOR)
        state[0] = c


# ------------------------------------------------------------------ synthesis
@numba.njit(cache=True, nogil=True)
def noise_fill(out, state, k):
    """White noise of unit variance (uniform) into ``out`` from the Park-Miller generator in ``state[k]``."""
    s = state[k]
    for i in range(out.size):
        s = (48271.0 * s) % 2147483647.0
        out[i] = (2.0 * (s / 2147483647.0) - 1.0) * SQRT3
    state[k] = s


@numba.njit(cache=True, nogil=True, fastmath=True)
def shaped_noise(noise, gains, cos_t, sin_t, rev, re, im, out):
    """``irfft(rfft(noise) * gains)`` (``gains``: one real gain per bin, ``N // 2 + 1``) into ``out``."""
    N = noise.size
    for i in range(N):
        re[i] = noise[i]
        im[i] = 0.0
    fft_inplace(re, im, cos_t, sin_t, rev)
    nb = N // 2 + 1
    for k in range(nb):
        g = gains[k]
        re[k] *= g
        im[k] *= g
        if 0 < k < N - k:
            re[N - k] *= g
            im[N - k] *= g
    # inverse by the conjugate trick: ifft(X) = conj(fft(conj(X))) / N
    for i in range(N):
        im[i] = -im[i]
    fft_inplace(re, im, cos_t, sin_t, rev)
    for i in range(N):
        out[i] = re[i] / N


@numba.njit(cache=True, nogil=True, fastmath=True)
def decode_frame(z, f0, loud, theta, sr, nyq, W1, b1, W2, b2, Wc, bc, Wa, ba, basis, window, Wn, bn, interp,
                 cos_t, sin_t, rev, state, frame, xin, hd1, hd2, co, am, cx, cb1, cb2, hx, nz, gains, re, im):
    """One windowed output frame (float64) from a latent, f0 (Hz) and loudness (dB); see ``VaeNet.decode``.

    With noise bands (``Wn`` not empty), white noise from ``state[3]``
    shaped by the bands' gains (``exp`` of the network's output,
    interpolated to the bins by ``interp``) is added to the frame.
    """
    D = z.size
    for k in range(D):
        xin[k] = z[k]
    cond_features(f0, loud, xin[D:])
    _hidden2(W1, b1, W2, b2, xin, hd1, hd2)
    _matvec(Wc, hd2, bc, co)
    _matvec(Wa, hd2, ba, am)
    top = 0
    for k in range(am.size):
        if 0.5 * (k + 1) * f0 >= nyq:  # half-harmonics at or above the model's Nyquist are silent
            am[k] = 0.0
        else:
            top = k + 1
    harmonic_frame(am[:top], theta, math.pi * f0 / sr, hx, cx, cb1, cb2)
    g = 10.0 ** (max(loud, LOUD_FLOOR) / 20.0)
    N = frame.size
    for n in range(N):
        frame[n] = hx[n]
    for k in range(co.size):
        ck = co[k]
        for n in range(N):
            frame[n] += ck * basis[k, n]
    NB = Wn.shape[0]
    if NB > 0:
        bands = xin[:NB]  # xin is free again: reuse it for the band gains
        _matvec(Wn, hd2, bn, bands)
        for j in range(NB):
            bands[j] = math.exp(min(bands[j], 5.0))
        for k in range(gains.size):
            s = 0.0
            for j in range(NB):
                s += bands[j] * interp[j, k]
            gains[k] = s
        noise_fill(nz, state, 3)
        shaped_noise(nz, gains, cos_t, sin_t, rev, re, im, hx)
        for n in range(N):
            frame[n] += hx[n]
    for n in range(N):
        frame[n] *= g * window[n]


@numba.njit(cache=True, nogil=True)
def decoder_block(y, n, z, f0p, loudp, state, ola, frame, xin, hd1, hd2, co, am, cx, cb1, cb2, hx, nz, gains, re,
                  im, zf, W1, b1, W2, b2, Wc, bc, Wa, ba, basis, Wn, bn, window, interp, cos_t, sin_t, rev, sr, hop,
                  nyq):
    """Render ``n`` samples into ``y[:n]``: a frame every ``hop`` samples from the inputs at its first sample.

    ``z``: the latent input ``(D or 1, block)`` float32 (a mono source feeds
    every dimension); ``f0p``/``loudp``: the params per sample.
    """
    D = zf.size
    zc = z.shape[0]
    for i in range(n):
        if state[0] <= 0.0:
            f0 = min(max(float(f0p[i]), F0_MIN), 0.5 * sr)  # the node's f0 range starts at F0_MIN
            for k in range(D):
                zf[k] = z[min(k, zc - 1), i]
            decode_frame(zf, f0, float(loudp[i]), state[1], sr, nyq, W1, b1, W2, b2, Wc, bc, Wa, ba, basis, window,
                         Wn, bn, interp, cos_t, sin_t, rev, state, frame, xin, hd1, hd2, co, am, cx, cb1, cb2, hx,
                         nz, gains, re, im)
            ola_add(ola, frame, int(state[2]))
            state[0] = hop
            state[1] = next_theta(state[1], f0, hop, sr)
        y[i] = ola_take(ola, state, 2)
        state[0] -= 1.0


# ------------------------------------------------------------------ latent control signals
@numba.njit(cache=True, nogil=True)
def morph_block(out, n, pos, points):
    """``out[:, :n]``: piecewise-linear interpolation of ``points`` (P, D) at fractional index ``pos`` per sample."""
    P = points.shape[0]
    D = points.shape[1]
    for i in range(n):
        u = min(max(float(pos[i]), 0.0), P - 1.0)
        i0 = int(math.floor(u))
        i1 = min(i0 + 1, P - 1)
        a = u - i0
        for k in range(D):
            out[k, i] = (1.0 - a) * points[i0, k] + a * points[i1, k]


@numba.njit(cache=True, nogil=True)
def _uniform(state, k):
    """Park-Miller minimal standard generator (exact in float64): a uniform number in (0, 1) from ``state[k]``."""
    s = (48271.0 * state[k]) % 2147483647.0
    state[k] = s
    return s / 2147483647.0


@numba.njit(cache=True, nogil=True)
def walk_block(out, n, center, speed, depth, spread, state, sr):
    """A latent random walk: per dimension an Ornstein-Uhlenbeck process, ``center + depth * spread * v``.

    ``state``: ``[v_0..v_{D-1}, rng_0..rng_{D-1}]``. ``speed`` (Hz): how
    fast the walk wanders (the process's corner frequency); ``depth``: its
    standard deviation in units of ``spread`` (the latent's spread in
    training). ``center`` ``(D or 1, block)``: the point it wanders around.
    """
    D = spread.size
    cc = center.shape[0]
    for i in range(n):
        a = 1.0 - math.exp(-2.0 * math.pi * min(max(float(speed[i]), 0.0), 0.25 * sr) / sr)
        g = math.sqrt(max(a * (2.0 - a), 0.0)) * math.sqrt(3.0)  # uniform(-1, 1) has variance 1/3
        for k in range(D):
            u = 2.0 * _uniform(state, D + k) - 1.0
            v = (1.0 - a) * state[k] + g * u
            state[k] = v
            out[k, i] = center[min(k, cc - 1), i] + float(depth[i]) * spread[k] * v
