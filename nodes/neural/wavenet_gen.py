"""WaveNet as a generator (van den Oord et al. 2016): the ``wavenet_gen`` node, its model and its kernel.

The model predicts the next sample of a note as a 256-way softmax over 8-bit
mu-law classes, from the samples before it and from conditioning:

* **input**: the previous sample's mu-law class through a learnt embedding
  (``classes x channels``, the one-hot input of the paper times its first 1x1);
* **layers**: ``z = conv_d(h) + M c`` (a causal conv of kernel 2 and dilation
  ``d``, 1, 2, 4, ... 512, plus the conditioning's 1x1), the gated activation
  ``a = tanh(z1) * sigmoid(z2)``, a residual 1x1 ``h <- h + R a`` and a skip
  1x1 ``s <- s + S a`` (receptive field ``1 + sum(d)`` = 1024 samples, 64 ms
  at 16 kHz);
* **head**: ``relu -> 1x1 -> relu -> 1x1`` to 256 logits;
* **local conditioning** (per sample, the control signals at audio rate):
  ``sin/cos`` of an oscillator phase integrated from the pitch param and of
  its harmonics up to the ``phase_harmonics``-th (2 unless the model says
  otherwise), the normalised log pitch ``(midi - 60) / 12`` and the
  normalised loudness ``(clip(dB, -100, 0) + 50) / 25``, and the *period
  input*: the output one period (``sr / pitch`` samples) earlier, from a
  history in the state (``period_input: 2``: two rows, half a sample either
  side). Trained on the measured phase of each note's fundamental, the phase
  rows tie the waveform to the pitch; the period input lets the network
  continue its own waveform at exactly that period (docs/generators.md);
* **global conditioning**: a learnt embedding per instrument, appended to the
  conditioning rows; a fractional instrument index interpolates linearly
  between two neighbours' embeddings.

Generation runs the Fast WaveNet scheme (Paine et al. 2016): every layer keeps
a queue of its own last ``d`` inputs, so one sample costs one pass over the
layers (``O(layers)``), in one numba kernel per block (:func:`wng_generate`):
no Python per sample. Sampling: ``softmax(logits / temperature)``, the
probability bias of Graves (2013) with ``bias = 1 / temperature - 1``, from the
node's own xorshift32 generator kept in its state array, so the output does
not depend on the block size and ``reset`` repeats it exactly. What the
network is fed back is ``mean + feedback * (draw - mean)`` of the
distribution drawn from (as a class): ``feedback`` 1 is the classic WaveNet,
lower values shrink the sampling noise it hears around the mean, where a
low temperature sharpens the distribution towards its likeliest class
(docs/generators.md).

Files: a ``patchlib-neural`` checkpoint (``nodes/neural/checkpoint.py``'s
format, read with ``weights_only=True``) with ``arch: "wavenet_gen"``; its
``config`` holds the sizes and the instrument names. ``patchlib train
wavenet-gen`` writes them (``nodes/neural/train_wavenet_gen.py``).
"""
from __future__ import annotations

import math
import os

import numba
import numpy as np

from patchlib import Node, Option, Output, Param, PatchError, Where, register

from .fast import fast_sigmoid, fast_tanh

ARCH = "wavenet_gen"
_F = np.float32
MU = 255
CLASSES = 256
#: conditioning rows before the instrument embedding with the default 2 phase harmonics: sin/cos phase,
#: sin/cos 2 x phase, log pitch, loudness (:func:`local_rows`)
LOCAL_ROWS = 6
LOUD_FLOOR_DB = -100.0
#: samples of output history the period input reads from (pitches down to sample_rate / HIST)
HIST = 4096

#: named sizes (``instruments`` and ``instrument_names`` come from the data)
PRESETS = {
    "small": {"channels": 24, "skip": 48, "head": 48, "embed": 8, "kernel": 2,
              "dilations": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], "period_input": 1},
    "tiny": {"channels": 4, "skip": 6, "head": 6, "embed": 2, "kernel": 2, "dilations": [1, 2, 4],
             "period_input": 2},
}

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "arcp", "nsz"})


# ------------------------------------------------------------------ mu-law and conditioning (numpy)
def mu_law_encode(x: np.ndarray) -> np.ndarray:
    """Audio in -1..1 -> classes 0..255 (8-bit mu-law, mu = 255)."""
    x = np.clip(np.asarray(x, np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / math.log1p(MU)
    return np.clip(np.floor((y + 1.0) * 0.5 * MU + 0.5), 0, MU).astype(np.int64)


def mu_law_decode(c: np.ndarray) -> np.ndarray:
    """Classes 0..255 -> audio in -1..1."""
    y = 2.0 * np.asarray(c, np.float64) / MU - 1.0
    return (np.sign(y) * ((1.0 + MU) ** np.abs(y) - 1.0) / MU).astype(np.float32)


def pitch_norm(hz):
    """The log-pitch row: ``(midi - 60) / 12`` (octaves from middle C)."""
    return (69.0 + 12.0 * np.log2(np.maximum(np.asarray(hz, np.float64), 1.0) / 440.0) - 60.0) / 12.0


def loud_norm(db):
    """The loudness row: ``(clip(dB, -100, 0) + 50) / 25`` (dB: A-weighted dBFS, the dataset's ``loudness_db``)."""
    return (np.clip(np.asarray(db, np.float64), LOUD_FLOOR_DB, 0.0) + 50.0) / 25.0


@numba.njit(cache=True)
def local_rows(harmonics=2):
    """Conditioning rows before the period input: sin/cos of ``k`` x phase for ``k = 1..harmonics``, pitch, loudness.

    Compiled, so the kernels count the rows with the same function as the model."""
    return 2 * int(harmonics) + 2


def local_conditioning(f0_hz: np.ndarray, loud_db: np.ndarray, sample_rate: float, phase0: float = 0.0,
                       phase=None, harmonics: int = 2):
    """``(local_rows(harmonics), n)`` float32 local conditioning of per-sample f0 (Hz) and loudness (dB), and the
    phase after them: ``sin, cos`` of ``k`` times the phase for ``k = 1..harmonics``, the log pitch, the loudness.

    The phase (in cycles) at sample ``t`` is ``phase0 + sum(f0[:t]) / sr``: the same integration as the
    kernel; training passes the measured ``phase`` of the note's fundamental instead (see
    :func:`nodes.neural.train_wavenet_gen.fundamental_phase`).
    """
    f0 = np.asarray(f0_hz, np.float64)
    inc = f0 / float(sample_rate)
    if phase is not None:
        ph = np.asarray(phase, np.float64)
    else:
        ph = phase0 + np.concatenate([[0.0], np.cumsum(inc)[:-1]]) if f0.size else np.zeros(0)
    ph = ph - np.floor(ph)
    w = 2.0 * np.pi * ph
    nh = int(harmonics)
    c = np.empty((local_rows(nh), f0.size), _F)
    for k in range(nh):
        c[2 * k], c[2 * k + 1] = np.sin((k + 1) * w), np.cos((k + 1) * w)
    c[2 * nh] = pitch_norm(f0)
    c[2 * nh + 1] = loud_norm(loud_db)
    end = (phase0 + inc.sum()) % 1.0
    return c, end


def period_offsets(taps) -> list:
    """Delays of the period input's rows relative to one period: 1 tap at it, 2 taps half a sample either side."""
    return [] if not taps else [0.0] if int(taps) == 1 else [-0.5, 0.5]


def period_row(past: np.ndarray, f0_hz: np.ndarray, sample_rate: float, start: int, offset: float = 0.0):
    """The period input for samples ``start .. start + n - 1``: the signal ``sr / f0`` samples earlier.

    ``past[i]`` is the (mu-law decoded) signal at sample ``i`` (samples before 0 are silence), as the
    kernel's output history; linear interpolation, the delay clamped to ``1 .. HIST - 2`` as in the kernel.
    """
    f0 = np.asarray(f0_hz, np.float64)
    d = np.clip(float(sample_rate) / np.maximum(f0, 1e-3) + offset, 1.0, HIST - 2.0)
    r = start + np.arange(f0.size) - d
    # a zero before sample 0, so that a read between -1 and 0 interpolates toward silence, as the kernel does
    return np.interp(r + 1.0, np.arange(past.size + 1), np.concatenate([[0.0], past]), left=0.0).astype(_F)


# ------------------------------------------------------------------ the torch model
_MODEL_CLASS = {}


def model_class():
    """The torch module class (defined on first use, so importing this module does not import torch)."""
    if "cls" in _MODEL_CLASS:
        return _MODEL_CLASS["cls"]
    import torch
    from torch import nn
    from torch.nn import functional as F

    class WaveNetGen(nn.Module):
        """``forward(prev (B, T) classes, cond (B, local, T), inst (B,) indices) -> logits (B, 256, T)``.

        ``local``: the ``local_rows(phase_harmonics)`` rows of :func:`local_conditioning`, plus (``period_input``) the
        output one period earlier (:func:`period_row`).
        """

        def __init__(self, channels, skip, head, embed, kernel, dilations, instruments, instrument_names=None,
                     classes=CLASSES, sample_rate=16000, period_input=False, gain_norm=None, preemph=0.0,
                     phase_harmonics=2):
            super().__init__()
            if not 0.0 <= float(preemph) < 1.0:
                raise ValueError("preemph is a pre-emphasis coefficient in 0..1 (0: none)")
            #: pre-emphasis: the network models ``y[t] - preemph y[t - 1]`` (LPCNet's noise shaping)
            self.preemph = float(preemph)
            #: loudness normalisation ``{"scale": s, "floor_db": F}``: the network models ``x / a`` with
            #: ``a = s 10^(max(loudness, F) / 20)``; None: it models ``x`` itself
            self.gain_norm = None if gain_norm is None else {"scale": float(gain_norm["scale"]),
                                                             "floor_db": float(gain_norm["floor_db"])}
            if kernel != 2:
                raise ValueError("the generator's kernel is 2 (Fast WaveNet queues hold one past input per layer)")
            C, S, H, E = int(channels), int(skip), int(head), int(embed)
            self.C, self.S, self.H, self.E, self.classes = C, S, H, E, int(classes)
            self.dilations = [int(d) for d in dilations]
            self.instruments = int(instruments)
            if not 1 <= int(phase_harmonics) <= 16:
                raise ValueError("phase_harmonics is 1..16")
            #: harmonics of the phase in the conditioning (rows sin/cos k x phase, k = 1..phase_harmonics)
            self.harmonics = int(phase_harmonics)
            self.local = local_rows(self.harmonics) + len(period_offsets(period_input))
            self.rows = self.local + E
            self.embed_in = nn.Embedding(self.classes, C)
            self.embed_inst = nn.Embedding(self.instruments, E)
            L = len(self.dilations)
            self.conv = nn.ModuleList(nn.Conv1d(C, 2 * C, 2, dilation=d) for d in self.dilations)
            self.cond = nn.ModuleList(nn.Conv1d(self.rows, 2 * C, 1, bias=False) for _ in range(L))
            self.res = nn.ModuleList(nn.Conv1d(C, C, 1) for _ in range(L))
            self.skip = nn.ModuleList(nn.Conv1d(C, S, 1) for _ in range(L))
            self.head1 = nn.Conv1d(S, H, 1)
            self.head2 = nn.Conv1d(H, self.classes, 1)

        @property
        def receptive_field(self) -> int:
            return 1 + sum(self.dilations)

        @property
        def macs_per_sample(self) -> int:
            C, S, H, L = self.C, self.S, self.H, len(self.dilations)
            return L * (2 * C * 2 * C + 2 * C * self.rows + C * C + S * C) + H * S + self.classes * H

        def instrument_vectors(self, inst):
            if inst.dtype in (torch.int64, torch.int32):
                return self.embed_inst(inst.long())
            i0 = inst.floor().clamp(0, self.instruments - 1)
            i1 = (i0 + 1).clamp(max=self.instruments - 1)
            f = (inst - i0).clamp(0, 1)[:, None]
            return (1 - f) * self.embed_inst(i0.long()) + f * self.embed_inst(i1.long())

        def forward(self, prev, cond, inst):
            B, T = prev.shape
            h = self.embed_in(prev).transpose(1, 2)  # (B, C, T)
            e = self.instrument_vectors(inst)[:, :, None].expand(B, self.E, T)
            c = torch.cat([cond, e], dim=1)
            s = None
            for conv, cm, res, sk, d in zip(self.conv, self.cond, self.res, self.skip, self.dilations):
                z = conv(F.pad(h, (d, 0))) + cm(c)
                a = torch.tanh(z[:, :self.C]) * torch.sigmoid(z[:, self.C:])
                s = sk(a) if s is None else s + sk(a)
                h = h + res(a)
            return self.head2(F.relu(self.head1(F.relu(s))))

    _MODEL_CLASS["cls"] = WaveNetGen
    return WaveNetGen


def build_model(config: dict):
    return model_class()(**config)


# ------------------------------------------------------------------ checkpoints
def save_model(path, model, config: dict, validation=None, train_command: str = "") -> None:
    """Write a ``patchlib-neural`` checkpoint with ``arch: wavenet_gen``."""
    from . import checkpoint

    names = config.get("instrument_names") or [f"instrument {i}" for i in range(config["instruments"])]
    knobs = [{"name": "instrument", "default": 0.0, "range": [0.0, float(max(1, len(names) - 1))],
              "doc": "instrument index: " + ", ".join(f"{i} {n}" for i, n in enumerate(names))}]
    checkpoint.save(path, ARCH, config, model.state_dict(), config.get("sample_rate", 16000), knobs=knobs,
                    validation=validation, train_command=train_command)


_cache: dict = {}


def load_checkpoint(path: str, name: str | None = None) -> dict:
    """The checkpoint dict at ``path`` (format checked; cached by path, mtime, size); PatchError naming ``name``."""
    import torch

    from .checkpoint import read

    name = name or path
    st = os.stat(path) if os.path.isfile(path) else None
    key = (os.path.realpath(path), st and st.st_mtime_ns, st and st.st_size)
    if key in _cache:
        return _cache[key]
    data = read(path, name, train="wavenet-gen")
    if data.get("arch") != ARCH:
        raise PatchError(f"model '{name}': architecture {data.get('arch')!r}, this node plays '{ARCH}' models",
                         Where(key="model"), hint="a pedal model goes in a 'pedal' node")
    try:
        model = build_model(data["config"])
        model.load_state_dict(data["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise PatchError(f"model '{name}': weights do not match the config ({str(e).splitlines()[0][:160]})",
                         Where(key="model")) from None
    for k, v in model.state_dict().items():
        if not torch.isfinite(v).all():
            raise PatchError(f"model '{name}': weight '{k}' holds NaN or inf", Where(key="model"))
    data["model"] = model.eval()
    _cache[key] = data
    return data


# ------------------------------------------------------------------ the numba twin
def _np(t):
    return np.ascontiguousarray(t.detach().cpu().float().numpy())


class Weights:
    """The model's weights in the kernel's layout (input-major, so the inner loops run over outputs)."""

    def __init__(self, model):
        L, C = len(model.dilations), model.C
        self.L, self.C, self.S, self.H, self.E = L, C, model.S, model.H, model.E
        self.instruments = model.instruments
        self.dil = np.array(model.dilations, np.int64)
        self.D = int(self.dil.max())
        self.emb_in = _np(model.embed_in.weight)                                         # (Q, C)
        self.emb_inst = _np(model.embed_inst.weight)                                     # (I, E)
        self.Wp = np.stack([_np(c.weight)[:, :, 0].T for c in model.conv])              # (L, C, 2C) past tap
        self.Wh = np.stack([_np(c.weight)[:, :, 1].T for c in model.conv])              # (L, C, 2C) current tap
        self.bc = np.stack([_np(c.bias) for c in model.conv])                           # (L, 2C)
        # every layer's conditioning 1x1 as one matrix (rows, L * 2C): one pass over the conditioning per sample
        self.M = np.ascontiguousarray(np.concatenate([_np(m.weight)[:, :, 0].T for m in model.cond], axis=1))
        self.Wr = np.stack([_np(r.weight)[:, :, 0].T for r in model.res])               # (L, C, C)
        self.br = np.stack([_np(r.bias) for r in model.res])                            # (L, C)
        self.Ws = np.stack([_np(s.weight)[:, :, 0].T for s in model.skip])              # (L, C, S)
        self.bs = np.ascontiguousarray(sum(_np(s.bias) for s in model.skip))            # (S,) all skip biases
        self.W1 = np.ascontiguousarray(_np(model.head1.weight)[:, :, 0].T)              # (S, H)
        self.b1 = _np(model.head1.bias)
        self.W2 = np.ascontiguousarray(_np(model.head2.weight)[:, :, 0].T)              # (H, Q)
        self.b2 = _np(model.head2.bias)
        self.macs_per_sample = int(model.macs_per_sample)
        gn = model.gain_norm
        self.gn = np.array([gn["scale"], gn["floor_db"]] if gn else [], np.float64)  # (2,) or (0,): off
        self.preemph = float(model.preemph)
        self.nharm = int(getattr(model, "harmonics", 2))
        self.rows = int(model.rows)

    def args(self):
        return (self.dil, self.emb_in, self.emb_inst, self.Wp, self.Wh, self.bc, self.M, self.Wr, self.br,
                self.Ws, self.bs, self.W1, self.b1, self.W2, self.b2, self.gn, self.preemph, self.nharm)

    def scratch(self):
        """Per-sample work vectors, one float32 array ``(rows,)`` each packed into one buffer."""
        return np.zeros(2 * self.C * self.L + 8 * max(self.C, self.S, self.H, CLASSES, self.rows + 1), _F)


#: state layout (float64): queue position, oscillator phase (cycles), rng, previous class, primer position,
#: output history position, the de-emphasis filter's last output, then the output history (``HIST`` samples, for
#: the period input)
ST_POS, ST_PHASE, ST_RNG, ST_PREV, ST_PRIMER, ST_HPOS, ST_DEEMPH, ST_HIST = 0, 1, 2, 3, 4, 5, 6, 8
STATE_SIZE = ST_HIST + HIST
_TWO_PI = 2.0 * math.pi
_LN_MU1 = math.log1p(MU)


@numba.njit(inline="always", **_JIT)
def _xorshift32(s):
    s ^= (s << np.uint32(13)) & np.uint32(0xFFFFFFFF)
    s ^= s >> np.uint32(17)
    s ^= (s << np.uint32(5)) & np.uint32(0xFFFFFFFF)
    return s & np.uint32(0xFFFFFFFF)


#: every class's decoded value (a constant table inside the kernels)
_DEC = mu_law_decode(np.arange(CLASSES)).astype(np.float64)


@numba.njit(inline="always", **_JIT)
def _encode(v):
    """One sample (clipped to -1..1) -> its 8-bit mu-law class (as :func:`mu_law_encode`)."""
    v = min(max(v, -1.0), 1.0)
    y = math.log1p(MU * abs(v)) / _LN_MU1
    c = math.floor(((y if v >= 0 else -y) + 1.0) * 0.5 * MU + 0.5)
    return int(min(max(c, 0.0), MU))


@numba.njit(inline="always", **_JIT)
def _decode(c):
    y = 2.0 * c / MU - 1.0
    m = ((1.0 + MU) ** abs(y) - 1.0) / MU
    return m if y >= 0 else -m


@numba.njit(**_JIT)
def _logits(prev, pitch, loud, inst, phase, pos, ylag0, ylag1, dil, emb_in, emb_inst, Wp, Wh, bc, M, Wr, br, Ws, bs,
            W1, b1, W2, b2, nharm, queues, work):
    """One step of the network (the Fast WaveNet pass): writes the 256 logits to ``work[:256]``."""
    L, C, C2 = Wp.shape
    S = Ws.shape[2]
    H = W1.shape[1]
    Q = W2.shape[1]
    E = emb_inst.shape[1]
    R = M.shape[0]
    nloc = R - E
    logits = work[0:Q]
    cz = work[Q:Q + L * C2]
    o = Q + L * C2
    h = work[o:o + C]
    o += C
    hn = work[o:o + C]
    o += C
    z = work[o:o + C2]
    o += C2
    a = work[o:o + C]
    o += C
    s = work[o:o + S]
    o += S
    y = work[o:o + H]
    o += H
    c = work[o:o + R]
    # conditioning rows
    w = _TWO_PI * phase
    for k in range(nharm):
        c[2 * k] = math.sin((k + 1) * w)
        c[2 * k + 1] = math.cos((k + 1) * w)
    base = 2 * nharm
    c[base] = (69.0 + 12.0 * math.log2(max(pitch, 1.0) / 440.0) - 60.0) / 12.0
    c[base + 1] = (min(max(loud, LOUD_FLOOR_DB), 0.0) + 50.0) / 25.0
    if nloc > base + 2:
        c[base + 2] = ylag0
    if nloc > base + 3:
        c[base + 3] = ylag1
    ni = emb_inst.shape[0]
    fi = min(max(inst, 0.0), ni - 1.0)
    i0 = int(math.floor(fi))
    i1 = min(i0 + 1, ni - 1)
    fr = _F(fi - i0)
    for k in range(E):
        c[nloc + k] = (_F(1.0) - fr) * emb_inst[i0, k] + fr * emb_inst[i1, k]
    for k in range(L * C2):
        cz[k] = _F(0.0)
    for j in range(R):
        cv = c[j]
        mr = M[j]
        for k in range(L * C2):
            cz[k] += mr[k] * cv
    er = emb_in[prev]
    for k in range(C):
        h[k] = er[k]
    for k in range(S):
        s[k] = bs[k]
    for l in range(L):
        q = queues[l, pos % dil[l]]
        bl = bc[l]
        for k in range(C2):
            z[k] = bl[k] + cz[l * C2 + k]
        for i in range(C):
            pv = q[i]
            hv = h[i]
            wp = Wp[l, i]
            wh = Wh[l, i]
            for k in range(C2):
                z[k] += wp[k] * pv + wh[k] * hv
        for i in range(C):
            a[i] = fast_tanh(z[i]) * fast_sigmoid(z[C + i])
        # the queue keeps this layer's input for the sample d later
        for i in range(C):
            q[i] = h[i]
        brl = br[l]
        for k in range(C):
            hn[k] = h[k] + brl[k]
        for i in range(C):
            av = a[i]
            wr = Wr[l, i]
            ws = Ws[l, i]
            for k in range(C):
                hn[k] += wr[k] * av
            for k in range(S):
                s[k] += ws[k] * av
        for k in range(C):
            h[k] = hn[k]
    for k in range(S):
        s[k] = max(s[k], _F(0.0))
    for k in range(H):
        y[k] = b1[k]
    for i in range(S):
        sv = s[i]
        wr = W1[i]
        for k in range(H):
            y[k] += wr[k] * sv
    for k in range(H):
        y[k] = max(y[k], _F(0.0))
    for k in range(Q):
        logits[k] = b2[k]
    for i in range(H):
        yv = y[i]
        wr = W2[i]
        for k in range(Q):
            logits[k] += wr[k] * yv


@numba.njit(inline="always", **_JIT)
def _period_lag(state, pitch, sr, offset):
    """The output one period (``sr / pitch + offset`` samples, linear interpolation) before the current sample."""
    d = min(max(sr / max(pitch, 1e-3) + offset, 1.0), HIST - 2.0)
    r = state[ST_HPOS] - d
    i0 = int(math.floor(r))
    fr = r - i0
    v0 = state[ST_HIST + i0 % HIST]
    v1 = state[ST_HIST + (i0 + 1) % HIST]
    return v0 + fr * (v1 - v0)


@numba.njit(inline="always", **_JIT)
def _period_inputs(state, f, sr, nper):
    """The period input(s): the output one period back (two taps half a sample either side when ``nper`` is 2)."""
    if nper == 2:
        return _period_lag(state, f, sr, -0.5), _period_lag(state, f, sr, 0.5)
    return _period_lag(state, f, sr, 0.0), 0.0


@numba.njit(inline="always", **_JIT)
def _push(state, v):
    hp = int(state[ST_HPOS])
    state[ST_HIST + hp] = v
    state[ST_HPOS] = (hp + 1) % HIST


@numba.njit(**_JIT)
def wng_generate(out, n, pitch, loud, inst, temp, fb, sr, primer, mean_out, dil, emb_in, emb_inst, Wp, Wh, bc, M, Wr, br,
                 Ws, bs, W1, b1, W2, b2, gn, pre, nharm, state, queues, work):
    """Generate ``n`` samples into ``out[:n]`` (params per sample); ``state``, ``queues`` carried between calls.

    While ``state[ST_PRIMER] < primer.size`` the primer (audio) is fed in as classes (and played) instead of
    drawn samples. With loudness normalisation (``gn = [s, floor_db]``; empty: off) the classes are those
    of ``x / a``, ``a = s 10^(max(loudness, floor_db) / 20)``, and the output is ``a`` times them (clipped
    to -1..1); with pre-emphasis (``pre`` > 0) they are those of ``y[t] - pre y[t - 1]`` and the output is
    de-emphasised. ``mean_out``: the output is the mean of the distribution drawn from, not the draw.
    ``fb`` (per sample, 0..1): the network is fed ``mean + fb (draw - mean)`` (as a class) instead of the draw:
    1 is the classic WaveNet, 0 feeds the mean back; ``mean_out`` off plays that fed-back value.
    """
    Q = W2.shape[1]
    nper = M.shape[0] - emb_inst.shape[1] - local_rows(nharm)
    pos = int(state[ST_POS])
    phase = state[ST_PHASE]
    rng = np.uint32(int(state[ST_RNG]))
    prev = int(state[ST_PREV])
    pp = int(state[ST_PRIMER])
    D = queues.shape[1]
    for t in range(n):
        f = pitch[t]
        y0, y1 = _period_inputs(state, f, sr, nper)
        _logits(prev, f, loud[t], inst[t], phase, pos, y0, y1, dil, emb_in, emb_inst, Wp, Wh,
                bc, M, Wr, br, Ws, bs, W1, b1, W2, b2, nharm, queues, work)
        amp = 1.0
        if gn.size > 0:
            amp = gn[0] * 10.0 ** (max(loud[t], gn[1]) / 20.0)
        drawn = pp >= primer.size
        mu = 0.0
        if not drawn:
            cls = _encode(primer[pp] / amp - pre * state[ST_DEEMPH])
            pp += 1
        else:
            inv_t = 1.0 / max(temp[t], 1e-3)
            m = work[0]
            for k in range(1, Q):
                m = max(m, work[k])
            tot = 0.0
            for k in range(Q):  # unnormalised probabilities, in place of the logits
                e = math.exp((work[k] - m) * inv_t)
                work[k] = e
                tot += e
            rng = _xorshift32(rng)
            u = (rng >> np.uint32(8)) * (1.0 / 16777216.0) * tot
            cls = Q - 1
            acc = 0.0
            for k in range(Q):  # inverse CDF
                acc += work[k]
                if acc > u:
                    cls = k
                    break
            g = fb[t]
            if not g <= 1.0:  # also NaN
                g = 1.0
            elif g < 0.0:
                g = 0.0
            if mean_out or g < 1.0:  # the mean of the distribution drawn from
                acc = 0.0
                for k in range(Q):
                    acc += work[k] * _DEC[k]
                mu = acc / tot
            if g < 1.0:  # shrink the draw towards the mean: what the network hears of its own sampling noise
                cls = _encode(mu + g * (_decode(cls) - mu))
        v = _decode(cls)
        o = mu if mean_out and drawn else v
        if pre != 0.0:  # de-emphasis 1 / (1 - pre z^-1)
            o += pre * state[ST_DEEMPH]
            state[ST_DEEMPH] = o
        out[t] = min(max(amp * o, -1.0), 1.0)
        _push(state, v)
        prev = cls
        pos = (pos + 1) % D
        phase += f / sr
        phase -= math.floor(phase)
    state[ST_POS] = pos
    state[ST_PHASE] = phase
    state[ST_RNG] = float(rng)
    state[ST_PREV] = prev
    state[ST_PRIMER] = pp


@numba.njit(**_JIT)
def wng_teacher_forced(logp, classes, n, pitch, loud, inst, sr, dil, emb_in, emb_inst, Wp, Wh, bc, M, Wr, br, Ws,
                       bs, W1, b1, W2, b2, gn, pre, nharm, state, queues, work):
    """The kernel's log-probabilities ``logp[t]`` of every class with ``classes`` as the given past (tests)."""
    Q = W2.shape[1]
    nper = M.shape[0] - emb_inst.shape[1] - local_rows(nharm)
    pos = int(state[ST_POS])
    phase = state[ST_PHASE]
    prev = int(state[ST_PREV])
    D = queues.shape[1]
    for t in range(n):
        f = pitch[t]
        y0, y1 = _period_inputs(state, f, sr, nper)
        _logits(prev, f, loud[t], inst[t], phase, pos, y0, y1, dil, emb_in, emb_inst, Wp, Wh,
                bc, M, Wr, br, Ws, bs, W1, b1, W2, b2, nharm, queues, work)
        m = work[0]
        for k in range(1, Q):
            m = max(m, work[k])
        tot = 0.0
        for k in range(Q):
            tot += math.exp(work[k] - m)
        lt = m + math.log(tot)
        for k in range(Q):
            logp[t, k] = work[k] - lt
        prev = classes[t]
        _push(state, _decode(prev))
        pos = (pos + 1) % D
        phase += f / sr
        phase -= math.floor(phase)
    state[ST_POS] = pos
    state[ST_PHASE] = phase
    state[ST_PREV] = prev


class Generator:
    """A model's kernel with its state: ``gen(out, n, pitch, loud, inst, temp[, feedback])`` (numpy float arrays;
    without ``feedback`` the draws are fed back, as in the classic WaveNet)."""

    def __init__(self, model, sample_rate: float, seed: int = 0, primer=None, mean_out=False):
        self.mean_out = bool(mean_out)
        self.w = Weights(model)
        self.sr = float(sample_rate)
        self.seed = int(seed)
        self.state = np.zeros(STATE_SIZE, np.float64)
        self.queues = np.zeros((self.w.L, self.w.D, self.w.C), _F)
        self.work = self.w.scratch()
        self.primer = np.zeros(0, _F) if primer is None else np.ascontiguousarray(primer, _F)
        self._ones = np.ones(0, _F)  # the feedback when none is given (grown on demand)
        self.reset()

    def reset(self):
        self.queues[:] = 0.0
        self.state[:] = 0.0
        self.state[ST_PREV] = CLASSES // 2  # silence
        s = (self.seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
        self.state[ST_RNG] = float(s or 1)

    def __call__(self, out, n, pitch, loud, inst, temp, feedback=None):
        if feedback is None:
            if self._ones.size < n:
                self._ones = np.ones(n, _F)
            feedback = self._ones
        wng_generate(out, n, pitch, loud, inst, temp, feedback, self.sr, self.primer, self.mean_out, *self.w.args(),
                     self.state, self.queues, self.work)

    def teacher_forced(self, classes, pitch, loud, inst):
        n = len(classes)
        logp = np.zeros((n, CLASSES), _F)
        wng_teacher_forced(logp, np.ascontiguousarray(classes, np.int64), n, pitch, loud, inst, self.sr,
                           *self.w.args(), self.state, self.queues, self.work)
        return logp


def generate(model, pitch, loud, inst, temp=1.0, sample_rate=16000.0, seed=0, primer=None, mean_out=False,
             feedback=1.0) -> np.ndarray:
    """Generate ``len(pitch)`` samples for per-sample pitch (Hz), loudness (dB) and instrument arrays (or scalars);
    ``temp`` and ``feedback`` as the node's params."""
    n = len(pitch)

    def arr(v):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(v, _F), (n,)))

    g = Generator(model, sample_rate, seed, primer, mean_out)
    out = np.zeros(n, _F)
    g(out, n, arr(pitch), arr(loud), arr(inst), arr(temp), arr(feedback))
    return out


# ------------------------------------------------------------------ the node
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
#: a tiny random-weight generator for the contract suite; regenerate with
#: ``python -c "from nodes.neural.wavenet_gen import write_test_model; write_test_model()"``
TEST_MODEL = os.path.join(_ROOT, "patches", "models", "test-tiny-wavenet-gen.pt")


def write_test_model(path: str = TEST_MODEL, seed: int = 0) -> str:
    """Write the tiny deterministic checkpoint (random weights, 4 instruments) the tests use."""
    import torch

    torch.manual_seed(seed)
    cfg = dict(PRESETS["tiny"], instruments=4, instrument_names=["a", "b", "c", "d"], sample_rate=16000)
    model = build_model(cfg)
    save_model(path, model, cfg, validation={"note": "random weights: a test fixture, not a trained model"},
               train_command="python -c 'from nodes.neural.wavenet_gen import write_test_model; write_test_model()'")
    return path


class _ContractSettings:
    def __get__(self, obj, owner):
        return {"model": os.path.relpath(TEST_MODEL, os.getcwd())}


_FEEDBACK_DOC = ("how much of each draw's sampling noise the network hears: it is fed mean + feedback x (draw - "
                 "mean) of the distribution it drew from; 1 the draw itself (the classic WaveNet), 0 the mean "
                 "(deterministic)")


def _model_params(path: str, file: str) -> dict:
    """The params a model decides: its instruments, and the temperature and feedback it was measured at as the
    defaults."""
    ck = load_checkpoint(path, file)
    cfg = ck["config"]
    names = cfg.get("instrument_names") or [str(i) for i in range(cfg["instruments"])]
    temp = float((ck.get("validation") or {}).get("eval_temperature", 1.0))
    temp = min(max(temp, 0.05), 2.0) if math.isfinite(temp) else 1.0
    fb = float((ck.get("validation") or {}).get("eval_feedback", 1.0))
    fb = min(max(fb, 0.0), 1.0) if math.isfinite(fb) else 1.0
    return {"instrument": Param(0.0, (0.0, float(max(1, len(names) - 1))), "",
                                doc="instrument: " + ", ".join(f"{i} {n}" for i, n in enumerate(names))
                                    + "; between two indices the embeddings are interpolated"),
            "temperature": Param(temp, (0.05, 2.0), "", "exp",
                                 doc="softmax temperature (Graves' probability bias b = 1/T - 1); the default is "
                                     "the temperature the model was measured at"),
            "feedback": Param(fb, (0.0, 1.0), "", doc=_FEEDBACK_DOC + "; the default is the value the model was "
                                                                     "measured at")}


@register("wavenet_gen")
class WaveNetGenNode(Node):
    """Neural note generator: an autoregressive WaveNet (mu-law softmax) playing pitch and loudness curves.

    A model trained by ``patchlib train wavenet-gen`` (``model:``, relative to
    the patch's folder) generates audio sample by sample, each sample drawn
    from the network's 256-way mu-law distribution given the samples before
    it, the pitch (an oscillator phase integrated from it, its log, and the
    output one period back),
    the loudness (A-weighted dBFS, as the dataset's ``loudness_db`` labels)
    and the instrument (a fractional index interpolates the instruments'
    embeddings). ``temperature`` scales the logits (Graves' probability bias
    ``b = 1/T - 1``: lower is cleaner and more deterministic, higher noisier;
    its default is the temperature the model was measured at). ``feedback``
    sets how much of each draw's deviation from its distribution's mean
    the network hears back: 1 feeds the draw (the classic WaveNet), 0 the
    mean; in between, each draw's deviation from the mean is shrunk (a low
    temperature instead sharpens the distribution towards its likeliest
    class). Sampling uses the node's own random generator (option ``seed``), so a
    render repeats exactly. ``output: mean`` (the default) plays the mean of
    each distribution drawn from while the draws drive the network, which
    removes the sampling hiss; ``output: sample`` plays what the network is
    fed (the draws themselves at ``feedback`` 1).
    A model trained with loudness normalisation follows ``loudness`` exactly:
    it generates the waveform at unit level and the node scales it (output
    clipped to -1..1). ``primer:`` plays an audio file first (as 8-bit
    mu-law) through the network, warming its queues, then generation carries on.

    Example: ``voice: {type: wavenet_gen, model: models/wavenet-gen.pt, pitch: 220Hz, loudness: -25dB, instrument: 2}``
    """

    inputs: dict = {}
    outputs = {"out": Output("generated audio", channels=1, range=(-1.0, 1.0))}
    params = {
        "pitch": Param(261.63, (20.0, 4000.0), "Hz", "exp", doc="pitch of the note (trained on MIDI 48..72)"),
        "loudness": Param(-25.0, (-100.0, 0.0), "dB",
                          doc="loudness, A-weighted dBFS as the dataset's loudness_db labels (silence: -100)"),
        "instrument": Param(0.0, (0.0, 3.0), "", doc="instrument index (fractional: interpolated embeddings)"),
        "temperature": Param(1.0, (0.05, 2.0), "", "exp",
                             doc="softmax temperature (Graves' probability bias b = 1/T - 1)"),
        "feedback": Param(1.0, (0.0, 1.0), "", doc=_FEEDBACK_DOC),
    }
    options = {
        "model": Option(None, kind="path", required=True, doc="wavenet_gen checkpoint relative to the patch's folder"),
        "seed": Option(0, kind=int, doc="seed of the sampling generator"),
        "primer": Option(None, kind="path", doc="audio file played through the network first (warms its queues)"),
        "output": Option("mean", choices=("mean", "sample"),
                         doc="sample: play what the network is fed (the drawn samples at feedback 1: its own "
                             "sound, hiss included); mean: play the mean of each distribution drawn from (the draws "
                             "still drive the network), which removes the sampling noise"),
    }
    contract_settings = _ContractSettings()

    @classmethod
    def ports(cls, opts):
        from .pedal import _place, resolve_model

        params = dict(cls.params)
        file = opts.get("model")
        if file:
            base, where = _place(file)
            try:
                params.update(_model_params(resolve_model(file, base), file))
            except PatchError as e:
                e.where = Where(where.file, where.line, where.node, e.where.key or "model")
                raise
        return cls.inputs, cls.outputs, params

    def configure(self, in_channels):
        from .pedal import resolve_model

        self.model_file = self.opts.get("model")
        self.ckpt = load_checkpoint(resolve_model(self.model_file, self.ctx.base_dir), self.model_file)
        return {"out": 1}

    def prepare(self, ctx):
        super().prepare(ctx)
        msr = float(self.ckpt["sample_rate"])
        if abs(msr - float(ctx.sample_rate)) > 0.5:
            ctx.warn(f"node '{self.name}': model '{self.model_file}' was trained at {msr:g} Hz but the patch runs "
                     f"at {float(ctx.sample_rate):g} Hz: pitch stays right, the timbre shifts")
        primer = None
        pfile = self.opts.get("primer")
        if pfile:
            from .pedal import resolve_model

            path = resolve_model(pfile, self.ctx.base_dir)
            try:
                import soundfile as sf

                x, _ = sf.read(path, dtype="float32", always_2d=True)
            except Exception as e:
                raise PatchError(f"primer '{pfile}': cannot read it ({type(e).__name__})",
                                 Where(key="primer")) from None
            primer = x.mean(axis=1)
        self.gen = Generator(self.ckpt["model"], ctx.sample_rate, int(self.opts.get("seed", 0)) ^ int(ctx.seed or 0),
                             primer, mean_out=self.opts.get("output") == "mean")
        self.state, self.queues = self.gen.state, self.gen.queues
        self.reset()

    def reset(self):
        self.gen.reset()

    def process(self, n, t):
        p = self.par
        self.gen(self.out["out"][0], n, p["pitch"], p["loudness"], p["instrument"], p["temperature"], p["feedback"])
