"""A variational autoencoder of timbre (Kingma & Welling 2013), and the ``vae_encoder``/``vae_decoder`` nodes.

**What it learns.** A continuous latent space of the project's instruments,
frame by frame (hop 256 samples, 16 ms at 16 kHz), in the spirit of
Engel et al. 2017 (NSynth's autoencoder) and Esling et al. 2018 (timbre
spaces): the encoder sees one frame's log-mel spectrum *relative to its
loudness*; pitch and loudness do not have to be in the latent because they
travel beside it as explicit signals (f0 in Hz, loudness in dB), so a patch
can keep the pitch and dynamics of one sound and take the timbre of another
(music translation in the sense of Mor et al. 2018).

**Encoder.** Each frame (the last 1024 samples, Hann window) gives its
power spectrum (a radix-2 FFT), its A-weighted loudness (exactly
:func:`patchlib.dataset.loudness_db`), 64 mel-band energies in dB minus the
loudness, and its f0 by YIN (:func:`patchlib.dataset.yin_f0`'s steps). An
MLP maps the mel features to the latent's mean and log-variance.

**Decoder** (SING's, :mod:`.sing`, conditioned on the latent + f0 +
loudness instead of instrument/pitch/velocity embeddings): an MLP from
``[z, pitch features of f0, loudness]`` gives the coefficients of a learnt
basis of 1024-sample waveforms (SING's transposed convolution) and the
amplitudes of a pitch-locked basis of half-harmonics of f0 (``k f0 / 2``,
continuous phase across frames: the bell's hum at f0/2 and its inharmonic
partials sit on them or in the free basis), plus white noise shaped by
per-frame band gains (DDSP's filtered noise: the bow's hiss, which a fixed
basis cannot make). The frame is multiplied by the loudness as a gain
(``10^(dB/20)``), windowed and overlap-added every hop (75 % overlap). Why
this and not DDSP's harmonic-plus-noise alone: docs/vae.md.

**Streaming.** Both nodes compute a frame every ``hop`` samples counted
from the start, inside one numba kernel per block (:mod:`._vae`), from the
checkpoint's weights (no torch at play time). The encoder's values describe
the frame that ends at the current sample (centre ``N/2`` samples earlier:
its declared latency, 512 samples); the decoder's frame starts where it is
computed (centre ``N/2`` later: latency 512). Encoder into decoder
reconstructs the input 1024 samples (64 ms) late.

Checkpoint: the ``patchlib-neural`` format of :mod:`.checkpoint` with
``arch: "vae"``, ``points`` (each instrument's mean latent) and
``spread`` (the latents' standard deviation per dimension).
"""
from __future__ import annotations

import math
import os

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _vae
from .checkpoint import FORMAT, VERSION, _err
from .pedal import _place, resolve_model
from .sing import cache_key, checked_model, frame_partials, note_frames, overlap_add, write_checkpoint

ARCH = "vae"
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
#: a tiny random-weight VAE for the contract suite; regenerate with
#: ``python -c "from nodes.neural.vae import write_test_model; write_test_model()"``
TEST_MODEL = os.path.join(_ROOT, "patches", "models", "test-tiny-vae.pt")
SHIPPED_MODEL = os.path.join(_ROOT, "patches", "models", "vae.pt")

DEFAULT_CONFIG = {"latent": 8, "n_mels": 64, "enc_hidden": 128, "dec_hidden": 128, "basis": 96,
                  "harmonics": 96, "noise_bands": 32, "frame": 1024, "hop": 256, "sample_rate": 16000, "fmin": 40.0,
                  "fmax": 2100.0, "yin_threshold": 0.15}
TINY_CONFIG = {"latent": 3, "n_mels": 8, "enc_hidden": 8, "dec_hidden": 8, "basis": 4, "harmonics": 8,
               "noise_bands": 4, "frame": 256, "hop": 64, "sample_rate": 16000, "fmin": 80.0, "fmax": 2100.0,
               "yin_threshold": 0.15}


# ------------------------------------------------------------------ fixed analysis tables (numpy)
def mel_matrix(n_mels: int, frame: int, sr: float, fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters ``(n_mels, frame // 2 + 1)`` (HTK mel scale), float64."""
    fmax = fmax or 0.5 * sr
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    imel = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    f = np.fft.rfftfreq(frame, 1.0 / sr)
    W = np.zeros((n_mels, f.size))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (f - lo) / max(c - lo, 1e-9)
        down = (hi - f) / max(hi - c, 1e-9)
        W[m] = np.maximum(0.0, np.minimum(up, down))
        if W[m].sum() == 0:  # narrower than a bin: take the nearest bin
            W[m, int(np.argmin(np.abs(f - c)))] = 1.0
    return W


def noise_interp(bands: int, frame: int) -> np.ndarray:
    """``(bands, frame // 2 + 1)``: linear interpolation of band gains (evenly spaced, 0 .. Nyquist) to the bins."""
    nb = frame // 2 + 1
    W = np.zeros((bands, nb))
    if bands == 0:
        return W
    pos = np.linspace(0, bands - 1, nb)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, bands - 1)
    W[i0, np.arange(nb)] += 1 - (pos - i0)
    W[i1, np.arange(nb)] += pos - i0
    return W


def decoder_noise(n_frames: int, frame: int, seed: float = _vae.NOISE_SEED) -> np.ndarray:
    """The white noise ``(n_frames, frame)`` the decoder's kernel draws after a reset, frame by frame."""
    st = np.array([0.0, 0.0, 0.0, float(seed)])
    out = np.zeros((n_frames, frame))
    for j in range(n_frames):
        _vae.noise_fill(out[j], st, 3)
    return out


def tables(config: dict) -> dict:
    """The fixed (not learnt) arrays of a config: analysis window, A-weighting, mel filters, FFT tables."""
    from patchlib.dataset import _a_weight

    N, sr = int(config["frame"]), float(config["sample_rate"])
    cos_t, sin_t, rev = _vae.fft_tables(N)
    return {"hann": np.hanning(N), "aw": _a_weight(np.fft.rfftfreq(N, 1.0 / sr)),
            "mel": mel_matrix(int(config["n_mels"]), N, sr), "cos": cos_t, "sin": sin_t, "rev": rev,
            # periodic Hann / 2: overlap-added at 75 % it sums to 1
            "window": 0.5 * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N) / N))}


def yin_lags(config: dict, sr: float | None = None) -> tuple[int, int]:
    """``(max_lag, min_lag)`` of the encoder's YIN (as :func:`patchlib.dataset.yin_f0` computes them)."""
    sr = float(sr or config["sample_rate"])
    N = int(config["frame"])
    return min(int(sr / float(config["fmin"])) + 2, N // 2), max(2, int(sr / float(config["fmax"])))


def macs_per_frame(config: dict) -> dict:
    """Multiply-adds of one frame by part (the nodes' kernels; YIN's difference function counted directly)."""
    c = dict(DEFAULT_CONFIG, **config)
    N, M, EH, D, DH = c["frame"], c["n_mels"], c["enc_hidden"], c["latent"], c["dec_hidden"]
    C, K = c["basis"], c["harmonics"]
    max_lag, _ = yin_lags(c)
    nb = N // 2 + 1
    enc = {"fft": 2 * N * int(math.log2(N)), "mel": M * nb, "encoder": EH * M + EH * EH + 2 * D * EH,
           "yin": (max_lag - 1) * (N - max_lag)}
    NB = c.get("noise_bands", 0)
    dec = {"decoder": DH * (D + _vae.N_COND) + DH * DH + DH * (C + K + NB), "basis": C * N, "partials": 2 * K * N,
           "noise": (NB * nb + 4 * N * int(math.log2(N))) if NB else 0, "window+ola": 2 * N}
    return {"encoder": sum(enc.values()), "decoder": sum(dec.values()), "total": sum(enc.values()) + sum(dec.values()),
            "parts": {**enc, **dec}}


# ------------------------------------------------------------------ the torch model
_NET = {}


def net_class():
    """The torch module class (built on first use: importing this module does not import torch)."""
    if "cls" in _NET:
        return _NET["cls"]
    import torch
    from torch import nn
    from torch.nn import functional as F

    class VaeNet(nn.Module):
        """Frame VAE: log-mel encoder -> (mu, logvar); SING-style decoder from [z, f0, loudness]; see the module doc."""

        def __init__(self, latent=8, n_mels=64, enc_hidden=128, dec_hidden=128, basis=96, harmonics=96, noise_bands=0,
                     frame=1024, hop=256, sample_rate=16000, fmin=40.0, fmax=2100.0, yin_threshold=0.15):
            super().__init__()
            self.latent, self.frame, self.hop, self.sr = latent, frame, hop, float(sample_rate)
            self.harmonics = harmonics
            tb = tables({"frame": frame, "sample_rate": sample_rate, "n_mels": n_mels})
            for k in ("hann", "aw", "mel", "window"):
                self.register_buffer(k, torch.tensor(tb[k], dtype=torch.float64), persistent=False)
            self.enc1 = nn.Linear(n_mels, enc_hidden)
            self.enc2 = nn.Linear(enc_hidden, enc_hidden)
            self.mu = nn.Linear(enc_hidden, latent)
            self.logvar = nn.Linear(enc_hidden, latent)
            self.dec1 = nn.Linear(latent + _vae.N_COND, dec_hidden)
            self.dec2 = nn.Linear(dec_hidden, dec_hidden)
            self.coef = nn.Linear(dec_hidden, basis)
            self.amp = nn.Linear(dec_hidden, harmonics)
            self.basis = nn.Parameter(torch.randn(basis, frame) * (0.3 / math.sqrt(frame)))
            self.noise_bands = noise_bands
            if noise_bands:  # filtered noise (DDSP's noise synthesiser): band gains per frame
                self.noise = nn.Linear(dec_hidden, noise_bands)
                self.register_buffer("interp", torch.tensor(noise_interp(noise_bands, frame), dtype=torch.float32),
                                     persistent=False)
            with torch.no_grad():
                self.amp.weight.mul_(0.1)
                self.amp.bias.zero_()
                self.logvar.bias.fill_(-2.0)
                if noise_bands:
                    self.noise.weight.mul_(0.1)
                    self.noise.bias.fill_(-5.0)

        @torch.no_grad()
        def analyse(self, frames):
            """Encoder features ``(..., n_mels)`` and loudness (dB) ``(...)`` of frames ``(..., frame)`` (float32)."""
            x = frames.to(torch.float64)
            N = x.shape[-1]
            p = torch.fft.rfft(x * self.hann, dim=-1).abs() ** 2
            k = torch.full((p.shape[-1],), 2.0, dtype=torch.float64)
            k[0] = 1.0
            k[-1] = 1.0
            ms = (p * self.aw * k).sum(-1) / N / (self.hann ** 2).sum()
            loud = torch.clamp(10 * torch.log10(ms.clamp_min(1e-30)), min=-120.0)
            feat = (10 * torch.log10(p @ self.mel.T + 1e-12) - loud[..., None]) / 20.0
            return feat.float(), loud.clamp_min(_vae.LOUD_FLOOR).float()

        def encode(self, feat):
            """``(mu, logvar)`` of the latent from encoder features ``(..., n_mels)``."""
            h = F.leaky_relu(self.enc1(feat), 0.2)
            h = F.leaky_relu(self.enc2(h), 0.2)
            return self.mu(h), self.logvar(h).clamp(-20.0, 20.0)

        def cond(self, f0, loud):
            """Conditioning ``(..., N_COND)`` from f0 (Hz) and loudness (dB) ``(...)``: as ``_vae.cond_features``."""
            f0 = f0.to(torch.float64)
            m = (69.0 + 12.0 * torch.log2(f0.clamp_min(1.0) / 440.0)).clamp(24.0, 108.0)
            feats = [(m - 60.0) / 24.0]
            for P in _vae.PITCH_PERIODS:
                a = 2 * math.pi * m / P
                feats += [torch.sin(a), torch.cos(a)]
            feats.append((loud.to(torch.float64).clamp_min(_vae.LOUD_FLOOR) + 40.0) / 40.0)
            return torch.stack(feats, -1).float()

        def decode(self, z, f0, loud, theta, noise=None):
            """Windowed frames ``(B, T, frame)`` from latents ``(B, T, D)``, f0 in Hz (``(B,)`` per note or
            ``(B, T)`` per frame), loudness in dB ``(B, T)`` and the phase of f0/2 at each frame start
            ``(B, T)`` (float64). ``noise``: the white noise ``(B, T, frame)`` the noise bands shape (default:
            drawn from torch's generator; :func:`decoder_noise` gives the kernel's)."""
            B, T = z.shape[:2]
            f0d = f0.to(torch.float64)
            f0t = f0d[:, None].expand(B, T) if f0d.dim() == 1 else f0d
            h = F.leaky_relu(self.dec1(torch.cat([z, self.cond(f0t, loud)], -1)), 0.2)
            h = F.leaky_relu(self.dec2(h), 0.2)
            co = self.coef(h)
            k = torch.arange(1, self.harmonics + 1, dtype=torch.float64)
            mask = (0.5 * k * f0t[..., None] < 0.5 * self.sr).to(z.dtype)  # (B, T, K)
            am = self.amp(h) * mask
            y = self.partials(am, f0d, f0t, theta, z.dtype) + torch.matmul(co, self.basis)
            if self.noise_bands:
                N = self.frame
                gains = torch.exp(self.noise(h).clamp(max=5.0)) @ self.interp  # (B, T, bins)
                if noise is None:
                    noise = (2.0 * torch.rand(B, T, N, dtype=z.dtype) - 1.0) * math.sqrt(3.0)
                y = y + torch.fft.irfft(torch.fft.rfft(noise.to(z.dtype), dim=-1) * gains, N, dim=-1)
            g = (10.0 ** (loud.clamp_min(_vae.LOUD_FLOOR) / 20.0)).to(z.dtype)[..., None]
            return y * g * self.window.to(z.dtype)

        def partials(self, am, f0d, f0t, theta, dtype):
            """``sum_k am_k cos(k (theta + pi f0 n / sr))`` per frame ``(B, T, frame)``: the pitch-locked part."""
            K, N = self.harmonics, self.frame
            k = torch.arange(1, K + 1, dtype=torch.float64)
            n = torch.arange(N, dtype=torch.float64)
            kth = k * theta.to(torch.float64)[..., None]  # (B, T, K)
            ck, sk = torch.cos(kth).to(dtype), torch.sin(kth).to(dtype)
            if f0d.dim() == 1:  # one f0 per note: (B, K, N) tables
                ang = torch.remainder(k[None, :, None] * (math.pi * f0d / self.sr)[:, None, None] * n, 2 * math.pi)
                Ct, St = torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)
                harm = torch.matmul(am * ck, Ct) - torch.matmul(am * sk, St)
            else:  # one f0 per frame (whole notes, tests): cos(k (theta + delta n)) frame by frame
                harm = frame_partials(am.to(dtype), theta, f0t, self.sr, N)
            return harm

        def ola(self, frames):
            """Overlap-add ``(B, T, frame)`` at ``hop``: ``(B, (T - 1) hop + frame)``."""
            return overlap_add(frames, self.hop)

    _NET["cls"] = VaeNet
    return VaeNet


def build_model(config: dict):
    """A fresh VaeNet from a config (missing keys take :data:`DEFAULT_CONFIG`'s values)."""
    cfg = dict(DEFAULT_CONFIG, **config)
    m = net_class()(**cfg)
    m._cfg = cfg
    return m


def theta_of(f0_frames: np.ndarray, hop: int, sr: float, theta0: float = 0.0) -> np.ndarray:
    """Phase of f0/2 at each frame start, as the decoder accumulates it (float64, mod 2 pi)."""
    th = np.zeros(len(f0_frames))
    t = theta0
    for j, f in enumerate(f0_frames):
        th[j] = t
        t = t + math.pi * min(max(float(f), _vae.F0_MIN), 0.5 * sr) * hop / sr
        t = t - 2.0 * math.pi * math.floor(t / (2.0 * math.pi))
    return th


# ------------------------------------------------------------------ checkpoints
def save(path, model, points: dict, spread, validation=None, train_command: str = "") -> None:
    """Write a VAE checkpoint: weights, config, named latent points and the latents' spread."""
    import json

    cfg = {k: model._cfg[k] for k in DEFAULT_CONFIG if k in model._cfg}
    if model._cfg.get("decoder", "sing") != "sing":
        cfg["decoder"] = model._cfg["decoder"]
    # plain Python types only: the file is read back with weights_only=True
    validation = json.loads(json.dumps(validation or {}, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    data = {"format": FORMAT, "version": VERSION, "arch": ARCH, "config": dict(cfg),
            "sample_rate": float(cfg["sample_rate"]), "knobs": [],
            "points": {str(k): [float(x) for x in v] for k, v in points.items()},
            "spread": [float(x) for x in spread], "validation": dict(validation or {}),
            "train_command": str(train_command), "state_dict": sd}
    write_checkpoint(path, data)


_cache: dict = {}


def load(path, name=None) -> dict:
    """A VAE checkpoint read with ``weights_only=True`` and checked; cached by path, size and mtime.

    Returns ``{"data", "model", "config", "points", "spread", "weights"}``.
    """
    name = name or path
    key = cache_key(path)
    if key in _cache:
        return _cache[key]
    from .checkpoint import read

    data = read(path, name, train="vae")
    if data.get("arch") != ARCH:
        raise _err(name, f"architecture {data.get('arch')!r}, the VAE nodes play 'vae' models",
                   hint="train one with 'patchlib train vae'")
    if isinstance(data.get("config"), dict) and data["config"].get("decoder", "sing") != "sing":
        raise _err(name, f"a VAE with the {data['config']['decoder']!r} decoder (trained for the comparison in "
                         "docs/vae.md): the nodes play the 'sing' decoder only")
    # files from before the noise bands have none
    model = checked_model(lambda: build_model(dict({"noise_bands": 0}, **data["config"])), data, name, ARCH)
    D = model.latent
    points = {str(k): np.asarray(v, np.float64) for k, v in (data.get("points") or {}).items()}
    spread = np.asarray(data.get("spread") or np.ones(D), np.float64)
    if spread.shape != (D,) or any(p.shape != (D,) for p in points.values()):
        raise _err(name, f"stored latent points or spread are not {D}-dimensional like the model")
    out = {"data": data, "model": model.eval(), "config": model._cfg, "points": points, "spread": spread,
           "weights": numpy_weights(model)}
    _cache[key] = out
    return out


def numpy_weights(model) -> dict:
    """The weights as contiguous float32 arrays: ``enc`` and ``dec`` tuples in the kernels' argument order."""
    sd = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
    f = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    enc = tuple(f(sd[k]) for k in ("enc1.weight", "enc1.bias", "enc2.weight", "enc2.bias", "mu.weight", "mu.bias",
                                   "logvar.weight", "logvar.bias"))
    dec = tuple(f(sd[k]) for k in ("dec1.weight", "dec1.bias", "dec2.weight", "dec2.bias", "coef.weight",
                                   "coef.bias", "amp.weight", "amp.bias", "basis"))
    DH = sd["dec2.weight"].shape[0]
    noise = (f(sd["noise.weight"]), f(sd["noise.bias"])) if "noise.weight" in sd else (
        np.zeros((0, DH), np.float32), np.zeros(0, np.float32))
    return {"enc": enc, "dec": dec + noise}


def write_test_model(path: str = TEST_MODEL, seed: int = 0) -> str:
    """Write a tiny deterministic VAE checkpoint (random weights; a few KB)."""
    import torch

    torch.manual_seed(seed)
    m = build_model(TINY_CONFIG)
    rng = np.random.default_rng(seed)
    D = TINY_CONFIG["latent"]
    pts = {n: rng.standard_normal(D) * 0.5 for n in ("a", "b", "c", "d")}
    save(path, m, pts, np.ones(D), validation={"note": "random weights: a test fixture, not a trained model"},
         train_command="python -c 'from nodes.neural.vae import write_test_model; write_test_model()'")
    return path


# ------------------------------------------------------------------ streaming engines (numpy + numba, no torch)
class _Engine:
    """What the encoder's and decoder's engines share: the model's frame, hop and latent size, at its rate only."""

    def __init__(self, m: dict, sr: float):
        cfg = m["config"]
        if abs(sr - float(cfg["sample_rate"])) > 0.5:
            raise ValueError("sample rate")
        self.N, self.hop, self.sr, self.D = int(cfg["frame"]), int(cfg["hop"]), float(sr), int(cfg["latent"])


class Analyser(_Engine):
    """The encoder's streaming state and kernel call (used by the node, the tests and the training report)."""

    def __init__(self, m: dict, sr: float):
        super().__init__(m, sr)
        cfg = m["config"]
        tb = tables(cfg)
        self.tab = (tb["hann"], tb["aw"], tb["mel"], tb["cos"], tb["sin"], tb["rev"])
        self.w = m["weights"]["enc"]
        self.max_lag, self.min_lag = yin_lags(cfg, sr)
        self.threshold = float(cfg["yin_threshold"])
        EH = self.w[0].shape[0]
        N, D = self.N, self.D
        self.state = np.zeros(_vae.ENC_STATE)
        self.ring = np.zeros(N)
        self.mu = np.zeros(D)
        self.std = np.zeros(D)
        self._scratch = (np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(int(cfg["n_mels"])), np.zeros(EH),
                         np.zeros(EH))
        self._d = np.zeros(self.max_lag)
        self._dn = np.zeros(self.max_lag)
        self.reset()

    def reset(self):
        self.state[:] = 0.0
        self.state[3] = _vae.LOUD_FLOOR
        self.ring[:] = 0.0
        # before the first frame: the latent of silence is unknown, say the prior's mean
        self.mu[:] = 0.0
        self.std[:] = 1.0

    def run(self, x, n, z_out, std_out, f0_out, loud_out):
        fr, re, im, feat, h1, h2 = self._scratch
        _vae.encoder_block(x, n, z_out, std_out, f0_out, loud_out, self.state, self.ring, fr, re, im, feat, h1, h2,
                           self.mu, self.std, self._d, self._dn, *self.tab, *self.w, float(self.hop), self.sr,
                           self.max_lag, self.min_lag, self.threshold)


class Synth(_Engine):
    """The decoder's streaming state and kernel call."""

    def __init__(self, m: dict, sr: float):
        super().__init__(m, sr)
        cfg = m["config"]
        self.nyq = 0.5 * float(cfg["sample_rate"])
        self.w = m["weights"]["dec"]
        tb = tables(cfg)
        DH, C, K, N = self.w[0].shape[0], self.w[4].shape[0], self.w[6].shape[0], self.N
        NB = self.w[9].shape[0]
        self.fixed = (tb["window"], noise_interp(NB, N), tb["cos"], tb["sin"], tb["rev"])
        self.state = np.zeros(_vae.DEC_STATE)
        self.ola = np.zeros(N)
        nb = N // 2 + 1
        self._scratch = (np.zeros(N), np.zeros(max(self.D + _vae.N_COND, NB)), np.zeros(DH), np.zeros(DH),
                         np.zeros(C), np.zeros(K), np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(N), np.zeros(N),
                         np.zeros(nb), np.zeros(N), np.zeros(N), np.zeros(self.D))
        self.reset()

    def reset(self):
        self.state[:] = 0.0
        self.state[3] = _vae.NOISE_SEED
        self.ola[:] = 0.0

    def run(self, y, n, z, f0, loud):
        _vae.decoder_block(y, n, z, f0, loud, self.state, self.ola, *self._scratch, *self.w[:9], self.w[9],
                           self.w[10], *self.fixed, self.sr, float(self.hop), self.nyq)


def stream(m: dict, x: np.ndarray, point=None, block: int = 0) -> dict:
    """Encoder into decoder offline, with the nodes' kernels: ``{"y", "z", "std", "f0", "loudness"}``.

    ``point``: a latent ``(D,)`` for the decoder instead of the encoder's
    (timbre transfer). ``block``: render in blocks of that size (0: one call).
    """
    x = np.ascontiguousarray(x, np.float32).reshape(-1)
    L = x.size
    sr = float(m["config"]["sample_rate"])
    a, s = Analyser(m, sr), Synth(m, sr)
    D = a.D
    z = np.zeros((D, L), np.float32)
    sd = np.zeros((D, L), np.float32)
    f0 = np.zeros((1, L), np.float32)
    ld = np.zeros((1, L), np.float32)
    y = np.zeros(L, np.float32)
    zin = z if point is None else np.repeat(np.asarray(point, np.float32).reshape(D, 1), L, axis=1)
    B = block or L
    for i in range(0, L, B):
        n = min(B, L - i)
        a.run(x[i:i + n], n, z[:, i:i + n], sd[:, i:i + n], f0[:, i:i + n], ld[:, i:i + n])
        s.run(y[i:i + n], n, np.ascontiguousarray(zin[:, i:i + n]), np.ascontiguousarray(f0[0, i:i + n]),
              np.ascontiguousarray(ld[0, i:i + n]))
    return {"y": y, "z": z, "std": sd, "f0": f0[0], "loudness": ld[0]}


def f0_track(x: np.ndarray, config: dict, n_frames: int) -> np.ndarray:
    """f0 (Hz) of each analysis frame of a signal, as ``vae_encoder`` measures it (float64, ``(n_frames,)``).

    Frame ``j`` holds the ``frame`` samples that end at sample ``(j + 1) hop``
    (zeros before the start). YIN is :func:`patchlib.dataset.yin_f0` with the
    model's settings (the encoder's kernel runs the same steps); unvoiced
    frames hold the last voiced value, frames before the first voiced one
    take that first value (0 if none).
    """
    from patchlib.dataset import yin_f0

    N, hop = int(config["frame"]), int(config["hop"])
    sr = float(config["sample_rate"])
    f, _ = yin_f0(np.asarray(x, np.float64), int(sr), frame=N, hop=hop, fmin=float(config["fmin"]),
                  fmax=float(config["fmax"]), threshold=float(config["yin_threshold"]))
    # yin_f0's frame i is centred at i hop; the encoder's frame j at (j + 1) hop - N / 2
    shift = 1 - N // (2 * hop)
    out = np.zeros(n_frames)
    for j in range(n_frames):
        i = j + shift
        out[j] = f[i] if 0 <= i < f.size else 0.0
    voiced = np.nonzero(out > 0)[0]
    if voiced.size == 0:
        return out
    last = out[voiced[0]]
    for j in range(n_frames):
        if out[j] > 0:
            last = out[j]
        else:
            out[j] = last
    return out


def reconstruct(model, x: np.ndarray) -> np.ndarray:
    """Offline torch reconstruction of a sound (latent means; f0 per frame by YIN, loudness measured), aligned
    with ``x`` (float32): what ``vae_encoder`` into ``vae_decoder`` plays, 1024 samples later."""
    import torch

    N, hop = model.frame, model.hop
    L = x.size
    T = note_frames(L, N, hop)
    xo = np.zeros((T - 1) * hop + N, np.float32)
    xo[N - hop:N - hop + L] = x
    frames = torch.from_numpy(np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(xo, N)[::hop][:T]))[None]
    f0 = np.maximum(f0_track(x, model._cfg, T), _vae.F0_MIN)
    with torch.no_grad():
        feat, loud = model.analyse(frames)
        mu, _ = model.encode(feat)
        th = torch.from_numpy(theta_of(f0, hop, model.sr))[None]
        y = model.ola(model.decode(mu, torch.from_numpy(f0)[None], loud, th))[0].numpy()
    return np.ascontiguousarray(y[N - hop:N - hop + L], dtype=np.float32)


def render_latent(model, z, f0_hz: float, loud_db: float, seconds: float) -> np.ndarray:
    """A steady note from one latent point (torch, offline), float32: what a held ``vae_decoder`` plays."""
    import torch

    N, hop = model.frame, model.hop
    T = int(math.ceil(seconds * model.sr / hop))
    zz = torch.tensor(np.asarray(z, np.float32)).reshape(1, 1, -1).expand(1, T, -1)
    with torch.no_grad():
        th = torch.from_numpy(theta_of(np.full(T, f0_hz), hop, model.sr))[None]
        fr = model.decode(zz, torch.tensor([float(f0_hz)], dtype=torch.float64), torch.full((1, T), float(loud_db)), th)
        y = model.ola(fr)[0].numpy()
    return np.ascontiguousarray(y[N:N + int(seconds * model.sr) - N], dtype=np.float32)


# ------------------------------------------------------------------ the nodes
class _ContractSettings:
    """The contract suite's settings of a VAE node: the tiny test model, plus ``extra`` options."""

    def __init__(self, **extra):
        self.extra = extra

    def __get__(self, obj, owner):
        return {"model": os.path.relpath(TEST_MODEL, os.getcwd()), **self.extra}


#: the ``model`` option of every node that plays a VAE (these and :mod:`.latent`'s)
MODEL_OPTION = Option(None, kind="path", required=True, doc="VAE checkpoint relative to the patch's folder")


def load_for_node(file) -> dict:
    """Load a node's ``model`` option, errors pointing at the option."""
    base, where = _place(file)
    try:
        path = resolve_model(file, base)
        return load(path, file)
    except PatchError as e:
        e.where = Where(where.file, where.line, where.node, e.where.key or "model")
        raise


def check_rate(m: dict, ctx, file, what: str):
    msr = float(m["config"]["sample_rate"])
    if abs(float(ctx.sample_rate) - msr) > 0.5:
        raise PatchError(f"model '{file}' was trained at {msr:g} Hz; the {what} runs at the model's rate only, "
                         f"the patch is at {ctx.sample_rate:g} Hz", Where(key="model"),
                         hint=f"set sample_rate: {msr:g} in the patch")


def latent_dims(opts: dict) -> int | None:
    file = opts.get("model")
    return int(load_for_node(file)["config"]["latent"]) if file else None


class _VaeNode(Node):
    """What both VAE nodes share: the ``model`` option, its loading, the engine's set-up and reset."""

    options = {"model": MODEL_OPTION}
    contract_settings = _ContractSettings()

    def _load_model(self) -> int:
        """Load the ``model`` option's checkpoint; returns the latent's size."""
        self.model_file = self.opts.get("model")
        self._m = load_for_node(self.model_file)
        return int(self._m["config"]["latent"])

    def _start(self, ctx, engine, what: str):
        """``prepare``'s common part: the rate check, the engine (its frame's centre is the latency)."""
        super().prepare(ctx)
        check_rate(self._m, ctx, self.model_file, what)
        self.engine = engine(self._m, float(ctx.sample_rate))
        self.latency = self.engine.N // 2

    def reset(self):
        self.engine.reset()


@register("vae_encoder")
class VaeEncoder(_VaeNode):
    """Timbre VAE encoder: audio in, its latent (timbre), f0 and loudness out, one frame every 16 ms.

    Every ``hop`` samples (256 at 16 kHz: a time ratio of 1/256) the last
    1024 samples are analysed: ``out`` (D channels) holds the latent mean,
    ``std`` its standard deviation (the VAE's posterior), ``f0`` the YIN
    pitch in Hz (held through unvoiced frames), ``loudness`` the A-weighted
    loudness in dBFS. Values hold between frames. Latency 512 samples (the
    frame's centre). Wire ``f0`` and ``loudness`` into a ``vae_decoder`` to
    keep the input's pitch and dynamics while the timbre comes from
    elsewhere. Runs at the model's sample rate. See docs/vae.md.

    Example: ``enc: {type: vae_encoder, in: guitar, model: models/vae.pt}``
    """

    inputs = {"in": Input("audio to analyse (mono)", channels=1)}
    outputs = {"out": Output("latent mean, D channels (one value per frame, held)", range=(-3.0, 3.0)),
               "std": Output("latent standard deviation, D channels", range=(0.0, 1.0)),
               "f0": Output("pitch by YIN, Hz (held when unvoiced; 0 before the first voiced frame)", channels=1,
                            range=(0.0, 2000.0)),
               "loudness": Output("A-weighted loudness, dBFS (floor -100)", channels=1, range=(-100.0, 0.0))}
    @classmethod
    def ports(cls, opts):
        D = latent_dims(opts)
        if D is None:
            return cls.inputs, cls.outputs, cls.params
        outs = dict(cls.outputs)
        outs["out"] = Output(f"latent mean, {D} channels (one value per frame, held)", channels=D, range=(-3.0, 3.0))
        outs["std"] = Output(f"latent standard deviation, {D} channels", channels=D, range=(0.0, 1.0))
        return cls.inputs, outs, cls.params

    def configure(self, in_channels):
        D = self._load_model()
        return {"out": D, "std": D, "f0": 1, "loudness": 1}

    def prepare(self, ctx):
        self._start(ctx, Analyser, "encoder")
        self.state, self.ring, self.mu, self.std = self.engine.state, self.engine.ring, self.engine.mu, self.engine.std
        self.reset()

    def process(self, n, t):
        self.engine.run(self.inp["in"][0], n, self.out["out"], self.out["std"], self.out["f0"], self.out["loudness"])


@register("vae_decoder")
class VaeDecoder(_VaeNode):
    """Timbre VAE decoder: a latent (D channels), f0 and loudness in, audio out (SING-style frames).

    Every ``hop`` samples (16 ms) the decoder reads its ``z`` input (the
    latent: from a ``vae_encoder``, a ``latent_morph`` or a ``latent_walk``;
    a mono source feeds every dimension), ``f0`` and ``loudness`` and adds a
    1024-sample frame: a learnt basis plus pitch-locked half-harmonics of f0
    plus filtered noise (seeded: a render repeats), scaled by the loudness.
    Pitch and dynamics follow ``f0``/``loudness`` exactly; the timbre
    follows ``z``. Latency 512 samples (the frame's centre). Runs at the
    model's sample rate. See docs/vae.md.

    Example: ``dec: {type: vae_decoder, model: models/vae.pt, z: morph, f0: A3, loudness: -20}``
    """

    inputs = {"z": Input("the latent, D channels (held per 16 ms frame)")}
    outputs = {"out": Output("the decoded audio", channels=1, range=(-1.0, 1.0))}
    params = {"f0": Param(220.0, (20.0, 4000.0), "Hz", "exp", smooth=0.0, doc="pitch (read once per frame)"),
              "loudness": Param(-20.0, (-100.0, 0.0), "dB", smooth=0.0,
                                doc="A-weighted loudness in dBFS, as vae_encoder measures it (read once per frame)")}
    @classmethod
    def ports(cls, opts):
        D = latent_dims(opts)
        if D is None:
            return cls.inputs, cls.outputs, cls.params
        return {"z": Input(f"the latent, {D} channels (a mono source feeds every dimension)")}, cls.outputs, cls.params

    def configure(self, in_channels):
        D = self._load_model()
        c = int(in_channels.get("z", 1))
        if c not in (1, D):
            raise PatchError(f"input z has {c} channels; model '{self.model_file}' has a {D}-dimensional latent",
                             Where(key="z"), hint=f"feed it a vae_encoder, latent_morph or latent_walk of this model "
                                                 f"({D} channels) or a mono signal")
        return {"out": 1}

    def prepare(self, ctx):
        self._start(ctx, Synth, "decoder")
        self.state, self.ola = self.engine.state, self.engine.ola
        self.reset()

    def process(self, n, t):
        self.engine.run(self.out["out"][0], n, self.inp["z"], self.par["f0"], self.par["loudness"])
