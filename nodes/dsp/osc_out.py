"""``osc_out``: a control signal sent to another program over OSC (visuals, a DAW, another patch).

The audio path never touches the network: ``process`` only copies the
input's value into a small preallocated ring, once per ``rate`` period, at
the exact frames ``k * round(sample_rate / rate)``. One daemon thread per
process (shared by every ``osc_out`` node, which it holds weakly) drains the
rings every few milliseconds and sends each value as an OSC message over UDP.
In real time the messages leave at the signal's pace; when a patch renders
offline (faster than real time) they leave in bursts, and if a ring of
``RING`` values fills before the thread drains it the oldest values are
dropped and counted (``dropped``), never the audio held up.
"""
from __future__ import annotations

import socket
import threading
import time
import weakref

import numpy as np

from patchlib import Input, Node, Option, Output, PatchError, Where, register

#: values a node can hold between two drains of the sender thread
RING = 1024
#: seconds between drains
POLL = 0.004


class _Sender:
    """The process's one sender thread and UDP socket, started on first use."""

    def __init__(self):
        self.nodes: weakref.WeakSet = weakref.WeakSet()
        self.lock = threading.Lock()  # guards ``nodes`` only (never taken on the audio path)
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    def add(self, node) -> None:
        with self.lock:
            self.nodes.add(node)
            if self.thread is None or not self.thread.is_alive():
                self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.thread = threading.Thread(target=self._run, name="patchlib-osc-out", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                nodes = list(self.nodes)
            for node in nodes:
                try:
                    node._drain(self.sock)
                except Exception:  # a bad destination must not stop the others; counted on the node
                    node.send_errors += 1
            del nodes
            time.sleep(POLL)


_SENDER = _Sender()


@register("osc_out")
class OscOut(Node):
    """Send a control signal over OSC: its value ``rate`` times a second to ``host:port`` (UDP).

    Each message is ``ADDRESS value`` (one float per input channel), taken at
    the frames ``k * round(sample_rate / rate)``: an envelope follower, a pitch
    tracker or an LFO drives visuals or another program. The input passes
    through to ``out`` unchanged. Sending happens on a background thread,
    never on the audio path (see the module doc).

    Example: ``tx: {type: osc_out, in: env, port: 9001, address: /env, rate: 60}``
    """

    inputs = {"in": Input("control signal to send (each channel one float argument)")}
    outputs = {"out": Output("the input, unchanged")}
    options = {
        "host": Option("127.0.0.1", kind=str, doc="where to send (an IP address or host name)"),
        "port": Option(None, kind=int, required=True, doc="UDP port of the receiver (1..65535)"),
        "address": Option(None, kind=str, doc="OSC address (default /NODE_NAME)"),
        "rate": Option(30.0, kind=float, doc="messages per second (0.1..1000)"),
    }
    contract_settings = {"port": 9}  # the discard port: the contract test's values go nowhere

    def configure(self, in_channels):
        port, rate = self.opts.get("port"), float(self.opts.get("rate", 30.0))
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise PatchError(f"port {port!r} is not a UDP port (1..65535)", Where(key="port"))
        if not 0.1 <= rate <= 1000.0:
            raise PatchError(f"rate {rate:g} is outside 0.1..1000 messages per second", Where(key="rate"))
        address = self.opts.get("address") or f"/{self.name}"
        if not address.startswith("/") or any(c in address for c in " #*,?[]{}"):
            raise PatchError(f"address {address!r} is not an OSC address (starts with /, no spaces or "
                             "pattern characters)", Where(key="address"))
        self.address = address
        return super().configure(in_channels)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.period = max(1, int(round(ctx.sample_rate / float(self.opts.get("rate", 30.0)))))
        self.dest = (str(self.opts.get("host", "127.0.0.1")), int(self.opts["port"]))
        self.ring = np.zeros((RING, self.inp_channels()), np.float64)
        self.written = 0  # values written by the audio path (only it writes this)
        self.sent = 0  # values handed to the socket (only the sender thread writes this)
        self.dropped = 0
        self.send_errors = 0
        from pythonosc.osc_message_builder import OscMessageBuilder

        self._builder = OscMessageBuilder
        _SENDER.add(self)

    def inp_channels(self) -> int:
        return int(self.ctx.in_channels.get("in", 1))

    def process(self, n, t):
        x = self.inp["in"]
        self.out["out"][:, :n] = x[:, :n]
        k = (-t) % self.period
        while k < n:
            self.ring[self.written % RING] = x[:, k]
            self.written += 1
            k += self.period

    def _drain(self, sock) -> None:
        w = self.written
        if w - self.sent > RING:  # the ring wrapped before we came: the oldest values are gone
            self.dropped += w - RING - self.sent
            self.sent = w - RING
        while self.sent < w:
            msg = self._builder(self.address)
            for v in self.ring[self.sent % RING]:
                msg.add_arg(float(v), "f")
            sock.sendto(msg.build().dgram, self.dest)
            self.sent += 1
