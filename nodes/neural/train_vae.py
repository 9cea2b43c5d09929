"""Training the timbre VAE on patchlib's own dataset (``patchlib train vae``).

* **data**: the NSynth-like dataset of :mod:`patchlib.dataset` (rendered
  into ``--data`` first if it is missing: four instruments, MIDI 36..84,
  five velocities, 4 s notes released at 3 s, 16 kHz). The ``train`` split
  is trained on; the report measures held-out pitches (``test`` split).
* **model**: :mod:`.vae` (frame encoder from log-mel features, SING-style
  decoder conditioned on the latent, f0 and loudness).
* **loss**: SING's spectral loss (:func:`.train_sing.spectral_loss`: L1
  between ``log(eps + |STFT|^2)`` at four resolutions) on the overlap-added
  reconstruction of random crops, plus ``beta`` times the KL divergence of
  the posterior from N(0, I) (summed over latent dimensions, averaged over
  frames); ``beta`` rises linearly from 0 over the first ``--anneal`` steps
  (KL annealing, Bowman et al. 2016).
* **straight paths** (``--interp W``, experimental, 0 by default; the
  shipped model does not use it: docs/vae.md): a latent halfway between two
  frames' latents should sound halfway between them. Each step pairs each
  crop of half the batch with the crop of the batch nearest to it in pitch
  (often another instrument), decodes the pair's latent mix ``(1 - a) z_i +
  a z_j`` (``a`` uniform in 0..1) with crop i's f0, loudness and noise, and
  adds ``W`` times the L1 distance of the log of its average power spectrum
  over the crop (windows 512 and 256) from the log of the same mix of the
  two ends' average power spectra (both decoded with crop i's conditioning
  and noise, held fixed); ``W`` ramps in over the ``--anneal`` steps, as
  ``beta`` does. The ends get no gradient from it (the decoder, though, is shared: at the highest pitches
  it cost reconstruction quality); it bends the latent space so a straight
  line between two timbres is a crossfade of their power spectra, along
  which the spectral centroid ``((1 - a) M0 + a M1) / ((1 - a) E0 + a E1)``
  can only move one way (docs/vae.md).
* **morphs** (``--morph W``): the same power-mix term (:func:`mix_loss`)
  on the lines ``latent_morph`` plays: between two instruments' points
  (their mean latents, recomputed every ``morph_every`` steps and kept in
  the training state), decoded as steady notes with the f0 of a batch
  crop and its loud level, at a random position. The logs are floored 50
  dB under each mix's strongest bin (what is far under it does not move a
  centroid). ``W`` ramps in with ``beta``. In some runs it makes every
  morph between the four instruments monotone in centroid; what it costs the
  reconstructions is in docs/vae.md. ``--morph-pairs pitch`` joins, instead
  of the mean points, the two instruments' own notes nearest each crop's
  f0 (two sounds of one pitch, as ``latent_morph`` points captured from
  notes): an instrument's high notes lie on the lines between the mean
  points, where the two terms pull on the same latents. ``--morph-loss
  centroid`` asks of each line only that its spectral centroid never step
  back (:func:`centroid_order_loss`): a monotone line costs nothing.
* **checkpoints**: the training state goes to ``OUTPUT.state.pt`` every
  ``--save-every`` steps; the same command resumes from it (``--restart``
  ignores it). ``--max-minutes`` ends training early. The model file
  carries each instrument's mean latent (``points``), the latents' spread,
  the held-out measurements and this command; a PNG report is written
  beside it.
* **report**: held-out reconstructions (every instrument, held-out pitches,
  velocity 100): the timbre ratio of :mod:`.train_sing` (the
  multi-resolution log-spectral distance to the truth over the mean distance
  of that truth to the other instruments' truths: below 0.5 is SING's bound);
  the spectral centroid along the line between two instruments' points
  (Spearman rho of centroid against position); the timbre-transfer pitch
  error (held-out plucks through the streaming encoder and decoder with
  another instrument's point, YIN on the output against the played pitch);
  a PNG with a PCA projection of the latents coloured by instrument and by
  pitch and truth-vs-reconstruction spectrograms.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time

import numpy as np

SIZES = {
    "small": {},  # vae.DEFAULT_CONFIG
    "wide": {"dec_hidden": 256},  # the small model with a decoder twice as wide
    "tiny": {"latent": 4, "n_mels": 32, "enc_hidden": 32, "dec_hidden": 32, "basis": 16, "harmonics": 24},
}


@dataclasses.dataclass
class VaeTrainConfig:
    """Everything that decides a training run (the CLI's options)."""

    output: str = "patches/models/vae.pt"
    data: str = "data/notes"
    size: str = "small"
    decoder: str = "sing"
    noise_bands: int = 32
    steps: int = 3000
    batch: int = 12
    crop: int = 32
    lr: float = 2e-3
    lr_final: float = 2e-4
    beta: float = 0.02
    anneal: int = 1000
    interp: float = 0.0
    morph: float = 0.0
    morph_every: int = 100
    morph_pairs: str = "points"  # or "pitch": each instrument's own note nearest the crop's f0
    morph_loss: str = "mix"  # or "centroid": only the centroid's order along the line (centroid_order_loss)
    morph_from: int = 0  # the morph term is off before this step, then ramps in over `anneal` steps
    morph_positions: int = 2  # --morph-loss centroid: the random positions decoded between each line's ends
    save_every: int = 200
    max_minutes: float = 0.0
    eval_velocity: int = 100
    seed: int = 0
    threads: int = 1
    restart: bool = False
    report: str | None = None
    quiet: bool = False
    max_notes: int = 0
    eval_pitches: list | None = None
    interrupt_at: int = 0  # tests: raise KeyboardInterrupt after this step

    def command(self) -> str:
        q = shlex.quote
        parts = ["patchlib", "train", "vae", "-o", q(self.output), "--data", q(self.data), "--size", self.size]
        if self.decoder != "sing":
            parts += ["--decoder", self.decoder]
        else:
            parts += ["--noise-bands", str(self.noise_bands)]
        parts += [
                 "--steps", str(self.steps), "--batch", str(self.batch), "--crop", str(self.crop),
                 "--lr", f"{self.lr:g}", "--lr-final", f"{self.lr_final:g}", "--beta", f"{self.beta:g}",
                 "--anneal", str(self.anneal)]
        if self.interp:
            parts += ["--interp", f"{self.interp:g}"]
        if self.morph:
            parts += ["--morph", f"{self.morph:g}"]
            if self.morph_pairs != "points":
                parts += ["--morph-pairs", self.morph_pairs]
            if self.morph_loss != "mix":
                parts += ["--morph-loss", self.morph_loss]
            if self.morph_from:
                parts += ["--morph-from", str(self.morph_from)]
            if self.morph_positions != 2:
                parts += ["--morph-positions", str(self.morph_positions)]
        parts += ["--seed", str(self.seed), "--threads", str(self.threads)]
        if self.max_minutes:
            parts += ["--max-minutes", f"{self.max_minutes:g}"]
        return " ".join(parts)

    def key(self) -> dict:
        d = dataclasses.asdict(self)
        if not d["interp"]:
            d.pop("interp")  # (states saved before the option resume as they were)
        if not d["morph"]:
            d.pop("morph")
            d.pop("morph_every")
        if d.get("morph_pairs") == "points":
            d.pop("morph_pairs")  # (states saved before the option resume as they were)
        if d.get("morph_loss") == "mix":
            d.pop("morph_loss")
        if not d.get("morph_from"):
            d.pop("morph_from")
        if d.get("morph_positions") == 2:
            d.pop("morph_positions")
        for k in ("restart", "quiet", "report", "save_every", "max_minutes", "threads", "output", "interrupt_at",
                  "eval_pitches"):
            d.pop(k)
        return d


# ------------------------------------------------------------------ the DDSP-like alternative (for the comparison)
def ddsp_model(config: dict, bands: int = 64):
    """A VaeNet whose decoder is DDSP-like (Engel et al. 2020): integer harmonics of f0 plus filtered noise.

    Same encoder, conditioning, loudness gain, frames and overlap-add as the
    SING-style decoder, so the comparison isolates the synthesiser: the
    pitch-locked part keeps only the integer harmonics (``k f0``; the
    half-harmonics in between are masked) and the learnt basis is replaced by
    white noise shaped per frame by ``bands`` linearly spaced band gains
    (``exp`` of the network's output). Trained and measured by
    ``patchlib train vae --decoder ddsp``; the nodes do not play it.
    """
    import torch
    from torch import nn

    from . import vae

    base = vae.net_class()

    class DdspNet(base):
        def __init__(self, **cfg):
            super().__init__(**cfg)
            self.coef = nn.Linear(self.dec2.out_features, bands)
            with torch.no_grad():
                self.coef.bias.fill_(-6.0)
            del self.basis
            nb = self.frame // 2 + 1
            pos = np.linspace(0, bands - 1, nb)
            i0 = np.floor(pos).astype(int)
            i1 = np.minimum(i0 + 1, bands - 1)
            W = np.zeros((bands, nb))
            W[i0, np.arange(nb)] += 1 - (pos - i0)
            W[i1, np.arange(nb)] += pos - i0
            self.register_buffer("interp", torch.tensor(W, dtype=torch.float32), persistent=False)
            odd = torch.zeros(self.harmonics)
            odd[1::2] = 1.0  # half-harmonic index k (1-based) even: an integer harmonic of f0
            self.register_buffer("integer", odd, persistent=False)
            self.noise_gen = None

        def decode(self, z, f0, loud, theta):
            import math as _m

            from torch.nn import functional as F

            B, T = z.shape[:2]
            f0d = f0.to(torch.float64)
            f0t = f0d[:, None].expand(B, T) if f0d.dim() == 1 else f0d
            h = F.leaky_relu(self.dec1(torch.cat([z, self.cond(f0t, loud)], -1)), 0.2)
            h = F.leaky_relu(self.dec2(h), 0.2)
            k = torch.arange(1, self.harmonics + 1, dtype=torch.float64)
            mask = (0.5 * k * f0t[..., None] < 0.5 * self.sr).to(z.dtype) * self.integer
            harm = self.partials(self.amp(h) * mask, f0d, f0t, theta, z.dtype)
            N = self.frame
            gains = torch.exp(self.coef(h).clamp(max=5.0)) @ self.interp  # (B, T, nb)
            noise = torch.randn(B, T, N, generator=self.noise_gen, dtype=z.dtype)
            shaped = torch.fft.irfft(torch.fft.rfft(noise, dim=-1) * gains / _m.sqrt(N), N, dim=-1)
            g = (10.0 ** (loud.clamp_min(vae._vae.LOUD_FLOOR) / 20.0)).to(z.dtype)[..., None]
            return (harm + shaped) * g * self.window.to(z.dtype)

    cfg = dict(vae.DEFAULT_CONFIG, **config, noise_bands=0)  # its own noise replaces the basis
    m = DdspNet(**cfg)
    m._cfg = dict(cfg, decoder="ddsp")
    return m


# ------------------------------------------------------------------ data
def load_notes(model, root: str, split: str, man: dict, max_notes: int = 0, rng=None) -> list:
    """Notes of a split: padded audio ``xo`` (``frame - hop`` zeros before), encoder features and loudness per frame."""
    import torch

    from . import vae
    from .train_sing import split_notes

    N, hop = model.frame, model.hop
    notes = []
    for _, note, x, xo, T, sr in split_notes(root, split, man, N, hop, max_notes, rng):
        frames = torch.from_numpy(np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(xo, N)[::hop][:T]))
        feat, loud = model.analyse(frames)
        notes.append(dict(note, feat=feat.numpy(), loud=loud.numpy(), track=vae.f0_track(x, model._cfg, T)))
    return notes


def _batch(notes, rng, B, crop, hop, frame, onset_share=0.3):
    import torch

    idx = rng.integers(len(notes), size=B)
    starts = []
    for i in idx:
        T = notes[i]["T"]
        starts.append(0 if rng.random() < onset_share else int(rng.integers(0, T - crop + 1)))
    lead = frame - hop
    seg = np.stack([notes[i]["xo"][hop * s + lead:hop * (s + crop)] for i, s in zip(idx, starts)])
    feat = np.stack([notes[i]["feat"][s:s + crop] for i, s in zip(idx, starts)])
    loud = np.stack([notes[i]["loud"][s:s + crop] for i, s in zip(idx, starts)])
    # f0: what the encoder measures (YIN), one value per crop (its median): the measured pitch, not the
    # played one (a waveguide plays a few cents flat; the bell's YIN pitch is its hum, f0 / 2)
    f0 = []
    for i, s in zip(idx, starts):
        tr = notes[i]["track"][s:s + crop]
        tr = tr[tr > 0]
        f0.append(float(np.median(tr)) if tr.size else notes[i]["f0"])
    f0 = np.array(f0)
    sr = notes[idx[0]]["sr"]
    th = np.stack([(np.arange(crop) * (math.pi * f * hop / sr)) % (2 * math.pi) for f in f0])
    return (torch.from_numpy(seg), torch.from_numpy(feat), torch.from_numpy(loud), torch.from_numpy(f0),
            torch.from_numpy(th))


INTERP_FFTS = (512, 256)
#: ``--morph``'s floor of :func:`mix_loss`'s log spectra, relative to the mix's strongest bin (-50 dB): bins far
#: under the strongest do not move a centroid, and matching them cost the reconstructions
MIX_FLOOR = 1e-5


def mix_loss(model, za, zb, a, f0, loud, th, span, rel_floor: float = 0.0):
    """Log-L1 distance of the decoded latent mix ``(1 - a) za + a zb`` from the power mix of the decoded ends.

    ``za``, ``zb (B, T, D)``, ``a (B, 1, 1)``; all three decoded with the
    same f0, loudness, phase and one shared noise (so the noise part mixes
    like the rest); the ends are held fixed (no gradient): only the middle is
    shaped. Compared: the average power spectrum over the crop (windows 512
    and 256), the thing a spectral centroid reads; along an exact power
    crossfade the centroid ``((1 - a) M0 + a M1) / ((1 - a) E0 + a E1)``
    can only move one way. ``rel_floor``: the logs' floor relative to each
    mix's strongest bin (bins far under it do not move a centroid; 0: only
    the absolute floor ``EPS``).
    """
    import torch

    from .train_sing import EPS, stft_power

    B, T = za.shape[0], za.shape[1]
    noise = (2.0 * torch.rand(B, T, model.frame, dtype=za.dtype) - 1.0) * math.sqrt(3.0)

    def dec(zz):
        return model.ola(model.decode(zz, f0, loud, th, noise))[:, span]

    with torch.no_grad():
        yi, yj = dec(za.detach()), dec(zb.detach())
    ym = dec((1.0 - a) * za + a * zb)
    a = a[:, :, 0]
    total = 0.0
    ffts = [n for n in INTERP_FFTS if n <= ym.shape[-1]] or [min(INTERP_FFTS)]
    for n in ffts:
        with torch.no_grad():
            mix = (1.0 - a) * stft_power(yi, n).mean(-1) + a * stft_power(yj, n).mean(-1)
            floor = EPS + rel_floor * mix.amax(-1, keepdim=True)
            target = torch.log(floor + mix)
        total = total + (torch.log(floor + stft_power(ym, n).mean(-1)) - target).abs().mean()
    return total / len(ffts)


def interp_loss(model, z, f0, loud, th, rng, span):
    """The ``--interp`` term: :func:`mix_loss` between frames' latents of the batch.

    ``z (B, T, D)``: the batch's latents (``span`` slices the decoded
    samples as in training). Each crop i of the first half of the batch is
    paired with the crop ``perm[i]`` of the batch nearest to it in pitch
    (a morph mixes two sounds at one pitch), decoded with crop i's f0,
    loudness and phase.
    """
    import torch

    B = z.shape[0]
    h = max(1, B // 2)  # half the batch: half the cost
    # partner: the crop of the nearest pitch (ties at random), as a morph mixes two sounds at one pitch
    lf = np.log(np.maximum(f0.detach().cpu().numpy().astype(np.float64), 1.0))
    d = np.abs(lf[:h, None] - lf[None, :]) + 1e-6 * rng.random((h, B))
    d[np.arange(h), np.arange(h)] = np.inf
    perm = torch.from_numpy(np.argmin(d, axis=1))  # (a batch of one pairs the crop with itself)
    a = torch.from_numpy(rng.random(h)).to(z.dtype)[:, None, None]
    return mix_loss(model, z[:h], z[perm], a, f0[:h], loud[:h], th[:h], span)


def centroid_order_loss(model, za, zb, f0, loud, th, span, rng, positions: int = 2):
    """How far the spectral centroid steps back along ``(1 - a) za + a zb``: ``--morph-loss centroid``.

    Each line is decoded (one shared noise, as :func:`mix_loss`) at its ends
    (held fixed, no gradient) and at ``positions`` random positions between; the
    centroid is that of the crop's average power spectrum (window 512, what
    ``spectral_centroid`` reads of a steady note). The loss is the sum of the
    steps against the ends' direction, over the span between the ends
    (floored at 1 % of the mean centroid, so lines whose ends nearly agree
    are asked to stay flat). A monotone line costs nothing: unlike the
    power-mix term, it asks one number per line of the decoder, not a whole
    spectrum, and leaves the rest to the reconstructions.
    """
    import torch

    from .train_sing import stft_power

    B, T = za.shape[0], za.shape[1]
    noise = (2.0 * torch.rand(B, T, model.frame, dtype=za.dtype) - 1.0) * math.sqrt(3.0)
    n = 512

    def cent(zz):
        y = model.ola(model.decode(zz, f0, loud, th, noise))[:, span]
        P = stft_power(y, min(n, y.shape[-1])).mean(-1)
        f = torch.arange(P.shape[-1], dtype=P.dtype) * (model.sr / (2.0 * (P.shape[-1] - 1)))
        return (P * f).sum(-1) / (P.sum(-1) + 1e-12)

    with torch.no_grad():
        c0, c1 = cent(za), cent(zb)
    a = torch.from_numpy(np.sort(rng.random((B, positions)), axis=1)).to(za.dtype)
    cm = [cent((1.0 - a[:, k, None, None]) * za + a[:, k, None, None] * zb) for k in range(positions)]
    c = torch.stack([c0, *cm, c1], 1)  # (B, positions + 2), in order along the line
    sgn = torch.sign(c1 - c0)
    scale = (c1 - c0).abs() + 0.01 * 0.5 * (c0 + c1)
    back = torch.relu(-sgn[:, None] * (c[:, 1:] - c[:, :-1])).sum(1)
    return (back / scale).mean()


def morph_loss(model, points: np.ndarray | None, f0, loud, th, rng, span, table: np.ndarray | None = None,
               kind: str = "mix", positions: int = 2):
    """The ``--morph`` term: :func:`mix_loss` on the lines between instruments' points, what ``latent_morph`` plays.

    ``points (I, D)``: every instrument's mean latent (None with ``table``; refreshed during
    training). Each of the first half of the batch's crops lends its f0 and
    phase to a steady note at its own loud level (the 90th percentile of its
    loudness, held): a random pair of distinct instruments and a random
    position ``a`` in 0..1. So the term covers the whole pitch and loudness
    range of the data, and the latents it shapes lie between the
    instruments' clusters, where reconstructions seldom go.

    ``table (M, 2 + D)`` (``--morph-pairs pitch``, :func:`note_table`): the
    ends are instead the two instruments' own notes nearest the crop's f0
    (rows: instrument index, log2 measured f0, mean latent), so a line joins
    two sounds of one pitch. Measured: an instrument's high notes lie on
    the lines between the mean points (docs/vae.md).
    """
    import torch

    B, T = f0.shape[0], loud.shape[1]
    h = max(1, B // 2)
    n = points.shape[0] if table is None else int(table[:, 0].max()) + 1
    i = rng.integers(n, size=h)
    j = (i + rng.integers(1, n, size=h)) % n  # another instrument
    if table is None:
        P = torch.from_numpy(np.asarray(points, np.float32))
    else:  # --morph-pairs pitch: each instrument's note nearest the crop's f0
        inst, lf = table[:, 0].astype(np.int64), table[:, 1]
        lf0 = np.log2(np.maximum(f0[:h].numpy(), 1.0))

        def nearest(k, b):
            rows = np.flatnonzero(inst == k)
            return rows[np.argmin(np.abs(lf[rows] - lf0[b]))]

        P = torch.from_numpy(np.asarray(table[:, 2:], np.float32))
        i = np.array([nearest(i[b], b) for b in range(h)])
        j = np.array([nearest(j[b], b) for b in range(h)])
    za = P[torch.from_numpy(i)][:, None, :].expand(h, T, -1)
    zb = P[torch.from_numpy(j)][:, None, :].expand(h, T, -1)
    a = torch.from_numpy(rng.random(h)).to(za.dtype)[:, None, None]
    lev = torch.quantile(loud[:h].to(torch.float64), 0.9, dim=1).to(loud.dtype)
    if kind == "centroid":
        return centroid_order_loss(model, za, zb, f0[:h], lev[:, None].expand(h, T), th[:h], span, rng, positions)
    return mix_loss(model, za, zb, a, f0[:h], lev[:, None].expand(h, T), th[:h], span, MIX_FLOOR)


def term_ramp(step: int, start: int, anneal: int) -> float:
    """A term's share of its weight at ``step``: 0 up to ``start``, then rising linearly over ``anneal`` steps.

    ``--morph`` starts at ``--morph-from``; ``--interp`` at 0, so it ramps in as beta does."""
    if step <= start:
        return 0.0
    return min(1.0, (step - start) / anneal) if anneal > 0 else 1.0


# ------------------------------------------------------------------ latents and measurements
def latent_points(model, notes) -> tuple[dict, np.ndarray, list]:
    """Each instrument's mean latent over the loud frames of its notes, the latents' spread, and per-note means."""
    import torch

    per_note = []
    allz = []
    with torch.no_grad():
        for nt in notes:
            mu, _ = model.encode(torch.from_numpy(nt["feat"]))
            mu = mu.numpy()
            keep = nt["loud"] > nt["loud"].max() - 30.0
            allz.append(mu[keep])
            per_note.append((nt["inst_name"], nt["pitch"], mu[keep].mean(0)))
    insts = sorted({p[0] for p in per_note})
    points = {i: np.mean([p[2] for p in per_note if p[0] == i], axis=0) for i in insts}
    spread = np.concatenate(allz).std(0)
    return points, spread, per_note


def note_table(notes, per_note, names) -> np.ndarray:
    """``(M, 2 + D)``: per note, its instrument's index in ``names``, log2 of its median measured f0, its mean
    latent (``per_note`` from :func:`latent_points`, in the order of ``notes``)."""
    rows = []
    for nt, (inst, _, z) in zip(notes, per_note):
        tr = nt["track"][nt["track"] > 0]
        f = float(np.median(tr)) if tr.size else float(nt["f0"])
        rows.append(np.concatenate([[names.index(inst), math.log2(max(f, 1.0))], z]))
    return np.asarray(rows, np.float64)


def spectral_centroid(y: np.ndarray, sr: float) -> float:
    """Power-weighted mean frequency (Hz) of the whole signal's spectrum (Hann window)."""
    Y = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    f = np.fft.rfftfreq(y.size, 1.0 / sr)
    return float((f * Y).sum() / max(Y.sum(), 1e-30))


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / math.sqrt((ra * ra).sum() * (rb * rb).sum()))


def centroid_sweep(model, za, zb, midi: float = 60.0, loud_db: float = -20.0, steps: int = 11, seconds: float = 1.0):
    """Spectral centroid (Hz) of steady notes decoded along ``(1 - a) za + a zb``, ``a`` in 0..1; and Spearman rho."""
    from . import vae

    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    al = np.linspace(0.0, 1.0, steps)
    cs = [spectral_centroid(vae.render_latent(model, (1 - a) * za + a * zb, f0, loud_db, seconds), model.sr)
          for a in al]
    return al, np.array(cs), spearman(al, cs)


def monotonicity(model, points, pitches=(48, 60, 72)) -> list:
    """Centroid sweeps between every pair of instruments' points: rho and the centroids at both ends."""
    names = sorted(points)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for p in pitches:
                al, cs, rho = centroid_sweep(model, points[a], points[b], p)
                d = np.diff(cs) * np.sign(cs[-1] - cs[0])
                rows.append({"from": a, "to": b, "pitch": p, "rho": round(abs(rho), 4),
                             "direction_ok": bool(np.sign(rho) == np.sign(cs[-1] - cs[0])),
                             "reversals": int((d < 0).sum()),
                             "largest_reversal_hz": round(float(max(0.0, -d.min())), 2),
                             "centroid_from_hz": round(float(cs[0]), 1), "centroid_to_hz": round(float(cs[-1]), 1)})
    return rows


def sweep_is_monotone(row: dict, rho_min: float = 0.9, back: float = 0.05) -> bool:
    """The target's criterion on one :func:`monotonicity` row: Spearman |rho| >= ``rho_min`` in the ends'
    direction and no step back by more than ``back`` times the span between the ends (docs/vae.md)."""
    span = abs(row["centroid_to_hz"] - row["centroid_from_hz"])
    return bool(row["rho"] >= rho_min and row["direction_ok"] and row["largest_reversal_hz"] <= back * span)


def transfer_cents(m: dict, x: np.ndarray, pitch_midi: float, point, sr: float) -> tuple[float, np.ndarray]:
    """Median |cents| of YIN on the streamed transfer (input's f0/loudness, ``point``'s timbre) vs the played pitch."""
    from patchlib.dataset import yin_f0

    from . import vae

    y = vae.stream(m, x, point=point)["y"]
    f, conf = yin_f0(y, sr)
    hop = 256
    lat = int(m["config"]["frame"]) // hop
    held = slice(int(0.1 * sr) // hop + lat, int(1.5 * sr) // hop)
    f = f[held]
    f = f[f > 0]
    f0 = 440.0 * 2 ** ((pitch_midi - 69) / 12)
    c = float(np.median(np.abs(1200 * np.log2(f / f0)))) if f.size else float("nan")
    return c, y


def evaluate(model, m: dict, root: str, man: dict, points: dict, velocity: int = 100, pitches=None) -> dict:
    """Held-out reconstructions (timbre ratio), centroid monotonicity, transfer pitch error."""
    from . import vae
    from .metrics import multires_log_spectral_distance
    from .train_sing import heldout_truth

    insts = sorted(man["instruments"])
    hp = man["heldout_pitches"] if pitches is None else pitches
    sr = man["sample_rate"]
    truth = heldout_truth(root, man, hp, velocity)
    rows, recs = [], {}
    for p in hp:
        for inst in insts:
            if (inst, p) not in truth:
                continue
            ref = truth[(inst, p)]
            y = vae.reconstruct(model, ref)
            recs[(inst, p)] = y
            d = multires_log_spectral_distance(y, ref, sr)
            others = [multires_log_spectral_distance(ref, truth[(o, p)], sr) for o in insts
                      if o != inst and (o, p) in truth]
            rows.append({"instrument": inst, "pitch": p, "distance_db": round(d, 3),
                         "other_mean_db": round(float(np.mean(others)), 3), "ratio_mean": round(d / np.mean(others), 4),
                         "ratio_min": round(d / np.min(others), 4)})
    summary = {}
    for inst in insts:
        r = [x for x in rows if x["instrument"] == inst]
        if r:
            summary[inst] = {"notes": len(r),
                             "ratio_mean_median": round(float(np.median([x["ratio_mean"] for x in r])), 4),
                             "ratio_mean_max": round(max(x["ratio_mean"] for x in r), 4),
                             "distance_db_median": round(float(np.median([x["distance_db"] for x in r])), 3)}
    mono = monotonicity(model, points)
    transfer = []
    src = "pluck" if "pluck" in insts else insts[0]
    for tgt in insts if m is not None else ():  # the transfer streams through the nodes' kernels
        if tgt == src:
            continue
        for p in hp:
            if (src, p) in truth:
                c, _ = transfer_cents(m, truth[(src, p)], p, points[tgt], sr)
                transfer.append({"from": src, "to": tgt, "pitch": p, "abs_cents_median": round(c, 2)})
    return {"rows": rows, "summary": summary, "monotonicity": mono, "transfer": transfer, "recs": recs,
            "truth": truth, "velocity": velocity, "pitches": list(hp)}


def write_report_png(path, ev, per_note, sr, title=""):
    """PCA of per-note mean latents (by instrument, by pitch) and truth/reconstruction spectrograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .train_sing import spectrogram_panel

    Z = np.array([p[2] for p in per_note])
    Zc = Z - Z.mean(0)
    _, _, Vt = np.linalg.svd(Zc, full_matrices=False)
    P = Zc @ Vt[:2].T
    insts = sorted({p[0] for p in per_note})
    ps = sorted({k[1] for k in ev["recs"]})
    pm = min(ps, key=lambda q: abs(q - 60))
    fig = plt.figure(figsize=(4 * max(len(insts), 2), 11))
    gs = fig.add_gridspec(3, max(len(insts), 2))
    ax = fig.add_subplot(gs[0, :len(insts) // 2 or 1])
    for i, inst in enumerate(insts):
        sel = np.array([p[0] == inst for p in per_note])
        ax.scatter(P[sel, 0], P[sel, 1], s=10, label=inst)
    ax.legend(fontsize=8)
    ax.set_title("latent PCA (mean per note), by instrument", fontsize=9)
    ax = fig.add_subplot(gs[0, len(insts) // 2 or 1:])
    sc = ax.scatter(P[:, 0], P[:, 1], s=10, c=[p[1] for p in per_note], cmap="viridis")
    fig.colorbar(sc, ax=ax, label="MIDI pitch")
    ax.set_title("latent PCA, by pitch", fontsize=9)
    for c, inst in enumerate(insts):
        for r, (lab, sig) in enumerate((("truth", ev["truth"][(inst, pm)]), ("VAE", ev["recs"][(inst, pm)]))):
            row = next(x for x in ev["rows"] if x["instrument"] == inst and x["pitch"] == pm)
            spectrogram_panel(fig.add_subplot(gs[1 + r, c]), sig, sr,
                              f"{inst} MIDI {pm} {lab}" + (f": ratio {row['ratio_mean']:.2f}" if r else ""))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------ training
def train(cfg: VaeTrainConfig, log=print) -> dict:
    """Run (or resume) a training; returns a summary (losses, measurements, paths, timings)."""
    import torch

    from . import vae
    from .train_sing import _lr_at, ensure_dataset, resume_state, spectral_loss, write_state

    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg.threads or 1))
    if cfg.size not in SIZES:
        raise ValueError(f"unknown size {cfg.size!r}; known: {', '.join(SIZES)}")
    if cfg.beta < 0:
        raise ValueError("--beta must be >= 0")
    if cfg.interp < 0:
        raise ValueError("--interp must be >= 0")
    if cfg.morph < 0:
        raise ValueError("--morph must be >= 0")
    if cfg.morph_pairs not in ("points", "pitch"):
        raise ValueError(f"--morph-pairs is 'points' or 'pitch', not {cfg.morph_pairs!r}")
    if cfg.morph_loss not in ("mix", "centroid"):
        raise ValueError(f"--morph-loss is 'mix' or 'centroid', not {cfg.morph_loss!r}")
    if cfg.morph_from < 0:
        raise ValueError("--morph-from must be >= 0")
    if cfg.morph_positions < 1:
        raise ValueError("--morph-positions must be >= 1")
    man = ensure_dataset(cfg.data, log, 0, progress=not cfg.quiet)
    insts = sorted(man["instruments"])
    if cfg.noise_bands < 0:
        raise ValueError("--noise-bands must be >= 0")
    mcfg = dict(vae.DEFAULT_CONFIG, **SIZES[cfg.size], noise_bands=cfg.noise_bands, sample_rate=man["sample_rate"])
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.decoder not in ("sing", "ddsp"):
        raise ValueError(f"unknown decoder {cfg.decoder!r}; known: sing, ddsp")
    model = vae.build_model(mcfg) if cfg.decoder == "sing" else ddsp_model(mcfg)
    N, hop = model.frame, model.hop
    train_notes = load_notes(model, cfg.data, "train", man, cfg.max_notes, rng)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"VAE/{cfg.size}: {n_params} parameters, latent {mcfg['latent']}, {len(insts)} instruments {insts}, "
        f"{len(train_notes)} training notes, batch {cfg.batch} x {cfg.crop} frames, beta {cfg.beta:g} "
        f"(annealed over {cfg.anneal} steps)")
    state_path = cfg.output + ".state.pt"
    if os.path.dirname(cfg.output):
        os.makedirs(os.path.dirname(cfg.output), exist_ok=True)
    st = {"step": 0, "elapsed": 0.0, "history": [], "key": json.dumps(cfg.key(), sort_keys=True)}
    if cfg.morph > 0:
        st["morph_points"] = []
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if os.path.isfile(state_path) and not cfg.restart:
        opt.load_state_dict(resume_state(state_path, st, model, rng)["opt"])
        log(f"resuming from {state_path}: step {st['step']}")
    elapsed0 = st["elapsed"]

    def save_state(step):
        more = {"morph_points": st["morph_points"]} if "morph_points" in st else {}
        write_state(state_path, model, opt, st, rng, elapsed0 + time.perf_counter() - t_start, step=step, **more)

    from tqdm import tqdm

    out_of_time = False
    model.train()
    bar = tqdm(total=cfg.steps, initial=st["step"], disable=cfg.quiet, unit="step", dynamic_ncols=True, desc="vae")
    running = None
    step = st["step"]
    # the instruments' points for --morph, refreshed every morph_every steps (kept in the state: a resumed run
    # goes on with the same points)
    by_pitch = cfg.morph_pairs == "pitch"
    pts = np.asarray(st["morph_points"], np.float64 if by_pitch else np.float32) if st.get("morph_points") else None
    for step in range(st["step"] + 1, cfg.steps + 1):
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, step / max(1, cfg.steps))
        beta = cfg.beta * min(1.0, step / cfg.anneal) if cfg.anneal > 0 else cfg.beta
        seg, feat, loud, f0, th = _batch(train_notes, rng, cfg.batch, cfg.crop, hop, N)
        mu, logvar = model.encode(feat)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        y = model.ola(model.decode(z, f0, loud, th))[:, N - hop:cfg.crop * hop]
        rec = spectral_loss(y, seg)
        kl = (0.5 * (mu ** 2 + logvar.exp() - 1.0 - logvar)).sum(-1).mean()
        loss = rec + beta * kl
        li = None
        if cfg.interp > 0:
            li = interp_loss(model, z, f0, loud, th, rng, slice(N - hop, cfg.crop * hop))
            loss = loss + cfg.interp * term_ramp(step, 0, cfg.anneal) * li  # ramps in as beta does
        lm = None
        wm = cfg.morph * term_ramp(step, cfg.morph_from, cfg.anneal)
        if wm > 0:
            if pts is None or (step - 1) % cfg.morph_every == 0:
                with torch.no_grad():
                    p, _, per_note = latent_points(model, train_notes)
                pts = (note_table(train_notes, per_note, sorted(p)) if by_pitch
                       else np.stack([p[k] for k in sorted(p)]).astype(np.float32))
                st["morph_points"] = pts.tolist()
            lm = morph_loss(model, None if by_pitch else pts, f0, loud, th, rng, slice(N - hop, cfg.crop * hop),
                            table=pts if by_pitch else None, kind=cfg.morph_loss, positions=cfg.morph_positions)
            loss = loss + wm * lm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        v, k = float(rec.detach()), float(kl.detach())
        if not (math.isfinite(v) and math.isfinite(k)):
            raise RuntimeError(f"training diverged at step {step} (loss {v}, KL {k}); lower --lr")
        running = v if running is None else 0.95 * running + 0.05 * v
        st["history"].append([step, round(v, 5), round(k, 4)])
        bar.update(1)
        if step % 10 == 0 or step == 1:
            bar.set_postfix_str(f"spectral {running:.4f} KL {k:.2f} beta {beta:.3g}"
                                + (f" interp {float(li.detach()):.3f}" if li is not None else "")
                                + (f" morph {float(lm.detach()):.3f}" if lm is not None else ""))
        if step % cfg.save_every == 0:
            save_state(step)
        if cfg.interrupt_at and step == cfg.interrupt_at:
            bar.close()
            save_state(step)
            raise KeyboardInterrupt(f"interrupted at step {step} (interrupt_at)")
        if cfg.max_minutes and elapsed0 + time.perf_counter() - t_start > 60.0 * cfg.max_minutes:
            out_of_time = True
            log(f"time limit ({cfg.max_minutes:g} min) at step {step}: stopping there")
            break
    bar.close()
    save_state(step)
    train_seconds = elapsed0 + time.perf_counter() - t_start
    model.eval()
    points, spread, per_note = latent_points(model, train_notes)
    if cfg.decoder == "ddsp":
        model.noise_gen = torch.Generator().manual_seed(0)  # the measurements repeat
        m = None
    else:
        m = {"config": model._cfg, "weights": vae.numpy_weights(model), "model": model}
    ev = evaluate(model, m, cfg.data, man, points, cfg.eval_velocity, cfg.eval_pitches)
    elapsed = elapsed0 + time.perf_counter() - t_start
    tr = [r["abs_cents_median"] for r in ev["transfer"]]
    validation = {"heldout": ev["summary"], "heldout_notes": ev["rows"], "heldout_velocity": cfg.eval_velocity,
                  "monotonicity": ev["monotonicity"],
                  "monotonicity_min_rho": round(min((r["rho"] for r in ev["monotonicity"]), default=float("nan")), 4),
                  "monotone_sweeps": sum(sweep_is_monotone(r) for r in ev["monotonicity"]),
                  "transfer": ev["transfer"],
                  "transfer_abs_cents_max": round(float(np.nanmax(tr)), 2) if tr else None,
                  "final_train_loss": round(float(np.mean([h[1] for h in st["history"][-50:]] or [float("nan")])), 4),
                  "final_kl": round(float(np.mean([h[2] for h in st["history"][-50:]] or [float("nan")])), 3),
                  "steps": step, "train_seconds": round(train_seconds, 1), "seconds": round(elapsed, 1),
                  "stopped": "time limit" if out_of_time else "steps",
                  "loss": "SING spectral loss (L1 of log(1e-8 + |STFT|^2), windows 2048/1024/512/256) + beta KL",
                  "timbre_metric": "multires_log_spectral_distance(reconstruction, truth) / the mean distance from "
                                   "the truth to the other instruments' truths (SING's bound: < 0.5)",
                  "monotonicity_metric": "|Spearman rho| of the spectral centroid of steady notes decoded along "
                                         "the line between two instruments' points (11 steps), per pair and pitch",
                  "transfer_metric": "median |cents| of YIN on the streamed transfer (held-out plucks, velocity "
                                     f"{cfg.eval_velocity}, another instrument's point) against the played pitch"}
    command = cfg.command()
    vae.save(cfg.output, model, points, spread, validation=validation, train_command=command)
    report = cfg.report or os.path.splitext(cfg.output)[0] + ".png"
    write_report_png(report, ev, per_note, man["sample_rate"],
                     title=f"VAE/{cfg.size}: latents (top), held-out truth (middle) and reconstruction (bottom)")
    log(f"stopped: {validation['stopped']} at step {step}; training {train_seconds / 60:.1f} min, "
        f"with the report {elapsed / 60:.1f} min; KL {validation['final_kl']}")
    for inst, s in ev["summary"].items():
        log(f"  {inst:6s} held-out timbre ratio median {s['ratio_mean_median']:.3f} max {s['ratio_mean_max']:.3f} "
            f"(distance {s['distance_db_median']:.2f} dB)")
    log(f"  centroid monotonicity: {validation['monotone_sweeps']} of {len(ev['monotonicity'])} sweeps monotone "
        f"(|rho| >= 0.9, no step back over 5 % of the span), min |rho| {validation['monotonicity_min_rho']}; "
        f"transfer |cents| max {validation['transfer_abs_cents_max']}")
    log(f"wrote {cfg.output} ({os.path.getsize(cfg.output) / 1024:.0f} KiB) and {report}")
    return {"validation": validation, "history": st["history"], "output": cfg.output, "report": report,
            "model": model, "seconds": elapsed, "command": command, "eval": ev, "points": points}


# ------------------------------------------------------------------ command line
HELP = """\
Train the timbre VAE (the vae_encoder/vae_decoder nodes' model) on patchlib's dataset.

Renders the dataset into --data first when it is missing (resumable), then
trains the encoder and decoder together on SING's spectral loss plus beta
times the KL divergence (beta rises from 0 over --anneal steps). The state is
saved to OUTPUT.state.pt as it goes: run the same command again to resume.
Writes OUTPUT (weights, config, each instrument's mean latent, held-out
measurements, this command) and a PNG report (latent PCA, spectrograms).
"""


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``vae`` on ``patchlib train``'s subparsers; its handler is ``args.handler``."""
    d = VaeTrainConfig()
    p = subparsers.add_parser("vae", help="a timbre VAE (encoder + decoder) from the instrument dataset",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=HELP,
                              epilog="example:\n  patchlib train vae -o patches/models/vae.pt --data data/notes\n")
    p.add_argument("-o", "--output", default=d.output, help=f"model file (default {d.output})")
    p.add_argument("--data", default=d.data, help=f"dataset folder, rendered if missing (default {d.data})")
    p.add_argument("--size", choices=sorted(SIZES), default=d.size,
                   help="model size: small (default), wide (the decoder twice as wide) or tiny (tests)")
    p.add_argument("--decoder", choices=("sing", "ddsp"), default=d.decoder,
                   help="sing (default: the nodes' decoder) or ddsp (harmonics + filtered noise: for the comparison "
                        "in docs/vae.md; the nodes do not play it)")
    p.add_argument("--noise-bands", type=int, default=d.noise_bands,
                   help=f"bands of the decoder's filtered noise (default {d.noise_bands}; 0: none)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help="notes per step")
    p.add_argument("--crop", type=int, default=d.crop, help="frames decoded per note and step")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-final", type=float, default=d.lr_final, help="learning rate at the end")
    p.add_argument("--beta", type=float, default=d.beta, help=f"weight of the KL term (default {d.beta:g})")
    p.add_argument("--anneal", type=int, default=d.anneal, help="steps over which beta rises from 0 (0: none)")
    p.add_argument("--interp", type=float, default=d.interp,
                   help="experimental: weight of the straight-path term (the decoded mix of two latents should "
                        "sound like the power mix of the two); default 0: off, as in the shipped model. It "
                        "straightens morphs but, so far, breaks the highest pitches (docs/vae.md)")
    p.add_argument("--morph", type=float, default=d.morph,
                   help="weight of the morph term: a point on the line between two instruments' mean latents "
                        "(what latent_morph plays) should decode to the power mix of the two ends, at every "
                        "pitch and level of the data, so the spectral centroid moves one way along a morph "
                        "(default 0: off; what it costs the reconstructions: docs/vae.md)")
    p.add_argument("--morph-pairs", choices=("points", "pitch"), default=d.morph_pairs,
                   help="the lines the morph term shapes: between the instruments' mean latents ('points', the "
                        "default), or between two instruments' own notes nearest each crop's pitch ('pitch': two "
                        "sounds of one pitch, as when latent_morph's points are captured from notes)")
    p.add_argument("--morph-loss", choices=("mix", "centroid"), default=d.morph_loss,
                   help="what the morph term asks of a line: 'mix' (the default) the power mix of its ends, "
                        "'centroid' only that the spectral centroid never steps back along it")
    p.add_argument("--morph-from", type=int, default=d.morph_from,
                   help="experimental: the step from which the morph term counts (it then ramps in over --anneal "
                        "steps); default 0: from the start, ramping in with beta")
    p.add_argument("--morph-positions", type=int, default=d.morph_positions,
                   help="experimental, with --morph-loss centroid: the random positions decoded between each "
                        "line's ends per step (default 2)")
    p.add_argument("--save-every", type=int, default=d.save_every, help="steps between saved training states")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop training after M minutes in all")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (default 1)")
    p.add_argument("--restart", action="store_true", help="ignore a saved training state and start again")
    p.add_argument("--report", help="PNG report path (default: beside the model)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train_vae)
    return p


def cmd_train_vae(a) -> int:
    from .traincli import check_counts, config_from_args, run_train

    return run_train(train, config_from_args(VaeTrainConfig, a),
                     check_counts(a, ("steps", "batch", "crop", "save_every", "threads")))


if __name__ == "__main__":  # python -m nodes.neural.train_vae ... (same options as 'patchlib train vae')
    ap = argparse.ArgumentParser(prog="python -m nodes.neural.train_vae")
    sub = ap.add_subparsers(dest="what", required=True)
    add_train_parser(sub)
    args = ap.parse_args()
    sys.exit(args.handler(args))
