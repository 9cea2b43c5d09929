"""Training data for the neural ``pedal``: dry audio and the virtual-analog ``diode_clipper``'s output.

Everything is rendered with patchlib itself (no downloads): the dry signal
is made by the project's own instruments (plucked ``string`` riffs and
chords, ``saw`` riffs through an envelope and a lowpass, ``noise`` bursts,
exponential ``sine`` sweeps), each segment at its own random level, all
from one seed. The target is the dry signal through ``diode_clipper`` at a
grid of knob settings (``GRID``), plus held-out settings never in the grid
(``HELD_OUT``) to measure interpolation between knob values.

Layout of ``out_dir``::

    dry.wav                         the dry signal (mono, float32 by default)
    wet_gain0.25_tone0.2.wav ...    one target per knob setting, sample-aligned with dry.wav
    manifest.json                   pairs, knobs, sample rate, seed, splits, segments, checksums, command

The clipper's ``latency`` is compensated (the wet files are advanced by it),
so dry and wet are aligned sample for sample. The time split: the first
``1 - VALIDATION`` of the frames (``manifest["split"]["train"]``) and the
rest (``["validation"]``) are rendered from separate runs of the segment
generator, so both hold every kind of material. ``pairs[i]["set"]`` is
``grid`` (train on it) or ``heldout`` (knob values never in the grid).

Run ``python -m nodes.dsp.pedal_data OUT_DIR [--seconds 40] [--seed 0]``
or call :func:`make_dataset`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys

import numpy as np

#: knob settings of the training grid and the held-out ones (level fixed at LEVEL)
GRID = [(g, t) for g in (0.25, 0.4, 0.55, 0.7) for t in (0.2, 0.5, 0.8)]
HELD_OUT = [(0.325, 0.35), (0.475, 0.65), (0.625, 0.35)]
LEVEL = 1.0
#: fraction of the frames (at the end) kept for validation
VALIDATION = 0.2
KINDS = ("string_riff", "saw_riff", "noise_bursts", "sine_sweep", "chords")
#: E minor pentatonic over two octaves from E2, in MIDI numbers
_SCALE = [40, 43, 45, 47, 50, 52, 55, 57, 59, 62, 64]
_GAP = 0.05  # seconds of silence between segments


def _hz(m):
    return float(440.0 * 2.0 ** ((m - 69) / 12.0))


def _render(patch, frames, sample_rate, audio=None):
    import patchlib

    spec = patchlib.load_patch(patch)
    inputs = {"": (audio[None, :].astype(np.float32), sample_rate)} if audio is not None else None
    engine = patchlib.Engine(spec, sample_rate=sample_rate, audio_inputs=inputs)
    return engine.render(frames), engine


def _segment_patch(kind, seconds, rng, seed):
    """A patch dict rendering one dry segment of ``kind``."""
    score = []
    nodes = {}
    if kind in ("string_riff", "chords"):
        strings = 3 if kind == "string_riff" else 4
        for s in range(strings):
            nodes[f"s{s}"] = {"type": "string", "freq": 110.0, "decay": float(rng.uniform(0.8, 3.0)),
                              "brightness": float(rng.uniform(0.3, 0.8)), "position": float(rng.uniform(0.08, 0.3)),
                              "release": 0.05}
        nodes["body"] = {"type": "mix", "in": [f"s{s}" for s in range(strings)], "gains": [0.5] * strings}
        out = "body"
        if kind == "string_riff":
            step = float(rng.choice([0.125, 0.1667, 0.25]))
            t, k = 0.0, 0
            while k == 0 or t < seconds - 0.05:
                s = k % strings
                score.append({"at": round(t, 4), "set": f"s{s}.freq", "to": _hz(rng.choice(_SCALE) + 12 * (s == 2))})
                score.append({"at": round(t, 4), "trigger": f"s{s}", "velocity": float(rng.uniform(0.4, 1.0))})
                if rng.random() < 0.2:
                    score.append({"at": round(t + 0.6 * step, 4), "release": f"s{s}"})
                t += step * float(rng.choice([1, 1, 2]))
                k += 1
        else:
            t = 0.0
            while t == 0.0 or t < seconds - 0.1:
                root = int(rng.choice(_SCALE[:6]))
                shape = [0, 7, 12, 16] if rng.random() < 0.5 else [0, 7, 12, 15]
                vel = float(rng.uniform(0.5, 1.0))
                for s in range(strings):
                    at = round(t + 0.012 * s, 4)  # a strum
                    score.append({"at": at, "set": f"s{s}.freq", "to": _hz(root + shape[s])})
                    score.append({"at": at, "trigger": f"s{s}", "velocity": vel})
                t += float(rng.choice([0.5, 0.75, 1.0]))
    elif kind == "saw_riff":
        nodes = {
            "osc": {"type": "saw", "freq": 110.0},
            "env": {"type": "adsr", "attack": 0.004, "decay": float(rng.uniform(0.1, 0.4)),
                    "sustain": float(rng.uniform(0.3, 0.8)), "release": 0.06},
            "vca": {"type": "gain", "in": "osc", "gain": "env"},
            "tone": {"type": "lowpass", "in": "vca", "cutoff": float(rng.uniform(1500, 5000))},
        }
        out = "tone"
        step = float(rng.choice([0.125, 0.2, 0.25]))
        t = 0.0
        while t == 0.0 or t < seconds - 0.05:
            score.append({"at": round(t, 4), "set": "osc.freq", "to": _hz(rng.choice(_SCALE)), "over": 0})
            score.append({"at": round(t, 4), "trigger": "env", "velocity": float(rng.uniform(0.5, 1.0)),
                          "length": round(step * float(rng.uniform(0.4, 0.9)), 4)})
            t += step
    elif kind == "noise_bursts":
        nodes = {
            "src": {"type": "noise", "color": str(rng.choice(["white", "pink"])), "seed": int(seed)},
            "env": {"type": "ar", "attack": 0.002, "release": float(rng.uniform(0.05, 0.3))},
            "vca": {"type": "gain", "in": "src", "gain": "env"},
        }
        out = "vca"
        t = 0.0
        while t == 0.0 or t < seconds - 0.05:
            score.append({"at": round(t, 4), "trigger": "env", "velocity": float(rng.uniform(0.3, 1.0))})
            t += float(rng.uniform(0.1, 0.4))
    elif kind == "sine_sweep":
        lo, hi = float(rng.uniform(40, 80)), float(rng.uniform(4000, 12000))
        if rng.random() < 0.5:
            lo, hi = hi, lo
        nodes = {
            "sweep": {"type": "ramp", "start": lo, "end": hi, "time": max(seconds - 0.05, 0.01), "curve": "exp"},
            "osc": {"type": "sine", "freq": "sweep"},
            "env": {"type": "adsr", "attack": 0.02, "decay": 0.01, "sustain": 1.0, "release": 0.02},
            "vca": {"type": "gain", "in": "osc", "gain": "env"},
        }
        out = "vca"
        score = [{"at": 0.0, "trigger": "sweep"},
                 {"at": 0.0, "trigger": "env", "length": round(max(seconds - 0.04, 0.01), 4)}]
    else:
        raise ValueError(f"unknown segment kind {kind!r}")
    return {"seed": int(seed), "nodes": nodes, "out": out, "score": score}


def make_dry(seconds, sample_rate=48000, seed=0):
    """The dry signal: float32 mono, and the list of its segments ``{kind, start, frames, peak}``."""
    rng = np.random.default_rng(seed)
    total = int(round(seconds * sample_rate))
    n_train = int(round(total * (1.0 - VALIDATION)))
    parts = []
    segments = []
    pos = 0
    for part_frames in (n_train, total - n_train):
        part_s = part_frames / sample_rate
        nseg = max(len(KINDS), int(round(part_s / 3.0)))
        edges = np.round(np.linspace(0, part_frames, nseg + 1)).astype(int)
        order = list(rng.permutation(len(KINDS)))
        for i in range(nseg):
            kind = KINDS[order[i % len(KINDS)]]
            frames = int(edges[i + 1] - edges[i])
            gap = min(int(_GAP * sample_rate), frames // 4)
            body = frames - gap
            seg_seed = int(rng.integers(2**31))
            patch = _segment_patch(kind, body / sample_rate, np.random.default_rng(seg_seed), seg_seed)
            audio, _ = _render(patch, body, sample_rate)
            x = audio.mean(axis=0).astype(np.float64)
            # 5 ms fades: every segment starts and ends at zero
            nf = min(int(0.005 * sample_rate), body // 2)
            if nf > 0:
                ramp = np.linspace(0.0, 1.0, nf)
                x[:nf] *= ramp
                x[body - nf:] *= ramp[::-1]
            peak_want = float(rng.uniform(0.2, 0.9))
            m = np.max(np.abs(x))
            if m > 0:
                x *= peak_want / m
            parts.append(x)
            parts.append(np.zeros(gap))
            segments.append({"kind": kind, "start": pos, "frames": body, "peak": round(peak_want, 6)})
            pos += frames
    dry = np.concatenate(parts).astype(np.float32)
    assert dry.size == total
    return dry, segments, n_train


def render_wet(dry, gain, tone, level=LEVEL, sample_rate=48000, oversample=4):
    """``dry`` through ``diode_clipper`` with its latency compensated: ``(wet float32, latency)``."""
    latency_pad = 256  # more than any oversampling's latency
    x = np.concatenate([dry.astype(np.float32), np.zeros(latency_pad, np.float32)])
    patch = {"sample_rate": int(sample_rate), "nodes": {
        "dry": {"type": "input"},
        "pedal": {"type": "diode_clipper", "in": "dry", "gain": float(gain), "tone": float(tone),
                  "level": float(level), "oversample": int(oversample)}}, "out": "pedal"}
    out, engine = _render(patch, x.size, sample_rate, x)
    lat = int(engine.nodes["pedal"].latency)
    return out[0, lat:lat + dry.size].astype(np.float32), lat


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: libsndfile's SFC_SET_ADD_PEAK_CHUNK: float WAVs get a PEAK chunk with a timestamp unless it is off
_SFC_SET_ADD_PEAK_CHUNK = 0x1050


def write_wav(path, audio, sample_rate, subtype="FLOAT"):
    """Write mono ``audio`` with soundfile, byte-reproducibly (no timestamped PEAK chunk in float files)."""
    import soundfile as sf

    with sf.SoundFile(path, "w", int(sample_rate), 1, subtype, format="WAV") as f:
        try:
            sf._snd.sf_command(f._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, 0)
        except AttributeError:  # a soundfile without these internals: the files differ only in that chunk
            pass
        f.write(np.asarray(audio, dtype=np.float32))


def _name(gain, tone):
    return f"wet_gain{gain:g}_tone{tone:g}.wav"


def make_dataset(out_dir, seconds=40.0, sample_rate=48000, seed=0, subtype="FLOAT", command=None,
                 grid=None, heldout=None):
    """Render the dry signal and every knob setting's target into ``out_dir``; returns the manifest dict.

    Args:
        out_dir: folder (created) for the WAV files and ``manifest.json``.
        seconds: length of the dry signal (and of every target).
        sample_rate: Hz.
        seed: everything random (notes, levels, noise) follows from it: same seed, same bytes.
        subtype: soundfile subtype of the WAVs: ``FLOAT`` (32-bit float) or ``PCM_24``.
        command: recorded in the manifest (default: a ``python -m nodes.dsp.pedal_data`` line).
        grid, heldout: ``[(gain, tone), ...]`` knob settings to train on and to hold out
            (default :data:`GRID`, :data:`HELD_OUT`).
    """
    grid = GRID if grid is None else [tuple(map(float, s)) for s in grid]
    heldout = HELD_OUT if heldout is None else [tuple(map(float, s)) for s in heldout]
    for g, t in heldout:
        if not (min(s[0] for s in grid) <= g <= max(s[0] for s in grid)
                and min(s[1] for s in grid) <= t <= max(s[1] for s in grid)):
            raise ValueError(f"held-out setting gain {g:g}, tone {t:g} lies outside the grid's span: it would "
                             "measure extrapolation, not interpolation")
    os.makedirs(out_dir, exist_ok=True)
    dry, segments, n_train = make_dry(seconds, sample_rate, seed)
    write_wav(os.path.join(out_dir, "dry.wav"), dry, sample_rate, subtype)
    pairs = []
    latency = 0
    for group, settings in (("grid", grid), ("heldout", heldout)):
        for gain, tone in settings:
            wet, latency = render_wet(dry, gain, tone, LEVEL, sample_rate)
            name = _name(gain, tone)
            write_wav(os.path.join(out_dir, name), wet, sample_rate, subtype)
            pairs.append({"dry": "dry.wav", "wet": name, "set": group,
                          "knobs": {"gain": gain, "tone": tone, "level": LEVEL},
                          "peak": round(float(np.max(np.abs(wet))), 6),
                          "rms": round(float(np.sqrt(np.mean(wet.astype(np.float64) ** 2))), 6),
                          "sha256": _sha256(os.path.join(out_dir, name))})
    if command is None:
        command = (f"python -m nodes.dsp.pedal_data {shlex.quote(str(out_dir))} --seconds {seconds:g} "
                   f"--sample-rate {int(sample_rate)} --seed {int(seed)} --subtype {subtype}")
    manifest = {
        "format": "patchlib-pedal-data/1",
        "command": command,
        "sample_rate": int(sample_rate),
        "seed": int(seed),
        "frames": int(dry.size),
        "seconds": dry.size / sample_rate,
        "subtype": subtype,
        "reference": {"type": "diode_clipper", "oversample": 4, "latency_compensated": int(latency),
                      "doc": "wet[i] is the clipper's response to dry[..i]: dry and wet are aligned"},
        # the range a model trained on this data may be played in: the grid's span (it interpolates
        # between the settings it saw; outside them it would extrapolate, which nobody measured)
        "knobs": {"gain": [min(g for g, _ in grid), max(g for g, _ in grid)],
                  "tone": [min(t for _, t in grid), max(t for _, t in grid)], "level": [0.0, 1.0]},
        "grid": [{"gain": g, "tone": t, "level": LEVEL} for g, t in grid],
        "heldout": [{"gain": g, "tone": t, "level": LEVEL} for g, t in heldout],
        "split": {"train": [0, int(n_train)], "validation": [int(n_train), int(dry.size)]},
        "dry": {"file": "dry.wav", "peak": round(float(np.max(np.abs(dry))), 6),
                "sha256": _sha256(os.path.join(out_dir, "dry.wav"))},
        "pairs": pairs,
        "segments": segments,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m nodes.dsp.pedal_data", description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seconds", type=float, default=40.0, help="length of the dry signal (default 40)")
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subtype", default="FLOAT", choices=("FLOAT", "PCM_24"))
    a = ap.parse_args(argv)
    if not (a.seconds > 0 and math.isfinite(a.seconds)):
        ap.error("--seconds must be positive")
    cmd = "python -m nodes.dsp.pedal_data " + " ".join(shlex.quote(s) for s in (argv if argv is not None
                                                                                   else sys.argv[1:]))
    m = make_dataset(a.out_dir, a.seconds, a.sample_rate, a.seed, a.subtype, command=cmd)
    print(f"wrote {len(m['pairs'])} pairs of {m['seconds']:.1f} s to {a.out_dir}/ (manifest.json)")


if __name__ == "__main__":
    main()
