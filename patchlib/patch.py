"""YAML patch -> validated :class:`PatchSpec`, with line numbers everywhere.

The format is documented in ``docs/patch-format.md``. Loading is safe (no
tags, no code); duplicate keys are errors rather than silent overrides.
Every mistake becomes a :class:`~patchlib.errors.PatchError` naming the file,
line, node and key, with the nearest valid names or the valid range.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import registry
from .errors import PatchError, PatchErrors, Where, suggest
from .node import Node, Option
from .units import UnitError, parse_time, parse_value

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a node name or a voice's copy of one (``keys/3/osc``, made by the loader)
REF_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[0-9]+/[A-Za-z_][A-Za-z0-9_]*)?$")
TOP_KEYS = {
    "sample_rate": "frames per second (default 48000)",
    "block_size": "frames per block (default 256): latency and speed, never the sound",
    "control_period": "frames between control-rate updates (default 32)",
    "duration": "length of the piece (default 5 s)",
    "seed": "random seed for noise and friends (default 0)",
    "channels": "output channels, 1 or 2 (default: as many as 'out' gives)",
    "nodes": "the nodes: name -> {type: ..., inputs, params, options}",
    "out": "what is heard: a node, [left, right] or {left: .., right: ..}",
    "score": "timed events: set, ramp, trigger, release, note, note_off",
    "voices": "voice templates (small patches) that 'poly' nodes play as N voices",
    "midi": "live MIDI input: {notes: POLY or [POLY, ...], channel: 1..16}",
    "title": "free text",
    "description": "free text",
}
OUT_NAME = "out"


# ---------------------------------------------------------------- YAML
class LineDict(dict):
    """A dict that remembers the line of itself and of each key."""

    line: int = 0

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines: dict[Any, int] = {}

    def line_of(self, key) -> int:
        return self.lines.get(key, self.line)


class LineList(list):
    line: int = 0

    def __init__(self, *a):
        super().__init__(*a)
        self.lines: list[int] = []


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    d = LineDict()
    d.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise PatchError(f"a key must be a plain word, got {key!r}", Where(line=line))
        if key in d:
            raise PatchError(
                f"duplicate key '{key}' (first on line {d.lines[key]})", Where(line=line, key=str(key))
            )
        d[key] = loader.construct_object(value_node, deep=True)
        d.lines[key] = line
    return d


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList()
    out.line = node.start_mark.line + 1
    for item in node.value:
        out.append(loader.construct_object(item, deep=True))
        out.lines.append(item.start_mark.line + 1)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


_NODE_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _node_at(text: str, line: int | None) -> str | None:
    """The node whose entry under ``nodes:`` spans ``line`` (1-based), judged by indentation.

    Used for mistakes found before the YAML is a tree (syntax errors,
    duplicate keys), so their message can still name the node.
    """
    if not line:
        return None
    in_nodes, indent, current = False, None, None
    for raw in text.splitlines()[:line]:
        body = raw.rstrip()
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        ind = len(body) - len(body.lstrip())
        if ind == 0:
            in_nodes, indent, current = body.startswith("nodes:"), None, None
            continue
        if in_nodes:
            indent = ind if indent is None else indent
            if ind == indent:
                m = _NODE_KEY.match(body)
                current = m.group(1) if m else None
    return current


def load_yaml(text: str, file: str | None = None) -> Any:
    """Parse YAML safely, keeping line numbers; syntax errors become PatchErrors."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except PatchError as e:
        e.where.file = file
        if e.where.node is None:
            e.where.node = _node_at(text, e.where.line)
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {e.problem or e}"
        cline = e.context_mark.line + 1 if e.context_mark else None
        if e.context:
            msg += f" ({e.context}" + (f" that starts on line {cline}" if cline and cline != line else "") + ")"
        # the node where the parser gave up, else the one holding the construct it was reading
        node = _node_at(text, line) or _node_at(text, cline)
        raise PatchError(msg, Where(file=file, line=line, node=node)) from None
    except yaml.YAMLError as e:
        raise PatchError(f"YAML error: {e}", Where(file=file)) from None


# ---------------------------------------------------------------- spec
class PatchPath(str):
    """A ``kind="path"`` option as written in the patch, knowing where it was written.

    It is the text itself (``models/drive.pt``), plus ``base_dir`` (the
    patch's folder, which it is relative to) and ``where`` (file, line, node,
    key), so a node can resolve and check it even in ``ports(opts)``, before
    it has a context, and word its errors with the patch's line.
    """

    def __new__(cls, text, base_dir, where):
        obj = super().__new__(cls, text)
        obj.base_dir = base_dir
        obj.where = where
        return obj



@dataclass
class ParamSetting:
    """How one param is set in the patch."""

    kind: str  # 'const' or 'mod'
    value: float = 0.0
    source: tuple[str, str] | None = None
    range: tuple[float, float] | None = None
    curve: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    line: int = 0
    #: a MIDI controller bound to this param (``kind`` is then 'const': it holds ``value`` until a CC moves it)
    midi: "MidiBinding | None" = None


@dataclass
class MidiBinding:
    """``cutoff: {midi_cc: 74, range: [200, 8000]}``: controller ``cc`` sets ``node.param``.

    A CC value ``v`` (0..127) maps onto ``range`` (``curve`` lin or exp, as
    a modulation's does) and is sent as a ``set`` event, so the param glides
    over its smoothing time. ``channel`` 1..16, or None for any channel.
    """

    node: str
    param: str
    cc: int
    range: tuple[float, float]
    curve: str = "lin"
    channel: int | None = None
    value: float = 0.0  # the initial value
    line: int = 0

    def map(self, v: float) -> float:
        """The param value for CC value ``v`` (0..127)."""
        u = min(max(float(v), 0.0), 127.0) / 127.0
        r0, r1 = self.range
        if self.curve == "exp":
            return r0 * (r1 / r0) ** u
        return r0 + (r1 - r0) * u


@dataclass
class NodeSpec:
    name: str
    type: str
    cls: type
    line: int
    options: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # port -> (node, port)
    params: dict = field(default_factory=dict)  # name -> ParamSetting
    input_lines: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    def ports(self):
        return self.cls.ports(self.options)


@dataclass
class Event:
    """A timed action, applied at the sample ``round(time * sample_rate)``."""

    time: float
    action: str  # set | ramp | trigger | release
    node: str
    param: str | None = None
    value: float = 1.0
    seconds: float | None = None
    curve: str = "lin"
    line: int = 0
    pitch: float | None = None  # note events: Hz


@dataclass
class PatchSpec:
    file: str | None
    base_dir: str
    sample_rate: int = 48000
    block_size: int = 256
    control_period: int = 32
    duration: float = 5.0
    duration_given: bool = False
    seed: int = 0
    channels: int | None = None
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    out: str = OUT_NAME
    score: list[Event] = field(default_factory=list)
    title: str = ""
    #: poly node name -> :class:`patchlib.poly.VoiceInfo`
    polys: dict = field(default_factory=dict)
    #: every ``{midi_cc: ...}`` param, in patch order (a param inside a voice: one per voice copy)
    midi_bindings: list[MidiBinding] = field(default_factory=list)
    #: the top-level ``midi:`` settings: ``notes`` (poly names, or None: every poly) and ``channel``
    midi: dict = field(default_factory=dict)

    def where(self, line=None, node=None, key=None) -> Where:
        return Where(self.file, line, node, key)


# ---------------------------------------------------------------- loading
def load_patch(source, *, file: str | None = None) -> PatchSpec:
    """Load and validate a patch.

    Args:
        source: a path to a YAML file, YAML text, or an already parsed dict.
        file: name used in messages when ``source`` is text or a dict.
    """
    base_dir = os.getcwd()
    # a path object is always a file; a one-line string is one when it looks like or names a file
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and (
            source.endswith((".yaml", ".yml")) or os.path.isfile(source))):
        path = os.fspath(source)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise PatchError(f"cannot read patch: {e.strerror}", Where(file=path)) from None
        file = path
        base_dir = os.path.dirname(os.path.abspath(path))
        data = load_yaml(text, file)
    elif isinstance(source, str):
        data = load_yaml(source, file)
    else:
        data = source
    return PatchParser(data, file, base_dir).parse()


class PatchParser:
    def __init__(self, data, file, base_dir):
        self.data = data
        self.file = file
        self.base_dir = base_dir
        self.errors: list[PatchError] = []

    def err(self, msg, line=None, node=None, key=None, hint=None):
        self.errors.append(PatchError(msg, Where(self.file, line, node, key), hint))

    def fail_if_errors(self):
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise PatchErrors(self.errors)

    # ---------------------------------------------------------------- top
    def parse(self) -> PatchSpec:
        d = self.data
        if not isinstance(d, dict):
            raise PatchError("a patch is a mapping with at least 'nodes' and 'out'", Where(self.file, 1))
        spec = PatchSpec(file=self.file, base_dir=self.base_dir)
        for key in d:
            if key not in TOP_KEYS:
                self.err(f"unknown top-level key '{key}'", self._line(d, key), key=str(key),
                         hint=suggest(key, TOP_KEYS) or "valid: " + ", ".join(TOP_KEYS))
        spec.sample_rate = self._int(d, "sample_rate", 48000, 1000, 768000)
        spec.block_size = self._int(d, "block_size", 256, 1, 65536)
        spec.control_period = self._int(d, "control_period", 32, 1, 4096)
        spec.seed = self._int(d, "seed", 0, 0, 2**63 - 1)
        spec.title = str(d.get("title", ""))
        if "duration" in d:
            try:
                spec.duration = parse_time(d["duration"])
                spec.duration_given = True
                if spec.duration <= 0:
                    raise UnitError("must be positive")
            except UnitError as e:
                self.err(f"duration: {e}", self._line(d, "duration"), key="duration")
        if "channels" in d:
            spec.channels = self._int(d, "channels", 1, 1, 2)

        nodes = d.get("nodes")
        if not isinstance(nodes, dict) or not nodes:
            self.err("the patch needs a 'nodes' mapping with at least one node",
                     self._line(d, "nodes") if "nodes" in d else getattr(d, "line", 1), key="nodes")
            self.fail_if_errors()
        nodes = self._expand_polys(spec, d, nodes)
        for name, body in nodes.items():
            self._node(spec, nodes, name, body)
        self._dedupe_voice_errors()
        self._out(spec, d)
        self.fail_if_errors()
        spec.midi_bindings = [s.midi for ns in spec.nodes.values() for s in ns.params.values() if s.midi]
        if "midi" in d:
            self._midi(spec, d["midi"], self._line(d, "midi"))
        self._check_connections(spec)
        self.fail_if_errors()
        from .graph import build_graph  # cycles are a graph question

        build_graph(spec)
        score = d.get("score")
        if score is not None:
            self._score(spec, score, self._line(d, "score"))
        self.fail_if_errors()
        return spec

    def _expand_polys(self, spec, d, nodes):
        """Each ``poly`` node becomes N copies of its voice plus itself (see :mod:`patchlib.poly`)."""
        from . import poly

        templates = d.get("voices")
        if templates is not None and not isinstance(templates, dict):
            self.err("voices is a mapping: name -> {nodes: ..., out: ...}", self._line(d, "voices"), key="voices")
            templates = {}
        if not any(isinstance(b, dict) and b.get("type") == "poly" for b in nodes.values()):
            return nodes
        out = LineDict()
        out.line = getattr(nodes, "line", 0)
        self._generated = set()
        for name, body in nodes.items():
            if not (isinstance(body, dict) and body.get("type") == "poly"):
                out[name] = body
                out.lines[name] = self._line(nodes, name)
                continue
            try:
                expanded, info = poly.expand(self, str(name), body, templates or {})
            except PatchError as e:
                self.errors.append(e)
                continue
            for k, b in expanded.items():
                if k in out or (k != name and k in nodes):
                    self.err(f"node name '{k}' is taken", self._line(nodes, name), node=str(name))
                out[k] = b
                out.lines[k] = getattr(b, "line", None) or self._line(nodes, name)
                if k != name:
                    self._generated.add(k)
            spec.polys[str(name)] = info
        return out

    def _dedupe_voice_errors(self):
        """A mistake in a voice shows once (in voice 0), not once per voice."""
        gen = getattr(self, "_generated", ())
        if not gen:
            return
        keep, seen = [], set()
        for e in self.errors:
            node = e.where.node or ""
            m = re.match(r"^(.*)/(\d+)/(.*)$", node)
            if m:
                key = (m.group(1), m.group(3), e.where.line, e.message.replace(node, "*"))
                if key in seen:
                    continue
                seen.add(key)
            keep.append(e)
        self.errors = keep

    def _line(self, mapping, key):
        return mapping.line_of(key) if isinstance(mapping, LineDict) else None

    def _int(self, d, key, default, lo, hi):
        if key not in d:
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.err(f"{key} must be a whole number from {lo} to {hi}, got {v!r}",
                     self._line(d, key), key=key)
            return default
        return v

    # ---------------------------------------------------------------- nodes
    def _node(self, spec: PatchSpec, nodes, name, body):
        line = self._line(nodes, name)
        name = str(name)
        if not NAME_RE.match(name) and name not in getattr(self, "_generated", ()):
            self.err(f"node name '{name}' must be a word (letters, digits, _; no dots or spaces)",
                     line, node=name)
            return
        if not isinstance(body, dict):
            self.err("a node is a mapping like {type: saw, freq: 110}", line, node=name)
            return
        if "type" not in body:
            self.err("missing 'type'", body.line if isinstance(body, LineDict) else line, node=name,
                     hint="e.g. {type: sine, freq: 440}; 'patchlib nodes' lists the types")
            return
        tname = body["type"]
        try:
            cls = registry.get(str(tname))
        except PatchError as e:
            self.err(e.message, self._line(body, "type"), node=name, key="type", hint=e.hint)
            return
        raw = body
        if hasattr(cls, "expand"):
            try:
                raw = cls.expand(body)
            except PatchError as e:
                self.err(e.message, e.where.line or self._line(body, "type"), node=name,
                         key=e.where.key, hint=e.hint)
                return
        ns = NodeSpec(name=name, type=str(tname), cls=cls, line=line, raw=dict(body))
        # options first: ports may depend on them
        for key, opt in cls.options.items():
            if key in raw:
                ns.options[key] = self._option(raw, key, opt, name)
            elif opt.required:
                self.err(f"missing option '{key}' ({opt.doc})", line, node=name, key=key)
            else:
                ns.options[key] = opt.default
        inputs, outputs, params = cls.ports(ns.options)
        for key, value in raw.items():
            if key == "type" or key in cls.options:
                continue
            kline = self._line(raw, key)
            if key in inputs:
                src = self._source(value, kline, name, key)
                if src:
                    ns.inputs[key] = src
                    ns.input_lines[key] = kline
            elif key in params:
                s = self._param_setting(params[key], value, kline, name, key)
                if s:
                    ns.params[key] = s
            else:
                valid = list(inputs) + list(params) + list(cls.options)
                self.err(f"'{tname}' has no input, param or option '{key}'", kline, node=name, key=str(key),
                         hint=suggest(key, valid) or ("valid keys: " + ", ".join(valid) if valid else None))
        for port, inp in inputs.items():
            if port not in ns.inputs and not inp.optional:
                self.err(f"input '{port}' is not connected ({inp.doc})", line, node=name, key=port,
                         hint=f"add '{port}: SOURCE' naming the node that feeds it")
        spec.nodes[name] = ns

    def _option(self, raw, key, opt: Option, node):
        v = raw[key]
        line = self._line(raw, key)
        kind = opt.kind
        ok = True
        if kind is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif kind == "path":
            ok = isinstance(v, str)
            if ok:
                v = PatchPath(v, self.base_dir, Where(self.file, line, node, key))
        elif kind is list:
            ok = isinstance(v, list)
        elif kind is int:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind is bool:
            ok = isinstance(v, bool)
        elif kind is str:
            ok = isinstance(v, str)
        elif kind is not None and not isinstance(v, kind):
            ok = False
        if not ok:
            kname = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
            article = "an" if kname[:1] in "aeiou" else "a"
            self.err(f"type mismatch: option '{key}' wants {article} {kname}, got {v!r}", line, node=node, key=key)
            return opt.default
        if opt.choices is not None and v not in opt.choices:
            self.err(f"'{v}' is not a valid {key}", line, node=node, key=key,
                     hint=(suggest(v, opt.choices) or "") + " valid: " + ", ".join(map(str, opt.choices)))
            return opt.default
        return v

    def _source(self, value, line, node, key):
        if isinstance(value, str) and value.strip():
            parts = value.strip().split(".")
            if len(parts) == 1:
                return (parts[0], None)
            if len(parts) == 2 and all(parts):
                return (parts[0], parts[1])
        self.err(f"type mismatch: '{key}' is an input and wants a node name ('osc' or 'osc.out'), got {value!r}",
                 line, node=node, key=key)
        return None

    def _param_setting(self, pspec, value, line, node, key):
        lo, hi = pspec.range
        unit = f" {pspec.unit}" if pspec.unit else ""
        if isinstance(value, dict) and "midi_cc" in value:
            return self._midi_setting(pspec, value, line, node, key)
        if isinstance(value, dict):
            allowed = {"from", "range", "curve", "scale", "offset"}
            for k in value:
                if k not in allowed:
                    self.err(f"unknown key '{k}' in the modulation of '{key}'", self._line(value, k) or line,
                             node=node, key=key, hint=suggest(k, allowed) or "valid: " + ", ".join(sorted(allowed)))
            if "from" not in value:
                self.err(f"'{key}' given as a mapping needs 'from: NODE'", line, node=node, key=key,
                         hint="e.g. {from: lfo, range: [300, 3000], curve: exp}")
                return None
            src = self._source(value["from"], line, node, key)
            if not src:
                return None
            s = ParamSetting("mod", source=src, line=line)
            if "range" in value:
                r = value["range"]
                try:
                    if not isinstance(r, list) or len(r) != 2:
                        raise UnitError("range is a list of two values [low, high]")
                    s.range = (parse_value(r[0], pspec.unit), parse_value(r[1], pspec.unit))
                except UnitError as e:
                    self.err(f"range of '{key}': {e}", line, node=node, key=key)
                    return None
                for v in s.range:
                    if not lo <= v <= hi:
                        self.err(f"range of '{key}': {v:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}",
                                 line, node=node, key=key)
                        return None
            curve = value.get("curve")
            if curve is not None:
                if curve not in ("lin", "exp"):
                    self.err(f"curve must be 'lin' or 'exp', got {curve!r}", line, node=node, key=key)
                    return None
                if curve == "exp" and (s.range is None or min(s.range) <= 0):
                    self.err("curve: exp needs a range of two positive values", line, node=node, key=key)
                    return None
                s.curve = curve
            elif s.range is not None and pspec.curve == "exp" and min(s.range) <= 0:
                s.curve = "lin"
            for k in ("scale", "offset"):
                if k in value:
                    if s.range is not None:
                        self.err(f"give either 'range' or '{k}' for '{key}', not both", line, node=node, key=key)
                        return None
                    try:
                        setattr(s, k, parse_value(value[k], pspec.unit if k == "offset" else ""))
                    except UnitError as e:
                        self.err(f"{k} of '{key}': {e}", line, node=node, key=key)
            return s
        try:
            v = parse_value(value, pspec.unit)
        except UnitError as e:
            if isinstance(value, str) and REF_RE.match(value.split(".")[0]) and value.count(".") <= 1:
                # a bare node name drives the param with the raw signal
                return ParamSetting("mod", source=self._source(value, line, node, key), line=line)
            self.err(f"type mismatch for param '{key}': {e}", line, node=node, key=key)
            return None
        if not lo <= v <= hi:
            self.err(f"{key} = {v:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}", line, node=node, key=key)
            return None
        return ParamSetting("const", value=v, line=line)

    def _midi_setting(self, pspec, value, line, node, key):
        """``{midi_cc: 74, range: [200, 8000], curve: exp, channel: 1, value: 1kHz}``: a constant that MIDI sets."""
        lo, hi = pspec.range
        unit = f" {pspec.unit}" if pspec.unit else ""
        allowed = {"midi_cc", "range", "curve", "channel", "value"}

        def at(k):
            return self._line(value, k) or line

        for k in value:
            if k not in allowed:
                self.err(f"unknown key '{k}' in the MIDI binding of '{key}'", at(k), node=node, key=key,
                         hint=("'from' and 'midi_cc' cannot be mixed: a param follows a node or a controller"
                               if k == "from" else suggest(k, allowed) or "valid: " + ", ".join(sorted(allowed))))
                return None
        cc = value["midi_cc"]
        if isinstance(cc, bool) or not isinstance(cc, int) or not 0 <= cc <= 127:
            self.err(f"midi_cc must be a controller number from 0 to 127, got {cc!r}", at("midi_cc"),
                     node=node, key=key, hint="e.g. 74 (brightness/cutoff), 71 (resonance), 1 (mod wheel)")
            return None
        channel = value.get("channel")
        if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)
                                    or not 1 <= channel <= 16):
            self.err(f"channel of '{key}' must be a MIDI channel from 1 to 16, got {channel!r}", at("channel"),
                     node=node, key=key)
            return None
        rng = (lo, hi)
        if "range" in value:
            r = value["range"]
            try:
                if not isinstance(r, list) or len(r) != 2:
                    raise UnitError("range is a list of two values [low, high]")
                rng = (parse_value(r[0], pspec.unit), parse_value(r[1], pspec.unit))
            except UnitError as e:
                self.err(f"range of '{key}': {e}", at("range"), node=node, key=key)
                return None
            for v in rng:
                if not lo <= v <= hi:
                    self.err(f"range of '{key}': {v:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}",
                             at("range"), node=node, key=key)
                    return None
        curve = value.get("curve")
        if curve is not None:
            if curve not in ("lin", "exp"):
                self.err(f"curve must be 'lin' or 'exp', got {curve!r}", at("curve"), node=node, key=key)
                return None
            if curve == "exp" and min(rng) <= 0:
                self.err("curve: exp needs a range of two positive values", at("curve"), node=node, key=key)
                return None
        else:
            curve = pspec.curve if min(rng) > 0 else "lin"
        if "value" in value:
            try:
                v0 = parse_value(value["value"], pspec.unit)
            except UnitError as e:
                self.err(f"type mismatch for the value of '{key}': {e}", at("value"), node=node, key=key)
                return None
            if not lo <= v0 <= hi:
                self.err(f"value of '{key}' = {v0:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}", at("value"),
                         node=node, key=key)
                return None
        else:  # the param's default, kept inside the controller's range
            v0 = min(max(float(pspec.default), min(rng)), max(rng))
        b = MidiBinding(node, key, cc, (float(rng[0]), float(rng[1])), curve, channel, float(v0), line)
        return ParamSetting("const", value=float(v0), line=line, midi=b)

    def _midi(self, spec: PatchSpec, m, line):
        """The top-level ``midi: {notes: POLY | [POLY, ...], channel: 1..16}``."""
        if not isinstance(m, dict):
            self.err("midi is a mapping like {notes: keys, channel: 1}", line, key="midi")
            return
        for k in m:
            if k not in ("notes", "channel"):
                self.err(f"unknown key '{k}' in 'midi'", self._line(m, k) or line, key=str(k),
                         hint=suggest(k, ("notes", "channel")) or "valid: notes, channel")
                return
        if "channel" in m:
            c = m["channel"]
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 16:
                self.err(f"midi channel must be from 1 to 16, got {c!r}", self._line(m, "channel") or line,
                         key="channel")
                return
            spec.midi["channel"] = c
        if "notes" in m:
            raw = m["notes"]
            names = raw if isinstance(raw, list) else [raw]
            nline = self._line(m, "notes") or line
            for n in names:
                if not isinstance(n, str) or n not in spec.polys:
                    polys = ", ".join(spec.polys) or "none in this patch"
                    self.err(f"midi notes go to a poly node; {n!r} is not one (poly nodes: {polys})", nline,
                             key="notes", hint=suggest(str(n), spec.polys))
                    return
            spec.midi["notes"] = [str(n) for n in names]

    # ---------------------------------------------------------------- out
    def _out(self, spec: PatchSpec, d):
        explicit = [n for n, ns in spec.nodes.items() if ns.type == "output"]
        if "out" not in d:
            if len(explicit) == 1:
                spec.out = explicit[0]
                return
            if not explicit:
                self.err("the patch has no output: add 'out: NODE' (or a node of type output)",
                         getattr(d, "line", 1), key="out")
            else:
                self.err(f"several output nodes ({', '.join(explicit)}); keep one", key="out")
            return
        line = self._line(d, "out")
        if explicit:
            self.err(f"both 'out:' and an output node ({explicit[0]}) are given; keep one", line, key="out")
            return
        if OUT_NAME in spec.nodes:
            self.err(f"a node is named '{OUT_NAME}', which 'out:' needs; rename it", line, key="out")
            return
        v = d["out"]
        body = LineDict(type="output")
        body.line = line
        if isinstance(v, str):
            body["in"] = v
        elif isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v):
            body["left"], body["right"] = v
        elif isinstance(v, dict) and set(v) <= {"left", "right", "in", "gain"} and v:
            body.update(v)
        else:
            self.err("out must be a node name, [left, right] or {left: NODE, right: NODE}", line, key="out")
            return
        for k in body:
            body.lines[k] = line
        if spec.channels:
            body["channels"] = spec.channels
            body.lines["channels"] = line
        self._node(spec, {OUT_NAME: body}, OUT_NAME, body)
        spec.out = OUT_NAME

    # ---------------------------------------------------------------- wiring
    def _check_connections(self, spec: PatchSpec):
        for ns in spec.nodes.values():
            links = [(k, src, ns.input_lines.get(k, ns.line)) for k, src in ns.inputs.items()]
            links += [(k, s.source, s.line) for k, s in ns.params.items() if s.kind == "mod"]
            for key, (src, port), line in links:
                if src not in spec.nodes:
                    self.err(f"'{key}' connects from '{src}', which is not a node in this patch", line,
                             node=ns.name, key=key, hint=suggest(src, spec.nodes))
                    continue
                outs = spec.nodes[src].ports()[1]
                if port is None:
                    if len(outs) != 1 and "out" not in outs:
                        self.err(f"'{src}' has several outputs; name one: " + ", ".join(f"{src}.{o}" for o in outs),
                                 line, node=ns.name, key=key)
                        continue
                    port = "out" if "out" in outs else next(iter(outs))
                    if key in ns.inputs:
                        ns.inputs[key] = (src, port)
                    else:
                        ns.params[key].source = (src, port)
                elif port not in outs:
                    self.err(f"'{src}' has no output '{port}'", line, node=ns.name, key=key,
                             hint=suggest(port, outs) or "outputs: " + ", ".join(outs))

    # ---------------------------------------------------------------- score
    def _note_event(self, spec, ev, line, t, action, name):
        """``{at, note: POLY, pitch: C4 | [C4, E4], velocity, length}``, ``note_off``, ``all_off``."""
        if name not in spec.nodes:
            self.err(f"{action}: no node '{name}'", line, key=action, hint=suggest(name, spec.nodes))
            return
        if name not in spec.polys:
            self.err(f"{action} events go to a poly node; '{name}' is a {spec.nodes[name].type}", line,
                     node=name, key=action, hint="use trigger/release for a single envelope or string")
            return
        if action == "all_off":
            spec.score.append(Event(t, "all_off", name, line=line))
            return
        raw = ev.get("pitch")
        if raw is None:
            if action == "note":
                self.err("a note needs 'pitch' (C4, 440, or a list for a chord)", line, node=name, key="pitch")
                return
            spec.score.append(Event(t, "note_off", name, line=line))  # every held note
            return
        pitches = []
        for p in (raw if isinstance(raw, list) else [raw]):
            try:
                f = parse_value(p, "Hz")
                if not 0 < f < spec.sample_rate / 2:
                    raise UnitError(f"{f:g} Hz is not between 0 and half the sample rate")
                pitches.append(f)
            except UnitError as e:
                self.err(f"pitch: {e}", line, node=name, key="pitch")
                return
        velocity = 1.0
        if "velocity" in ev:
            try:
                velocity = parse_value(ev["velocity"], "x")
                if not 0 <= velocity <= 1:
                    raise UnitError("velocity is from 0 to 1")
            except UnitError as e:
                self.err(f"velocity: {e}", line, node=name, key="velocity")
                return
        length = None
        if "length" in ev:
            if action != "note":
                self.err("'length' goes with a note", line, node=name, key="length")
                return
            try:
                length = parse_time(ev["length"])
            except UnitError as e:
                self.err(f"length: {e}", line, node=name, key="length")
                return
        for f in pitches:
            spec.score.append(Event(t, action, name, value=velocity, pitch=f, line=line))
            if length is not None:
                spec.score.append(Event(t + length, "note_off", name, pitch=f, line=line))

    def _score(self, spec: PatchSpec, score, line):
        if not isinstance(score, list):
            self.err("score is a list of events like {at: 1.5, set: filter.cutoff, to: 800}", line, key="score")
            return
        for i, ev in enumerate(score):
            eline = score.lines[i] if isinstance(score, LineList) else line
            if not isinstance(ev, dict):
                self.err("a score event is a mapping like {at: 1.5, trigger: env}", eline, key="score")
                continue
            self._event(spec, ev, getattr(ev, "line", eline))
        spec.score.sort(key=lambda e: e.time)  # stable: same-time events keep their order

    def _event(self, spec: PatchSpec, ev, line):
        actions = [a for a in ("set", "ramp", "trigger", "release", "note", "note_off", "all_off") if a in ev]
        allowed = {"at", "set", "ramp", "trigger", "release", "note", "note_off", "all_off", "pitch", "to", "over",
                   "curve", "length", "velocity"}
        for k in ev:
            if k not in allowed:
                self.err(f"unknown key '{k}' in a score event", line, key=str(k),
                         hint=suggest(k, allowed) or "valid: " + ", ".join(sorted(allowed)))
                return
        if len(actions) != 1:
            self.err("a score event needs exactly one of set, ramp, trigger, release, note, note_off, all_off",
                     line, key="score")
            return
        if "at" not in ev:
            self.err("a score event needs 'at' (its time, e.g. at: 1.5 or at: 1500ms)", line, key="at")
            return
        try:
            t = parse_time(ev["at"])
            if t < 0:
                raise UnitError("a time cannot be negative")
        except UnitError as e:
            self.err(f"at: {e}", line, key="at")
            return
        action = actions[0]
        target = ev[action]
        if action in ("note", "note_off", "all_off"):
            self._note_event(spec, ev, line, t, action, str(target))
            return
        if action in ("trigger", "release"):
            name = str(target)
            if name not in spec.nodes:
                self.err(f"{action}: no node '{name}'", line, key=action, hint=suggest(name, spec.nodes))
                return
            ns = spec.nodes[name]
            if action not in ns.cls.events:
                accepts = ", ".join(ns.cls.events) or "none"
                self.err(f"a {ns.type} node takes no '{action}' events (it takes: {accepts})", line,
                         node=name, key=action)
                return
            velocity = 1.0
            if "velocity" in ev:
                try:
                    velocity = parse_value(ev["velocity"], "x")
                except UnitError as e:
                    self.err(f"velocity: {e}", line, node=name, key="velocity")
                    return
            spec.score.append(Event(t, action, name, value=velocity, line=line))
            if "length" in ev:
                if action != "trigger" or "release" not in ns.cls.events:
                    self.err("'length' goes with a trigger of a node that takes release", line, node=name, key="length")
                    return
                try:
                    length = parse_time(ev["length"])
                except UnitError as e:
                    self.err(f"length: {e}", line, node=name, key="length")
                    return
                spec.score.append(Event(t + length, "release", name, line=line))
            return
        # set / ramp: "node.param"
        if not isinstance(target, str) or target.count(".") != 1:
            self.err(f"{action} names a param as NODE.PARAM, got {target!r}", line, key=action)
            return
        name, param = target.split(".")
        if name not in spec.nodes:
            self.err(f"{action}: no node '{name}'", line, key=action, hint=suggest(name, spec.nodes))
            return
        params = spec.nodes[name].ports()[2]
        if param not in params:
            self.err(f"'{spec.nodes[name].type}' has no param '{param}'", line, node=name, key=action,
                     hint=suggest(param, params) or "params: " + ", ".join(params))
            return
        p = params[param]
        if "to" not in ev:
            self.err(f"{action} needs 'to: VALUE'", line, node=name, key=param)
            return
        try:
            v = parse_value(ev["to"], p.unit)
        except UnitError as e:
            self.err(f"type mismatch for '{param}': {e}", line, node=name, key=param)
            return
        lo, hi = p.range
        if not lo <= v <= hi:
            unit = f" {p.unit}" if p.unit else ""
            self.err(f"{param} = {v:g}{unit} is out of range [{lo:g}, {hi:g}]{unit}", line, node=name, key=param)
            return
        seconds = None
        if "over" in ev:
            try:
                seconds = parse_time(ev["over"])
            except UnitError as e:
                self.err(f"over: {e}", line, node=name, key="over")
                return
        elif action == "ramp":
            self.err("ramp needs 'over: DURATION'", line, node=name, key=param)
            return
        curve = ev.get("curve", "lin")
        if curve not in ("lin", "exp"):
            self.err(f"curve must be lin or exp, got {curve!r}", line, node=name, key="curve")
            return
        spec.score.append(Event(t, "ramp", name, param, v, seconds, curve, line))
