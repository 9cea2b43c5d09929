"""The ``file`` sample player: playback, resampling, speed, loop, events, paths."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

import patchlib
from conftest import render_engine, write_patch, zero_crossing_freq
from patchlib import PatchError

SR = 48000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRUMLOOP = os.path.join(ROOT, "patches", "samples", "drumloop.wav")


def make_drumloop(sr=44100, bpm=120.0):
    """How patches/samples/drumloop.wav was made: one bar of kick, snare and hats, 2 s, peak 0.8.

    Written at 44.1 kHz on purpose, so patches at 48 kHz exercise the resampling.
    """
    rng = np.random.default_rng(7)
    step = 60.0 / bpm / 4  # a sixteenth
    n = int(round(16 * step * sr))
    out = np.zeros(n)

    def put(at, sig):
        i = int(round(at * sr))
        k = min(sig.size, n - i)
        out[i:i + k] += sig[:k]

    t = np.arange(int(0.4 * sr)) / sr
    f = 45.0 + 110.0 * np.exp(-t / 0.04)
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.12)
    bright = np.diff(rng.standard_normal(t.size), prepend=0.0)
    snare = (0.5 * bright + 0.6 * np.sin(2 * np.pi * 190.0 * t)) * np.exp(-t / 0.06)
    hat = np.diff(bright, prepend=0.0)[: int(0.08 * sr)] * np.exp(-t[: int(0.08 * sr)] / 0.012) * 0.25
    for s in (0, 6, 8, 11):
        put(s * step, kick)
    for s in (4, 12):
        put(s * step, snare)
    for s in range(0, 16, 2):
        put(s * step, hat * (1.0 if s % 4 == 2 else 0.6))
    put(15 * step, hat * 0.4)
    return (0.8 * out / np.max(np.abs(out))).astype(np.float32), sr


def test_the_shipped_drumloop_is_what_make_drumloop_makes():
    data, rate = sf.read(DRUMLOOP, dtype="float32")
    want, sr = make_drumloop()
    assert rate == sr and data.shape == want.shape
    np.testing.assert_allclose(data, want, atol=1.5 / 32768)


def _sample(tmp_path, audio, sr, name="s.wav"):
    """Write ``audio`` ((C, frames) or (frames,)) beside the patch; returns its file name."""
    audio = np.asarray(audio, dtype=np.float32)
    sf.write(str(tmp_path / name), audio.T if audio.ndim == 2 else audio, sr, subtype="FLOAT")
    return name


def _play(tmp_path, seconds, score="", **opts):
    body = ", ".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in opts.items())
    text = f"""
        sample_rate: {SR}
        nodes:
          p: {{type: file, {body}}}
        out: p
        """ + (f"score:\n{score}" if score else "")
    path = write_patch(tmp_path, text)
    audio, engine = render_engine(path, seconds)
    return audio.astype(np.float64), engine


def test_plays_the_file_at_the_engine_rate(tmp_path):
    """A 44.1 kHz file at 48 kHz: resampled, so it plays for as long and at its pitch."""
    t = np.arange(44100) / 44100
    name = _sample(tmp_path, 0.5 * np.sin(2 * np.pi * 441.0 * t), 44100)
    y, _ = _play(tmp_path, 1.2, file=name, autoplay=True)
    assert abs(zero_crossing_freq(y[0, 2000:40000]) - 441.0) < 0.01
    assert np.max(np.abs(y[0, int(1.01 * SR):])) == 0.0  # stopped at its end
    assert np.max(np.abs(y[0, int(0.97 * SR):int(0.99 * SR)])) > 0.4


def test_speed_and_reverse(tmp_path):
    t = np.arange(SR) / SR
    name = _sample(tmp_path, 0.3 * np.sin(2 * np.pi * 300.0 * t), SR)
    y, _ = _play(tmp_path, 0.4, file=name, autoplay=True, speed=2.0)
    assert abs(zero_crossing_freq(y[0, 1000:18000]) - 600.0) < 0.05
    y, _ = _play(tmp_path, 0.4, file=name, autoplay=True, speed=0.5)
    assert abs(zero_crossing_freq(y[0, 1000:18000]) - 150.0) < 0.05
    ramp = np.linspace(-0.5, 0.5, SR)
    name = _sample(tmp_path, ramp, SR, "ramp.wav")
    y, _ = _play(tmp_path, 0.5, file=name, autoplay=True, speed=-1.0)
    # backwards from the last sample: the ramp read in reverse, exactly (integer positions)
    np.testing.assert_allclose(y[0, :1000], ramp[::-1][:1000].astype(np.float32), atol=1e-6)


def test_loop_region_and_end_fade(tmp_path):
    t = np.arange(SR) / SR
    name = _sample(tmp_path, 0.5 * np.sin(2 * np.pi * 100.0 * t), SR)
    y, _ = _play(tmp_path, 1.0, file=name, autoplay=True, loop=True, start=0.1, end=0.2)
    # 0.1 s region of a 100 Hz sine: 10 whole cycles, so the loop is seamless
    ref = 0.5 * np.sin(2 * np.pi * 100.0 * (0.1 + (np.arange(SR) % 4800) / SR))
    np.testing.assert_allclose(y[0], ref, atol=1e-6)
    y, _ = _play(tmp_path, 0.3, file=name, autoplay=True, start=0.1, end=0.2)
    assert np.max(np.abs(y[0, int(0.1 * SR):])) == 0.0
    # without loop the region's end fades out over 5 ms instead of cutting
    assert np.max(np.abs(np.diff(y[0]))) < 0.5 * 2 * np.pi * 100 / SR * 1.5


def test_trigger_velocity_release_and_retrigger_without_clicks(tmp_path):
    t = np.arange(SR) / SR
    name = _sample(tmp_path, 0.8 * np.sin(2 * np.pi * 200.0 * t + 0.7), SR)
    score = """
          - {at: 0.1, trigger: p, velocity: 0.5}
          - {at: 0.3, release: p}
          - {at: 0.5, trigger: p}
          - {at: 0.6, trigger: p}
        """
    y, _ = _play(tmp_path, 0.8, score=score, file=name)
    assert np.max(np.abs(y[0, :int(0.1 * SR)])) == 0.0  # silent until triggered
    assert abs(np.max(np.abs(y[0, int(0.1 * SR):int(0.3 * SR)])) - 0.4) < 0.01  # velocity is gain
    assert np.max(np.abs(y[0, int(0.306 * SR):int(0.5 * SR)])) == 0.0  # released: gone after the fade
    # the sample starts at a non-zero value (phase 0.7): the jump at a trigger is the sample's own;
    # everywhere else the steps stay those of a 200 Hz sine (the release and the retrigger fade)
    steps = np.abs(np.diff(y[0]))
    starts = [int(0.1 * SR) - 1, int(0.5 * SR) - 1, int(0.6 * SR) - 1]
    steps[starts] = 0.0
    assert np.max(steps) < 0.8 * 2 * np.pi * 200 / SR * 2.2


def test_a_stereo_file_gives_two_channels(tmp_path):
    t = np.arange(4800) / SR
    name = _sample(tmp_path, np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)]) * 0.5, SR)
    y, engine = _play(tmp_path, 0.1, file=name, autoplay=True)
    assert y.shape[0] == 2
    assert abs(zero_crossing_freq(y[1, 100:4000]) - 500.0) < 0.1


@pytest.mark.parametrize("file,words", [
    ("/etc/hostname", ["'/etc/hostname'", "absolute"]),
    ("../outside.wav", ["'../outside.wav'", "outside the patch's folder"]),
    ("sub/../../outside.wav", ["outside the patch's folder"]),
    ("missing.wav", ["'missing.wav'", "no such file"]),
    ("notaudio.wav", ["'notaudio.wav'", "cannot read"]),
])
def test_file_errors_name_the_file_and_what_is_allowed(tmp_path, file, words):
    (tmp_path / "notaudio.wav").write_text("not a wav")
    sub = tmp_path / "patch"
    sub.mkdir()
    (sub / "notaudio.wav").write_text("not a wav")
    path = write_patch(sub, f"""
        nodes:
          p: {{type: file, file: "{file}"}}
        out: p
        """)
    with pytest.raises(PatchError) as err:
        patchlib.Engine(patchlib.load_patch(path))
    text = str(err.value)
    for w in words:
        assert w in text, text
    assert "node 'p'" in text and "key 'file'" in text


def test_the_region_must_lie_in_the_file(tmp_path):
    name = _sample(tmp_path, np.zeros(SR // 10), SR)
    for opts, key in (({"start": 0.5}, "start"), ({"start": 0.05, "end": 0.02}, "end")):
        with pytest.raises(PatchError, match=f"key '{key}'"):
            _play(tmp_path, 0.1, file=name, **opts)


def test_the_contract_settings_play_the_shipped_loop():
    from patchlib import registry

    settings = registry.get("file").contract_settings
    assert os.path.samefile(os.path.join(os.getcwd(), settings["file"]), DRUMLOOP)
    y, _ = render_engine({"nodes": {"p": {"type": "file", **settings}}, "out": "p"}, 0.5)
    assert np.max(np.abs(y)) > 0.3
