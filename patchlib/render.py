"""Offline rendering: a patch to a WAV file, with progress, never a partial file.

>>> from patchlib.render import render_file
>>> render_file("patches/flagship.yaml", "out.wav", seconds=2)  # doctest: +SKIP
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from .engine import Engine
from .errors import PatchError, Where
from .patch import PatchSpec, load_patch

FORMATS = {"pcm16": "PCM_16", "pcm24": "PCM_24", "float": "FLOAT"}


@dataclass
class RenderResult:
    path: str
    frames: int
    sample_rate: int
    channels: int
    peak_db: float
    clipped: int
    warnings: list = field(default_factory=list)
    audio: np.ndarray | None = None


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Read a sound file as float32 ``(channels, frames)`` and its rate."""
    import soundfile as sf

    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:
        raise PatchError(f"cannot read audio file: {e}", Where(file=path)) from None
    return np.ascontiguousarray(data.T), int(rate)


def render(spec: PatchSpec, seconds: float | None = None, *, block_size: int | None = None,
           sample_rate: int | None = None, audio_inputs: dict | None = None, progress: bool = False,
           on_warning=None) -> tuple[np.ndarray, Engine]:
    """Render a patch to an array ``(channels, frames)``."""
    engine = Engine(spec, block_size=block_size, sample_rate=sample_rate, audio_inputs=audio_inputs,
                    on_warning=on_warning)
    secs = spec.duration if seconds is None else seconds
    frames = int(round(secs * engine.sample_rate))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=frames, unit="frame", unit_scale=True, desc="render", leave=False, disable=None)
    try:
        audio = engine.render(frames, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    return audio, engine


def render_file(patch, out_path: str, seconds: float | None = None, *, block_size: int | None = None,
                sample_rate: int | None = None, input_path: str | None = None, fmt: str = "pcm24",
                spectrogram: str | None = None, progress: bool = False, on_warning=None) -> RenderResult:
    """Render a patch (path or :class:`PatchSpec`) to a sound file.

    The file is written to a temporary name beside the target and moved into
    place only when complete, so a failed render leaves no partial file.
    """
    import soundfile as sf

    spec = patch if isinstance(patch, PatchSpec) else load_patch(patch)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}")
    inputs = {}
    if input_path:
        inputs[""] = read_audio(input_path)
    audio, engine = render(spec, seconds, block_size=block_size, sample_rate=sample_rate,
                           audio_inputs=inputs, progress=progress, on_warning=on_warning)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    clipped = int(np.count_nonzero(np.abs(audio) > 1.0)) if fmt != "float" else 0
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=".wav", dir=out_dir)
    os.close(fd)
    try:
        sf.write(tmp, np.clip(audio, -1.0, 1.0).T if fmt != "float" else audio.T, engine.sample_rate,
                 subtype=FORMATS[fmt], format="WAV")
        if spectrogram:
            save_spectrogram(audio, engine.sample_rate, spectrogram, title=os.path.basename(out_path))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a rendered file is as shareable as any
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return RenderResult(out_path, audio.shape[1], engine.sample_rate, audio.shape[0],
                        20 * np.log10(peak) if peak > 0 else -np.inf, clipped, list(engine.warnings), audio)


def save_spectrogram(audio: np.ndarray, sample_rate: int, path: str, title: str = "") -> None:
    """Waveform and log-frequency spectrogram of the (first channel of the) audio, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import spectrogram

    x = audio.mean(axis=0) if audio.ndim == 2 else audio
    t = np.arange(x.size) / sample_rate
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                   gridspec_kw={"height_ratios": [1, 3]}, constrained_layout=True)
    ax1.plot(t, x, lw=0.4, color="#1f4e79")
    ax1.set_ylabel("amplitude")
    ax1.set_ylim(-1.05, 1.05)
    ax1.set_title(title)
    nper = 2048 if x.size >= 2048 else max(16, x.size)
    f, tt, s = spectrogram(x, fs=sample_rate, nperseg=nper, noverlap=nper * 3 // 4, window="hann")
    db = 10 * np.log10(s + 1e-12)
    vmax = db.max() if db.size else 0
    mesh = ax2.pcolormesh(tt, np.maximum(f, 1), db, shading="auto", vmin=vmax - 90, vmax=vmax, cmap="magma")
    ax2.set_yscale("log")
    ax2.set_ylim(20, sample_rate / 2)
    ax2.set_ylabel("frequency (Hz)")
    ax2.set_xlabel("time (s)")
    fig.colorbar(mesh, ax=ax2, label="dB")
    fig.savefig(path, dpi=100)
    plt.close(fig)
