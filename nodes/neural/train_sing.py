"""Training a SING note generator on patchlib's own dataset (``patchlib train sing``).

Pipeline (Défossez et al. 2018, at CPU scale):

* **data**: an NSynth-like dataset of :mod:`patchlib.dataset` (rendered into
  ``--data`` first if it is missing or incomplete: the four instruments of
  ``patches/instruments/``, MIDI 36..84, velocities 25..127, 4 s notes
  released at 3 s, 16 kHz). Its ``train`` split is trained on; its ``test``
  split (every 5th pitch and velocity 75, never trained on) is what the
  final report measures.
* **stage 1, autoencoder**: an encoder (each frame's log spectrum to a
  latent) and the decoder (:mod:`.sing`) learn to rebuild random crops of
  the notes with the spectral loss.
* **stage 2, latents**: the LSTM learns to produce the encoder's latents of
  whole notes from the conditioning alone (mean squared error).
* **stage 3, end to end**: LSTM and decoder are trained together on the
  spectral loss of generated crops (the LSTM runs over the whole note from
  its onset; the decoder renders a random crop of it).
* **spectral loss**: L1 between ``log(eps + |STFT|^2)`` of output and
  target (SING's), averaged over windows of 2048, 1024, 512 and 256
  samples (hop a quarter); ``|STFT|^2`` is scaled so a full-scale sine's
  bin is 1 and ``eps = 1e-8`` (-80 dB).
* **checkpoints**: the whole training state (weights, encoder, optimiser,
  stage, step, random generators) goes to ``OUTPUT.state.pt`` every
  ``--save-every`` steps and at each stage's end; running the same command
  again resumes from it (``--restart`` ignores it). The model file
  (``-o``, without the encoder) is written at the end, with the held-out
  measurements and this command; a PNG report beside it.
* **report**: on held-out notes (test split: held-out pitches at velocity
  100, every instrument): the median YIN f0 of each generated note against
  its conditioning pitch (cents), and the timbre ratio: the multi-resolution
  log-spectral distance (:func:`.metrics.multires_log_spectral_distance`) of
  the generated note to the ground-truth render, divided by the distance of
  that render to the other instruments' renders at the same pitch and
  velocity (mean and nearest).

torch is imported inside the functions: importing this module is cheap.
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
    "small": {},  # sing.DEFAULT_CONFIG
    "tiny": {"inst_dim": 4, "hidden": 16, "latent": 8, "dec_hidden": 32, "basis": 16, "harmonics": 24},
}
FFTS = (2048, 1024, 512, 256)
EPS = 1e-8


@dataclasses.dataclass
class SingTrainConfig:
    """Everything that decides a training run (the CLI's options)."""

    output: str = "patches/models/sing.pt"
    data: str = "data/notes"
    size: str = "small"
    ae_steps: int = 1500
    latent_steps: int = 600
    gen_steps: int = 2500
    batch: int = 12
    crop: int = 40  # frames per decoded crop
    intonation: float = 1.0  # weight of the learnt intonation's loss (0: no intonation head)
    lr: float = 2e-3
    lr_final: float = 2e-4
    save_every: int = 200
    max_minutes: float = 0.0
    eval_velocity: int = 100
    seed: int = 0
    threads: int = 1
    restart: bool = False
    report: str | None = None
    quiet: bool = False
    data_workers: int = 0
    max_notes: int = 0  # 0: every train note (tests use a few)
    eval_pitches: list | None = None  # None: every held-out pitch
    interrupt_at: int = 0  # tests: raise KeyboardInterrupt after this stage-3 step (as if stopped there)

    def command(self) -> str:
        q = shlex.quote
        parts = ["patchlib", "train", "sing", "-o", q(self.output), "--data", q(self.data), "--size", self.size,
                 "--ae-steps", str(self.ae_steps), "--latent-steps", str(self.latent_steps),
                 "--gen-steps", str(self.gen_steps), "--batch", str(self.batch), "--crop", str(self.crop),
                 "--lr", f"{self.lr:g}", "--lr-final", f"{self.lr_final:g}", "--intonation", f"{self.intonation:g}",
                 "--seed", str(self.seed), "--threads", str(self.threads)]
        if self.max_minutes:
            parts += ["--max-minutes", f"{self.max_minutes:g}"]
        return " ".join(parts)

    def key(self) -> dict:
        """The settings a resumed run must share with the interrupted one."""
        d = dataclasses.asdict(self)
        for k in ("restart", "quiet", "report", "save_every", "max_minutes", "data_workers", "threads", "output",
                  "interrupt_at", "eval_pitches"):
            d.pop(k)
        return d


# ------------------------------------------------------------------ data
def ensure_dataset(root: str, log=print, workers: int = 0, progress: bool = True) -> dict:
    """The dataset's manifest, rendering it first (resumable, :func:`patchlib.dataset.render_dataset`) if needed."""
    from patchlib.dataset import DatasetConfig, render_dataset

    man_path = os.path.join(root, "manifest.json")
    if os.path.isfile(man_path):
        with open(man_path, encoding="utf-8") as fh:
            man = json.load(fh)
        if all(os.path.isfile(os.path.join(root, n["audio"])) for n in man["notes"]):
            return man
    log(f"rendering the dataset into {root} (patchlib.dataset defaults; resumable) ...")
    return render_dataset(DatasetConfig(out=root, workers=workers, progress=progress))


def load_notes(root: str, split: str, man: dict, frame: int, hop: int, max_notes: int = 0, rng=None) -> list:
    """Notes of a split with their audio, conditioning (see :func:`.sing.note_conditioning`) and intonation."""
    from . import sing

    notes = []
    for lab, note, x, xo, T, sr in split_notes(root, split, man, frame, hop, max_notes, rng):
        feats, theta, _ = sing.note_conditioning(float(lab["pitch"]), lab["velocity"] / 127.0, T,
                                                 int(round(lab["release_s"] * sr)), frame, hop, sr)
        cents, w = intonation_target(x, sr, note["f0"], T, frame, hop)
        notes.append(dict(note, feats=feats, theta=theta, cents=cents, cents_w=w))
    return notes


#: what the intonation target trusts: YIN confidence at least this, within this many cents of the asked pitch
TUNE_CONFIDENCE = 0.8
TUNE_RANGE = 50.0
#: the weight of the pull toward the asked pitch where the target is not trusted (the bell, whose YIN f0 is
#: its hum; silence; attacks)
TUNE_PRIOR = 0.1


def intonation_target(x: np.ndarray, sr: float, f0: float, T: int, frame: int, hop: int):
    """The note's pitch movement at each SING frame's centre (cents, measured by YIN, about the note's median
    pitch), and each frame's weight.

    YIN (:func:`patchlib.dataset.yin_f0`, 1024-sample frames centred every
    128 samples) compares the window ``[0, w)`` with ``[tau, tau + w)``: its
    estimate belongs to their middle, ``(w + tau) / 2`` into the frame; the
    estimates are placed there and interpolated at the centres of the
    SING frames (frame j's centre is ``j hop - (frame - hop) + frame / 2`` in
    note time). Frames far from any trusted estimate (confidence >=
    :data:`TUNE_CONFIDENCE`, within :data:`TUNE_RANGE` cents) get the target
    0 (the asked pitch) with the weight :data:`TUNE_PRIOR`; trusted ones 1.

    The trusted estimates' median is subtracted: the head learns how the
    pitch moves over a note (a vibrato, a glide), while the note itself
    stays at the asked pitch. (A waveguide's constant offset of a few
    cents differs from one pitch to the next without a pattern; learnt, it
    was interpolated into held-out pitches as errors up to 12 cents.)
    """
    from patchlib.dataset import yin_f0

    yf, yhop, fmin = 1024, 128, 40.0
    fm, conf = yin_f0(x, int(sr), frame=yf, hop=yhop, fmin=fmin)
    w_len = yf - min(int(sr / fmin) + 2, yf // 2)
    c = 1200.0 * np.log2(np.maximum(fm, 1e-9) / f0)
    ok = (fm > 0) & (conf >= TUNE_CONFIDENCE) & (np.abs(c) <= TUNE_RANGE)
    t_est = np.arange(fm.size) * yhop - yf // 2 + 0.5 * (w_len + sr / np.maximum(fm, 1e-9))
    centres = np.arange(T) * hop - (frame - hop) + 0.5 * frame
    cents = np.zeros(T, np.float32)
    weight = np.full(T, TUNE_PRIOR, np.float32)
    if ok.sum() >= 2:
        te, ce = t_est[ok], c[ok] - np.median(c[ok])
        near = np.abs(te[np.clip(np.searchsorted(te, centres), 0, te.size - 1)] - centres)
        near = np.minimum(near, np.abs(te[np.clip(np.searchsorted(te, centres) - 1, 0, te.size - 1)] - centres))
        trusted = near <= 1.5 * yhop
        cents[trusted] = np.interp(centres[trusted], te, ce)
        weight[trusted] = 1.0
    return cents, weight


def intonation_loss(pred, notes, idx, T: int):
    """Weighted L1 (in tens of cents) between the head's intonation ``pred (B, T)`` and the notes' targets."""
    import torch

    tgt = torch.from_numpy(np.stack([notes[i]["cents"][:T] for i in idx]))
    w = torch.from_numpy(np.stack([notes[i]["cents_w"][:T] for i in idx]))
    return (w * (pred - tgt).abs()).sum() / w.sum() / 10.0


def split_notes(root: str, split: str, man: dict, frame: int, hop: int, max_notes: int = 0, rng=None):
    """``(label, note, audio, xo, T, sr)`` per note of a split (at most ``max_notes``, drawn by ``rng``).

    ``xo``: the mono audio after ``frame - hop`` zeros (a note's first frame
    starts that early), ``T`` frames long; ``note``: the fields every model's
    training notes share (name, instrument index and name, pitch, velocity,
    f0, audio, xo, T, sr). Shared with :mod:`.train_vae`.
    """
    import soundfile as sf

    from patchlib.dataset import load_split

    from . import sing

    insts = sorted(man["instruments"])
    labels = load_split(root, split)
    if max_notes and len(labels) > max_notes:
        idx = (rng or np.random.default_rng(0)).choice(len(labels), max_notes, replace=False)
        labels = [labels[i] for i in sorted(idx)]
    for lab in labels:
        x, sr = sf.read(os.path.join(root, lab["audio"]), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        L = x.size
        T = sing.note_frames(L, frame, hop)
        xo = np.zeros((T - 1) * hop + frame, np.float32)
        xo[frame - hop:frame - hop + L] = x
        note = {"name": lab["note"], "instrument": insts.index(lab["instrument"]), "inst_name": lab["instrument"],
                "pitch": lab["pitch"], "velocity": lab["velocity"], "f0": 440.0 * 2 ** ((lab["pitch"] - 69) / 12),
                "audio": x, "xo": xo, "T": T, "sr": sr}
        yield lab, note, x, xo, T, sr


# ------------------------------------------------------------------ loss
def stft_power(y, n: int):
    """``|STFT|^2`` of ``y (B, L)``: Hann window ``n``, hop ``n / 4``, no padding, a full-scale sine's bin = 1."""
    import torch

    w = torch.hann_window(n, periodic=True, dtype=y.dtype)
    Y = torch.stft(y, n, n // 4, window=w, center=False, return_complex=True)
    return (Y.real ** 2 + Y.imag ** 2) / (0.5 * w.sum()) ** 2


def spectral_loss(y, t, ffts=FFTS, eps=EPS):
    """SING's loss: mean over resolutions of L1 between ``log(eps + |STFT|^2)`` of ``y`` and ``t`` ``(B, L)``."""
    import torch

    total = 0.0
    ffts = [n for n in ffts if n <= y.shape[-1]] or [min(ffts)]
    for n in ffts:
        total = total + (torch.log(eps + stft_power(y, n)) - torch.log(eps + stft_power(t, n))).abs().mean()
    return total / len(ffts)


# ------------------------------------------------------------------ batches
def _batch(notes, rng, B, crop, hop, frame, onset_share=0.3):
    idx = rng.integers(len(notes), size=B)
    T = min(notes[i]["T"] for i in idx)
    starts = [0 if rng.random() < onset_share else int(rng.integers(0, T - crop + 1)) for _ in range(B)]
    return idx, T, starts


def _crop_tensors(notes, idx, starts, crop, hop, frame, torch):
    lead = frame - hop
    seg = np.stack([notes[i]["xo"][hop * s + lead:hop * (s + crop)] for i, s in zip(idx, starts)])
    frames = np.stack([np.lib.stride_tricks.sliding_window_view(notes[i]["xo"], frame)[::hop][s:s + crop]
                       for i, s in zip(idx, starts)])
    pf = np.stack([notes[i]["feats"][s:s + crop, :_n_pitch()] for i, s in zip(idx, starts)])
    th = np.stack([notes[i]["theta"][s:s + crop] for i, s in zip(idx, starts)])
    f0 = np.array([notes[i]["f0"] for i in idx])
    return (torch.from_numpy(seg), torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(pf),
            torch.from_numpy(th), torch.from_numpy(f0))


def _n_pitch():
    from . import _sing

    return _sing.N_PITCH


# ------------------------------------------------------------------ evaluation
def heldout_truth(root: str, man: dict, pitches, velocity: int) -> dict:
    """``{(instrument, pitch): mono float32 audio}``: the dataset's renders of the held-out notes at ``velocity``."""
    import soundfile as sf

    truth = {}
    for n in man["notes"]:
        if n["pitch"] in pitches and n["velocity"] == velocity:
            x, _ = sf.read(os.path.join(root, n["audio"]), dtype="float32", always_2d=True)
            truth[(n["instrument"], n["pitch"])] = x.mean(axis=1)
    return truth


def evaluate(model, root: str, man: dict, velocity: int = 100, pitches=None, log=print) -> dict:
    """Pitch (cents) and timbre ratios of generated held-out notes against their ground-truth renders."""
    from patchlib.dataset import yin_f0

    from . import sing
    from .metrics import multires_log_spectral_distance

    insts = sorted(man["instruments"])
    hp = man["heldout_pitches"] if pitches is None else pitches
    sr = man["sample_rate"]
    truth = heldout_truth(root, man, hp, velocity)
    rows = []
    gens = {}
    for p in hp:
        for inst in insts:
            if (inst, p) not in truth:
                continue
            ref = truth[(inst, p)]
            f0 = 440.0 * 2 ** ((p - 69) / 12)
            y = sing.generate(model, insts.index(inst), f0, velocity / 127.0, ref.size / sr, man["release_s"])
            gens[(inst, p)] = y
            held = slice(int(0.1 * sr) // 256, int((man["release_s"] - 0.1) * sr) // 256)

            def med(sig):
                f, conf = yin_f0(sig, sr)
                f = f[held]
                f = f[f > 0]
                return float(np.median(f)) if f.size else 0.0

            fg, ft = med(y), med(ref)
            cents = 1200 * math.log2(fg / f0) if fg > 0 else float("nan")
            cents_truth = 1200 * math.log2(ft / f0) if ft > 0 else float("nan")
            d = multires_log_spectral_distance(y, ref, sr)
            others = [multires_log_spectral_distance(ref, truth[(o, p)], sr)
                      for o in insts if o != inst and (o, p) in truth]
            rows.append({"instrument": inst, "pitch": p, "velocity": velocity, "cents": round(cents, 2),
                         "cents_truth": round(cents_truth, 2), "distance_db": round(d, 3),
                         "other_mean_db": round(float(np.mean(others)), 3),
                         "other_min_db": round(float(np.min(others)), 3),
                         "ratio_mean": round(d / float(np.mean(others)), 4),
                         "ratio_min": round(d / float(np.min(others)), 4),
                         "peak": round(float(np.max(np.abs(y))), 4)})
    summary = {}
    for inst in insts:
        r = [x for x in rows if x["instrument"] == inst]
        if not r:
            continue
        c = np.abs([x["cents"] for x in r])
        summary[inst] = {"abs_cents_median": round(float(np.nanmedian(c)), 2),
                         "abs_cents_max": round(float(np.nanmax(c)), 2),
                         "within_25_cents": int(np.sum(c <= 25)), "notes": len(r),
                         "ratio_mean_max": round(max(x["ratio_mean"] for x in r), 4),
                         "ratio_min_max": round(max(x["ratio_min"] for x in r), 4),
                         "ratio_mean_median": round(float(np.median([x["ratio_mean"] for x in r])), 4)}
    return {"rows": rows, "summary": summary, "velocity": velocity, "pitches": list(hp), "gens": gens, "truth": truth}


def write_report_png(path, ev, sr, title=""):
    """Spectrograms: ground truth (top) and generated (bottom), one held-out note per instrument."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    insts = sorted({k[0] for k in ev["gens"]})
    ps = sorted({k[1] for k in ev["gens"]})
    p = min(ps, key=lambda q: abs(q - 60))
    fig, axes = plt.subplots(2, len(insts), figsize=(4 * len(insts), 6.5), squeeze=False)
    for c, inst in enumerate(insts):
        for r, (lab, sig) in enumerate((("truth", ev["truth"][(inst, p)]), ("SING", ev["gens"][(inst, p)]))):
            row = next(x for x in ev["rows"] if x["instrument"] == inst and x["pitch"] == p)
            spectrogram_panel(axes[r, c], sig, sr, f"{inst} MIDI {p} {lab}" + (
                f": {row['cents']:+.1f} c, ratio {row['ratio_mean']:.2f}" if r else ""))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def spectrogram_panel(ax, sig, sr, title):
    """One report panel: the log-power spectrogram of ``sig`` (1024/256, -80..0 dB, kHz against s)."""
    from .metrics import log_power_spectrogram

    S = log_power_spectrogram(sig, 1024, 256)
    ax.imshow(S.T, origin="lower", aspect="auto", vmin=-80, vmax=0, cmap="magma",
              extent=(0, sig.size / sr, 0, sr / 2000))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("s")
    ax.set_ylabel("kHz")


# ------------------------------------------------------------------ training
def _lr_at(cfg, frac):
    return cfg.lr * (cfg.lr_final / cfg.lr) ** min(max(frac, 0.0), 1.0) if cfg.lr_final > 0 else cfg.lr


def resume_state(state_path: str, st: dict, model, rng) -> dict:
    """Load a saved training state into ``model``, ``st`` (its keys but ``key``), ``rng`` and torch's generator.

    Raises ValueError when it was saved by a run with other settings
    (``st["key"]``). Returns the saved dict (the optimiser's state is in ``"opt"``).
    """
    import torch

    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    if saved.get("key") != st["key"]:
        raise ValueError(f"{state_path} is from a run with other settings: give the same settings, "
                         "or --restart to start again")
    model.load_state_dict(saved["model"])
    st.update({k: saved[k] for k in st if k not in ("key", "history")}, history=list(saved["history"]))
    rng.bit_generator.state = json.loads(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    return saved


def write_state(state_path: str, model, opt, st: dict, rng, elapsed: float, **where) -> None:
    """Save the training state (``where``: the stage/step reached) atomically, for :func:`resume_state`."""
    import torch

    torch.save({"model": model.state_dict(), "opt": opt.state_dict() if opt is not None else None, **where,
                "elapsed": elapsed, "history": st["history"], "key": st["key"],
                "rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()},
               state_path + ".partial")
    os.replace(state_path + ".partial", state_path)


def train(cfg: SingTrainConfig, log=print) -> dict:
    """Run (or resume) a training; returns a summary (losses, held-out measurements, paths, timings)."""
    import torch

    from . import sing

    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg.threads or 1))
    if cfg.size not in SIZES:
        raise ValueError(f"unknown size {cfg.size!r}; known: {', '.join(SIZES)}")
    man = ensure_dataset(cfg.data, log, cfg.data_workers, progress=not cfg.quiet)
    if man["sample_rate"] != 16000:
        log(f"note: the dataset is at {man['sample_rate']} Hz; the model is trained at that rate")
    insts = sorted(man["instruments"])
    if cfg.intonation < 0:
        raise ValueError("--intonation must be >= 0")
    mcfg = dict(sing.DEFAULT_CONFIG, **SIZES[cfg.size], n_instruments=len(insts), sample_rate=man["sample_rate"],
                tune=cfg.intonation > 0)
    frame, hop = mcfg["frame"], mcfg["hop"]
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_notes = load_notes(cfg.data, "train", man, frame, hop, cfg.max_notes, rng)
    valid_notes = load_notes(cfg.data, "valid", man, frame, hop, min(cfg.max_notes or 24, 24), np.random.default_rng(1))
    model = sing.build_model(mcfg, encoder=True)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("enc"))
    log(f"SING/{cfg.size}: {n_params} parameters (+ encoder), {len(insts)} instruments {insts}, "
        f"{len(train_notes)} training notes, {len(valid_notes)} validation notes, "
        f"batch {cfg.batch} x {cfg.crop} frames")
    stages = [("autoencoder", cfg.ae_steps), ("latents", cfg.latent_steps), ("end-to-end", cfg.gen_steps)]
    state_path = cfg.output + ".state.pt"
    if os.path.dirname(cfg.output):
        os.makedirs(os.path.dirname(cfg.output), exist_ok=True)
    st = {"stage": 0, "step": 0, "elapsed": 0.0, "history": [], "key": json.dumps(cfg.key(), sort_keys=True)}
    opt = None
    if os.path.isfile(state_path) and not cfg.restart:
        saved = resume_state(state_path, st, model, rng)
        opt_state = saved.get("opt")
        log(f"resuming from {state_path}: stage {st['stage'] + 1} ({stages[min(st['stage'], 2)][0]}), "
            f"step {st['step']}")
    else:
        opt_state = None
    elapsed0 = st["elapsed"]

    def params_of(stage):
        if stage == 0:
            return [p for n, p in model.named_parameters() if not n.startswith(("lstm.", "to_z.", "emb."))]
        if stage == 1:
            return [p for n, p in model.named_parameters() if n.startswith(("lstm.", "to_z.", "emb.", "tune."))]
        return [p for n, p in model.named_parameters() if not n.startswith("enc")]

    def save_state(stage, step):
        write_state(state_path, model, opt, st, rng, elapsed0 + time.perf_counter() - t_start, stage=stage,
                    step=step)

    from tqdm import tqdm

    out_of_time = False
    for stage in range(st["stage"], 3):
        name, steps = stages[stage]
        first = st["step"] if stage == st["stage"] else 0
        opt = torch.optim.Adam(params_of(stage), lr=cfg.lr)
        if opt_state is not None and stage == st["stage"]:
            opt.load_state_dict(opt_state)
        model.train()
        bar = tqdm(total=steps, initial=first, disable=cfg.quiet, unit="step", dynamic_ncols=True,
                   desc=f"{stage + 1}/3 {name}")
        running = None
        for step in range(first + 1, steps + 1):
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, step / max(1, steps))
            if stage == 1:
                idx = rng.integers(len(train_notes), size=cfg.batch)
                T = min(train_notes[i]["T"] for i in idx)
                feats = torch.from_numpy(np.stack([train_notes[i]["feats"][:T] for i in idx]))
                frames = torch.from_numpy(np.stack([np.lib.stride_tricks.sliding_window_view(
                    train_notes[i]["xo"], frame)[::hop][:T] for i in idx]))
                with torch.no_grad():
                    z_t = model.encode(frames)
                inst = torch.tensor([float(train_notes[i]["instrument"]) for i in idx])
                z, cents = model.generate(inst, feats, cents=True)
                loss = torch.mean((z - z_t) ** 2)
                if model.tune is not None:
                    loss = loss + cfg.intonation * intonation_loss(cents, train_notes, idx, T)
            else:
                idx, T, starts = _batch(train_notes, rng, cfg.batch, cfg.crop, hop, frame)
                seg, frames, pf, th, f0 = _crop_tensors(train_notes, idx, starts, cfg.crop, hop, frame, torch)
                if stage == 0:
                    z = model.encode(frames)
                else:
                    feats = torch.from_numpy(np.stack([train_notes[i]["feats"][:T] for i in idx]))
                    inst = torch.tensor([float(train_notes[i]["instrument"]) for i in idx])
                    zall, cents = model.generate(inst, feats, cents=True)
                    z = torch.stack([zall[b, s:s + cfg.crop] for b, s in enumerate(starts)])
                y = model.ola(model.decode(z, pf, th, f0))[:, frame - hop:cfg.crop * hop]
                loss = spectral_loss(y, seg)
                if stage == 2 and model.tune is not None:  # (the partials train at the asked pitch: cheaper)
                    loss = loss + cfg.intonation * intonation_loss(cents, train_notes, idx, T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 5.0)
            opt.step()
            v = float(loss.detach())
            if not math.isfinite(v):
                raise RuntimeError(f"training diverged at stage {stage + 1} step {step} (loss {v}); lower --lr")
            running = v if running is None else 0.95 * running + 0.05 * v
            st["history"].append([stage, step, round(v, 5)])
            bar.update(1)
            if step % 10 == 0 or step == 1:
                bar.set_postfix_str(f"loss {running:.4f}")
            if step % cfg.save_every == 0:
                save_state(stage, step)
            if cfg.interrupt_at and stage == 2 and step == cfg.interrupt_at:
                bar.close()
                raise KeyboardInterrupt(f"interrupted at stage 3 step {step} (interrupt_at)")
            elapsed = elapsed0 + time.perf_counter() - t_start
            if cfg.max_minutes and elapsed > 60.0 * cfg.max_minutes and stage == 2:
                out_of_time = True
                log(f"time limit ({cfg.max_minutes:g} min) at stage 3 step {step}: stopping there")
                break
        bar.close()
        st["step"] = 0
        opt_state = None
        save_state(stage + 1, 0)
        if out_of_time:
            break
    model.eval()
    # validation loss (generated vs truth, whole notes) and the held-out measurements
    with torch.no_grad():
        vl = []
        for nt in valid_notes[:12]:
            y = sing.generate(model, nt["instrument"], nt["f0"], nt["velocity"] / 127.0, nt["audio"].size / nt["sr"],
                              man["release_s"], tail=None)
            vl.append(float(spectral_loss(torch.from_numpy(y)[None], torch.from_numpy(nt["audio"])[None])))
    ev = evaluate(model, cfg.data, man, cfg.eval_velocity, cfg.eval_pitches, log)
    hv = [v for v in man["heldout_velocities"] if v in man["velocities"] and v != cfg.eval_velocity]
    ev_v = evaluate(model, cfg.data, man, hv[0], cfg.eval_pitches, log) if hv else None
    elapsed = elapsed0 + time.perf_counter() - t_start
    losses = {s: float(np.mean([h[2] for h in st["history"] if h[0] == s][-50:] or [float("nan")])) for s in range(3)}
    validation = {"valid_spectral_loss": round(float(np.mean(vl)), 4) if vl else None, "heldout": ev["summary"],
                  "heldout_notes": ev["rows"], "heldout_velocity": cfg.eval_velocity,
                  "heldout_pitch_and_velocity": ev_v and {"velocity": ev_v["velocity"], "summary": ev_v["summary"],
                                                          "notes": ev_v["rows"]},
                  "final_train_losses": {stages[s][0]: round(v, 4) for s, v in losses.items()},
                  "seconds": round(elapsed, 1), "stopped": "time limit" if out_of_time else "steps",
                  "loss": "SING spectral loss: L1 of log(1e-8 + |STFT|^2) (full-scale sine bin = 1), windows "
                          "2048/1024/512/256, hop 1/4",
                  "pitch_metric": "median YIN f0 (patchlib.dataset.yin_f0) over 0.1 s .. release - 0.1 s, cents "
                                  "from the conditioning pitch",
                  "timbre_metric": "multires_log_spectral_distance(generated, truth) / the same distance from "
                                   "the truth to the other instruments' truths (mean; min = nearest)"}
    command = cfg.command()
    from . import sing as _s

    _s.save(cfg.output, model, insts, validation=validation, train_command=command)
    report = cfg.report or os.path.splitext(cfg.output)[0] + ".png"
    write_report_png(report, ev, man["sample_rate"],
                     title=f"SING/{cfg.size}, held-out pitch, velocity {cfg.eval_velocity} "
                           "(top: truth, bottom: generated)")
    log(f"stopped: {validation['stopped']}; {elapsed / 60:.1f} min; "
        f"validation spectral loss {validation['valid_spectral_loss']}")
    for inst, s in ev["summary"].items():
        log(f"  {inst:6s} pitch |cents| median {s['abs_cents_median']:6.2f} max {s['abs_cents_max']:7.2f} "
            f"({s['within_25_cents']}/{s['notes']} within 25); timbre ratio (mean) median {s['ratio_mean_median']:.3f} "
            f"max {s['ratio_mean_max']:.3f}, (nearest) max {s['ratio_min_max']:.3f}")
    if ev_v:
        for inst, s in ev_v["summary"].items():
            log(f"  {inst:6s} at held-out velocity {ev_v['velocity']}: |cents| max {s['abs_cents_max']:7.2f}, timbre "
                f"ratio (mean) max {s['ratio_mean_max']:.3f}")
    log(f"wrote {cfg.output} ({os.path.getsize(cfg.output) / 1024:.0f} KiB) and {report}")
    return {"validation": validation, "history": st["history"], "output": cfg.output, "report": report,
            "model": model, "seconds": elapsed, "command": command, "eval": ev}


# ------------------------------------------------------------------ command line
HELP = """\
Train a SING note generator (the 'sing' node's model) on patchlib's dataset.

Renders the dataset into --data first when it is missing (the four
instruments, MIDI 36-84, 5 velocities; resumable), then: stage 1 pretrains
the decoder as an autoencoder, stage 2 fits the LSTM to the encoder's
latents, stage 3 trains both end to end on SING's spectral loss. The state
is saved to OUTPUT.state.pt as it goes: run the same command again to resume
after an interruption. Writes OUTPUT (weights, config, held-out pitch and
timbre measurements, this command) and a PNG report of spectrograms.
"""


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sing`` on ``patchlib train``'s subparsers; its handler is ``args.handler``."""
    d = SingTrainConfig()
    p = subparsers.add_parser("sing", help="a SING note generator from the instrument dataset",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=HELP,
                              epilog="example:\n  patchlib train sing -o patches/models/sing.pt --data data/notes\n")
    p.add_argument("-o", "--output", default=d.output, help=f"model file (default {d.output})")
    p.add_argument("--data", default=d.data, help=f"dataset folder, rendered if missing (default {d.data})")
    p.add_argument("--size", choices=sorted(SIZES), default=d.size, help="model size (default small)")
    p.add_argument("--ae-steps", type=int, default=d.ae_steps, help="stage 1 steps (autoencoder)")
    p.add_argument("--latent-steps", type=int, default=d.latent_steps, help="stage 2 steps (LSTM to latents)")
    p.add_argument("--gen-steps", type=int, default=d.gen_steps, help="stage 3 steps (end to end)")
    p.add_argument("--batch", type=int, default=d.batch, help="notes per step")
    p.add_argument("--crop", type=int, default=d.crop, help="frames decoded per note and step")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-final", type=float, default=d.lr_final, help="learning rate at each stage's end")
    p.add_argument("--intonation", type=float, default=d.intonation,
                   help="weight of the learnt intonation (default %(default)g; 0: none): a head on the LSTM "
                        "predicts each frame's pitch offset in cents, trained on how YIN's f0 of the notes "
                        "moves about each note's median (a vibrato), and the partials follow it")
    p.add_argument("--save-every", type=int, default=d.save_every, help="steps between saved training states")
    p.add_argument("--max-minutes", type=float, default=0.0, help="end stage 3 early after M minutes in all")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (default 1)")
    p.add_argument("--restart", action="store_true", help="ignore a saved training state and start again")
    p.add_argument("--report", help="PNG report path (default: beside the model)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_train_sing)
    return p


def cmd_train_sing(a) -> int:
    from .traincli import check_counts, config_from_args, run_train

    return run_train(train, config_from_args(SingTrainConfig, a),
                     check_counts(a, ("ae_steps", "latent_steps", "gen_steps", "batch", "crop", "save_every",
                                      "threads")))


if __name__ == "__main__":  # python -m nodes.neural.train_sing ... (same options as 'patchlib train sing')
    ap = argparse.ArgumentParser(prog="python -m nodes.neural.train_sing")
    sub = ap.add_subparsers(dest="what", required=True)
    add_train_parser(sub)
    args = ap.parse_args()
    sys.exit(args.handler(args))
