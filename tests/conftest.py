"""Shared helpers for the engine, error and node tests.

Everything here renders *real patches* (YAML text or dicts) through
:func:`patchlib.load_patch` and :class:`patchlib.Engine`; the measurements
(pitch, level, spectra) are plain numpy on the rendered audio.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import patchlib

SR = 48000


def load(patch):
    """A PatchSpec from a dict, YAML text (dedented) or a path."""
    if isinstance(patch, str) and "\n" in patch:
        patch = textwrap.dedent(patch)
    return patchlib.load_patch(patch)


def render_engine(patch, seconds=None, block_size=None, *, frames=None, sample_rate=None,
                  audio_inputs=None):
    """Render a patch; returns ``(audio float32 (channels, frames), engine)``.

    ``seconds`` (or ``frames``) defaults to the patch's duration.
    """
    spec = load(patch)
    engine = patchlib.Engine(spec, block_size=block_size, sample_rate=sample_rate,
                             audio_inputs=audio_inputs)
    if frames is None:
        secs = spec.duration if seconds is None else seconds
        frames = int(round(secs * engine.sample_rate))
    return engine.render(frames), engine


def render_patch(patch, seconds=None, block_size=None, **kw):
    """Render a patch and return only the audio ``(channels, frames)``."""
    return render_engine(patch, seconds, block_size, **kw)[0]


def write_patch(dirpath, text, name="patch.yaml"):
    """Write dedented YAML text to ``dirpath/name``; returns the path as str."""
    path = dirpath / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- measuring
def rms(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x)))


def zero_crossing_freq(x, sr=SR) -> float:
    """Frequency from rising zero crossings, linearly interpolated inside the sample.

    Accurate to ~1e-4 Hz for a clean tone over a second: the error of each
    crossing time is tiny and the period is averaged over every cycle.
    """
    x = np.asarray(x, dtype=np.float64)
    neg = x < 0
    idx = np.flatnonzero(neg[:-1] & ~neg[1:])
    if idx.size < 2:
        raise AssertionError("fewer than two rising zero crossings: no pitch")
    t = idx + x[idx] / (x[idx] - x[idx + 1])
    return (t.size - 1) * sr / (t[-1] - t[0])


def bin_amplitude(x, freq, sr=SR) -> float:
    """Amplitude of the component at ``freq``, for a render of a whole number of its periods.

    With an integer number of cycles in the window, a rectangular DFT puts
    the component exactly on one bin and ``2|X|/N`` is its amplitude.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    k = freq * n / sr
    assert abs(k - round(k)) < 1e-9, "render a whole number of periods"
    return float(2.0 * np.abs(np.fft.rfft(x)[int(round(k))]) / n)


def db(x):
    return 20.0 * np.log10(np.maximum(np.abs(x), 1e-300))


@pytest.fixture
def scratch_registry(monkeypatch):
    """Node types registered during the test vanish after it.

    The registry is global: a test's own node type must not show up in
    other tests (the generated node reference, the contract suite).
    """
    from patchlib import registry

    registry.load_plugins()  # built-ins first, so the copy holds them
    monkeypatch.setattr(registry, "_TYPES", dict(registry._TYPES))
    return registry


def dataset_note(inst, pitch, velocity=100, sr=16000, seconds=4.0, release=3.0):
    """The ground-truth render of one note, exactly as ``patchlib dataset`` renders it (no dataset needed):
    ``patches/instruments/INST.yaml`` at MIDI ``pitch``, velocity 0..127, mono float32."""
    import io
    import os

    import soundfile as sf

    from patchlib.dataset import NoteJob, _seed_of, render_note

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join("patches", "instruments", f"{inst}.yaml")
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        text = fh.read()
    job = NoteJob(f"{inst}_{pitch:03d}-{velocity:03d}", inst, path, text, pitch, velocity, sr, seconds, release, 256,
                  1024, "pcm16", _seed_of(0, inst, pitch, velocity))
    x, _ = sf.read(io.BytesIO(render_note(job)["wav"]), dtype="float32", always_2d=True)
    return x.mean(axis=1)


def tiny_note_dataset(tmp_path):
    """A tiny rendered note dataset (pluck and saw, five pitches, velocity 100, 1 s notes) for training tests."""
    import os

    from patchlib.dataset import DatasetConfig, render_dataset

    root = str(tmp_path / "notes")
    render_dataset(DatasetConfig(out=root, instruments=[os.path.join("patches", "instruments", f"{i}.yaml")
                                                        for i in ("pluck", "saw")],
                                 pitches=[48, 50, 52, 55, 57], velocities=[100], seconds=1.0, release=0.7,
                                 workers=0, progress=False, valid_fraction=0.0))
    return root
