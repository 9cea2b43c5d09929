"""Numba kernels of the ``sing`` node: conditioning features, one SING frame, and the streaming block loop.

The features are shared with training (``train_sing`` calls
:func:`frame_features` for every frame of every note), so the model sees
exactly the same numbers when it is trained and when it plays. The VAE's
decoder (:mod:`._vae`) reuses the pitch features, the MLP and the partials.

State of one voice (``state``, float64)::

    0 active       1 frames computed (j)      2 samples until the next frame
    3 carried phase (see :func:`carry_theta`: the last frame's phase run on, radians, mod 2 pi)
    4 released     5 samples since the release event
    6 velocity     7 OLA read position (0..FRAME-1)
"""
from __future__ import annotations

import math

import numba
import numpy as np

PITCH_PERIODS = (6.0, 12.0, 24.0, 48.0, 96.0)  # semitones
ONSET_TAUS = (0.03, 0.1, 0.3, 1.0, 3.0)  # seconds
RELEASE_TAUS = (0.03, 0.1, 0.3, 1.0)
N_PITCH = 1 + 2 * len(PITCH_PERIODS)
N_FEAT = N_PITCH + 2 + len(ONSET_TAUS) + 1 + len(RELEASE_TAUS)  # without the instrument embedding
STATE = 8
#: the learnt intonation's bound: ``TUNE_MAX tanh(w . h + b)`` cents from the asked pitch
TUNE_MAX = 50.0
_PP = np.array(PITCH_PERIODS)
_OT = np.array(ONSET_TAUS)
_RT = np.array(RELEASE_TAUS)


@numba.njit(cache=True, nogil=True)
def hz_to_midi(f):
    return 69.0 + 12.0 * math.log2(max(f, 1.0) / 440.0)


@numba.njit(cache=True, nogil=True)
def pitch_features(midi, out):
    """``out[:N_PITCH]``: a line and sinusoids of the MIDI number (periods 6..96 semitones): smooth in pitch."""
    m = min(max(midi, 24.0), 108.0)
    out[0] = (m - 60.0) / 24.0
    for i in range(_PP.size):
        a = 2.0 * math.pi * m / _PP[i]
        out[1 + 2 * i] = math.sin(a)
        out[2 + 2 * i] = math.cos(a)


@numba.njit(cache=True, nogil=True)
def frame_features(midi, velocity, t_on, released, t_rel, out):
    """The non-instrument conditioning of one frame into ``out[:N_FEAT]``.

    ``t_on``: seconds from the onset to the frame's centre (clamped at 0);
    ``released``: 1 once the note-off came; ``t_rel``: seconds from it.
    """
    pitch_features(midi, out)
    k = N_PITCH
    v = min(max(velocity, 0.0), 1.0)
    out[k] = v
    out[k + 1] = v * v
    k += 2
    t = max(t_on, 0.0)
    for i in range(_OT.size):
        out[k + i] = math.exp(-t / _OT[i])
    k += _OT.size
    out[k] = released
    k += 1
    r = max(t_rel, 0.0)
    for i in range(_RT.size):
        out[k + i] = released * math.exp(-r / _RT[i])


@numba.njit(cache=True, nogil=True)
def _lrelu(x):
    return x if x > 0.0 else 0.2 * x


@numba.njit(cache=True, nogil=True, fastmath=True)
def _matvec(W, x, b, out):
    for i in range(W.shape[0]):
        s = b[i]
        for j in range(W.shape[1]):
            s += W[i, j] * x[j]
        out[i] = s


@numba.njit(cache=True, nogil=True, fastmath=True)
def _hidden2(W1, b1, W2, b2, x, h1, h2):
    """Two leaky-ReLU layers of a decoder (or encoder) MLP: ``h1 = lrelu(W1 x + b1)``, ``h2 = lrelu(W2 h1 + b2)``."""
    _matvec(W1, x, b1, h1)
    for j in range(h1.size):
        h1[j] = _lrelu(h1[j])
    _matvec(W2, h1, b2, h2)
    for j in range(h2.size):
        h2[j] = _lrelu(h2[j])


@numba.njit(cache=True, nogil=True)
def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit(cache=True, nogil=True, fastmath=True)
def harmonic_frame(amps, theta, delta, out, x, b1, b2):
    """``out[n] = sum_k amps[k-1] cos(k (theta + delta n))`` for the frame (Clenshaw's recurrence, float64)."""
    N = out.size
    K = amps.size
    for n in range(N):
        x[n] = 2.0 * math.cos(theta + delta * n)
        b1[n] = 0.0
        b2[n] = 0.0
    for k in range(K - 1, -1, -1):
        a = amps[k]
        if a == 0.0:
            for n in range(N):
                b = x[n] * b1[n] - b2[n]
                b2[n] = b1[n]
                b1[n] = b
        else:
            for n in range(N):
                b = a + x[n] * b1[n] - b2[n]
                b2[n] = b1[n]
                b1[n] = b
    for n in range(N):
        out[n] = 0.5 * x[n] * b1[n] - b2[n]


@numba.njit(cache=True, nogil=True, fastmath=True)
def sing_frame(feat, inst, emb, Wih, Whh, bl, Wz, bz, W1, b1, W2, b2, Wc, bc, Wa, ba, basis, window, Wt, bt,
               h, c, carried, first, f0, sr, hop, frame, scratch, nyq):
    """One SING frame: LSTM step from the conditioning, decoder, windowed frame into ``frame`` (float64).

    ``inst``: fractional instrument index (interpolates the embedding rows);
    ``carried``: the last frame's :func:`carry_theta` (``first``: a note's first frame, which starts at
    phase 0); ``h``, ``c``: the LSTM state (updated).
    ``scratch``: float64 work space (see :func:`scratch_size`); ``nyq``: the model's Nyquist
    frequency (partials at or above it are silent, as in training). ``Wt (1, H)``, ``bt (1,)``:
    the intonation head (the partials sound ``TUNE_MAX tanh(Wt h + bt)`` cents off ``f0``; zeros:
    none). Returns the phase to carry to the next frame.
    """
    E = emb.shape[1]
    F = feat.size
    H = h.size
    D = Wz.shape[0]
    DH = W1.shape[0]
    C = basis.shape[0]
    K = Wa.shape[0]
    N = frame.size
    P = N_PITCH
    # work space
    o = 0
    xin = scratch[o:o + E + F]
    o += E + F
    gates = scratch[o:o + 4 * H]
    o += 4 * H
    z = scratch[o:o + D + P]
    o += D + P
    hd1 = scratch[o:o + DH]
    o += DH
    hd2 = scratch[o:o + DH]
    o += DH
    co = scratch[o:o + C]
    o += C
    am = scratch[o:o + K]
    o += K
    hx = scratch[o:o + N]
    o += N
    cx = scratch[o:o + N]
    o += N
    cb1 = scratch[o:o + N]
    o += N
    cb2 = scratch[o:o + N]
    o += N
    # instrument embedding, interpolated
    ni = emb.shape[0]
    u = min(max(inst, 0.0), ni - 1.0)
    i0 = int(math.floor(u))
    i1 = min(i0 + 1, ni - 1)
    a = u - i0
    for e in range(E):
        xin[e] = (1.0 - a) * emb[i0, e] + a * emb[i1, e]
    for e in range(F):
        xin[E + e] = feat[e]
    # LSTM cell (torch's gate order i, f, g, o; bl = bias_ih + bias_hh)
    for r in range(4 * H):
        s = bl[r]
        for j in range(E + F):
            s += Wih[r, j] * xin[j]
        for j in range(H):
            s += Whh[r, j] * h[j]
        gates[r] = s
    for j in range(H):
        ig = _sigmoid(gates[j])
        fg = _sigmoid(gates[H + j])
        gg = math.tanh(gates[2 * H + j])
        og = _sigmoid(gates[3 * H + j])
        c[j] = fg * c[j] + ig * gg
        h[j] = og * math.tanh(c[j])
    s = bt[0]
    for j in range(H):
        s += Wt[0, j] * h[j]
    fp = f0 * 2.0 ** (TUNE_MAX * math.tanh(s) / 1200.0)  # exactly f0 when the head is zero
    theta = 0.0 if first else start_theta(carried, fp, N, hop, sr)
    # latent, then the decoder's input [z, pitch features]
    _matvec(Wz, h, bz, z)
    for p in range(P):
        z[D + p] = feat[p]
    _hidden2(W1, b1, W2, b2, z, hd1, hd2)
    _matvec(Wc, hd2, bc, co)
    _matvec(Wa, hd2, ba, am)
    for k in range(K):
        if 0.5 * (k + 1) * f0 >= nyq:  # half-harmonic k+1 of f0 at or above Nyquist: silent
            am[k] = 0.0
    # free frame (SING's transposed convolution: coefficients times a learnt basis) + pitch-locked partials
    top = 0  # the recurrence starts at the highest partial sounding (those above Nyquist are zero)
    for k in range(K):
        if am[k] != 0.0:
            top = k + 1
    harmonic_frame(am[:top], theta, math.pi * fp / sr, hx, cx, cb1, cb2)
    for n in range(N):
        frame[n] = hx[n]
    for k in range(C):
        ck = co[k]
        for n in range(N):
            frame[n] += ck * basis[k, n]
    for n in range(N):
        frame[n] *= window[n]
    return carry_theta(theta, fp, N, hop, sr)


def scratch_size(E, F, H, D, DH, C, K, N):
    return E + F + 4 * H + D + N_PITCH + 2 * DH + C + K + 4 * N


@numba.njit(cache=True, nogil=True)
def ola_add(ola, frame, p):
    """Overlap-add ``frame`` into the ring ``ola`` (same length) from its read position ``p``."""
    N = ola.size
    for k in range(N):
        ola[(p + k) % N] += frame[k]


@numba.njit(cache=True, nogil=True)
def ola_take(ola, state, k):
    """The ring's sample at the read position ``state[k]``, cleared; the position moves on by one."""
    p = int(state[k])
    y = ola[p]
    ola[p] = 0.0
    state[k] = (p + 1) % ola.size
    return y


@numba.njit(cache=True, nogil=True)
def next_theta(theta, f0, hop, sr):
    """The phase of f0/2 one hop later, mod 2 pi (the partials' phase runs on from frame to frame)."""
    th = theta + math.pi * f0 * hop / sr
    return th - 2.0 * math.pi * math.floor(th / (2.0 * math.pi))


@numba.njit(cache=True, nogil=True)
def carry_theta(theta, f0, N, hop, sr):
    """A frame's start phase ``theta`` (of f0/2, frame length ``N``) run on to half a hop past its centre.

    With :func:`start_theta` the frames' phases agree at their centres,
    where each frame's f0 belongs: the centre phase moves from frame to
    frame by the mean of the two f0s over a hop. (Running the start phase
    on by the frame's own f0 would put the pitch 1.5 hops early when it
    moves: a vibrato 47 degrees ahead at 5.5 Hz.) For a steady f0 the two
    steps add up to :func:`next_theta`.
    """
    th = theta + math.pi * f0 * (0.5 * N + 0.5 * hop) / sr
    return th - 2.0 * math.pi * math.floor(th / (2.0 * math.pi))


@numba.njit(cache=True, nogil=True)
def start_theta(carried, f0, N, hop, sr):
    """The start phase of a frame of f0 ``f0`` from the previous frame's :func:`carry_theta`."""
    th = carried - math.pi * f0 * (0.5 * N - 0.5 * hop) / sr
    return th - 2.0 * math.pi * math.floor(th / (2.0 * math.pi))


@numba.njit(cache=True, nogil=True)
def sing_block(y, n, pitch, inst, state, h, c, ola, frame, feat, scratch, emb, Wih, Whh, bl, Wz, bz, W1, b1, W2,
               b2, Wc, bc, Wa, ba, basis, window, Wt, bt, sr, hop, tail, nyq):
    """Render ``n`` samples of one voice into ``y[:n]``: a frame every ``hop`` samples while active, overlap-added.

    ``pitch``/``inst``: the params, per sample (read at each frame's first
    sample). ``tail``: samples after the release at which frames stop.
    """
    N = ola.size
    for i in range(n):
        if state[0] > 0.5 and state[2] <= 0.0:
            if state[4] > 0.5 and state[5] >= tail:
                state[0] = 0.0
            else:
                j = state[1]
                f0 = min(max(float(pitch[i]), 1.0), 0.5 * sr)
                # frame j spans note time [hop j - (N - hop), hop j + hop): its centre, and its centre
                # after the release (the note time of the release is its output time minus N - hop)
                t_on = (j * hop - (N - hop) + 0.5 * N) / sr
                t_rel = (state[5] + 0.5 * N) / sr
                frame_features(hz_to_midi(f0), state[6], t_on, state[4], t_rel, feat)
                state[3] = sing_frame(feat, float(inst[i]), emb, Wih, Whh, bl, Wz, bz, W1, b1, W2, b2, Wc, bc, Wa,
                                      ba, basis, window, Wt, bt, h, c, state[3], j == 0, f0, sr, hop, frame, scratch,
                                      nyq)
                ola_add(ola, frame, int(state[7]))
                state[1] = j + 1.0
                state[2] = hop
        y[i] = ola_take(ola, state, 7)
        if state[0] > 0.5:
            state[2] -= 1.0
            if state[4] > 0.5:
                state[5] += 1.0
