"""OSC server on real UDP and TCP sockets (127.0.0.1, ephemeral ports), engine blocks rendered by hand;
and on a real player in real time (latency, throughput)."""
from __future__ import annotations

import logging
import os
import random
import socket
import time

import numpy as np
import pytest
from pythonosc import slip
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.tcp_client import TCPClient

import patchlib
from conftest import rms, zero_crossing_freq
from patchlib import bench
from patchlib.osc import OscError, OscServer, match_addresses, resolve_patch_path

SR = 48000
PATCH = {"nodes": {"osc": {"type": "sine", "freq": 440}, "c": {"type": "constant", "value": 0.0},
                   "env": {"type": "adsr", "attack": 0.001, "decay": 0.05, "sustain": 0.5, "release": 0.05},
                   "mix": {"type": "mix", "in": ["osc", "c"]}},
         "out": "mix"}


class FakePlayer:
    """A player whose clock maps monotonic time t0 to engine frame 0; blocks are run by hand."""

    def __init__(self, engine):
        self.engine = engine
        self.sample_rate = engine.sample_rate
        self.t0 = time.monotonic()
        self.asked = []

    def frame_at(self, t):
        f = int(np.floor((t - self.t0) * self.sample_rate + 0.5))
        self.asked.append((t, f))
        return f


def msg(address, *args):
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


@pytest.fixture
def rig():
    engine = patchlib.Engine(patchlib.load_patch(PATCH), block_size=256)
    player = FakePlayer(engine)
    with OscServer(player, port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.bind(("127.0.0.1", 0))
        cli.settimeout(2.0)
        yield engine, player, server, cli
        cli.close()


def send(server, cli, *packets):
    for p in packets:
        cli.sendto(p, server.address)


def wait(server, key, n, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.stats[key] >= n:
            return
        time.sleep(0.002)
    raise AssertionError(f"{key} stayed at {server.stats[key]} < {n}")


def replies(cli, until="/done"):
    out = []
    while True:
        m = OscMessage(cli.recvfrom(65536)[0])
        out.append((m.address, m.params))
        if m.address in (until, "/error"):
            return out


def test_set_reaches_param_and_sound(rig):
    engine, _, server, cli = rig
    engine.render(SR // 10)
    send(server, cli, msg("/osc/freq", 880.0))
    wait(server, "applied", 1)
    engine.render(SR // 10)  # smoothing
    assert zero_crossing_freq(engine.render(SR // 2)[0]) == pytest.approx(880.0, rel=1e-3)
    send(server, cli, msg("/osc/freq", "A3"))  # a note name, as in a patch
    wait(server, "applied", 2)
    engine.render(SR // 10)
    assert zero_crossing_freq(engine.render(SR // 2)[0]) == pytest.approx(220.0, rel=1e-3)


def test_ramp_and_trigger(rig):
    engine, _, server, cli = rig
    send(server, cli, msg("/c/value/ramp", 0.5, 0.1), msg("/env/trigger", 0.8))
    wait(server, "applied", 2)
    engine.process(256)
    y = engine.render(SR // 5)[0].copy()
    c = engine.params["c"]["value"]
    assert c.value == pytest.approx(0.5)
    env = engine.nodes["env"].out["out"]
    assert env.max() == pytest.approx(0.4)  # triggered: sustain 0.5 x velocity 0.8
    send(server, cli, msg("/env/release"))
    wait(server, "applied", 3)
    engine.render(SR // 2)
    assert np.abs(engine.nodes["env"].out["out"]).max() < 1e-3
    assert np.isfinite(y).all()


def test_errors_answered_and_counted_sound_goes_on(rig):
    engine, _, server, cli = rig
    cases = [(msg("/nosuch/freq", 1.0), "unknown_node", "nosuch"),
             (msg("/osc/frq", 1.0), "unknown_param", "freq"),
             (msg("/osc/freq", 1e9), "out_of_range", "out of range"),
             (msg("/osc/freq", "loud"), "bad_args", "loud"),
             (msg("/osc/freq", 1.0, 2.0), "bad_args", "argument"),
             (msg("/osc/trigger"), "unknown_param", "takes no 'trigger'"),
             (msg("/patch/add", "x", "sine"), "not_available", "not yet available"),
             (b"/osc/freq\x00\x00\x00,f\x00\x00\x00\x00"[:-2], "malformed", "malformed")]
    for packet, kind, words in cases:
        send(server, cli, packet)
        (address, args), = replies(cli)
        assert address == "/error" and words in args[1], (kind, args)
        assert server.stats["errors"].get(kind, 0) >= 1, kind
    assert server.stats["errors_total"] == len(cases)
    y = engine.render(SR // 2)[0]
    assert zero_crossing_freq(y) == pytest.approx(440.0, rel=1e-3)


def test_a_full_inbox_is_answered_busy_and_nothing_else_is_lost(rig, monkeypatch):
    """Events wait in the engine's inbox until the audio thread's next block takes them. When it takes
    none (stopped) the inbox stops at ``Engine.inbox_limit``: the next message is answered ``busy``, the
    queued ones still land, and once a block has run the engine takes messages again. A score is not an
    inbox: a patch's score longer than the limit plays in full."""
    engine, _, server, cli = rig
    monkeypatch.setattr(engine, "inbox_limit", 3)
    for f in (300.0, 400.0, 500.0):
        send(server, cli, msg("/osc/freq", f))
    wait(server, "applied", 3)
    send(server, cli, msg("/osc/freq", 600.0))
    (address, args), = replies(cli)
    assert address == "/error" and "audio thread" in args[1] and server.stats["errors"]["busy"] == 1
    engine.render(SR // 10)
    assert engine.params["osc"]["freq"].value == pytest.approx(500.0)  # the last queued one, not the refused
    send(server, cli, msg("/osc/freq", 880.0))
    wait(server, "applied", 4)
    engine.render(SR // 10)
    assert zero_crossing_freq(engine.render(SR // 2)[0]) == pytest.approx(880.0, rel=1e-3)
    from patchlib.engine import EngineBusy
    from patchlib.patch import Event

    with pytest.raises(EngineBusy, match="at most 3"):
        for _ in range(4):
            engine.schedule(Event(0.0, "ramp", "osc", param="freq", value=100.0))
    monkeypatch.setattr(patchlib.Engine, "inbox_limit", 2)
    score = [{"at": 0.01 * k, "set": "c.value", "to": 0.1 * k} for k in range(1, 6)]
    e2 = patchlib.Engine(patchlib.load_patch(dict(PATCH, score=score)), block_size=256)
    e2.render(SR // 10)
    assert e2.params["c"]["value"].value == pytest.approx(0.5)
    # events taken but scheduled ahead are bounded too (beside the score): refused, the earlier ones play
    monkeypatch.setattr(patchlib.Engine, "inbox_limit", 100)
    monkeypatch.setattr(patchlib.Engine, "pending_limit", 3)
    e3 = patchlib.Engine(patchlib.load_patch(dict(PATCH, score=score)), block_size=256)
    t0 = e3.frame / SR
    for k in range(3):
        e3.schedule(Event(t0 + 1.0 + 0.1 * k, "ramp", "osc", param="freq", value=300.0 + 100.0 * k))
    e3.render(256)  # the audio thread takes them: 3 ahead, beside the score's 5
    with pytest.raises(EngineBusy, match="scheduled ahead"):
        e3.schedule(Event(t0 + 2.0, "ramp", "osc", param="freq", value=900.0))
    e3.render(SR * 3 // 2)
    assert e3.params["osc"]["freq"].value == pytest.approx(500.0)
    e3.schedule(Event(e3.frame / SR, "ramp", "osc", param="freq", value=700.0))  # room again
    e3.render(256)
    assert e3.params["osc"]["freq"].value == pytest.approx(700.0)


def test_queries(rig):
    engine, _, server, cli = rig
    send(server, cli, msg("/patch/nodes"))
    r = replies(cli)
    assert r[-1] == ("/done", ["/patch/nodes", len(engine.nodes)])
    assert ("/patch/node", ["osc", "sine"]) in r
    send(server, cli, msg("/patch/params", "osc"))
    r = replies(cli)
    freq = [a for ad, a in r if ad == "/patch/param" and a[1] == "freq"][0]
    assert freq[2] == pytest.approx(440.0) and freq[5] == "Hz" and freq[3] < freq[4]
    assert r[-1][0] == "/done" and r[-1][1][0] == "/patch/params"
    send(server, cli, msg("/patch/graph"))
    r = replies(cli)
    assert ("/patch/edge", ["osc", "out", "mix", "in", "input"]) in r or r[-1][1][1] >= 1


def test_bundle_lands_on_its_sample(rig):
    engine, player, server, cli = rig
    base = player.t0 + server._offset  # the wall time of engine frame 0, as the server reckons it
    for k, dt in enumerate((0.2503, 0.41)):
        b = OscBundleBuilder(base + dt)
        b.add_content(_built("/c/value/ramp", float(k + 1), 0.0))  # a jump, so its sample shows
        cli.sendto(b.build().dgram, server.address)
    wait(server, "applied", 2)
    named = [f for _, f in player.asked]
    assert [abs(f - dt * SR) < 0.002 * SR for f, dt in zip(named, (0.2503, 0.41))] == [True, True]
    y = engine.render(SR // 2)[0]
    jumps = np.flatnonzero(np.diff(y) > 0.6) + 1  # the sine moves < 0.06 per sample
    assert len(jumps) == 2
    assert np.abs(jumps - np.array(named)).max() <= 1
    assert server.stats["late"] == 0
    # the immediate timetag is applied at once; a bundle for an already rendered sample too, and counted
    for tag in (IMMEDIATELY, base + 0.01):
        b = OscBundleBuilder(tag)
        b.add_content(_built("/c/value/ramp", 0.0, 0.0))
        cli.sendto(b.build().dgram, server.address)
    wait(server, "applied", 4)
    assert server.stats["late"] == 1
    b = OscBundleBuilder(base + 3600)
    b.add_content(_built("/c/value", 0.0))
    cli.sendto(b.build().dgram, server.address)
    assert replies(cli)[-1][0] == "/error" and server.stats["errors"]["too_far_ahead"] == 1


def _built(address, *args):
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build()


def test_note_on_poly():
    patch = {"voices": {"v": {"nodes": {"env": {"type": "adsr", "attack": 0.001, "decay": 0.1, "sustain": 0.8,
                                                 "release": 0.02},
                                         "o": {"type": "sine", "freq": "pitch"},
                                         "a": {"type": "gain", "in": "o", "gain": "env"}}, "out": "a"}},
             "nodes": {"keys": {"type": "poly", "voice": "v", "voices": 4}}, "out": "keys"}
    engine = patchlib.Engine(patchlib.load_patch(patch), block_size=256)
    with OscServer(FakePlayer(engine), port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.sendto(msg("/keys/note", 330.0, 0.9), server.address)
        wait(server, "applied", 1)
        y = engine.render(SR // 2)[0]
        assert rms(y[SR // 10:]) > 0.2
        assert zero_crossing_freq(y[SR // 10:]) == pytest.approx(330.0, rel=1e-3)
        cli.sendto(msg("/keys/note", 330.0, 0), server.address)  # velocity 0: note off
        wait(server, "applied", 2)
        engine.render(SR // 4)
        assert rms(engine.render(SR // 10)[0]) < 1e-3
        cli.close()


def _random_packet(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    good = msg("/osc/freq", 440.0)
    if kind == 0:
        return good[:rng.randrange(1, len(good) - 1)]  # truncated
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    if kind == 2:
        return msg(rng.choice(["/osc/freq", "/c/value", "/env/trigger"]), rng.choice(["x", b"\x01", 1e30]))
    if kind == 3:
        return msg("/" + "".join(rng.choice("abc/") for _ in range(rng.randrange(1, 12))) + "q", 1.0)
    if kind == 4:
        return b"/osc/freq\x00\x00\x00,f\x00\x00" + os.urandom(rng.randrange(1, 4))  # cut float
    if kind == 5:
        return b"#bundle\x00" + os.urandom(rng.randrange(0, 40))
    return msg("/osc/freq", 1.0) + b"\x00" * 20000  # huge


def test_ten_thousand_bad_packets(rig):
    engine, _, server, cli = rig
    rng = random.Random(1234)
    n = 10_000
    for i in range(n):
        cli.sendto(_random_packet(rng), server.address)
        if i % 200 == 199:
            wait(server, "received", i + 1)
            engine.process(256)
    wait(server, "received", n)
    s = server.stats
    assert s["bad_packets"] == n and s["applied"] == 0
    assert s["replies"] + s["replies_suppressed"] >= 1 and s["replies_suppressed"] > 0
    cli.sendto(msg("/osc/freq", 660.0), server.address)
    wait(server, "applied", 1)
    engine.render(SR // 10)
    assert zero_crossing_freq(engine.render(SR // 2)[0]) == pytest.approx(660.0, rel=1e-3)


def test_throughput_none_lost(rig):
    engine, _, server, cli = rig
    n = 5000
    packets = [msg("/osc/freq", 200.0 + (i % 500)) for i in range(n)]
    for p in packets:
        cli.sendto(p, server.address)
    wait(server, "received", n, timeout=20)
    engine.process(256)
    s = server.stats
    assert s["applied"] == n and s["errors_total"] == 0
    assert s["kernel_drops"] in (0, -1)


def test_path_rule(tmp_path):
    base = tmp_path / "patches"
    (base / "sub").mkdir(parents=True)
    (tmp_path / "secret.yaml").write_text("x: 1")
    os.symlink(tmp_path / "secret.yaml", base / "link.yaml")
    os.symlink(tmp_path, base / "up")
    assert resolve_patch_path(str(base), "a.yaml") == str((base / "a.yaml").resolve())
    assert resolve_patch_path(str(base), "sub/../b.yml").endswith("b.yml")
    for bad in ["/etc/passwd.yaml", "../secret.yaml", "sub/../../secret.yaml", "link.yaml", "up/secret.yaml",
                "a.py", "", "~/x.yaml", "a\x00.yaml", 3]:
        with pytest.raises(OscError) as e:
            resolve_patch_path(str(base), bad)
        assert e.value.kind == "path"


def test_load_outside_folder_refused_and_edit_handler(rig, tmp_path):
    engine, _, server, cli = rig
    seen = []
    server.on_edit = lambda address, args: seen.append((address, args)) or "ok"
    server.patch_dir = str(tmp_path)
    send(server, cli, msg("/patch/load", "../../etc/passwd.yaml"))
    (address, args), = replies(cli)
    assert address == "/error" and "outside" in args[1]
    send(server, cli, msg("/patch/load", "song.yaml"))
    assert replies(cli)[-1] == ("/done", ["/patch/load", "ok"])
    assert seen == [("/patch/load", [str(tmp_path.resolve() / "song.yaml")])]


def test_with_the_real_player_a_set_sounds_within_a_block_plus_the_smoothing():
    """OSC-to-sound latency on the null backend (real time, its own thread): the first output sample that
    reflects /osc/freq 880 comes within two blocks of the frame sounding when it was sent (one of them the
    sink's own output latency), and the new pitch is there once the param's smoothing time has passed."""
    from patchlib.realtime import Player, make_engine

    spec = patchlib.load_patch({"nodes": {"osc": {"type": "sine", "freq": 440}}, "out": "osc"})
    for _attempt in range(3):  # an underrun slips the clock the measurement is made against: measure again
        engine = make_engine(spec, block_size=256)
        smooth = engine.params["osc"]["freq"].spec.smooth
        player = Player(engine, "null", record_seconds=3)
        with player, OscServer(player, port=0) as server:
            cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            time.sleep(0.2)
            t_send = player.clock()
            sent_at = player.frame_at(t_send)  # the frame sounding when the message left
            cli.sendto(msg("/osc/freq", 880.0), ("127.0.0.1", server.port))
            time.sleep(0.3)
            cli.close()
        if player.underruns == 0:
            break
    y = player.backend.recording()[0]
    assert server.stats["applied"] == 1 and player.underruns == 0
    assert abs(zero_crossing_freq(y[-4800:], SR) - 880.0) < 2.0
    # the first sample that differs from a 440 Hz sine continuing from the start
    ref = np.sin(2 * np.pi * 440.0 * np.arange(y.size) / SR).astype(np.float32)
    first = int(np.argmax(np.abs(y - ref) > 1e-3))
    # measured about 355 frames (1.4 blocks: the null sink's own block of output latency plus the wait for
    # the next block boundary); the smoothing then glides to the target within ``smooth`` seconds
    assert 0 < first and first - sent_at <= 2 * 256, (first, sent_at)
    assert abs(zero_crossing_freq(y[first + int(smooth * SR) + 256:first + int(smooth * SR) + 4096], SR) - 880) < 2


# ---------------------------------------------------------------- address patterns
VOICES = {"nodes": {"v1": {"type": "sine", "freq": 100}, "v2": {"type": "sine", "freq": 100},
                    "v3": {"type": "sine", "freq": 100}, "lfo": {"type": "sine", "freq": 1},
                    "mix": {"type": "mix", "in": ["v1", "v2", "v3"]}},
          "out": "mix"}


def test_pattern_matching_rules():
    names = ["/v1/freq", "/v2/freq", "/v12/freq", "/lfo/freq", "/v1/freq/ramp", "/keys/3/osc/freq", "/keys/12/osc/freq"]
    assert match_addresses("/v*/freq", names) == ["/v1/freq", "/v2/freq", "/v12/freq"]
    assert match_addresses("/v?/freq", names) == ["/v1/freq", "/v2/freq"]
    assert match_addresses("/v[12]/freq", names) == ["/v1/freq", "/v2/freq"]
    assert match_addresses("/v[!1]*/freq", names) == ["/v2/freq"]
    assert match_addresses("/v[0-1]*/freq", names) == ["/v1/freq", "/v12/freq"]
    assert match_addresses("/{lfo,v2}/freq", names) == ["/v2/freq", "/lfo/freq"]
    assert match_addresses("/*", names) == []  # '*' never crosses a '/'
    assert match_addresses("/keys/*/osc/freq", names) == ["/keys/3/osc/freq", "/keys/12/osc/freq"]
    assert match_addresses("/*/*/ramp", names) == ["/v1/freq/ramp"]
    for bad in ("/v[1/freq", "/v{1/freq", "/v1]/freq", "/v[]/freq", "/" + "*" * 600):
        with pytest.raises(OscError):
            match_addresses(bad, names)
    t0 = time.perf_counter()  # no backtracking blow-up on a hostile pattern
    assert match_addresses("/" + "*a" * 100 + "b", ["/" + "a" * 60] * 200) == []
    assert time.perf_counter() - t0 < 0.5


def test_patterns_set_every_match_and_refuse_no_match():
    engine = patchlib.Engine(patchlib.load_patch(VOICES), block_size=256)
    with OscServer(FakePlayer(engine), port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.settimeout(2.0)
        target = lambda n: engine.params[n]["freq"].state[3]  # noqa: E731
        send(server, cli, msg("/v*/freq", 300.0))
        wait(server, "applied", 3)
        engine.process(256)
        assert [target(n) for n in ("v1", "v2", "v3", "lfo")] == [300, 300, 300, 1]
        send(server, cli, msg("/v[12]/freq/ramp", 500.0, 0.0), msg("/{v3,lfo}/freq", 2.0))
        wait(server, "applied", 7)
        engine.process(256)
        assert [target(n) for n in ("v1", "v2", "v3", "lfo")] == [500, 500, 2, 2]
        assert server.stats["errors_total"] == 0
        send(server, cli, msg("/x*/freq", 1.0))
        (address, args), = replies(cli)
        assert address == "/error" and args[0] == "/x*/freq" and "matches" in args[1]
        send(server, cli, msg("/v[1/freq", 1.0))
        (address, args), = replies(cli)
        assert address == "/error" and "malformed address pattern" in args[1]
        send(server, cli, msg("/v?/freq", 1e9))  # each match refused and answered on its own
        got = [replies(cli)[0] for _ in range(3)]
        assert sorted(a[0] for _, a in got) == ["/v1/freq", "/v2/freq", "/v3/freq"]
        assert server.stats["errors"]["out_of_range"] == 3 and server.stats["applied"] == 7
        assert rms(engine.render(SR // 2)[0]) > 0.1  # still sounding
        cli.close()


# ---------------------------------------------------------------- notifications
def test_notify_subscribers_get_every_set_and_ramp(rig):
    engine, _, server, other = rig
    sub = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sub.bind(("127.0.0.1", 0))
    sub.settimeout(2.0)
    sub.sendto(msg("/patch/notify", 1), server.address)
    assert replies(sub) == [("/done", ["/patch/notify", 1])]
    assert server.stats["subscribers"] == 1
    send(server, other, msg("/osc/freq", 880.0))  # by another client
    assert replies(sub, until="/param") == [("/param", ["osc", "freq", 880.0])]
    send(server, other, msg("/env/trigger"), msg("/c/value/ramp", 0.5, 0.1))  # a trigger is no param change
    assert replies(sub, until="/param") == [("/param", ["c", "value", 0.5])]
    sub.sendto(msg("/osc/freq", 220.0), server.address)  # its own sets too
    assert replies(sub, until="/param") == [("/param", ["osc", "freq", 220.0])]
    send(server, other, msg("/osc/freq", 1e9))  # refused: nothing changed, nothing notified
    assert replies(other)[0][0] == "/error"
    sub.sendto(msg("/patch/notify", 0), server.address)
    assert replies(sub) == [("/done", ["/patch/notify", 0])]
    send(server, other, msg("/osc/freq", 330.0))
    wait(server, "applied", 5)
    sub.settimeout(0.3)
    with pytest.raises(socket.timeout):
        sub.recvfrom(65536)
    other.sendto(msg("/patch/notify", 2), server.address)
    (address, args), = replies(other)
    assert address == "/error" and "1 (subscribe) or 0" in args[1]
    assert server.stats["notifications"] == 3 and server.stats["subscribers"] == 0
    sub.close()


def test_notify_under_a_flood_keeps_the_last_value(rig):
    engine, _, server, cli = rig
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # room for every notification: UDP drops none
    cli.sendto(msg("/patch/notify", 1), server.address)
    assert replies(cli)[0] == ("/done", ["/patch/notify", 1])
    for i in range(3000):
        cli.sendto(msg("/osc/freq", 100.0 + i), server.address)
    wait(server, "applied", 3000)
    last, deadline = None, time.monotonic() + 5
    cli.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            m = OscMessage(cli.recvfrom(65536)[0])
        except socket.timeout:
            break
        last = m.params
    assert last == ["osc", "freq", 3099.0]
    assert 1 <= server.stats["notifications"] <= 3000


# ---------------------------------------------------------------- TCP
class SlipReader:
    """Decodes SLIP frames from a stream, keeping what follows a message for the next read."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def read(self, until="/done"):
        """Messages up to an ``until`` or /error message."""
        out = []
        while True:
            while slip.END in self.buf:
                frame, _, self.buf = self.buf.partition(slip.END)
                if frame:
                    m = OscMessage(slip.decode(slip.END + frame + slip.END))
                    out.append((m.address, m.params))
                    if m.address in (until, "/error"):
                        return out
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk


def test_tcp_slip_same_dispatch_replies_on_the_connection():
    engine = patchlib.Engine(patchlib.load_patch(PATCH), block_size=256)
    with OscServer(FakePlayer(engine), port=0, tcp_port=0) as server:
        host, port = server.tcp_address
        with TCPClient(host, port) as client:  # python-osc's own client: OSC 1.1, SLIP
            client.send(_built("/osc/freq", 880.0))
            wait(server, "applied", 1)
        engine.render(SR // 10)
        assert zero_crossing_freq(engine.render(SR // 4)[0]) == pytest.approx(880.0, rel=1e-3)
        conn = socket.create_connection((host, port), timeout=2.0)
        reader = SlipReader(conn)
        conn.sendall(slip.encode(msg("/patch/nodes")) + slip.encode(msg("/patch/notify", 1)))
        r = reader.read()
        assert r[-1] == ("/done", ["/patch/nodes", len(engine.nodes)]) and ("/patch/node", ["osc", "sine"]) in r
        assert reader.read() == [("/done", ["/patch/notify", 1])]
        # a packet split across writes, bytes that need escaping in the float, an unknown node
        data = slip.encode(msg("/c/value", float(np.frombuffer(b"\xc0\xdb\x00\x00"[::-1], "<f4")[0])))
        conn.sendall(data[:5])
        time.sleep(0.05)
        conn.sendall(data[5:])
        assert reader.read(until="/param")[-1][:1] == ("/param",)
        conn.sendall(slip.encode(msg("/nosuch/freq", 1.0)))
        assert reader.read()[-1][0] == "/error"
        # an oversized frame is dropped and counted; the stream goes on
        conn.sendall(slip.END + b"/" * 40000 + slip.END + slip.encode(msg("/osc/freq", 440.0)))
        wait(server, "applied", 3)
        assert server.stats["errors"]["oversized"] == 1 and server.stats["tcp_clients"] == 1
        conn.close()
        t_end = time.monotonic() + 2
        while server.stats["tcp_clients"] and time.monotonic() < t_end:
            time.sleep(0.01)
        assert server.stats["tcp_clients"] == 0 and server.stats["subscribers"] == 0


def test_tcp_size_framing():
    engine = patchlib.Engine(patchlib.load_patch(PATCH), block_size=256)
    with OscServer(FakePlayer(engine), port=0, tcp=True, tcp_framing="size") as server:
        assert server.tcp_address[1] == server.port  # tcp=True: the UDP port's number
        conn = socket.create_connection(server.tcp_address, timeout=2.0)
        packet = msg("/patch/params", "osc")
        conn.sendall(len(packet).to_bytes(4, "big") + packet)
        buf, got = b"", []
        while not got or got[-1][0] != "/done":
            buf += conn.recv(65536)
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                n = int.from_bytes(buf[:4], "big")
                m = OscMessage(buf[4:4 + n])
                got.append((m.address, m.params))
                buf = buf[4 + n:]
        assert got[-1][1][:2] == ["/patch/params", len(got) - 1]
        conn.sendall((10 ** 6).to_bytes(4, "big"))  # over max_packet: no way to resync, closed
        conn.settimeout(2.0)
        rest = b""
        while True:  # (an /error frame may come first)
            chunk = conn.recv(65536)
            if not chunk:
                break  # the server closed the connection
            rest += chunk
        assert server.stats["errors"]["oversized"] == 1
        conn.close()


# ---------------------------------------------------------------- logging
def test_bad_packets_never_reach_the_root_logger(rig, caplog):
    engine, _, server, cli = rig
    caplog.set_level(logging.DEBUG)
    OscMessage(b"/a\x00\x00,x\x00\x00")  # python-osc on its own warns on the root logger for this
    assert any("pythonosc" in r.pathname for r in caplog.records)
    caplog.clear()
    junk = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"\x00\x00\x00\x08" + b"junkjunk"
    packets = [b"/osc/freq\x00\x00\x00,xq\x00\x00\x00\x00\x01", junk, b"/osc/freq\x00\x00\x00,[x]\x00\x00\x00\x00"]
    for i in range(300):
        cli.sendto(packets[i % 3], server.address)
    wait(server, "received", 300)
    assert [r for r in caplog.records if "pythonosc" in r.pathname or r.name == "root"] == []
    s = server.stats
    assert s["errors"] == {"malformed": 300} and s["dropped"] == 300


# ---------------------------------------------------------------- throughput on a real player
def _throughput(seconds, attempts=3, underruns=True):
    """The run of ``bench.live_throughput``: nothing may ever be lost; an underrun fails only if every attempt
    has one (on a loaded 2-core machine the player underruns now and then with no OSC at all: measured 2 in
    10 s under a load average of 1.7; OSC that caused underruns would cause them in every attempt).

    ``underruns=False``: underruns are a timing figure (``patchlib bench`` reports them), not checked here."""
    n = int(5000 * seconds)
    runs = []
    for _ in range(attempts):
        r = bench.live_throughput(rate=5000, seconds=seconds, block_size=256)
        why = {k: r[k] for k in ("sent", "received", "applied", "underruns", "kernel_drops", "rcvbuf", "errors",
                                 "backlog", "max_lag_s", "load")}
        assert r["sent"] == r["received"] == r["applied"] == n, why
        assert r["lost"] == 0 and r["errors"] == 0 and r["kernel_drops"] in (0, -1), why
        assert r["final_ok"]  # every param's target is the last value sent to it: none lost in the engine either
        assert r["achieved_rate"] == pytest.approx(5000, rel=0.02)
        runs.append(why)
        if r["underruns"] == 0 or not underruns:
            return
    raise AssertionError(f"an underrun in each of {attempts} attempts: {runs} (load average {os.getloadavg()})")


def test_throughput_5000_per_second_for_2_s_real_player():
    """5000 param messages/s to a 20-node patch playing in real time (null backend, block 256): none lost,
    and every one applied (2 s here). Underruns are a timing figure: the issue's 10 s run, no underrun
    included, is the slow test below and a figure of ``patchlib bench`` (docs/benchmarks.md)."""
    _throughput(2.0, attempts=1, underruns=False)


@pytest.mark.slow
def test_throughput_5000_per_second_for_10_s_real_player():
    _throughput(10.0)
