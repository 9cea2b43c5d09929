"""Training the WaveNet generator (``patchlib train wavenet-gen``) on patchlib's own note dataset.

* **data**: :mod:`patchlib.dataset` notes (rendered first when ``--data`` has no
  manifest: the four instruments of ``patches/instruments``, MIDI pitches
  48..72, velocities 40, 75, 100, 127, 2 s notes released at 1.5 s, 16 kHz).
  The dataset's split decides: ``train`` is trained on, ``valid`` scores
  the early stopping, ``test`` (held-out pitches 50, 55, 60, 65, 70 and the
  held-out velocity 75) is only measured at the end.
* **teacher forcing**: random excerpts of ``receptive field - 1 + segment``
  samples; the network sees the true previous samples (mu-law classes) and
  the conditioning (phase of the note's f0 integrated from the note's start,
  log pitch, the labels' loudness curve interpolated to audio rate, the
  instrument) and is scored by cross-entropy on the last ``segment``
  samples (the first ones only fill the receptive field). Adam with
  exponential learning-rate decay; one torch thread (``--threads``).
* **experimental** (off by default, measured no better: docs/generators.md):
  ``--mean-loss W`` scores the mean of the predicted distribution too,
  ``--self-feed P`` feeds excerpts the network's own teacher-forced means
  (parallel scheduled sampling), ``--input-shape A`` adds a periodic error to
  the past the network reads.
* **checkpoints**: every ``--eval-every`` steps the validation loss is
  measured, the best weights kept, and the whole training state written to
  ``OUTPUT.state.pt`` (``--resume`` carries on from it, to the same result;
  ``--eval-only`` measures its best weights again, e.g. at another temperature).
* **the end**: the best weights generate the held-out-pitch notes (velocity
  100, every instrument) with the numba kernel from the labels' pitch and
  loudness curves, and the run reports their pitch error (YIN; for an
  instrument whose own render YIN does not hear at its pitch, the bell, the
  strongest partial near the pitch: :func:`note_pitch_cents`), the timbre
  ratio (multi-resolution log-spectral distance to the ground-truth note
  divided by the distance between two instruments' ground truths at that
  pitch) and the kernel's speed; all go into the checkpoint's
  ``validation`` and a PNG (spectrograms of truth vs generated, loss curves).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import time

import numpy as np

DEFAULT_PITCHES = "48:72"
DEFAULT_VELOCITIES = "40,75,100,127"


@dataclasses.dataclass
class GenTrainConfig:
    output: str = "wavenet-gen.pt"
    data: str = "data/wavenet-gen"
    pitches: str = DEFAULT_PITCHES
    velocities: str = DEFAULT_VELOCITIES
    seconds: float = 2.0
    release: float = 1.5
    size: str = "small"
    period_taps: int | None = None  # None: the size's
    phase_harmonics: int = 2
    channels: int = 0  # 0: the size's; else residual channels C, with skip and head 2C
    steps: int = 3000
    batch: int = 8
    segment: int = 2048
    lr: float = 3e-3
    lr_final: float = 3e-4
    eval_every: int = 250
    patience: int = 0
    max_minutes: float = 0.0
    input_noise: int = 0
    input_drift: float = 0.0
    input_shape: float = 0.0
    self_feed: float = 0.0
    mean_loss: float = 0.0
    gain_norm: bool = False
    preemph: float = 0.0
    mean_output: bool = False
    temperature: float = 1.0
    feedback: float = 1.0
    eval_velocity: int = 100
    seed: int = 0
    threads: int = 1
    resume: bool = False
    eval_only: bool = False
    stop_after: int = 0  # stop after this step as if interrupted (tests of --resume); 0: never
    report: str | None = None
    quiet: bool = False

    def command(self) -> str:
        q = shlex.quote
        parts = ["patchlib", "train", "wavenet-gen", "-o", q(self.output), "--data", q(self.data),
                 "--pitches", self.pitches, "--velocities", self.velocities, "--seconds", f"{self.seconds:g}",
                 "--release", f"{self.release:g}", "--size", self.size, "--steps", str(self.steps),
                 "--batch", str(self.batch), "--segment", str(self.segment), "--lr", f"{self.lr:g}",
                 "--lr-final", f"{self.lr_final:g}", "--eval-every", str(self.eval_every),
                 "--patience", str(self.patience), "--input-noise", str(self.input_noise),
                 "--temperature", f"{self.temperature:g}",
                 "--seed", str(self.seed), "--threads", str(self.threads)]
        if self.max_minutes:
            parts += ["--max-minutes", f"{self.max_minutes:g}"]
        if self.period_taps is not None:
            parts += ["--period-taps", str(self.period_taps)]
        if self.phase_harmonics != 2:
            parts += ["--phase-harmonics", str(self.phase_harmonics)]
        if self.channels:
            parts += ["--channels", str(self.channels)]
        if self.input_drift:
            parts += ["--input-drift", f"{self.input_drift:g}"]
        if self.input_shape:
            parts += ["--input-shape", f"{self.input_shape:g}"]
        if self.self_feed:
            parts += ["--self-feed", f"{self.self_feed:g}"]
        if self.mean_loss:
            parts += ["--mean-loss", f"{self.mean_loss:g}"]
        if self.gain_norm:
            parts += ["--gain-norm"]
        if self.preemph:
            parts += ["--preemph", f"{self.preemph:g}"]
        if self.mean_output:
            parts += ["--mean-output"]
        if self.feedback != 1.0:
            parts += ["--feedback", f"{self.feedback:g}"]
        return " ".join(parts)


def _int_list(text: str) -> list:
    if ":" in text:
        a, b = (int(v) for v in text.split(":")[:2])
        return list(range(a, b + 1))
    return [int(v) for v in text.split(",") if v.strip()]


# ------------------------------------------------------------------ data
def ensure_dataset(cfg: GenTrainConfig, log=print) -> str:
    """Render the dataset into ``cfg.data`` unless a manifest is there already."""
    if os.path.isfile(os.path.join(cfg.data, "manifest.json")):
        return cfg.data
    from patchlib.dataset import DatasetConfig, render_dataset

    log(f"rendering the dataset into {cfg.data} ...")
    render_dataset(DatasetConfig(out=cfg.data, pitches=_int_list(cfg.pitches), velocities=_int_list(cfg.velocities),
                                 seconds=cfg.seconds, release=cfg.release, workers=0, progress=not cfg.quiet))
    return cfg.data


def load_notes(root: str, split: str, names: list) -> list:
    """The notes of a split with audio, mu-law classes and audio-rate loudness: a list of dicts."""
    import soundfile as sf

    from patchlib.dataset import load_split

    from .wavenet_gen import mu_law_decode, mu_law_encode

    notes = []
    for lab in load_split(root, split):
        x, sr = sf.read(os.path.join(root, lab["audio"]), dtype="float32")
        if x.ndim > 1:
            x = x.mean(axis=1)
        frames = np.arange(len(lab["loudness_db"])) * lab["hop"]
        t = np.arange(x.size)
        notes.append({"name": lab["note"], "instrument": lab["instrument"], "inst": names.index(lab["instrument"]),
                      "pitch": lab["pitch"], "velocity": lab["velocity"], "sr": sr, "audio": x,
                      "classes": mu_law_encode(x), "f0": float(lab["f0_hz"][0]),
                      "dec": mu_law_decode(mu_law_encode(x)),
                      "f0_curve": np.interp(t, frames, lab["f0_hz"]).astype(np.float32),
                      "loud": np.interp(t, frames, lab["loudness_db"]).astype(np.float32),
                      "phase": fundamental_phase(x, float(lab["f0_hz"][0]), sr)})
    return notes


#: harmonics of the periodic input error of ``--input-shape``
SHAPE_HARMONICS = 8

#: loudness below this (dB) counts as this in the loudness normalisation (``--gain-norm``)
GAIN_NORM_FLOOR_DB = -70.0


def gain_norm_scale(notes: list, floor_db: float = GAIN_NORM_FLOOR_DB) -> float:
    """The scale ``s`` of the loudness normalisation: the 99.9th percentile of ``|x| / 10^(loudness / 20)``.

    Over the notes' samples louder than -50 dB: with it, ``x / (s 10^(loudness / 20))`` stays inside
    -1..1 but for the rarest samples (attacks the loudness frames only half cover), which are clipped.
    """
    r = []
    for n in notes:
        sel = n["loud"] > -50.0
        r.append(np.abs(n["audio"][sel]) / 10.0 ** (np.maximum(n["loud"][sel], floor_db) / 20.0))
    r = np.concatenate(r) if r else np.ones(1)
    return round(float(max(np.percentile(r, 99.9), 1e-3)), 4)


def recode(notes: list, gain_norm: dict | None, preemph: float = 0.0) -> list:
    """Re-code every note's classes (and their decoded values) as what the network models.

    ``y = x / a`` with loudness normalisation (``a = s 10^(max(loudness, floor) / 20)``), else ``x``;
    then, with pre-emphasis, ``y[t] - preemph y[t - 1]``.
    """
    from .wavenet_gen import mu_law_decode, mu_law_encode

    if not gain_norm and not preemph:
        return notes
    for n in notes:
        y = n["audio"].astype(np.float64)
        if gain_norm:
            y = y / (gain_norm["scale"] * 10.0 ** (np.maximum(n["loud"], gain_norm["floor_db"]) / 20.0))
        if preemph:
            y = y - preemph * np.concatenate([[0.0], y[:-1]])
        n["classes"] = mu_law_encode(y)
        n["dec"] = mu_law_decode(n["classes"])
    return notes


def excerpt(note: dict, s: int, T: int, period_input=0, jitter=None, drift=0.0, harmonics=2, shape=None):
    """``(prev classes (T,), targets (T,), conditioning (rows, T))`` of ``note`` from sample ``s``.

    ``jitter``: ``T`` integers added to the input classes (the targets stay clean); ``drift``:
    an offset added to the whole past (the modelled signal's units) before it is coded again,
    the slow error a free run makes that white jitter never shows; ``shape``: complex amplitudes
    ``a_k`` of a periodic error added to the past as well, ``Re sum_k a_k exp(i 2 pi k phase)``
    (``k = 1..K``, on the note's fundamental phase): a waveform whose harmonics are off, the error a
    free run locked on the wrong limit cycle makes (:func:`shape_error`). The period input
    (``period_input``) reads the same, jittered and offset, past as the network's input. ``harmonics``:
    the phase harmonics of the conditioning (the model's ``phase_harmonics``).
    """
    from .wavenet_gen import CLASSES, local_conditioning, mu_law_decode, mu_law_encode

    c = note["classes"]
    prev = np.empty(T, np.int64)
    prev[0] = c[s - 1] if s > 0 else CLASSES // 2
    prev[1:] = c[s:s + T - 1]
    if drift or shape is not None:
        v = mu_law_decode(prev) + drift
        if shape is not None:
            v[1 if s == 0 else 0:] += shape_error(note, max(s - 1, 0), s + T - 1, shape)
        prev = mu_law_encode(v)
    if jitter is not None:
        prev = np.clip(prev + jitter, 0, CLASSES - 1)
    f0 = note["f0_curve"][s:s + T]
    cond, _ = local_conditioning(f0, note["loud"][s:s + T], note["sr"], phase=note["phase"][s:s + T],
                                 harmonics=harmonics)
    if period_input:
        cond = np.concatenate([cond, period_rows(note, s, prev, period_input, drift, shape)])
    return prev, c[s:s + T], cond


def shape_error(note: dict, a: int, b: int, shape) -> np.ndarray:
    """``Re sum_k shape[k-1] exp(i 2 pi k phase[t])`` for samples ``t = a..b-1``, on ``note``'s fundamental phase."""
    w = np.exp(2j * np.pi * np.asarray(note["phase"][a:b], np.float64))
    out = np.zeros(b - a)
    z = np.ones(b - a, complex)
    for amp in shape:
        z = z * w
        out += (amp * z).real
    return out


def period_rows(note: dict, s: int, prev: np.ndarray, period_input: int, drift: float = 0.0,
                shape=None) -> np.ndarray:
    """The period input's rows of an excerpt from sample ``s`` whose input classes are ``prev``.

    The past before the excerpt is the note's own (offset by ``drift`` and ``shape``, as :func:`excerpt`'s,
    over the last ``HIST`` samples, as far back as the period input reads); inside it, the past is what
    ``prev`` holds, so the rows read the same past as the network's input.
    """
    from .wavenet_gen import HIST, mu_law_decode, mu_law_encode, period_offsets, period_row

    f0 = note["f0_curve"][s:s + prev.size]
    before = note["dec"][:max(s - 1, 0)]
    if shape is not None:
        lo = max(0, before.size - HIST)
        before = before.copy()
        before[lo:] = mu_law_decode(mu_law_encode(before[lo:] + drift + shape_error(note, lo, before.size, shape)))
    elif drift:
        before = mu_law_decode(mu_law_encode(before + drift))
    past = np.concatenate([before, mu_law_decode(prev)[0 if s > 0 else 1:]])
    return np.stack([period_row(past, f0, note["sr"], s, o) for o in period_offsets(period_input)])


def self_feed(model, prev, cond, inst, picked, sel, period_input, dec) -> None:
    """Parallel scheduled sampling (Duckworth et al. 2019) for the feedback-0 free run, in place.

    The excerpts ``sel`` of the batch get, as input, what a free run at feedback 0 feeds back: the
    mean of the distribution the network predicted (teacher-forced, without gradient) one sample
    earlier, as a class; their period rows are read again from that past.
    """
    import torch

    from .wavenet_gen import mu_law_encode

    idx = np.flatnonzero(sel)
    if idx.size == 0:
        return
    with torch.no_grad():
        lg = model(torch.from_numpy(prev[idx]), torch.from_numpy(cond[idx]), torch.from_numpy(inst[idx]))
        mu = (torch.softmax(lg, dim=1).transpose(1, 2) @ dec).numpy()
    rows = cond.shape[1]
    for j, b in enumerate(idx):
        prev[b, 1:] = mu_law_encode(mu[j, :-1])
        if period_input:
            note, s, drift, shape = picked[b]
            pr = period_rows(note, s, prev[b], period_input, drift, shape)
            cond[b, rows - pr.shape[0]:] = pr


def fundamental_phase(x: np.ndarray, f0: float, sr: float) -> np.ndarray:
    """The phase (cycles) of the note's fundamental at every sample: ``f0 t / sr + theta(t) / 2 pi``.

    ``theta`` is measured: the audio heterodyned by ``exp(-i 2 pi f0 t / sr)`` and
    smoothed by two moving averages one period long (which null the harmonics),
    so ``x``'s component at ``f0`` is ``A cos(2 pi phase)``. Training on this
    phase (not on the nominal one) ties the waveform to the phase rows even
    where the instrument's own phase drifts (detuned oscillators, vibrato, a
    random pluck); in generation the phase is integrated from the pitch param,
    so the fundamental follows the pitch.
    """
    t = np.arange(x.size)
    w = 2.0 * np.pi * f0 / sr
    z = np.asarray(x, np.float64) * np.exp(-1j * w * t)
    P = max(1, int(round(sr / f0)))
    k = np.ones(P) / P
    z = np.convolve(np.convolve(z, k, mode="same"), k, mode="same")
    return f0 * t / sr + np.angle(z) / (2.0 * np.pi)


# ------------------------------------------------------------------ metrics
def multires_log_spectral_distance(a, b) -> float:
    """The shared timbre distance (:func:`nodes.neural.metrics.multires_log_spectral_distance`, dB)."""
    from .metrics import multires_log_spectral_distance as shared

    return float(shared(a, b))


def median_f0_cents(x, sr, f0, t0=0.25, t1=1.4):
    """``(median YIN f0 over the held part, its error in cents)``; ``(0, inf)`` when nothing is voiced."""
    from patchlib.dataset import yin_f0

    f, conf = yin_f0(x, sr)
    fr = np.arange(f.size) * 256 / sr
    sel = f[(fr >= t0) & (fr <= t1) & (f > 0)]
    if sel.size == 0:
        return 0.0, math.inf
    m = float(np.median(sel))
    return m, float(1200 * math.log2(m / f0))


def note_pitch_cents(y, truth, sr, f0) -> tuple[float, float, str]:
    """``(generated, ground truth, measure)``: the pitch error (cents) of a generated note and of its truth.

    The measure is YIN's median f0 (:func:`median_f0_cents`) where YIN hears the truth at its pitch (within
    50 cents); where it does not (a bell: its partials are not harmonic, and YIN lands one or two octaves
    low on the bell's own render), both are measured by their strongest partial within 100 cents of the
    pitch (:func:`nodes.neural.metrics.partial_cents`): the partial the pitch sets.
    """
    from .metrics import partial_cents

    _, ct = median_f0_cents(truth, sr, f0)
    if math.isfinite(ct) and abs(ct) <= 50.0:
        return median_f0_cents(y, sr, f0)[1], ct, "yin"
    return partial_cents(y, sr, f0), partial_cents(truth, sr, f0), "partial"


def evaluate_generation(model, notes_by_key: dict, names: list, heldout: list, velocity: int, temperature: float,
                        seed: int = 0, log=print, mean_output: bool = False, feedback: float = 1.0) -> dict:
    """Generate every (instrument, held-out pitch) note at ``velocity`` and measure pitch and timbre."""
    from .wavenet_gen import generate

    rows, gens = [], {}
    t_gen, n_gen = 0.0, 0
    for inst in names:
        for p in heldout:
            note = notes_by_key.get((inst, p, velocity))
            if note is None:
                continue
            t0 = time.perf_counter()
            y = generate(model, note["f0_curve"], note["loud"], note["inst"], temperature, note["sr"], seed=seed,
                         mean_out=mean_output, feedback=feedback)
            t_gen += time.perf_counter() - t0
            n_gen += y.size
            gens[(inst, p)] = y
            cents, cents_truth, how = note_pitch_cents(y, note["audio"], note["sr"], note["f0"])
            d = multires_log_spectral_distance(y, note["audio"])
            others = [multires_log_spectral_distance(note["audio"], notes_by_key[(o, p, velocity)]["audio"])
                      for o in names if o != inst and (o, p, velocity) in notes_by_key]
            inter = float(np.mean(others)) if others else math.nan
            rows.append({"instrument": inst, "pitch": p, "cents": round(cents, 2), "pitch_measure": how,
                         "cents_truth": round(cents_truth, 2),
                         "lsd": round(d, 4), "lsd_between_instruments": round(inter, 4),
                         "timbre_ratio": round(d / inter, 4) if inter == inter else None,
                         "peak": round(float(np.max(np.abs(y))), 3)})
    res = {"notes": rows, "gens": gens, "seconds_per_sample": t_gen / max(1, n_gen)}
    if rows:
        res["max_abs_cents"] = max(abs(r["cents"]) for r in rows)
        res["within_25_cents"] = sum(abs(r["cents"]) <= 25 for r in rows)
        res["timbre_ratio_mean"] = float(np.mean([r["timbre_ratio"] for r in rows]))
        res["timbre_ratio_max"] = float(np.max([r["timbre_ratio"] for r in rows]))
    return res


def write_report_png(path, gens: dict, notes_by_key: dict, velocity: int, history: list, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(gens)[:: max(1, len(gens) // 4)][:4]
    fig, axes = plt.subplots(len(keys) + 1, 2, figsize=(11, 2.6 * (len(keys) + 1)))
    axes = np.atleast_2d(axes)
    for r, (inst, p) in enumerate(keys):
        truth = notes_by_key[(inst, p, velocity)]["audio"]
        for c, (x, what) in enumerate([(truth, "ground truth"), (gens[(inst, p)], "generated")]):
            ax = axes[r, c]
            ax.specgram(x, NFFT=512, Fs=16000, noverlap=384, cmap="magma", vmin=-120)
            ax.set_ylim(0, 4000)
            ax.set_title(f"{inst} MIDI {p} v{velocity}: {what}", fontsize=9)
    ax = axes[-1, 0]
    if history:
        ax.plot([h["step"] for h in history if h["train_loss"] is not None],
                [h["train_loss"] for h in history if h["train_loss"] is not None], label="train")
        ax.plot([h["step"] for h in history], [h["valid_loss"] for h in history], label="valid")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats)")
        ax.legend()
    axes[-1, 1].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ------------------------------------------------------------------ training
def train(cfg: GenTrainConfig, log=print) -> dict:
    import torch
    from torch.nn import functional as F

    from patchlib.dataset import heldout_pitches

    from .wavenet_gen import CLASSES, PRESETS, build_model, mu_law_decode, save_model

    torch.set_num_threads(int(cfg.threads))
    if not 0.0 <= cfg.feedback <= 1.0:
        raise ValueError(f"--feedback is between 0 and 1 (got {cfg.feedback:g})")
    state_path = cfg.output + ".state.pt"
    if cfg.eval_only and not os.path.isfile(state_path):  # before any data is rendered
        raise ValueError(f"--eval-only needs the training state {state_path}")
    ensure_dataset(cfg, log)
    with open(os.path.join(cfg.data, "manifest.json"), encoding="utf-8") as fh:
        man = json.load(fh)
    names = sorted(man["instruments"])
    sr = int(man["sample_rate"])
    train_notes = load_notes(cfg.data, "train", names)
    valid_notes = load_notes(cfg.data, "valid", names) or train_notes[:8]
    if not train_notes:
        raise ValueError(f"{cfg.data}: no training notes")
    if cfg.size not in PRESETS:
        raise ValueError(f"unknown size {cfg.size!r}; known: {', '.join(PRESETS)}")
    mcfg = dict(PRESETS[cfg.size], instruments=len(names), instrument_names=names, sample_rate=sr)
    if cfg.period_taps is not None:
        if cfg.period_taps not in (0, 1, 2):
            raise ValueError("--period-taps is 0, 1 or 2")
        mcfg["period_input"] = int(cfg.period_taps)
    if not cfg.input_drift >= 0.0:
        raise ValueError("--input-drift is an offset bound >= 0")
    if not cfg.input_shape >= 0.0:
        raise ValueError(f"--input-shape is an amplitude bound >= 0 (got {cfg.input_shape:g})")
    if not 0.0 <= cfg.self_feed <= 1.0:
        raise ValueError(f"--self-feed is a probability, 0..1 (got {cfg.self_feed:g})")
    if not cfg.mean_loss >= 0.0:
        raise ValueError(f"--mean-loss is a weight >= 0 (got {cfg.mean_loss:g})")
    if cfg.channels:
        if cfg.channels < 1:
            raise ValueError("--channels is a count >= 1")
        mcfg.update(channels=int(cfg.channels), skip=2 * int(cfg.channels), head=2 * int(cfg.channels))
    if cfg.phase_harmonics != 2:
        mcfg["phase_harmonics"] = int(cfg.phase_harmonics)  # the model checks its range (1..16)
    if cfg.gain_norm:
        mcfg["gain_norm"] = {"scale": gain_norm_scale(train_notes), "floor_db": GAIN_NORM_FLOOR_DB}
        log(f"loudness normalisation: the network models x / ({mcfg['gain_norm']['scale']:g} 10^(loudness / 20))")
    if cfg.preemph:
        mcfg["preemph"] = float(cfg.preemph)
    recode(train_notes, mcfg.get("gain_norm"), mcfg.get("preemph", 0.0))
    recode(valid_notes, mcfg.get("gain_norm"), mcfg.get("preemph", 0.0))
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg)
    warm = model.receptive_field - 1
    T = warm + cfg.segment
    N = min(n["audio"].size for n in train_notes)
    if T > N:
        raise ValueError(f"excerpts of {T} samples are longer than the notes ({N}): lower --segment")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gamma = (cfg.lr_final / cfg.lr) ** (1.0 / max(1, cfg.steps)) if cfg.lr_final > 0 else 1.0
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    rng = np.random.default_rng(cfg.seed)
    # a fixed validation set: 2 excerpts per valid note
    vrng = np.random.default_rng(12345)
    pi, nh = mcfg.get("period_input", 0), mcfg.get("phase_harmonics", 2)
    vset = [excerpt(n, int(vrng.integers(0, n["audio"].size - T + 1)), T, pi, harmonics=nh)
            for n in valid_notes for _ in range(2)]
    vinst = torch.tensor([n["inst"] for n in valid_notes for _ in range(2)])

    def valid_loss():
        model.eval()
        tot = 0.0
        with torch.no_grad():
            for i in range(0, len(vset), 8):
                part = vset[i:i + 8]
                prev = torch.from_numpy(np.stack([p for p, _, _ in part]))
                tgt = torch.from_numpy(np.stack([t for _, t, _ in part]))
                cond = torch.from_numpy(np.stack([c for _, _, c in part]))
                lg = model(prev, cond, vinst[i:i + 8])
                tot += float(F.cross_entropy(lg[:, :, warm:], tgt[:, warm:], reduction="sum"))
        model.train()
        return tot / (len(vset) * cfg.segment)

    history, start, best, bad, running, spent = [], 1, (math.inf, 0, None), 0, None, 0.0
    if (cfg.resume or cfg.eval_only) and os.path.isfile(state_path):
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        rng.bit_generator.state = json.loads(st["rng"])
        history = json.loads(st["history"])
        best = (st["best_loss"], st["best_step"], st["best_model"])
        start, bad, running, spent = st["step"] + 1, st["bad"], st["running"], st["seconds"]
        log(f"resuming from {state_path} at step {start}")
    log(f"{len(train_notes)} train / {len(valid_notes)} valid notes, instruments {names}; model {cfg.size}: "
        f"{sum(p.numel() for p in model.parameters())} weights, {model.macs_per_sample} MACs/sample, "
        f"receptive field {model.receptive_field}; batch {cfg.batch} x ({warm} + {cfg.segment})")
    if not history:  # the untrained model's score, for the loss curve
        history.append({"step": 0, "train_loss": None, "valid_loss": round(valid_loss(), 4), "seconds": 0.0})
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=start - 1, disable=cfg.quiet, unit="step", dynamic_ncols=True)
    t_start = time.perf_counter() - spent
    stopped = "steps"
    step = start - 1
    if cfg.eval_only:  # measure the saved state's best weights again (e.g. at another --temperature)
        stopped = st.get("stopped", "steps")
        start = cfg.steps + 1
    prev_b = np.empty((cfg.batch, T), np.int64)
    tgt_b = np.empty((cfg.batch, T), np.int64)
    cond_b = np.empty((cfg.batch, model.local, T), np.float32)
    inst_b = np.empty(cfg.batch, np.int64)
    picked = [None] * cfg.batch  # (note, start, drift, shape) of each excerpt, for --self-feed
    dec_t = torch.from_numpy(mu_law_decode(np.arange(CLASSES)).astype(np.float32))
    model.train()
    for step in range(start, cfg.steps + 1):
        for b in range(cfg.batch):
            note = train_notes[int(rng.integers(len(train_notes)))]
            s = int(rng.integers(0, note["audio"].size - T + 1))
            jitter = None
            if cfg.input_noise:  # jitter the input classes by up to k (k drawn per excerpt), targets stay clean
                k = int(rng.integers(0, cfg.input_noise + 1))
                jitter = rng.integers(-k, k + 1, T) if k else None
            drift = float(rng.uniform(-cfg.input_drift, cfg.input_drift)) if cfg.input_drift else 0.0
            shape = None
            if cfg.input_shape:  # a periodic error: SHAPE_HARMONICS harmonics, amplitudes 0..A, random phases
                shape = rng.uniform(0, cfg.input_shape, SHAPE_HARMONICS) * np.exp(
                    2j * np.pi * rng.random(SHAPE_HARMONICS))
            prev_b[b], tgt_b[b], cond_b[b] = excerpt(note, s, T, pi, jitter, drift, nh, shape)
            inst_b[b] = note["inst"]
            picked[b] = (note, s, drift, shape)
        if cfg.self_feed:
            self_feed(model, prev_b, cond_b, inst_b, picked, rng.random(cfg.batch) < cfg.self_feed, pi, dec_t)
        lg = model(torch.from_numpy(prev_b), torch.from_numpy(cond_b), torch.from_numpy(inst_b))
        tgt = torch.from_numpy(tgt_b[:, warm:])
        loss = ce = F.cross_entropy(lg[:, :, warm:], tgt)
        if cfg.mean_loss:  # the mean of the predicted distribution, scored as a prediction of the sample
            mu = torch.softmax(lg[:, :, warm:], dim=1).transpose(1, 2) @ dec_t
            x = dec_t[tgt]
            loss = loss + cfg.mean_loss * torch.sum((mu - x) ** 2) / torch.sum(x ** 2).clamp_min(1e-6)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        v, total = float(ce.detach()), float(loss.detach())  # the loss curve is the cross-entropy
        if not math.isfinite(total):
            raise RuntimeError(f"training diverged at step {step} (loss {total}); lower --lr")
        running = v if running is None else 0.98 * running + 0.02 * v
        bar.update(1)
        if step % 5 == 0 or step == start:
            bar.set_postfix_str(f"loss {running:.3f}" + (f" valid {best[0]:.3f}" if best[0] < math.inf else ""))
        elapsed = time.perf_counter() - t_start
        out_of_time = cfg.max_minutes > 0 and elapsed > 60.0 * cfg.max_minutes
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            vl = valid_loss()
            history.append({"step": step, "train_loss": round(running, 4), "valid_loss": round(vl, 4),
                            "seconds": round(elapsed, 1)})
            if vl < best[0]:
                best = (vl, step, {k: t.detach().clone() for k, t in model.state_dict().items()})
                bad = 0
            else:
                bad += 1
            if cfg.patience and bad >= cfg.patience:
                stopped = f"early stop (no better validation loss for {bad} evaluations)"
            elif out_of_time:
                stopped = f"time limit ({cfg.max_minutes:g} min)"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "rng": json.dumps(rng.bit_generator.state), "history": json.dumps(history),
                        "best_loss": best[0], "best_step": best[1], "best_model": best[2], "step": step,
                        "bad": bad, "running": running, "seconds": elapsed, "stopped": stopped}, state_path)
            if stopped != "steps":
                break
        if cfg.stop_after and step >= cfg.stop_after:
            bar.close()
            return {"interrupted": step, "history": history}
    bar.close()
    train_seconds = time.perf_counter() - t_start
    model.load_state_dict(best[2])
    model.eval()
    # measure on the held-out pitches with the numba kernel
    test_notes = recode(load_notes(cfg.data, "test", names), mcfg.get("gain_norm"), mcfg.get("preemph", 0.0))
    by_key = {(n["instrument"], n["pitch"], n["velocity"]): n for n in test_notes + train_notes + valid_notes}
    hp = list(man.get("heldout_pitches") or heldout_pitches(_dataset_cfg_like(man)))
    ev = evaluate_generation(model, by_key, names, hp, cfg.eval_velocity, cfg.temperature, seed=cfg.seed, log=log,
                             mean_output=cfg.mean_output, feedback=cfg.feedback)
    sps = ev["seconds_per_sample"]
    validation = {"valid_loss": round(best[0], 4), "best_step": best[1], "steps": step, "stopped": stopped,
                  "train_seconds": round(train_seconds, 1), "heldout_pitches": hp,
                  "eval_velocity": cfg.eval_velocity, "eval_temperature": cfg.temperature,
                  "eval_feedback": cfg.feedback,
                  "eval_output": "mean" if cfg.mean_output else "sample",
                  "max_abs_cents": ev.get("max_abs_cents"), "within_25_cents": ev.get("within_25_cents"),
                  "notes_measured": len(ev["notes"]), "timbre_ratio_mean": ev.get("timbre_ratio_mean"),
                  "timbre_ratio_max": ev.get("timbre_ratio_max"), "seconds_per_sample": sps,
                  "realtime_x": round(1.0 / (sps * sr), 3) if sps else None,
                  "macs_per_sample": model.macs_per_sample, "per_note": ev["notes"], "history": history}
    save_model(cfg.output, model, mcfg, validation=validation, train_command=cfg.command())
    report = cfg.report or os.path.splitext(cfg.output)[0] + ".png"
    write_report_png(report, ev["gens"], by_key, cfg.eval_velocity, history,
                     f"wavenet-gen ({cfg.size}), step {best[1]}: valid CE {best[0]:.3f}, held-out pitch max "
                     f"|err| {ev.get('max_abs_cents', math.nan):.1f} cents, timbre ratio "
                     f"{ev.get('timbre_ratio_mean', math.nan):.2f}")
    log(f"stopped: {stopped}; best validation cross-entropy {best[0]:.4f} at step {best[1]} ({train_seconds:.0f} s)")
    for r in ev["notes"]:
        log(f"  {r['instrument']:6s} MIDI {r['pitch']}: {r['cents']:+7.1f} cents (truth {r['cents_truth']:+6.1f}, "
            f"{r['pitch_measure']}), "
            f"timbre ratio {r['timbre_ratio']:.2f}")
    log(f"held-out pitches: max |error| {ev.get('max_abs_cents', math.nan):.1f} cents, "
        f"{ev.get('within_25_cents')}/{len(ev['notes'])} within 25; timbre ratio mean "
        f"{ev.get('timbre_ratio_mean', math.nan):.3f}; kernel {sps * 1e6:.1f} us/sample "
        f"({validation['realtime_x']}x real time at {sr} Hz, {model.macs_per_sample} MACs/sample)")
    log(f"wrote {cfg.output} ({os.path.getsize(cfg.output) / 1024:.0f} KiB) and {report}")
    return {"validation": validation, "model": model, "output": cfg.output, "report": report, "history": history}


def _dataset_cfg_like(man: dict):
    from patchlib.dataset import DatasetConfig

    pitches = sorted({n["pitch"] for n in man["notes"]})
    return DatasetConfig(out="", pitches=pitches)


# ------------------------------------------------------------------ command line
def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``wavenet-gen`` under ``patchlib train`` (its handler is ``args.handler``)."""
    p = subparsers.add_parser("wavenet-gen", help="a WaveNet note generator from patchlib's note dataset",
                              description=__doc__.split("\n\n")[0] + " See docs/generators.md.")
    d = GenTrainConfig()
    p.add_argument("-o", "--output", default=d.output, help="checkpoint to write (default %(default)s)")
    p.add_argument("--data", default=d.data, help="dataset folder (rendered there when it has no manifest)")
    p.add_argument("--pitches", default=d.pitches, help="MIDI pitches LO:HI or a list, when rendering")
    p.add_argument("--velocities", default=d.velocities, help="velocities when rendering (default %(default)s)")
    p.add_argument("--seconds", type=float, default=d.seconds, help="note length when rendering")
    p.add_argument("--release", type=float, default=d.release, help="note-off time when rendering")
    p.add_argument("--size", default=d.size, help="model size: small (shipped) or tiny")
    p.add_argument("--period-taps", type=int, default=None, choices=(0, 1, 2),
                   help="period input rows: 0 none, 1 at the period (small's default), 2 half a sample either side")
    p.add_argument("--phase-harmonics", type=int, default=d.phase_harmonics,
                   help="experimental: conditioning rows sin/cos of k x the fundamental's phase, k = 1..N (default "
                        "%(default)s, as shipped): a noise-free path to the waveform's shape; 8 measured no better "
                        "(docs/generators.md)")
    p.add_argument("--channels", type=int, default=d.channels,
                   help="residual channels C instead of the size's (skip and head channels 2C): cost per sample "
                        "grows about as C squared (default: the size's, 24 for small)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--segment", type=int, default=d.segment, help="scored samples per excerpt")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-final", type=float, default=d.lr_final)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--patience", type=int, default=d.patience, help="evaluations without improvement (0: off)")
    p.add_argument("--max-minutes", type=float, default=d.max_minutes, help="time limit (0: none)")
    p.add_argument("--input-noise", type=int, default=d.input_noise,
                   help="jitter the input mu-law classes by up to K (K drawn per excerpt, 0..K): robustness to "
                        "the model's own sampling errors (default %(default)s)")
    p.add_argument("--input-drift", type=float, default=d.input_drift,
                   help="offset the whole input past by up to D (uniform in -D..D per excerpt, in the modelled "
                        "signal's units, targets clean): teaches the network to pull a free run's slow drift back "
                        "to zero (default %(default)s: off)")
    p.add_argument("--input-shape", type=float, default=d.input_shape,
                   help="experimental: add to the input past a periodic error on the note's fundamental: "
                        f"harmonics 1..{SHAPE_HARMONICS}, each of amplitude 0..A (uniform, modelled signal's units) "
                        "and random phase, per excerpt; targets clean: teaches the network to pull a free run that "
                        "locked on a wrongly shaped waveform back to the instrument's; measured worse, more so the "
                        "larger A (docs/generators.md; default %(default)g: off)")
    p.add_argument("--self-feed", type=float, default=d.self_feed,
                   help="experimental: probability (per excerpt) that its input is what a free run at feedback 0 "
                        "feeds back: the mean the network predicted one sample earlier, teacher-forced (parallel "
                        "scheduled sampling); measured: the saw better, the bowed string worse "
                        "(docs/generators.md; default %(default)g: off)")
    p.add_argument("--mean-loss", type=float, default=d.mean_loss,
                   help="experimental: weight of a second loss: the squared error of the predicted distribution's "
                        "mean (what the node plays at output mean) over the target's power; measured: the saw "
                        "better, the bowed string worse (docs/generators.md; default %(default)g: off)")
    p.add_argument("--gain-norm", action="store_true",
                   help="loudness normalisation: the network models x / (s 10^(loudness / 20)) and the kernel "
                        "multiplies its output back, so the level follows the loudness param exactly")
    p.add_argument("--preemph", type=float, default=d.preemph,
                   help="pre-emphasis coefficient (e.g. 0.85; 0: none): the network models y[t] - a y[t-1] and the "
                        "kernel de-emphasises, so its noise follows the spectrum's tilt (LPCNet)")
    p.add_argument("--mean-output", action="store_true",
                   help="measure the final test with the node's output: mean (the mean of each drawn-from "
                        "distribution) instead of the drawn sample")
    p.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature of the final test")
    p.add_argument("--feedback", type=float, default=d.feedback,
                   help="the node's feedback param in the final test: the network is fed mean + F x (draw - mean) "
                        "(default %(default)g: the draw, the classic WaveNet; 0: the mean); the checkpoint records "
                        "it and the node takes it as its default")
    p.add_argument("--eval-velocity", type=int, default=d.eval_velocity)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--resume", action="store_true", help="carry on from OUTPUT.state.pt")
    p.add_argument("--eval-only", action="store_true",
                   help="no training: measure OUTPUT.state.pt's best weights (at --temperature) and write OUTPUT")
    p.add_argument("--report", default=None, help="PNG report (default: OUTPUT with .png)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=run_args)
    return p


def run_args(a) -> int:
    from .traincli import check_counts, config_from_args, run_train

    return run_train(train, config_from_args(GenTrainConfig, a),
                     check_counts(a, ("steps", "batch", "segment", "eval_every", "threads")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes.neural.train_wavenet_gen")
    sub = parser.add_subparsers(dest="what", required=True)
    add_train_parser(sub)
    a = parser.parse_args(argv)
    return a.handler(a)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
