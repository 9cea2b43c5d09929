"""Wekinator-compatible OSC for ``mapper`` nodes: sensor apps and controllers written for Wekinator work unchanged.

:class:`WekinatorServer` listens on UDP (127.0.0.1:6448 by default) and
speaks Wekinator's protocol to one ``mapper`` node of a playing patch (or
to a standalone :class:`~nodes.mapping.mapper.MapperCore`: ``patchlib map``)::

    /wek/inputs f f ...                         the sensor's N values (ints accepted too)
    /wekinator/control/outputs f ...            the M output values to record (continuous 0..1, classes 1..K)
    /wekinator/control/startRecording           every /wek/inputs frame from now on is an example
    /wekinator/control/stopRecording
    /wekinator/control/startDtwRecording i      the frames from now on are one performance of gesture i
    /wekinator/control/stopDtwRecording         (a mapper with ``gestures: K``; matched gestures send /output_i)
    /wekinator/control/train                    train on every example (a control thread; seconds at most)
    /wekinator/control/cancelTrain              stop an MLP's training: the old model stays
    /wekinator/control/startRunning             map inputs to outputs; /wek/outputs is sent for each input frame
    /wekinator/control/stopRunning
    /wekinator/control/deleteAllExamples
    /wekinator/control/setInputNames s ...      N names (column headers of the examples file)
    /wekinator/control/setOutputNames s ...     M names
    /wekinator/control/saveModelToFile [PATH]   PATH.json (the model) and PATH.csv (the examples), inside
    /wekinator/control/loadModelFromFile [PATH] the patch's folder; no PATH: the node's model_file/examples

and sends ``/wek/outputs f ...`` (M floats, Wekinator units) to
127.0.0.1:12000 while running: one message per ``/wek/inputs`` frame (the
model evaluated on the receive thread for that frame, as Wekinator does),
or, for a mapper whose inputs are patch signals, ``send_rate`` times a
second. ``save/loadModelToFile`` are patchlib's additions (Wekinator saves
projects from its GUI).

Nothing here blocks the audio thread: input values and hand-set outputs
reach the node through single-reference slots it reads at block start, a
trained model is swapped in by one assignment, training and files run on a
control thread, and ``/wek/outputs`` leave from a sender thread. A bad
message (a wrong input count, NaN, an unknown address, training with no
examples) changes nothing: it is counted in ``stats["errors"]``, kept in
``messages`` and logged (at most once a second per kind); the patch plays on.
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import socket
import sys
import textwrap
import threading
import time
from collections import deque

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from .osc import OscError, _check_bundle, _check_message, _family, _flatten, bind_udp, resolve_patch_path

log = logging.getLogger(__name__)

DEFAULT_IN_PORT = 6448
DEFAULT_OUT_HOST = "127.0.0.1"
DEFAULT_OUT_PORT = 12000
INPUTS = "/wek/inputs"
OUTPUTS = "/wek/outputs"
CONTROL = "/wekinator/control/"
ERROR_KINDS = ("malformed", "unknown_address", "bad_args", "no_examples", "train_failed", "path", "file",
               "not_available", "internal")


class WekinatorServer:
    """Wekinator's OSC protocol for a ``mapper`` node (see the module doc).

    Args:
        player: the :class:`~patchlib.realtime.Player` playing the patch (``None``
            with ``core=`` for a standalone mapper).
        node: the name of the ``mapper`` node in the patch.
        core: a :class:`~nodes.mapping.mapper.MapperCore` to serve instead of a node.
        in_port: UDP port to listen on (0: any free port, see :attr:`port`).
        host: address to bind (127.0.0.1: this machine only).
        out_host, out_port: where ``/wek/outputs`` go.
        patch_dir: the folder ``saveModelToFile``/``loadModelFromFile`` paths are
            relative to (default: the patch's folder; standalone: the working directory).
        send_rate: messages per second for a mapper fed by patch signals.

    Example:
        >>> with WekinatorServer(player, "map") as wek:   # doctest: +SKIP
        ...     time.sleep(60)   # a sensor app sends /wek/inputs to 6448, a synth listens on 12000
    """

    def __init__(self, player=None, node: str | None = None, *, core=None, in_port: int = DEFAULT_IN_PORT,
                 host: str = "127.0.0.1", out_host: str = DEFAULT_OUT_HOST, out_port: int = DEFAULT_OUT_PORT,
                 patch_dir: str | None = None, send_rate: float = 60.0, model_path: str | None = None,
                 examples_path: str | None = None):
        if (player is None) == (core is None):
            raise ValueError("give a player and a mapper node's name, or a standalone core")
        self.player, self.node_name = player, node
        self._node = None
        self._core = core
        if player is not None:
            self._find_core(strict=True)
        self.port, self.host = int(in_port), host
        self.out_addr = (out_host, int(out_port))
        self.patch_dir = patch_dir or (player.engine.spec.base_dir if player is not None else os.getcwd())
        self.send_rate = float(send_rate)
        self.model_path, self.examples_path = model_path, examples_path
        self.stats = {"received": 0, "inputs": 0, "outputs_sent": 0, "trained": 0,
                      "errors": {k: 0 for k in ERROR_KINDS}}
        self.messages: deque = deque(maxlen=100)
        self._logged_at: dict = {}
        self._jobs: queue.Queue = queue.Queue(maxsize=64)
        self._outbox = None  # latest /wek/outputs values to send (one slot: a slow sender never queues up)
        self._matches: queue.SimpleQueue = queue.SimpleQueue()  # gestures recognised, sent as /output_K
        self._wake = threading.Event()
        self._running = False
        self._sock = self._out = None
        self._threads: list = []
        self.training_done = threading.Event()  # set after each train attempt (tests wait on it)

    # ------------------------------------------------------------ the mapper
    def _find_core(self, strict: bool = False):
        """The core of the mapper node now playing (after a live edit, the new node adopts the old core)."""
        if self.player is None:
            return self._core
        from nodes.mapping.mapper import Mapper

        node = self.player.engine.nodes.get(self.node_name)
        if not isinstance(node, Mapper):
            if strict:
                names = [n for n, x in self.player.engine.nodes.items() if isinstance(x, Mapper)]
                raise ValueError(f"no mapper node '{self.node_name}' in the patch (mapper nodes: "
                                 f"{', '.join(names) or 'none'})")
            return self._core
        if node is not self._node:
            old = self._core
            if (old is not None and node.core is not old and old.n_in == node.core.n_in
                    and old.n_out == node.core.n_out and list(old.classes) == list(node.core.classes)):
                node.core = old  # examples, model and modes go on across the swap
                old.attach(node)
            self._node, self._core = node, node.core
        return self._core

    @property
    def core(self):
        return self._find_core()

    # ------------------------------------------------------------ life cycle
    def start(self) -> "WekinatorServer":
        if self._running:
            return self
        sock = bind_udp(self.host, self.port, "Wekinator server")
        self._sock, self.port = sock, sock.getsockname()[1]
        self._out = socket.socket(_family(self.out_addr[0]), socket.SOCK_DGRAM)
        self._running = True
        self._threads = [threading.Thread(target=self._recv_loop, name="wek-recv", daemon=True),
                         threading.Thread(target=self._control_loop, name="wek-control", daemon=True),
                         threading.Thread(target=self._send_loop, name="wek-send", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        core = self._core
        if core is not None:
            core.cancel_training()
        self._wake.set()
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        for t in self._threads:
            t.join(timeout=2.0)
        self._sock.close()
        self._out.close()

    def __enter__(self) -> "WekinatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ receiving
    def _recv_loop(self) -> None:
        sock = self._sock
        while self._running:
            try:
                data, addr = sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if not self._running:
                    break
                time.sleep(0.01)
                continue
            try:
                self.handle_packet(data)
            except Exception as e:  # the thread never dies
                self._error("internal", f"internal error: {type(e).__name__}: {e}")

    def handle_packet(self, data: bytes) -> None:
        """Parse one datagram and act on it (the receive thread's work; callable directly in tests)."""
        self.stats["received"] += 1
        try:
            if len(data) % 4:
                raise ValueError(f"packet of {len(data)} bytes, not a multiple of 4")
            if data.startswith(b"#bundle\x00"):
                _check_bundle(data, 0)
                items: list = []
                _flatten(OscBundle(data), items, 0)
                msgs = [m for _, m in items]
            elif data.startswith(b"/"):
                _check_message(data)
                msgs = [OscMessage(data)]
            else:
                raise ValueError("not an OSC message or bundle")
        except Exception as e:
            self._error("malformed", f"malformed packet: {e}")
            return
        for msg in msgs:
            try:
                self.handle_message(msg.address, list(msg.params))
            except OscError as e:
                self._error(e.kind, f"{msg.address}: {e.reason}")

    def handle_message(self, address: str, args: list) -> None:
        core = self._find_core()
        if address == INPUTS:
            if any(isinstance(a, (str, bytes, bool)) or a is None for a in args):
                raise OscError("bad_args", f"inputs must be numbers, got {args!r}")
            try:
                y = core.feed(args)
            except ValueError as e:
                raise OscError("bad_args", str(e)) from None
            self.stats["inputs"] += 1
            k = core.pop_match()
            if k:
                self._matches.put(k)
                self._wake.set()
            if y is not None:
                self._outbox = y
                self._wake.set()
            return
        if not address.startswith(CONTROL):
            raise OscError("unknown_address", f"unknown address (Wekinator takes {INPUTS} and {CONTROL}...)")
        cmd = address[len(CONTROL):]
        if cmd == "outputs":
            if any(isinstance(a, (str, bytes, bool)) or a is None for a in args):
                raise OscError("bad_args", f"output values must be numbers, got {args!r}")
            try:
                core.set_outputs(args)
            except ValueError as e:
                raise OscError("bad_args", str(e)) from None
        elif cmd == "startRecording":
            core.start_recording()
        elif cmd == "stopRecording":
            core.stop_recording()
        elif cmd == "startDtwRecording":
            if len(args) != 1:
                raise OscError("bad_args", "takes one gesture number")
            try:
                core.start_dtw_recording(args[0])
            except ValueError as e:
                raise OscError("bad_args", str(e)) from None
        elif cmd == "stopDtwRecording":
            try:
                n = core.stop_dtw_recording()
            except ValueError as e:
                raise OscError("bad_args", str(e)) from None
            if n:
                self._say(f"recorded a gesture of {n} frames")
        elif cmd == "startRunning":
            if core.model is None and (core.gestures is None or core.gestures.threshold is None):
                self._say(f"{address}: no trained model yet; the outputs stay as set (record, then train)")
            core.running = True
        elif cmd == "stopRunning":
            core.stop_running()
        elif cmd == "deleteAllExamples":
            core.delete_all_examples()
        elif cmd == "cancelTrain":
            core.cancel_training()
        elif cmd in ("train", "saveModelToFile", "loadModelFromFile", "setInputNames", "setOutputNames"):
            try:
                self._jobs.put_nowait((cmd, args))
            except queue.Full:
                raise OscError("not_available", "busy: too many control messages waiting") from None
        else:
            raise OscError("unknown_address", f"unknown control message '{cmd}'")

    # ------------------------------------------------------------ control thread
    def _control_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or not self._running:
                return
            cmd, args = job
            try:
                getattr(self, f"_do_{cmd}")(args)
            except OscError as e:
                self._error(e.kind, f"{CONTROL}{cmd}: {e.reason}")
            except Exception as e:
                log.exception("wekinator %s", cmd)
                self._error("internal", f"{CONTROL}{cmd}: internal error: {type(e).__name__}: {e}")

    def _do_train(self, args) -> None:
        from nodes.mapping._models import TrainingCancelled

        core = self._find_core()
        try:
            t0 = time.perf_counter()
            model = core.train()
            self.stats["trained"] += 1
            if model is not None:
                self._say(f"trained a {model.kind_name} model on {model.info.get('examples')} examples in "
                          f"{time.perf_counter() - t0:.2f} s (training RMSE {model.info.get('train_rmse', 0):.4f})")
            if core.gestures is not None and core.gestures.templates:
                self._say(f"gestures: {len(core.gestures.templates)} templates, match threshold "
                          f"{core.gestures.threshold:.4g}")
        except TrainingCancelled:
            self._say("training cancelled: the old model stays")
        except ValueError as e:
            kind = "no_examples" if "no examples" in str(e) else "train_failed"
            raise OscError(kind, str(e)) from None
        finally:
            self.training_done.set()

    def _paths(self, args, verb: str) -> tuple[str | None, str | None]:
        if len(args) > 1:
            raise OscError("bad_args", "takes one PATH (relative to the patch's folder), or none")
        if args:
            model = resolve_patch_path(self.patch_dir, args[0], suffixes=(".json",))
            return model, model[:-5] + ".csv"
        node = self._node
        model = self.model_path or getattr(node, "model_path", None)
        examples = self.examples_path or getattr(node, "examples_path", None)
        if not model and not examples:
            raise OscError("path", f"{verb}: give a PATH (the mapper has no model_file/examples option)")
        return model, examples

    def _do_saveModelToFile(self, args) -> None:
        model, examples = self._paths(args, "saveModelToFile")
        core = self._find_core()
        try:
            core.save(model, examples)
        except ValueError as e:  # no model yet: the examples were written
            raise OscError("not_available", str(e)) from None
        except OSError as e:
            raise OscError("file", f"cannot write: {e}") from None
        self._say(f"saved {core.n_examples} examples to {examples}" +
                  (f" and the model to {model}" if core.model is not None and model else ""))

    def _do_loadModelFromFile(self, args) -> None:
        model, examples = self._paths(args, "loadModelFromFile")
        core = self._find_core()
        from nodes.mapping.mapper import gestures_path

        found = [p for p in (model, examples, model and gestures_path(model)) if p and os.path.exists(p)]
        if not found:
            raise OscError("file", f"nothing to load: neither {model} nor {examples} exists")
        try:
            core.load(model, examples if examples and os.path.exists(examples) else None)
        except (OSError, ValueError) as e:
            raise OscError("file", str(e)) from None
        self._say(f"loaded {model}: {core.n_examples} examples")

    def _names(self, args, n, what) -> list:
        if len(args) != n or not all(isinstance(a, str) and a and "," not in a for a in args):
            raise OscError("bad_args", f"expected {n} {what} names (strings without commas), got {args!r}")
        if len(set(args)) != n:
            raise OscError("bad_args", f"{what} names must be unique")
        return list(args)

    def _do_setInputNames(self, args) -> None:
        core = self._find_core()
        core.input_names = self._names(args, core.n_in, "input")

    def _do_setOutputNames(self, args) -> None:
        core = self._find_core()
        core.output_names = self._names(args, core.n_out, "output")

    # ------------------------------------------------------------ sending
    def _send_loop(self) -> None:
        period = 1.0 / max(self.send_rate, 0.1)
        while self._running:
            self._wake.wait(period)
            self._wake.clear()
            if not self._running:
                return
            core = self._find_core()
            try:
                y, self._outbox = self._outbox, None
                if y is None and core.running and core.model is not None and core.signal_driven:
                    y = core.outputs_now()  # a mapper fed by signals: its outputs at send_rate
                if y is not None:
                    self._send(OUTPUTS, y)
                while True:
                    try:
                        k = self._matches.get_nowait()
                    except queue.Empty:
                        break
                    self._send(f"/output_{k}", [])  # Wekinator's DTW output: /output_1, /output_2, ...
                if core.recording:
                    core.drain()
            except Exception as e:
                self._error("internal", f"sender: {type(e).__name__}: {e}")

    def _send(self, address: str, values) -> None:
        b = OscMessageBuilder(address)
        for v in values:
            b.add_arg(float(v), "f")
        try:
            self._out.sendto(b.build().dgram, self.out_addr)
            self.stats["outputs_sent"] += 1
        except OSError as e:
            self._error("internal", f"cannot send to {self.out_addr[0]}:{self.out_addr[1]}: {e}")

    # ------------------------------------------------------------ messages
    def _say(self, text: str) -> None:
        self.messages.append(text)
        log.info("wekinator: %s", text)

    def _error(self, kind: str, text: str) -> None:
        self.stats["errors"][kind] = self.stats["errors"].get(kind, 0) + 1
        self.messages.append(f"error: {text}")
        now = time.monotonic()
        if now - self._logged_at.get(kind, -10.0) >= 1.0:  # a flood of one mistake logs once a second
            self._logged_at[kind] = now
            log.warning("wekinator: %s", text)


# ---------------------------------------------------------------- benchmark
def bench_mapper(kind: str = "mlp", n_in: int = 8, n_out: int = 8, block_size: int = 256, sample_rate: int = 48000,
                 examples: int = 200, blocks: int = 2000) -> float:
    """Milliseconds per block of one running mapper (8 inputs x 8 outputs by default, the worst case:
    inputs change at every control tick, so the model runs every ``control_period`` samples: 8 times a
    256-sample block). ``kind``: mlp (16-16 hidden), knn (k=3, ``examples`` examples), linear, poly."""
    import numpy as np

    from . import Engine, load_patch
    from nodes.mapping._models import fit

    rng = np.random.default_rng(0)
    nodes = {f"s{j}": {"type": "noise", "seed": j + 1, "color": "white"} for j in range(n_in)}
    nodes["map"] = {"type": "mapper", "inputs": n_in, "outputs": n_out, "model": "knn",
                    **{f"in{j}": f"s{j}" for j in range(n_in)}}
    eng = Engine(load_patch({"sample_rate": sample_rate, "nodes": nodes, "out": "map"}), block_size=block_size)
    node = eng.nodes["map"]
    X = rng.uniform(-1, 1, (examples, n_in))
    Y = rng.uniform(0, 1, (examples, n_out))
    node.core.install(fit(X, Y, kind=kind, k=3, degree=2, steps=40, max_seconds=2.0))
    node.core.running = True
    eng.process(block_size)
    t, times = eng.frame, []
    for _ in range(blocks):
        t0 = time.perf_counter()
        node.process(block_size, t)
        times.append(time.perf_counter() - t0)
        t += block_size
    return float(np.median(times) * 1e3)


# ---------------------------------------------------------------- command line
TRAIN_HELP = """\
Train a mapper's model from an examples CSV (a header in:NAME,...,out:NAME,... then one row per
example, as the mapper saves them) and write it as JSON. Reports the training error and, with
--holdout, the error on examples held out of training (then trains again on all of them).

examples:
  patchlib train mapper patches/map-data/sensors-pedal.csv -o patches/map-data/sensors-pedal.json
  patchlib train mapper ex.csv -o ex.json --type knn --k 3
  patchlib train mapper ex.csv -o ex.json --type mlp --hidden 32,32 --classes 0,0,3
"""

MAP_HELP = """\
Run a mapper on its own, without a patch: sensor values in as Wekinator's /wek/inputs, the mapped
values out as /wek/outputs, the whole Wekinator control protocol (record, train, run, save, load).
For people who only want the mapping (to drive another synth, visuals, a DAW).

examples:
  patchlib map --model patches/map-data/sensors-pedal.json            # run a trained model
  patchlib map --inputs 3 --outputs 5 --type knn                       # record and train over OSC
  patchlib map --examples ex.csv --type mlp --out-port 57120           # train at start, to SuperCollider
"""


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers, got {text!r}") from None


def _model_args(p) -> None:
    p.add_argument("--type", default="mlp", choices=["knn", "mlp", "linear", "poly"], help="model (default mlp)")
    p.add_argument("--k", type=int, default=1, help="neighbours of kNN and of classifiers (default 1)")
    p.add_argument("--degree", type=int, default=2, help="degree of poly (default 2)")
    p.add_argument("--hidden", type=_int_list, default=[16, 16], metavar="H,H", help="MLP hidden sizes (16,16)")
    p.add_argument("--classes", type=_int_list, metavar="K,K,...",
                   help="per output 0 (continuous) or K (a classifier of classes 1..K)")
    p.add_argument("--seed", type=int, default=0, help="MLP seed (default 0)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="longest MLP training (default 10)")


def add_train_parser(train_subparsers) -> argparse.ArgumentParser:
    """Register ``patchlib train mapper`` on the ``train`` command's subparsers; its handler is ``args.handler``."""
    p = train_subparsers.add_parser("mapper", help="a mapper's model (kNN, MLP, linear, poly) from an examples CSV",
                                    formatter_class=argparse.RawDescriptionHelpFormatter, description=TRAIN_HELP)
    p.add_argument("examples", metavar="EXAMPLES.csv")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.json", help="the model file to write")
    _model_args(p)
    p.add_argument("--holdout", type=float, default=0.2, metavar="F",
                   help="fraction held out to estimate the error on unseen examples (default 0.2; 0: none)")
    p.set_defaults(handler=cmd_train_mapper)
    return p


def add_map_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``patchlib map`` on the CLI's subparsers; its handler is ``args.handler``."""
    p = subparsers.add_parser("map", help="run a mapper standalone: Wekinator-compatible OSC in and out",
                              formatter_class=argparse.RawDescriptionHelpFormatter, description=MAP_HELP)
    p.add_argument("--model", metavar="MODEL.json", help="a trained model (sets inputs, outputs, type, classes)")
    p.add_argument("--examples", metavar="EXAMPLES.csv", help="examples to load (and train on, without --model)")
    p.add_argument("--inputs", type=int, help="input count (without --model or --examples)")
    p.add_argument("--outputs", type=int, help="output count (without --model or --examples)")
    _model_args(p)
    p.add_argument("--in-port", type=int, default=DEFAULT_IN_PORT, help=f"UDP port to listen on ({DEFAULT_IN_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--out-host", default=DEFAULT_OUT_HOST, help=f"where /wek/outputs go ({DEFAULT_OUT_HOST})")
    p.add_argument("--out-port", type=int, default=DEFAULT_OUT_PORT,
                   help=f"port /wek/outputs go to ({DEFAULT_OUT_PORT})")
    p.add_argument("--dir", default=".", help="folder for saveModelToFile/loadModelFromFile paths (default .)")
    p.add_argument("--seconds", type=float, help="stop after S seconds (default: until Ctrl-C)")
    p.set_defaults(handler=cmd_map)
    return p


def _fit_args(a) -> dict:
    return dict(kind=a.type, k=a.k, degree=a.degree, hidden=a.hidden, seed=a.seed, max_seconds=a.max_seconds)


def cmd_train_mapper(a) -> int:
    import numpy as np

    from nodes.mapping._models import fit, load_examples

    try:
        X, Y, ins, outs = load_examples(a.examples)
        classes = a.classes if a.classes is not None else [0] * Y.shape[1]
        if len(classes) != Y.shape[1]:
            raise ValueError(f"--classes: {len(classes)} values for {Y.shape[1]} outputs")
        print(f"{a.examples}: {len(X)} examples, {X.shape[1]} inputs ({', '.join(ins)}) -> {Y.shape[1]} outputs "
              f"({', '.join(outs)})")
        if a.holdout > 0 and len(X) >= 10:
            rng = np.random.default_rng(a.seed)
            idx = rng.permutation(len(X))
            nh = max(1, int(round(a.holdout * len(X))))
            held, kept = idx[:nh], idx[nh:]
            m = fit(X[kept], Y[kept], classes=classes, **_fit_args(a))
            err = m.predict(X[held]) - Y[held]
            print(f"held out {nh} examples: RMSE {float(np.sqrt(np.mean(err ** 2))):.4f}, "
                  f"largest error {float(np.abs(err).max()):.4f}")
        model = fit(X, Y, classes=classes, **_fit_args(a))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model.to_json(a.output)
    print(f"trained {a.type} in {model.info['train_seconds']:.2f} s: training RMSE {model.info['train_rmse']:.4f}; "
          f"wrote {a.output}")
    return 0


def cmd_map(a) -> int:
    from nodes.mapping._models import load_examples, load_model
    from nodes.mapping.mapper import MapperCore

    try:
        model = load_model(a.model) if a.model else None
        ex = load_examples(a.examples) if a.examples else None
        if model is not None:
            n_in, n_out, kind, classes = model.n_in, model.n_out, model.kind_name, model.classes.tolist()
        elif ex is not None:
            n_in, n_out, kind, classes = ex[0].shape[1], ex[1].shape[1], a.type, a.classes
        elif a.inputs and a.outputs:
            n_in, n_out, kind, classes = a.inputs, a.outputs, a.type, a.classes
        else:
            raise ValueError("give --model, --examples, or --inputs and --outputs")
        args = _fit_args(a)
        args.pop("kind")
        core = MapperCore(n_in, n_out, kind=kind, classes=classes, input_names=ex[2] if ex else None,
                          output_names=ex[3] if ex else None, **args)
        if ex is not None:
            core.add_examples(ex[0], ex[1])
        if model is not None:
            core.install(model)
        elif ex is not None:
            m = core.train()
            print(f"trained {kind} on {len(ex[0])} examples: training RMSE {m.info['train_rmse']:.4f}")
        core.running = core.model is not None
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = WekinatorServer(core=core, in_port=a.in_port, host=a.host, out_host=a.out_host, out_port=a.out_port,
                             patch_dir=os.path.abspath(a.dir), model_path=a.model, examples_path=a.examples)
    try:
        server.start()
    except OSError as e:
        print(f"error: cannot listen on {a.host}:{a.in_port}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(textwrap.dedent(f"""\
        mapper: {n_in} inputs -> {n_out} outputs ({kind}); {'running' if core.running else 'not running'}
        listening on {a.host}:{server.port} ({INPUTS}, {CONTROL}...); sending {OUTPUTS} to {a.out_host}:{a.out_port}
        Ctrl-C to stop"""))
    try:
        end = None if a.seconds is None else time.monotonic() + a.seconds
        while end is None or time.monotonic() < end:
            time.sleep(0.1 if end is None else max(0.0, min(0.1, end - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    s = server.stats
    errs = {k: v for k, v in s["errors"].items() if v}
    print(f"received {s['received']} packets, {s['inputs']} input frames; sent {s['outputs_sent']} outputs; "
          f"trained {s['trained']} times; errors {errs or 'none'}")
    return 0
