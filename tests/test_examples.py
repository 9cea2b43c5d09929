"""Every example patch in patches/ renders without NaN and without clipping.

Patches with an ``input`` node get a generated recording (a plucked-like
decaying tone), since examples must not depend on files outside the repo.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

import patchlib
from patchlib.render import render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCHES = sorted(glob.glob(os.path.join(ROOT, "patches", "**", "*.yaml"), recursive=True))


def _recording(sr=48000, seconds=2.0):
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 196.0 * t) * np.exp(-3 * t)
    return (tone[None, :].astype(np.float32), sr)


def test_there_are_examples():
    names = {os.path.basename(p) for p in PATCHES}
    assert {"flagship.yaml", "filter-sweep.yaml"} <= names


@pytest.mark.parametrize("path", PATCHES, ids=[os.path.relpath(p, ROOT) for p in PATCHES])
def test_example_renders_clean(path):
    spec = patchlib.load_patch(path)
    uses_input = any(ns.type == "input" and not ns.options.get("file") for ns in spec.nodes.values())
    inputs = {"": _recording(spec.sample_rate)} if uses_input else {}
    audio, engine = render(spec, min(spec.duration, 10.0), audio_inputs=inputs)
    assert np.all(np.isfinite(audio)), "NaN/inf in the output"
    assert not engine.warnings, [str(w) for w in engine.warnings]
    peak = float(np.max(np.abs(audio)))
    assert peak <= 1.0, f"clips: peak {20 * np.log10(peak):+.2f} dBFS"
    # and is not silent: every example makes sound
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 1e-3, f"silent: RMS {rms:.2e}"
