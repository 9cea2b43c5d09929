"""Hand a running engine's state to the engine that replaces it (live edits, hot reload).

A live edit or a reloaded patch compiles a whole new :class:`~patchlib.engine.Engine`
off the audio thread. If it started from silence, every string would stop
ringing, every LFO jump back to phase 0 and every delay line empty at the
swap. Instead the new engine *takes over*:

* **nodes** that did not change (same name, type, options and channel
  counts) get the old node's streaming state: its state arrays, counters and
  output buffers, copied in place, so they go on as if nothing happened;
* **params** of a node that is still there keep their live value (a value
  set over OSC, a ramp halfway) when the patch's setting for them did not
  change; a constant the edit changed glides from the old value to the new
  one over the param's smoothing time instead of jumping;
* **time**: the new engine continues at the old one's frame (clocks,
  sequencers and the control grid stay in step); its score events before that
  frame already happened and are dropped; events queued in the old engine
  (OSC sent during the compile, notes waiting to start) move to the new one;
* **voices**: a ``poly`` node keeps its held notes.

Everything is worked out off the audio thread by :func:`plan_takeover`;
:meth:`Takeover.apply` only copies, at the block boundary of the swap
(:meth:`patchlib.realtime.Player.swap` calls it).

What a node's state is: by default every numpy array, torch tensor and
number among its attributes, except the buffers the engine owns (params,
inputs, outputs); a type whose state lives elsewhere (a neural model's
caches) returns it from ``Node.state_items()``. The contract test checks,
for every node type, that an engine which took over renders exactly what
the old one would have.
"""
from __future__ import annotations

import copy
import heapq
import numbers
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .params import MOD

#: attributes that are a node's wiring or configuration, never its streaming state
_SKIP = frozenset({"name", "opts", "inp", "out", "par", "ctx", "ports_decl", "_in_ch", "type_name"})


class Attr(NamedTuple):
    """A number held in an attribute (a read position, a counter): ``getattr(obj, name)``."""

    obj: Any
    name: str


def state_items(node) -> dict:
    """A node's streaming state: name -> array, tensor, or :class:`Attr` of a number."""
    custom = getattr(node, "state_items", None)
    if callable(custom):
        items = custom()
        if items is not None:
            return dict(items)
    owned = [b for d in (node.par, node.inp, node.out) for b in d.values() if isinstance(b, np.ndarray)]
    items = {}
    for k, v in vars(node).items():
        if k in _SKIP or k.startswith("__"):
            continue
        if isinstance(v, np.ndarray):
            if v.size and any(np.may_share_memory(v, b) for b in owned):
                continue  # a view of an engine buffer (a param row kept under another name)
            items[k] = v
        elif _is_tensor(v):
            items[k] = v
        elif isinstance(v, (bool, numbers.Number)) and not isinstance(v, complex):
            items[k] = Attr(node, k)
    return items


def _is_tensor(v) -> bool:
    t = type(v)
    return t.__module__.startswith("torch") and t.__name__ in ("Tensor", "Parameter")


def _same_setting(a, b) -> bool:
    keys = ("kind", "value", "source", "range", "curve", "scale", "offset")
    return all(getattr(a, k, None) == getattr(b, k, None) for k in keys)


@dataclass
class Takeover:
    """What a new engine takes from the old one at the swap (see the module docstring)."""

    old: object
    new: object
    kept: list = field(default_factory=list)  # nodes whose state goes on
    changed: list = field(default_factory=list)  # same name, different type/options/channels: fresh state
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    arrays: list = field(default_factory=list)  # (dst, src) numpy arrays, copied in place
    tensors: list = field(default_factory=list)  # (dst, src) torch tensors
    scalars: list = field(default_factory=list)  # (new Attr, old Attr)
    params: list = field(default_factory=list)  # (new ParamState, old ParamState, glide to value or None)
    voices: list = field(default_factory=list)  # (new allocator, old allocator)
    #: frames a change takes to reach the output (the most latency, a limiter's lookahead, a
    #: model's, on any path to it): the swap's crossfade starts only then (see ``Player.swap``)
    latency: int = 0
    applied: bool = False

    def apply(self) -> None:
        """Copy the old engine's state into the new one (at the swap's block boundary)."""
        old, new = self.old, self.new
        for dst, src in self.arrays:
            np.copyto(dst, src)
        if self.tensors:
            import torch

            with torch.inference_mode():  # a neural node's caches are inference tensors
                for dst, src in self.tensors:
                    dst.copy_(src)
        for dst, src in self.scalars:
            setattr(dst.obj, dst.name, getattr(src.obj, src.name))
        for ps, ops, glide in self.params:  # (never a modulated one: see _plan_params)
            ps.state[:] = ops.state
            ps.mode, ps.src, ps.fresh = ops.mode, None, True
            if glide is not None:
                ps.set(glide)
        for na, oa in self.voices:
            na.voices = copy.deepcopy(oa.voices)
            na.stolen, na.dropped = oa.stolen, oa.dropped
        _move_time_and_events(old, new)
        new._refresh_active()
        self.applied = True


def _move_time_and_events(old, new) -> None:
    """The new engine continues at the old one's frame, with the old one's pending events."""
    frame = old.frame
    new._drain()
    heap = new._heap
    while heap and heap[0][0] < frame:
        heapq.heappop(heap)  # its score before the swap: already heard
    new.frame = frame
    old._drain()
    score = {id(ev) for ev in old.spec.score}  # the new engine has its own score (from frame on)
    for f, _, ev in old._heap:
        if id(ev) not in score and _event_fits(new, ev):  # live ones: OSC, MIDI, a voice's own
            new._inbox.put((f, ev))
    old._heap.clear()


def _event_fits(engine, ev) -> bool:
    if ev.node not in engine.nodes and ev.node not in engine._allocators:
        return False
    if ev.action == "ramp":
        return ev.param in engine.params.get(ev.node, {})
    return True


def plan_takeover(old, new) -> Takeover:
    """Work out (off the audio thread) how ``new`` takes over ``old``'s running state."""
    plan = Takeover(old, new)
    ospec, nspec = old.spec, new.spec
    plan.removed = [n for n in ospec.nodes if n not in nspec.nodes]
    for name, ns in nspec.nodes.items():
        os_ = ospec.nodes.get(name)
        if os_ is None:
            plan.added.append(name)
            continue
        node, onode = new.nodes[name], old.nodes[name]
        if os_.cls is not ns.cls:
            plan.changed.append(name)
            continue
        _plan_params(plan, name, ns, os_)
        same = (os_.options == ns.options and getattr(node, "_in_ch", None) == getattr(onode, "_in_ch", None)
                and {p: b.shape for p, b in node.out.items()} == {p: b.shape for p, b in onode.out.items()}
                and name not in old.muted)
        if not same:
            plan.changed.append(name)
            continue
        if _plan_node(plan, node, onode):
            plan.kept.append(name)
        else:
            plan.changed.append(name)
    plan.latency = max(path_latency(old), path_latency(new))
    for name, na in new._allocators.items():
        oa = old._allocators.get(name)
        if oa is not None and name in plan.kept and len(oa.voices) == len(na.voices):
            plan.voices.append((na, oa))
    return plan


def path_latency(engine) -> int:
    """The most latency (``Node.latency``, frames) on any path from a node to the engine's output.

    A change made anywhere (a source connected to a mixer) is heard at the
    output that much later: behind a limiter's lookahead, say. Loops (through
    delays) are followed once.
    """
    g = engine.graph
    best: dict[str, int] = {}
    for name in reversed([n for n, step in engine.order if step != "write"]):
        down = [best[s] for s in g.successors(name) if s in best]
        best[name] = int(getattr(engine.nodes[name], "latency", 0) or 0) + max(down, default=0)
    return max(best.values(), default=0)


def _plan_node(plan: Takeover, node, onode) -> bool:
    """Pair the state of one unchanged node; False if it does not line up (then it starts fresh)."""
    mine, theirs = state_items(node), state_items(onode)
    arrays, tensors, scalars = [], [], []
    for k, v in mine.items():
        if k not in theirs:
            continue
        o = theirs[k]
        if isinstance(v, np.ndarray):
            if not isinstance(o, np.ndarray) or o.shape != v.shape or o.dtype != v.dtype:
                return False
            if v.flags.writeable:
                arrays.append((v, o))
        elif _is_tensor(v):
            if not _is_tensor(o) or o.shape != v.shape or o.dtype != v.dtype:
                return False
            tensors.append((v, o))
        elif isinstance(v, Attr):
            if not isinstance(o, Attr) or type(getattr(v.obj, v.name)) is not type(getattr(o.obj, o.name)):
                return False
            scalars.append((v, o))
    for p, buf in node.out.items():  # a consumer in a loop may read last block's output
        arrays.append((buf, onode.out[p]))
    plan.arrays += arrays
    plan.tensors += tensors
    plan.scalars += scalars
    return True


def _plan_params(plan: Takeover, name, ns, os_) -> None:
    new_states, old_states = plan.new.params.get(name, {}), plan.old.params.get(name, {})
    for pname, ps in new_states.items():
        ops = old_states.get(pname)
        if ops is None:
            continue
        a, b = ns.params.get(pname), os_.params.get(pname)
        if ops.mode == MOD:
            continue  # it follows a source; the new engine's own setting applies
        if (a is None and b is None) or (a is not None and b is not None and _same_setting(a, b)):
            if a is None or a.kind != "mod":
                plan.params.append((ps, ops, None))  # keep what was set live (OSC, a ramp halfway)
        elif (a is None or a.kind == "const") and (b is None or b.kind == "const"):
            target = a.value if a is not None else ps.spec.default
            plan.params.append((ps, ops, float(target)))  # glide from the live value to the patch's new one

