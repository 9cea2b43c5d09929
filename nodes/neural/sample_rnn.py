"""Conditional sample-level RNN (Wyse 2018; Wyse & Huzaifah 2019): the ``sample_rnn`` generator node.

A GRU predicts the next audio sample from the previous one plus real-valued
conditioning at every sample: pitch, volume and instrument. Here:

* **input per sample** (``D = 4 + 2 * harmonics + embed`` numbers): the
  previous output sample; the pitch as normalised MIDI ``(midi - 60) / 12``;
  the volume, normalised ``v = (dB + 45) / 45``, and its change
  ``dv = v - slow(v)`` (a one-pole follower, 50 ms); the sine and cosine of
  ``k * phase`` for ``k = 1..harmonics``, where ``phase`` is an oscillator
  integrated from the pitch param (``phase += 2 pi f / sr`` every sample,
  0 at reset), each harmonic faded out between 0.4 and 0.5 of the sample
  rate (no input above Nyquist); and the instrument's learnt embedding
  (a float index: ``1.3`` is 70 % of instrument 1's embedding plus 30 % of
  instrument 2's). The phase inputs are the design choice that makes the
  pitch exact: the network does not have to invent an oscillator whose
  period it must count, it shapes a waveform on a clock it is given, so a
  pitch it never heard still comes out at the pitch asked for.
* **volume** is the dataset's ``loudness_db`` label (A-weighted RMS in
  dBFS over 1024-sample frames, :func:`patchlib.dataset.loudness_db`),
  interpolated to every sample: the volume param asks for a loudness, and
  through ``dv`` the model learnt what each instrument does when the
  loudness jumps up (an onset) or falls (a release), so a volume step
  mid-note plays a short learnt transient, not a gain change.
* **output**: a Gaussian per sample, mean and log-scale from a linear head
  on the last GRU layer; generation draws ``mean + temperature * scale * z``
  (``temperature`` 0: the mean, deterministic), clipped to -1..1; that
  sample is the network's next input, and the node outputs it through a
  10 Hz DC blocker (the small model's mean carries an offset).
* **run time**: a numba kernel runs the whole per-sample loop (features,
  GRU gates, head, noise) on explicit state: ``state = [h (layers x hidden),
  phase, previous sample, rng, volume follower, DC blocker x1, y1]`` in one
  float64 array, so any block split gives the same samples as one call.

Checkpoints use the format of :mod:`.checkpoint` (``torch.save`` of plain
tensors and metadata, read with ``weights_only=True``) with ``arch:
"sample_rnn"``; :func:`load` reads them (the ``pedal`` loader does not know
this architecture). Training: :mod:`.train_sample_rnn` (``patchlib train
sample-rnn``).
"""
from __future__ import annotations

import math
import os

import numba
import numpy as np

from patchlib import Option, Output, Param, PatchError, Where, register
from patchlib.node import Node

from .checkpoint import _err
from .fast import _JIT, fast_sigmoid, fast_tanh

ARCH = "sample_rnn"
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
#: a tiny random-weight model for the contract suite (``write_test_model``)
TEST_MODEL = os.path.join(_ROOT, "patches", "models", "test-tiny-sample-rnn.pt")
VOL_CENTER = -45.0  # dB
VOL_SCALE = 45.0  # dB
VOL_RANGE = (-90.0, 0.0)
LOG_SCALE_RANGE = (-11.0, 0.0)
VOL_TAU = 0.05  # s: the volume's slow follower (the "change of volume" input)
DC_HZ = 10.0  # the output's DC blocker (the network's own output, fed back, is not filtered)
_F = np.float32


def model_config(hidden=64, layers=1, harmonics=6, embed=4, instruments=("bell", "bowed", "pluck", "saw"),
                 sample_rate=16000.0, vol_tau=VOL_TAU):
    return {"hidden": int(hidden), "layers": int(layers), "harmonics": int(harmonics), "embed": int(embed),
            "instruments": list(instruments), "sample_rate": float(sample_rate), "vol_tau": float(vol_tau)}


def input_size(cfg) -> int:
    return 4 + 2 * int(cfg["harmonics"]) + int(cfg["embed"])


def vol_coef(tau, sr) -> float:
    """The one-pole coefficient of the volume's slow follower (time constant ``tau`` seconds)."""
    return 1.0 - math.exp(-1.0 / (float(tau) * float(sr)))


def volume_features(vol_db, sr, tau=None):
    """``(v, dv)`` per sample from a volume curve in dB: ``v = (clip(dB, -90, 0) + 45) / 45`` and
    ``dv = v - slow(v)``, ``slow`` a one-pole follower (time constant ``tau``, starting from silence, -1):
    exactly what the kernel computes from the volume param, sample by sample."""
    from scipy.signal import lfilter

    tau = VOL_TAU if tau is None else tau
    v = (np.clip(np.asarray(vol_db, np.float64), *VOL_RANGE) - VOL_CENTER) / VOL_SCALE
    a = vol_coef(tau, sr)
    slow, _ = lfilter([a], [1.0, -(1.0 - a)], v, zi=[(1.0 - a) * -1.0])
    return v.astype(np.float32), (v - slow).astype(np.float32)


def macs_per_sample(cfg) -> int:
    """Multiply-adds per generated sample: the GRU's two matrix products per layer and the head."""
    H, L, D = cfg["hidden"], cfg["layers"], input_size(cfg)
    return 3 * H * D + 3 * H * H + (L - 1) * 6 * H * H + 2 * H


def harmonic_mask(k, f, sr):
    """1 below 0.4 sr, fading to 0 at 0.5 sr, for harmonic ``k`` of ``f`` (numpy or torch)."""
    x = (0.5 * sr - k * f) / (0.1 * sr)
    return x.clip(0.0, 1.0) if hasattr(x, "clip") else min(max(x, 0.0), 1.0)


def _torch_model_class():
    import torch
    from torch import nn

    class SampleRNN(nn.Module):
        """The torch model (training and reference): ``forward(x) -> (mean, log_scale)`` over ``(B, T, D)``."""

        def __init__(self, hidden=64, layers=1, harmonics=6, embed=4, instruments=("a",), sample_rate=16000.0,
                     vol_tau=VOL_TAU):
            super().__init__()
            self.cfg = model_config(hidden, layers, harmonics, embed, instruments, sample_rate, vol_tau)
            self.embedding = nn.Parameter(0.5 * torch.randn(len(instruments), embed))
            self.gru = nn.GRU(input_size(self.cfg), hidden, layers, batch_first=True)
            self.head = nn.Linear(hidden, 2)

        def features(self, prev, midi, vol, dvol, phase, inst):
            """Model input ``(B, T, D)`` from ``prev`` (B, T) samples, ``midi`` (B,) or (B, T), ``vol``, ``dvol``
            (B, T) from :func:`volume_features`, ``phase`` (B, T) radians, ``inst`` (B,) float instrument indices."""
            B, T = prev.shape
            K = self.cfg["harmonics"]
            sr = self.cfg["sample_rate"]
            midi = midi.reshape(B, -1).expand(B, T)
            f = 440.0 * torch.pow(2.0, (midi - 69.0) / 12.0)
            cols = [prev, (midi - 60.0) / 12.0, vol, dvol]
            for k in range(1, K + 1):
                m = harmonic_mask(k, f, sr)
                cols += [torch.sin(k * phase) * m, torch.cos(k * phase) * m]
            x = torch.stack(cols, dim=-1)
            e = self.instrument_embedding(inst)  # (B, E)
            return torch.cat([x, e[:, None, :].expand(B, T, e.shape[-1])], dim=-1)

        def instrument_embedding(self, inst):
            n = self.embedding.shape[0]
            inst = inst.clamp(0, n - 1)
            lo = inst.floor().long().clamp(0, n - 1)
            hi = (lo + 1).clamp(max=n - 1)
            w = (inst - lo.float())[:, None]
            return (1 - w) * self.embedding[lo] + w * self.embedding[hi]

        def forward(self, x, h0=None):
            y, h = self.gru(x, h0)
            out = self.head(y)
            return out[..., 0], out[..., 1].clamp(*LOG_SCALE_RANGE), h

    return SampleRNN


def build_torch(cfg):
    """A fresh torch model for ``cfg`` (:func:`model_config`)."""
    cls = _torch_model_class()
    return cls(cfg["hidden"], cfg["layers"], cfg["harmonics"], cfg["embed"], tuple(cfg["instruments"]),
               cfg["sample_rate"], cfg["vol_tau"])


# ------------------------------------------------------------------ checkpoint


def save(path, model, validation=None, train_command=""):
    """Write ``model`` as a patchlib-neural checkpoint with ``arch: sample_rnn`` (see :mod:`.checkpoint`)."""
    from . import checkpoint

    checkpoint.save(path, ARCH, dict(model.cfg), model.state_dict(), model.cfg["sample_rate"], knobs=(),
                    validation=validation, train_command=train_command)


_cache: dict = {}


def load(path, name=None) -> dict:
    """The checkpoint as ``{"config", "weights" (numpy), "validation", "train_command", "sample_rate"}``,
    checked (format, architecture, shapes, finite values); cached by path, size and modification time."""
    name = name or path
    st = os.stat(path) if os.path.isfile(path) else None
    key = (os.path.realpath(path), st and st.st_mtime_ns, st and st.st_size)
    if key in _cache:
        return _cache[key]
    import torch

    from .checkpoint import read

    data = read(path, name, train="sample-rnn")
    if data.get("arch") != ARCH:
        raise _err(name, f"architecture {data.get('arch')!r}, the sample_rnn node needs {ARCH!r}",
                   hint="a pedal model goes in a 'pedal' node")
    try:
        cfg = model_config(**data["config"])
        want = build_torch(cfg).state_dict()
    except (TypeError, ValueError, KeyError) as e:
        raise _err(name, f"bad sample_rnn config: {e}") from None
    got = data.get("state_dict") or {}
    if set(got) != set(want):
        raise _err(name, f"weights do not match the architecture (missing {sorted(set(want) - set(got))[:4]}, "
                         f"unknown {sorted(set(got) - set(want))[:4]})")
    weights = {}
    for k, t in want.items():
        g = got[k]
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(t.shape):
            raise _err(name, f"weight '{k}' has the wrong shape")
        if not torch.isfinite(g).all():
            raise _err(name, f"weight '{k}' holds NaN or inf")
        weights[k] = g.detach().float().numpy().copy()
    out = {"config": cfg, "weights": weights, "validation": data.get("validation", {}),
           "train_command": data.get("train_command", ""), "sample_rate": float(data.get("sample_rate", 16000))}
    _cache[key] = out
    return out


def torch_from_checkpoint(ckpt):
    """The torch model with the checkpoint's weights (for tests and evaluation)."""
    import torch

    m = build_torch(ckpt["config"])
    m.load_state_dict({k: torch.from_numpy(v) for k, v in ckpt["weights"].items()})
    return m.eval()


def write_test_model(path: str = TEST_MODEL, seed: int = 0) -> str:
    """A tiny random-weight model (hidden 8, 2 harmonics) for the contract tests (a few KB)."""
    import torch

    torch.manual_seed(seed)
    m = build_torch(model_config(hidden=8, layers=1, harmonics=2, embed=2))
    save(path, m, validation={"note": "random weights: a test fixture, not a trained model"},
         train_command="python -c 'from nodes.neural.sample_rnn import write_test_model; write_test_model()'")
    return path


# ------------------------------------------------------------------ the numba twin
class Weights:
    """The model's weights laid out for the kernel (transposed: inner loops over gate rows)."""

    def __init__(self, ckpt):
        cfg = ckpt["config"]
        w = ckpt["weights"]
        H, L = cfg["hidden"], cfg["layers"]
        D = input_size(cfg)
        self.cfg = cfg
        self.H, self.L, self.D, self.K = H, L, D, cfg["harmonics"]
        width = max(D, H)
        self.Wih = np.zeros((L, width, 3 * H), _F)
        self.Whh = np.zeros((L, H, 3 * H), _F)
        self.bih = np.zeros((L, 3 * H), _F)
        self.bhh = np.zeros((L, 3 * H), _F)
        for l in range(L):
            wih = w[f"gru.weight_ih_l{l}"]
            self.Wih[l, :wih.shape[1]] = wih.T
            self.Whh[l] = w[f"gru.weight_hh_l{l}"].T
            self.bih[l] = w[f"gru.bias_ih_l{l}"]
            self.bhh[l] = w[f"gru.bias_hh_l{l}"]
        self.hw = np.ascontiguousarray(w["head.weight"].astype(_F))  # (2, H)
        self.hb = np.ascontiguousarray(w["head.bias"].astype(_F))
        self.emb = np.ascontiguousarray(w["embedding"].astype(_F))  # (N, E)
        self.sr = float(cfg["sample_rate"])
        self.vol_tau = float(cfg["vol_tau"])
        self.macs = macs_per_sample(cfg)

    def new_state(self, seed: int) -> np.ndarray:
        """``[h (L*H), phase, previous sample, rng, slow volume, DC blocker x1, y1]``: silence, phase 0."""
        s = np.zeros(self.L * self.H + 6)
        s[self.L * self.H + 2] = rng_seed(seed)
        s[self.L * self.H + 3] = -1.0
        return s

    def scratch(self):
        return np.zeros(self.D, _F), np.zeros(3 * self.H, _F), np.zeros(3 * self.H, _F), \
            np.zeros((self.L, self.H), _F)


def rng_seed(seed: int) -> float:
    """A non-zero 32-bit xorshift state from any int (kept exactly in a float64)."""
    x = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
    return float(x or 1)


@numba.njit(inline="always", **_JIT)
def _xorshift(s):
    """32-bit xorshift (Marsaglia 2003) on an int64 holding a value below 2**32."""
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    return s


@numba.njit(**_JIT)
def generate_kernel(out, n, pitch, volume, inst, temp, sr, K, va, dc, Wih, Whh, bih, bhh, hw, hb, emb, state, x, gi,
                    gh, h):
    """``n`` samples into ``out[:n]`` from per-sample ``pitch`` (Hz), ``volume`` (dB), ``inst`` (float index),
    ``temp``; ``va`` the volume follower's coefficient; ``state`` float64 ``[h (L*H), phase, previous sample,
    rng, slow volume, DC blocker x1, y1]``; ``x, gi, gh, h``: float32 scratch. ``out`` is the sampled signal
    through a 10 Hz DC blocker when ``dc`` (else the samples themselves); the network's next input is the
    sample itself."""
    L, H = h.shape
    H3 = 3 * H
    D = x.size
    N, E = emb.shape
    two_pi = 2.0 * np.pi
    for l in range(L):
        for o in range(H):
            h[l, o] = _F(state[l * H + o])
    phase = state[L * H]
    prev = _F(state[L * H + 1])
    rs = np.int64(state[L * H + 2])
    vslow = state[L * H + 3]
    dx1 = state[L * H + 4]
    dy1 = state[L * H + 5]
    rdc = math.exp(-2.0 * np.pi * DC_HZ / sr)
    hr = gh[:H]
    for t in range(n):
        f = float(pitch[t])
        if not f > 0.0:  # NaN or <= 0: treat as a very low pitch
            f = 1e-3
        midi = 69.0 + 12.0 * math.log2(f / 440.0)
        x[0] = prev
        x[1] = _F(min(max((midi - 60.0) / 12.0, -6.0), 6.0))
        v = float(volume[t])
        v = min(max(v, -90.0), 0.0) if v == v else -90.0
        vn = (v + 45.0) / 45.0
        vslow += va * (vn - vslow)
        x[2] = _F(vn)
        x[3] = _F(vn - vslow)
        for k in range(1, K + 1):
            m = (0.5 * sr - k * f) / (0.1 * sr)
            m = min(max(m, 0.0), 1.0)
            x[2 + 2 * k] = _F(math.sin(k * phase) * m)
            x[3 + 2 * k] = _F(math.cos(k * phase) * m)
        c = float(inst[t])
        c = min(max(c, 0.0), N - 1.0) if c == c else 0.0
        lo = int(math.floor(c))
        hi = min(lo + 1, N - 1)
        w = _F(c - lo)
        for e in range(E):
            x[4 + 2 * K + e] = (_F(1.0) - w) * emb[lo, e] + w * emb[hi, e]
        # GRU layers: gates r, z, n (torch's order)
        for l in range(L):
            for o in range(H3):
                gi[o] = bih[l, o]
                gh[o] = bhh[l, o]
            nin = D if l == 0 else H
            for i in range(nin):
                xv = x[i] if l == 0 else h[l - 1, i]
                wr = Wih[l, i]
                for o in range(H3):
                    gi[o] += wr[o] * xv
            hl = h[l]
            for i in range(H):
                hv = hl[i]
                wr = Whh[l, i]
                for o in range(H3):
                    gh[o] += wr[o] * hv
            for o in range(H):
                r = fast_sigmoid(gi[o] + gh[o])
                z = fast_sigmoid(gi[H + o] + gh[H + o])
                nn_ = fast_tanh(gi[2 * H + o] + r * gh[2 * H + o])
                hl[o] = (_F(1.0) - z) * nn_ + z * hl[o]
        hlast = h[L - 1]
        mu = hb[0]
        ls = hb[1]
        for i in range(H):
            mu += hw[0, i] * hlast[i]
            ls += hw[1, i] * hlast[i]
        ls = min(max(ls, _F(-11.0)), _F(0.0))
        # Box-Muller from two xorshift uniforms in (0, 1)
        rs = _xorshift(rs)
        u1 = (float(rs) + 0.5) / 4294967296.0
        rs = _xorshift(rs)
        u2 = (float(rs) + 0.5) / 4294967296.0
        z = math.sqrt(-2.0 * math.log(u1)) * math.cos(two_pi * u2)
        tt = float(temp[t])
        tt = min(max(tt, 0.0), 4.0) if tt == tt else 0.0
        y = float(mu) + tt * math.exp(float(ls)) * z
        y = min(max(y, -1.0), 1.0) if y == y else 0.0
        dy1 = y - dx1 + rdc * dy1
        dx1 = y
        out[t] = dy1 if dc else y
        prev = _F(y)
        phase += two_pi * f / sr
        if phase >= two_pi:
            phase -= two_pi * math.floor(phase / two_pi)
    for l in range(L):
        for o in range(H):
            state[l * H + o] = h[l, o]
    state[L * H] = phase
    state[L * H + 1] = prev
    state[L * H + 2] = float(rs)
    state[L * H + 3] = vslow
    state[L * H + 4] = dx1
    state[L * H + 5] = dy1


def run(wts: Weights, state, out, n, pitch, volume, inst, temp, scratch, dc_block=True) -> None:
    """One call of the kernel (``scratch`` from :meth:`Weights.scratch`)."""
    x, gi, gh, h = scratch
    generate_kernel(out, n, pitch, volume, inst, temp, wts.sr, wts.K, vol_coef(wts.vol_tau, wts.sr), dc_block, wts.Wih,
                    wts.Whh, wts.bih, wts.bhh, wts.hw, wts.hb, wts.emb, state, x, gi, gh, h)


def generate(model, pitch_hz, volume_db, instrument, temperature=0.02, seed=0, n=None, dc_block=True) -> np.ndarray:
    """Whole-signal generation with the numba kernel: ``model`` a path, a checkpoint dict or a :class:`Weights`;
    each conditioning argument a scalar or a per-sample array (``n`` samples, default the arrays' length);
    ``dc_block=False``: the sampled signal itself (the network's input), without the output's DC blocker."""
    wts = model if isinstance(model, Weights) else Weights(load(model) if isinstance(model, str) else model)
    arrs = [pitch_hz, volume_db, instrument, temperature]
    if n is None:
        n = max(np.size(a) for a in arrs)
    cond = [np.array(np.broadcast_to(np.asarray(a, _F), (n,)), dtype=_F) for a in arrs]  # writable copies:
    # one kernel signature (numba types read-only arrays apart)
    out = np.zeros(n, _F)
    run(wts, wts.new_state(seed), out, n, *cond, wts.scratch(), dc_block=bool(dc_block))
    return out


# ------------------------------------------------------------------ the node
def _model_header(file):
    from .pedal import _place, resolve_model

    base, where = _place(file)
    try:
        return load(resolve_model(file, base), name=file)
    except PatchError as e:
        e.where = Where(where.file, where.line, where.node, e.where.key or "model")
        raise


def _params(names) -> dict:
    top = max(len(names) - 1, 0)
    listing = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    return {
        "pitch": Param(261.63, (20.0, 4000.0), "Hz", "exp", smooth=0.0,
                       doc="the note's pitch (drives the phase the network locks to)"),
        "volume": Param(-24.0, VOL_RANGE, "dB", smooth=0.0,
                        doc="loudness asked for: the dataset's A-weighted loudness in dBFS (-90..0)"),
        "instrument": Param(0.0, (0.0, float(top)), smooth=0.0,
                            doc=f"instrument index ({listing}); fractions blend the learnt embeddings"),
        "temperature": Param(0.02, (0.0, 2.0), smooth=0.0,
                             doc="scale of the sampled noise (0: the mean, deterministic; 1: the training "
                                 "uncertainty, a hiss)"),
    }


@register("sample_rnn")
class SampleRNNNode(Node):
    """Sample-level conditional RNN generator: a GRU sample by sample, driven by pitch, volume and instrument.

    A model file (``model:``, relative to the patch's folder, trained by
    ``patchlib train sample-rnn``) holds a GRU that predicts each sample from
    the previous one, the pitch (and the sine and cosine of a phase
    integrated from it), the volume (the dataset's A-weighted loudness, dB)
    and an instrument embedding (a float index: fractions blend instruments).
    Every param is read every sample, so a sequencer on ``pitch`` and an LFO
    or envelope on ``volume`` play it live; a jump up in ``volume`` gives the
    instrument's learnt attack. Runs as one numba kernel per block; any block
    size gives the same samples, and ``seed`` fixes the sampled noise.

    Example: ``rnn: {type: sample_rnn, model: models/sample-rnn.pt, pitch: seq.pitch, volume: -20, instrument: 3}``
    """

    inputs: dict = {}
    outputs = {"out": Output("the generated audio (mono)", channels=1)}
    params = _params(["bell", "bowed", "pluck", "saw"])
    options = {
        "model": Option(None, kind="path", required=True, doc="model checkpoint relative to the patch's folder"),
        "seed": Option(None, kind=int, doc="noise seed (default: from the patch seed and node name)"),
    }
    contract_settings = {"model": "patches/models/test-tiny-sample-rnn.pt"}

    @classmethod
    def ports(cls, opts):
        file = opts.get("model")
        if not file:
            return cls.inputs, cls.outputs, cls.params
        return cls.inputs, cls.outputs, _params(_model_header(file)["config"]["instruments"])

    def configure(self, in_channels):
        from .pedal import resolve_model

        self.model_file = self.opts.get("model")
        path = resolve_model(self.model_file, self.ctx.base_dir)
        self.wts = Weights(load(path, name=self.model_file))
        self.macs_per_sample = self.wts.macs  # for patchlib bench
        return {"out": 1}

    def prepare(self, ctx):
        super().prepare(ctx)
        if abs(self.wts.sr - float(ctx.sample_rate)) > 0.5:
            ctx.warn(f"node '{self.name}': model '{self.model_file}' was trained at {self.wts.sr:g} Hz but the patch "
                     f"runs at {float(ctx.sample_rate):g} Hz: its pitch follows the param, its timbre will differ")
        self.sr_run = float(ctx.sample_rate)
        self.va = vol_coef(self.wts.vol_tau, self.sr_run)
        self._scratch = self.wts.scratch()
        self.reset()

    def reset(self):
        seed = self.opts.get("seed")
        self.state = self.wts.new_state(self.ctx.seed if seed is None else int(seed))

    def state_items(self):
        return {"state": self.state}

    def process(self, n, t):
        x, gi, gh, h = self._scratch
        w = self.wts
        generate_kernel(self.out["out"][0], n, self.par["pitch"], self.par["volume"], self.par["instrument"],
                        self.par["temperature"], self.sr_run, w.K, self.va, True, w.Wih, w.Whh, w.bih, w.bhh, w.hw,
                        w.hb, w.emb, self.state, x, gi, gh, h)
