"""Real-time playback (patchlib.realtime): the null backend against offline renders, underruns
on a manual clock, the frame/time clock, events from other threads, engine swaps with a
crossfade, live input, the ``play`` command, and pyo's server in offline mode."""
from __future__ import annotations

import gc
import sys
import threading
import time
import types
import weakref

import numpy as np
import pytest

from patchlib import load_patch
from patchlib.cli import main
from patchlib.patch import Event
from patchlib.realtime import ManualClock, Player, make_engine

SR = 48000
B = 64


def sine_patch(freq=440.0, **extra):
    return load_patch({"sample_rate": SR, "nodes": {"osc": {"type": "sine", "freq": freq}}, "out": "osc", **extra})


def pluck_patch():
    """A triggered envelope on a saw, with a score event and a stereo output: events matter."""
    return load_patch({
        "sample_rate": SR,
        "nodes": {"osc": {"type": "saw", "freq": 220},
                  "env": {"type": "ar", "attack": "1ms", "release": "30ms"},
                  "amp": {"type": "gain", "in": "osc", "gain": "env"}},
        "out": {"left": "amp", "right": "osc"},
        "score": [{"at": 0.01, "trigger": "env"}],
    })


def manual_player(spec_or_engine, seconds=1.0, **kw):
    eng = spec_or_engine if hasattr(spec_or_engine, "process") else make_engine(spec_or_engine, block_size=B)
    return Player(eng, "null", clock=ManualClock(), record_seconds=seconds, **kw)


def max_step(x):
    return float(np.abs(np.diff(x, axis=-1)).max())


# ---------------------------------------------------------------- null backend
def test_null_backend_plays_the_offline_render_sample_for_sample():
    p = manual_player(pluck_patch())
    p.backend.run_blocks(150)
    got = p.backend.recording()
    ref = make_engine(pluck_patch(), block_size=B).render(150 * B)
    assert got.shape == ref.shape == (2, 150 * B)
    assert np.array_equal(got, ref)
    s = p.stats()
    assert (s["blocks"], s["frames"], s["underruns"], s["errors"]) == (150, 150 * B, 0, 0)


def test_null_backend_thread_in_real_time_matches_offline():
    spec = pluck_patch()
    with Player(make_engine(spec, block_size=B), "null", record_seconds=2.0) as p:
        t_end = time.monotonic() + 5.0
        while p.blocks_played < 40 and time.monotonic() < t_end:
            time.sleep(0.01)
    n = p.frames_played
    assert n >= 40 * B
    # elapsed real time paces the blocks: 40 blocks of 1.33 ms take at least ~50 ms
    got = p.backend.recording()
    assert np.array_equal(got, make_engine(spec, block_size=B).render(n))
    assert p.stats()["compute_max_s"] > 0


def slowed(engine, clock, seconds_per_block):
    """Make ``engine.process`` take ``seconds_per_block(k)`` on the manual clock for block k."""
    orig = engine.process
    count = [0]

    def process(n=None):
        clock.advance(seconds_per_block(count[0]))
        count[0] += 1
        return orig(n)

    engine.process = process
    return engine


def test_underruns_counted_when_blocks_are_late_and_not_otherwise():
    P = B / SR
    clock = ManualClock(100.0)
    eng = slowed(make_engine(sine_patch(), block_size=B), clock, lambda k: 2.5 * P if k in (3, 7, 8) else 0.6 * P)
    p = Player(eng, "null", clock=clock, record_seconds=0.5)
    p.backend.run_blocks(20)
    assert p.underruns == 3
    assert p.stats()["compute_max_s"] == pytest.approx(2.5 * P)
    assert p.stats()["compute_mean_s"] == pytest.approx((3 * 2.5 + 17 * 0.6) * P / 20)
    # the schedule slipped by the lateness of each late block, as a device's would
    assert clock() == pytest.approx(100.0 + 19 * P + 3 * 1.5 * P + 0.6 * P)

    clock2 = ManualClock(100.0)
    eng2 = slowed(make_engine(sine_patch(), block_size=B), clock2, lambda k: 0.95 * P)
    p2 = Player(eng2, "null", clock=clock2)
    p2.backend.run_blocks(50)
    assert p2.underruns == 0 and p2.blocks_played == 50
    assert clock2() == pytest.approx(100.0 + 49 * P + 0.95 * P)  # paced, not free-running


def test_clock_maps_time_and_frames_both_ways():
    P = B / SR
    clock = ManualClock(5.0)
    p = Player(make_engine(sine_patch(), block_size=B), "null", clock=clock)
    p.backend.run_blocks(10)
    # block k renders in [t0 + kP, t0 + (k+1)P] and sounds from t0 + (k+1)P
    assert p.time_of(0) == pytest.approx(5.0 + P)
    assert p.frame_at(5.0 + P + 0.5) == 24000
    for f in (0, 1, 63, 64, 12345, 10 ** 8):
        assert p.frame_at(p.time_of(f)) == f
    for t in (5.0, 6.123456, 1000.0):
        assert abs(p.time_of(p.frame_at(t)) - t) <= 0.5 / SR + 1e-9
    # what sounds now was rendered already: 'now' is behind the next block to render
    assert p.frame_at(clock()) < p.next_frame
    assert p.next_frame - p.frame_at(clock()) <= 2 * B


def test_events_from_another_thread_land_on_their_frame():
    spec = pluck_patch()
    p = Player(make_engine(spec, block_size=B), "null", record_seconds=2.0)
    frames = []
    with p:
        def control():
            while p.frames_played < 5 * B:
                time.sleep(0.001)
            for k in range(3):
                f = p.next_frame + 40 * B + 17 + 1000 * k  # ahead of the audio thread, mid-block
                p.schedule(Event(0.0, "trigger", "env", value=0.5), frame=f)
                frames.append(f)

        th = threading.Thread(target=control)
        th.start()
        th.join()
        t_end = time.monotonic() + 5.0
        while p.frames_played < frames[-1] + 4 * B and time.monotonic() < t_end:
            time.sleep(0.01)
    n = p.frames_played
    assert n >= frames[-1] + 4 * B
    ref_eng = make_engine(spec, block_size=B)
    for f in frames:
        ref_eng.schedule(Event(0.0, "trigger", "env", value=0.5), frame=f)
    assert np.array_equal(p.backend.recording(), ref_eng.render(n))
    assert p.stats()["late_events"] == 0
    with pytest.raises(ValueError, match="no node"):
        p.schedule(Event(0.0, "trigger", "nope"))


# ---------------------------------------------------------------- swap
@pytest.mark.parametrize("curve", ["linear", "power"])
def test_swap_crossfades_at_a_block_boundary_without_a_click(curve):
    old_spec, new_spec = sine_patch(440.0), sine_patch(660.0)
    old = make_engine(old_spec, block_size=B)
    p = manual_player(old)
    old_ref = weakref.ref(old)
    del old
    p.backend.run_blocks(10)
    p.swap(make_engine(new_spec, block_size=B), crossfade_s=0.02, curve=curve)
    assert p.swapping
    p.backend.run_blocks(40)
    assert not p.swapping and p.swaps == 1
    start, n = p.last_swap_frame, int(round(0.02 * SR))
    assert start == 10 * B and start % B == 0
    y = p.backend.recording()[0]
    a = make_engine(old_spec, block_size=B).render(50 * B)[0]  # the old patch, had it gone on
    b = make_engine(new_spec, block_size=B).render(50 * B - start)[0]  # the new one from the swap
    assert np.array_equal(y[:start], a[:start])
    assert np.array_equal(y[start + n:], b[n:])
    x = (np.arange(n) + 0.5) / n
    fin, fout = (x, 1 - x) if curve == "linear" else (np.sin(np.pi / 2 * x), np.cos(np.pi / 2 * x))
    np.testing.assert_allclose(y[start:start + n], fin * b[:n] + fout * a[start:start + n], atol=1e-6)
    # no click: no sample step bigger than the signals' own (the 660 Hz sine's), times the
    # crossfade's peak total gain (1 for equal gain; up to sqrt 2 for equal power)
    own = max(max_step(a), max_step(b))
    assert max_step(y) <= 1.05 * own * (fin + fout).max()
    # ... while a hard cut at the same boundary would click
    hard = np.concatenate([a[:start], b])
    assert max_step(hard) > 3 * own
    # the old engine is no longer referenced once the control thread collects it
    p.collect()
    gc.collect()
    assert old_ref() is None


def test_swap_keeps_player_frames_for_events_and_checks_the_engine():
    p = manual_player(pluck_patch())
    p.backend.run_blocks(7)
    p.swap(make_engine(pluck_patch(), block_size=B), crossfade_s=B / SR)
    p.backend.run_blocks(1)
    # an event at player frame F lands at the new engine's frame F - (swap frame)
    f = p.next_frame + 3 * B + 5
    p.schedule(Event(0.0, "release", "env"), frame=f)
    assert p.engine._inbox.get_nowait()[0] == f - 7 * B
    with pytest.raises(ValueError, match="block"):
        p.swap(make_engine(pluck_patch(), block_size=2 * B))
    with pytest.raises(ValueError, match="channels"):
        Player(make_engine(pluck_patch(), block_size=B), "null", channels=3)


def test_an_engine_error_plays_silence_and_is_counted():
    p = manual_player(sine_patch())
    p.backend.run_blocks(2)
    orig = p.engine.process
    p.engine.process = lambda n=None: 1 / 0
    p.backend.run_blocks(2)
    p.engine.process = orig
    p.backend.run_blocks(2)
    y = p.backend.recording()[0]
    assert p.errors == 2 and isinstance(p.first_error, ZeroDivisionError)
    assert not y[2 * B:4 * B].any() and y[4 * B:].any() and p.blocks_played == 6


def test_live_input_reaches_the_input_node_with_no_latency():
    spec = load_patch({"sample_rate": SR, "nodes": {"dry": {"type": "input"},
                                                    "amp": {"type": "gain", "in": "dry", "gain": 0.5}},
                       "out": "amp"})
    rng = np.random.default_rng(1)
    sig = rng.uniform(-1, 1, (1, 1000)).astype(np.float32)  # not a multiple of the block: loops mid-block
    p = Player(make_engine(spec, block_size=B), "null", clock=ManualClock(), record_seconds=1.0, input=sig)
    p.backend.run_blocks(40)
    want = np.tile(sig, (1, 3))[:, :40 * B] * np.float32(0.5)
    np.testing.assert_array_equal(p.backend.recording(), want)


# ---------------------------------------------------------------- command line
def test_play_command_null_backend(tmp_path, capsys):
    patch = tmp_path / "p.yaml"
    patch.write_text("nodes:\n  osc: {type: sine, freq: 330}\nout: osc\n")
    rec = tmp_path / "rec.wav"
    t0 = time.monotonic()
    rc = main(["play", str(patch), "--backend", "null", "--seconds", "0.3", "--block-size", "128",
               "--record", str(rec)])
    took = time.monotonic() - t0
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "underruns" in out.out and "played" in out.out and "compute mean" in out.out
    assert 0.25 < took < 10
    import soundfile as sf

    audio, sr = sf.read(rec)
    assert sr == 48000 and 0.2 * sr < len(audio) < 0.5 * sr


def test_play_command_watch_reloads_the_file(tmp_path, capsys):
    import threading

    patch = tmp_path / "p.yaml"
    patch.write_text("nodes:\n  osc: {type: sine, freq: 220}\nout: osc\n")

    def edit():
        deadline = time.monotonic() + 20
        while "watching" not in capsys.readouterr().out and time.monotonic() < deadline:
            time.sleep(0.05)  # (capsys is read here only until the player runs)
        patch.write_text("nodes:\n  osc: {type: sine, freq: 330}\nout: osc\n")
        time.sleep(0.6)
        patch.write_text("nodes:\n  osc: {type: sine, freq: 330\nout: osc\n")  # broken: line 2

    t = threading.Thread(target=edit)
    t.start()
    assert main(["play", str(patch), "--backend", "null", "--seconds", "2", "--watch"]) == 0
    t.join()
    err = capsys.readouterr().err
    assert "reloaded" in err and "kept their state" in err
    assert "p.yaml:3" in err and "starts on line 2" in err and "goes on" in err


def test_play_command_starts_the_osc_server(tmp_path, capsys, monkeypatch):
    calls = []

    class FakeOscServer:  # the interface patchlib.osc provides
        def __init__(self, player, host="127.0.0.1", port=9000):
            calls.append(("init", type(player).__name__, host, port))
            self.port = port
            self.stats = {"received": 3, "applied": 2, "errors_total": 1, "errors": {"unknown_node": 1},
                          "late": 0}

        def __enter__(self):
            calls.append(("start", None, None, None))
            return self

        def __exit__(self, *exc):
            calls.append(("stop", None, None, None))

    monkeypatch.setitem(sys.modules, "patchlib.osc", types.SimpleNamespace(OscServer=FakeOscServer))
    patch = tmp_path / "p.yaml"
    patch.write_text("nodes:\n  osc: {type: sine}\nout: osc\n")
    assert main(["play", str(patch), "--backend", "null", "--seconds", "0.1", "--osc-port", "9123"]) == 0
    assert calls == [("init", "Player", "127.0.0.1", 9123), ("start", None, None, None),
                     ("stop", None, None, None)]
    out = capsys.readouterr().out
    assert "OSC on udp://127.0.0.1:9123" in out
    assert "osc: 3 packet(s) received, 2 applied, 1 error(s) (unknown_node 1; answered with /error)" in out


# ---------------------------------------------------------------- pyo
def test_pyo_backend_offline_plays_the_engine_and_the_input(tmp_path):
    pytest.importorskip("pyo")
    import soundfile as sf

    frames = 100 * B
    spec = pluck_patch()
    out = tmp_path / "pyo.wav"
    p = Player(make_engine(spec, block_size=B), "pyo", audio="offline", record=str(out), duration=frames / SR)
    p.start()
    p.stop()
    y = sf.read(out, dtype="float32", always_2d=True)[0].T
    ref = make_engine(spec, block_size=B).render(frames)
    assert y.shape == ref.shape and p.blocks_played == 100
    # pyo's server fades its output in over its first milliseconds; from then on, the engine's samples
    skip = 8 * B
    np.testing.assert_allclose(y[:, skip:], ref[:, skip:], atol=1e-5)
    assert np.all(np.abs(y[:, :skip]) <= np.abs(ref[:, :skip]) + 1e-5)

    # live input: pyo's input (here a pyo Sine standing in for the sound card) reaches the
    # patch's input node one block late
    spec_in = load_patch({"sample_rate": SR, "nodes": {"dry": {"type": "input"}}, "out": "dry"})
    out2 = tmp_path / "pyo-in.wav"
    p = Player(make_engine(spec_in, block_size=B), "pyo", audio="offline", record=str(out2),
               duration=frames / SR, input_source=lambda pyo, c: pyo.Sine(freq=375))
    p.start()
    p.stop()
    y = sf.read(out2, dtype="float32")[0]
    n = np.arange(len(y))
    late = np.abs(y[skip:] - np.sin(2 * np.pi * 375 * (n[skip:] - B) / SR)).max()
    assert late < 1e-4


def test_the_audio_path_allocates_no_audio_buffers():
    import tracemalloc

    big = 4096  # a stereo block copy would be 32 KiB: far above Python's small-object noise
    spec = load_patch({"sample_rate": SR, "nodes": {"a": {"type": "sine", "freq": 440}},
                       "out": {"left": "a", "right": "a"}})
    p = Player(make_engine(spec, block_size=big), "null", clock=ManualClock(), record_seconds=1.0)
    p.backend.run_blocks(3)
    p.swap(make_engine(spec, block_size=big), crossfade_s=0.2)  # allocations here are the control thread's
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        p.backend.run_blocks(8)  # steady state, then a crossfade over ~2.3 blocks, then steady again
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert p.swaps == 1 and not p.swapping
    assert peak < 8 * 1024, f"{peak} bytes allocated while playing"
