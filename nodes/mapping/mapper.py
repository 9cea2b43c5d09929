"""The ``mapper`` node: N control inputs -> M outputs 0..1 through a model trained on recorded examples.

Workflow (Wekinator's): set the outputs you want (by hand, or over OSC with
a slider), *record* while you hold a gesture (every input frame is stored
with the current outputs), *train* (a control thread; seconds at most),
*run* (the model maps inputs to outputs on the control grid of every block).

Threads. Everything the audio thread reads lives on a :class:`MapperCore`
as plain attributes that other threads *replace* (never mutate): the model,
the latest OSC input values, the hand-set outputs, the running flag. One
attribute read per block, no lock, no allocation. Examples, training and
files are the control threads' business (a lock the audio thread never
takes). Inputs connected to signals are recorded by the audio thread into a
preallocated ring, drained by a control thread (:meth:`MapperCore.drain`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections import deque

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _models as _m

log = logging.getLogger(__name__)

MAX_PORTS = 64
#: rows of the audio thread's recording ring (drained every few ms by a control thread)
RING = 4096


class MapperCore:
    """A mapper's examples, model and modes, shared by the node, an OSC server and the CLI.

    Args:
        n_in, n_out: input and output counts.
        kind: ``knn``, ``mlp``, ``linear`` or ``poly`` (continuous outputs).
        classes: per output 0 (continuous, 0..1) or K (a kNN classifier, classes 1..K).
        k, degree, hidden, seed, max_seconds: training settings (see :func:`_models.fit`).

    Thread rules: :meth:`feed`, :meth:`set_outputs` and the mode switches
    may be called from any thread; :meth:`train`, :meth:`save`, :meth:`load`
    from control threads (never the audio thread).
    """

    def __init__(self, n_in: int, n_out: int, *, kind: str = "mlp", classes=None, k: int = 1, degree: int = 2,
                 hidden=(16, 16), seed: int = 0, max_seconds: float = 10.0, input_names=None, output_names=None,
                 initial=None, gestures: int = 0):
        if kind not in _m.KINDS:
            raise ValueError(f"unknown model type {kind!r}: one of {', '.join(_m.KINDS)}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.kind, self.k, self.degree, self.hidden = kind, int(k), int(degree), tuple(int(h) for h in hidden)
        self.seed, self.max_seconds = int(seed), float(max_seconds)
        self.classes = np.zeros(self.n_out, np.int64) if classes is None else np.asarray(classes, np.int64)
        if self.classes.shape != (self.n_out,) or np.any(self.classes < 0) or np.any(self.classes == 1):
            raise ValueError(f"classes: one count per output ({self.n_out}): 0 (continuous) or K >= 2")
        self.input_names = list(input_names or [f"in{j}" for j in range(self.n_in)])
        self.output_names = list(output_names or [f"out{o}" for o in range(self.n_out)])
        # ---- read by the audio thread (replaced whole, never mutated)
        self.model: _m.Model | None = None
        self.serial = 0  # bumped with every new model: the node re-evaluates
        self.running = False
        self.recording = False
        self.osc_in = np.zeros(self.n_in)
        init = np.where(self.classes > 0, 1.0, 0.0) if initial is None else np.asarray(initial, float)
        self.manual = None  # (Wekinator units, normalised): one tuple, so a reader never sees half an update
        self.set_outputs(init)
        #: whole-gesture recognition (DTW) over the OSC input frames, with K gestures (0: none)
        self.gestures = _m.GestureRecognizer(self.n_in, gestures) if gestures else None
        self.gesture_level = 0.0  # the last gesture recognised, k / K (0: none): the node's 'gesture' port
        self._dtw_rec = None  # (gesture number, frames) while recording a gesture
        self._match = 0
        # ---- control side
        self._lock = threading.Lock()  # examples (never taken on the audio thread)
        self._drain_lock = threading.Lock()
        self._X: list = []
        self._Y: list = []
        #: set by the first OSC input frame: from then on OSC values replace a node's input signals
        self.osc_seen = False
        self._nodes: weakref.WeakSet = weakref.WeakSet()
        self.messages: deque = deque(maxlen=50)
        self.training = False
        self._cancel = threading.Event()

    # ------------------------------------------------------------ inputs and outputs (any thread)
    def check_inputs(self, values) -> np.ndarray:
        try:
            x = np.array(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"inputs must be {self.n_in} numbers") from None
        if x.size != self.n_in:
            raise ValueError(f"expected {self.n_in} inputs, got {x.size}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"inputs hold NaN or inf: {x.tolist()} (ignored)")
        return x

    def feed(self, values) -> np.ndarray | None:
        """New input values (from OSC): the node reads them at its next block; recorded if recording.

        Returns the outputs in Wekinator units when running with a model
        (what ``/wek/outputs`` sends), else ``None``. ``ValueError`` for a
        wrong count or NaN: nothing changes.
        """
        x = self.check_inputs(values)
        self.osc_in = x  # one reference assignment: the audio thread sees the old or the new array
        self.osc_seen = True
        if self.recording:
            with self._lock:
                self._X.append(x)
                self._Y.append(self.manual[0])
        rec = self._dtw_rec
        if rec is not None:
            rec[1].append(x)
        g = self.gestures
        if g is not None and self.running and g.threshold is not None:
            k = g.step(x)
            if k:
                self._match = k
                self.gesture_level = k / g.gestures
        model = self.model
        if self.running and model is not None:
            return model.predict(x)
        return None

    def set_outputs(self, values) -> None:
        """The outputs to record (Wekinator units), also what the node plays when not running."""
        try:
            y = np.array(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"outputs must be {self.n_out} numbers") from None
        if y.size != self.n_out:
            raise ValueError(f"expected {self.n_out} output values, got {y.size}")
        if not np.all(np.isfinite(y)):
            raise ValueError("output values hold NaN or inf (ignored)")
        for o, K in enumerate(self.classes):
            if K > 0 and not (1 <= y[o] <= K and y[o] == round(y[o])):
                raise ValueError(f"output {o + 1} ({self.output_names[o] if hasattr(self, 'output_names') else o}) "
                                 f"is a classifier: a class number 1..{K}, got {y[o]:g}")
        if np.any((self.classes == 0) & ((y < 0) | (y > 1))):
            raise ValueError(f"continuous outputs are 0..1, got {y.tolist()}")
        n = _m.normalise_outputs(y[None, :], self.classes)[0]
        self.manual = (y, n)

    @property
    def manual_w(self) -> np.ndarray:
        return self.manual[0]

    def pop_match(self) -> int:
        """The gesture recognised by the last :meth:`feed` (0: none); the feeding thread's call."""
        k, self._match = self._match, 0
        return k

    def start_dtw_recording(self, gesture: int) -> None:
        g = self.gestures
        if g is None:
            raise ValueError("this mapper recognises no gestures (set its 'gestures' option to their number)")
        if isinstance(gesture, bool) or not isinstance(gesture, (int, float)) or gesture != int(gesture) \
                or not 1 <= gesture <= g.gestures:
            raise ValueError(f"startDtwRecording takes a gesture number 1..{g.gestures}, got {gesture!r}")
        self._dtw_rec = (int(gesture), [])

    def stop_dtw_recording(self) -> int:
        """End a gesture's recording: it becomes a template; returns its frame count."""
        rec, self._dtw_rec = self._dtw_rec, None
        if rec is None:
            return 0
        label, frames = rec
        if len(frames) < 2:
            raise ValueError(f"gesture {label}: {len(frames)} input frame(s) recorded, at least 2 needed (ignored)")
        with self._lock:
            self.gestures.add(label, np.array(frames))
        return len(frames)

    def outputs_now(self) -> np.ndarray:
        """Where the node's outputs are heading, in Wekinator units (else the hand-set values)."""
        for node in list(self._nodes):
            st = getattr(node, "state", None)
            if st is not None:
                return self.to_wek(st[:self.n_out])
        return self.manual_w.copy()

    def to_wek(self, yn) -> np.ndarray:
        y = np.array(yn, dtype=np.float64)
        K = self.classes
        cls = K > 0
        y[cls] = np.rint(y[cls] * (K[cls] - 1)) + 1
        return y

    # ------------------------------------------------------------ modes
    def start_recording(self) -> None:
        self.drain()
        self.recording = True

    def stop_recording(self) -> None:
        self.recording = False
        self.drain()

    def start_running(self) -> None:
        if self.model is None:
            self.say("startRunning: no trained model yet (record examples, then train); the outputs stay as set")
        self.running = True

    def stop_running(self) -> None:
        self.running = False

    def say(self, text: str) -> None:
        """A message for the user (the OSC server's log, ``patchlib map``'s terminal)."""
        self.messages.append(text)
        log.warning("mapper: %s", text)

    # ------------------------------------------------------------ examples (control threads)
    def add_example(self, x, y=None) -> None:
        x = self.check_inputs(x)
        if y is None:
            y = self.manual_w
        else:
            y = np.array(y, dtype=np.float64).reshape(-1)
            if y.size != self.n_out or not np.all(np.isfinite(y)):
                raise ValueError(f"an example needs {self.n_out} finite output values")
        with self._lock:
            self._X.append(x)
            self._Y.append(y)

    def add_examples(self, X, Y) -> None:
        X, Y = _m.check_examples(X, Y, self.n_in, self.n_out, self.classes)
        with self._lock:
            self._X.extend(X)
            self._Y.extend(Y)

    def examples(self) -> tuple[np.ndarray, np.ndarray]:
        self.drain()
        with self._lock:
            X = np.array(self._X, dtype=np.float64).reshape(-1, self.n_in)
            Y = np.array(self._Y, dtype=np.float64).reshape(-1, self.n_out)
        return X, Y

    @property
    def n_examples(self) -> int:
        with self._lock:
            return len(self._X)

    def delete_all_examples(self) -> None:
        with self._lock:
            self._X.clear()
            self._Y.clear()
            if self.gestures is not None:
                self.gestures = _m.GestureRecognizer(self.n_in, self.gestures.gestures)

    def attach(self, node) -> None:
        self._nodes.add(node)

    @property
    def signal_driven(self) -> bool:
        """A node plays (and records) its input signals: it has some, and no OSC input came yet."""
        return not self.osc_seen and any(getattr(n, "has_signal", False) for n in list(self._nodes))

    def drain(self) -> int:
        """Move what nodes recorded from their signal inputs into the examples; returns how many."""
        k = 0
        with self._drain_lock:  # two control threads draining at once would take rows twice
            for node in list(self._nodes):
                rows = node.take_recorded()
                if len(rows):
                    with self._lock:
                        self._X.extend(rows[:, :self.n_in])
                        self._Y.extend(rows[:, self.n_in:])
                    k += len(rows)
        return k

    # ------------------------------------------------------------ training
    def train(self) -> _m.Model | None:
        """Train on every example (this thread) and swap the model in; errors leave the old model.

        With gestures recorded, also sets the gesture recogniser's threshold. Returns the new model
        (``None`` when only gestures were trained).
        """
        X, Y = self.examples()
        g = self.gestures
        if g is not None and g.templates:
            with self._lock:
                g.train()
            if len(X) == 0:
                return None
        if len(X) == 0:
            raise ValueError("no examples to train on: record some first (startRecording, send inputs, "
                             "stopRecording); the old model stays")
        self._cancel.clear()
        self.training = True
        try:
            model = _m.fit(X, Y, kind=self.kind, classes=self.classes, k=self.k, degree=self.degree,
                           hidden=self.hidden, seed=self.seed, max_seconds=self.max_seconds, cancel=self._cancel)
        finally:
            self.training = False
        self.install(model)
        return model

    def cancel_training(self) -> None:
        self._cancel.set()

    def install(self, model: _m.Model) -> None:
        if model.n_in != self.n_in or model.n_out != self.n_out:
            raise ValueError(f"the model maps {model.n_in} inputs to {model.n_out} outputs; the mapper has "
                             f"{self.n_in} and {self.n_out}")
        if not np.array_equal(model.classes, self.classes):
            raise ValueError(f"the model's classes {model.classes.tolist()} differ from the mapper's "
                             f"{self.classes.tolist()}")
        self.serial += 1
        self.model = model  # atomic swap: the audio thread picks it up at its next block

    # ------------------------------------------------------------ files (control threads)
    def save(self, model_path: str | None, examples_path: str | None) -> None:
        """Write the examples (CSV), the model (JSON) and any gestures (``<model>.gestures.json``)."""
        if examples_path:
            X, Y = self.examples()
            _m.save_examples(examples_path, X, Y, self.input_names, self.output_names)
        g = self.gestures
        if model_path and g is not None and g.templates:
            _write_json(gestures_path(model_path), g.to_dict())
        if model_path:
            if self.model is None:
                if g is None or not g.templates:
                    raise ValueError("no trained model to save (train first); the examples were saved")
                return
            self.model.to_json(model_path)

    def load(self, model_path: str | None, examples_path: str | None) -> None:
        """Load examples (replacing those in memory) and/or a model (swapped in)."""
        model = _m.load_model(model_path) if model_path and os.path.exists(model_path) else None
        gpath = gestures_path(model_path) if model_path and self.gestures is not None else None
        if gpath and os.path.exists(gpath):
            with open(gpath, encoding="utf-8") as fh:
                try:
                    g = _m.GestureRecognizer.from_dict(json.load(fh))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{gpath}: not JSON ({e})") from None
            if g.n_in != self.n_in or g.gestures != self.gestures.gestures:
                raise ValueError(f"{gpath}: {g.gestures} gestures of {g.n_in} inputs; the mapper has "
                                 f"{self.gestures.gestures} of {self.n_in}")
            self.gestures = g
        if examples_path:
            X, Y, ins, outs = _m.load_examples(examples_path)
            X, Y = _m.check_examples(X, Y, self.n_in, self.n_out, self.classes)
            with self._lock:
                self._X, self._Y = list(X), list(Y)
            self.input_names, self.output_names = ins, outs
        if model is not None:
            self.install(model)


def gestures_path(model_path: str) -> str:
    """Where a mapper's gesture templates are saved beside its model: ``x.json`` -> ``x.gestures.json``."""
    stem = model_path[:-5] if model_path.lower().endswith(".json") else model_path
    return stem + ".gestures.json"


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _count(opts, key, default):
    v = opts.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_PORTS:
        raise PatchError(f"{key}: {v!r} is not a count 1..{MAX_PORTS}", Where(key=key))
    return v


def _resolve(file, key: str, base_dir: str, suffix: str) -> str:
    """A data file option inside the patch's folder (as a model file: no absolute paths, no climbing out)."""
    allowed = f"give a path relative to the patch's folder ({base_dir}), inside it, ending in {suffix}"
    base = os.path.realpath(getattr(file, "base_dir", None) or base_dir)
    where = getattr(file, "where", None) or Where(key=key)
    if not str(file).lower().endswith(suffix):
        raise PatchError(f"{key} '{file}' should end in {suffix}", where, hint=allowed)
    if os.path.isabs(file) or str(file).startswith("~"):
        raise PatchError(f"{key} '{file}' is an absolute path: not allowed", where, hint=allowed)
    path = os.path.realpath(os.path.join(base, file))
    if os.path.commonpath([base, path]) != base:
        raise PatchError(f"{key} '{file}' is outside the patch's folder: not allowed", where, hint=allowed)
    return path


@register("mapper")
class Mapper(Node):
    """Gesture mapper: N control inputs to M outputs 0..1 through a trained kNN, MLP, linear or polynomial model.

    Inputs ``in0..`` are control signals; an unconnected one reads the latest
    value sent over OSC (``/wek/inputs``, see ``patchlib.wekinator``), and
    once OSC input arrives it replaces the signals (stand-ins for a sensor).
    Outputs ``out0..`` are 0..1 (a classifier's class c of K is (c-1)/(K-1)),
    so ``{from: map.out0, range: [lo, hi]}`` binds one to any param in its own
    range; ``out`` carries all M as channels. The model runs on the control
    grid (every ``control_period`` samples, aligned to absolute time), only
    when an input changed. Examples (CSV) and the model (JSON) live beside the
    patch: with ``model_file`` present the model is loaded, else one is trained
    from ``examples`` at load. Not running (or untrained), the outputs hold the
    values set by hand (``initial``, ``/wekinator/control/outputs``). See docs/mapping.md.

    Example: ``map: {type: mapper, inputs: 3, outputs: 2, model: knn, examples: map-data/x.csv, model_file: map-data/x.json}``
    """

    params = {"smooth": Param(0.0, (0.0, 5.0), "s", doc="output smoothing time constant (0: none)")}
    options = {
        "inputs": Option(3, kind=int, doc=f"number of control inputs in0.. (1..{MAX_PORTS})"),
        "outputs": Option(1, kind=int, doc=f"number of outputs out0.. (1..{MAX_PORTS})"),
        "model": Option("mlp", choices=tuple(_m.KINDS), doc="model of the continuous outputs"),
        "classes": Option(None, kind=list, doc="per output 0 (continuous 0..1) or K: a kNN classifier of classes 1..K"),
        "k": Option(1, kind=int, doc="neighbours of kNN regression and of the classifiers"),
        "degree": Option(2, kind=int, doc="degree of 'poly' (every monomial up to it)"),
        "hidden": Option([16, 16], kind=list, doc="MLP hidden layer sizes"),
        "seed": Option(0, kind=int, doc="MLP initialisation seed"),
        "max_seconds": Option(10.0, kind=float, doc="longest MLP training"),
        "examples": Option(None, kind="path", doc="examples CSV beside the patch (in:NAME..., out:NAME... columns)"),
        "model_file": Option(None, kind="path", doc="trained model JSON beside the patch (loaded if present)"),
        "data": Option(None, kind=list, doc="examples written inline: rows [x1..xN, y1..yM] (small patches, tests)"),
        "initial": Option(None, kind=list, doc="output values (Wekinator units) before any model runs"),
        "run": Option(True, kind=bool, doc="start running when a model is loaded or trained at load"),
        "record_rate": Option(50.0, kind=float, doc="examples per second recorded from signal inputs"),
        "gestures": Option(0, kind=int, doc="whole gestures to recognise by DTW from OSC input (0: none); "
                                            "port 'gesture' = last one k / K"),
    }
    contract_settings = {"inputs": 2, "outputs": 2, "model": "knn", "k": 2,
                         "data": [[-0.5, -0.5, 0.0, 0.2], [0.5, 0.5, 1.0, 0.8], [0.0, 0.3, 0.5, 0.5]]}

    @classmethod
    def ports(cls, opts):
        n_in = _count(opts, "inputs", 3)
        n_out = _count(opts, "outputs", 1)
        inputs = {f"in{j}": Input(f"control input {j} (unconnected: the latest OSC value)", channels=1, optional=True)
                  for j in range(n_in)}
        outputs = {"out": Output(f"the {n_out} output(s) as channels", channels=n_out, range=(0.0, 1.0))}
        outputs.update({f"out{o}": Output(f"output {o}, 0..1", channels=1, range=(0.0, 1.0)) for o in range(n_out)})
        if opts.get("gestures"):
            outputs["gesture"] = Output("the last gesture recognised, k / K (0: none yet)", channels=1,
                                        range=(0.0, 1.0))
        return inputs, outputs, cls.params

    def configure(self, in_channels):
        self.n_in = _count(self.opts, "inputs", 3)
        self.n_out = _count(self.opts, "outputs", 1)
        classes = self.opts.get("classes")
        if classes is not None:
            if (len(classes) != self.n_out or any(not isinstance(c, int) or isinstance(c, bool) or c < 0 or c == 1
                                                   for c in classes)):
                raise PatchError(f"classes: one count per output ({self.n_out}), each 0 (continuous) or >= 2, "
                                 f"got {classes}", Where(key="classes"))
        hidden = self.opts.get("hidden", [16, 16])
        if not hidden or any(not isinstance(h, int) or not 1 <= h <= 1024 for h in hidden):
            raise PatchError(f"hidden: layer sizes 1..1024, got {hidden}", Where(key="hidden"))
        if not 1 <= int(self.opts.get("k", 1)) <= 64:
            raise PatchError("k: 1..64 neighbours", Where(key="k"))
        if not 1 <= int(self.opts.get("degree", 2)) <= 5:
            raise PatchError("degree: 1..5 (the monomials grow fast with more)", Where(key="degree"))
        if not 0.01 <= float(self.opts.get("max_seconds", 10.0)) <= 600.0:
            raise PatchError("max_seconds: 0.01..600", Where(key="max_seconds"))
        g = self.opts.get("gestures", 0)
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= 64:
            raise PatchError(f"gestures: 0..64, got {g!r}", Where(key="gestures"))
        if not 0.1 <= float(self.opts.get("record_rate", 50.0)) <= 1000.0:
            raise PatchError("record_rate: 0.1..1000 examples per second", Where(key="record_rate"))
        return super().configure(in_channels)

    def prepare(self, ctx):
        super().prepare(ctx)
        o = self.opts
        N, M = self.n_in, self.n_out
        self.in_ports = [f"in{j}" for j in range(N)]
        self.out_ports = [f"out{j}" for j in range(M)]
        self.use_sig = np.array([p in ctx.in_channels for p in self.in_ports], dtype=np.bool_)
        self.no_sig = np.zeros(N, np.bool_)
        self.has_gesture = bool(o.get("gestures"))
        self.has_signal = bool(self.use_sig.any())
        self.xbuf = np.zeros((N, ctx.block_size), np.float32)
        self.ring = np.zeros((RING if self.has_signal else 0, N + M))
        self.rec_pos = np.zeros(1, np.int64)
        self._taken = 0
        self.rec_every = max(1, int(round(ctx.sample_rate / float(o.get("record_rate", 50.0)))))
        self.sr = float(ctx.sample_rate)
        self.cp = max(1, int(ctx.control_period))
        try:
            core = MapperCore(N, M, kind=o.get("model", "mlp"), classes=o.get("classes"), k=int(o.get("k", 1)),
                              degree=int(o.get("degree", 2)), hidden=o.get("hidden", [16, 16]),
                              seed=int(o.get("seed", 0)), max_seconds=float(o.get("max_seconds", 10.0)),
                              initial=o.get("initial"), gestures=int(o.get("gestures", 0)))
        except ValueError as e:
            raise PatchError(str(e), Where(key="initial" if "output" in str(e) else "classes")) from None
        base = ctx.base_dir
        self.examples_path = _resolve(o["examples"], "examples", base, ".csv") if o.get("examples") else None
        self.model_path = _resolve(o["model_file"], "model_file", base, ".json") if o.get("model_file") else None
        try:
            if self.examples_path and os.path.exists(self.examples_path):
                core.load(None, self.examples_path)
            if o.get("data"):
                rows = np.array(o["data"], dtype=np.float64)
                if rows.ndim != 2 or rows.shape[1] != N + M:
                    raise ValueError(f"data: each row is {N} inputs then {M} outputs")
                core.add_examples(rows[:, :N], rows[:, N:])
        except (ValueError, OSError) as e:
            raise PatchError(f"examples: {e}", Where(key="examples")) from None
        if self.model_path and (os.path.exists(self.model_path) or os.path.exists(gestures_path(self.model_path))):
            try:
                core.load(self.model_path, None)
            except (ValueError, OSError) as e:
                raise PatchError(f"model_file: {e}", Where(key="model_file")) from None
        elif core.n_examples:
            try:
                core.train()
            except ValueError as e:
                ctx.warn(f"mapper '{self.name}': training at load failed: {e}")
        trained_gestures = core.gestures is not None and core.gestures.threshold is not None
        core.running = bool(o.get("run", True)) and (core.model is not None or trained_gestures)
        self.core = core
        core.attach(self)
        self._empty = _m.Model("linear", N, M, None, P=np.zeros((1, N), np.int64), C=np.zeros((1, M)))
        self.state = np.zeros(3 * M + N + 3)
        self.reset()

    def reset(self):
        M, N = self.n_out, self.n_in
        st = self.state
        st[:] = 0.0
        st[:M] = self.core.manual[1]
        st[M:2 * M] = self.core.manual[1]
        st[2 * M + N] = -1.0  # nothing evaluated yet
        st[2 * M + N + 1] = -1.0  # smoothing coefficient not computed yet

    def state_items(self):
        return {"state": self.state}  # the model, examples and modes live on self.core (shared, not state)

    def take_recorded(self) -> np.ndarray:
        """Rows recorded by the audio thread since the last call (a control thread's call)."""
        w = int(self.rec_pos[0])
        R = len(self.ring)
        if R == 0 or w == self._taken:
            return np.zeros((0, self.n_in + self.n_out))
        start = max(self._taken, w - R)
        rows = self.ring[np.arange(start, w) % R].copy()
        self._taken = w
        return rows

    def process(self, n, t):
        core = self.core
        model = core.model
        running = core.running and model is not None
        if model is None:
            model = self._empty
        xb = self.xbuf
        signals = self.has_signal and not core.osc_seen
        if signals:
            inp, use = self.inp, self.use_sig
            for j, port in enumerate(self.in_ports):
                if use[j]:
                    xb[j, :n] = inp[port][0, :n]
        out = self.out["out"]
        dist, sel, seld, h0, h1, feat, xn, yn, yw = model.rt
        manual_w, manual_n = core.manual
        _m.map_block(xb, self.use_sig if signals else self.no_sig, core.osc_in, n, t, self.cp, running,
                     float(core.serial), manual_n, manual_w, self.par["smooth"], self.sr, *model.arrays(),
                     dist, sel, seld, h0, h1, feat, xn, yn, yw,
                     self.state, out, self.ring, self.rec_every, core.recording and signals, self.rec_pos)
        for o, port in enumerate(self.out_ports):
            self.out[port][0, :n] = out[o, :n]
        if self.has_gesture:
            self.out["gesture"][0, :n] = core.gesture_level


# ---------------------------------------------------------------- bindings
def bindings(engine, name: str) -> list[tuple]:
    """Where a mapper's outputs go: ``(output index, node, param, lo, hi, curve)`` for each
    ``{from: NAME.outI, range: [lo, hi]}`` in the running patch (a control thread's call)."""
    found = []
    for node, ns in engine.spec.nodes.items():
        for pname, s in ns.params.items():
            if s.kind != "mod" or s.source is None or s.source[0] != name or s.range is None:
                continue
            port = s.source[1]
            if not (port.startswith("out") and port[3:].isdigit()):
                continue
            curve = s.curve or engine.params[node][pname].spec.curve
            found.append((int(port[3:]), node, pname, float(s.range[0]), float(s.range[1]), curve))
    return found


def outputs_from_params(engine, name: str, values: dict | None = None) -> np.ndarray:
    """Set a mapper's outputs (the values it records) from param values: ``{"pedal.gain": 0.6, ...}``.

    Each value goes back through its binding's range and curve to the 0..1
    output that would produce it; a bound param not in ``values`` gives its
    current value; an output bound to nothing keeps its hand-set value. So a
    sound dialled in on the target params becomes the next example.
    """
    core = engine.nodes[name].core
    y = core.manual_w.copy()
    for o, node, pname, lo, hi, curve in bindings(engine, name):
        key = f"{node}.{pname}"
        v = float(values[key]) if values and key in values else float(engine.params[node][pname].value)
        if curve == "exp" and lo > 0 and hi > 0 and v > 0:
            u = np.log(v / lo) / np.log(hi / lo)
        else:
            u = (v - lo) / (hi - lo)
        u = min(max(u, 0.0), 1.0)
        K = core.classes[o]
        y[o] = np.rint(u * (K - 1)) + 1 if K > 0 else u
    core.set_outputs(y)
    return y
