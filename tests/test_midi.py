"""MIDI input (patchlib.midi): notes to poly voices measured on the played audio, CCs to bound
params through the smoothed event path, channel filtering, malformed messages counted, the
``{midi_cc: ...}`` patch syntax and its file:line errors, ports that cannot open."""
from __future__ import annotations

import math
import os

import mido
import numpy as np
import pytest

from patchlib import load_patch
from patchlib.errors import PatchError
from patchlib.midi import MidiError, MidiInput, list_ports, note_hz
from patchlib.realtime import ManualClock, Player, make_engine

from conftest import rms, write_patch, zero_crossing_freq

SR = 48000
B = 64
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "patches", "io-midi-synth.yaml")

SYNTH = """\
sample_rate: 48000
voices:
  v:
    nodes:
      env:  {type: adsr, attack: 1ms, decay: 10ms, sustain: 1.0, release: 20ms}
      osc:  {type: sine, freq: pitch}
      saw:  {type: saw, freq: pitch}
      filt: {type: lowpass, in: saw, cutoff: {midi_cc: 74, range: [200, 8000], value: 1kHz}}
      both: {type: mix, in: [osc, filt], gains: [1, {midi_cc: 1, range: [0, 1], value: 0}]}
      amp:  {type: gain, in: both, gain: {from: env, scale: 0.5}}
    out: amp
nodes:
  keys: {type: poly, voice: v, voices: 4}
  vol:  {type: gain, in: keys, gain: {midi_cc: 7, channel: 2, range: [0, 1], value: 1}}
out: vol
"""


def player(text=SYNTH, seconds=1.0):
    spec = load_patch(text)
    return Player(make_engine(spec, block_size=B), "null", clock=ManualClock(), record_seconds=seconds)


def play(p, seconds):
    before = p.frames_played
    p.backend.run_blocks(int(math.ceil(seconds * SR / B)))
    return p.backend.recording()[0, before - p.frames_played:] if p.frames_played > before else None


def on(note, velocity=100, channel=0):
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def cc(control, value, channel=0):
    return mido.Message("control_change", control=control, value=value, channel=channel)


# ---------------------------------------------------------------- notes
@pytest.mark.parametrize("note", [57, 69, 76])
def test_note_on_sounds_at_the_note_pitch_and_note_off_releases(note):
    p = player()
    m = MidiInput(p)
    assert m.voices == ["keys"]
    assert rms(play(p, 0.05)) == 0.0
    m.handle(on(note, 127))
    y = play(p, 0.3)
    f = zero_crossing_freq(y[SR // 20:])
    assert f == pytest.approx(note_hz(note), rel=2e-3)
    assert note_hz(69) == 440.0
    m.handle(on(note, 0))  # velocity 0: a note off (running status)
    play(p, 0.1)  # 20 ms release
    assert rms(play(p, 0.05)) < 1e-4
    s = m.stats()
    assert (s["received"], s["notes"], s["note_offs"], s["applied"], s["errors_total"]) == (2, 1, 1, 2, 0)


def test_velocity_scales_the_voice_and_chords_take_several_voices():
    p = player()
    m = MidiInput(p)
    m.handle(on(69, 127))
    loud = rms(play(p, 0.2)[SR // 20:])
    m.handle(mido.Message("note_off", note=69))
    play(p, 0.1)
    m.handle(on(69, 32))
    soft = rms(play(p, 0.2)[SR // 20:])
    assert soft / loud == pytest.approx(32 / 127, rel=0.02)
    m.handle(mido.Message("note_off", note=69))
    for n in (60, 64, 67):
        m.handle(on(n, 100))
    play(p, 0.05)
    alloc = p.engine._allocators["keys"]
    held = sorted(round(v.pitch, 3) for v in alloc.voices if v.held)
    assert held == sorted(round(note_hz(n), 3) for n in (60, 64, 67))
    m.handle(bytes([0x80, 64, 0]))  # raw bytes: note off E4 only
    play(p, 0.01)
    assert sorted(round(v.pitch, 3) for v in alloc.voices if v.held) == [round(note_hz(60), 3), round(note_hz(67), 3)]


def test_sustain_pedal_holds_note_offs_and_all_notes_off_releases():
    p = player()
    m = MidiInput(p)
    alloc = p.engine._allocators["keys"]
    m.handle(cc(64, 127))
    m.handle(on(60))
    m.handle(mido.Message("note_off", note=60))
    play(p, 0.05)
    assert sum(v.held for v in alloc.voices) == 1  # the pedal holds it
    m.handle(cc(64, 0))
    play(p, 0.01)
    assert sum(v.held for v in alloc.voices) == 0
    m.handle(on(60))
    m.handle(on(67))
    play(p, 0.01)
    m.handle(cc(123, 0))  # all notes off
    play(p, 0.01)
    assert sum(v.held for v in alloc.voices) == 0
    m.handle(cc(64, 100))
    m.handle(on(62))
    m.handle(mido.Message("note_off", note=62))
    play(p, 0.01)
    assert sum(v.held for v in alloc.voices) == 1
    m.close()  # closing the input lets go of what the pedal held
    play(p, 0.01)
    assert sum(v.held for v in alloc.voices) == 0


# ---------------------------------------------------------------- controllers
def test_cc_sets_every_voice_copy_through_the_smoothed_event_path():
    p = player()
    m = MidiInput(p)
    cut = [p.engine.params[f"keys/{i}/filt"]["cutoff"] for i in range(4)]
    assert [c.value for c in cut] == [1000.0] * 4  # the binding's initial value
    assert len([b for b in m.bindings if b.cc == 74]) == 4
    m.handle(cc(74, 127))
    play(p, B / SR)  # one block: 64 samples of a 5 ms (240-sample) glide
    assert 1000.0 < cut[0].value < 8000.0
    play(p, 0.02)
    assert [c.value for c in cut] == pytest.approx([8000.0] * 4)
    for value in (0, 64, 100):
        m.handle(cc(74, value))
        play(p, 0.02)
        want = 200.0 * 40.0 ** (value / 127)  # exponential: equal ratios per step
        assert cut[2].value == pytest.approx(want, rel=1e-5)
    m.handle(cc(1, 127))  # a linear binding: the saw's level
    play(p, 0.03)
    assert p.engine.params["keys/0/both"]["gain1"].value == pytest.approx(1.0)
    m.handle(cc(1, 32))
    play(p, 0.03)
    assert p.engine.params["keys/3/both"]["gain1"].value == pytest.approx(32 / 127, rel=1e-5)
    assert m.stats()["applied"] == 4 * 6


def test_cutoff_cc_changes_the_measured_brightness():
    def high_share(value):
        p = player()
        m = MidiInput(p)
        m.handle(cc(1, 127))  # the filtered saw in
        m.handle(cc(74, value))
        m.handle(on(45, 127))  # 110 Hz
        y = play(p, 0.3)[SR // 10:].astype(np.float64)
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
        freqs = np.fft.rfftfreq(len(y), 1 / SR)
        return spec[freqs > 2000].sum() / spec[freqs < 150].sum()  # harmonics over the fundamental

    dark, bright = high_share(0), high_share(127)
    assert bright > 1000 * dark


def test_channels_filter_notes_and_bindings():
    p = player()
    m = MidiInput(p, channel=3)
    m.handle(on(69, channel=0))
    m.handle(on(69, channel=2))  # MIDI channel 3 is 2 on the wire
    play(p, 0.02)
    alloc = p.engine._allocators["keys"]
    assert sum(v.held for v in alloc.voices) == 1
    assert m.stats()["ignored_by"] == {"channel": 1}
    # the volume binding names channel 2: other channels do not move it
    m2 = MidiInput(p)
    vol = p.engine.params["vol"]["gain"]
    m2.handle(cc(7, 0, channel=0))
    play(p, 0.03)
    assert vol.value == 1.0
    assert m2.stats()["ignored_by"] == {"unbound_cc": 1}
    m2.handle(cc(7, 0, channel=1))
    play(p, 0.03)
    assert vol.value == 0.0


def test_notes_go_to_the_poly_named_by_the_patch_or_notes_to():
    text = """\
    midi: {notes: bass, channel: 1}
    voices:
      v:
        nodes: {osc: {type: sine, freq: pitch}, env: {type: adsr, attack: 1ms}, amp: {type: gain, in: osc, gain: env}}
        out: amp
    nodes:
      keys: {type: poly, voice: v, voices: 2}
      bass: {type: poly, voice: v, voices: 2}
      both: {type: mix, in: [keys, bass]}
    out: both
    """
    import textwrap

    text = textwrap.dedent(text)
    p = player(text)
    m = MidiInput(p)
    assert m.voices == ["bass"]
    m.handle(on(40))
    m.handle(on(41, channel=1))  # channel 2: not the patch's channel
    play(p, 0.01)
    held = {k: sum(v.held for v in a.voices) for k, a in p.engine._allocators.items()}
    assert held == {"keys": 0, "bass": 1}
    m2 = MidiInput(p, notes_to=["keys", "bass"], channel=2)
    m2.handle(on(41, channel=1))
    play(p, 0.01)
    held = {k: sum(v.held for v in a.voices) for k, a in p.engine._allocators.items()}
    assert held == {"keys": 1, "bass": 2}
    with pytest.raises(ValueError, match="'lead' is not a poly node"):
        MidiInput(p, notes_to="lead")
    with pytest.raises(ValueError, match="channel"):
        MidiInput(p, channel=17)


def test_patch_without_voices_counts_notes_as_ignored():
    p = player("nodes:\n  osc: {type: sine, freq: {midi_cc: 20, range: [100, 1000]}}\nout: osc\n")
    m = MidiInput(p)
    assert p.engine.params["osc"]["freq"].value == 440.0  # the default, inside the range
    m.handle(on(60))
    m.handle(cc(20, 127))
    play(p, 0.05)
    assert p.engine.params["osc"]["freq"].value == pytest.approx(1000.0)
    assert m.stats()["ignored_by"] == {"no_voice": 1}


# ---------------------------------------------------------------- robustness
def test_malformed_and_unknown_messages_are_counted_never_raised():
    p = player()
    m = MidiInput(p)
    bad = [b"", bytes([0x90, 60]), [0x90, 200, 1], [0x90, 60, -1], bytes([0x45, 0x10]), [True, 1, 2],
           "note_on", None, 3.5, mido.MetaMessage("set_tempo", tempo=500000)]
    for x in bad:
        m.handle(x)
    s = m.stats()
    assert s["errors"] == {"malformed": 6, "bad_message": 4}
    for x in (mido.Message("clock"), mido.Message("sysex", data=[1, 2, 3]), mido.Message("pitchwheel", pitch=100),
              mido.Message("aftertouch", value=3), mido.Message("program_change", program=5), cc(30, 1)):
        m(x)  # a MidiInput is itself a mido callback
    s = m.stats()
    assert s["ignored_by"] == {"type": 5, "unbound_cc": 1}
    rng = np.random.default_rng(1)
    for _ in range(2000):  # random byte strings: whatever parses is applied, the rest is counted
        m.handle(bytes(rng.integers(0, 256, size=int(rng.integers(1, 5)))))
    play(p, 0.05)
    s = m.stats()
    assert s["received"] == len(bad) + 6 + 2000
    assert s["errors_total"] >= 10 and set(s["errors"]) <= {"malformed", "bad_message", "out_of_range"}
    assert p.stats()["errors"] == 0
    assert np.isfinite(p.backend.recording()).all()


def test_a_swapped_in_patch_gets_its_own_bindings():
    p = player()
    m = MidiInput(p)
    new = make_engine(load_patch("nodes:\n  o: {type: sine, freq: {midi_cc: 74, range: [100, 200]}}\nout: o\n"),
                      block_size=B)
    p.swap(new, crossfade_s=0.001)
    play(p, 0.01)
    m.handle(cc(74, 127))
    m.handle(on(60))  # no poly any more
    play(p, 0.03)
    assert p.engine is new and new.params["o"]["freq"].value == pytest.approx(200.0)
    assert m.stats()["ignored_by"] == {"no_voice": 1}


def test_latency_places_notes_at_their_arrival_time():
    text = "voices:\n  v: {nodes: {env: {type: adsr, attack: 0, sustain: 1}}, out: env}\n" \
           "nodes:\n  keys: {type: poly, voice: v, voices: 4}\nout: keys\n"
    p = player(text)
    m = MidiInput(p, latency=0.01)
    play(p, 0.02)
    t0 = p.clock()
    m.handle(on(60))
    want = p.frame_at(t0 + 0.01)
    p.clock.advance(0.0003)  # 14.4 samples later, in the same block
    m.handle(on(64))
    want2 = p.frame_at(t0 + 0.0103)
    assert want > p.next_frame
    start = p.frames_played
    play(p, 0.05)
    y = p.backend.recording()[0, start - p.frames_played:]
    onsets = np.flatnonzero(np.diff((y > 0.5).astype(int) + (y > 1.5).astype(int)) > 0) + 1 + start
    assert list(onsets) == [want, want2]


# ---------------------------------------------------------------- the patch syntax
def test_binding_parses_with_units_curves_and_defaults():
    spec = load_patch("""\
nodes:
  osc:  {type: saw, freq: 110}
  filt: {type: lowpass, in: osc, cutoff: {midi_cc: 74, range: [200Hz, 8kHz], channel: 16},
         q: {midi_cc: 71, range: [0.5, 4], curve: lin, value: 1}}
out: filt
""")
    b = {x.param: x for x in spec.midi_bindings}
    assert (b["cutoff"].cc, b["cutoff"].range, b["cutoff"].curve, b["cutoff"].channel) == (74, (200.0, 8000.0),
                                                                                          "exp", 16)
    assert b["cutoff"].value == 1000.0 and b["cutoff"].line == 3  # the param's default
    assert (b["q"].curve, b["q"].value) == ("lin", 1.0)
    assert b["q"].map(0) == 0.5 and b["q"].map(127) == 4.0
    assert spec.nodes["filt"].params["q"].kind == "const" and spec.nodes["filt"].params["q"].value == 1.0
    low = load_patch("nodes:\n  o: {type: sine, freq: {midi_cc: 1, range: [2kHz, 1kHz]}}\nout: o\n")
    b = low.midi_bindings[0]
    assert (b.value, b.map(0), b.map(127)) == (1000.0, 2000.0, 1000.0)  # default 440 kept inside; downwards


@pytest.mark.parametrize("setting, line, words", [
    ("{midi_cc: 200, range: [200, 8000]}", 4, "midi_cc must be a controller number from 0 to 127, got 200"),
    ("{midi_cc: 7.5}", 4, "midi_cc must be a controller number"),
    ("{midi_cc: 74, range: [5, 30000]}", 4, "range of 'cutoff': 5 Hz is out of range [10, 24000] Hz"),
    ("{midi_cc: 74, range: [200]}", 4, "range is a list of two values"),
    ("{midi_cc: 74, channel: 17}", 4, "channel of 'cutoff' must be a MIDI channel from 1 to 16, got 17"),
    ("{midi_cc: 74, chanel: 2}", 4, "unknown key 'chanel'"),
    ("{midi_cc: 74, from: osc}", 4, "unknown key 'from'"),
    ("{midi_cc: 74, value: 30kHz}", 4, "value of 'cutoff' = 30000 Hz is out of range"),
    ("{midi_cc: 74, range: [200, 8000], curve: log}", 4, "curve must be 'lin' or 'exp'"),
    ("\n    {midi_cc: -1}", 5, "midi_cc must be a controller number from 0 to 127, got -1"),
])
def test_binding_errors_name_file_and_line(tmp_path, setting, line, words):
    path = write_patch(tmp_path, f"""\
        nodes:
          osc:  {{type: saw, freq: 110}}
          filt:
            {{type: lowpass, in: osc, cutoff: {setting}}}
        out: filt
        """)
    with pytest.raises(PatchError) as e:
        load_patch(path)
    text = str(e.value)
    assert f"patch.yaml:{line}" in text and "node 'filt'" in text and words in text


def test_midi_top_level_errors(tmp_path):
    path = write_patch(tmp_path, """\
        nodes:
          osc: {type: sine}
        out: osc
        midi: {notes: osc, chanel: 2}
        """)
    with pytest.raises(PatchError, match=r"patch.yaml:4.*unknown key 'chanel' in 'midi'"):
        load_patch(path)
    path = write_patch(tmp_path, "nodes:\n  osc: {type: sine}\nout: osc\nmidi:\n  notes: osc\n")
    with pytest.raises(PatchError, match=r"patch.yaml:5.*'osc' is not one \(poly nodes: none"):
        load_patch(path)


def test_the_example_patch_renders_offline_holding_its_initial_values():
    spec = load_patch(EXAMPLE)
    ccs = sorted({b.cc for b in spec.midi_bindings})
    assert ccs == [7, 71, 74, 91] and spec.midi == {"notes": ["keys"]}
    eng = make_engine(spec, block_size=256)
    y = eng.render(SR)
    assert 0.01 < np.abs(y).max() < 1.0
    assert eng.params["keys/5/filt"]["cutoff"].value == 1800.0


# ---------------------------------------------------------------- ports
def test_ports_that_cannot_open_give_a_clear_error():
    names, reason = list_ports()
    assert isinstance(names, list) and (reason is None or not names)
    p = player()
    m = MidiInput(p, port="no such keyboard 12345")
    with pytest.raises(MidiError, match="no such keyboard 12345") as e:
        m.open()
    if reason:
        assert reason in str(e.value)
    else:
        assert "available MIDI inputs" in str(e.value)
    assert not m.is_open
    m.close()  # harmless


def test_virtual_port_delivers_messages_when_the_system_has_one():
    import time

    p = player()
    try:
        m = MidiInput(p, port="patchlib-test-in", virtual=True).open()
    except MidiError as e:
        assert "virtual MIDI input 'patchlib-test-in'" in str(e)
        pytest.skip(f"no virtual MIDI ports here: {e}")
    try:
        with mido.open_output("patchlib-test-in") as out:
            out.send(cc(74, 127))
            out.send(on(69))
            t_end = time.monotonic() + 2.0
            while m.stats()["received"] < 2 and time.monotonic() < t_end:
                time.sleep(0.01)
    finally:
        m.close()
    play(p, 0.05)
    assert m.stats()["received"] == 2
    assert p.engine.params["keys/0/filt"]["cutoff"].value == pytest.approx(8000.0)


def test_port_choice_and_callback_wiring_with_a_fake_backend(monkeypatch):
    names = ["Midi Through:Midi Through Port-0 14:0", "Launchkey MK3:Launchkey MK3 MIDI 1 20:0",
             "Launchkey MK3:Launchkey MK3 DAW 20:1"]
    opened = []

    class FakePort:
        def __init__(self, name, callback):
            self.name, self.callback, self.closed = name, callback, False

        def close(self):
            self.closed = True

    def open_input(name=None, virtual=False, callback=None):
        if name == names[2]:
            raise SystemError("MidiInAlsa::openPort: error connecting port")
        opened.append(FakePort(name, callback))
        return opened[-1]

    monkeypatch.setattr(mido, "get_input_names", lambda: list(names))
    monkeypatch.setattr(mido, "open_input", open_input)
    assert list_ports() == (names, None)
    p = player()
    with MidiInput(p, port="launchkey mk3 midi") as m:  # part of a name, any case
        assert m.is_open and m.stats()["port"] == names[1]
        opened[-1].callback(cc(74, 127))  # what mido's callback thread does
        opened[-1].callback(on(69))
    assert opened[-1].closed and not m.is_open
    play(p, 0.05)
    assert p.engine.params["keys/0/filt"]["cutoff"].value == pytest.approx(8000.0)
    assert MidiInput(p).open().stats()["port"] == names[0]  # no name: the first input
    with pytest.raises(MidiError, match="'Launchkey' is ambiguous: it matches 'Launchkey MK3:Launchkey MK3 MIDI"):
        MidiInput(p, port="Launchkey").open()
    with pytest.raises(MidiError, match="no MIDI input 'Korg'; available MIDI inputs: 'Midi Through"):
        MidiInput(p, port="Korg").open()
    with pytest.raises(MidiError, match="cannot open MIDI input 'Launchkey MK3:Launchkey MK3 DAW 20:1': "
                                        "MidiInAlsa::openPort: error connecting port; available MIDI inputs"):
        MidiInput(p, port="DAW").open()
    monkeypatch.setattr(mido, "get_input_names", lambda: [])
    with pytest.raises(MidiError, match="no MIDI inputs on this machine"):
        MidiInput(p).open()


def _cli_has_midi():
    from patchlib.cli import build_parser

    return hasattr(build_parser().parse_args(["play", "x.yaml"]), "midi_channel")


@pytest.mark.skipif(not _cli_has_midi(), reason="patchlib play --midi is not wired yet")
def test_play_command_opens_midi(tmp_path, capsys, monkeypatch):
    from patchlib.cli import main

    class FakePort:
        name = "Fake Keys MIDI 1"

        def close(self):
            pass

    def open_input(name=None, virtual=False, callback=None):
        callback(on(60))
        callback(cc(74, 0))
        return FakePort()

    monkeypatch.setattr(mido, "get_input_names", lambda: [FakePort.name])
    monkeypatch.setattr(mido, "open_input", open_input)
    args = ["play", EXAMPLE, "--backend", "null", "--seconds", "0.1"]
    assert main(args + ["--midi", "fake keys"]) == 0
    out = capsys.readouterr().out
    assert "MIDI in: Fake Keys MIDI 1; notes to keys; CC 7, 71, 74, 91" in out
    assert "midi: 2 message(s) received (1 note(s), 1 control(s)), 13 event(s) applied" in out
    assert main(args + ["--midi", "Korg"]) == 1
    assert "no MIDI input 'Korg'; available MIDI inputs: 'Fake Keys MIDI 1'" in capsys.readouterr().err
    assert main(args + ["--midi", "--midi-channel", "17"]) == 1
    assert "channel must be 1..16" in capsys.readouterr().err
