"""Training a neural ``pedal`` model from dry/wet WAV pairs (``patchlib train pedal``).

Pipeline:

* **data**: a ``pedal_data`` manifest (pairs with knob values, a time split,
  grid and held-out knob settings) or plain pairs given on the command line.
  Only knobs that vary between the training pairs become conditioning rows
  (a knob fixed in every pair, like the manifest's ``level``, is recorded in
  the checkpoint's ``validation["fixed_knobs"]`` and not declared).
* **alignment**: the lag of each wet file behind its dry file is found by
  cross-correlation (FFT, over the loudest window) and reported; the wet
  file is advanced by ``lag - safety`` samples (``safety`` keeps the model
  causal when the estimate is one sample late).
* **split**: the manifest's ``split`` (train / validation frames), else the
  last ``val_fraction`` of every pair. Held-out pairs are never trained on:
  they are scored on the validation frames, separately.
* **loss**: ESR after the first-order pre-emphasis ``1 - 0.85 z^-1``
  (Damskägg et al. 2019) ``sum((pe(y) - pe(ŷ))²) / sum(pe(y)²)``, plus
  ``stft_weight`` times a multi-resolution STFT loss; random segments of
  ``segment`` scored samples after a warm-up of the receptive field (not
  scored), batched; Adam with exponential learning-rate decay, early
  stopping on the validation ESR (the best weights are kept).
* **knobs**: each knob enters the model normalised to 0..1 over its range
  (the manifest's, which for ``pedal_data`` is the grid's span; 0..1 for
  pairs given on the command line), so the conditioning uses its whole
  scale. A WaveNet may add a learnt knob-dependent input gain
  (``--input-gain``, FiLM on the input: a drive knob spanning tens of dB is
  a product an additive conditioning row can only approximate). An LSTM may
  drop Wright's dry skip (``--no-skip``): with a tone filter after the
  clipping, the skip adds back the highs the pedal removes, and the network
  must learn to cancel them (on the diode clipper, in our runs, the skip
  doubled the validation ESR after the same 2,250 steps).
* **output**: a checkpoint (:mod:`.checkpoint`) with the architecture, the
  sample rate, the knobs (with their ranges), the validation
  ESRs (trained and held-out knob settings) and the command that trained it;
  a PNG of target vs prediction (waveform excerpt and spectra).

torch is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import time

import numpy as np

PRE_EMPHASIS = 0.85
#: LSTM sizes (WaveNet sizes are ``wavenet.PRESETS``)
LSTM_SIZES = {
    "tiny": {"hidden_size": 8, "num_layers": 1, "skip": True},
    "paper": {"hidden_size": 32, "num_layers": 1, "skip": True},  # Wright et al. 2019
    "standard": {"hidden_size": 24, "num_layers": 3, "skip": True},
}
LSTM_WARMUP = 1000  # samples of warm-up for a recurrent model (Wright et al.)


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run (the CLI's options, in order)."""

    output: str = "pedal.pt"
    manifest: str | None = None
    make_data: str | None = None
    data_seconds: float = 40.0
    data_seed: int = 0
    dry: str | None = None
    wet: str | None = None
    pairs: list = dataclasses.field(default_factory=list)  # [(dry, wet, {knob: value}, set)]
    arch: str = "wavenet"
    size: str = "paper"
    input_gain: bool = False
    hidden: int | None = None  # LSTM: hidden size (None: the size's)
    skip: bool | None = None  # LSTM: add the dry input to the output (None: the size's)
    steps: int = 2000
    batch: int = 8
    segment: int = 8192
    lr: float = 4e-3
    lr_final: float = 4e-4
    stft_weight: float = 0.0
    eval_every: int = 100
    patience: int = 8
    max_minutes: float = 0.0
    val_fraction: float = 0.2
    max_lag: int = 2000
    latency: int | None = None
    latency_safety: int = 4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    report: str | None = None
    quiet: bool = False

    def command(self) -> str:
        """The ``patchlib train pedal`` command line that reproduces this run."""
        q = shlex.quote
        parts = ["patchlib", "train", "pedal", "-o", q(self.output)]
        if self.make_data:
            parts += ["--make-data", q(self.make_data), "--data-seconds", f"{self.data_seconds:g}",
                      "--data-seed", str(self.data_seed)]
        elif self.manifest:
            parts += ["--manifest", q(self.manifest)]
        if self.dry:
            parts += ["--dry", q(self.dry), "--wet", q(self.wet)]
        for d, w, k, s in self.pairs:
            opt = "--heldout-pair" if s == "heldout" else "--pair"
            parts += [opt, q(d), q(w)] + ([",".join(f"{n}={v:g}" for n, v in k.items())] if k else [])
        parts += ["--arch", self.arch, "--size", self.size] + (["--input-gain"] if self.input_gain else [])
        if self.hidden is not None:
            parts += ["--hidden", str(self.hidden)]
        if self.skip is not None:
            parts += ["--skip" if self.skip else "--no-skip"]
        parts += ["--steps", str(self.steps), "--batch", str(self.batch),
                  "--segment", str(self.segment), "--lr", f"{self.lr:g}", "--lr-final", f"{self.lr_final:g}",
                  "--stft-weight", f"{self.stft_weight:g}", "--eval-every", str(self.eval_every),
                  "--patience", str(self.patience), "--val-fraction", f"{self.val_fraction:g}",
                  "--max-lag", str(self.max_lag), "--latency-safety", str(self.latency_safety),
                  "--seed", str(self.seed), "--device", self.device]
        if self.latency is not None:
            parts += ["--latency", str(self.latency)]
        if self.max_minutes:
            parts += ["--max-minutes", f"{self.max_minutes:g}"]
        if self.threads:
            parts += ["--threads", str(self.threads)]
        return " ".join(parts)


# ------------------------------------------------------------------ data
def read_wav(path):
    """Mono float32 audio and sample rate (channels are averaged)."""
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return x.mean(axis=1).astype(np.float32), int(sr)


def parse_knobs(text: str) -> dict:
    """``"gain=0.5,tone=0.3"`` -> ``{"gain": 0.5, "tone": 0.3}`` (values in 0..1)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, val = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"knob setting {item!r}: expected name=value, like gain=0.5")
        v = float(val)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"knob {name.strip()}={v:g}: values are normalised, 0..1")
        out[name.strip()] = v
    return out


def detect_lag(dry, wet, max_lag=2000, max_frames=1 << 21, reg=1e-3) -> int:
    """Samples by which ``wet`` lags ``dry`` (negative: wet is early): the peak of the estimated impulse response.

    A whitened cross-correlation (the wet spectrum divided by the dry one,
    regularised by ``reg`` times the mean dry power: a deconvolution, as
    GCC-PHAT), so that the colour of the dry signal does not smear the peak;
    the largest ``|h|`` within ``±max_lag`` (absolute: an inverting pedal
    still aligns). Exact for a delayed memoryless nonlinearity; a pedal whose
    own impulse response peaks a few samples late (a tone filter) reads that
    much later, hence ``latency_safety``. Uses at most ``max_frames`` frames.
    """
    n = min(np.size(dry), np.size(wet), int(max_frames))
    a = np.asarray(dry[:n], np.float64)
    b = np.asarray(wet[:n], np.float64)
    m = 1 << int(math.ceil(math.log2(2 * n)))
    X = np.fft.rfft(a - a.mean(), m)
    Y = np.fft.rfft(b - b.mean(), m)
    P = np.abs(X) ** 2
    h = np.fft.irfft(Y * np.conj(X) / (P + reg * P.mean() + 1e-30), m)
    max_lag = min(int(max_lag), n - 1)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.abs(np.concatenate([h[:max_lag + 1], h[m - max_lag:]]))
    return int(lags[int(np.argmax(vals))])


def align(dry, wet, shift: int):
    """``(dry, wet)`` with ``wet`` advanced by ``shift`` samples (delayed when negative), equal lengths."""
    if shift > 0:
        wet = wet[shift:]
    elif shift < 0:
        wet = np.concatenate([np.zeros(-shift, wet.dtype), wet])
    n = min(dry.size, wet.size)
    return dry[:n], wet[:n]


def _split_frames(n, val_fraction):
    v = int(round(n * (1.0 - val_fraction)))
    return (0, v), (v, n)


def load_data(cfg: TrainConfig, log=print):
    """The pairs to train on: a dict with ``pairs`` (each: dry, wet, knobs, set, train/val ranges, lag),
    ``knobs`` (the varying ones, ``[{name, range}]``), ``fixed`` (constant knobs) and ``sample_rate``."""
    specs = []  # (dry_path, wet_path, knobs, set, split or None)
    manifest = cfg.manifest
    if cfg.make_data:
        from nodes.dsp.pedal_data import make_dataset

        log(f"rendering the dataset into {cfg.make_data} ({cfg.data_seconds:g} s, seed {cfg.data_seed}) ...")
        make_dataset(cfg.make_data, seconds=cfg.data_seconds, seed=cfg.data_seed)
        manifest = os.path.join(cfg.make_data, "manifest.json")
    ranges = {}
    if manifest:
        if os.path.isdir(manifest):
            manifest = os.path.join(manifest, "manifest.json")
        with open(manifest, encoding="utf-8") as f:
            m = json.load(f)
        base = os.path.dirname(os.path.abspath(manifest))
        split = (tuple(m["split"]["train"]), tuple(m["split"]["validation"])) if "split" in m else None
        aligned = "latency_compensated" in m.get("reference", {})
        ranges = {k: tuple(float(v) for v in r) for k, r in m.get("knobs", {}).items()}
        for p in m["pairs"]:
            specs.append((os.path.join(base, p["dry"]), os.path.join(base, p["wet"]), dict(p.get("knobs", {})),
                          p.get("set", "grid"), split, aligned))
    if cfg.dry or cfg.wet:
        if not (cfg.dry and cfg.wet):
            raise ValueError("--dry and --wet go together")
        specs.append((cfg.dry, cfg.wet, {}, "grid", None, False))
    for d, w, k, s in cfg.pairs:
        specs.append((d, w, dict(k), s, None, False))
    if not specs:
        raise ValueError("no data: give --manifest, --make-data, --dry/--wet or --pair")
    names = sorted({k for s in specs for k in s[2]})
    for s in specs:
        if set(s[2]) != set(names):
            raise ValueError(f"pair {s[1]}: knobs {sorted(s[2])}, other pairs have {names}: give every pair "
                             "the same knobs")
    grid = [s for s in specs if s[3] != "heldout"]
    if not grid:
        raise ValueError("every pair is held out: nothing to train on")
    varying = [k for k in names if len({s[2][k] for s in grid}) > 1]
    fixed = {k: grid[0][2][k] for k in names if k not in varying}
    knobs = [{"name": k, "range": list(ranges.get(k, (0.0, 1.0)))} for k in varying]
    for kd in knobs:
        vals = [s[2][kd["name"]] for s in grid]
        kd["doc"] = f"{kd['name']} (trained at {', '.join(f'{v:g}' for v in sorted(set(vals)))})"
        kd["default"] = float(min(max(np.median(vals), kd["range"][0]), kd["range"][1]))
    cache = {}
    pairs = []
    sr = None
    for d, w, k, s, split, aligned in specs:
        if d not in cache:
            cache[d] = read_wav(d)
        dry, sr_d = cache[d]
        wet, sr_w = read_wav(w)
        if sr_d != sr_w or (sr is not None and sr != sr_d):
            raise ValueError(f"sample rates differ: {d} {sr_d} Hz, {w} {sr_w} Hz (all pairs need one rate)")
        sr = sr_d
        lag = detect_lag(dry, wet, cfg.max_lag)
        if cfg.latency is not None:
            shift = cfg.latency
        elif aligned:  # the manifest says dry and wet are sample-aligned: the lag is the pedal's own response
            shift = 0
        else:
            shift = max(0, lag - cfg.latency_safety)
        dry_a, wet_a = align(dry, wet, shift)
        if split is None:
            tr, va = _split_frames(dry_a.size, cfg.val_fraction)
        else:
            tr = (split[0][0], min(split[0][1], dry_a.size))
            va = (split[1][0], min(split[1][1], dry_a.size))
        norm = [(k[kd["name"]] - kd["range"][0]) / (kd["range"][1] - kd["range"][0]) for kd in knobs]
        pairs.append({"dry": dry_a, "wet": wet_a, "knobs": k, "norm": np.array(norm, np.float32), "set": s,
                      "train": tr, "val": va, "lag": lag, "shift": shift, "name": os.path.basename(w)})
        log(f"  {os.path.basename(w)}: {s}, knobs {k or '-'}, lag {lag} samples, shifted {shift}")
    return {"pairs": pairs, "knobs": knobs, "fixed": fixed, "sample_rate": sr}


# ------------------------------------------------------------------ model and loss
def build_model(arch: str, size: str, knobs: int, input_gain: bool = False, hidden: int | None = None,
                skip: bool | None = None):
    """``(model, config)``: a fresh offline model of the named size with ``knobs`` conditioning rows
    (``input_gain``: a WaveNet with the learnt knob-dependent input gain; ``hidden``, ``skip``: override
    an LSTM size's hidden size and dry skip)."""
    if arch == "wavenet":
        from .wavenet import PRESETS, WaveNet, wavenet_config

        if size not in PRESETS:
            raise ValueError(f"unknown size {size!r}; known: {', '.join(PRESETS)}")
        cfg = wavenet_config(size, knobs=knobs)
        if hidden is not None or skip is not None:
            raise ValueError("--hidden and --skip/--no-skip are LSTM options")
        if input_gain:
            if not knobs:
                raise ValueError("--input-gain needs knobs (pairs at several knob settings)")
            cfg["input_gain"] = True
        return WaveNet(**cfg), cfg
    if arch == "lstm":
        from .lstm import LSTM

        if input_gain:
            raise ValueError("--input-gain is a WaveNet option")
        if size not in LSTM_SIZES:
            raise ValueError(f"unknown size {size!r}; known: {', '.join(LSTM_SIZES)}")
        cfg = dict(LSTM_SIZES[size], input_size=1 + knobs)
        if hidden is not None:
            if hidden < 1:
                raise ValueError(f"--hidden must be >= 1, got {hidden}")
            cfg["hidden_size"] = int(hidden)
        if skip is not None:
            cfg["skip"] = bool(skip)
        return LSTM(**cfg), cfg
    raise ValueError(f"unknown architecture {arch!r}; known: wavenet, lstm")


def pre_emphasis(y, coef=PRE_EMPHASIS):
    """``y[n] - coef * y[n-1]`` along the last axis (the first sample is dropped)."""
    return y[..., 1:] - coef * y[..., :-1]


def esr(target, pred, coef=PRE_EMPHASIS, eps=1e-10):
    """Error-to-signal ratio after pre-emphasis, over everything given (torch or numpy)."""
    if coef:
        target, pred = pre_emphasis(target, coef), pre_emphasis(pred, coef)
    return ((target - pred) ** 2).sum() / ((target ** 2).sum() + eps)


def stft_loss(target, pred, ffts=(512, 1024, 2048)):
    """Multi-resolution STFT loss (spectral convergence + log-magnitude L1), averaged over resolutions."""
    import torch

    total = 0.0
    t2, p2 = target.reshape(-1, target.shape[-1]), pred.reshape(-1, pred.shape[-1])
    for n in ffts:
        if t2.shape[-1] < n:
            continue
        win = torch.hann_window(n, device=target.device)
        st = torch.stft(t2, n, n // 4, window=win, return_complex=True).abs() + 1e-7
        sp = torch.stft(p2, n, n // 4, window=win, return_complex=True).abs() + 1e-7
        sc = torch.linalg.norm(st - sp) / torch.linalg.norm(st)
        total = total + sc + (st.log() - sp.log()).abs().mean()
    return total / len(ffts)


def _cond(dry, norm, torch, device):
    """``(1, 1 + knobs, T)`` conditioning for a whole signal."""
    c = np.empty((1, 1 + norm.size, dry.size), np.float32)
    c[0, 0] = dry
    c[0, 1:] = norm[:, None]
    return torch.from_numpy(c).to(device)


def predict(model, dry, norm, device="cpu", chunk=1 << 16):
    """The offline model's output for a whole ``dry`` signal (float32 numpy), knob rows ``norm`` (0..1).

    A model with a finite receptive field runs in chunks of ``chunk`` frames,
    each with the ``receptive_field - 1`` frames before it as context: the
    same output as one pass, in far less memory.
    """
    import torch

    dry = np.asarray(dry, np.float32)
    norm = np.asarray(norm, np.float32)
    rf = getattr(model, "receptive_field", None)
    if rf is None or dry.size <= chunk:
        with torch.no_grad():
            return model(_cond(dry, norm, torch, device))[0, 0].float().cpu().numpy()
    out = np.empty(dry.size, np.float32)
    with torch.no_grad():
        for c in range(0, dry.size, chunk):
            s = max(0, c - (rf - 1))
            y = model(_cond(dry[s:c + chunk], norm, torch, device))[0, 0, c - s:]
            out[c:c + y.shape[-1]] = y.float().cpu().numpy()
    return out


def evaluate(model, pair, warm, device="cpu"):
    """``(esr, esr_plain, target, prediction)`` on the pair's validation frames (warmed up on the frames before)."""
    lo, hi = pair["val"]
    s = max(0, lo - warm)
    y = predict(model, pair["dry"][s:hi], pair["norm"], device)[lo - s:]
    t = pair["wet"][lo:hi].astype(np.float64)
    y64 = y.astype(np.float64)
    return float(esr(t, y64)), float(esr(t, y64, coef=0.0)), pair["wet"][lo:hi], y


# ------------------------------------------------------------------ report
def write_report_png(path, target, pred, sample_rate, title=""):
    """Target vs prediction: a waveform excerpt (around the loudest moment) and both spectra (plus the error's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = np.asarray(target, np.float64)
    pred = np.asarray(pred, np.float64)
    n = min(target.size, int(0.01 * sample_rate) * 2)
    c = int(np.argmax(np.abs(target)))
    a = min(max(0, c - n // 2), max(0, target.size - n))
    t_ms = (np.arange(a, a + n) / sample_rate) * 1000.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7))
    ax1.plot(t_ms, target[a:a + n], label="target", lw=1.4)
    ax1.plot(t_ms, pred[a:a + n], label="prediction", lw=1.0, ls="--")
    ax1.set_xlabel("time (ms, validation)")
    ax1.set_ylabel("amplitude")
    ax1.legend(loc="upper right")
    ax1.set_title(title)
    nfft = 4096
    win = np.hanning(nfft)

    def spec(x):
        if x.size < nfft:
            x = np.pad(x, (0, nfft - x.size))
        frames = np.lib.stride_tricks.sliding_window_view(x, nfft)[::nfft // 2]
        p = np.mean(np.abs(np.fft.rfft(frames * win, axis=1)) ** 2, axis=0)
        return 10 * np.log10(p / (np.sum(win) ** 2) + 1e-20)

    f = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    for x, lab, ls in ((target, "target", "-"), (pred, "prediction", "--"), (target - pred, "error", ":")):
        ax2.semilogx(f[1:], spec(x)[1:], label=lab, ls=ls)
    ax2.set_xlabel("frequency (Hz)")
    ax2.set_ylabel("power (dB)")
    ax2.set_xlim(20, sample_rate / 2)
    ax2.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------ training
def train(cfg: TrainConfig, log=print) -> dict:
    """Run a training (see the module docstring); returns a summary dict (ESRs, steps, paths, timings)."""
    import torch

    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU available to torch")
        device = torch.device(cfg.device)
    data = load_data(cfg, log)
    pairs, knobs = data["pairs"], data["knobs"]
    sr = data["sample_rate"]
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, mcfg = build_model(cfg.arch, cfg.size, len(knobs), cfg.input_gain, cfg.hidden, cfg.skip)
    model.to(device)
    rf = model.receptive_field
    warm = max(1, (rf - 1) if rf is not None else LSTM_WARMUP)
    train_pairs = [p for p in pairs if p["set"] != "heldout"]
    held = [p for p in pairs if p["set"] == "heldout"]
    shortest = min(p["train"][1] - p["train"][0] for p in train_pairs)
    seg = int(min(cfg.segment, shortest - warm - 1))
    if seg < 256:
        raise ValueError(f"training frames too short: {shortest} frames for a warm-up of {warm} "
                         f"(the receptive field) plus at least 256 scored samples")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{cfg.arch}/{cfg.size}: {n_params} parameters, receptive field {rf or 'unbounded'} "
        f"(warm-up {warm}), {len(knobs)} knob(s) {[k['name'] for k in knobs]}, {len(train_pairs)} training "
        f"pair(s), {len(held)} held out, segments {cfg.batch} x {seg} + {warm}, device {device}")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gamma = (cfg.lr_final / cfg.lr) ** (1.0 / max(1, cfg.steps)) if cfg.lr_final > 0 else 1.0
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    K = len(knobs)
    batch = np.empty((cfg.batch, 1 + K, warm + seg), np.float32)
    target = np.empty((cfg.batch, 1, seg + 1), np.float32)
    weight = np.empty((cfg.batch, 1, 1), np.float32)
    # each segment's squared error is divided by its pair's pre-emphasised energy over seg samples (of the
    # training frames): the loss is the mean of the pairs' ESRs, so a quiet knob setting weighs as much as
    # a loud one (one pair: the paper's ESR, with the energy of the training frames in the denominator)
    for p in train_pairs:
        lo, hi = p["train"]
        pe = pre_emphasis(p["wet"][lo:hi].astype(np.float64))
        p["pe_energy"] = max(float(np.mean(pe * pe)) * seg, 1e-12)

    def val_esr():
        model.eval()
        vals = [evaluate(model, p, warm, device)[0] for p in train_pairs]
        model.train()
        return float(np.mean(vals))

    best = (math.inf, 0, {k: v.detach().clone() for k, v in model.state_dict().items()})
    history = []
    bad = 0
    running = None
    try:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, disable=cfg.quiet, unit="step", dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None
    step = 0
    model.train()
    stopped = "steps"
    for step in range(1, cfg.steps + 1):
        for b in range(cfg.batch):
            p = train_pairs[int(rng.integers(len(train_pairs)))]
            lo, hi = p["train"]
            s = int(rng.integers(lo, hi - warm - seg + 1))
            batch[b, 0] = p["dry"][s:s + warm + seg]
            batch[b, 1:] = p["norm"][:, None]
            # one sample before the scored part feeds the pre-emphasis
            target[b, 0] = p["wet"][s + warm - 1:s + warm + seg]
            weight[b] = 1.0 / (p["pe_energy"] * cfg.batch)
        x = torch.from_numpy(batch).to(device)
        t = torch.from_numpy(target).to(device)
        y = model(x)[..., warm - 1:]
        loss_esr = ((pre_emphasis(t) - pre_emphasis(y)) ** 2 * torch.from_numpy(weight).to(device)).sum()
        loss = loss_esr + (cfg.stft_weight * stft_loss(t[..., 1:], y[..., 1:]) if cfg.stft_weight > 0 else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        v = float(loss_esr.detach())
        if not math.isfinite(v):
            raise RuntimeError(f"training diverged at step {step} (loss {v}); lower --lr")
        running = v if running is None else 0.95 * running + 0.05 * v
        if bar is not None:
            bar.update(1)
            if step % 5 == 0 or step == 1:
                bar.set_postfix_str(f"ESR {running:.4f}" + (f" val {best[0]:.4f}" if best[0] < math.inf else ""))
        out_of_time = cfg.max_minutes > 0 and time.perf_counter() - t_start > 60.0 * cfg.max_minutes
        if step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
            ve = val_esr()
            history.append({"step": step, "train_esr": running, "val_esr": ve,
                            "seconds": round(time.perf_counter() - t_start, 2)})
            if ve < best[0]:
                best = (ve, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
                bad = 0
            else:
                bad += 1
                if cfg.patience and bad >= cfg.patience:
                    stopped = f"early stop (no better validation ESR for {bad} evaluations)"
                    break
            if out_of_time:
                stopped = f"time limit ({cfg.max_minutes:g} min)"
                break
    if bar is not None:
        bar.close()
    model.load_state_dict(best[2])
    model.eval()
    per_pair = {}
    outs = {}
    for p in pairs:
        e, e_plain, tgt, pred = evaluate(model, p, warm, device)
        per_pair[p["name"]] = {"set": p["set"], "knobs": p["knobs"], "esr": round(e, 6),
                               "esr_plain": round(e_plain, 6), "lag": p["lag"], "shift": p["shift"]}
        outs[p["name"]] = (tgt, pred)
    grid_esr = float(np.mean([per_pair[p["name"]]["esr"] for p in train_pairs]))
    held_esr = float(np.mean([per_pair[p["name"]]["esr"] for p in held])) if held else None
    elapsed = time.perf_counter() - t_start
    validation = {"esr": round(grid_esr, 6), "esr_heldout": None if held_esr is None else round(held_esr, 6),
                  "loss": "ESR with pre-emphasis 1 - 0.85 z^-1 (Damskaegg et al. 2019)"
                          + (f" + {cfg.stft_weight:g} x multi-resolution STFT" if cfg.stft_weight > 0 else ""),
                  "per_pair": per_pair, "fixed_knobs": data["fixed"], "best_step": best[1], "steps": step,
                  "stopped": stopped, "seconds": round(elapsed, 1), "device": str(device),
                  "receptive_field": rf, "history": history}
    command = cfg.command()
    from . import checkpoint

    checkpoint.save(cfg.output, cfg.arch, mcfg, model.state_dict(), sr, knobs=knobs, validation=validation,
                    train_command=command)
    report = cfg.report or os.path.splitext(cfg.output)[0] + ".png"
    first = train_pairs[0]["name"]
    write_report_png(report, *outs[first], sr,
                     title=f"{first} (validation): ESR {per_pair[first]['esr']:.4f} "
                           f"({cfg.arch}/{cfg.size}, step {best[1]})")
    log(f"stopped: {stopped}; best validation ESR {best[0]:.5f} at step {best[1]} ({elapsed:.1f} s)")
    for name, r in per_pair.items():
        log(f"  {name:32s} {r['set']:8s} ESR {r['esr']:.5f} (plain {r['esr_plain']:.5f})")
    log(f"validation ESR: trained knob settings {grid_esr:.5f}"
        + (f", held-out knob settings {held_esr:.5f}" if held_esr is not None else ""))
    log(f"wrote {cfg.output} ({os.path.getsize(cfg.output) / 1024:.0f} KiB) and {report}")
    return {"esr": grid_esr, "esr_heldout": held_esr, "per_pair": per_pair, "steps": step, "best_step": best[1],
            "seconds": elapsed, "output": cfg.output, "report": report, "command": command, "model": model,
            "warm": warm, "pairs": pairs, "history": history}
