"""Wekinator's OSC protocol on real sockets: a python-osc client records, trains, runs, hears /wek/outputs."""
from __future__ import annotations

import inspect
import socket
import time

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

import patchlib
from patchlib.realtime import Player, make_engine
from patchlib.wekinator import WekinatorServer

CTRL = "/wekinator/control/"


class Listener:
    """What a synth listening for Wekinator's outputs would receive (a plain UDP socket)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def drain(self):
        self.sock.settimeout(0.0)
        try:
            while True:
                self.sock.recv(65536)
        except (BlockingIOError, socket.timeout):
            pass

    def next(self, timeout=2.0):
        self.sock.settimeout(timeout)
        m = OscMessage(self.sock.recv(65536))
        return m.address, list(m.params)

    def close(self):
        self.sock.close()


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def rig(tmp_path):
    """A patch playing in real time (null backend): a 3-input, 2-output mapper fed by OSC, its outputs
    driving a filter's cutoff and a gain; the server on a free port, outputs to a listener."""
    (tmp_path / "p.yaml").write_text(
        "sample_rate: 16000\n"
        "nodes:\n"
        "  map:  {type: mapper, inputs: 3, outputs: 2, model: knn, k: 1}\n"
        "  osc:  {type: saw, freq: 110}\n"
        "  filt: {type: lowpass, in: osc, cutoff: {from: map.out0, range: [200, 4000]}}\n"
        "  amp:  {type: gain, in: filt, gain: {from: map.out1, range: [0, 0.5]}}\n"
        "out: amp\n")
    spec = patchlib.load_patch(str(tmp_path / "p.yaml"))
    player = Player(make_engine(spec, block_size=128), "null").start()
    listener = Listener()
    server = WekinatorServer(player, "map", in_port=0, out_port=listener.port).start()
    client = SimpleUDPClient("127.0.0.1", server.port)
    yield player, server, client, listener
    server.stop()
    player.stop()
    listener.close()


def test_defaults_are_wekinators():
    sig = inspect.signature(WekinatorServer)
    assert sig.parameters["in_port"].default == 6448
    assert sig.parameters["out_host"].default == "127.0.0.1"
    assert sig.parameters["out_port"].default == 12000


def test_record_train_run_over_osc(rig):
    player, server, client, listener = rig
    core = server.core
    # values exact in float32, OSC's 'f' (so examples compare exactly)
    poses = {(0.125, 0.25, 0.375): [0.25, 0.875], (0.875, 0.125, 0.5): [0.75, 0.125],
             (0.5, 0.625, 0.25): [0.5, 0.375]}
    for x, y in poses.items():
        client.send_message(CTRL + "outputs", [float(v) for v in y])
        client.send_message(CTRL + "startRecording", [])
        for _ in range(5):
            client.send_message("/wek/inputs", [float(v) for v in x])
        client.send_message(CTRL + "stopRecording", [])
    assert wait_for(lambda: core.n_examples == 15 and not core.recording), core.n_examples
    X, Y = core.examples()
    for x, y in zip(X, Y):
        assert poses[tuple(x)] == pytest.approx(list(y))
    server.training_done.clear()
    client.send_message(CTRL + "train", [])
    assert server.training_done.wait(5.0) and core.model is not None, list(server.messages)
    client.send_message(CTRL + "startRunning", [])
    assert wait_for(lambda: core.running)
    listener.drain()
    for x, y in poses.items():
        client.send_message("/wek/inputs", [float(v) for v in x])
        address, values = listener.next()
        assert address == "/wek/outputs"
        assert values == pytest.approx(y, abs=1e-6)  # floats on the wire
    # and the sound follows: the node's outputs reach the bound params within a few blocks
    client.send_message("/wek/inputs", [0.875, 0.125, 0.5])
    node = player.engine.nodes["map"]
    assert wait_for(lambda: abs(node.out["out0"][0, -1] - 0.75) < 1e-6)
    cutoff = player.engine.params["filt"]["cutoff"]
    # (a cutoff's curve is exponential: equal ratios per step of the output)
    assert wait_for(lambda: abs(cutoff.value - 200 * (4000 / 200) ** 0.75) < 0.5), cutoff.value
    client.send_message(CTRL + "stopRunning", [])
    assert wait_for(lambda: not core.running)
    listener.drain()
    client.send_message("/wek/inputs", [0.125, 0.25, 0.375])
    with pytest.raises(socket.timeout):
        listener.next(timeout=0.3)  # not running: no outputs, as in Wekinator
    client.send_message(CTRL + "deleteAllExamples", [])
    assert wait_for(lambda: core.n_examples == 0)
    assert player.errors == 0 and player.stats()["blocks"] > 0


def test_bad_messages_are_counted_and_change_nothing(rig):
    player, server, client, listener = rig
    core = server.core
    client.send_message(CTRL + "train", [])  # no examples yet
    assert server.training_done.wait(5.0)
    assert server.stats["errors"]["no_examples"] == 1 and core.model is None
    assert any("no examples to train on" in m for m in server.messages)
    client.send_message(CTRL + "outputs", [0.5, 0.5])
    client.send_message(CTRL + "startRecording", [])
    client.send_message("/wek/inputs", [0.125, 0.25, 0.375])
    client.send_message("/wek/inputs", [0.125, 0.25])  # wrong count
    client.send_message("/wek/inputs", [0.125, float("nan"), 0.375])
    client.send_message("/wek/inputs", ["a", "b", "c"])
    client.send_message(CTRL + "outputs", [0.5, 3.0])  # out of 0..1
    client.send_message(CTRL + "bogus", [])
    client.send_message("/not/wekinator", [1.0])
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.sendto(b"/wek/inputs\x00,ff", ("127.0.0.1", server.port))  # cut packet
    raw.close()
    client.send_message(CTRL + "stopRecording", [])
    assert wait_for(lambda: not core.recording)
    errs = server.stats["errors"]
    assert wait_for(lambda: errs["bad_args"] == 4 and errs["unknown_address"] == 2 and errs["malformed"] == 1), errs
    assert any("expected 3 inputs, got 2" in m for m in server.messages)
    X, Y = core.examples()
    np.testing.assert_array_equal(X, [[0.125, 0.25, 0.375]])  # only the good frame, with the good outputs
    np.testing.assert_allclose(Y, [[0.5, 0.5]])
    blocks = player.stats()["blocks"]
    assert wait_for(lambda: player.stats()["blocks"] > blocks + 5)  # still playing
    assert player.errors == 0


def test_save_and_load_inside_the_patch_folder(rig, tmp_path):
    player, server, client, listener = rig
    core = server.core
    core.add_examples([[0, 0, 0], [1, 1, 1]], [[0.1, 0.2], [0.9, 0.8]])
    core.train()
    (tmp_path / "map-data").mkdir()
    client.send_message(CTRL + "saveModelToFile", ["../escape.json"])  # outside the folder: refused
    client.send_message(CTRL + "saveModelToFile", ["/tmp/escape.json"])  # absolute: refused
    client.send_message(CTRL + "setInputNames", ["x", "y"])  # wrong count: refused
    client.send_message(CTRL + "saveModelToFile", ["map-data/m.json"])
    assert wait_for(lambda: (tmp_path / "map-data" / "m.json").exists() and (tmp_path / "map-data" / "m.csv").exists())
    assert wait_for(lambda: server.stats["errors"]["path"] == 2 and server.stats["errors"]["bad_args"] == 1)
    assert not (tmp_path.parent / "escape.json").exists()
    core.delete_all_examples()
    core.model = None
    client.send_message(CTRL + "loadModelFromFile", ["map-data/m.json"])
    assert wait_for(lambda: core.model is not None and core.n_examples == 2)
    np.testing.assert_allclose(core.model.predict([1, 1, 1]), [0.9, 0.8])


def test_standalone_core_and_cli(tmp_path):
    import argparse

    from nodes.mapping.mapper import MapperCore
    from patchlib.wekinator import add_map_parser, add_train_parser

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (40, 2))
    Y = np.stack([0.5 + 0.2 * X[:, 0], 0.5 - 0.1 * X[:, 1]], axis=1)
    from nodes.mapping._models import save_examples

    save_examples(str(tmp_path / "ex.csv"), X, Y, ["a", "b"], ["u", "v"])
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    tsub = sub.add_parser("train").add_subparsers(dest="train_what")
    add_train_parser(tsub)
    add_map_parser(sub)
    a = parser.parse_args(["train", "mapper", str(tmp_path / "ex.csv"), "-o", str(tmp_path / "m.json"),
                           "--type", "linear"])
    assert a.handler(a) == 0 and (tmp_path / "m.json").exists()
    a = parser.parse_args(["train", "mapper", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x.json")])
    assert a.handler(a) == 2
    a = parser.parse_args(["map", "--model", str(tmp_path / "m.json"), "--in-port", "0", "--seconds", "0.2"])
    assert a.handler(a) == 0

    # a standalone mapper: Wekinator's protocol without any patch
    listener = Listener()
    core = MapperCore(2, 2, kind="linear")
    core.add_examples(X, Y)
    core.train()
    core.running = True
    with WekinatorServer(core=core, in_port=0, out_port=listener.port, patch_dir=str(tmp_path)) as server:
        client = SimpleUDPClient("127.0.0.1", server.port)
        client.send_message("/wek/inputs", [0.5, -0.5])
        address, values = listener.next()
    listener.close()
    assert address == "/wek/outputs" and values == pytest.approx([0.6, 0.55], abs=1e-6)


def _circle(n, rng, noise=0.0):
    t = np.linspace(0, 2 * np.pi, n) ** 1.1 / (2 * np.pi) ** 0.1  # a little time warping
    return np.stack([np.cos(t), np.sin(t)], axis=1) + rng.normal(0, noise, (n, 2))


def _swipe(n, rng, noise=0.0):
    return np.stack([np.linspace(-1, 1, n), np.zeros(n)], axis=1) + rng.normal(0, noise, (n, 2))


def test_whole_gestures_by_dtw_over_osc(tmp_path):
    (tmp_path / "g.yaml").write_text(
        "sample_rate: 16000\n"
        "nodes:\n"
        "  map: {type: mapper, inputs: 2, outputs: 1, model: knn, gestures: 2}\n"
        "  osc: {type: sine, freq: {from: map.gesture, range: [220, 440]}}\n"
        "out: osc\n")
    player = Player(make_engine(patchlib.load_patch(str(tmp_path / "g.yaml")), block_size=128), "null").start()
    listener = Listener()
    server = WekinatorServer(player, "map", in_port=0, out_port=listener.port).start()
    client = SimpleUDPClient("127.0.0.1", server.port)
    rng = np.random.default_rng(0)
    try:
        for k, shape in ((1, _circle(30, rng)), (2, _swipe(25, rng))):
            client.send_message(CTRL + "startDtwRecording", [k])
            for x in shape:
                client.send_message("/wek/inputs", [float(v) for v in x])
            client.send_message(CTRL + "stopDtwRecording", [])
        client.send_message(CTRL + "train", [])
        assert server.training_done.wait(5.0)
        core = server.core
        assert len(core.gestures.templates) == 2 and core.gestures.threshold > 0, list(server.messages)
        client.send_message(CTRL + "startRunning", [])
        assert wait_for(lambda: core.running)
        listener.drain()
        # a slower, noisy circle, then a faster swipe, each from rest: each recognised once
        for want, perf in ((1, _circle(40, rng, 0.05)), (2, _swipe(18, rng, 0.05))):
            for x in np.concatenate([np.zeros((5, 2)), perf, np.zeros((5, 2))]):
                client.send_message("/wek/inputs", [float(v) for v in x])
            assert listener.next() == (f"/output_{want}", [])
        node = player.engine.nodes["map"]
        assert wait_for(lambda: node.out["gesture"][0, -1] == 1.0)  # gesture 2 of 2
        for x in rng.normal(0, 0.1, (60, 2)):  # fidgeting at rest matches nothing
            client.send_message("/wek/inputs", [float(v) for v in x])
        with pytest.raises(socket.timeout):
            listener.next(timeout=0.3)
        client.send_message(CTRL + "startDtwRecording", [3])  # no gesture 3: refused
        assert wait_for(lambda: server.stats["errors"]["bad_args"] == 1)
        (tmp_path / "d").mkdir()
        client.send_message(CTRL + "saveModelToFile", ["d/g.json"])
        assert wait_for(lambda: (tmp_path / "d" / "g.gestures.json").exists())
    finally:
        server.stop()
        player.stop()
        listener.close()


def test_examples_and_model_survive_a_live_reload(rig):
    player, server, client, listener = rig
    core = server.core
    client.send_message(CTRL + "outputs", [0.25, 0.75])
    client.send_message(CTRL + "startRecording", [])
    client.send_message("/wek/inputs", [0.5, 0.5, 0.5])
    client.send_message(CTRL + "stopRecording", [])
    client.send_message(CTRL + "train", [])
    assert server.training_done.wait(5.0) and core.model is not None
    old = player.engine
    player.swap(make_engine(old.spec, block_size=128))  # a reload: a new engine, a new mapper node
    assert wait_for(lambda: player.engine is not old)
    client.send_message(CTRL + "startRunning", [])
    client.send_message("/wek/inputs", [0.5, 0.5, 0.5])
    assert listener.next()[1] == pytest.approx([0.25, 0.75])
    node = player.engine.nodes["map"]
    assert node.core is core and core.n_examples == 1  # adopted: nothing recorded was lost
    assert wait_for(lambda: abs(node.out["out1"][0, -1] - 0.75) < 1e-6)
