"""The node contract: what a node type declares and what the engine calls.

A node type is one class. It declares, in one place, its inputs, outputs,
params (default, range, unit, curve, rate) and options; the engine, the
patch checker, `patchlib nodes` and the docs all read these declarations.

Life cycle (after Spotify pedalboard's plugin contract):

* ``configure(in_channels)`` once the graph is known: returns the channel
  count of each output.
* ``prepare(ctx)`` allocates *all* state (no lazy allocation later).
* ``process(n, t)`` renders ``n`` frames starting at absolute frame ``t``.
  Inputs are read from ``self.inp[name]`` (float32 ``(channels, block)``),
  params from ``self.par[name]`` (float32 ``(block,)``, one value per
  sample), and outputs written to ``self.out[name][:, :n]``. Buffers are
  preallocated by the engine; a node must not keep references across
  ``prepare`` calls.
* ``reset()`` returns to the just-prepared state; always called explicitly.
* ``event(kind, value)`` receives timed events (``trigger``, ``release``),
  applied by the engine at their exact sample.

Example, a complete node type::

    from patchlib import Node, Param, Input, register

    @register("invert")
    class Invert(Node):
        '''Multiplies the signal by -1 times a depth.'''
        inputs = {"in": Input("signal to invert")}
        params = {"depth": Param(1.0, (0.0, 1.0), doc="how much to invert")}

        def process(self, n, t):
            self.out["out"][:, :n] = -self.inp["in"][:, :n] * self.par["depth"][:n]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from .units import UNITS


@dataclass(frozen=True)
class Param:
    """A numeric, modulatable parameter.

    Args:
        default: value when the patch does not set it, in ``unit``.
        range: ``(min, max)`` accepted from a patch; live values are clamped.
        unit: one of :data:`patchlib.units.UNITS` (Hz, s, dB, x, st, '').
        curve: ``lin`` or ``exp``: how a normalised 0..1 control (or a
            modulator's -1..1) maps onto the range by default.
        rate: ``audio`` (read every sample) or ``control`` (read on the
            fixed control grid, ``ctx.control_period`` samples, aligned to
            absolute time so the block size never changes the sound).
        smooth: seconds of linear smoothing when the value is set (no zipper
            noise); 0 for values that must jump.
        doc: one line for the listing and the docs.
    """

    default: float
    range: tuple[float, float]
    unit: str = ""
    curve: str = "lin"
    rate: str = "audio"
    smooth: float = 0.01
    doc: str = ""

    def __post_init__(self):
        lo, hi = self.range
        if not lo <= self.default <= hi:
            raise ValueError(f"default {self.default} outside range {self.range}")
        if self.unit not in UNITS:
            raise ValueError(f"unknown unit {self.unit!r}; known: {sorted(UNITS)}")
        if self.curve not in ("lin", "exp"):
            raise ValueError("curve must be 'lin' or 'exp'")
        if self.curve == "exp" and (lo < 0 or hi <= 0):
            raise ValueError("an exp curve needs a range of non-negative values")
        if self.rate not in ("audio", "control"):
            raise ValueError("rate must be 'audio' or 'control'")


@dataclass(frozen=True)
class Option:
    """A static setting, fixed when the graph is compiled (e.g. a noise colour).

    Args:
        default: value when not given (``None``: required when ``required``).
        choices: allowed values, if a closed set.
        kind: python type expected: ``str``, ``int``, ``float``, ``bool``,
            ``list`` or ``"path"`` (a file relative to the patch).
        doc: one line for the listing and the docs.
    """

    default: Any = None
    choices: tuple | None = None
    kind: Any = str
    doc: str = ""
    required: bool = False


@dataclass(frozen=True)
class Input:
    """An audio/control input port.

    Args:
        doc: what the port is for.
        channels: ``None`` takes any channel count; an int means the port
            wants exactly that many (a mono source broadcasts; more
            channels than wanted is an error).
        optional: unconnected optional inputs read silence.
    """

    doc: str = ""
    channels: int | None = None
    optional: bool = False


@dataclass(frozen=True)
class Output:
    """An output port.

    Args:
        doc: what the port carries.
        channels: an int, or ``None`` for 'as many as the widest input'.
        range: the nominal range of the signal: a param driven with
            ``{from: this, range: [lo, hi]}`` maps this range onto ``lo..hi``
            (-1..1 for oscillators, 0..1 for envelopes).
    """

    doc: str = ""
    channels: int | None = None
    range: tuple[float, float] = (-1.0, 1.0)


@dataclass
class Context:
    """What a node learns in ``prepare``."""

    sample_rate: float
    block_size: int
    control_period: int = 32
    seed: int = 0
    base_dir: str = "."
    #: audio given on the command line for ``input`` nodes: name -> (channels, frames) float32
    audio_inputs: dict = field(default_factory=dict)
    #: channel count of each connected input port, and of each output port
    in_channels: dict = field(default_factory=dict)
    out_channels: dict = field(default_factory=dict)
    #: report something the user should hear about (a model trained at another sample rate...):
    #: the engine records it in ``Engine.warnings``, logs it and passes it to ``on_warning``
    warn: Callable[[str], None] = field(default=lambda message: None, repr=False)


class Node:
    """Base class of every node type. See the module docstring for the contract."""

    #: registry name, set by :func:`patchlib.register`
    type_name: ClassVar[str] = ""
    inputs: ClassVar[dict[str, Input]] = {}
    outputs: ClassVar[dict[str, Output]] = {"out": Output("the signal")}
    params: ClassVar[dict[str, Param]] = {}
    options: ClassVar[dict[str, Option]] = {}
    #: events accepted from a score or OSC: name -> description
    events: ClassVar[dict[str, str]] = {}
    #: True for nodes whose output may lag their input by a block or more
    #: (``delay``): a cycle in the graph is legal only through such a node.
    #: They implement ``process_read`` and ``process_write``.
    breaks_cycles: ClassVar[bool] = False
    #: samples by which the output lags the input
    latency: int = 0
    #: attributes holding this node's streaming state (numpy arrays). A type
    #: with ``process_batch`` names them so the engine can stack them row-wise
    #: across identical nodes (see :class:`Batch`).
    batch_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str = "", options: dict | None = None):
        self.name = name or self.type_name
        self.opts: dict[str, Any] = dict(options or {})
        # bound by the engine in compile
        self.inp: dict[str, np.ndarray] = {}
        self.out: dict[str, np.ndarray] = {}
        self.par: dict[str, np.ndarray] = {}

    # ---- declarations -------------------------------------------------
    @classmethod
    def ports(cls, opts: dict) -> tuple[dict, dict, dict]:
        """Inputs, outputs and params for these options.

        Most nodes have fixed ports (the class attributes); a node whose
        ports depend on its configuration (``mix`` with N inputs) overrides
        this.
        """
        return cls.inputs, cls.outputs, cls.params

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    # ---- life cycle ---------------------------------------------------
    def configure(self, in_channels: dict[str, int]) -> dict[str, int]:
        """Output channel counts, given the channel count of each connected input."""
        widest = max(in_channels.values(), default=1)
        _, outputs, _ = self.ports(self.opts)
        return {name: (o.channels or widest) for name, o in outputs.items()}

    def prepare(self, ctx: Context) -> None:
        """Allocate all state for this sample rate and block size."""
        self.ctx = ctx

    def reset(self) -> None:
        """Return to the just-prepared state."""

    def process(self, n: int, t: int) -> None:
        """Render ``n`` frames starting at absolute frame ``t``."""
        raise NotImplementedError

    def event(self, kind: str, value: float = 1.0) -> None:
        """A timed event (``trigger``, ``release``...) at the current sample."""
        raise NotImplementedError(f"{self.type_name} takes no events")

    # ---- batching (optional: for speed) ---------------------------------
    def batch_key(self):
        """Nodes of one type with equal keys may run as one :meth:`process_batch` call.

        ``None`` (the default for types without ``process_batch``) never
        batches. The engine adds the channel counts to the key itself; a
        type adds whatever selects a different kernel (a filter's mode, a
        noise colour).
        """
        return None if type(self).process_batch.__func__ is Node.process_batch.__func__ else ()

    @classmethod
    def process_batch(cls, batch: "Batch", n: int, t: int) -> None:
        """Render ``n`` frames of every node in ``batch`` in one call.

        Must give exactly what calling :meth:`process` on each member would.
        """
        raise NotImplementedError

    # for breaks_cycles nodes
    def process_read(self, n: int, t: int) -> None:
        raise NotImplementedError

    def process_write(self, n: int, t: int) -> None:
        raise NotImplementedError


class Batch:
    """Identical nodes of one level, run as one call: their arrays stacked row-wise.

    Row ``v`` of every array belongs to ``nodes[v]``, whose own buffers and
    state attributes are views of that row, so the nodes also work one by one.

    Attributes:
        nodes: the members.
        out: port -> ``(V, channels, block)`` float32.
        par: param -> ``(V, block)`` float32.
        inp: port -> ``(V, channels, block)`` float32 (the sources' rows when
            they are stacked alike, else a copy the engine gathers each block).
        state: attribute (from ``batch_state``) -> ``(V, ...)`` stacked arrays.
    """

    def __init__(self, nodes):
        self.nodes = list(nodes)
        self.out: dict[str, np.ndarray] = {}
        self.par: dict[str, np.ndarray] = {}
        self.inp: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}

    def __len__(self):
        return len(self.nodes)

    def __getattr__(self, name):
        # shared settings (sample rate, mode...) read from the first member
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["nodes"][0], name)


def stacked_rows(arrays) -> np.ndarray | None:
    """One ``(len(arrays), *shape)`` view of arrays that are evenly spaced rows of one buffer.

    Returns ``None`` when they are not (different buffers, shapes or
    spacing). A node (``mix``) uses it to read many stacked sources in one
    kernel call; the engine to hand a batch its sources without a copy.
    """
    arrays = list(arrays)
    if not arrays:
        return None
    a0 = arrays[0]
    base = a0.base if a0.base is not None else a0
    if any(a.shape != a0.shape or a.dtype != a0.dtype or a.strides != a0.strides for a in arrays):
        return None
    addr = [a.__array_interface__["data"][0] for a in arrays]
    if len(arrays) == 1:
        return a0[None]
    step = addr[1] - addr[0]
    if step <= 0 or any(addr[i + 1] - addr[i] != step for i in range(len(addr) - 1)):
        return None
    if any((a.base if a.base is not None else a) is not base for a in arrays):
        return None
    return np.lib.stride_tricks.as_strided(a0, shape=(len(arrays),) + a0.shape, strides=(step,) + a0.strides,
                                           writeable=True)
