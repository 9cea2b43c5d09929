"""Physical-model kernels (numba): plucked string, bowed/blown waveguides, modal bank.

After Julius O. Smith III, *Physical Audio Signal Processing* (2010) and
Jaffe & Smith, "Extensions of the Karplus-Strong plucked-string algorithm",
CMJ 7(2), 1983. Every kernel processes one node for ``n`` samples with all
of its streaming state in one float64 array ``state`` (scalars, named by the
``S_*`` / ``W_*`` / ``M_*`` indices below) plus, for the delay-line models,
one float64 buffer ``buf`` of shape ``(rows, size)`` whose rows are
power-of-two rings (index wrap = mask). Rendering N samples in one call is
identical to any split into consecutive calls. The ``*_batch`` kernels run
the rows of stacked arrays (``state[v]``, ``buf[v]``) one after the other.

Params: ``freq`` is read every sample (audio rate; coefficients are only
recomputed on the samples where it moves); the others are read on the
control grid (every ``control_period`` samples of absolute time, so the
block size never changes the sound), except where an event or a change of
freq uses them: a pluck's position and brightness, a strike's hardness, the
glide of a new freq are read at that very sample.

String loop (one sample)::

    r = ring[w - M]                       integer delay M >= 1
    a = eta * (r - a1) + r1               first-order allpass, fractional delay
    l = p * l1 + g * (1 - p) * a          one-pole lowpass: loss and brightness
    v = l + excitation;  ring[w] = v      output: v minus its 4 Hz one-pole mean

A pluck feeds one period of noise into the loop. A pluck while the string
rings (``restart``) writes the new burst alone into the loop for one pass
while the old sound, read from the loop, is faded out linearly over that
pass: the loop restarts cleanly and the output has no step. When a glide
moves the integer delay by a sample, the allpass's previous input is
restated as the sample before the new tap, so the allpass sees a
continuous signal (this keeps the switching transients ~125 dB down).

Tuning: the loop's phase delay at the fundamental ``w0 = 2 pi f / sr`` is
``M + tau_ap(w0) + tau_lp(w0)``; the lowpass's phase delay is computed
exactly and the allpass coefficient solved in closed form so that the sum is
``sr / f`` exactly (``eta = sin((1 - d) w0 / 2) / sin((1 + d) w0 / 2)`` gives
an allpass phase delay of exactly ``d`` samples at ``w0``).

Decay: a mode of a loop with gain ``|L(w)|`` decays by ``ln|L| / tau_g(w)``
nepers per sample, ``tau_g`` the loop's *group* delay (not its length), so
the loop gain at ``w0`` is set to ``10 ** (-3 tau_g / (T60 sr))``.

Brightness: the lowpass pole follows a physical damping law, extra decay
``eta_d * f**2`` nepers/s (internal friction grows as f squared), with
``eta_d`` from ``brightness`` (0: a 2 kHz partial gets an extra T60 of 80 ms;
1: no frequency-dependent damping). The pole is limited so that the
lowpass takes at most half the loss at the fundamental: the loop's DC gain
then stays at or below ``sqrt(G0) < 1`` and nothing but the partials rings.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ._fastmath import sin2pi

TWO_PI = 2.0 * math.pi
LN1000 = math.log(1000.0)  # 60 dB in nepers
#: values below this are flushed to zero (no subnormal slow-down in long tails)
FLUSH = 1e-30

# ----------------------------------------------------------------- string
#: lowest frequency of a string (the delay buffer is sized from it)
STRING_FMIN = 20.0
#: quadratic damping at brightness 0: extra T60 of 80 ms at 2 kHz
STRING_ETA_MAX = LN1000 / 0.08 / 2000.0 ** 2
#: level of a pluck's excitation burst (RMS, times the velocity)
STRING_BURST_RMS = 0.25
#: smoothing time of the loop gain (release, decay changes): no zipper, no click
STRING_GAIN_SMOOTH = 0.003
#: output DC blocker corner (Hz)
DC_HZ = 4.0

S_W = 0          # write position in the rings
S_INIT = 1       # 0 until the first sample after a reset
S_FT = 2         # freq param value the glide aims at
S_LT = 3         # glide: log of the (clamped) target frequency
S_LF = 4         # glide: log of the current frequency
S_STEP = 5       # glide step per sample (log f)
S_REMAIN = 6     # glide samples left
S_DECAY = 7      # decay held from the last control point
S_BRIGHT = 8     # brightness held from the last control point
S_REL = 9        # release held from the last control point
S_GATE = 10      # 1 held / 0 released (loop decays with the release time)
S_DIRTY = 11     # 1: recompute coefficients on the next sample
S_M = 12         # integer delay
S_ETA = 13       # allpass coefficient
S_P = 14         # lowpass pole
S_GT = 15        # loop gain target
S_G = 16         # loop gain (smoothed)
S_AX = 17        # allpass previous input
S_AY = 18        # allpass previous output
S_LY = 19        # lowpass previous output
S_SPARE = 20     # (spare)
S_DY = 21        # DC blocker: the one-pole mean it removes
S_PEND = 22      # pending pluck velocity (< 0: none)
S_BK = 23        # burst read position
S_BL = 24        # burst length
S_FK = 25        # retrigger fade position
S_FN = 26        # retrigger fade length
S_PLUCKS = 27    # plucks so far (noise key)
S_SEED = 28      # noise seed
S_PERIOD = 29    # current period in samples
# settings, fixed at prepare (kept in the state so a kernel call takes few arguments)
S_SR = 30        # sample rate
S_FMAX = 31      # highest frequency
S_RESTART = 32   # 1: a pluck fades out what rings; 0: adds to it
S_NOISE = 33     # 1: a pluck injects a noise burst
S_EXC = 34       # 1: the exciter input is connected
S_CP = 35        # control period (samples): control-rate params are read on its grid
S_POS = 36       # position held from the last control point
S_SPARE2 = 37    # (spare)
S_FMIN = 38      # lowest frequency (the buffer's length)
S_STALE = 39     # 1: only the tuning followed freq since the last full update
S_F = 40         # current frequency (Hz)
STRING_STATE = 41

#: buffer rows of a string: the loop, the exciter input's history, the burst
STRING_ROWS = 3
#: rows of the string's param block, in this order
STRING_PARAMS = ("freq", "decay", "brightness", "position", "glide", "release")


def ring_size(max_delay: float) -> int:
    """Smallest power of two holding ``max_delay`` samples plus guard samples."""
    need = int(math.ceil(max(float(max_delay), 1.0))) + 8
    return 1 << (need - 1).bit_length()


def string_state(seed: int, sample_rate: float, fmax: float, restart: bool, noise: bool, exciter: bool,
                 control_period: int = 32):
    """Fresh ``(state, buf)`` of a string at this sample rate (buffer sized for 20 Hz)."""
    state = np.zeros(STRING_STATE, dtype=np.float64)
    state[S_PEND] = -1.0
    state[S_GATE] = 1.0
    state[S_DIRTY] = 1.0
    state[S_SEED] = float(int(seed) & 0xFFFFFFFF)
    state[S_SR] = float(sample_rate)
    state[S_FMAX] = min(float(fmax), float(sample_rate) / 4.0)
    state[S_RESTART] = float(bool(restart))
    state[S_NOISE] = float(bool(noise))
    state[S_EXC] = float(bool(exciter))
    state[S_CP] = float(max(int(control_period), 1))
    buf = np.zeros((STRING_ROWS, ring_size(sample_rate / STRING_FMIN)), dtype=np.float64)
    state[S_FMIN] = max(STRING_FMIN, float(sample_rate) / (buf.shape[1] - 8))
    return state, buf


@numba.njit(cache=True, nogil=True, inline="always")
def _unit_noise(key):
    """Counter-based noise (splitmix64 finaliser): uint64 key -> uniform [-1, 1)."""
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * (2.0 / 9007199254740992.0) - 1.0


@numba.njit(cache=True, nogil=True)
def loop_coefs(f, t60, bright, sr, frac):
    """Coefficients ``(M, eta, p, g)`` of a loop ``z**-M * allpass(eta) * g (1 - p) / (1 - p z**-1)``.

    The loop's phase delay at ``f`` is ``frac * sr / f`` samples exactly (1
    for a string or an open pipe, 0.5 for a tube closed at one end, whose
    period is two passes through an inverting loop), and a mode at ``f``
    decays by 60 dB in ``t60`` seconds. ``bright`` (0..1) sets the lowpass
    pole from the damping law (see the module docstring). Needs
    ``frac * sr / f >= 4``.
    """
    w = TWO_PI * f / sr
    P = frac * sr / f
    c = math.cos(w)
    s = math.sin(w)
    s2 = 0.5 * (1.0 - c)  # sin(w/2)**2
    # damping law -> lowpass "q" = p / (1 - p)**2 (loss per pass ~ q w**2 / 2, f / frac passes a second)
    eta_d = STRING_ETA_MAX * (math.exp(-LN1000 * bright) - 0.001) / 0.999
    q = eta_d * sr * sr * frac / (2.0 * math.pi * math.pi * f)
    # the lowpass may take at most half the (log) loss at f: DC gain <= sqrt(G0)
    ln_g_approx = -LN1000 * P / (t60 * sr)
    qmax = (math.exp(-0.5 * ln_g_approx) - 1.0) / (4.0 * s2)
    if q > qmax:
        q = qmax
    p = 2.0 * q / (2.0 * q + 1.0 + math.sqrt(4.0 * q + 1.0))
    pmax = (P - 1.5) / (P - 0.5)  # its delay must leave room for M >= 1, d >= 0.5
    if p > pmax:
        p = pmax
    if p < 0.0:
        p = 0.0
    tau_lp = math.atan2(p * s, 1.0 - p * c) / w
    D = P - tau_lp
    M = math.floor(D - 0.5)
    if M < 1.0:
        M = 1.0
    d = D - M
    eta = math.sin((1.0 - d) * w * 0.5) / math.sin((1.0 + d) * w * 0.5)
    tg = M + (1.0 - eta * eta) / (1.0 + 2.0 * eta * c + eta * eta) + (p * c - p * p) / (1.0 - 2.0 * p * c + p * p)
    qq = p / ((1.0 - p) * (1.0 - p))
    amp = 1.0 / math.sqrt(1.0 + 4.0 * qq * s2)  # lowpass magnitude at f over its DC gain
    g = math.exp(-LN1000 * tg / (t60 * sr)) / amp
    return M, eta, p, g


@numba.njit(cache=True, nogil=True)
def _thiran3(d):
    """Third-order Thiran allpass of delay ``d`` (> 2): denominator ``1 + a1 z^-1 + a2 z^-2 + a3 z^-3``."""
    a1 = -3.0 * (d - 3.0) / (d + 1.0)
    a2 = 3.0 * (d - 3.0) * (d - 2.0) / ((d + 1.0) * (d + 2.0))
    a3 = -(d - 3.0) * (d - 2.0) * (d - 1.0) / ((d + 1.0) * (d + 2.0) * (d + 3.0))
    return a1, a2, a3


@numba.njit(cache=True, nogil=True)
def _thiran3_phase_delay(a1, a2, a3, w):
    """Phase delay (samples) at ``w`` of ``z^-3 A(1/z) / A(z)``."""
    re = 1.0 + a1 * math.cos(w) + a2 * math.cos(2.0 * w) + a3 * math.cos(3.0 * w)
    im = -(a1 * math.sin(w) + a2 * math.sin(2.0 * w) + a3 * math.sin(3.0 * w))
    return 3.0 + 2.0 * math.atan2(im, re) / w


@numba.njit(cache=True, nogil=True)
def wg_loop_coefs(f, t60, bright, sr, frac):
    """Like :func:`loop_coefs` with a third-order Thiran allpass for the fraction: ``(M, a1, a2, a3, p, g)``.

    The Thiran allpass's phase delay is flat far up the band, so the harmonics
    of a self-oscillating loop line up with its fundamental (a first-order
    allpass, exact at ``f`` only, pulls a bowed or blown tone by a few cents).
    """
    w = TWO_PI * f / sr
    P = frac * sr / f
    c = math.cos(w)
    s = math.sin(w)
    s2 = 0.5 * (1.0 - c)
    eta_d = STRING_ETA_MAX * (math.exp(-LN1000 * bright) - 0.001) / 0.999
    q = eta_d * sr * sr * frac / (2.0 * math.pi * math.pi * f)
    ln_g_approx = -LN1000 * P / (t60 * sr)
    qmax = (math.exp(-0.5 * ln_g_approx) - 1.0) / (4.0 * s2)
    if q > qmax:
        q = qmax
    p = 2.0 * q / (2.0 * q + 1.0 + math.sqrt(4.0 * q + 1.0))
    pmax = (P - 3.5) / (P - 2.5)  # room for M >= 1 and a Thiran delay >= 2.5
    if p > pmax:
        p = pmax
    if p < 0.0:
        p = 0.0
    tau_lp = math.atan2(p * s, 1.0 - p * c) / w
    D = P - tau_lp
    M = math.floor(D - 2.5)
    if M < 1.0:
        M = 1.0
    target = D - M
    d = target
    for _ in range(4):  # Newton on the phase delay at w (its slope in d is ~1)
        a1, a2, a3 = _thiran3(d)
        d -= _thiran3_phase_delay(a1, a2, a3, w) - target
    a1, a2, a3 = _thiran3(d)
    h = 1e-4 * w  # group delay = d(phase)/dw, by a central difference
    tg_ap = (_thiran3_phase_delay(a1, a2, a3, w + h) * (w + h)
             - _thiran3_phase_delay(a1, a2, a3, w - h) * (w - h)) / (2.0 * h)
    tg = M + tg_ap + (p * c - p * p) / (1.0 - 2.0 * p * c + p * p)
    qq = p / ((1.0 - p) * (1.0 - p))
    amp = 1.0 / math.sqrt(1.0 + 4.0 * qq * s2)
    g = math.exp(-LN1000 * tg / (t60 * sr)) / amp
    return M, a1, a2, a3, p, g


@numba.njit(cache=True, nogil=True)
def string_coefs(f, t60, bright, sr):
    """Loop coefficients ``(M, eta, p, g)`` of a string: exact pitch ``f``, T60 ``t60`` at ``f``.

    ``f`` must lie in ``(0, sr / 4]``; ``bright`` in ``[0, 1]``.
    """
    return loop_coefs(f, t60, bright, sr, 1.0)


@numba.njit(cache=True, nogil=True)
def _make_burst(buf, L, d, lp, key, vel):
    """One period (L samples) of pluck excitation into ``buf[2, :L]``.

    Seeded noise, through the pluck-position comb ``1 - z**-d`` applied
    circularly (the excitation is one period of a periodic string shape),
    through a one-pole lowpass ``lp`` run circularly (two passes, so the
    period wraps without a step), minus its mean, scaled to
    ``STRING_BURST_RMS * vel``.
    """
    row = buf[2]
    for k in range(L):
        x = _unit_noise(key + np.uint64(k))
        if d > 0.0:
            t = k - d
            if t < 0.0:
                t += L
            i0 = int(t)
            fr = t - i0
            i1 = i0 + 1
            if i1 >= L:
                i1 -= L
            x -= (1.0 - fr) * _unit_noise(key + np.uint64(i0)) + fr * _unit_noise(key + np.uint64(i1))
        row[k] = x
    s = 0.0
    a = 1.0 - lp
    for k in range(L):
        s += a * (row[k] - s)
    mean = 0.0
    for k in range(L):
        s += a * (row[k] - s)
        row[k] = s
        mean += s
    mean /= L
    e = 0.0
    for k in range(L):
        row[k] -= mean
        e += row[k] * row[k]
    rms = math.sqrt(e / L)
    scale = STRING_BURST_RMS * vel / rms if rms > 1e-12 else 0.0
    for k in range(L):
        row[k] *= scale


@numba.njit(cache=True, nogil=True)
def _string_pluck(state, buf, vel, pos, period, bright, sr):
    """Make the burst of a pluck (velocity ``vel``) in ``buf[2]``; returns its length."""
    L = np.int64(period + 0.5)
    mask = buf.shape[1] - 1
    if L < 2:
        L = 2
    if L > mask:
        L = mask
    if not pos > 0.0:
        pos = 0.0
    if pos > 0.5:
        pos = 0.5
    v = vel if vel < 1.0 else 1.0
    # the excitation opens with velocity and brightness (Jaffe & Smith's dynamics filter)
    fe = 400.0 * math.exp(math.log(50.0) * (0.5 * v + 0.5 * bright))
    if fe > 0.45 * sr:
        fe = 0.45 * sr
    key = (np.uint64(np.int64(state[S_SEED])) * np.uint64(0x9E3779B97F4A7C15)
           + np.uint64(np.int64(state[S_PLUCKS])) * np.uint64(0xD1B54A32D192ED03))
    _make_burst(buf, L, pos * L, math.exp(-TWO_PI * fe / sr), key, vel)
    state[S_PLUCKS] += 1.0
    return L


@numba.njit(cache=True, nogil=True)
def _string_retune(f, p, sr):
    """Tuning only, for a loss filter pole ``p`` kept from the last full update: ``(M, eta, p)``.

    Cheap enough for every sample of an audio-rate freq (fast sines): the
    pitch stays exact (the tuning accounts for the pole actually used); the
    pole and the loop gain follow on the next control point.
    """
    x = f / sr
    w = TWO_PI * x
    P = sr / f
    pmax = (P - 1.5) / (P - 0.5)
    if p > pmax:
        p = pmax
    tau_lp = math.atan2(p * sin2pi(x), 1.0 - p * sin2pi(x + 0.25)) / w
    D = P - tau_lp
    M = math.floor(D - 0.5)
    if M < 1.0:
        M = 1.0
    d = D - M
    return M, sin2pi((1.0 - d) * x * 0.5) / sin2pi((1.0 + d) * x * 0.5), p


@numba.njit(cache=True, nogil=True)
def _string_update(state, ft, glide, init, full):
    """After ``freq`` moved (or a glide step): new pitch, then the loop coefficients into ``state``.

    ``full``: all coefficients (decay, brightness, gate moved); else only the tuning.
    """
    sr = state[S_SR]
    if ft != state[S_FT] or not init:
        # a new target, clamped to the string's range: jump, or glide linearly in log f
        state[S_FT] = ft
        fc = ft
        lo = state[S_FMIN]
        if not fc >= lo:  # also NaN
            fc = lo
        if fc > state[S_FMAX]:
            fc = state[S_FMAX]
        gl = glide * sr
        if not init or not gl >= 1.0:
            state[S_F] = fc
            state[S_REMAIN] = 0.0
        else:
            state[S_LT] = math.log(fc)
            state[S_LF] = math.log(state[S_F])
            state[S_REMAIN] = gl
            state[S_STEP] = (state[S_LT] - state[S_LF]) / gl
    if state[S_REMAIN] > 0.0:
        if state[S_REMAIN] <= 1.0:
            state[S_LF] = state[S_LT]
            state[S_REMAIN] = 0.0
        else:
            state[S_LF] += state[S_STEP]
            state[S_REMAIN] -= 1.0
        state[S_F] = math.exp(state[S_LF])
    f = state[S_F]
    state[S_PERIOD] = sr / f
    if init and not full:
        M, eta, p = _string_retune(f, state[S_P], sr)
        state[S_M] = M
        state[S_ETA] = eta
        state[S_P] = p
        state[S_STALE] = 1.0
        return
    state[S_STALE] = 0.0
    t60 = state[S_DECAY]
    if not t60 >= 1e-3:
        t60 = 1e-3
    if state[S_GATE] == 0.0:
        tr = state[S_REL]
        if not tr >= 1e-3:
            tr = 1e-3
        if tr < t60:
            t60 = tr
    M, eta, p, g = string_coefs(f, t60, _unit(state[S_BRIGHT]), sr)
    state[S_M] = M
    state[S_ETA] = eta
    state[S_P] = p
    state[S_GT] = g
    if not init:
        state[S_G] = g
    state[S_INIT] = 1.0
    state[S_DIRTY] = 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _unit(x):
    """Clamp to [0, 1] (NaN -> 0)."""
    if not x >= 0.0:
        return 0.0
    return x if x < 1.0 else 1.0


@numba.njit(cache=True, nogil=True)
def string_kernel(y, n, t, exc, par, state, buf):
    """Plucked string (extended Karplus-Strong) for ``n`` samples from absolute frame ``t``.

    Args:
        y: float32 ``(frames,)`` output, ``y[:n]`` written.
        n: samples.
        t: absolute frame of the first sample (aligns the control grid).
        exc: float32 ``(C, frames)`` exciter input; row 0 is fed into the
            loop at every sample when ``state[S_EXC]`` is set.
        par: float32 ``(6, >= n)`` params, rows in :data:`STRING_PARAMS`
            order: freq (Hz, audio rate), then on the control grid: decay
            (s, T60 at freq), brightness (0..1), position (0..0.5), glide
            (s), release (s, T60 once released).
        state: float64 ``(STRING_STATE,)`` from :func:`string_state`.
        buf: float64 ``(3, size)``: the loop, the exciter's history, the burst.
    """
    mask = buf.shape[1] - 1
    sr = state[S_SR]
    exc_on = state[S_EXC] != 0.0
    cp = np.int64(state[S_CP])
    ctr = (cp - t % cp) % cp  # samples to the next control point (0: this one)
    freq = par[0]
    w = np.int64(state[S_W])
    ft = np.float32(state[S_FT])
    pend = state[S_PEND] >= 0.0
    M = np.int64(state[S_M])
    eta = state[S_ETA]
    p = state[S_P]
    gt = state[S_GT]
    g = state[S_G]
    ax = state[S_AX]
    ay = state[S_AY]
    ly = state[S_LY]
    dy = state[S_DY]
    bk = np.int64(state[S_BK])
    bl = np.int64(state[S_BL])
    fk = np.int64(state[S_FK])
    fn = np.int64(state[S_FN])
    kg = 1.0 - math.exp(-1.0 / (STRING_GAIN_SMOOTH * sr))
    rdc = 1.0 - TWO_PI * DC_HZ / sr
    cdc = 1.0 - rdc
    i = 0
    while i < n:
        init = state[S_INIT] != 0.0
        if ctr == 0 or not init:
            # ---- control point: read the control-rate params
            if ctr == 0:
                # (on the fixed grid, so that any block split gives the same numbers)
                ctr = cp
                if abs(dy) < FLUSH:  # no subnormal tail
                    dy = 0.0
                if abs(gt - g) < 1e-12:  # the gain has settled: the steady loop may run
                    g = gt
            di = np.float64(par[1, i])
            bi = np.float64(par[2, i])
            ri = np.float64(par[5, i])
            if di != state[S_DECAY] or bi != state[S_BRIGHT] or (ri != state[S_REL] and state[S_GATE] == 0.0):
                state[S_DIRTY] = 1.0
            if state[S_STALE] != 0.0:  # freq moved since the last full update: pole and gain follow
                state[S_DIRTY] = 1.0
            state[S_DECAY] = di
            state[S_BRIGHT] = bi
            state[S_REL] = ri
            state[S_POS] = np.float64(par[3, i])
        fi = freq[i]
        if fi != ft or state[S_REMAIN] > 0.0 or state[S_DIRTY] != 0.0 or not init:
            ft = fi
            # (glide is sampled where freq moves, like a pluck's position)
            _string_update(state, np.float64(fi), np.float64(par[4, i]), init, state[S_DIRTY] != 0.0 or not init)
            if np.int64(state[S_M]) != M and init:
                # the integer delay moved (a glide crossing a sample): restate the allpass's
                # previous input as the sample before the new tap, so it sees a continuous signal
                ax = buf[0, (w - 1 - np.int64(state[S_M])) & mask]
            M = np.int64(state[S_M])
            eta = state[S_ETA]
            p = state[S_P]
            gt = state[S_GT]
            g = state[S_G]
        if pend:
            # a pluck: the burst (and the fade of what rings) start on this sample
            pend = False
            vel = state[S_PEND]
            state[S_PEND] = -1.0
            if state[S_NOISE] != 0.0:
                # (position and brightness are sampled at the pluck itself, not on the control grid,
                # so a pluck follows a 'set' scored at the same moment)
                bl = _string_pluck(state, buf, vel, np.float64(par[3, i]), state[S_PERIOD],
                                   _unit(np.float64(par[2, i])), sr)
                bk = 0
                if state[S_RESTART] != 0.0:
                    fk = 0
                    fn = M
        # ---- samples with fixed coefficients: up to the next control point or a move of freq
        j = i + ctr
        if j > n:
            j = n
        if state[S_REMAIN] > 0.0:
            j = i + 1
        period = state[S_PERIOD]
        pos = state[S_POS]
        if pos > 0.5:
            pos = 0.5
        dd = pos * period
        dm = np.int64(dd)
        dfr = dd - dm
        b0 = 1.0 - p
        k = i
        if bk >= bl and fk >= fn and not exc_on and g == gt:
            # steady ringing: nothing but the loop
            gb = g * b0
            while True:
                r = buf[0, (w - M) & mask]
                a = (eta * r + ax) - eta * ay
                ax = r
                ay = a
                ly = p * ly + gb * a
                v = ly
                if abs(v) < FLUSH:
                    v = 0.0
                buf[0, w] = v
                dy = rdc * dy + cdc * v
                y[k] = v - dy
                w = (w + 1) & mask
                k += 1
                if k >= j or freq[k] != ft:
                    break
        else:
            while True:
                e = 0.0
                if bk < bl:
                    e = buf[2, bk]
                    bk += 1
                if exc_on:
                    x = np.float64(exc[0, k])
                    buf[1, w] = x
                    if pos > 0.0:  # the pluck-position comb
                        x0 = buf[1, (w - dm) & mask]
                        x -= x0 + dfr * (buf[1, (w - dm - 1) & mask] - x0)
                    e += x
                r = buf[0, (w - M) & mask]
                fading = fk < fn
                if fading:
                    # a pluck while ringing restarts the loop with the new burst alone; what
                    # rang is still heard, fading out over the loop's first pass (no click)
                    r *= (fn - 1 - fk) / fn
                    fk += 1
                a = (eta * r + ax) - eta * ay
                ax = r
                ay = a
                g += kg * (gt - g)
                ly = p * ly + (g * b0) * a
                v = ly + e
                if abs(v) < FLUSH:
                    v = 0.0
                buf[0, w] = e if fading else v
                dy = rdc * dy + cdc * v  # DC blocker: v minus its one-pole mean
                y[k] = v - dy
                w = (w + 1) & mask
                k += 1
                if k >= j or freq[k] != ft:
                    break
        state[S_G] = g
        ctr -= k - i
        i = k
    state[S_W] = w
    state[S_G] = g
    state[S_AX] = ax
    state[S_AY] = ay
    state[S_LY] = ly
    state[S_DY] = dy
    state[S_BK] = bk
    state[S_BL] = bl
    state[S_FK] = fk
    state[S_FN] = fn


@numba.njit(cache=True, nogil=True)
def string_batch(y, n, t, exc, par, state, buf):
    """:func:`string_kernel` for each member v: ``y (V, 1, B)``, ``exc (V, C, B)``,
    ``par (6, V, B)``, ``state (V, STRING_STATE)``, ``buf (V, 3, size)``."""
    for v in range(y.shape[0]):
        string_kernel(y[v, 0], n, t, exc[v], par[:, v], state[v], buf[v])


# ----------------------------------------------------------------- modal bank
# Each mode is a complex one-pole ("phasor") resonator z <- c z + gi x with
# c = r exp(i theta): its pole radius r (the decay) is exact and independent
# of theta, so the frequency may move every sample without any instability
# or change of decay (a two-pole filter's coefficients mix the two). The
# output is the sum of gain * Im(z): a struck mode starts at 0 and rises as
# a sine (no click), and rings as r**n sin(n theta).

M_INIT = 0       # 0 until the first sample after a reset
M_FT = 1         # freq param value the coefficients follow
M_DECAY = 2      # decay scale held from the last control point
M_BRIGHT = 3     # brightness held from the last control point
M_SPARE = 4      # (spare; hardness is read at each strike)
M_PEND = 5       # pending strike velocity (< 0: none)
M_SR = 6         # sample rate
M_CP = 7         # control period
M_K = 8          # number of modes
M_DIRTY = 9      # 1: recompute radii (decay moved)
M_IN = 10        # 1: the input is connected
M_HDR = 12
# per-mode blocks of K values each, in this order after the header
MB_RATIO, MB_T60, MB_GAIN, MB_R, MB_CR, MB_CI, MB_GO, MB_GI, MB_ZR, MB_ZI = range(10)
MB_COUNT = 10
#: rows of the modal param block
MODAL_PARAMS = ("freq", "decay", "brightness", "hardness")
#: modes above this fraction of the sample rate are muted (they would alias)
MODAL_NYQ = 0.48


def modal_state(ratios, t60s, gains, sample_rate: float, connected: bool, control_period: int = 32):
    """State of a modal bank: ``ratios`` (> 0: times ``freq``; < 0: fixed Hz), T60s (s), gains."""
    K = len(ratios)
    state = np.zeros(M_HDR + MB_COUNT * K, dtype=np.float64)
    state[M_PEND] = -1.0
    state[M_SR] = float(sample_rate)
    state[M_CP] = float(max(int(control_period), 1))
    state[M_K] = float(K)
    state[M_DIRTY] = 1.0
    state[M_IN] = float(bool(connected))
    for b, vals in ((MB_RATIO, ratios), (MB_T60, t60s), (MB_GAIN, gains)):
        state[M_HDR + b * K:M_HDR + (b + 1) * K] = np.asarray(vals, dtype=np.float64)
    return state


@numba.njit(cache=True, nogil=True)
def _modal_update(state, f, radii):
    """New radii (when ``radii``), then angles and gains of every mode for base frequency ``f``."""
    K = np.int64(state[M_K])
    sr = state[M_SR]
    o = M_HDR
    scale = state[M_DECAY]
    if not scale >= 1e-3:
        scale = 1e-3
    tilt = -2.0 * (1.0 - _unit(state[M_BRIGHT]))  # 0 .. -12 dB per octave above freq
    for k in range(K):
        ratio = state[o + MB_RATIO * K + k]
        fk = ratio * f if ratio > 0.0 else -ratio
        if radii:
            t60 = state[o + MB_T60 * K + k] * scale
            if not t60 >= 1e-4:
                t60 = 1e-4
            state[o + MB_R * K + k] = math.exp(-LN1000 / (t60 * sr))
        r = state[o + MB_R * K + k]
        th = fk / sr
        go = state[o + MB_GAIN * K + k]
        if th >= MODAL_NYQ:
            th = MODAL_NYQ
            go = 0.0
        elif fk > f and tilt != 0.0:
            go *= math.exp(tilt * math.log(fk / f))
        s = sin2pi(th)
        c = sin2pi(th + 0.25)
        nrm = r / math.sqrt(s * s + c * c)  # |c| is exactly r: a fast sine never makes a mode grow
        state[o + MB_CR * K + k] = c * nrm
        state[o + MB_CI * K + k] = s * nrm
        state[o + MB_GO * K + k] = go
        state[o + MB_GI * K + k] = 2.0 * (1.0 - r) if go != 0.0 else 0.0


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _modal_run(y, i, j, x, xon, K, cr, ci, go, gi, zr, zi):
    """Samples ``i .. j-1`` of the bank with fixed coefficients."""
    for s in range(i, j):
        xi = np.float64(x[0, s]) if xon else 0.0
        acc = 0.0
        for k in range(K):
            a = zr[k]
            b = zi[k]
            nr = cr[k] * a - ci[k] * b + gi[k] * xi
            ni = ci[k] * a + cr[k] * b
            zr[k] = nr
            zi[k] = ni
            acc += go[k] * ni
        y[s] = acc


@numba.njit(cache=True, nogil=True)
def modal_kernel(y, n, t, x, par, state):
    """Modal resonator bank for ``n`` samples from absolute frame ``t``.

    Args:
        y: float32 ``(frames,)`` output.
        n: samples; t: absolute frame of the first (aligns the control grid).
        x: float32 ``(C, frames)`` input (row 0), fed to every mode when ``state[M_IN]``.
        par: float32 ``(4, >= n)``: freq (Hz, audio rate), then on the control
            grid decay (scale of every T60), brightness (0..1), hardness (0..1).
        state: float64 from :func:`modal_state`.
    """
    K = np.int64(state[M_K])
    o = M_HDR
    cr = state[o + MB_CR * K:o + (MB_CR + 1) * K]
    ci = state[o + MB_CI * K:o + (MB_CI + 1) * K]
    go = state[o + MB_GO * K:o + (MB_GO + 1) * K]
    gi = state[o + MB_GI * K:o + (MB_GI + 1) * K]
    zr = state[o + MB_ZR * K:o + (MB_ZR + 1) * K]
    zi = state[o + MB_ZI * K:o + (MB_ZI + 1) * K]
    sr = state[M_SR]
    xon = state[M_IN] != 0.0
    cp = np.int64(state[M_CP])
    ctr = (cp - t % cp) % cp
    freq = par[0]
    ft = np.float32(state[M_FT])
    i = 0
    while i < n:
        init = state[M_INIT] != 0.0
        if ctr == 0 or not init:
            if ctr == 0:
                ctr = cp
                for k in range(K):  # no subnormal tails (on the fixed grid)
                    if abs(zr[k]) < FLUSH and abs(zi[k]) < FLUSH:
                        zr[k] = 0.0
                        zi[k] = 0.0
            di = np.float64(par[1, i])
            bi = np.float64(par[2, i])
            if di != state[M_DECAY] or not init:
                state[M_DIRTY] = 1.0
            if bi != state[M_BRIGHT]:
                state[M_DIRTY] = 2.0 if state[M_DIRTY] == 0.0 else state[M_DIRTY]
            state[M_DECAY] = di
            state[M_BRIGHT] = bi
        fi = freq[i]
        if fi != ft or state[M_DIRTY] != 0.0 or not init:
            ft = fi
            state[M_FT] = fi
            f = np.float64(fi)
            if not f >= 1e-3:  # also NaN
                f = 1e-3
            _modal_update(state, f, state[M_DIRTY] == 1.0 or not init)
            state[M_DIRTY] = 0.0
            state[M_INIT] = 1.0
        vel = state[M_PEND]
        if vel >= 0.0:
            # a strike: an impulse into every mode, through the mallet's lowpass
            state[M_PEND] = -1.0
            fc = 250.0 * math.exp(math.log(2.0) * 7.0 * _unit(np.float64(par[3, i])))  # (at the strike)
            f = np.float64(ft) if ft >= 1e-3 else 1e-3
            for k in range(K):
                ratio = state[o + MB_RATIO * K + k]
                fk = ratio * f if ratio > 0.0 else -ratio
                u = fk / fc
                zr[k] += vel * math.exp(-u * u)
        j = i + ctr
        if j > n:
            j = n
        k = i + 1
        while k < j and freq[k] == ft:
            k += 1
        _modal_run(y, i, k, x, xon, K, cr, ci, go, gi, zr, zi)
        ctr -= k - i
        i = k


@numba.njit(cache=True, nogil=True)
def modal_batch(y, n, t, x, par, state):
    """:func:`modal_kernel` for each member v: ``y (V, 1, B)``, ``x (V, C, B)``, ``par (4, V, B)``."""
    for v in range(y.shape[0]):
        modal_kernel(y[v, 0], n, t, x[v], par[:, v], state[v])


# ----------------------------------------------------------------- waveguides
# A string or a bore (the same tuned loop as the string: integer delay,
# allpass, lossy lowpass) kept sounding by a nonlinear exciter:
#
# * bow (Smith, PASP "Bowed strings"; STK Bowed): the loop is split at the bow
#   into a neck side (to the rigid, inverting nut) and a bridge side (to the
#   lossy, inverting bridge). The string's velocity at the bow is the sum of
#   the two incoming waves; the bow-string velocity difference dv goes
#   through the friction table (|dv * slope| + 0.75)**-4 (<= 1), slope
#   5 - 4 * force, and dv * table(dv) is injected into both sides.
# * reed (Smith, PASP "Single-reed instruments"; STK Clarinet): a bore closed
#   at the reed and open (inverting) at the bell, so the loop is half a
#   period; the mouthpiece reflects the incoming pressure through the reed
#   table clamp(0.7 - slope * dp, -1, 1), dp = incoming - mouth pressure.
# * flute (a jet drive after Karjalainen et al. and Cook): an open pipe (the
#   loop is a whole period); the bore pressure at the embouchure, delayed
#   along the jet (``jet`` x the period), through a saturating jet curve and
#   scaled by the breath, is added into the loop. Its gain is normalised by
#   the loop's loss, so the tone starts and stays at the same level whatever
#   ``decay`` is. With the jet one period long the drive is in phase with the
#   fundamental (exact pitch); half a period overblows to the octave.
#
# Without excitation (after a release) each is the free loop: it rings down
# at its exact pitch with T60 ``decay``.

W_W = 0          # write position
W_INIT = 1       # 0 until the first sample after a reset
W_FT = 2         # freq param value the coefficients follow
W_DIRTY = 3      # 1: recompute the loop (a control param moved)
W_DECAY = 4      # control params held from the last control point: decay, brightness,
W_BRIGHT = 5     #   force, speed, bow position, breath, reed, jet, noise
W_FORCE = 6
W_SPEED = 7
W_BOW = 8
W_BREATH = 9
W_REED = 10
W_JET = 11
W_NOISE = 12
W_M = 13         # integer delay of the loop
W_MN = 14        # bow: integer delay, neck side (with the allpass)
W_MB = 15        # bow: integer delay, bridge side
W_ETA = 16
W_P = 17
W_G = 18
W_AX = 19
W_AY = 20
W_LY = 21
W_DY = 22        # DC blocker mean
W_ENV = 23       # excitation envelope (0..1), ramps to its target
W_ENVT = 24      # envelope target: 1 after a trigger, 0 after a release
W_VEL = 25       # velocity of the last trigger
W_SR = 26
W_CP = 27
W_MODEL = 28     # 0 bow, 1 reed, 2 flute
W_EXC = 29       # 1: the exciter input is connected
W_SEED = 30
W_NK = 31        # breath-noise counter
W_PERIOD = 32    # period in samples
W_DRIVE = 33     # flute: drive gain (1 - loop gain)
W_JD = 34        # flute: jet delay in samples
W_FMAX = 35
W_JR = 36        # flute: pole of the jet's DC blocker
W_JX = 37        # flute: the jet DC blocker's previous input
W_JY = 38        # flute: the jet DC blocker's previous output
W_A2 = 39        # Thiran allpass: a1 is W_ETA, then a2, a3
W_A3 = 40
W_X2 = 41        # Thiran allpass inputs x[n-2], x[n-3] (x[n-1] is W_AX)
W_X3 = 42
W_Y2 = 43        # Thiran allpass outputs y[n-2], y[n-3] (y[n-1] is W_AY)
W_Y3 = 44
W_OS = 45        # oversampling factor: the loop runs at W_OS x the output rate
W_SOS = 46       # decimation lowpass: 4 biquads (b0, b1, b2, a1, a2), then their 2 states each
WG_NSOS = 4
WG_STATE = W_SOS + 7 * WG_NSOS
WG_ROWS = 2
#: rows of the waveguide's param block
WG_PARAMS = ("freq", "decay", "brightness", "force", "speed", "bow", "breath", "reed", "jet", "noise")
WG_MODELS = ("bow", "reed", "flute")
#: seconds the excitation takes to come in (trigger) or go (release)
WG_RAMP = 0.02
#: flute: gain into the jet curve (the small-signal loop gain of the drive is
#: this x breath x the loop's loss: the tone speaks in a few tens of periods)
WG_JET_GAIN = 10.0
#: output scaling of each model (a nominal tone stays well inside -1..1)
WG_OUT = (1.0, 0.5, 0.6)
#: ``oversample: auto`` runs the loop at no less than this rate
WG_OS_RATE = 44000.0
WG_OS_MAX = 8


def wg_oversample(sample_rate: float, oversample="auto") -> int:
    """The factor the loop runs at: ``auto`` is the smallest one reaching :data:`WG_OS_RATE`."""
    if oversample in (None, "auto"):
        return int(min(max(math.ceil(WG_OS_RATE / float(sample_rate) - 1e-9), 1), WG_OS_MAX))
    k = int(oversample)
    if not 1 <= k <= WG_OS_MAX:
        raise ValueError(f"oversample must be auto or 1..{WG_OS_MAX}, not {oversample!r}")
    return k


def wg_decimator(os_factor: int):
    """Second-order sections of the decimation lowpass at ``os_factor`` x the output rate.

    An 8th-order elliptic filter: 0.1 dB ripple up to 0.4 x the output rate,
    70 dB down from its Nyquist frequency (0.5 x), so what the loop makes above
    the output band is gone before every ``os_factor``-th sample is kept.
    """
    from scipy import signal

    sos = signal.ellip(2 * WG_NSOS, 0.1, 70.0, 0.8 / os_factor, output="sos")
    return sos[:, [0, 1, 2, 4, 5]]


def wg_state(model: str, seed: int, sample_rate: float, fmax: float, exciter: bool, control_period: int = 32,
             oversample="auto"):
    """State and delay lines of a waveguide at output rate ``sample_rate``.

    The loop runs at ``oversample`` x that rate (``auto``: at least
    :data:`WG_OS_RATE`): a self-oscillating loop whose period is only a few
    tens of samples plays out of tune by up to ~20 cents at 16 kHz, as the
    friction junction's stick-slip switches on the sample grid; at 44 kHz and
    above it is within a few cents.
    """
    k = wg_oversample(sample_rate, oversample)
    state = np.zeros(WG_STATE, dtype=np.float64)
    state[W_OS] = float(k)
    if k > 1:
        state[W_SOS:W_SOS + 5 * WG_NSOS] = wg_decimator(k).ravel()
    state[W_FMAX] = min(float(fmax), float(sample_rate) / 8.0)
    sample_rate = float(sample_rate) * k
    state[W_SR] = float(sample_rate)
    state[W_CP] = float(max(int(control_period), 1))
    state[W_MODEL] = float(WG_MODELS.index(model))
    state[W_EXC] = float(bool(exciter))
    state[W_SEED] = float(int(seed) & 0xFFFFFFFF)
    state[W_VEL] = 1.0
    state[W_DIRTY] = 1.0
    buf = np.zeros((WG_ROWS, ring_size(sample_rate / STRING_FMIN)), dtype=np.float64)
    return state, buf


@numba.njit(cache=True, nogil=True)
def _wg_update(state, f, size):
    """Loop coefficients for frequency ``f`` and the held control params."""
    sr = state[W_SR]
    lo = sr / (size - 8)
    if lo < STRING_FMIN:
        lo = STRING_FMIN
    if not f >= lo:
        f = lo
    if f > state[W_FMAX]:
        f = state[W_FMAX]
    model = np.int64(state[W_MODEL])
    t60 = state[W_DECAY]
    if not t60 >= 1e-2:
        t60 = 1e-2
    frac = 0.5 if model == 1 else 1.0
    M, a1, a2, a3, p, g = wg_loop_coefs(f, t60, _unit(state[W_BRIGHT]), sr, frac)
    state[W_M] = M
    state[W_ETA] = a1
    state[W_A2] = a2
    state[W_A3] = a3
    state[W_P] = p
    state[W_G] = g
    P = sr / f
    state[W_PERIOD] = P
    if model == 0:
        # the bow splits the integer delay: bridge side ~ bow position x length
        b = _unit(state[W_BOW])
        mb = math.floor(b * M + 0.5)
        if mb < 1.0:
            mb = 1.0
        if mb > M - 1.0:
            mb = M - 1.0
        state[W_MB] = mb
        state[W_MN] = M - mb
    elif model == 2:
        # loss per period at f: the drive is scaled by it (level independent of decay)
        state[W_DRIVE] = 1.0 - math.exp(-LN1000 * P / (t60 * sr))
        # the jet sees the acoustic flow only: a DC blocker (corner f / 64) on its input,
        # whose phase lead at f is made up by a longer jet so the nominal jet stays in tune
        w = TWO_PI * f / sr
        R = 1.0 - w / 256.0
        lead = (0.5 * math.pi - 0.5 * w) - math.atan2(R * math.sin(w), 1.0 - R * math.cos(w))
        state[W_JR] = R
        jd = _unit(state[W_JET]) * P + lead / w
        if jd < 1.0:
            jd = 1.0
        if jd > size - 8:
            jd = size - 8
        state[W_JD] = jd
    state[W_INIT] = 1.0
    state[W_DIRTY] = 0.0


@numba.njit(cache=True, nogil=True, inline="always")
def _jet_curve(x):
    """Saturating jet: tanh's Pade form x (27 + x^2) / (27 + 9 x^2), exact +-1 beyond |x| = 3."""
    if x > 3.0:
        return 1.0
    if x < -3.0:
        return -1.0
    x2 = x * x
    return x * (27.0 + x2) / (27.0 + 9.0 * x2)


@numba.njit(cache=True, nogil=True, inline="always")
def _wg_ramp(env, target, step):
    """The excitation envelope one tick toward its target (a linear ramp)."""
    if env < target:
        return min(env + step, target)
    if env > target:
        return max(env - step, target)
    return env


@numba.njit(cache=True, nogil=True, inline="always")
def _wg_decimate(state, x, osf):
    """One loop tick through the decimation lowpass (biquads in transposed direct form II); as is at 1x."""
    if osf == 1:
        return x
    z = W_SOS + 5 * WG_NSOS
    for q in range(WG_NSOS):
        c = W_SOS + 5 * q
        s1 = state[z + 2 * q]
        s2 = state[z + 2 * q + 1]
        yq = state[c] * x + s1
        state[z + 2 * q] = state[c + 1] * x - state[c + 3] * yq + s2
        state[z + 2 * q + 1] = state[c + 2] * x - state[c + 4] * yq
        x = yq
    return x


@numba.njit(cache=True, nogil=True, inline="always")
def _wg_out(state, buf, w, v, dy, rdc, cdc, gout, mask, osf):
    """The end of a one-rail tick (reed, flute): ``v`` (denormals flushed) into the loop at ``w``, its
    DC-blocked output, decimated; returns ``(output, DC state, next w)``."""
    if abs(v) < FLUSH:
        v = 0.0
    buf[0, w] = v
    dy = rdc * dy + cdc * v
    o = gout * (v - dy)
    return _wg_decimate(state, o, osf), dy, (w + 1) & mask


@numba.njit(cache=True, nogil=True)
def wg_kernel(y, n, t, exc, par, state, buf):
    """Bowed string / reed / flute waveguide for ``n`` samples from absolute frame ``t``.

    Args:
        y: float32 ``(frames,)`` output.
        exc: float32 ``(C, frames)`` exciter: added to the bow velocity (bow)
            or the mouth pressure (reed, flute) when ``state[W_EXC]``; held
            over the ``state[W_OS]`` loop ticks of each output sample.
        par: float32 ``(10, >= n)`` in :data:`WG_PARAMS` order; freq at audio
            rate, the others read on the control grid.
        state: float64 ``(WG_STATE,)``; buf: float64 ``(2, size)`` (bow: neck
            and bridge sides; reed: the bore; flute: the bore and the jet).

    With ``state[W_OS] = k > 1`` each output sample is ``k`` ticks of the
    loop at ``k`` x the rate, each through the decimation lowpass, of which
    the last is kept; the control grid stays on output samples.
    """
    size = buf.shape[1]
    mask = size - 1
    sr = state[W_SR]
    model = np.int64(state[W_MODEL])
    exc_on = state[W_EXC] != 0.0
    cp = np.int64(state[W_CP])
    ctr = (cp - t % cp) % cp
    freq = par[0]
    ft = np.float32(state[W_FT])
    w = np.int64(state[W_W])
    x1 = state[W_AX]
    x2 = state[W_X2]
    x3 = state[W_X3]
    y1 = state[W_AY]
    y2 = state[W_Y2]
    y3 = state[W_Y3]
    ly = state[W_LY]
    dy = state[W_DY]
    env = state[W_ENV]
    nk = np.uint64(np.int64(state[W_NK]))
    key = np.uint64(np.int64(state[W_SEED])) * np.uint64(0x9E3779B97F4A7C15)
    step = 1.0 / (WG_RAMP * sr)
    rdc = 1.0 - TWO_PI * DC_HZ / sr
    cdc = 1.0 - rdc
    gout = WG_OUT[0] if model == 0 else (WG_OUT[1] if model == 1 else WG_OUT[2])
    osf = np.int64(state[W_OS])
    o = 0.0
    i = 0
    while i < n:
        init = state[W_INIT] != 0.0
        if ctr == 0 or not init:
            if ctr == 0:
                ctr = cp
                if abs(dy) < FLUSH:
                    dy = 0.0
                if osf > 1:
                    for q in range(W_SOS + 5 * WG_NSOS, WG_STATE):
                        if abs(state[q]) < FLUSH:
                            state[q] = 0.0
            for q in range(1, 10):
                v = np.float64(par[q, i])
                if v != state[W_DECAY + q - 1]:
                    state[W_DECAY + q - 1] = v
                    state[W_DIRTY] = 1.0
        fi = freq[i]
        if fi != ft or state[W_DIRTY] != 0.0 or not init:
            ft = fi
            state[W_FT] = fi
            _wg_update(state, np.float64(fi), size)
        M = np.int64(state[W_M])
        a1 = state[W_ETA]
        a2 = state[W_A2]
        a3 = state[W_A3]
        p = state[W_P]
        g = state[W_G]
        b0 = g * (1.0 - p)
        target = state[W_ENVT]
        vel = state[W_VEL]
        j = i + ctr
        if j > n:
            j = n
        k = i
        if model == 0:
            mn = np.int64(state[W_MN])
            mb = np.int64(state[W_MB])
            slope = 5.0 - 4.0 * _unit(state[W_FORCE])
            vmax = (0.03 + 0.22 * _unit(state[W_SPEED])) * vel
            while True:
                for _o in range(osf):
                    env = _wg_ramp(env, target, step)
                    r = buf[0, (w - mn) & mask]  # neck side, through the allpass
                    a = a3 * r + a2 * x1 + a1 * x2 + x3 - a1 * y1 - a2 * y2 - a3 * y3  # Thiran allpass
                    x1, x2, x3, y1, y2, y3 = r, x1, x2, a, y1, y2
                    ly = p * ly + b0 * buf[1, (w - mb) & mask]  # bridge side, through the loss filter
                    nut = -a
                    bridge = -ly
                    vb = vmax * env
                    if exc_on:
                        vb += np.float64(exc[0, k])
                    dv = vb - (nut + bridge)
                    x = abs(dv * slope) + 0.75
                    x = x * x
                    fr = 1.0 / (x * x)
                    if fr > 1.0:
                        fr = 1.0
                    new = dv * fr * env
                    u = bridge + new
                    v = nut + new
                    if abs(u) < FLUSH:
                        u = 0.0
                    if abs(v) < FLUSH:
                        v = 0.0
                    buf[0, w] = u
                    buf[1, w] = v
                    dy = rdc * dy + cdc * ly
                    o = gout * (ly - dy)
                    w = (w + 1) & mask
                    o = _wg_decimate(state, o, osf)
                y[k] = o
                k += 1
                if k >= j or freq[k] != ft:
                    break
        elif model == 1:
            offset = 0.7
            rslope = -(0.1 + 0.4 * _unit(state[W_REED]))
            breath = _unit(state[W_BREATH]) * vel
            ng = 0.2 * _unit(state[W_NOISE])
            while True:
                for _o in range(osf):
                    env = _wg_ramp(env, target, step)
                    r = buf[0, (w - M) & mask]
                    a = a3 * r + a2 * x1 + a1 * x2 + x3 - a1 * y1 - a2 * y2 - a3 * y3  # Thiran allpass
                    x1, x2, x3, y1, y2, y3 = r, x1, x2, a, y1, y2
                    ly = p * ly + b0 * a
                    bell = -ly  # the open end inverts
                    pm = breath * env
                    if ng > 0.0:
                        pm *= 1.0 + ng * _unit_noise(key + nk)
                        nk += np.uint64(1)
                    if exc_on:
                        pm += np.float64(exc[0, k])
                    dp = bell - pm
                    refl = offset + rslope * dp
                    if refl > 1.0:
                        refl = 1.0
                    if refl < -1.0:
                        refl = -1.0
                    v = pm + dp * refl
                    o, dy, w = _wg_out(state, buf, w, v, dy, rdc, cdc, gout, mask, osf)
                y[k] = o
                k += 1
                if k >= j or freq[k] != ft:
                    break
        else:
            drive = state[W_DRIVE]
            jr = state[W_JR]
            jx = state[W_JX]
            jy = state[W_JY]
            jd = state[W_JD]
            jm = np.int64(jd)
            jf = jd - jm
            breath = _unit(state[W_BREATH]) * vel
            ng = 0.3 * _unit(state[W_NOISE]) + 0.001  # (a little turbulence always: it starts the tone)
            while True:
                for _o in range(osf):
                    env = _wg_ramp(env, target, step)
                    r = buf[0, (w - M) & mask]
                    a = a3 * r + a2 * x1 + a1 * x2 + x3 - a1 * y1 - a2 * y2 - a3 * y3  # Thiran allpass
                    x1, x2, x3, y1, y2, y3 = r, x1, x2, a, y1, y2
                    ly = p * ly + b0 * a
                    jy = (ly - jx) + jr * jy  # the acoustic flow at the embouchure (no DC)...
                    jx = ly
                    buf[1, w] = jy  # ...travels along the jet
                    s0 = buf[1, (w - jm) & mask]
                    s = s0 + jf * (buf[1, (w - jm - 1) & mask] - s0)
                    pm = breath * env
                    if exc_on:
                        pm += np.float64(exc[0, k])
                    jet = -_jet_curve(WG_JET_GAIN * s)  # half a period late and inverted: in phase
                    if pm != 0.0:
                        jet += ng * _unit_noise(key + nk)
                        nk += np.uint64(1)
                    v = ly + drive * pm * jet
                    o, dy, w = _wg_out(state, buf, w, v, dy, rdc, cdc, gout, mask, osf)
                y[k] = o
                k += 1
                if k >= j or freq[k] != ft:
                    break
            state[W_JX] = jx
            state[W_JY] = jy
        ctr -= k - i
        i = k
    state[W_W] = w
    state[W_AX] = x1
    state[W_X2] = x2
    state[W_X3] = x3
    state[W_AY] = y1
    state[W_Y2] = y2
    state[W_Y3] = y3
    state[W_LY] = ly
    state[W_DY] = dy
    state[W_ENV] = env
    state[W_NK] = np.float64(np.int64(nk))


@numba.njit(cache=True, nogil=True)
def wg_batch(y, n, t, exc, par, state, buf):
    """:func:`wg_kernel` for each member v: ``y (V, 1, B)``, ``exc (V, C, B)``, ``par (10, V, B)``."""
    for v in range(y.shape[0]):
        wg_kernel(y[v, 0], n, t, exc[v], par[:, v], state[v], buf[v])
