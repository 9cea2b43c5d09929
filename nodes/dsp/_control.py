"""Kernels (numba) of the control nodes: ramp, sample & hold, slew, quantize,
clock, sequencer, unit conversions, math and the expression interpreter.

Every kernel renders one node for ``n`` samples. Whatever survives a block
lives in an explicit float64 ``state`` array passed in, so rendering N
samples in one call is bit-identical to any split into consecutive chunks.

**Timing convention** (clock, sequencer, sample & hold at a rate): a
running position is taken at the *middle* of each sample, ``(i + 0.5) *
inc``, and an event fires on the sample whose middle first passes its time.
So the k-th tick of a clock with a period of ``P`` samples lands on sample
``round(k * P)``: the nearest sample to its exact time, as a score event
does. The position is kept as a fraction (the whole part is carried off at
each tick), so it never loses precision, however long the piece.

Triggers and gates read as on while ``> 0.5``; a rising edge is a sample
that is on after one that was off.
"""
from __future__ import annotations

import numba
import numpy as np

#: Largest magnitude the math node and the expression language let through
#: (anything bigger, and inf, is clamped; NaN becomes 0).
BIG = 1e30
#: Smallest divisor magnitude; a division by less gives 0.
TINY = 1e-30
#: Floor of log()/amp_to_db inputs.
LOG_FLOOR = 1e-30


@numba.njit(cache=True, nogil=True, inline="always")
def _fin(x):
    """NaN -> 0, clamp to +-BIG (also inf)."""
    if not x == x:
        return 0.0
    if x > BIG:
        return BIG
    if x < -BIG:
        return -BIG
    return x


# ---------------------------------------------------------------- ramp
#: ``[progress u (0..1), running (0 idle / 1 running / 2 done), last trig, pending trigger]``
RAMP_STATE_SIZE = 4


@numba.njit(cache=True, nogil=True)
def ramp_kernel(out, n, trig, start, end, time, sr, exp_curve, state):
    """A ramp from ``start`` to ``end`` over ``time`` seconds after each trigger.

    Before the first trigger the output is ``start``; on the trigger's
    sample it is ``start``; ``time * sr`` samples later exactly ``end``,
    where it holds (following ``end`` if it moves). ``exp_curve``: equal
    ratios per sample (a pitch sweep) when start and end have the same sign,
    else straight.
    """
    u = state[0]
    run = state[1]
    last = state[2] > 0.5
    pend = state[3] > 0.5
    for i in range(n):
        ns = np.float64(time[i]) * sr
        if not ns > 0.0:
            ns = 0.0
        if run == 1.0:
            if ns < 0.5:
                u = 1.0
            else:
                u += 1.0 / ns
                if u >= 1.0 - 0.5 / ns:
                    u = 1.0
            if u >= 1.0:
                run = 2.0
        g = trig[i] > 0.5
        if (g and not last) or pend:
            pend = False
            u = 0.0
            run = 1.0
            if ns < 0.5:
                u = 1.0
                run = 2.0
        last = g
        a = np.float64(start[i])
        b = np.float64(end[i])
        if u >= 1.0:
            y = b
        elif u <= 0.0:
            y = a
        elif exp_curve and a * b > 0.0:
            y = a * np.exp(np.log(b / a) * u)
        else:
            y = a + (b - a) * u
        out[i] = y
    state[0] = u
    state[1] = run
    state[2] = 1.0 if last else 0.0
    state[3] = 1.0 if pend else 0.0


# ---------------------------------------------------------------- sample & hold
@numba.njit(cache=True, nogil=True)
def sh_kernel(out, n, x, trig, use_trig, rate, sr, state):
    """Sample ``x`` on each rising edge of ``trig`` (or ``rate`` times a second); hold.

    Args:
        out: float32 ``(C, >= n)``; x: float32 ``(Cx, >= n)`` (channel ``c``
            reads ``min(c, Cx - 1)``); trig: float32 ``(1, >= n)``.
        use_trig: sample on trig edges (else at ``rate`` Hz, the k-th sample
            taken on sample ``round(k * sr / rate)``, the first at 0).
        state: float64 ``[fresh, last trig, phase, held value per channel...]``.
    """
    C = out.shape[0]
    cx = x.shape[0]
    fresh = state[0] > 0.5
    last = state[1] > 0.5
    ph = state[2]
    for i in range(n):
        take = False
        if use_trig:
            g = trig[0, i] > 0.5
            take = g and not last
            last = g
        else:
            r = np.float64(rate[i])
            inc = r / sr if r > 0.0 else 0.0
            if fresh:
                fresh = False
                take = True
                ph = 0.5 * inc
            else:
                ph += inc
                if ph >= 1.0:
                    take = True
                    ph -= np.floor(ph)
            if ph >= 1.0 or not ph >= 0.0:
                ph = 0.0
        for c in range(C):
            if take:
                state[3 + c] = x[min(c, cx - 1), i]
            out[c, i] = state[3 + c]
    state[0] = 1.0 if fresh else 0.0
    state[1] = 1.0 if last else 0.0
    state[2] = ph


# ---------------------------------------------------------------- slew
@numba.njit(cache=True, nogil=True)
def slew_kernel(out, n, x, rise, fall, sr, exp_mode, state):
    """Slew limiter / lag with separate rise and fall times.

    Linear (``exp_mode`` False): the output moves at most ``1 / (rise * sr)``
    per sample upward and ``1 / (fall * sr)`` downward (a full 0 -> 1 swing
    takes ``rise`` seconds; the step that lands within half a step of the
    input snaps onto it). Exponential: a one-pole lag that covers all but
    1e-3 (-60 dB) of a step in ``rise`` (or ``fall``) seconds. A time of 0
    passes the input through. The first sample starts at the input (no glide
    up from 0).

    state: float64 ``[started, y per channel...]``.
    """
    C = out.shape[0]
    cx = x.shape[0]
    started = state[0] > 0.5
    lr = np.nan
    lf = np.nan
    kr = 0.0
    kf = 0.0
    for i in range(n):
        r = np.float64(rise[i])
        f = np.float64(fall[i])
        if r != lr:
            lr = r
            nr = r * sr
            if exp_mode:
                kr = np.exp(np.log(1e-3) / nr) if nr > 1e-9 else 0.0
            else:
                kr = 1.0 / nr if nr > 1e-9 else np.inf
        if f != lf:
            lf = f
            nf = f * sr
            if exp_mode:
                kf = np.exp(np.log(1e-3) / nf) if nf > 1e-9 else 0.0
            else:
                kf = 1.0 / nf if nf > 1e-9 else np.inf
        for c in range(C):
            xi = np.float64(x[min(c, cx - 1), i])
            y = state[1 + c]
            if not started:
                y = xi
            elif exp_mode:
                k = kr if xi > y else kf
                y = xi + (y - xi) * k
            else:
                # the step that lands within half a step of the input arrives (as the
                # adsr's attack does), so float32 times still arrive on their sample
                if xi > y:
                    y = xi if xi - y <= 1.5 * kr else y + kr
                else:
                    y = xi if y - xi <= 1.5 * kf else y - kf
            state[1 + c] = y
            out[c, i] = y
        started = True
    state[0] = 1.0 if started else 0.0


# ---------------------------------------------------------------- quantize
UNIT_HZ = 0
UNIT_SEMITONES = 1
UNIT_MIDI = 2


@numba.njit(cache=True, nogil=True, inline="always")
def _nearest(m, degrees):
    """The scale note nearest ``m`` (semitones above the root; ties go down).

    ``degrees``: sorted pitch classes in [0, 12).
    """
    o = np.floor(m / 12.0)
    pc = m - 12.0 * o
    best = degrees[degrees.shape[0] - 1] - 12.0  # the top degree an octave down
    bd = abs(pc - best)
    for k in range(degrees.shape[0] + 1):
        d = degrees[k] if k < degrees.shape[0] else degrees[0] + 12.0
        dist = abs(pc - d)
        if dist < bd:
            bd = dist
            best = d
    return 12.0 * o + best


@numba.njit(cache=True, nogil=True)
def quantize_kernel(out, n, x, unit, degrees, root, a4):
    """Snap each sample to the nearest note of the scale, in the input's unit.

    Args:
        unit: :data:`UNIT_HZ` (0 Hz or less gives 0), :data:`UNIT_SEMITONES`
            (semitones above the root) or :data:`UNIT_MIDI`.
        degrees: float64 sorted pitch classes in [0, 12) above the root.
        root: the root's pitch class (C = 0, ..., B = 11).
        a4: tuning of A4 in Hz (hz unit only).
    """
    C = out.shape[0]
    cx = x.shape[0]
    for c in range(C):
        row = x[min(c, cx - 1)]
        for i in range(n):
            v = np.float64(row[i])
            if unit == UNIT_HZ:
                if not v > 0.0:
                    out[c, i] = 0.0
                    continue
                m = 69.0 + 12.0 * np.log2(v / a4) - root
                q = _nearest(m, degrees)
                out[c, i] = a4 * np.exp2((q + root - 69.0) / 12.0)
            elif unit == UNIT_SEMITONES:
                out[c, i] = _nearest(v, degrees)
            else:
                out[c, i] = _nearest(v - root, degrees) + root


# ---------------------------------------------------------------- clock
#: ``[fresh, position in the current pair of ticks (0..2, in ticks)]``
CLOCK_STATE_SIZE = 2


@numba.njit(cache=True, nogil=True)
def clock_kernel(trig, gate, n, bpm, swing, duty, division, sr, state):
    """A tempo clock: ``division`` ticks per beat, odd ticks delayed by ``swing``.

    Tick ``k`` (straight, constant tempo) lands on sample
    ``round(k * 60 / bpm / division * sr)``, tick 0 on sample 0; with swing
    ``s`` an odd tick lands ``s`` ticks late. ``trig`` is 1.0 on a tick's
    sample, else 0; ``gate`` is 1.0 for the first ``duty`` of each tick's
    interval.

    Args:
        trig, gate: float32 1-D outputs.
        bpm, swing, duty: float32 ``(>= n,)`` params.
        division: ticks per beat (> 0).
        state: float64 ``[fresh, pair position]``; ``fresh = 1`` restarts
            with a tick on the next sample.
    """
    fresh = state[0] > 0.5
    pp = state[1]
    k = division / (60.0 * sr)
    for i in range(n):
        b = np.float64(bpm[i])
        inc = b * k if b > 0.0 else 0.0
        s = np.float64(swing[i])
        if not s >= 0.0:
            s = 0.0
        if s > 0.9:
            s = 0.9
        tick = False
        if fresh:
            fresh = False
            pp = 0.5 * inc
            tick = True
        else:
            old = pp
            pp += inc
            if pp >= 2.0:
                pp -= 2.0 * np.floor(pp / 2.0)
                tick = True
            elif old < 1.0 + s <= pp:
                tick = True
        if pp < 1.0 + s:
            local = pp / (1.0 + s)
        else:
            local = (pp - 1.0 - s) / (1.0 - s)
        trig[i] = 1.0 if tick else 0.0
        gate[i] = 1.0 if local < duty[i] else 0.0
    state[0] = 1.0 if fresh else 0.0
    state[1] = pp


# ---------------------------------------------------------------- sequencer
#: state layout of :func:`seq_kernel`
SEQ_STATE_SIZE = 12
_S_FRESH = 0  # 1 until the first step starts
_S_POS = 1  # beats since the step started (bpm mode)
_S_STEP = 2
_S_DONE = 3  # not looping and past the last step
_S_PITCH = 4  # Hz of the last sounding step
_S_LASTC = 5  # last clock input (clocked mode)
_S_TICKS = 6  # clock ticks since the step started
_S_SINCE_EDGE = 7  # samples since the last clock edge
_S_PERIOD = 8  # measured samples between clock edges (0: not yet)
_S_SINCE_STEP = 9  # samples since the step started (clocked mode)
_S_GATELEN = 10  # gate length of the current step in samples (clocked mode)


@numba.njit(cache=True, nogil=True)
def seq_kernel(pitch, gate, trig, step_out, n, clock, clocked, bpm, transpose, pitches, gates, durs, ticks,
               loop, division, sr, state):
    """A step sequencer.

    Args:
        pitch, gate, trig, step_out: float32 1-D outputs (Hz, 0/1, pulse, index).
        clock: float32 ``(1, >= n)``; with ``clocked``, each rising edge is a
            tick and step ``j`` lasts ``ticks[j]`` ticks (the first edge
            starts step 0); else step ``j`` lasts ``durs[j]`` beats at
            ``bpm`` and step 0 starts on sample 0.
        pitches: float64 Hz per step, NaN for a rest.
        gates: float64 gate length per step as a fraction of the step (0..1;
            1 holds into the next step: a tie).
        durs: float64 beats per step (> 0); ticks: float64 clock ticks per step.
        loop: start over after the last step (else stop, gate low).
        division: clock ticks per beat (the clock's period before two edges
            have been measured).
    """
    N = pitches.shape[0]
    fresh = state[_S_FRESH] > 0.5
    pos = state[_S_POS]
    step = np.int64(state[_S_STEP])
    done = state[_S_DONE] > 0.5
    cur = state[_S_PITCH]
    lastc = state[_S_LASTC] > 0.5
    nt = state[_S_TICKS]
    since_edge = state[_S_SINCE_EDGE]
    period = state[_S_PERIOD]
    since_step = state[_S_SINCE_STEP]
    glen = state[_S_GATELEN]
    for i in range(n):
        b = np.float64(bpm[i])
        inc = b / (60.0 * sr) if b > 0.0 else 0.0
        started = False
        if clocked:
            c = clock[0, i] > 0.5
            edge = c and not lastc
            lastc = c
            since_edge += 1.0
            since_step += 1.0
            if edge:
                if fresh:
                    fresh = False
                    step = 0
                    nt = 0.0
                    started = True
                else:
                    period = since_edge
                    nt += 1.0
                    if not done and nt >= ticks[step]:
                        nt = 0.0
                        if step + 1 < N:
                            step += 1
                            started = True
                        elif loop:
                            step = 0
                            started = True
                        else:
                            done = True
                since_edge = 0.0
            if started:
                since_step = 0.0
                per = period if period > 0.0 else (1.0 / (inc * division) if inc > 0.0 else 0.0)
                g = gates[step]
                glen = np.inf if g >= 1.0 else g * ticks[step] * per
            on = (not fresh) and (not done) and since_step < glen
        else:
            if fresh:
                fresh = False
                step = 0
                pos = 0.5 * inc
                started = True
            elif not done:
                pos += inc
                guard = 0
                while pos >= durs[step] and not done:
                    pos -= durs[step]
                    if step + 1 < N:
                        step += 1
                        started = True
                    elif loop:
                        step = 0
                        started = True
                    else:
                        done = True
                    guard += 1
                    if guard > 4 * N + 4:  # steps far shorter than a sample: give up catching up
                        pos = 0.0
            g = gates[step]
            on = (not done) and (g >= 1.0 or pos < g * durs[step])
        p = pitches[step]
        sounding = p == p and gates[step] > 0.0
        if started and sounding:
            cur = p
        trig[i] = 1.0 if started and sounding and not done else 0.0
        gate[i] = 1.0 if on and sounding else 0.0
        pitch[i] = cur * np.exp2(np.float64(transpose[i]) / 12.0)
        step_out[i] = step
    state[_S_FRESH] = 1.0 if fresh else 0.0
    state[_S_POS] = pos
    state[_S_STEP] = step
    state[_S_DONE] = 1.0 if done else 0.0
    state[_S_PITCH] = cur
    state[_S_LASTC] = 1.0 if lastc else 0.0
    state[_S_TICKS] = nt
    state[_S_SINCE_EDGE] = since_edge
    state[_S_PERIOD] = period
    state[_S_SINCE_STEP] = since_step
    state[_S_GATELEN] = glen


# ---------------------------------------------------------------- conversions
CONV_MIDI_TO_HZ = 0
CONV_HZ_TO_MIDI = 1
CONV_DB_TO_AMP = 2
CONV_AMP_TO_DB = 3


@numba.njit(cache=True, nogil=True)
def conv_kernel(out, n, x, op, a4, floor_db):
    """Unit conversions, sample by sample, with clamped inputs (never inf/NaN).

    midi_to_hz: ``a4 * 2 ** ((m - 69) / 12)``, m clamped to [-256, 256];
    hz_to_midi: ``69 + 12 log2(f / a4)``, f floored at 1e-3 Hz;
    db_to_amp: ``10 ** (dB / 20)``, dB clamped to [-1000, 400];
    amp_to_db: ``20 log10(|x|)``, never below ``floor_db``.
    """
    C = out.shape[0]
    cx = x.shape[0]
    floor_amp = 10.0 ** (floor_db / 20.0)
    for c in range(C):
        row = x[min(c, cx - 1)]
        for i in range(n):
            v = np.float64(row[i])
            if op == CONV_MIDI_TO_HZ:
                v = min(max(v, -256.0), 256.0)
                y = a4 * np.exp2((v - 69.0) / 12.0)
            elif op == CONV_HZ_TO_MIDI:
                y = 69.0 + 12.0 * np.log2(max(v, 1e-3) / a4)
            elif op == CONV_DB_TO_AMP:
                v = min(max(v, -1000.0), 400.0)
                y = np.exp(v * (np.log(10.0) / 20.0))
            else:
                y = 20.0 * np.log10(max(abs(v), floor_amp))
            out[c, i] = y


# ---------------------------------------------------------------- math ops
OP_ADD = 0
OP_SUB = 1
OP_MUL = 2
OP_DIV = 3
OP_MIN = 4
OP_MAX = 5
OP_CLIP = 6
OP_ABS = 7
OP_NEG = 8
MATH_OPS = ("add", "subtract", "multiply", "divide", "min", "max", "clip", "abs", "neg")


@numba.njit(cache=True, nogil=True)
def math_kernel(out, n, a, b, op, lo, hi):
    """``out = a OP b`` per sample and channel (``clip``: a between lo and hi).

    A division by less than :data:`TINY` gives 0; results are clamped to
    +-:data:`BIG` and NaN becomes 0, so the output is always finite.
    """
    C = out.shape[0]
    ca = a.shape[0]
    cb = b.shape[0]
    for c in range(C):
        ra = a[min(c, ca - 1)]
        rb = b[min(c, cb - 1)]
        for i in range(n):
            x = np.float64(ra[i])
            y = np.float64(rb[i])
            if op == OP_ADD:
                r = x + y
            elif op == OP_SUB:
                r = x - y
            elif op == OP_MUL:
                r = x * y
            elif op == OP_DIV:
                r = x / y if abs(y) > TINY else 0.0
            elif op == OP_MIN:
                r = min(x, y)
            elif op == OP_MAX:
                r = max(x, y)
            elif op == OP_CLIP:
                l = np.float64(lo[i])
                h = np.float64(hi[i])
                if l > h:
                    l, h = h, l
                r = min(max(x, l), h)
            elif op == OP_ABS:
                r = abs(x)
            else:
                r = -x
            out[c, i] = _fin(r)


# ---------------------------------------------------------------- expressions
# A compiled expression (nodes/dsp/expr.py) is a register program: row k of
# ``prog`` is ``[opcode, dst, x, y, z]`` (register numbers), ``consts[k]`` the
# value of a CONST. Registers 0..4 hold the inputs a, b, c, d and the time t
# (seconds); the program writes the result into register ``prog[-1, 1]``.
# :func:`expr_run` executes it instruction by instruction, each over the
# whole block: vectorised, with no allocation (the registers are a float64
# pool sized when the expression is compiled). Every result passes through
# :func:`_fin`, so no instruction can hand NaN or inf to the next.
E_CONST = 0
E_NEG = 1
E_ADD = 2
E_SUB = 3
E_MUL = 4
E_DIV = 5
E_MOD = 6
E_POW = 7
E_LT = 8
E_LE = 9
E_GT = 10
E_GE = 11
E_EQ = 12
E_NE = 13
E_MIN = 14
E_MAX = 15
E_SIN = 16
E_COS = 17
E_TAN = 18
E_TANH = 19
E_EXP = 20
E_LOG = 21
E_LOG2 = 22
E_LOG10 = 23
E_SQRT = 24
E_ABS = 25
E_FLOOR = 26
E_CEIL = 27
E_ROUND = 28
E_SIGN = 29
E_FRAC = 30
E_ATAN = 31
E_ATAN2 = 32
E_CLIP = 33
E_MIX = 34
E_IF = 35
E_MTOF = 36
E_FTOM = 37
E_DBAMP = 38
E_AMPDB = 39
E_HYPOT = 40
E_SINH = 41
E_COSH = 42
E_ASIN = 43
E_ACOS = 44
E_COPY = 45
#: registers of the inputs and of the time
R_A, R_B, R_C, R_D, R_T = 0, 1, 2, 3, 4
N_INPUT_REGS = 5


@numba.njit(cache=True, nogil=True, inline="always")
def _op1(op, x):
    if op == E_NEG:
        return -x
    if op == E_SIN:
        return np.sin(x)
    if op == E_COS:
        return np.cos(x)
    if op == E_TAN:
        return np.tan(x)
    if op == E_TANH:
        return np.tanh(x)
    if op == E_EXP:
        return np.exp(min(x, 700.0))
    if op == E_LOG:
        return np.log(max(x, LOG_FLOOR))
    if op == E_LOG2:
        return np.log2(max(x, LOG_FLOOR))
    if op == E_LOG10:
        return np.log10(max(x, LOG_FLOOR))
    if op == E_SQRT:
        return np.sqrt(max(x, 0.0))
    if op == E_ABS:
        return abs(x)
    if op == E_FLOOR:
        return np.floor(x)
    if op == E_CEIL:
        return np.ceil(x)
    if op == E_ROUND:
        return np.floor(x + 0.5)
    if op == E_SIGN:
        return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)
    if op == E_FRAC:
        return x - np.floor(x)
    if op == E_ATAN:
        return np.arctan(x)
    if op == E_MTOF:
        return 440.0 * np.exp2((min(max(x, -256.0), 256.0) - 69.0) / 12.0)
    if op == E_FTOM:
        return 69.0 + 12.0 * np.log2(max(x, 1e-3) / 440.0)
    if op == E_DBAMP:
        return np.exp(min(max(x, -1000.0), 400.0) * (np.log(10.0) / 20.0))
    if op == E_AMPDB:
        return 20.0 * np.log10(max(abs(x), LOG_FLOOR))
    if op == E_SINH:
        return np.sinh(min(max(x, -700.0), 700.0))
    if op == E_COSH:
        return np.cosh(min(max(x, -700.0), 700.0))
    if op == E_ASIN:
        return np.arcsin(min(max(x, -1.0), 1.0))
    if op == E_ACOS:
        return np.arccos(min(max(x, -1.0), 1.0))
    return x  # E_COPY


@numba.njit(cache=True, nogil=True, inline="always")
def _op2(op, x, y):
    if op == E_ADD:
        return x + y
    if op == E_SUB:
        return x - y
    if op == E_MUL:
        return x * y
    if op == E_DIV:
        return x / y if abs(y) > TINY else 0.0
    if op == E_MOD:
        return x - y * np.floor(x / y) if abs(y) > TINY else 0.0
    if op == E_POW:
        if x == 0.0 and y < 0.0:
            return 0.0  # 0 ** negative: 0 rather than infinity
        return x ** y  # a negative base with a fractional exponent is NaN: 0 after _fin
    if op == E_LT:
        return 1.0 if x < y else 0.0
    if op == E_LE:
        return 1.0 if x <= y else 0.0
    if op == E_GT:
        return 1.0 if x > y else 0.0
    if op == E_GE:
        return 1.0 if x >= y else 0.0
    if op == E_EQ:
        return 1.0 if x == y else 0.0
    if op == E_NE:
        return 1.0 if x != y else 0.0
    if op == E_MIN:
        return min(x, y)
    if op == E_MAX:
        return max(x, y)
    if op == E_ATAN2:
        return np.arctan2(x, y)
    return np.hypot(x, y)  # E_HYPOT


@numba.njit(cache=True, nogil=True, inline="always")
def _op3(op, x, y, z):
    if op == E_CLIP:
        lo = min(y, z)
        hi = max(y, z)
        return min(max(x, lo), hi)
    if op == E_MIX:
        return x + (y - x) * z
    return y if x != 0.0 else z  # E_IF


@numba.njit(cache=True, nogil=True)
def expr_run(prog, consts, regs, n):
    """Run a register program over ``n`` samples of ``regs`` (float64 ``(R, >= n)``)."""
    for k in range(prog.shape[0]):
        op = prog[k, 0]
        d = regs[prog[k, 1]]
        if op == E_CONST:
            v = consts[k]
            for i in range(n):
                d[i] = v
        elif op == E_NEG or (E_SIN <= op <= E_FRAC) or op == E_ATAN or (E_MTOF <= op <= E_AMPDB) \
                or (E_SINH <= op <= E_COPY):
            x = regs[prog[k, 2]]
            for i in range(n):
                d[i] = _fin(_op1(op, x[i]))
        elif op >= E_CLIP and op <= E_IF:
            x = regs[prog[k, 2]]
            y = regs[prog[k, 3]]
            z = regs[prog[k, 4]]
            for i in range(n):
                d[i] = _fin(_op3(op, x[i], y[i], z[i]))
        else:
            x = regs[prog[k, 2]]
            y = regs[prog[k, 3]]
            for i in range(n):
                d[i] = _fin(_op2(op, x[i], y[i]))


@numba.njit(cache=True, nogil=True)
def expr_kernel(out, n, a, b, c, d, t0, sr, prog, consts, regs):
    """Evaluate a compiled expression for each output channel over ``n`` samples.

    ``a..d``: float32 ``(channels, >= n)`` inputs (channel ``ch`` reads row
    ``min(ch, rows - 1)``); ``t0``: the absolute frame of the first sample
    (``t`` is ``(t0 + i) / sr`` seconds).
    """
    C = out.shape[0]
    res = prog[prog.shape[0] - 1, 1]
    for ch in range(C):
        ra = a[min(ch, a.shape[0] - 1)]
        rb = b[min(ch, b.shape[0] - 1)]
        rc = c[min(ch, c.shape[0] - 1)]
        rd = d[min(ch, d.shape[0] - 1)]
        for i in range(n):
            regs[R_A, i] = ra[i]
            regs[R_B, i] = rb[i]
            regs[R_C, i] = rc[i]
            regs[R_D, i] = rd[i]
            regs[R_T, i] = (t0 + i) / sr
        expr_run(prog, consts, regs, n)
        r = regs[res]
        for i in range(n):
            out[ch, i] = r[i]
