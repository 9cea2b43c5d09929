"""Polyphony: one voice written once, played as N voices from note events.

A patch defines a voice as a sub-patch under the top-level ``voices`` key
(or in a YAML file of its own) and plays it with a ``poly`` node::

    voices:
      pluck:
        nodes:
          env: {type: adsr, attack: 5ms, decay: 0.3, sustain: 0.2, release: 0.4}
          osc: {type: saw, freq: pitch}
          amp: {type: gain, in: osc, gain: env}
        out: amp
    nodes:
      keys: {type: poly, voice: pluck, voices: 8}
    out: keys
    score:
      - {at: 0, note: keys, pitch: [C4, E4, G4], velocity: 0.8, length: 1}

Inside a voice, three names are given per voice: ``pitch`` (Hz), ``velocity``
(0..1) and ``gate`` (1 while the note is held); names that are not the
voice's own refer to the patch's top-level nodes (one LFO for all voices).

The patch loader expands the poly node into N copies of the voice, named
``keys/0/osc``, ``keys/1/osc``..., and the ``poly`` node itself sums them.
The copies are identical nodes of one level, so the engine runs each kind
as one batched call: sixteen voices cost little more than one.

**Voice allocation** (:class:`VoiceAllocator`, run by the engine at each
note event's exact sample): a note goes to a free voice (the one released
longest ago); with none free, a held voice is stolen (the oldest note, or
the quietest voice). A voice that is still sounding (peak above -60 dB in
the last block) is faded out over ``fade`` seconds before it is reused: the
new note starts ``fade`` late but no click is heard. Every note starts on
a freshly reset voice (envelopes from 0, oscillators from phase 0, strings
still), so a note sounds the same whichever voice plays it. A note
triggers every node in the voice that takes ``trigger`` events (envelopes,
strings) with its velocity and sets ``pitch``/``velocity``/``gate``; a
note-off releases them.
"""
from __future__ import annotations

import os
import re

import numba
import numpy as np

from .errors import PatchError, Where
from .node import Input, Node, Option, Output, Param
from .registry import register

IMPLICIT = {
    "pitch": {"type": "constant", "unit": "Hz", "value": 440.0},
    "velocity": {"type": "constant", "value": 1.0},
    "gate": {"type": "constant", "value": 0.0},
}
#: a voice whose last block peaked above this is faded before it is reused
SOUNDING = 1e-3


@numba.njit(cache=True, nogil=True)
def _poly_sum(xs, levels, gain, y, n, peaks):
    """y = gain * sum_v xs[v] * levels[v]; peaks[v] = max |xs[v]| over the block."""
    cx = xs.shape[1]
    for c in range(y.shape[0]):
        for i in range(n):
            y[c, i] = 0.0
    for v in range(xs.shape[0]):
        pk = 0.0
        lv = levels[v]
        for c in range(y.shape[0]):
            xc = xs[v, min(c, cx - 1)]
            yc = y[c]
            for i in range(n):
                s = xc[i]
                a = abs(s)
                if a > pk:
                    pk = a
                yc[i] += s * lv[i]
        if n > 0:
            peaks[v] = pk
    for c in range(y.shape[0]):
        for i in range(n):
            y[c, i] *= gain[i]


@register("poly")
class Poly(Node):
    """Plays a voice (a sub-patch) as N voices, allocated from note events.

    Write the voice under the top-level ``voices`` key (or in its own YAML
    file) and send ``note`` events (score, OSC, MIDI); see docs/polyphony.md.

    Example: ``keys: {type: poly, voice: pluck, voices: 16, steal: oldest}``
    """

    options = {
        "voice": Option(None, kind=str, required=True,
                        doc="the voice: a name under the top-level 'voices' key, or a YAML file"),
        "voices": Option(8, kind=int, doc="number of voices (1..128)"),
        "steal": Option("oldest", choices=("oldest", "quietest", "none"),
                        doc="with every voice busy: steal the oldest note, the quietest voice, or drop the new note"),
        "fade": Option(0.005, kind=float, doc="seconds to fade a sounding voice out before it is reused"),
        "glide": Option(0.0, kind=float, doc="seconds for a voice's pitch to slide to a new note (0: jump)"),
    }
    params = {"gain": Param(1.0, (0.0, 16.0), "x", doc="output gain (or -6dB)")}
    events = {"note": "start a note (pitch, velocity)", "note_off": "release a note (pitch)",
              "all_off": "release every note"}

    @classmethod
    def ports(cls, opts):
        count = int(opts.get("voices") or 8)
        inputs = {f"v{i}": Input(f"voice {i}") for i in range(count)}
        params = dict(cls.params)
        params.update({f"level{i}": Param(1.0, (0.0, 1.0), doc=f"level of voice {i} (the allocator's fades)",
                                          smooth=0.0) for i in range(count)})
        return inputs, cls.outputs, params

    def prepare(self, ctx):
        super().prepare(ctx)
        from .node import stacked_rows

        count = int(self.opts["voices"])
        xs = [self.inp[f"v{i}"] for i in range(count)]
        self._xs = stacked_rows(xs)
        if self._xs is None:  # voices that did not batch: gather them
            self._src = xs
            self._xs = np.zeros((count,) + xs[0].shape, dtype=np.float32)
        else:
            self._src = None
        levels = [self.par[f"level{i}"] for i in range(count)]
        self._levels = stacked_rows(levels)
        if self._levels is None:
            self._lsrc = levels
            self._levels = np.zeros((count, ctx.block_size), dtype=np.float32)
        else:
            self._lsrc = None
        self.peaks = np.zeros(count)

    def reset(self):
        self.peaks[:] = 0.0

    def process(self, n, t):
        if self._src is not None:
            for i, x in enumerate(self._src):
                self._xs[i, :, :n] = x[:, :n]
        if self._lsrc is not None:
            for i, x in enumerate(self._lsrc):
                self._levels[i, :n] = x[:n]
        _poly_sum(self._xs, self._levels, self.par["gain"], self.out["out"], n, self.peaks)

    def event(self, kind, value=1.0):
        pass  # the engine's VoiceAllocator handles notes


# ---------------------------------------------------------------- expansion
class VoiceInfo:
    """What the allocator needs to know about a poly node's voices (filled by the loader)."""

    def __init__(self, name, count):
        self.name = name
        self.count = count
        self.nodes: list[list[str]] = [[] for _ in range(count)]  # every node of each voice
        self.implicit: set[str] = set()  # which of pitch/velocity/gate the voice uses
        self.triggers: list[str] = []  # local names of nodes taking trigger / release
        self.releases: list[str] = []

    def node(self, v, local):
        return f"{self.name}/{v}/{local}"


def load_template(parser, templates, ref, line, name):
    """The voice template ``ref``: a key of ``templates`` or a YAML file beside the patch."""
    if isinstance(templates, dict) and ref in templates:
        return templates[ref], parser.file
    if isinstance(ref, str) and ref.endswith((".yaml", ".yml")):
        from .patch import load_yaml

        base = os.path.realpath(parser.base_dir)
        path = os.path.realpath(os.path.join(base, ref))
        if os.path.isabs(ref) or os.path.commonpath([base, path]) != base:
            raise PatchError(f"voice file '{ref}' must be inside the patch's folder", Where(parser.file, line, name, "voice"))
        try:
            with open(path, encoding="utf-8") as fh:
                return load_yaml(fh.read(), path), path
        except OSError as e:
            raise PatchError(f"cannot read voice file '{ref}': {e.strerror}",
                             Where(parser.file, line, name, "voice")) from None
    known = list(templates) if isinstance(templates, dict) else []
    raise PatchError(f"no voice '{ref}'", Where(parser.file, line, name, "voice"),
                     hint=("voices defined: " + ", ".join(known)) if known else
                     "define it under the top-level 'voices' key, or name a .yaml file")


_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def expand(parser, name, body, templates):
    """The nodes of ``name: {type: poly, ...}``: N copies of its voice, then the poly node itself.

    Returns ``(nodes, info)``: an ordered ``{node name: body}`` and a :class:`VoiceInfo`.
    """
    from . import registry
    from .patch import LineDict

    line = body.line_of("type") if hasattr(body, "line_of") else None
    count = body.get("voices", 8)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 128:
        raise PatchError(f"voices must be a whole number from 1 to 128, got {count!r}",
                         Where(parser.file, body.line_of("voices") if hasattr(body, "line_of") else line, name, "voices"))
    if "voice" not in body:
        raise PatchError("a poly node needs 'voice: NAME' (a voice under the top-level 'voices' key)",
                         Where(parser.file, line, name, "voice"))
    tpl, tfile = load_template(parser, templates, body["voice"], body.line_of("voice") if hasattr(body, "line_of") else line, name)
    tline = getattr(tpl, "line", line)
    if not isinstance(tpl, dict) or not isinstance(tpl.get("nodes"), dict) or "out" not in tpl:
        raise PatchError("a voice is a mapping with 'nodes' and 'out' (like a small patch)",
                         Where(tfile, tline, name, "voice"))
    for k in tpl:
        if k not in ("nodes", "out", "description", "title"):
            raise PatchError(f"unknown key '{k}' in voice '{body['voice']}'", Where(tfile, tpl.line_of(k) if hasattr(tpl, "line_of") else tline, name, str(k)),
                             hint="a voice has 'nodes' and 'out'")
    local = dict(tpl["nodes"])
    for k in local:
        if k in IMPLICIT:
            raise PatchError(f"'{k}' is given to every voice; name the node otherwise",
                             Where(tfile, tpl["nodes"].line_of(k) if hasattr(tpl["nodes"], "line_of") else tline, k))
    info = VoiceInfo(name, count)

    def rewrite(value, v, used):
        if isinstance(value, str):
            m = _REF.match(value.strip())
            if m and (m.group(1) in local or m.group(1) in IMPLICIT):
                if m.group(1) in IMPLICIT:
                    used.add(m.group(1))
                return info.node(v, m.group(1)) + (m.group(2) or "")
            return value
        if isinstance(value, list):
            out = type(value)() if isinstance(value, list) else []
            out.extend(rewrite(x, v, used) for x in value)
            if hasattr(value, "lines"):
                out.lines = list(value.lines)
            return out
        if isinstance(value, dict) and "from" in value:
            out = LineDict(value)
            out.line = getattr(value, "line", 0)
            out.lines = dict(getattr(value, "lines", {}))
            out["from"] = rewrite(value["from"], v, used)
            return out
        return value

    nodes: dict = {}
    used: set[str] = set()
    for v in range(count):
        for lname, lbody in local.items():
            if not isinstance(lbody, dict) or "type" not in lbody:
                nodes[info.node(v, lname)] = lbody  # the checker words the error
                continue
            try:
                cls = registry.get(str(lbody["type"]))
            except PatchError:
                cls = None
            copy = LineDict()
            copy.line = getattr(lbody, "line", 0)
            copy.lines = dict(getattr(lbody, "lines", {}))
            for k, val in lbody.items():
                copy[k] = val if (k == "type" or (cls is not None and k in cls.options)) else rewrite(val, v, used)
            nodes[info.node(v, lname)] = copy
            info.nodes[v].append(info.node(v, lname))
            if v == 0 and cls is not None:
                if "trigger" in cls.events:
                    info.triggers.append(lname)
                if "release" in cls.events:
                    info.releases.append(lname)
    for v in range(count):
        for iname in sorted(used):
            ib = LineDict(IMPLICIT[iname])
            ib.line = tline
            ib.lines = {k: tline for k in ib}
            nodes[info.node(v, iname)] = ib
            info.nodes[v].append(info.node(v, iname))
    info.implicit = used
    poly = LineDict()
    poly.line = getattr(body, "line", 0)
    poly.lines = {}
    for k, val in body.items():
        poly[k] = val
        poly.lines[k] = body.line_of(k) if hasattr(body, "line_of") else line
    for v in range(count):
        poly[f"v{v}"] = rewrite(tpl["out"], v, set())
        poly.lines[f"v{v}"] = tpl.line_of("out") if hasattr(tpl, "line_of") else tline
    nodes[name] = poly
    return nodes, info


# ---------------------------------------------------------------- allocation
class _Voice:
    __slots__ = ("pitch", "held", "since", "released_at", "pending_release", "starting")

    def __init__(self):
        self.pitch = None
        self.held = False
        self.since = -1
        self.released_at = -1
        self.pending_release = False
        self.starting = False


class VoiceAllocator:
    """Maps note events onto the voices of one ``poly`` node (run by the engine, in its thread).

    Args:
        info: the poly node's :class:`VoiceInfo`.
        engine: the running :class:`~patchlib.engine.Engine` (for params, events and resets).
    """

    def __init__(self, info: VoiceInfo, engine):
        self.info = info
        self.engine = engine
        node = engine.nodes[info.name]
        self.node = node
        self.fade = max(0.0, float(node.opts.get("fade") or 0.0))
        self.glide = max(0.0, float(node.opts.get("glide") or 0.0))
        self.steal = node.opts.get("steal") or "oldest"
        self.reset()

    def reset(self):
        self.voices = [_Voice() for _ in range(self.info.count)]
        self.stolen = 0
        self.dropped = 0

    # the engine calls this at the event's sample
    def on_event(self, ev, frame: int) -> None:
        if ev.action == "note":
            self.note_on(float(ev.pitch), float(ev.value), frame)
        elif ev.action == "note_off":
            self.note_off(None if ev.pitch is None else float(ev.pitch), frame)
        elif ev.action == "all_off":
            self.note_off(None, frame, every=True)
        elif ev.action == "voice_start":
            self._start(int(ev.param), float(ev.pitch), float(ev.value), frame)

    def note_on(self, pitch: float, velocity: float, frame: int) -> None:
        free = [i for i, v in enumerate(self.voices) if not v.held and not v.starting]
        if free:
            i = min(free, key=lambda k: (self.voices[k].released_at, k))
        elif self.steal == "none":
            self.dropped += 1
            return
        else:
            self.stolen += 1
            if self.steal == "quietest":
                i = min(range(len(self.voices)), key=lambda k: (self.node.peaks[k], self.voices[k].since))
            else:
                i = min(range(len(self.voices)), key=lambda k: (self.voices[k].since, k))
        v = self.voices[i]
        v.pitch, v.held, v.since, v.pending_release = pitch, True, frame, False
        fade = int(round(self.fade * self.engine.sample_rate))
        if self.node.peaks[i] > SOUNDING and fade > 0:  # (with fade 0 a sounding voice is cut: a click)
            # fade the old sound out, then start the new note on a reset voice
            v.starting = True
            self.engine.params[self.info.name][f"level{i}"].ramp(0.0, fade / self.engine.sample_rate)
            from .patch import Event

            self.engine._post(Event(0.0, "voice_start", self.info.name, str(i), velocity, pitch=pitch),
                              frame + fade)
        else:
            self._start(i, pitch, velocity, frame)

    def _start(self, i: int, pitch: float, velocity: float, frame: int) -> None:
        eng, info, v = self.engine, self.info, self.voices[i]
        v.starting = False
        if v.pitch != pitch:  # stolen again while fading: the newest note wins
            pitch = v.pitch
        for name in info.nodes[i]:  # every note starts from a clean voice
            eng.reset_node(name)
        eng.params[info.name][f"level{i}"].set(1.0, 0.0)
        if "pitch" in info.implicit:
            eng.params[info.node(i, "pitch")]["value"].set(pitch, self.glide)
        if "velocity" in info.implicit:
            eng.params[info.node(i, "velocity")]["value"].set(velocity, 0.0)
        if "gate" in info.implicit:
            eng.params[info.node(i, "gate")]["value"].set(1.0, 0.0)
        for local in info.triggers:
            eng.nodes[info.node(i, local)].event("trigger", velocity)
        if v.pending_release:
            self._release(i, frame)

    def note_off(self, pitch, frame: int, every: bool = False) -> None:
        held = [i for i, v in enumerate(self.voices) if v.held and (every or pitch is None or v.pitch == pitch)]
        if not every and pitch is not None:
            held = sorted(held, key=lambda k: self.voices[k].since)[:1]  # the oldest note of that pitch
        for i in held:
            v = self.voices[i]
            if v.starting:
                v.pending_release = True
            else:
                self._release(i, frame)

    def _release(self, i: int, frame: int) -> None:
        eng, info, v = self.engine, self.info, self.voices[i]
        v.held, v.released_at, v.pending_release = False, frame, False
        if "gate" in info.implicit:
            eng.params[info.node(i, "gate")]["value"].set(0.0, 0.0)
        for local in info.releases:
            eng.nodes[info.node(i, local)].event("release", 0.0)
