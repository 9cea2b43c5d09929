"""SING (Défossez et al. 2018): a neural note generator, and the ``sing`` node that plays it.

**The model.** An LSTM runs once per frame (hop 256 samples, 16 ms at
16 kHz) on the note's conditioning: an instrument embedding (a fractional
index interpolates between rows), the pitch, the velocity and a time
embedding (time since the onset and since the release, as decaying
exponentials, plus the gate). Its output, a small latent per frame, goes
through a per-frame decoder that emits a Hann-windowed frame of 1024
samples; frames are overlap-added every 256 samples (75 % overlap).

**The pitch encoding** is continuous, so that pitches never trained on
interpolate: the MIDI number ``m = 69 + 12 log2(f / 440)`` enters as
``(m - 60) / 24`` and ``sin``/``cos(2 pi m / P)`` for periods P of 6, 12,
24, 48 and 96 semitones (no lookup table). The same features reach the
decoder.

**The decoder** is SING's: its last layer is a transposed convolution,
i.e. each frame is a weighted sum of a learnt basis of 1024-sample
waveforms. We add to that basis a pitch-locked one: the half-harmonics of
f0 (``k f0 / 2``, k = 1..K, those under Nyquist), whose phase runs on
continuously from frame to frame, with per-frame amplitudes from the
decoder. A free basis alone puts partials only where it was trained (its
waveforms are fixed), so a pitch between two trained ones comes out as a
mix of both; the pitch-locked part puts them at the asked pitch, and the
half-harmonics let a bell's hum (f0 / 2) and quint (1.5 f0) sit on it.
Everything else (inharmonic partials, noise, attacks) is the free basis.

**The intonation** (models trained with ``--intonation``, the shipped one
too): a linear head on the LSTM's output gives each frame a pitch offset,
``50 tanh(.)`` cents at most, and that frame's partials sound at the asked
pitch moved by it. It is trained on the notes' own f0 (YIN), so it learns
how an instrument's pitch moves over a note, about the note's own pitch
(which stays the asked one): the bowed string's vibrato (+-5 cents at
5.5 Hz, in phase with the note's start). The partials' phase is carried so that
overlapping frames agree at their centres, where each frame's f0 belongs
(:func:`._sing.carry_theta`), so a moving pitch is neither early nor
smeared.

**Training** (``nodes/neural/train_sing.py``, ``patchlib train sing``):
the decoder is first pretrained as an autoencoder (an encoder from each
frame's log spectrum to the latent), then the LSTM learns to produce the
encoder's latents, then both are trained end to end with SING's spectral
loss, L1 between ``log(eps + |STFT|^2)`` of output and target (at four
resolutions).

**Streaming.** A frame is computed at the sample it starts, from the params
of that sample, so the node streams sample-exactly at any block size. A
note's frames start ``1024 - 256 = 768`` samples before its onset in the
training data (so the onset has a full window sum), hence the node's
latency of 768 samples (48 ms): a trigger at sample t is heard from t + 768
on. Torch is not needed to play: the node runs the model's function in a
numba kernel (:mod:`._sing`) from the checkpoint's weights.

Checkpoint: the ``patchlib-neural`` format of :mod:`.checkpoint` (weights
only, config, sample rate, validation, training command) with
``arch: "sing"`` and the instrument names (``instruments``).
"""
from __future__ import annotations

import math
import os

import numpy as np

from patchlib import Node, Option, Output, Param, PatchError, Where, register

from . import _sing
from .pedal import _place, resolve_model

from .checkpoint import FORMAT, VERSION, _err  # the file format every neural node shares

ARCH = "sing"
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
#: a tiny random-weight SING for the contract suite; regenerate with
#: ``python -c "from nodes.neural.sing import write_test_model; write_test_model()"``
TEST_MODEL = os.path.join(_ROOT, "patches", "models", "test-tiny-sing.pt")
SHIPPED_MODEL = os.path.join(_ROOT, "patches", "models", "sing.pt")

#: the defaults of the shipped model's architecture
DEFAULT_CONFIG = {"n_instruments": 4, "inst_dim": 8, "hidden": 128, "latent": 32, "dec_hidden": 192,
                  "basis": 128, "harmonics": 96, "frame": 1024, "hop": 256, "sample_rate": 16000, "tune": True}
TINY_CONFIG = {"n_instruments": 4, "inst_dim": 2, "hidden": 8, "latent": 4, "dec_hidden": 8,
               "basis": 4, "harmonics": 8, "frame": 256, "hop": 64, "sample_rate": 16000, "tune": True}


# ------------------------------------------------------------------ conditioning (numpy)
def note_frames(n_samples: int, frame: int, hop: int) -> int:
    """Frames that cover a note of ``n_samples`` (note time) plus the lead of ``frame - hop`` before it."""
    return int(math.ceil((n_samples + frame - hop) / hop))


def note_conditioning(midi: float, velocity: float, n_frames: int, release: float | None, frame: int, hop: int,
                      sr: float, tail: float | None = None):
    """Per-frame features ``(n_frames, N_FEAT)``, phases ``theta`` ``(n_frames,)`` and ``active`` (bool) of a note.

    Exactly what the node computes when the note is triggered at output
    sample 0 and released at output sample ``release + frame - hop``
    (``release``: note-time samples; None: held). ``tail``: samples after
    the release at which frames stop (None: never).
    """
    feats = np.zeros((n_frames, _sing.N_FEAT))
    theta = np.zeros(n_frames)
    active = np.ones(n_frames, bool)
    f0 = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    t_r = None if release is None else release + frame - hop
    th = 0.0
    for j in range(n_frames):
        t = j * hop
        rel = t_r is not None and t >= t_r
        since = (t - t_r) if rel else 0.0
        if rel and tail is not None and since >= tail:
            active[j:] = False
            break
        _sing.frame_features(_sing.hz_to_midi(f0), velocity, (t - (frame - hop) + 0.5 * frame) / sr, float(rel),
                             (since + 0.5 * frame) / sr, feats[j])
        theta[j] = th
        th = th + math.pi * f0 * hop / sr
        th = th - 2.0 * math.pi * math.floor(th / (2.0 * math.pi))
    return feats.astype(np.float32), theta, active


def macs_per_frame(config: dict) -> dict:
    """Multiply-adds of one frame by part (the node's kernel; the partials' recurrence counts 2 per term)."""
    c = dict(DEFAULT_CONFIG, **config)
    E, H, D, DH = c["inst_dim"], c["hidden"], c["latent"], c["dec_hidden"]
    N, C, K = c["frame"], c["basis"], c["harmonics"]
    parts = {"lstm": 4 * H * (E + _sing.N_FEAT + H), "latent": D * H,
             "decoder": DH * (D + _sing.N_PITCH) + DH * DH + DH * (C + K), "basis": C * N,
             "partials": 2 * K * N, "window+ola": 2 * N}
    parts["total"] = sum(parts.values())
    return parts


# ------------------------------------------------------------------ the torch model
_NET = {}


def net_class():
    """The torch module class (built on first use, so importing this module does not import torch)."""
    if "cls" in _NET:
        return _NET["cls"]
    import torch
    from torch import nn
    from torch.nn import functional as F

    class SingNet(nn.Module):
        """SING: LSTM frame generator + per-frame decoder to windowed frames (overlap-added); see the module doc."""

        def __init__(self, n_instruments=4, inst_dim=8, hidden=128, latent=32, dec_hidden=192, basis=128,
                     harmonics=96, frame=1024, hop=256, sample_rate=16000, tune=False, encoder=False):
            super().__init__()
            self.n_instruments, self.frame, self.hop, self.sr = n_instruments, frame, hop, float(sample_rate)
            self.harmonics = harmonics
            self.emb = nn.Embedding(n_instruments, inst_dim)
            self.lstm = nn.LSTM(inst_dim + _sing.N_FEAT, hidden, batch_first=True)
            self.to_z = nn.Linear(hidden, latent)
            self.dec1 = nn.Linear(latent + _sing.N_PITCH, dec_hidden)
            self.dec2 = nn.Linear(dec_hidden, dec_hidden)
            self.coef = nn.Linear(dec_hidden, basis)
            self.amp = nn.Linear(dec_hidden, harmonics)
            self.basis = nn.Parameter(torch.randn(basis, frame) * (0.3 / math.sqrt(frame)))
            w = 0.5 * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame))  # periodic Hann / 2: OLA sum 1
            self.register_buffer("window", torch.tensor(w, dtype=torch.float32), persistent=False)
            with torch.no_grad():
                self.amp.weight.mul_(0.1)
                self.amp.bias.zero_()
            # the learnt intonation: a pitch offset per frame (cents) from the LSTM's state; it starts at 0
            self.tune = nn.Linear(hidden, 1) if tune else None
            if tune:
                with torch.no_grad():
                    self.tune.weight.mul_(0.01)
                    self.tune.bias.zero_()
            if encoder:
                self.enc1 = nn.Linear(frame // 2 + 1, dec_hidden)
                self.enc2 = nn.Linear(dec_hidden, latent)
            else:
                self.enc1 = self.enc2 = None

        def embed(self, inst):
            """Instrument embedding of fractional indices ``inst`` (any shape): rows interpolated."""
            u = inst.clamp(0, self.n_instruments - 1)
            i0 = u.floor().long()
            i1 = (i0 + 1).clamp(max=self.n_instruments - 1)
            a = (u - i0.to(u.dtype))[..., None]
            return (1 - a) * self.emb(i0) + a * self.emb(i1)

        def generate(self, inst, feats, cents: bool = False):
            """Latents ``(B, T, latent)`` from instruments ``(B,)`` and frame features ``(B, T, N_FEAT)``;
            with ``cents``, also the intonation ``(B, T)`` (cents from the asked pitch; zeros without a head)."""
            e = self.embed(inst)[:, None, :].expand(-1, feats.shape[1], -1)
            y, _ = self.lstm(torch.cat([e, feats], -1))
            if not cents:
                return self.to_z(y)
            if self.tune is None:
                return self.to_z(y), torch.zeros(y.shape[:2], dtype=y.dtype)
            return self.to_z(y), _sing.TUNE_MAX * torch.tanh(self.tune(y)[..., 0])

        def encode(self, frames):
            """Latents from target audio frames ``(B, T, frame)`` (the autoencoder's encoder)."""
            spec = torch.fft.rfft(frames * self.window * 2.0, dim=-1).abs() ** 2
            x = torch.log(1e-4 + spec) / 10.0
            return self.enc2(F.leaky_relu(self.enc1(x), 0.2))

        def decode(self, z, pfeat, theta, f0, f0t=None):
            """Windowed frames ``(B, T, frame)`` from latents, pitch features ``(B, T, N_PITCH)``,
            phases of f0/2 at each frame start ``(B, T)`` (float64) and f0 in Hz ``(B,)``; ``f0t (B, T)``:
            the partials' f0 per frame (the intonation; None: f0 throughout)."""
            h = F.leaky_relu(self.dec1(torch.cat([z, pfeat], -1)), 0.2)
            h = F.leaky_relu(self.dec2(h), 0.2)
            co = self.coef(h)
            K, N = self.harmonics, self.frame
            k = torch.arange(1, K + 1, dtype=torch.float64)
            f0d = f0.to(torch.float64)
            mask = (0.5 * k[None, :] * f0d[:, None] < 0.5 * self.sr).to(z.dtype)  # (B, K)
            am = self.amp(h) * mask[:, None, :]
            if f0t is not None:
                harm = frame_partials(am, theta, f0t, self.sr, N)
                return (harm + torch.matmul(co, self.basis)) * self.window
            n = torch.arange(N, dtype=torch.float64)
            ang = torch.remainder(k[None, :, None] * (math.pi * f0d / self.sr)[:, None, None] * n, 2 * math.pi)
            Ct, St = torch.cos(ang).to(z.dtype), torch.sin(ang).to(z.dtype)  # (B, K, N)
            kth = k * theta.to(torch.float64)[..., None]  # (B, T, K)
            ck, sk = torch.cos(kth).to(z.dtype), torch.sin(kth).to(z.dtype)
            harm = torch.matmul(am * ck, Ct) - torch.matmul(am * sk, St)
            return (harm + torch.matmul(co, self.basis)) * self.window

        def ola(self, frames):
            """Overlap-add ``(B, T, frame)`` at ``hop``: ``(B, (T - 1) hop + frame)``."""
            return overlap_add(frames, self.hop)

    _NET["cls"] = SingNet
    return SingNet


def frame_partials(am, theta, f0t, sr: float, N: int):
    """``sum_k am_k cos(k (theta + pi f0 n / sr))`` with one f0 per frame: ``(B, T, N)`` in ``am``'s dtype.

    ``am (B, T, K)``: half-harmonic amplitudes; ``theta (B, T)``: phase of
    f0/2 at each frame start; ``f0t (B, T)``: Hz. Computed in chunks of 8
    partials (the tables are ``B x T x N`` per partial). Also the VAE's.
    """
    import torch

    K = am.shape[-1]
    k = torch.arange(1, K + 1, dtype=torch.float64)
    n = torch.arange(N, dtype=torch.float64)
    phi = theta.to(torch.float64)[..., None] + (math.pi * f0t.to(torch.float64) / sr)[..., None] * n  # (B, T, N)
    harm = 0.0
    for k0 in range(0, K, 8):
        kk = k[k0:k0 + 8]
        c = torch.cos(torch.remainder(kk[:, None, None, None] * phi[None], 2 * math.pi)).to(am.dtype)
        harm = harm + torch.einsum("btk,kbtn->btn", am[..., k0:k0 + 8], c)
    return harm


def frame_thetas(f0_frames: np.ndarray, frame: int, hop: int, sr: float) -> np.ndarray:
    """Phase of f0/2 at each frame start, as the node's kernel carries it (float64, mod 2 pi): the first
    frame at 0, then the frames' phases agree at their centres (:func:`._sing.carry_theta`)."""
    th = np.zeros(len(f0_frames))
    for j, f in enumerate(f0_frames):
        th[j] = 0.0 if j == 0 else _sing.start_theta(carried, float(f), frame, hop, sr)
        carried = _sing.carry_theta(th[j], float(f), frame, hop, sr)
    return th


def overlap_add(frames, hop: int):
    """Overlap-add torch frames ``(B, T, N)`` every ``hop`` samples: ``(B, (T - 1) hop + N)`` (also the VAE's)."""
    from torch.nn import functional as F

    B, T, N = frames.shape
    L = (T - 1) * hop + N
    y = F.fold(frames.transpose(1, 2), output_size=(1, L), kernel_size=(1, N), stride=(1, hop))
    return y.reshape(B, L)


def build_net(config: dict, encoder: bool = False):
    return net_class()(**config, encoder=encoder)


# ------------------------------------------------------------------ checkpoints
def save(path, model, instruments, validation=None, train_command: str = "") -> None:
    """Write a SING checkpoint (no encoder weights: the node does not need them)."""
    cfg = {k: getattr(model, "_cfg")[k] for k in DEFAULT_CONFIG} if hasattr(model, "_cfg") else None
    if cfg is None:
        raise ValueError("the model has no _cfg (build it with build_model)")
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
          if not k.startswith(("enc1.", "enc2."))}
    data = {"format": FORMAT, "version": VERSION, "arch": ARCH, "config": dict(cfg),
            "sample_rate": float(cfg["sample_rate"]), "knobs": [], "instruments": list(instruments),
            "validation": dict(validation or {}), "train_command": str(train_command), "state_dict": sd}
    write_checkpoint(path, data)


def write_checkpoint(path, data: dict) -> None:
    """``torch.save`` a checkpoint dict atomically (to ``path.partial``, then renamed), making its folder."""
    import torch

    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = os.fspath(path) + ".partial"
    torch.save(data, tmp)
    os.replace(tmp, path)


def build_model(config: dict, encoder: bool = False):
    """A fresh SingNet from a config (missing keys take :data:`DEFAULT_CONFIG`'s values)."""
    cfg = dict(DEFAULT_CONFIG, **config)
    m = build_net(cfg, encoder=encoder)
    m._cfg = cfg
    return m


_cache: dict = {}


def cache_key(path) -> tuple:
    """The key of a loaded model in a module's cache: the file's real path, mtime and size."""
    st = os.stat(path) if os.path.isfile(path) else None
    return (os.path.realpath(path), st and st.st_mtime_ns, st and st.st_size)


def checked_model(build, data: dict, name, arch: str):
    """``build()``'s model with ``data["state_dict"]`` loaded; errors name the file (also the VAE's loader).

    The weights must match the architecture exactly and be finite.
    """
    import torch

    try:
        model = build()
        missing, unknown = model.load_state_dict(data["state_dict"], strict=False)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise _err(name, f"bad {arch} checkpoint: {str(e).splitlines()[0][:300]}") from None
    if missing or unknown:
        raise _err(name, f"weights do not match the declared architecture: missing {missing[:5]} unknown {unknown[:5]}")
    if not all(torch.isfinite(v).all() for v in data["state_dict"].values()):
        raise _err(name, "weights hold NaN or inf")
    return model


def load(path, name=None) -> dict:
    """A SING checkpoint read with ``weights_only=True``, checked; cached by path, size and mtime."""
    name = name or path
    key = cache_key(path)
    if key in _cache:
        return _cache[key]
    from .checkpoint import read

    data = read(path, name, train="sing")
    if data.get("arch") != ARCH:
        raise _err(name, f"architecture {data.get('arch')!r}, the sing node plays 'sing' models",
                   hint="a pedal model goes in a 'pedal' node")
    cfg = dict(data["config"])
    cfg.setdefault("tune", False)  # checkpoints written before the intonation head have none
    model = checked_model(lambda: build_model(cfg), data, name, ARCH)
    names = list(data.get("instruments") or [f"instrument {i}" for i in range(model.n_instruments)])
    out = {"data": data, "model": model.eval(), "instruments": names, "weights": numpy_weights(model)}
    _cache[key] = out
    return out


def numpy_weights(model) -> tuple:
    """The weights in the order :func:`._sing.sing_block` takes them (float32, contiguous: half the memory
    traffic of float64 per frame; the kernel accumulates in float64)."""
    sd = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
    f = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return (f(sd["emb.weight"]), f(sd["lstm.weight_ih_l0"]), f(sd["lstm.weight_hh_l0"]),
            f(sd["lstm.bias_ih_l0"] + sd["lstm.bias_hh_l0"]), f(sd["to_z.weight"]), f(sd["to_z.bias"]),
            f(sd["dec1.weight"]), f(sd["dec1.bias"]), f(sd["dec2.weight"]), f(sd["dec2.bias"]),
            f(sd["coef.weight"]), f(sd["coef.bias"]), f(sd["amp.weight"]), f(sd["amp.bias"]), f(sd["basis"]),
            f(model.window.double().numpy()),
            # the intonation head (zeros without one: no offset, the asked pitch exactly)
            f(sd["tune.weight"]) if "tune.weight" in sd else np.zeros((1, model.lstm.hidden_size), np.float32),
            f(sd["tune.bias"]) if "tune.bias" in sd else np.zeros(1, np.float32))


def write_test_model(path: str = TEST_MODEL, seed: int = 0) -> str:
    """Write a tiny deterministic SING checkpoint (random weights, 4 instruments; a few KB)."""
    import torch

    torch.manual_seed(seed)
    m = build_model(TINY_CONFIG)
    save(path, m, ["a", "b", "c", "d"], validation={"note": "random weights: a test fixture, not a trained model"},
         train_command="python -c 'from nodes.neural.sing import write_test_model; write_test_model()'")
    return path


# ------------------------------------------------------------------ offline generation (torch)
def generate(model, instrument: float, pitch_hz: float, velocity: float, seconds: float, release: float | None,
             tail: float | None = 1.0):
    """One note, offline (torch): note-time audio (the onset at sample 0), ``seconds`` long, float32.

    ``release``: note-off time in seconds (note time) or None. ``tail``:
    seconds after the release at which frames stop (as the node does).
    """
    import torch

    sr, N, hop = model.sr, model.frame, model.hop
    L = int(round(seconds * sr))
    T = note_frames(L, N, hop)
    midi = 69.0 + 12.0 * math.log2(pitch_hz / 440.0)
    feats, theta, active = note_conditioning(midi, velocity, T, None if release is None else int(round(release * sr)),
                                             N, hop, sr, None if tail is None else tail * sr)
    with torch.no_grad():
        ft = torch.from_numpy(feats)[None]
        z, cents = model.generate(torch.tensor([float(instrument)]), ft, cents=True)
        f0 = torch.tensor([float(pitch_hz)], dtype=torch.float64)
        if model.tune is None:
            frames = model.decode(z, ft[..., :_sing.N_PITCH], torch.from_numpy(theta)[None], f0)
        else:  # the learnt intonation: each frame's partials at its own f0, their phase running on
            f0t = float(pitch_hz) * 2.0 ** (cents[0].double().numpy() / 1200.0)
            th = torch.from_numpy(frame_thetas(f0t, N, hop, sr))[None]
            frames = model.decode(z, ft[..., :_sing.N_PITCH], th, f0, torch.from_numpy(f0t)[None])
        frames = frames * torch.from_numpy(active.astype(np.float32))[None, :, None]
        y = model.ola(frames)[0].numpy()
    lead = N - hop
    return np.ascontiguousarray(y[lead:lead + L], dtype=np.float32)


# ------------------------------------------------------------------ the node
def rate_weights(weights: tuple, frame: int, hop: int, model_sr: float, sr: float):
    """The weights for playing at ``sr`` a model trained at ``model_sr``: ``(weights, frame, hop)``.

    Frames keep their duration (hop ``round(hop * sr / model_sr)``, frame
    ``frame / hop`` hops); the learnt basis is resampled to the new frame
    length (band-limited, by FFT: it holds nothing above the model's
    Nyquist) and the window recomputed. The pitch-locked partials are
    computed at the patch's rate, up to the model's Nyquist.
    """
    if abs(sr - model_sr) < 0.5:
        return weights, frame, hop
    hop2 = max(1, int(round(hop * sr / model_sr)))
    n2 = hop2 * (frame // hop)
    basis = weights[14]
    X = np.fft.rfft(basis, axis=1)
    Y = np.zeros((basis.shape[0], n2 // 2 + 1), dtype=complex)
    k = min(X.shape[1], Y.shape[1])
    Y[:, :k] = X[:, :k]
    if n2 < frame and n2 % 2 == 0:
        Y[:, -1] = Y[:, -1].real
    basis2 = np.ascontiguousarray(np.fft.irfft(Y, n2, axis=1) * (n2 / frame), dtype=np.float32)
    window = (0.5 * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n2) / n2))).astype(np.float32)
    return weights[:14] + (basis2, window) + tuple(weights[16:]), n2, hop2


class _ContractSettings:
    def __get__(self, obj, owner):
        return {"model": os.path.relpath(TEST_MODEL, os.getcwd())}


def _instrument_param(path, file) -> Param:
    m = load(path, file)
    names = m["instruments"]
    hi = float(max(len(names) - 1, 1))
    listing = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    return Param(0.0, (0.0, hi), doc=f"instrument index ({listing}); between two, their embeddings interpolate")


@register("sing")
class Sing(Node):
    """SING neural instrument (Défossez et al. 2018): note events start notes, a model file plays them.

    An LSTM over 16 ms frames (instrument, pitch, velocity and time
    embeddings) drives a decoder that emits windowed 1024-sample frames,
    overlap-added. ``trigger`` (value: velocity 0..1) starts a note at
    ``pitch``; ``release`` ends it (the note goes on generating for ``tail``
    seconds). ``instrument`` picks the timbre (fractional: interpolated). A
    voice node: under ``poly`` each voice is one ``sing``; alone it is
    monophonic. Latency: a frame's lead, 48 ms (768 samples at 16 kHz;
    declared). At another sample rate frames keep their 16 ms (the learnt
    basis is resampled). See docs/generators.md.

    Example: ``voice: {type: sing, model: models/sing.pt, pitch: pitch, instrument: 1.5}``
    """

    outputs = {"out": Output("the generated notes", channels=1, range=(-1.0, 1.0))}
    params = {"pitch": Param(261.63, (20.0, 4000.0), "Hz", "exp", doc="note pitch (read at each 16 ms frame)"),
              "instrument": Param(0.0, (0.0, 3.0), doc="instrument index (fractional: embeddings interpolate)")}
    options = {
        "model": Option(None, kind="path", required=True, doc="SING checkpoint relative to the patch's folder"),
        "tail": Option(1.0, kind=float, doc="seconds a released note goes on generating (the training notes "
                                            "end 1 s after their release)"),
    }
    events = {"trigger": "start a note (value: velocity 0..1)", "release": "release the note"}
    contract_settings = _ContractSettings()

    @classmethod
    def ports(cls, opts):
        file = opts.get("model")
        if not file:
            return cls.inputs, cls.outputs, cls.params
        base, where = _place(file)
        try:
            path = resolve_model(file, base)
            return cls.inputs, cls.outputs, {"pitch": cls.params["pitch"], "instrument": _instrument_param(path, file)}
        except PatchError as e:
            e.where = Where(where.file, where.line, where.node, e.where.key or "model")
            raise

    def configure(self, in_channels):
        self.model_file = self.opts.get("model")
        self.model_path = resolve_model(self.model_file, self.ctx.base_dir)
        self._m = load(self.model_path, self.model_file)
        return {"out": 1}

    def prepare(self, ctx):
        super().prepare(ctx)
        m = self._m
        cfg = m["data"]["config"]
        self.sr = float(ctx.sample_rate)
        msr = float(m["data"]["sample_rate"])
        self.weights, self.frame_len, self.hop = rate_weights(m["weights"], int(cfg["frame"]), int(cfg["hop"]),
                                                              msr, self.sr)
        self.latency = self.frame_len - self.hop
        self.model_nyquist = 0.5 * msr
        tail = float(self.opts.get("tail", 1.0))
        if not tail >= 0.0:
            raise PatchError(f"tail must be >= 0 seconds, got {tail}", Where(key="tail"))
        self.tail_samples = tail * self.sr
        E, H = cfg["inst_dim"], cfg["hidden"]
        self.state = np.zeros(_sing.STATE)
        self.h = np.zeros(H)
        self.c = np.zeros(H)
        self.ola = np.zeros(self.frame_len)
        self._frame = np.zeros(self.frame_len)
        self._feat = np.zeros(_sing.N_FEAT)
        self._scratch = np.zeros(_sing.scratch_size(E, _sing.N_FEAT, H, cfg["latent"], cfg["dec_hidden"],
                                                    cfg["basis"], cfg["harmonics"], self.frame_len))
        self.reset()

    def reset(self):
        self.state[:] = 0.0
        self.h[:] = 0.0
        self.c[:] = 0.0
        self.ola[:] = 0.0

    def state_items(self):
        return {"state": self.state, "h": self.h, "c": self.c, "ola": self.ola}

    def event(self, kind, value=1.0):
        s = self.state
        if kind == "trigger":
            # a new note: the LSTM starts again; what the last note still had in the OLA buffer plays out
            s[0], s[1], s[2], s[3], s[4], s[5] = 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
            s[6] = min(max(float(value), 0.0), 1.0)
            self.h[:] = 0.0
            self.c[:] = 0.0
        elif kind == "release":
            if s[0] > 0.5 and s[4] < 0.5:
                s[4], s[5] = 1.0, 0.0

    def process(self, n, t):
        _sing.sing_block(self.out["out"][0], n, self.par["pitch"], self.par["instrument"], self.state, self.h,
                         self.c, self.ola, self._frame, self._feat, self._scratch, *self.weights, self.sr,
                         float(self.hop), self.tail_samples, self.model_nyquist)
