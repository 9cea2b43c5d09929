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

import functools
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
from .graph import build_graph, levels
from .node import Batch, Context, Node, stacked_rows
from .params import MOD, ParamState
from .patch import Event, PatchSpec

log = logging.getLogger(__name__)
#: the frame of an event to apply at the start of the next block (live input: OSC, MIDI); such an
#: event is not counted as late
ASAP = -1
_ASAP = ASAP


class EngineBusy(RuntimeError):
    """An event refused because too many wait for the audio thread already (:attr:`Engine.inbox_limit`)."""


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
        batching: run identical nodes of one level as one call (the default;
            ``False`` runs every node on its own, for comparison and debugging).

    Example:
        >>> from patchlib import load_patch, Engine
        >>> spec = load_patch({"nodes": {"osc": {"type": "sine", "freq": "A4"}}, "out": "osc"})
        >>> audio = Engine(spec).render(4800)
        >>> audio.shape
        (1, 4800)
    """

    def __init__(self, spec: PatchSpec, *, block_size: int | None = None, sample_rate: int | None = None,
                 audio_inputs: dict | None = None, on_warning: Callable[[EngineWarning], None] | None = None,
                 batching: bool = True):
        self.spec = spec
        self.sample_rate = int(sample_rate or spec.sample_rate)
        self.block_size = int(block_size or spec.block_size)
        if self.block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.audio_inputs = dict(audio_inputs or {})  # input nodes cache decoded files here
        self.on_warning = on_warning
        self.batching = batching
        self.warnings: list[EngineWarning] = []
        self.frame = 0
        self._seq = itertools.count()
        self._heap: list = []
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.late_events = 0
        self._compile()
        self._push_score()

    # ------------------------------------------------------------ compile
    def _compile(self) -> None:
        spec, B, sr = self.spec, self.block_size, self.sample_rate
        self.graph = build_graph(spec)
        self._levels = levels(self.graph, spec)
        self.order = [v for v, _ in self._levels]
        self.nodes: dict[str, Node] = {}
        for name, ns in spec.nodes.items():
            node = ns.cls(name, ns.options)
            node.ports_decl = ns.ports()
            # what configure may need already (an input node's file, say)
            node.ctx = Context(
                sample_rate=float(sr), block_size=B, control_period=spec.control_period,
                seed=zlib.crc32(f"{spec.seed}:{name}".encode()), base_dir=spec.base_dir,
                audio_inputs=self.audio_inputs, warn=functools.partial(self._warn, 0, name),
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
        self._plan_batches(out_ch)
        in_batch = {m: b for b in self.batches for m in b.names}
        for name, node in self.nodes.items():
            if name not in in_batch:
                node.out = {port: np.zeros((out_ch[(name, port)], B), dtype=np.float32)
                            for port in node.ports_decl[1]}
        for b in self.batches:  # members' buffers are rows of one array per port
            V = len(b.names)
            for port in b.nodes[0].ports_decl[1]:
                arr = np.zeros((V, out_ch[(b.names[0], port)], B), dtype=np.float32)
                b.out[port] = arr
                for i, m in enumerate(b.nodes):
                    m.out[port] = arr[i]
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
            pnames = list(node.ports_decl[2])
            if name in in_batch:
                b = in_batch[name]
                if b.parblock is None:  # (param, member, frame): each param's rows are one C-contiguous block
                    b.parblock = np.zeros((len(pnames), len(b.names), B), dtype=np.float32)
                block = b.parblock[:, b.names.index(name)]
            else:
                block = np.zeros((len(pnames), B), dtype=np.float32)  # one array: a mix reads its gains at once
            states = {}
            for j, (pname, pspec) in enumerate(node.ports_decl[2].items()):
                setting = ns.params.get(pname)
                value = setting.value if setting is not None and setting.kind == "const" else pspec.default
                ps = ParamState(pspec, pname, value, B, sr, buf=block[j])
                if setting is not None and setting.kind == "mod":
                    src, sport = setting.source
                    ps.connect(self.nodes[src].out[sport], setting.range, setting.curve,
                               setting.scale, setting.offset,
                               nominal=self.nodes[src].ports_decl[1][sport].range)
                ps.snapshot()
                states[pname] = ps
            self.params[name] = states
            node.par = {p: s.buf for p, s in states.items()}
        for name, ns in spec.nodes.items():
            node = self.nodes[name]
            ctx = node.ctx
            ctx.in_channels = dict(node._in_ch)
            ctx.out_channels = {p: a.shape[0] for p, a in node.out.items()}
            try:
                node.prepare(ctx)
            except PatchError as e:
                e.where = Where(spec.file, e.where.line or ns.line, name, e.where.key)
                raise
        for b in self.batches:
            self._bind_batch(b)

        # the flat plan: one unit per step, or per batch of identical nodes
        self._active: dict[str, list[ParamState]] = {n: [] for n in self.nodes}
        self._units: list[tuple] = []
        seen = set()
        for name, step in self.order:
            b = in_batch.get(name) if step == "process" else None
            if b is None:
                self._units.append(("one", name, step))
            elif id(b) not in seen:
                seen.add(id(b))
                self._units.append(("batch", b))
        self.muted: set[str] = set()
        self._units0 = list(self._units)
        for b in self.batches:
            b.loose0 = b.loose
        self._build_steps()
        self.out_node = self.nodes[spec.out]
        self.channels = self.out_node.out["out"].shape[0]
        self.out_buf = np.zeros((self.channels, B), dtype=np.float32)
        self._blocks_since_refresh = 0
        from .poly import VoiceAllocator

        self._allocators = {name: VoiceAllocator(info, self) for name, info in spec.polys.items()}

    def _plan_batches(self, out_ch) -> None:
        """Group identical nodes of one level (same type, key and channels) into batches."""
        spec = self.spec
        groups: dict[tuple, list[str]] = {}
        for (name, step), level in self._levels:
            if step != "process" or not self.batching:
                continue
            node = self.nodes[name]
            key = node.batch_key()
            if key is None:
                continue
            outs = tuple((p, out_ch[(name, p)]) for p in node.ports_decl[1])
            full = (level, type(node), key, tuple(sorted(node._in_ch.items())), outs)
            groups.setdefault(full, []).append(name)
        self.batches: list[_BatchPlan] = []
        row: dict[str, tuple[int, int]] = {}  # node -> (batch number, row)
        big = (1 << 30, 0)
        index = {n: i for i, n in enumerate(spec.nodes)}
        for full, names in sorted(groups.items(), key=lambda kv: kv[0][0]):
            if len(names) < 2:
                continue

            def sort_key(name):
                # follow the rows of the sources, so a batch reads its inputs
                # as one stacked view instead of gathering them
                ns = spec.nodes[name]
                srcs = [ns.inputs[p][0] for p in sorted(ns.inputs)]
                srcs += [ns.params[p].source[0] for p in sorted(ns.params) if ns.params[p].kind == "mod"]
                return tuple(row.get(s, big) for s in srcs) + ((index[name], 0),)

            names = sorted(names, key=sort_key)
            b = _BatchPlan(names, [self.nodes[n] for n in names])
            for i, n in enumerate(names):
                row[n] = (len(self.batches), i)
            self.batches.append(b)

    def _bind_batch(self, b: "_BatchPlan") -> None:
        """After prepare: stack the members' state, find or make their stacked inputs."""
        cls = type(b.nodes[0])
        bat = b.batch = Batch(b.nodes)
        bat.out = b.out
        pnames = list(b.nodes[0].ports_decl[2])
        bat.par = {p: b.parblock[j] for j, p in enumerate(pnames)}
        b.loose = False
        for attr in cls.batch_state:
            arrays = [getattr(m, attr, None) for m in b.nodes]
            if any(not isinstance(a, np.ndarray) or a.shape != arrays[0].shape or a.dtype != arrays[0].dtype
                   for a in arrays):
                b.loose = True  # unequal state: the members run one by one
                return
            stack = np.stack(arrays)
            bat.state[attr] = stack
            for i, m in enumerate(b.nodes):
                setattr(m, attr, stack[i])
        b.gathers = []
        for port in b.nodes[0].ports_decl[0]:
            arrays = [m.inp[port] for m in b.nodes]
            if all(a is self.zeros for a in arrays):
                bat.inp[port] = np.zeros((len(arrays), 1, self.block_size), dtype=np.float32)
                continue
            view = stacked_rows(arrays)
            if view is None:
                view = np.zeros((len(arrays),) + arrays[0].shape, dtype=np.float32)
                b.gathers.append((view, arrays))
            bat.inp[port] = view

    def _rebind_state(self, node: Node) -> None:
        """After a member's reset: copy its fresh state into its batch row and view it again."""
        b = self._batch_of.get(node.name)
        if b is None or b.loose:
            return
        i = b.names.index(node.name)
        for attr, stack in b.batch.state.items():
            stack[i] = getattr(node, attr)
            setattr(node, attr, stack[i])

    def _reset_node(self, node: Node) -> None:
        node.reset()
        self._rebind_state(node)

    def reset_node(self, name: str) -> None:
        """Reset one node now (its state, not its params): the voice allocator's clean restart."""
        self._reset_node(self.nodes[name])

    def _build_steps(self) -> None:
        self._batch_of = {m: b for b in self.batches for m in b.names}
        self.steps: list[Callable[[int, int], None]] = [self._make_step(u) for u in self._units]
        self._refresh_active()

    def _make_step(self, unit):
        if unit[0] == "batch":
            b = unit[1]
            proc = type(b.nodes[0]).process_batch
            bat, fills, gathers = b.batch, b.fills, b.gathers

            def run_batch(n, t):
                for f in fills:
                    f(n)
                for dst, srcs in gathers:
                    for i, x in enumerate(srcs):
                        dst[i, :, :n] = x[:, :n]
                proc(bat, n, t)

            return run_batch
        _, name, step = unit
        node = self.nodes[name]
        if name in self.muted:
            def silent(n, t, node=node):
                for buf in node.out.values():
                    buf[:, :n] = 0.0

            return silent
        active = self._active[name]
        if step == "write":
            return node.process_write  # params were filled by the read step
        fn = node.process_read if step == "read" else node.process

        def run(n, t, active=active, fn=fn):
            for p in active:
                p.fill(n)
            fn(n, t)

        return run

    def _refresh_active(self, names=None) -> None:
        """Rebuild the lists of params that need filling (a ramp, a modulation): every node's, or only
        ``names``' (and their batches': an event touches one node, and a patch may have hundreds)."""
        if names is None:
            names, batches = self.params, self.batches
        else:
            names = [n for n in names if n in self.params]
            batches = list({id(b): b for b in map(self._batch_of.get, names) if b is not None}.values())
        for name in names:
            self._active[name][:] = [s for s in self.params[name].values() if s.active]
        for b in batches:
            if b.loose:
                continue
            fills = []
            for pname, dst in b.batch.par.items():
                states = [self.params[m][pname] for m in b.names]
                batched = None
                if all(s.mode == MOD for s in states):
                    src = stacked_rows([s.src for s in states])
                    if src is not None:
                        args = np.array([s.map_args for s in states], dtype=np.float64)
                        batched = functools.partial(_map_batch, src, dst, args)
                if batched is not None:
                    fills.append(batched)
                else:
                    fills.extend(s.fill for s in states if s.active)
            b.fills[:] = fills

    # ------------------------------------------------------------ events
    #: events queued by other threads and not yet taken by the audio thread (it takes them every block): past
    #: this, :meth:`schedule` refuses with :class:`EngineBusy` instead of growing without bound
    inbox_limit = 65536
    #: events taken by the audio thread and waiting for their frame (a live coder's events scheduled ahead,
    #: beside the patch's own score, which is never limited): past this many, :meth:`schedule` refuses too
    pending_limit = 262144

    def schedule(self, ev: Event, frame: int | None = None) -> None:
        """Queue an event (thread-safe). Its frame defaults to ``round(ev.time * sr)``.

        Raises :class:`EngineBusy` when :attr:`inbox_limit` events wait for the audio thread already (it
        has stopped rendering, or a sender floods it): the caller answers with an error, nothing else is lost.
        """
        if frame is None:
            frame = int(round(ev.time * self.sample_rate))
        if self._inbox.qsize() >= self.inbox_limit:
            raise EngineBusy(f"{self._inbox.qsize()} events wait for the audio thread (at most "
                             f"{self.inbox_limit}): is the patch playing?")
        if len(self._heap) >= self.pending_limit + len(self.spec.score):
            raise EngineBusy(f"{len(self._heap)} events are scheduled ahead (at most {self.pending_limit} "
                             f"beside the score): let some play first")
        self._inbox.put((frame, ev))

    def _post(self, ev: Event, frame: int) -> None:
        """The audio thread's own events (a poly's voice start after its fade): the inbox, never refused."""
        self._inbox.put((frame, ev))

    def _push_score(self) -> None:
        """The patch's score, straight into the event queue (the audio thread's own; a score has no limit)."""
        for ev in self.spec.score:
            heapq.heappush(self._heap, (int(round(ev.time * self.sample_rate)), next(self._seq), ev))

    def note(self, poly: str, pitch, velocity: float = 1.0, *, frame: int | None = None) -> None:
        """Play a note on a ``poly`` node (thread-safe): at ``frame``, or as soon as possible.

        ``pitch`` in Hz or a note name (``"C4"``); ``velocity`` 0..1. This is
        the entry point live input (OSC, MIDI) uses; a score does the same
        with ``{at, note: POLY, pitch, velocity}``.
        """
        self.schedule(Event(0.0, "note", self._poly_name(poly), value=float(velocity),
                            pitch=self._pitch(pitch)), _ASAP if frame is None else frame)

    def note_off(self, poly: str, pitch=None, *, frame: int | None = None) -> None:
        """Release a note (every held note when ``pitch`` is None) on a ``poly`` node (thread-safe)."""
        p = None if pitch is None else self._pitch(pitch)
        self.schedule(Event(0.0, "note_off", self._poly_name(poly), pitch=p), _ASAP if frame is None else frame)

    def _poly_name(self, poly: str) -> str:
        if poly not in self._allocators:
            polys = ", ".join(self._allocators) or "none in this patch"
            raise ValueError(f"'{poly}' is not a poly node (poly nodes: {polys})")
        return poly

    def _pitch(self, pitch) -> float:
        from .units import parse_value

        f = parse_value(pitch, "Hz")
        if not 0 < f < self.sample_rate / 2:
            raise ValueError(f"pitch {f:g} Hz is not between 0 and half the sample rate")
        return f

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
        elif ev.node in self._allocators:
            self._allocators[ev.node].on_event(ev, frame)
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
        touched = None  # the nodes whose params events changed: a set, or True for all (a poly's events)
        while pos < nframes:
            now = t + pos
            while heap and heap[0][0] <= now:
                frame, _, ev = heapq.heappop(heap)
                if _ASAP < frame < now:
                    self.late_events += 1
                self._apply(ev, frame)
                if ev.node in self._allocators:  # voices started, stolen, reset: anything may have changed
                    touched = True
                elif touched is not True:
                    touched = touched or set()
                    touched.add(ev.node)
            if touched:
                self._refresh_active(None if touched is True else touched)
                touched = None
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
        self.muted.clear()
        for a in self._allocators.values():
            a.reset()
        self._units = list(self._units0)
        for b in self.batches:
            b.loose = b.loose0
        for node in self.nodes.values():
            self._reset_node(node)
            for buf in node.out.values():
                buf.fill(0.0)
        for states in self.params.values():
            for ps in states.values():
                ps.restore()
        self._build_steps()
        self.frame = 0
        self._drain()
        self._heap.clear()
        self._push_score()

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
        for name in self._unit_nodes():
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
                    self._reset_node(self.nodes[down])
        for name in bad:
            for buf in self.nodes[name].out.values():
                K.zero_nonfinite(buf, n)

    def _unit_nodes(self):
        for u in self._units:
            if u[0] == "batch":
                yield from u[1].names
            else:
                yield u[1]

    def _mute(self, name: str) -> None:
        # a muted member leaves its batch: the others run one by one
        b = self._batch_of.get(name)
        if b is not None and not b.loose:
            b.loose = True
        self._units = [v for u in self._units for v in
                       ([("one", m, "process") for m in u[1].names] if u[0] == "batch" and u[1].loose else [u])]
        self._build_steps()


def _map_batch(src, dst, args, n):
    K.map_batch(src, dst, n, args)


class _BatchPlan:
    """A batch in the plan: its members, stacked buffers and per-block fills."""

    def __init__(self, names, nodes):
        self.names = names
        self.nodes = nodes
        self.out: dict[str, np.ndarray] = {}
        self.parblock = None
        self.batch: Batch | None = None
        self.fills: list = []
        self.gathers: list = []
        self.loose = False
        self.loose0 = False
