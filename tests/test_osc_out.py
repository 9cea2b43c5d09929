"""``osc_out``: a control signal leaves as OSC messages at its rate, with the values at the exact frames."""
from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage

import patchlib
from patchlib import PatchError

SR = 48000


def _receiver():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.05)
    return s, s.getsockname()[1]


def _collect(sock, want, timeout=5.0):
    got = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        try:
            got.append(OscMessage(sock.recv(65536)))
        except socket.timeout:
            continue
    return got


def _patch(port, rate=100.0, address="/env", extra=None):
    nodes = {"lfo": {"type": "ramp", "start": 0.0, "end": 1.0, "time": 1.0},
             "tx": {"type": "osc_out", "in": "lfo", "port": port, "address": address, "rate": rate}}
    nodes.update(extra or {})
    return {"sample_rate": SR, "block_size": 64, "nodes": nodes, "out": "tx",
            "score": [{"at": 0.0, "trigger": "lfo"}]}


def test_values_leave_at_their_rate_taken_at_exact_frames():
    sock, port = _receiver()
    with sock:
        e = patchlib.Engine(patchlib.load_patch(_patch(port, rate=100.0)))
        y = e.render(SR // 2)[0]  # 0.5 s: 50 values at frames 0, 480, 960, ...
        msgs = _collect(sock, 50)
    assert len(msgs) == 50 and all(m.address == "/env" for m in msgs)
    got = np.array([m.params[0] for m in msgs])
    np.testing.assert_allclose(got, y[::480], atol=1e-6)  # float32 on the wire
    assert np.all(np.diff(got) > 0)  # in order
    tx = e.nodes["tx"]
    end = time.monotonic() + 5.0  # the sender counts a value just after its sendto: the 50th may arrive first
    while tx.sent < 50 and time.monotonic() < end:
        time.sleep(0.001)
    assert tx.written == tx.sent == 50 and tx.dropped == 0 and tx.send_errors == 0
    np.testing.assert_allclose(y, np.arange(y.size) / SR, atol=1e-4)  # the ramp passes through unchanged


def test_block_size_does_not_move_the_frames():
    outs = []
    for bs in (1, 7, 256):
        sock, port = _receiver()
        with sock:
            p = _patch(port, rate=250.0)
            p["block_size"] = bs
            e = patchlib.Engine(patchlib.load_patch(p))
            e.render(4800)
            outs.append([m.params[0] for m in _collect(sock, 25)])
    assert len(outs[0]) == 25 and outs[0] == outs[1] == outs[2]


def test_bad_options_are_refused_with_the_key_named():
    for opts, key in (({"port": 70000}, "port"), ({"port": 9000, "rate": 5000}, "rate"),
                      ({"port": 9000, "address": "no slash"}, "address")):
        p = {"nodes": {"s": {"type": "sine"}, "tx": {"type": "osc_out", "in": "s", **opts}}, "out": "tx"}
        with pytest.raises(PatchError) as ei:
            patchlib.Engine(patchlib.load_patch(p))
        assert ei.value.where.key == key and ei.value.where.node == "tx"
