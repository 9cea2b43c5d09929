"""Polyphony: a voice written once, played as N voices from note events."""
from __future__ import annotations

import numpy as np
import pytest

import patchlib
from patchlib import PatchError
from patchlib.errors import PatchErrors

SR = 48000

VOICE = """
voices:
  tone:
    nodes:
      env: {type: adsr, attack: 2ms, decay: 0.1, sustain: 1.0, release: 50ms}
      osc: {type: sine, freq: pitch}
      amp: {type: gain, in: osc, gain: env}
    out: amp
"""


def _patch(body, voices=16, steal="oldest", fade=0.005, extra=""):
    return (f"sample_rate: {SR}\nblock_size: 64\n" + VOICE + extra +
            f"nodes:\n  keys: {{type: poly, voice: tone, voices: {voices}, steal: {steal}, fade: {fade}}}\n"
            "out: keys\nscore:\n" + body)


def _render(text, seconds, **kw):
    e = patchlib.Engine(patchlib.load_patch(text), **kw)
    return e.render(int(seconds * SR))[0], e


def _peak_freqs(y, count):
    w = np.hanning(len(y))
    spec = np.abs(np.fft.rfft(y * w))
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    found = []
    for i in np.argsort(spec)[::-1]:
        if all(abs(freqs[i] - f) > 20 for f in found):
            found.append(freqs[i])
        if len(found) == count:
            break
    return sorted(found)


def test_chord_plays_each_pitch():
    y, e = _render(_patch("  - {at: 0, note: keys, pitch: [C4, E4, G4], velocity: 0.5}\n"), 1.0)
    f = _peak_freqs(y[4800:], 3)
    np.testing.assert_allclose(f, [261.63, 329.63, 392.0], atol=1.5)
    # three voices busy, the allocator stole none
    alloc = e._allocators["keys"]
    assert sum(v.held for v in alloc.voices) == 3 and alloc.stolen == 0


def test_note_starts_on_its_sample_at_any_block_size():
    text = _patch("  - {at: 0.0123, note: keys, pitch: 1000, velocity: 1}\n")
    at = int(round(0.0123 * SR))
    for bs in (1, 64, 1000):
        y, _ = _render(text, 0.05, block_size=bs)
        assert np.all(y[:at] == 0.0)
        # sine from phase 0 times an attack from 0: the first non-zero sample is the next one
        assert np.flatnonzero(y)[0] == at + 1


def test_note_off_releases_only_that_note():
    y, e = _render(_patch("  - {at: 0, note: keys, pitch: [A3, A4]}\n"
                          "  - {at: 0.3, note_off: keys, pitch: A4}\n"), 0.8)
    late = y[int(0.5 * SR):]
    assert abs(_peak_freqs(late, 1)[0] - 220.0) < 2
    spec = np.abs(np.fft.rfft(late * np.hanning(len(late))))
    fr = np.fft.rfftfreq(len(late), 1 / SR)
    a220, a440 = spec[np.argmin(abs(fr - 220))], spec[np.argmin(abs(fr - 440))]
    assert a440 < a220 * 1e-3  # released (50 ms) long before


def _click(y):
    """Peak of everything above 4 kHz: the voices are sines below 1 kHz, so only a jump puts energy there."""
    from scipy.signal import butter, sosfilt

    hp = sosfilt(butter(8, 4000, "highpass", fs=SR, output="sos"), y.astype(np.float64))
    return float(np.max(np.abs(hp)))


def _steal_score(notes=24):
    lines = []
    for k in range(notes):  # 24 overlapping held notes on 16 voices: 8 steals
        f = 200.0 * 2 ** (k / 12)
        lines.append(f"  - {{at: {0.02 * k + 0.0013 * k:.4f}, note: keys, pitch: {f:.3f}, velocity: 0.06}}\n")
    return "".join(lines)


def test_sixteen_voices_steal_without_clicks():
    y, e = _render(_patch(_steal_score(), voices=16), 0.8)
    alloc = e._allocators["keys"]
    assert alloc.stolen == 8
    assert all(len(b.names) == 16 for b in e.batches)  # each node kind of the voice runs as one call
    assert sum(v.held for v in alloc.voices) == 16
    peak = np.abs(y).max()
    assert peak > 0.2
    # nothing above 4 kHz but the faint corners of 2 ms attacks and 5 ms fades: below -60 dB
    assert _click(y) < 1e-3 * peak
    # the same score cutting stolen voices (no fade) clicks at each steal: the test can fail
    y0, _ = _render(_patch(_steal_score(), voices=16, fade=0), 0.8)
    assert _click(y0) > 10 * _click(y)


def test_steals_go_on_when_the_inbox_is_full(monkeypatch):
    """A steal's voice start (after the fade) is the engine's own event: it is never refused, even when
    the inbox for other threads' events is full (``Engine.inbox_limit`` 0 refuses every outside event)."""
    from patchlib.engine import EngineBusy

    monkeypatch.setattr(patchlib.Engine, "inbox_limit", 0)
    y, e = _render(_patch(_steal_score(), voices=16), 0.8)
    assert e._allocators["keys"].stolen == 8 and sum(v.held for v in e._allocators["keys"].voices) == 16
    with pytest.raises(EngineBusy):
        e.note("keys", 440.0)
    monkeypatch.undo()
    y_ref, _ = _render(_patch(_steal_score(), voices=16), 0.8)
    np.testing.assert_array_equal(y, y_ref)


def test_steal_quietest_and_none():
    score = ("  - {at: 0, note: keys, pitch: 300, velocity: 1.0}\n"
             "  - {at: 0, note: keys, pitch: 400, velocity: 0.1}\n"
             "  - {at: 0.2, note: keys, pitch: 500, velocity: 1.0}\n")
    y, e = _render(_patch(score, voices=2, steal="quietest"), 0.6)
    f = _peak_freqs(y[int(0.3 * SR):], 2)
    np.testing.assert_allclose(f, [300, 500], atol=2)
    y, e = _render(_patch(score, voices=2, steal="none"), 0.6)
    assert e._allocators["keys"].dropped == 1
    np.testing.assert_allclose(_peak_freqs(y[int(0.3 * SR):], 2), [300, 400], atol=2)


def test_reset_replays_identically():
    text = _patch(_steal_score(), voices=16)
    y, e = _render(text, 0.6)
    e.reset()
    np.testing.assert_array_equal(e.render(int(0.6 * SR))[0], y)


def test_batched_voices_equal_one_by_one():
    text = _patch(_steal_score(), voices=16)
    y, _ = _render(text, 0.6)
    y1, e1 = _render(text, 0.6, batching=False)
    assert not e1.batches
    np.testing.assert_array_equal(y, y1)


def test_voice_uses_outer_nodes_and_gate(tmp_path):
    text = f"""
sample_rate: {SR}
voices:
  v:
    nodes:
      env: {{type: adsr, gate: gate, attack: 1ms, release: 1ms}}
      osc: {{type: saw, freq: pitch}}
      flt: {{type: lowpass, in: osc, cutoff: {{from: lfo, range: [400, 800]}}}}
      amp: {{type: gain, in: flt, gain: env}}
    out: amp
nodes:
  lfo: {{type: sine, freq: 2}}
  keys: {{type: poly, voice: v, voices: 2}}
out: keys
score:
  - {{at: 0, note: keys, pitch: 110, length: 0.2}}
"""
    y, e = _render(text, 0.4)
    assert "lfo" in e.nodes and "keys/0/lfo" not in e.nodes  # one LFO for every voice
    assert np.abs(y[: int(0.19 * SR)]).max() > 0.1
    assert np.abs(y[int(0.25 * SR):]).max() < 1e-3  # the gate closed at 0.2 s


def test_voice_from_a_file(tmp_path):
    (tmp_path / "voice.yaml").write_text(
        "nodes:\n  env: {type: adsr, attack: 1ms}\n  osc: {type: sine, freq: pitch}\n"
        "  amp: {type: gain, in: osc, gain: env}\nout: amp\n")
    (tmp_path / "song.yaml").write_text(
        "nodes:\n  keys: {type: poly, voice: voice.yaml, voices: 3}\nout: keys\n"
        "score:\n  - {at: 0, note: keys, pitch: A4}\n")
    y = patchlib.Engine(patchlib.load_patch(tmp_path / "song.yaml")).render(9600)[0]
    assert abs(_peak_freqs(y[2000:], 1)[0] - 440) < 3
    (tmp_path / "bad.yaml").write_text("nodes:\n  keys: {type: poly, voice: ../voice.yaml}\nout: keys\n")
    with pytest.raises(PatchError, match="inside the patch's folder"):
        patchlib.load_patch(tmp_path / "bad.yaml")


def test_errors_name_the_voice_node_once(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(VOICE.replace("freq: pitch", "freq: pitch, colour: red") +
                 "nodes:\n  keys: {type: poly, voice: tone, voices: 8}\nout: keys\n")
    with pytest.raises(PatchError) as info:
        patchlib.load_patch(p)
    errs = info.value.errors if isinstance(info.value, PatchErrors) else [info.value]
    assert len(errs) == 1
    msg = str(errs[0])
    assert "p.yaml:6," in msg and "keys/0/osc" in msg and "colour" in msg


@pytest.mark.parametrize("body, match", [
    ("nodes:\n  keys: {type: poly, voice: nope}\nout: keys\n", "no voice 'nope'"),
    (VOICE + "nodes:\n  keys: {type: poly, voice: tone, voices: 0}\nout: keys\n", "voices must be"),
    (VOICE + "nodes:\n  keys: {type: poly, voice: tone}\n  s: {type: sine}\nout: keys\n"
     "score:\n  - {at: 0, note: s, pitch: C4}\n", "go to a poly node"),
    (VOICE + "nodes:\n  keys: {type: poly, voice: tone}\nout: keys\nscore:\n  - {at: 0, note: keys}\n",
     "needs 'pitch'"),
])
def test_poly_errors(body, match):
    with pytest.raises(PatchError, match=match):
        patchlib.load_patch(body)


def test_live_notes_from_another_thread():
    """engine.note / note_off (what OSC and MIDI call) play through the allocator, thread-safely."""
    import threading

    e = patchlib.Engine(patchlib.load_patch(_patch("  - {at: 10, all_off: keys}\n", voices=4)), block_size=256)
    t = threading.Thread(target=lambda: [e.note("keys", p, 0.5) for p in ("C4", "E4", 392.0)])
    t.start()
    t.join()
    y = np.concatenate([e.process().copy() for _ in range(200)], axis=1)[0]
    np.testing.assert_allclose(_peak_freqs(y[4800:], 3), [261.63, 329.63, 392.0], atol=1.5)
    assert y[0] == 0.0 and np.flatnonzero(y)[0] == 1  # applied at the first block's first sample
    assert e.late_events == 0
    e.note_off("keys", "E4")
    e.process()
    assert sorted(v.pitch for v in e._allocators["keys"].voices if v.held) == pytest.approx([261.63, 392.0], abs=0.01)
    with pytest.raises(ValueError, match="not a poly node"):
        e.note("nope", "C4")
    with pytest.raises(ValueError):
        e.note("keys", "H9")
