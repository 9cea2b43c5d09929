"""Edit a playing patch: add, remove and connect nodes, load, save and hot-reload, without a dropout.

A :class:`LiveSession` holds the patch being played as a document (the
patch's plain data, as its YAML reads). Every edit makes a changed copy of
the document and compiles it into a new engine **off the audio thread**;
only when that worked does it swap the new engine in at a block boundary
with a short crossfade, the new engine taking over the running state of
every node that did not change (see :mod:`patchlib.takeover`: a ringing
string keeps ringing, an LFO keeps its phase, a value set over OSC stays).
An edit that fails (an unknown type, a cycle without a delay, a model that
does not load) raises with the reason, and the running patch and the
document stay exactly as they were.

Edits (the OSC addresses of :mod:`patchlib.osc` call the same methods)::

    /patch/add NAME TYPE [KEY VALUE]...    add a node; a VALUE in {...} or [...] is read as YAML
                                           (flow style, safe): cutoff "{from: lfo, range: [300, 3000]}"
    /patch/remove NAME                     remove a node and every connection from it
    /patch/connect SOURCE[.PORT] NODE.PORT [LO HI [CURVE]]
                                           PORT an input (a list input such as mix's 'in' gets
                                           one more source) or a param (modulated, over LO..HI)
    /patch/disconnect NODE.PORT [SOURCE]   an input or a modulated param (it holds its last value)
    /patch/load PATH                       another patch file (in the patch's folder), crossfaded
    /patch/save PATH                       the document as it is now, as YAML

``watch()`` starts a thread that reloads the patch file whenever it changes
(``patchlib play --watch``): a valid file replaces the running patch with a
crossfade, keeping the state of unchanged nodes; an invalid one is reported
(file, line, reason) and the sound goes on.
"""
from __future__ import annotations

import copy
import hashlib
import os
import threading
import time
from typing import Any, Callable

import yaml

from . import registry
from .errors import PatchError
from .patch import PatchParser, load_patch, load_yaml
from .realtime import make_engine
from .takeover import plan_takeover


class EditError(ValueError):
    """An edit that was refused (the running patch is unchanged)."""


def plain(data):
    """The patch's data without the loader's line-number classes (for copying and saving)."""
    if isinstance(data, dict):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    if isinstance(data, str):
        return str(data)
    return data


class LiveSession:
    """The patch a :class:`~patchlib.realtime.Player` plays, editable while it plays.

    Args:
        player: the running player (its engine is the patch's).
        source: the patch file it was loaded from, or its data (a dict).
        crossfade_s: crossfade of each swap.
        on_report: called with a line for each reload or failure of ``watch()``.

    Edits are serialised (one at a time, from any thread); each returns a
    short list describing what it did (the ``/done`` reply of OSC).
    """

    def __init__(self, player, source, *, crossfade_s: float = 0.02, on_report: Callable[[str], None] | None = None,
                 on_warning=None):
        self.player = player
        self.crossfade_s = float(crossfade_s)
        self.on_report = on_report or (lambda line: None)
        self.on_warning = on_warning
        self._lock = threading.RLock()
        self.edits = 0
        self.failed = 0
        self.reloads = 0
        self.last_takeover = None
        if isinstance(source, (str, os.PathLike)):
            self.file = os.fspath(source)
            self.base_dir = os.path.dirname(os.path.abspath(self.file))
            self._seen = _fingerprint(self.file)  # the version playing (hot reload compares with it)
            with open(self.file, encoding="utf-8") as fh:
                self.doc = plain(load_yaml(fh.read(), self.file))
        else:
            self.file = self._seen = None
            self.base_dir = player.engine.spec.base_dir
            self.doc = plain(source)
        self._watch_thread = None
        self._watch_stop = threading.Event()

    # ------------------------------------------------------------ the edits
    def add(self, name: str, type_name: str, settings: dict | None = None) -> list:
        """Add node ``name`` of type ``type_name`` with ``settings`` (inputs, params, options)."""
        name = _name(name)
        doc = self._copy()
        if name in doc["nodes"]:
            raise EditError(f"there is a node '{name}' already (remove it first, or pick another name)")
        node = {"type": str(type_name)}
        node.update({str(k): _value(v) for k, v in (settings or {}).items()})
        doc["nodes"][name] = node
        self._commit(doc)
        return [name]

    def remove(self, name: str) -> list:
        """Remove node ``name`` and every connection from it; returns the ``NODE.PORT``\\ s it fed."""
        doc = self._copy()
        self._need(doc, name)
        if doc.get("out") == name:
            raise EditError(f"'{name}' is the patch's output: connect another node to 'out' first "
                            f"(/patch/connect NODE out)")
        del doc["nodes"][name]
        dropped = []
        for other, settings in doc["nodes"].items():
            if not isinstance(settings, dict):
                continue
            inputs, params = _ports(settings)
            for key in list(settings):
                if key not in inputs and key not in params and key not in _list_inputs(settings):
                    continue
                val = settings[key]
                if _refers(val, name):
                    del settings[key]
                    dropped.append(f"{other}.{key}")
                elif isinstance(val, list) and any(_refers(v, name) for v in val):
                    settings[key] = [v for v in val if not _refers(v, name)]
                    if not settings[key]:
                        del settings[key]
                    dropped.append(f"{other}.{key}")
        if isinstance(doc.get("score"), list):  # its events have nothing left to act on
            doc["score"] = [ev for ev in doc["score"] if not _event_names(ev, name)]
        self._commit(doc)
        return dropped

    def connect(self, source: str, target: str, *range_curve) -> list:
        """Connect ``source`` (``NODE`` or ``NODE.PORT``) to ``target`` (``NODE.PORT``, or ``out``)."""
        doc = self._copy()
        src_node = str(source).split(".", 1)[0]
        self._need(doc, src_node)
        if target == "out":
            doc["out"] = str(source)
            self._commit(doc)
            return [str(source), "out"]
        node, port = _split_target(target)
        settings = self._need(doc, node)
        inputs, params = _ports(settings)
        if port in inputs or port in _list_inputs(settings):
            if range_curve:
                raise EditError(f"'{port}' of '{node}' is an input: a range is for params")
            cur = settings.get(port)
            if isinstance(cur, list) or (port in _list_inputs(settings) and cur is not None):
                cur = cur if isinstance(cur, list) else [cur]
                settings[port] = cur + [str(source)]
            else:
                settings[port] = str(source)
        elif port in params:
            mod: dict[str, Any] = {"from": str(source)}
            if range_curve:
                if len(range_curve) not in (2, 3):
                    raise EditError("give LO HI [CURVE] after the target, or nothing")
                mod["range"] = [_value(range_curve[0]), _value(range_curve[1])]
                if len(range_curve) == 3:
                    mod["curve"] = str(range_curve[2])
            settings[port] = mod
        else:
            raise EditError(_no_port(node, settings, port))
        self._commit(doc)
        return [str(source), f"{node}.{port}"]

    def disconnect(self, target: str, source: str | None = None) -> list:
        """Disconnect an input or a modulated param of ``target`` (``NODE.PORT``).

        A list input loses ``source`` (or everything); a modulated param
        keeps the value it has now, as a constant.
        """
        doc = self._copy()
        node, port = _split_target(target)
        settings = self._need(doc, node)
        inputs, params = _ports(settings)
        cur = settings.get(port)
        if port not in inputs and port not in params and port not in _list_inputs(settings):
            raise EditError(_no_port(node, settings, port))
        if cur is None or (port in params and not isinstance(cur, dict)):
            raise EditError(f"'{node}.{port}' is not connected")
        if isinstance(cur, list) and source is not None:
            if not any(_refers(v, str(source).split(".", 1)[0]) for v in cur):
                raise EditError(f"'{source}' is not connected to '{node}.{port}'")
            rest = [v for v in cur if not _refers(v, str(source).split(".", 1)[0])]
            if rest:
                settings[port] = rest
            else:
                del settings[port]
        elif port in params:
            ps = self.player.engine.params.get(node, {}).get(port)
            if ps is not None:
                settings[port] = float(ps.value)
            else:
                del settings[port]
        else:
            del settings[port]
        self._commit(doc)
        return [f"{node}.{port}"]

    def load(self, path: str) -> list:
        """Play another patch file (crossfaded; nodes it shares with the running one keep their state)."""
        seen = _fingerprint(path)
        spec = load_patch(path)  # errors name the file and line
        with open(path, encoding="utf-8") as fh:
            doc = plain(load_yaml(fh.read(), path))
        with self._lock:
            self._swap(spec)
            self.doc, self.file, self._seen = doc, path, seen
            self.base_dir = os.path.dirname(os.path.abspath(path))
        return [os.path.basename(path)]

    def save(self, path: str) -> list:
        """Write the document as it is now (the running patch) as YAML."""
        with self._lock:
            text = yaml.safe_dump(self.doc, sort_keys=False, default_flow_style=None, allow_unicode=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)  # never a half-written patch
        return [os.path.basename(path)]

    def reload(self) -> list:
        """Re-read the patch file and play it if it is valid (errors name file and line)."""
        if self.file is None:
            raise EditError("this patch was not loaded from a file")
        out = self.load(self.file)
        self.reloads += 1
        return out

    # ------------------------------------------------------------ OSC
    def handle(self, address: str, args: list) -> list:
        """The :class:`~patchlib.osc.OscServer` ``on_edit`` hook: one ``/patch/...`` edit."""
        verb = address.rsplit("/", 1)[-1]
        try:
            if verb == "add":
                if len(args) < 2 or len(args) % 2:
                    raise EditError("usage: /patch/add NAME TYPE [KEY VALUE]...")
                settings = dict(zip(args[2::2], args[3::2]))
                self._inside_folder(args[1], settings)
                return self.add(args[0], args[1], settings)
            if verb == "remove":
                _arity(args, 1, 1, "NAME")
                return self.remove(args[0])
            if verb == "connect":
                _arity(args, 2, 5, "SOURCE NODE.PORT [LO HI [CURVE]]")
                return self.connect(str(args[0]), str(args[1]), *args[2:])
            if verb == "disconnect":
                _arity(args, 1, 2, "NODE.PORT [SOURCE]")
                return self.disconnect(str(args[0]), *(str(a) for a in args[1:]))
            if verb == "load":
                _arity(args, 1, 1, "PATH")
                return self.load(args[0])
            if verb == "save":
                _arity(args, 1, 1, "PATH")
                return self.save(args[0])
        except PatchError as e:
            raise EditError(e.message if hasattr(e, "message") else str(e)) from None
        raise EditError(f"unknown edit '{address}'")

    def _inside_folder(self, type_name, settings: dict) -> None:
        """A file named over the network (a sample, a model) must be inside the patch's folder."""
        cls = registry.get(type_name) if isinstance(type_name, str) else None
        if cls is None:
            return  # the compile names the unknown type
        base = os.path.realpath(self.base_dir)
        for key, value in settings.items():
            opt = cls.options.get(str(key))
            if opt is None or opt.kind != "path":
                continue
            text = str(value)
            full = os.path.realpath(os.path.join(base, text))
            if os.path.isabs(text) or text.startswith("~") or os.path.commonpath([base, full]) != base:
                raise EditError(f"'{key}: {text}': a file named over OSC must be inside the patch's folder "
                                f"(a path relative to it)")

    # ------------------------------------------------------------ hot reload
    def watch(self, interval: float = 0.25) -> None:
        """Reload the patch file whenever it changes (a thread; :meth:`stop_watching` ends it)."""
        if self.file is None:
            raise EditError("--watch needs a patch file")
        if self._watch_thread is not None:
            return
        self._watch_stop.clear()
        self._watch_thread = threading.Thread(target=self._watch_loop, args=(float(interval),),
                                              name="patch-watch", daemon=True)
        self._watch_thread.start()

    def stop_watching(self) -> None:
        t = self._watch_thread
        if t is not None:
            self._watch_stop.set()
            t.join(timeout=5)
            self._watch_thread = None

    def _watch_loop(self, interval: float) -> None:
        last = self._seen  # the version playing, or the last one that failed
        while not self._watch_stop.wait(interval):
            now = _fingerprint(self.file)
            if now == last or now is None:
                continue
            time.sleep(min(0.1, interval))  # an editor may write in several steps
            settled = _fingerprint(self.file)
            if settled != now:
                continue  # still being written: next round
            last = now
            self.check_and_reload()

    def check_and_reload(self) -> bool:
        """Reload now if the file is valid; report either way. Returns whether it was swapped in."""
        try:
            self.reload()
        except PatchError as e:
            self.failed += 1
            self.on_report(f"{e}\n(the patch playing now goes on)")
            return False
        except Exception as e:  # an engine that fails to build: same rule
            self.failed += 1
            self.on_report(f"{self.file}: {e}\n(the patch playing now goes on)")
            return False
        t = self.last_takeover
        self.on_report(f"reloaded {self.file}: {len(t.kept)} node(s) kept their state, "
                       f"{len(t.added)} added, {len(t.changed)} changed, {len(t.removed)} removed")
        return True

    # ------------------------------------------------------------ internals
    def _copy(self) -> dict:
        with self._lock:
            doc = copy.deepcopy(self.doc)
        if not isinstance(doc.get("nodes"), dict):
            doc["nodes"] = {}
        return doc

    def _need(self, doc, name):
        settings = doc["nodes"].get(name)
        if not isinstance(settings, dict):
            from .errors import suggest

            near = suggest(str(name), doc["nodes"])
            raise EditError(f"no node '{name}'" + (f" ({near})" if near else ""))
        return settings

    def _commit(self, doc: dict) -> None:
        """Compile ``doc`` and swap it in; on any error nothing changes."""
        try:
            spec = PatchParser(copy.deepcopy(doc), self.file, self.base_dir).parse()
        except PatchError as e:
            self.failed += 1
            raise EditError(_short(e)) from None
        with self._lock:
            try:
                self._swap(spec)
            except PatchError as e:
                self.failed += 1
                raise EditError(_short(e)) from None
            self.doc = doc
            self.edits += 1

    def _swap(self, spec) -> None:
        p = self.player
        self._wait_swapped()  # plan against the engine that will really be playing
        try:
            engine = make_engine(spec, block_size=p.block_size, sample_rate=p.sample_rate,
                                 input_channels=p.input_channels, on_warning=self.on_warning)
        except PatchError:
            raise
        except Exception as e:
            raise PatchError(f"the patch does not build: {e}") from None
        if engine.channels not in (1, p.channels):
            raise PatchError(f"the patch plays {engine.channels} channels; the stream has {p.channels}")
        plan = plan_takeover(p.engine, engine)
        p.swap(engine, self.crossfade_s, takeover=plan)
        self.last_takeover = plan
        if p.running:
            # until the crossfade is over: the next edit's compile (Python holding the GIL) then
            # never competes with the audio thread in the blocks that run two engines
            self._wait_swapped(until_faded=True)

    def _wait_swapped(self, timeout: float = 5.0, until_faded: bool = False) -> None:
        """Wait until the player has begun the swap asked before (so the next plan sees its engine)."""
        p = self.player
        busy = (lambda: p.swapping) if until_faded else (lambda: p._pending is not None)
        if not busy():
            return
        if not p.running:
            raise EditError("the previous edit is not playing yet (the player is stopped: render a block)")
        end = time.monotonic() + timeout
        while busy():
            if time.monotonic() > end:
                raise EditError("the audio thread did not pick up the previous edit in time")
            time.sleep(p.period / 4)


# ---------------------------------------------------------------- measuring
def measure_edits(n: int = 100, *, block_size: int = 256, sample_rate: int = 48000, seed: int = 7) -> dict:
    """Play a patch in real time (null backend) and apply ``n`` random valid edits, then ``n`` invalid ones.

    The edits add smooth sources (sines, triangles, LFOs), connect them to a
    mixer, remove them and change a filter, as a live coder would, back to
    back. Returns edits per second, the time an edit takes (compile, plan,
    swap and crossfade), underruns, and the largest sample-to-sample step
    at the swaps against the largest elsewhere (1.0: no click).
    """
    import random

    import numpy as np

    from .realtime import Player

    B, sr = int(block_size), int(sample_rate)
    patch = {"sample_rate": sr, "block_size": B,
             "nodes": {"osc": {"type": "sine", "freq": 220},
                       "filt": {"type": "lowpass", "in": "osc", "cutoff": 2000},
                       "bus": {"type": "mix", "in": ["filt"]},
                       "amp": {"type": "gain", "in": "bus", "gain": 0.25},
                       "lim": {"type": "limiter", "in": "amp"}},
             "out": "lim"}
    preload(["sine", "lfo", "triangle", "mix", "lowpass", "gain", "limiter"], sample_rate=sr, block_size=B)
    rng = random.Random(seed)
    times, swaps = [], []
    with Player(make_engine(PatchParser(copy.deepcopy(patch), None, os.getcwd()).parse()), "null",
                record_seconds=60) as player:
        begin = player._begin_swap

        def begin_swap():
            swaps.append(player.frames_played)
            begin()

        player._begin_swap = begin_swap
        live = LiveSession(player, patch)
        t0 = time.perf_counter()
        for k in range(n):
            t = time.perf_counter()
            _random_edit(rng, live, k)
            times.append(time.perf_counter() - t)
        took = time.perf_counter() - t0
        bad = 0
        for k in range(n):
            try:
                [lambda: live.add("y", "nope"), lambda: live.remove("lim"),
                 lambda: live.connect("lim", "osc.freq")][k % 3]()
            except EditError:
                bad += 1
        time.sleep(0.1)
        st = player.stats()
        y = player.backend.recording()[0]
    steps = np.abs(np.diff(y))
    near = np.zeros(len(steps), bool)
    for f in swaps:
        near[max(0, f - 1):f + 241 + int(0.02 * sr) + 1] = True
    return {"edits": n, "edits_per_s": n / took, "edit_ms_mean": 1e3 * float(np.mean(times)),
            "edit_ms_max": 1e3 * float(np.max(times)), "refused": bad, "underruns": st["underruns"],
            "blocks": st["blocks"], "swaps": st["swaps"],
            "step_ratio": float(steps[near].max() / steps[~near].max()) if (~near).any() else float("nan")}


def _random_edit(rng, live: LiveSession, k: int) -> None:
    nodes = live.doc["nodes"]
    extra = [n for n in nodes if n.startswith("x")]
    kind = rng.choice(["add", "add", "connect", "remove", "set"]) if extra else "add"
    if kind == "add":
        t = rng.choice(["sine", "lfo", "triangle"])
        live.add(f"x{k}", t, {"freq": rng.uniform(100, 300) if t != "lfo" else rng.uniform(1, 5)})
    elif kind == "connect":
        live.connect(rng.choice(extra), "bus.in")
    elif kind == "remove":
        live.remove(rng.choice(extra))
    else:
        doc = live._copy()
        doc["nodes"]["filt"]["q"] = rng.uniform(0.5, 2.0)
        live._commit(doc)


# ---------------------------------------------------------------- preloading
def preload(types=None, *, sample_rate: int = 48000, block_size: int = 256, progress=None) -> list[str]:
    """Load every node type's kernels now, before the stream starts.

    numba loads a compiled kernel from its cache on the kernel's first call,
    holding the interpreter lock for milliseconds (a neural model: a
    second); if that first call is the compile of a live edit while the
    patch plays, the audio thread waits and a block is late. So a live
    session (``patchlib play`` with OSC or ``--watch``) first renders, for
    each type, two copies of a node (the batched kernels), one with a
    param and its inputs driven by a signal (the modulated kernels).
    Returns the types that could not be built this way (they need settings
    or files: their kernels load at first use).
    """
    names = [t for t in (types or registry.all_types())
             if t != "poly" and not t.startswith(("nan_", "test_", "fold"))]
    failed = []
    for t in names:
        try:
            spec = PatchParser(_preload_patch(t, sample_rate), None, os.getcwd()).parse()
            make_engine(spec, block_size=block_size, sample_rate=sample_rate)
        except Exception:
            failed.append(t)
        if progress is not None:
            progress(t)
    return failed


def _preload_patch(tname: str, sr: int) -> dict:
    cls = registry.get(tname)
    settings = dict(getattr(cls, "contract_settings", None) or {})
    opts = {k: o.default for k, o in cls.options.items()}
    opts.update({k: v for k, v in settings.items() if k in cls.options})
    inputs, _, params = cls.ports(opts)
    node = {"type": tname, **settings}
    for port in inputs:
        if port not in settings:
            node[port] = "src"
    if tname == "mix":
        node["in"] = ["src", "src"]
    a, b = dict(node), dict(node)
    if params:
        pname, p = next(iter(params.items()))
        a[pname] = {"from": "src", "range": [float(p.range[0]), float(p.range[1])], "curve": "lin"}
    # the sources the contract test offers a type's ``contract_settings``
    nodes = {"src": {"type": "sine", "freq": 110}, "src2": {"type": "sine", "freq": 440},
             "clock": {"type": "square", "freq": 30}, "wild": {"type": "noise", "seed": 2}, "a": a, "b": b}
    if tname == "output":
        return {"sample_rate": sr, "nodes": {"src": nodes["src"], "o": {"type": "output", "in": "src"}}}
    nodes["sum"] = {"type": "mix", "in": ["a", "b"]}
    return {"sample_rate": sr, "nodes": nodes, "out": "sum"}


# ---------------------------------------------------------------- helpers
def _name(name) -> str:
    name = str(name)
    if not name or not all(c.isalnum() or c in "_-" for c in name) or not name[0].isalpha():
        raise EditError(f"'{name}' is not a node name (a letter, then letters, digits, '_' or '-')")
    return name


def _value(v):
    """An OSC argument as a patch value: ``{...}``/``[...]`` strings are YAML flow (safe), the rest as is."""
    if isinstance(v, str) and v.strip()[:1] in ("{", "["):
        try:
            return plain(yaml.safe_load(v))
        except yaml.YAMLError as e:
            raise EditError(f"cannot read {v!r}: {str(e).splitlines()[0]}") from None
    return v


def _ports(settings: dict):
    cls = registry.get(settings.get("type")) if isinstance(settings.get("type"), str) else None
    if cls is None:
        return {}, {}
    opts = {k: o.default for k, o in cls.options.items()}
    opts.update({k: v for k, v in settings.items() if k in cls.options})
    try:
        inputs, _, params = cls.ports(opts)
    except Exception:
        inputs, _, params = cls.inputs, cls.outputs, cls.params
    return inputs, params


def _list_inputs(settings: dict) -> set:
    return {"in"} if settings.get("type") == "mix" else set()


def _refers(value, name: str) -> bool:
    if isinstance(value, str):
        return value == name or value.startswith(name + ".")
    if isinstance(value, dict):
        return _refers(value.get("from"), name)
    return False


def _event_names(ev, name) -> bool:
    return isinstance(ev, dict) and any(ev.get(k) == name or (isinstance(ev.get(k), str) and
                                        ev[k].startswith(name + ".")) for k in ev if k != "at")


def _split_target(target: str):
    node, _, port = str(target).partition(".")
    if not node or not port:
        raise EditError(f"'{target}' names no port: give NODE.PORT (an input or a param)")
    return node, port


def _no_port(node, settings, port) -> str:
    inputs, params = _ports(settings)
    have = ", ".join(list(inputs) + list(params)) or "none"
    return f"'{node}' ({settings.get('type')}) has no input or param '{port}' (it has: {have})"


def _arity(args, lo, hi, usage) -> None:
    if not lo <= len(args) <= hi:
        raise EditError(f"usage: {usage}")


def _short(e: PatchError) -> str:
    return str(e).strip()


def _fingerprint(path):
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            return st.st_size, hashlib.sha1(fh.read()).hexdigest()
    except OSError:
        return None
