"""Compile a patch into a flat plan and run it block by block.

The plan is a list of bound calls in topological order, each node's output
in a preallocated float32 buffer ``(channels, block_size)`` that its
consumers read directly: nothing is allocated per block in steady state.

Events (score, OSC, MIDI) wait in a queue with their absolute frame; the
engine splits a block exactly where an event falls, applies it, and goes
on, so an event lands on its sample whatever the block size. Because every
node and param computes sample by sample from explicit state, the split is
inaudible: block sizes 1, 64 or 8193 give the same samples.

The output guard mutes a node that produces NaN or inf, names it in a
warning, resets the nodes its garbage reached, and the sound goes on.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import _kernels as K
from .errors import PatchError, Where
from .graph import build_graph, order
from .node import Context, Node
from .params import ParamState
from .patch import Event, PatchSpec

log = logging.getLogger(__name__)


@dataclass
class EngineWarning:
    """Something the engine handled but a user should hear about (a muted node...)."""

    frame: int
    node: str
    message: str

    def __str__(self):
        return f"{self.message}"


class Engine:
    """A compiled, running patch.

    Args:
        spec: a validated :class:`PatchSpec` (see :func:`patchlib.load_patch`).
        block_size: frames per block (default: the patch's).
        sample_rate: frames per second (default: the patch's).
        audio_inputs: audio for ``input`` nodes: ``{name: array (channels, frames)}``;
            the key ``""`` is the default input (``--input`` on the command line).
        on_warning: called with each warning (NaN muting, late events...).

    Example:
        >>> from patchlib import load_patch, Engine
        >>> spec = load_patch({"nodes": {"osc": {"type": "sine", "freq": "A4"}}, "out": "osc"})
        >>> audio = Engine(spec).render(4800)
        >>> audio.shape
        (1, 4800)
    """

    def __init__(self, spec: PatchSpec, *, block_size: int | None = None, sample_rate: int | None = None,
                 audio_inputs: dict | None = None, on_warning: Callable[[EngineWarning], None] | None = None):
        self.spec = spec
        self.sample_rate = int(sample_rate or spec.sample_rate)
        self.block_size = int(block_size or spec.block_size)
        if self.block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.audio_inputs = dict(audio_inputs or {})  # input nodes cache decoded files here
        self.on_warning = on_warning
        self.warnings: list[EngineWarning] = []
        self.frame = 0
        self._seq = itertools.count()
        self._heap: list = []
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.late_events = 0
        self._compile()
        for ev in spec.score:
            self.schedule(ev)

    # ------------------------------------------------------------ compile
    def _compile(self) -> None:
        spec, B, sr = self.spec, self.block_size, self.sample_rate
        self.graph = build_graph(spec)
        self.order = order(self.graph, spec)
        self.nodes: dict[str, Node] = {}
        for name, ns in spec.nodes.items():
            node = ns.cls(name, ns.options)
            node.ports_decl = ns.ports()
            # what configure may need already (an input node's file, say)
            node.ctx = Context(
                sample_rate=float(sr), block_size=B, control_period=spec.control_period,
                seed=zlib.crc32(f"{spec.seed}:{name}".encode()), base_dir=spec.base_dir,
                audio_inputs=self.audio_inputs,
            )
            self.nodes[name] = node

        # channel counts: a pass in order; loops through delays need a second look
        out_ch: dict[tuple[str, str], int] = {}
        for _ in range(4):
            changed = False
            for name, step in self.order:
                if step == "write":
                    continue
                ns, node = spec.nodes[name], self.nodes[name]
                inputs = node.ports_decl[0]
                in_ch = {}
                for port, (src, sport) in ns.inputs.items():
                    c = out_ch.get((src, sport), 1)
                    want = inputs[port].channels
                    if want is not None and c > want:
                        raise PatchError(
                            f"type mismatch: input '{port}' takes {want} channel(s) but '{src}' gives {c}",
                            Where(spec.file, ns.input_lines.get(port, ns.line), name, port),
                            hint="mix the source down first (e.g. through a 'pan' or 'mix' node)")
                    in_ch[port] = c
                try:
                    res = node.configure(in_ch)
                except PatchError as e:
                    e.where = Where(spec.file, e.where.line or ns.line, name, e.where.key)
                    raise
                for port, c in res.items():
                    if out_ch.get((name, port)) != c:
                        out_ch[(name, port)] = int(c)
                        changed = True
                node._in_ch = in_ch
            if not changed:
                break

        self.zeros = np.zeros((1, B), dtype=np.float32)
        for name, node in self.nodes.items():
            node.out = {port: np.zeros((out_ch[(name, port)], B), dtype=np.float32)
                        for port in node.ports_decl[1]}
        self.params: dict[str, dict[str, ParamState]] = {}
        for name, ns in spec.nodes.items():
            node = self.nodes[name]
            node.inp = {}
            for port in node.ports_decl[0]:
                if port in ns.inputs:
                    src, sport = ns.inputs[port]
                    node.inp[port] = self.nodes[src].out[sport]
                else:
                    node.inp[port] = self.zeros
            states = {}
            for pname, pspec in node.ports_decl[2].items():
                setting = ns.params.get(pname)
                value = setting.value if setting is not None and setting.kind == "const" else pspec.default
                ps = ParamState(pspec, pname, value, B, sr)
                if setting is not None and setting.kind == "mod":
                    src, sport = setting.source
                    ps.connect(self.nodes[src].out[sport], setting.range, setting.curve,
                               setting.scale, setting.offset,
                               nominal=self.nodes[src].ports_decl[1][sport].range)
                ps.snapshot()
                states[pname] = ps
            self.params[name] = states
            node.par = {p: s.buf for p, s in states.items()}
            ctx = node.ctx
            ctx.in_channels = dict(node._in_ch)
            ctx.out_channels = {p: a.shape[0] for p, a in node.out.items()}
            try:
                node.prepare(ctx)
            except PatchError as e:
                e.where = Where(spec.file, e.where.line or ns.line, name, e.where.key)
                raise

        # the flat plan
        self._active: dict[str, list[ParamState]] = {n: [] for n in self.nodes}
        self.steps: list[Callable[[int, int], None]] = []
        self._step_nodes: list[str] = []
        for name, step in self.order:
            self.steps.append(self._make_step(name, step))
            self._step_nodes.append(name)
        self._refresh_active()
        self.out_node = self.nodes[spec.out]
        self.channels = self.out_node.out["out"].shape[0]
        self.out_buf = np.zeros((self.channels, B), dtype=np.float32)
        self.muted: set[str] = set()
        self._blocks_since_refresh = 0

    def _make_step(self, name: str, step: str):
        node = self.nodes[name]
        active = self._active[name]
        if step == "write":
            return node.process_write  # params were filled by the read step
        fn = node.process_read if step == "read" else node.process

        def run(n, t, active=active, fn=fn):
            for p in active:
                p.fill(n)
            fn(n, t)

        return run

    def _refresh_active(self) -> None:
        for name, states in self.params.items():
            self._active[name][:] = [s for s in states.values() if s.active]

    # ------------------------------------------------------------ events
    def schedule(self, ev: Event, frame: int | None = None) -> None:
        """Queue an event (thread-safe). Its frame defaults to ``round(ev.time * sr)``."""
        if frame is None:
            frame = int(round(ev.time * self.sample_rate))
        self._inbox.put((frame, ev))

    def _drain(self) -> None:
        while True:
            try:
                frame, ev = self._inbox.get_nowait()
            except queue.Empty:
                return
            heapq.heappush(self._heap, (frame, next(self._seq), ev))

    def _apply(self, ev: Event, frame: int) -> None:
        if ev.action == "ramp":
            ps = self.params[ev.node][ev.param]
            if ev.seconds is None:
                ps.set(ev.value)
            else:
                ps.ramp(ev.value, ev.seconds, ev.curve)
        else:
            self.nodes[ev.node].event(ev.action, ev.value)

    # ------------------------------------------------------------ running
    def process(self, nframes: int | None = None) -> np.ndarray:
        """Render the next ``nframes`` (<= block size); returns a view ``(channels, nframes)``.

        The view is overwritten by the next call: copy it to keep it.
        """
        nframes = self.block_size if nframes is None else nframes
        if not 0 < nframes <= self.block_size:
            raise ValueError(f"nframes must be 1..{self.block_size}")
        self._drain()
        heap = self._heap
        t = self.frame
        pos = 0
        steps = self.steps
        src = self.out_node.out["out"]
        out = self.out_buf
        applied = False
        while pos < nframes:
            now = t + pos
            while heap and heap[0][0] <= now:
                frame, _, ev = heapq.heappop(heap)
                if frame < now:
                    self.late_events += 1
                self._apply(ev, frame)
                applied = True
            if applied:
                self._refresh_active()
                applied = False
            n = nframes - pos
            if heap and heap[0][0] - now < n:
                n = heap[0][0] - now
            for step in steps:
                step(n, now)
            if not K.all_finite(src, n):
                self._guard(n, now)
            out[:, pos:pos + n] = src[:, :n]
            pos += n
        self.frame = t + nframes
        self._blocks_since_refresh += 1
        if self._blocks_since_refresh >= 64:  # drop params whose ramps have settled
            self._blocks_since_refresh = 0
            self._refresh_active()
        return out[:, :nframes]

    def render(self, frames: int, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Render ``frames`` frames into a new array ``(channels, frames)``."""
        result = np.empty((self.channels, frames), dtype=np.float32)
        pos = 0
        B = self.block_size
        while pos < frames:
            n = min(B, frames - pos)
            result[:, pos:pos + n] = self.process(n)
            pos += n
            if progress is not None:
                progress(n)
        return result

    def reset(self) -> None:
        """Back to frame 0: nodes reset and unmuted, params at their patch values, score re-queued."""
        for node in self.nodes.values():
            node.reset()
            for buf in node.out.values():
                buf.fill(0.0)
        for states in self.params.values():
            for ps in states.values():
                ps.restore()
        self.muted.clear()
        self.steps = [self._make_step(name, step) for name, step in self.order]
        self._refresh_active()
        self.frame = 0
        self._drain()
        self._heap.clear()
        for ev in self.spec.score:
            self.schedule(ev)

    # ------------------------------------------------------------ guard
    def _warn(self, frame: int, node: str, message: str) -> None:
        w = EngineWarning(frame, node, message)
        self.warnings.append(w)
        log.warning("%s", message)
        if self.on_warning:
            self.on_warning(w)

    def _guard(self, n: int, t: int) -> None:
        """NaN/inf reached the output: mute the node that made it, clean up after it.

        The culprit is a node with non-finite output none of whose sources
        had any. Everything downstream of it is reset, not only the nodes
        whose output is bad now: garbage can sit in a node's state (a delay
        line's memory) with its output still finite, and come out later.
        """
        import networkx as nx

        bad: set[str] = set()
        for name in self._step_nodes:
            node = self.nodes[name]
            if all(K.all_finite(buf, n) for buf in node.out.values()):
                continue
            culprit = not (set(self.graph.predecessors(name)) & bad)
            bad.add(name)
            if culprit and name not in self.muted:
                self.muted.add(name)
                self._mute(name)
                first = t + min(int(np.argmin(np.isfinite(buf[:, :n]).all(axis=0)))
                                for buf in node.out.values() if not K.all_finite(buf, n))
                self._warn(first, name, f"node '{name}' ({node.type_name}) produced NaN/inf at "
                           f"{first / self.sample_rate:.3f} s; it is muted and the sound goes on")
                for down in nx.descendants(self.graph, name) | {name}:
                    self.nodes[down].reset()
        for name in bad:
            for buf in self.nodes[name].out.values():
                K.zero_nonfinite(buf, n)

    def _mute(self, name: str) -> None:
        node = self.nodes[name]

        def silent(n, t, node=node):
            for buf in node.out.values():
                buf[:, :n] = 0.0

        for i, nm in enumerate(self._step_nodes):
            if nm == name:
                self.steps[i] = silent
