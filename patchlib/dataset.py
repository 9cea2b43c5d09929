"""Labelled datasets and parameter sweeps, rendered on Dask distributed.

``patchlib dataset`` renders an NSynth-like set: every (instrument, pitch,
velocity) note of instrument patches (``patches/instruments/``) to a WAV file,
with its labels (instrument, pitch, velocity, per-frame f0 and loudness
curves) in a JSON file beside it, and a ``manifest.json`` with the
train/valid/test split (held-out pitches and velocities never in train).

``patchlib render PATCH --sweep NODE.PARAM=LO:HI:N[:log]`` renders one patch
at every point of a grid of param values: one file per point plus a manifest.

Both run their jobs on the same executor: a Dask ``LocalCluster`` using every
core (default), an existing cluster (``--scheduler ADDRESS``), or this process
(``--workers 0``). A job returns its file's bytes to the client, which writes
them, so workers need no shared file system; a job's result depends only on
the job (its noise seed comes from its name), so every executor gives the
same bytes. See docs/dataset.md.

>>> from patchlib.dataset import DatasetConfig, render_dataset
>>> render_dataset(DatasetConfig(out="data/notes", pitches=[48, 60], velocities=[100]))  # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np

#: bump when a change makes earlier files differ (the job hash includes it)
FORMAT = "patchlib-dataset/1"
#: version of what the instruments' nodes render. Bumped whenever a change to
#: a node alters the samples of a note rendered from the same patch, so that a
#: dataset rendered before it is rendered again on resume instead of mixing
#: old and new notes. 2: the ``waveguide`` runs its loop oversampled.
RENDERER = 2
SWEEP_FORMAT = "patchlib-sweep/1"
AUDIO_FORMATS = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}
INSTRUMENTS_DIR = os.path.join("patches", "instruments")
#: the poly node an instrument patch must have (or its only poly node)
POLY_NAME = "keys"


# ------------------------------------------------------------------ helpers
def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((float(m) - 69.0) / 12.0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return _sha256(fh.read())
    except OSError:
        return None


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode()


def _write_atomic(path: str, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then move it into place."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _seed_of(*parts) -> int:
    """A 63-bit seed from the job's identity (not from its position in a list)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def _wav_bytes(audio: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    data = audio.T if fmt == "float" else np.clip(audio, -1.0, 1.0).T
    sf.write(buf, data, sample_rate, subtype=AUDIO_FORMATS[fmt], format="WAV")
    return buf.getvalue()


def _decode_wav(data: bytes) -> np.ndarray:
    import soundfile as sf

    x, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T)


def _parse_patch(text: str, file: str, overrides: dict | None = None):
    """Parse patch text (as read on the client), with ``{NODE: {KEY: value}}`` applied to its nodes."""
    from .patch import PatchParser, load_yaml

    data = load_yaml(text, file)
    for node, keys in (overrides or {}).items():
        for key, value in keys.items():
            data["nodes"][node][key] = value
    return PatchParser(data, file, os.path.dirname(os.path.abspath(file))).parse()


def _round(xs, nd=3) -> list:
    return [round(float(v), nd) for v in xs]


# ------------------------------------------------------------------ analysis
def _frames(x: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Frames centred at ``i * hop`` (zero-padded at both ends): ``(len(x) // hop + 1, frame)``."""
    n = x.size // hop + 1
    pad = np.zeros(x.size + frame + hop, dtype=np.float64)
    pad[frame // 2:frame // 2 + x.size] = x
    idx = np.arange(n)[:, None] * hop + np.arange(frame)[None, :]
    return pad[idx]


def rms_db(x: np.ndarray, frame: int = 1024, hop: int = 256, floor: float = -120.0) -> np.ndarray:
    """Plain RMS in dBFS of each frame (rectangular window of ``frame`` samples centred at ``i * hop``)."""
    f = _frames(np.asarray(x, np.float64), frame, hop)
    ms = np.mean(f * f, axis=1)
    return np.maximum(10 * np.log10(np.maximum(ms, 1e-30)), floor)


def _a_weight(f: np.ndarray) -> np.ndarray:
    """IEC 61672 A-weighting as a power gain, 1 at 1 kHz."""
    f2 = np.asarray(f, np.float64) ** 2
    ra = (12194.0**2 * f2 * f2) / ((f2 + 20.6**2) * np.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2))
    return (ra / 0.7943282347242815) ** 2  # R_A(1 kHz) = 10 ** (-2 / 20)


def loudness_db(x: np.ndarray, sample_rate: int, frame: int = 1024, hop: int = 256,
                floor: float = -120.0) -> np.ndarray:
    """A-weighted RMS in dBFS per frame (Hann window; a 1 kHz sine reads as its plain RMS)."""
    f = _frames(np.asarray(x, np.float64), frame, hop)
    w = np.hanning(frame)
    spec = np.abs(np.fft.rfft(f * w, axis=1)) ** 2
    gain = _a_weight(np.fft.rfftfreq(frame, 1.0 / sample_rate))
    # Parseval: sum |X|^2 (one-sided, doubled except DC/Nyquist) / frame = sum (x w)^2
    k = np.full(spec.shape[1], 2.0)
    k[0] = 1.0
    if frame % 2 == 0:
        k[-1] = 1.0
    ms = (spec * gain * k).sum(axis=1) / frame / np.sum(w * w)
    return np.maximum(10 * np.log10(np.maximum(ms, 1e-30)), floor)


def yin_f0(x: np.ndarray, sample_rate: int, frame: int = 1024, hop: int = 256, fmin: float = 40.0,
           fmax: float = 2100.0, threshold: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Measured f0 per frame by YIN (de Cheveigne & Kawahara 2002): ``(f0_hz, confidence)``.

    ``confidence`` is 1 minus the normalised difference at the chosen lag
    (1: perfectly periodic); f0 is 0 where the frame is silent or aperiodic.
    """
    f = _frames(np.asarray(x, np.float64), frame, hop)
    max_lag = min(int(sample_rate / fmin) + 2, frame // 2)
    min_lag = max(2, int(sample_rate / fmax))
    w = frame - max_lag
    n = 1 << int(math.ceil(math.log2(frame + w)))
    a = np.fft.rfft(f[:, :w], n, axis=1)
    b = np.fft.rfft(f, n, axis=1)
    r = np.fft.irfft(np.conj(a) * b, n, axis=1)[:, :max_lag]  # r[tau] = sum_j x_j x_{j+tau}
    sq = np.concatenate([np.zeros((f.shape[0], 1)), np.cumsum(f * f, axis=1)], axis=1)
    taus = np.arange(max_lag)
    e0 = sq[:, w][:, None]
    et = sq[:, taus + w] - sq[:, taus]
    d = np.maximum(e0 + et - 2 * r, 0.0)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, max_lag)
    dn = np.ones_like(d)
    dn[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-20)
    f0 = np.zeros(f.shape[0])
    conf = np.zeros(f.shape[0])
    energy = e0[:, 0] / w
    for i in range(f.shape[0]):
        if energy[i] < 1e-10:
            continue
        row = dn[i]
        below = np.nonzero(row[min_lag:max_lag - 1] < threshold)[0]
        if below.size:
            t = below[0] + min_lag
            while t + 1 < max_lag - 1 and row[t + 1] < row[t]:
                t += 1
        else:
            t = int(np.argmin(row[min_lag:max_lag - 1])) + min_lag
        c = 1.0 - row[t]
        if c < 1.0 - 2 * threshold:
            conf[i] = max(c, 0.0)
            continue
        y0, y1, y2 = d[i, t - 1], d[i, t], d[i, t + 1]  # interpolate the raw difference (less biased)
        den = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / den if den > 1e-12 else 0.0
        f0[i] = sample_rate / (t + max(-0.5, min(0.5, shift)))
        conf[i] = c
    return f0, conf


# ------------------------------------------------------------------ jobs
@dataclass
class NoteJob:
    """One labelled note: everything its files depend on."""

    name: str
    instrument: str
    patch_file: str
    patch_text: str
    pitch: int
    velocity: int
    sample_rate: int
    seconds: float
    release: float
    hop: int
    frame: int
    audio_format: str
    seed: int
    block_size: int = 256

    def key(self) -> str:
        """A hash of everything that shapes the files (so a stale file is rendered again)."""
        d = asdict(self)
        del d["patch_file"]  # where the patch lies does not change the sound; its text does
        d["patch_text"] = _sha256(self.patch_text.encode())
        d["format"] = FORMAT
        d["renderer"] = RENDERER
        return _sha256(json.dumps(d, sort_keys=True).encode())


def _poly_of(spec, file: str) -> str:
    if POLY_NAME in spec.polys:
        return POLY_NAME
    if len(spec.polys) == 1:
        return next(iter(spec.polys))
    raise ValueError(f"{file}: an instrument patch needs a poly node named '{POLY_NAME}' "
                     f"(poly nodes: {', '.join(spec.polys) or 'none'})")


def render_note(job: NoteJob) -> dict:
    """Render one note (on any worker): ``{name, wav: bytes, labels: bytes, key}``."""
    from .engine import Engine
    from .patch import Event

    spec = _parse_patch(job.patch_text, job.patch_file)
    poly = _poly_of(spec, job.patch_file)
    hz = midi_to_hz(job.pitch)
    spec.seed = job.seed
    spec.score = [Event(0.0, "note", poly, value=job.velocity / 127.0, pitch=hz)]
    if job.release < job.seconds:
        spec.score.append(Event(job.release, "note_off", poly, pitch=hz))
    spec.duration = job.seconds
    engine = Engine(spec, block_size=job.block_size, sample_rate=job.sample_rate)
    audio = engine.render(int(round(job.seconds * job.sample_rate)))
    if audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    wav = _wav_bytes(audio, job.sample_rate, job.audio_format)
    x = _decode_wav(wav)[0]  # the labels describe the file as written
    f0m, conf = yin_f0(x, job.sample_rate, job.frame, job.hop)
    loud = loudness_db(x, job.sample_rate, job.frame, job.hop)
    rms = rms_db(x, job.frame, job.hop)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    labels = {
        "note": job.name,
        "instrument": job.instrument,
        "patch_sha256": _sha256(job.patch_text.encode()),
        "pitch": job.pitch,
        "velocity": job.velocity,
        "sample_rate": job.sample_rate,
        "samples": int(x.size),
        "release_s": job.release,
        "seed": job.seed,
        "audio": f"audio/{job.name}.wav",
        "audio_sha256": _sha256(wav),
        "peak_db": round(20 * math.log10(peak), 2) if peak > 0 else -120.0,
        "job": job.key(),
        "hop": job.hop,
        "frame": job.frame,
        "frame_rate": job.sample_rate / job.hop,
        "f0_hz": _round(np.full(rms.size, hz)),
        "f0_measured_hz": _round(f0m, 2),
        "f0_confidence": _round(conf),
        "loudness_db": _round(loud, 2),
        "rms_db": _round(rms, 2),
        "warnings": [str(w) for w in engine.warnings],
    }
    return {"name": job.name, "wav": wav, "labels": _json_bytes(labels), "key": job.key()}


# ------------------------------------------------------------------ executor
def run_jobs(fn, jobs: list, on_result, *, workers: int | None = None, scheduler: str | None = None,
             progress: bool = True, desc: str = "render", processes: bool = True) -> None:
    """Run ``fn(job)`` for every job and call ``on_result(result)`` on the client as each finishes.

    ``workers=0``: in this process. ``scheduler``: an existing Dask cluster
    (``tcp://host:8786``). Otherwise a ``LocalCluster`` of ``workers`` (default:
    every core) single-threaded workers, closed at the end.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="file", desc=desc, disable=not progress or None, leave=False)
    try:
        if not jobs:
            return
        if workers == 0 and not scheduler:
            for job in jobs:
                on_result(fn(job))
                bar.update(1)
            return
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler:
            client = Client(scheduler)
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            n = workers or cores or 1
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                   dashboard_address=":0")
            client = Client(cluster)
        try:
            # pure=False: a job is submitted once per run; results stream back as they complete
            futures = client.map(fn, jobs, pure=False)
            for fut in as_completed(futures):
                on_result(fut.result())
                fut.release()
                bar.update(1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    finally:
        bar.close()


# ------------------------------------------------------------------ dataset
@dataclass
class DatasetConfig:
    out: str
    instruments: list = field(default_factory=lambda: [INSTRUMENTS_DIR])
    pitches: list = field(default_factory=lambda: list(range(36, 85)))
    velocities: list = field(default_factory=lambda: [25, 50, 75, 100, 127])
    sample_rate: int = 16000
    seconds: float = 4.0
    release: float = 3.0
    hop: int = 256
    frame: int = 1024
    audio_format: str = "pcm16"
    seed: int = 0
    heldout_pitch_every: int = 5
    heldout_pitches: list | None = None
    heldout_velocities: list = field(default_factory=lambda: [75])
    valid_fraction: float = 0.1
    workers: int | None = None
    scheduler: str | None = None
    progress: bool = True
    force: bool = False
    processes: bool = True


def instrument_files(paths) -> dict:
    """``{name: file}`` from patch files and folders (every ``*.yaml`` in a folder); names are file stems."""
    found = {}
    for p in paths:
        files = sorted(glob.glob(os.path.join(p, "*.yaml"))) if os.path.isdir(p) else [p]
        if os.path.isdir(p) and not files:
            raise ValueError(f"no instrument patches (*.yaml) in {p}")
        for f in files:
            if not os.path.isfile(f):
                raise ValueError(f"no such instrument patch: {f}")
            name = re.sub(r"[^A-Za-z0-9]+", "-", os.path.splitext(os.path.basename(f))[0]).strip("-")
            if name in found:
                raise ValueError(f"two instruments named '{name}': {found[name]} and {f}")
            found[name] = f
    if not found:
        raise ValueError("no instruments given")
    return found


def heldout_pitches(cfg: DatasetConfig) -> list:
    if cfg.heldout_pitches is not None:
        return sorted(set(cfg.heldout_pitches))
    if not cfg.heldout_pitch_every:
        return []
    k = cfg.heldout_pitch_every
    ps = sorted(set(cfg.pitches))
    # every k-th pitch of the range, starting inside it (never its first or last pitch when k > 2)
    return [p for i, p in enumerate(ps) if i % k == k // 2]


def split_of(name: str, pitch: int, velocity: int, hp, hv, valid_fraction: float, seed: int) -> str:
    """test: a held-out pitch or velocity; valid: a stable hashed fraction of the rest; else train."""
    if pitch in hp or velocity in hv:
        return "test"
    u = _seed_of("split", seed, name) / 2**63
    return "valid" if u < valid_fraction else "train"


def make_jobs(cfg: DatasetConfig) -> list:
    jobs = []
    for inst, path in instrument_files(cfg.instruments).items():
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        spec = _parse_patch(text, path)  # fail early, on the client, with the patch's own message
        _poly_of(spec, path)
        rel = os.path.relpath(path) if not os.path.isabs(path) or path.startswith(os.getcwd()) else path
        for p in sorted(set(cfg.pitches)):
            if not 0 < midi_to_hz(p) < cfg.sample_rate / 2:
                raise ValueError(f"pitch {p} is above half the sample rate")
            for v in sorted(set(cfg.velocities)):
                name = f"{inst}_{p:03d}-{v:03d}"
                jobs.append(NoteJob(name, inst, rel, text, int(p), int(v), cfg.sample_rate, cfg.seconds,
                                    cfg.release, cfg.hop, cfg.frame, cfg.audio_format,
                                    _seed_of(cfg.seed, inst, p, v)))
    return jobs


def _is_done(out: str, job: NoteJob) -> bool:
    """The note's label file names this job and the audio file has the recorded hash."""
    try:
        with open(os.path.join(out, "labels", job.name + ".json"), encoding="utf-8") as fh:
            lab = json.load(fh)
    except (OSError, ValueError):
        return False
    return lab.get("job") == job.key() and _file_sha256(os.path.join(out, lab["audio"])) == lab.get("audio_sha256")


def render_dataset(cfg: DatasetConfig) -> dict:
    """Render (or complete) the dataset in ``cfg.out``; returns the manifest, also written as manifest.json.

    Files: ``audio/NAME.wav``, ``labels/NAME.json`` (NAME = ``instrument_PPP-VVV``), ``manifest.json``.
    A note whose files exist and match its job is skipped (resume); ``force`` renders everything.
    """
    if cfg.audio_format not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {sorted(AUDIO_FORMATS)}")
    if not 0 < cfg.release <= cfg.seconds:
        raise ValueError("the release time must be in (0, seconds]")
    if not 0 <= cfg.valid_fraction < 1:
        raise ValueError("valid fraction must be in [0, 1)")
    if cfg.hop < 1 or cfg.frame < 64:
        raise ValueError("hop must be >= 1 and frame >= 64")
    jobs = make_jobs(cfg)
    todo = jobs if cfg.force else [j for j in jobs if not _is_done(cfg.out, j)]
    rendered = []

    def write(res):
        _write_atomic(os.path.join(cfg.out, "audio", res["name"] + ".wav"), res["wav"])
        _write_atomic(os.path.join(cfg.out, "labels", res["name"] + ".json"), res["labels"])
        rendered.append(res["name"])

    run_jobs(render_note, todo, write, workers=cfg.workers, scheduler=cfg.scheduler, progress=cfg.progress,
             desc="dataset", processes=cfg.processes)
    hp, hv = heldout_pitches(cfg), sorted(set(cfg.heldout_velocities))
    notes, counts = [], {"train": 0, "valid": 0, "test": 0}
    for j in jobs:
        lab_path = os.path.join(cfg.out, "labels", j.name + ".json")
        with open(lab_path, "rb") as fh:
            lab_bytes = fh.read()
        lab = json.loads(lab_bytes)
        split = split_of(j.name, j.pitch, j.velocity, hp, hv, cfg.valid_fraction, cfg.seed)
        counts[split] += 1
        notes.append({"note": j.name, "instrument": j.instrument, "pitch": j.pitch, "velocity": j.velocity,
                      "split": split, "audio": lab["audio"], "labels": f"labels/{j.name}.json",
                      "audio_sha256": lab["audio_sha256"], "labels_sha256": _sha256(lab_bytes)})
    insts = {}
    for j in jobs:
        insts.setdefault(j.instrument, {"patch": j.patch_file, "sha256": _sha256(j.patch_text.encode())})
    manifest = {
        "format": FORMAT,
        "renderer": RENDERER,
        "sample_rate": cfg.sample_rate, "seconds": cfg.seconds, "release_s": cfg.release,
        "hop": cfg.hop, "frame": cfg.frame, "frame_rate": cfg.sample_rate / cfg.hop,
        "audio_format": cfg.audio_format, "seed": cfg.seed,
        "instruments": insts,
        "pitches": sorted(set(int(p) for p in cfg.pitches)),
        "velocities": sorted(set(int(v) for v in cfg.velocities)),
        "heldout_pitches": hp, "heldout_velocities": hv, "valid_fraction": cfg.valid_fraction,
        "splits": {"train": "neither a held-out pitch nor a held-out velocity",
                   "valid": "like train (seen pitches and velocities), a hashed fraction of those notes",
                   "test": "every note with a held-out pitch or a held-out velocity"},
        "counts": counts,
        "notes": notes,
    }
    _write_atomic(os.path.join(cfg.out, "manifest.json"), _json_bytes(manifest))
    manifest["rendered"] = rendered  # for the caller; not in the file (the file stays byte-stable)
    return manifest


def load_split(root: str, split: str) -> list:
    """The label dicts of one split (``train``, ``valid``, ``test``) of a rendered dataset."""
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as fh:
        man = json.load(fh)
    out = []
    for n in man["notes"]:
        if n["split"] == split:
            with open(os.path.join(root, n["labels"]), encoding="utf-8") as fh:
                out.append(json.load(fh))
    return out


# ------------------------------------------------------------------ sweeps
_SWEEP = re.compile(r"^\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)?)\s*=\s*([^:]+):([^:]+):(\d+)(?::(lin|log))?\s*$")


def parse_sweep(text: str) -> tuple[str, str, str, int, str]:
    """``[NODE.]PARAM=LO:HI:N[:lin|log]`` -> (target, lo, hi, n, curve); LO/HI may carry units (2kHz)."""
    m = _SWEEP.match(text)
    if not m:
        raise ValueError(f"--sweep {text!r}: expected [NODE.]PARAM=LO:HI:N or ...:N:log, "
                         "e.g. filt.cutoff=200:2000:10:log")
    target, lo, hi, n, curve = m.groups()
    if int(n) < 1:
        raise ValueError(f"--sweep {text!r}: N must be at least 1")
    return target, lo.strip(), hi.strip(), int(n), curve or "lin"


def _resolve_target(spec, target: str) -> tuple[str, str]:
    """``NODE.PARAM`` or a bare ``PARAM`` that exactly one top-level node has."""
    if "." in target:
        node, param = target.split(".", 1)
        if node not in spec.nodes:
            raise ValueError(f"--sweep: no node '{node}' in the patch")
        if param not in spec.nodes[node].ports()[2]:
            raise ValueError(f"--sweep: node '{node}' ({spec.nodes[node].type}) has no param '{param}'")
        return node, param
    owners = [n for n, ns in spec.nodes.items() if "/" not in n and target in ns.ports()[2]]
    if len(owners) != 1:
        raise ValueError(f"--sweep: param '{target}' is " + (
            f"on several nodes ({', '.join(owners)}): write NODE.{target}" if owners else "on no node"))
    return owners[0], target


def sweep_points(spec, sweeps: list) -> tuple[list, list]:
    """Targets ``[(node, param, unit)]`` and the grid ``[[v1, v2, ...], ...]`` (first sweep slowest)."""
    from .units import parse_value

    targets, axes = [], []
    for s in sweeps:
        target, lo, hi, n, curve = parse_sweep(s)
        node, param = _resolve_target(spec, target)
        pspec = spec.nodes[node].ports()[2][param]
        lo_v, hi_v = parse_value(lo, pspec.unit), parse_value(hi, pspec.unit)
        rlo, rhi = pspec.range
        for v in (lo_v, hi_v):
            if not rlo <= v <= rhi:
                raise ValueError(f"--sweep {node}.{param}: {v:g} is out of range [{rlo:g}, {rhi:g}] {pspec.unit}")
        if curve == "log":
            if lo_v <= 0 or hi_v <= 0:
                raise ValueError(f"--sweep {node}.{param}: log needs positive ends")
            vals = np.geomspace(lo_v, hi_v, n) if n > 1 else np.array([lo_v])
        else:
            vals = np.linspace(lo_v, hi_v, n) if n > 1 else np.array([lo_v])
        if (node, param) in [(t[0], t[1]) for t in targets]:
            raise ValueError(f"--sweep {node}.{param} given twice")
        targets.append((node, param, pspec.unit))
        axes.append([float(f"{v:.6g}") for v in vals])
    return targets, [list(p) for p in itertools.product(*axes)]


@dataclass
class SweepJob:
    name: str
    patch_file: str
    patch_text: str
    overrides: dict
    seconds: float | None
    sample_rate: int | None
    block_size: int | None
    audio_format: str
    input_audio: tuple | None = None


def render_point(job: SweepJob) -> dict:
    """Render one grid point (on any worker): ``{name, wav: bytes, peak, seconds, sample_rate}``."""
    from .engine import Engine

    spec = _parse_patch(job.patch_text, job.patch_file, job.overrides)
    inputs = {"": job.input_audio} if job.input_audio is not None else {}
    engine = Engine(spec, block_size=job.block_size, sample_rate=job.sample_rate, audio_inputs=inputs)
    secs = spec.duration if job.seconds is None else job.seconds
    audio = engine.render(int(round(secs * engine.sample_rate)))
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return {"name": job.name, "wav": _wav_bytes(audio, engine.sample_rate, job.audio_format),
            "peak_db": round(20 * math.log10(peak), 2) if peak > 0 else -120.0,
            "clipped": int(np.count_nonzero(np.abs(audio) > 1.0)) if job.audio_format != "float" else 0,
            "warnings": [str(w) for w in engine.warnings], "sample_rate": engine.sample_rate,
            "frames": int(audio.shape[1])}


def render_sweep(patch: str, out_dir: str, sweeps: list, *, seconds=None, sample_rate=None, block_size=None,
                 audio_format: str = "pcm24", input_path: str | None = None, workers=None, scheduler=None,
                 progress: bool = True, processes: bool = True) -> dict:
    """Render ``patch`` at every point of the grid of ``sweeps``; write the WAVs and manifest.json in ``out_dir``."""
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {sorted(AUDIO_FORMATS)}")
    with open(patch, encoding="utf-8") as fh:
        text = fh.read()
    spec = _parse_patch(text, patch)
    targets, grid = sweep_points(spec, sweeps)
    inp = None
    if input_path:
        from .render import read_audio

        inp = read_audio(input_path)
    stem = re.sub(r"[^A-Za-z0-9]+", "-", os.path.splitext(os.path.basename(patch))[0]).strip("-")
    jobs, points = [], []
    for i, values in enumerate(grid):
        over, tag = {}, []
        for (node, param, unit), v in zip(targets, values):
            over.setdefault(node, {})[param] = v
            tag.append(f"{param}{v:g}")
        name = f"{stem}_{i:03d}_" + "_".join(tag)
        name = re.sub(r"[^A-Za-z0-9._+-]+", "-", name)
        jobs.append(SweepJob(name, patch, text, over, seconds, sample_rate, block_size, audio_format, inp))
        points.append({"file": name + ".wav",
                       "params": {f"{node}.{param}": v for (node, param, _), v in zip(targets, values)}})
    for job in jobs:  # every point must parse (a value can be valid alone yet break a patch): fail before rendering
        _parse_patch(job.patch_text, job.patch_file, job.overrides)
    results = {}

    def write(res):
        _write_atomic(os.path.join(out_dir, res["name"] + ".wav"), res.pop("wav"))
        results[res["name"]] = res

    run_jobs(render_point, jobs, write, workers=workers, scheduler=scheduler, progress=progress, desc="sweep",
             processes=processes)
    for p, job in zip(points, jobs):
        r = results[job.name]
        p.update(sha256=_file_sha256(os.path.join(out_dir, p["file"])), peak_db=r["peak_db"], clipped=r["clipped"],
                 warnings=r["warnings"])
    first = results[jobs[0].name]
    manifest = {"format": SWEEP_FORMAT, "patch": patch, "patch_sha256": _sha256(text.encode()),
                "sample_rate": first["sample_rate"], "frames": first["frames"], "audio_format": audio_format,
                "sweeps": [{"param": f"{n}.{p}", "unit": u, "spec": s} for (n, p, u), s in zip(targets, sweeps)],
                "points": points}
    _write_atomic(os.path.join(out_dir, "manifest.json"), _json_bytes(manifest))
    return manifest


# ------------------------------------------------------------------ command line
def _int_list(text: str) -> list:
    """``36:84`` (inclusive), ``36:84:2``, ``25,50,100`` or a mix: ``36:48,60``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            bits = [int(b) for b in part.split(":")]
            if len(bits) not in (2, 3) or (len(bits) == 3 and bits[2] < 1):
                raise argparse.ArgumentTypeError(f"expected LO:HI or LO:HI:STEP, got {part!r}")
            out += list(range(bits[0], bits[1] + 1, bits[2] if len(bits) == 3 else 1))
        else:
            out.append(int(part))
    if not out:
        raise argparse.ArgumentTypeError(f"no numbers in {text!r}")
    return out


def _int_list_arg(text: str) -> list:
    try:
        return _int_list(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_executor_args(p) -> None:
    g = p.add_argument_group("where it runs (Dask distributed)")
    g.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (default: one per core); 0 renders in this process")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask cluster's scheduler, e.g. tcp://10.0.0.5:8786 (its workers need "
                        "patchlib installed; files are written here, so they need no shared disk)")


DATASET_HELP = """\
Render an NSynth-like dataset of labelled notes from instrument patches.

Every (instrument, pitch, velocity) note is played on the instrument's poly
node 'keys' (a note at 0 s, a note-off at --release) and written as
audio/NAME.wav with labels/NAME.json beside it (NAME = instrument_PPP-VVV):
instrument, MIDI pitch and velocity, and per-frame curves (one frame every
--hop samples): f0_hz (the played pitch), f0_measured_hz and f0_confidence
(YIN on the audio), loudness_db (A-weighted RMS, dBFS) and rms_db.
manifest.json lists every note with its split: 'test' holds every note of a
held-out pitch or velocity (never in train), 'valid' a stable hashed
fraction of the rest, 'train' the others.

Deterministic (same bytes on every run and every executor: each note's
noise seed comes from its name) and resumable (a note whose files exist and
match its settings is skipped; interrupt and rerun freely). Runs on Dask
distributed: a local cluster with one worker per core by default.
"""

DATASET_EPILOG = """\
examples:
  patchlib dataset -o data/notes                         # 4 instruments x MIDI 36-84 x 5 velocities
  patchlib dataset -o data/small --pitches 48:72:4 --velocities 64,127 --seconds 2 --release 1.5
  patchlib dataset -o data/notes --workers 0             # in this process, no Dask cluster
  patchlib dataset -o data/notes --scheduler tcp://10.0.0.5:8786   # on an existing cluster
  patchlib dataset -o data/pluck --instruments patches/instruments/pluck.yaml --format float

  # a cluster over several machines (see docs/dataset.md):
  dask scheduler                          # on one machine: prints tcp://HOST:8786
  dask worker tcp://HOST:8786 --nthreads 1 --nworkers auto   # on each machine
"""

SWEEP_HELP = """\
sweeps (with --sweep, -o is a folder):
  patchlib render patches/filter-sweep.yaml --sweep filter.cutoff=200:2000:10 -o sweeps/cutoff
  patchlib render patches/filter-ladder-acid.yaml --sweep acid.cutoff=200:8kHz:12:log \\
      --sweep acid.resonance=0:0.9:4 -o sweeps/grid --workers 2
  --sweep [NODE.]PARAM=LO:HI:N[:log] renders N values (evenly spaced, or equal ratios with
  :log; LO/HI may carry units); a bare PARAM names the one node that has it. Several
  --sweep make a grid (48 files above). Each point is a file PATCH_III_PARAMVALUE.wav;
  manifest.json lists every file with its param values. --workers/--scheduler: as for
  'patchlib dataset' (default: a local Dask cluster, one worker per core).
"""


def add_dataset_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``patchlib dataset`` on the CLI's subparsers; its handler is ``args.handler``."""
    d = subparsers.add_parser("dataset", help="render a labelled dataset of notes from instrument patches (Dask)",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=DATASET_HELP,
                              epilog=DATASET_EPILOG)
    d.add_argument("-o", "--output", required=True, metavar="DIR", help="the dataset folder (created)")
    d.add_argument("--instruments", nargs="+", default=[INSTRUMENTS_DIR], metavar="PATCH_OR_DIR",
                   help=f"instrument patches, or folders of them (default {INSTRUMENTS_DIR})")
    d.add_argument("--pitches", type=_int_list_arg, default=list(range(36, 85)), metavar="LIST",
                   help="MIDI pitches: 36:84 (inclusive), 36:84:2, 48,60,72 (default 36:84)")
    d.add_argument("--velocities", type=_int_list_arg, default=[25, 50, 75, 100, 127], metavar="LIST",
                   help="MIDI velocities 1..127 (default 25,50,75,100,127)")
    d.add_argument("--sample-rate", type=int, default=16000, metavar="R", help="default 16000")
    d.add_argument("--seconds", type=float, default=4.0, metavar="S", help="length of each note file (default 4)")
    d.add_argument("--release", type=float, default=3.0, metavar="S", help="note-off time (default 3)")
    d.add_argument("--hop", type=int, default=256, metavar="N", help="samples between label frames (default 256)")
    d.add_argument("--frame", type=int, default=1024, metavar="N",
                   help="analysis window of the f0 and loudness curves (default 1024)")
    d.add_argument("--format", choices=sorted(AUDIO_FORMATS), default="pcm16", help="sample format (default pcm16)")
    d.add_argument("--seed", type=int, default=0, help="seed of the notes' noise and of the valid split (default 0)")
    s = d.add_argument_group("held out for evaluation (split 'test')")
    s.add_argument("--heldout-pitch-every", type=int, default=5, metavar="K",
                   help="hold out every K-th pitch of the list, from the middle of each group of K (default 5; 0 none)")
    s.add_argument("--heldout-pitches", type=_int_list_arg, metavar="LIST",
                   help="hold out exactly these pitches instead")
    s.add_argument("--heldout-velocities", type=_int_list_arg, default=[75], metavar="LIST",
                   help="hold out these velocities (default 75; give a velocity not in --velocities for none)")
    s.add_argument("--valid-fraction", type=float, default=0.1, metavar="F",
                   help="fraction of the remaining notes in 'valid' (default 0.1)")
    _add_executor_args(d)
    d.add_argument("--force", action="store_true", help="render every note again, even those already done")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    d.set_defaults(handler=cmd_dataset)
    return d


def cmd_dataset(a) -> int:
    for v in a.velocities:
        if not 1 <= v <= 127:
            print(f"error: --velocities: {v} is not in 1..127", file=sys.stderr)
            return 2
    if a.workers is not None and a.workers < 0:
        print("error: --workers must be >= 0", file=sys.stderr)
        return 2
    cfg = DatasetConfig(out=a.output, instruments=a.instruments, pitches=a.pitches, velocities=a.velocities,
                        sample_rate=a.sample_rate, seconds=a.seconds, release=a.release, hop=a.hop, frame=a.frame,
                        audio_format=a.format, seed=a.seed, heldout_pitch_every=a.heldout_pitch_every,
                        heldout_pitches=a.heldout_pitches, heldout_velocities=a.heldout_velocities,
                        valid_fraction=a.valid_fraction, workers=a.workers, scheduler=a.scheduler,
                        progress=not a.quiet, force=a.force)
    try:
        man = render_dataset(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:
        c = man["counts"]
        n = len(man["notes"])
        print(f"wrote {a.output}: {n} notes ({len(man['rendered'])} rendered, {n - len(man['rendered'])} already "
              f"done), {len(man['instruments'])} instruments; train {c['train']}, valid {c['valid']}, "
              f"test {c['test']} (held out: pitches {man['heldout_pitches']}, velocities {man['heldout_velocities']})")
    return 0


def add_sweep_args(render_parser) -> None:
    """Add ``--sweep`` (and the executor options) to the ``render`` parser; call :func:`run_sweep` when given."""
    render_parser.add_argument("--sweep", action="append", default=[], metavar="[NODE.]PARAM=LO:HI:N[:log]",
                               help="render one file per value (repeat for a grid); -o is then a folder")
    _add_executor_args(render_parser)
    old = render_parser.epilog or ""
    render_parser.epilog = (old + "\n" if old else "") + SWEEP_HELP
    render_parser.formatter_class = argparse.RawDescriptionHelpFormatter


def run_sweep(a) -> int:
    """The ``render --sweep`` handler (uses the render parser's -o, --seconds, --sample-rate, ...)."""
    if a.output.lower().endswith(".wav"):
        print("error: with --sweep, -o names a folder (one file per point goes in it)", file=sys.stderr)
        return 2
    if getattr(a, "spectrogram", None):
        print("error: --spectrogram is not available with --sweep", file=sys.stderr)
        return 2
    if a.workers is not None and a.workers < 0:
        print("error: --workers must be >= 0", file=sys.stderr)
        return 2
    quiet = getattr(a, "quiet", False)
    try:
        man = render_sweep(os.fspath(a.patch), a.output, a.sweep, seconds=a.seconds, sample_rate=a.sample_rate,
                           block_size=a.block_size, audio_format=a.format, input_path=getattr(a, "input", None),
                           workers=a.workers, scheduler=a.scheduler, progress=not quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    clipped = sum(p["clipped"] for p in man["points"])
    if not quiet:
        print(f"wrote {len(man['points'])} files and manifest.json to {a.output}")
    if clipped:
        print(f"warning: {clipped} samples clipped over the sweep (see peak_db in the manifest)", file=sys.stderr)
    return 0


__all__ = ["DatasetConfig", "render_dataset", "render_sweep", "load_split", "yin_f0", "loudness_db", "rms_db",
           "add_dataset_parser", "add_sweep_args", "run_sweep", "cmd_dataset", "parse_sweep"]
