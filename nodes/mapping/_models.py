"""Regression and classification models of the ``mapper`` node: training (control thread) and inference kernels.

A trained :class:`Model` is a handful of float64/int64 numpy arrays; one
numba kernel, :func:`predict_into`, evaluates any kind of model without
allocating, so the audio thread can run it every control period. Training
(:func:`fit`) runs on a control thread: kNN and polynomial/linear regression
in milliseconds, the MLP with torch for at most ``max_seconds``, after which
its weights are copied out to numpy.

Units. Examples hold *Wekinator units*: each input as the sensor sends it;
each continuous output 0..1, each classifier output a class number 1..K.
Internally the models predict *normalised* outputs (0..1 for every output;
class ``c`` of ``K`` is ``(c - 1) / (K - 1)``), which the node puts on its
ports. Inputs are standardised with the examples' mean and deviation.

Files: a model is JSON (:meth:`Model.to_json`, :func:`load_model`; never
pickle), examples are CSV with a header ``in:NAME,...,out:NAME,...``
(:func:`save_examples`, :func:`load_examples`).
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import threading
import time

import numba
import numpy as np

NONE, KNN, MLP, POLY = 0, 1, 2, 3
KINDS = {"knn": KNN, "mlp": MLP, "linear": POLY, "poly": POLY}
FORMAT = "patchlib-mapper"
#: squared (standardised) distance under which an example counts as an exact match
EXACT = 1e-20


# ---------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def predict_into(x, kind, mu, sd, X, Yn, Lab, k, layers, W, P, C, classes,
                 dist, sel, seld, h0, h1, feat, xn, yn, yw):
    """One prediction: inputs ``x`` (N,) -> ``yn`` (M,) normalised 0..1 and ``yw`` (M,) in Wekinator units.

    Every other argument is a model array (see :class:`Model`) or scratch;
    nothing is allocated. Classifier outputs (``classes[o] > 0``) are a
    majority vote of the ``k`` nearest examples (ties: the nearest's class).
    """
    N = x.shape[0]
    M = yn.shape[0]
    E = X.shape[0]
    for j in range(N):
        xn[j] = (x[j] - mu[j]) / sd[j]
    has_cls = False
    for o in range(M):
        if classes[o] > 0:
            has_cls = True
    kk = 0
    if (kind == 1 or has_cls) and E > 0:
        for e in range(E):
            d = 0.0
            for j in range(N):
                u = xn[j] - X[e, j]
                d += u * u
            dist[e] = d
        kk = min(k, E)
        for q in range(kk):  # the kk nearest, nearest first (k is small: a selection, not a sort)
            best = 0
            bd = np.inf
            for e in range(E):
                if dist[e] < bd:
                    bd = dist[e]
                    best = e
            sel[q] = best
            seld[q] = bd
            dist[best] = np.inf
    if kind == 1 and kk > 0:
        if seld[0] <= EXACT:  # an input seen in training gives exactly its output(s)
            cnt = 0
            for o in range(M):
                yn[o] = 0.0
            for q in range(kk):
                if seld[q] <= EXACT:
                    cnt += 1
                    for o in range(M):
                        yn[o] += Yn[sel[q], o]
            for o in range(M):
                yn[o] /= cnt
        else:
            wsum = 0.0
            for o in range(M):
                yn[o] = 0.0
            for q in range(kk):
                w = 1.0 / math.sqrt(seld[q])
                wsum += w
                for o in range(M):
                    yn[o] += w * Yn[sel[q], o]
            for o in range(M):
                yn[o] /= wsum
    elif kind == 2:
        # layers: widths [N, h1, ..., M]; W: per layer its (out, in) weights row-major, then its biases
        src = xn
        off = 0
        nl = layers.shape[0] - 1
        for li in range(nl):
            nin = layers[li]
            nout = layers[li + 1]
            dst = yn if li == nl - 1 else (h0 if li % 2 == 0 else h1)
            boff = off + nin * nout
            for r in range(nout):
                s = W[boff + r]
                base = off + r * nin
                for c in range(nin):
                    s += W[base + c] * src[c]
                dst[r] = math.tanh(s) if li < nl - 1 else s
            off = boff + nout
            src = dst
    elif kind == 3:
        F = P.shape[0]
        for f in range(F):
            v = 1.0
            for j in range(N):
                for _ in range(P[f, j]):
                    v *= xn[j]
            feat[f] = v
        for o in range(M):
            s = 0.0
            for f in range(F):
                s += feat[f] * C[f, o]
            yn[o] = s
    else:
        for o in range(M):
            yn[o] = 0.0
    for o in range(M):
        K = classes[o]
        if K > 0:
            label = 1.0
            if kk > 0:
                best_votes = 0
                for q in range(kk):
                    lab = Lab[sel[q], o]
                    votes = 0
                    for r in range(kk):
                        if Lab[sel[r], o] == lab:
                            votes += 1
                    if votes > best_votes:  # strict: among equal counts the nearest (first) wins
                        best_votes = votes
                        label = lab
            yw[o] = label
            yn[o] = (label - 1.0) / (K - 1.0) if K > 1 else 0.0
        else:
            v = yn[o]
            if not (v >= 0.0):  # also NaN
                v = 0.0
            elif v > 1.0:
                v = 1.0
            yn[o] = v
            yw[o] = v


# state layout of one mapper node: [target (M) | smoothed y (M) | last x (N) | serial | smooth s | a]
@numba.njit(cache=True, nogil=True)
def map_block(xin, use_sig, osc, n, t, cp, running, serial, manual_n, manual_w, smooth, sr,
              kind, mu, sd, X, Yn, Lab, k, layers, W, P, C, classes,
              dist, sel, seld, h0, h1, feat, xn, yn, yw,
              state, out, ring, rec_every, rec_on, rec_pos):
    """``n`` frames of a mapper from absolute frame ``t``: evaluate on the control grid, smooth, record.

    ``xin`` (N, B) float32 signal inputs (row j used where ``use_sig[j]``),
    ``osc`` (N,) the latest values sent over OSC for the others. The model
    runs at frames ``t % cp == 0`` (aligned to absolute time: the block size
    never changes the output), and only when an input or the model changed.
    A non-finite input holds its last finite value. Outputs glide to their
    targets with a one-pole of time constant ``smooth`` seconds (0: none).
    With ``rec_on``, every ``rec_every`` frames the row ``[x, manual_w]``
    goes into ``ring`` (rec_pos[0] counts rows written).
    """
    N = osc.shape[0]
    M = out.shape[0]
    XL = 2 * M
    SER = 2 * M + N
    R = ring.shape[0]
    for i in range(n):
        f = t + i
        if f % cp == 0:
            changed = False
            for j in range(N):
                v = np.float64(xin[j, i]) if use_sig[j] else osc[j]
                if not math.isfinite(v):
                    v = state[XL + j]
                if v != state[XL + j]:
                    state[XL + j] = v
                    changed = True
            if running:
                if changed or state[SER] != serial:
                    predict_into(state[XL:XL + N], kind, mu, sd, X, Yn, Lab, k, layers, W, P, C, classes,
                                 dist, sel, seld, h0, h1, feat, xn, yn, yw)
                    for o in range(M):
                        state[o] = yn[o]
                    state[SER] = serial
            else:
                for o in range(M):
                    state[o] = manual_n[o]
                state[SER] = -1.0
        if rec_on and f % rec_every == 0 and R > 0:
            row = rec_pos[0] % R
            for j in range(N):
                ring[row, j] = state[XL + j]
            for o in range(M):
                ring[row, N + o] = manual_w[o]
            rec_pos[0] += 1
        s = smooth[i]
        if s != state[SER + 1]:
            state[SER + 1] = s
            state[SER + 2] = 1.0 if s <= 0.0 else 1.0 - math.exp(-1.0 / (s * sr))
        a = state[SER + 2]
        for o in range(M):
            y = state[M + o] + a * (state[o] - state[M + o])
            state[M + o] = y
            out[o, i] = y


# ---------------------------------------------------------------- the model
class Model:
    """A trained mapping: arrays for :func:`predict_into`, and how it was made.

    Attributes (all numpy): ``mu``, ``sd`` (N,) input standardisation;
    ``X`` (E, N) standardised examples, ``Yn`` (E, M) their normalised
    outputs, ``Lab`` (E, M) their class numbers (kNN, and every classifier
    output); ``layers``/``W`` (MLP); ``P`` (F, N) exponents and ``C`` (F, M)
    coefficients (linear and polynomial); ``classes`` (M,) 0 or K.
    """

    def __init__(self, kind: str, n_in: int, n_out: int, classes, *, mu=None, sd=None, X=None, Yn=None, Lab=None,
                 k=1, layers=None, W=None, P=None, C=None, info=None):
        if kind not in KINDS:
            raise ValueError(f"unknown model type {kind!r}: one of {', '.join(KINDS)}")
        self.kind_name = kind
        self.kind = KINDS[kind]
        self.n_in, self.n_out = int(n_in), int(n_out)
        N, M = self.n_in, self.n_out
        f8 = lambda a, shape: np.ascontiguousarray(np.zeros(shape) if a is None else a, dtype=np.float64)  # noqa: E731
        i8 = lambda a, shape: np.ascontiguousarray(np.zeros(shape) if a is None else a, dtype=np.int64)  # noqa: E731
        self.classes = i8(classes, (M,)).reshape(M)
        self.mu = f8(mu, (N,)).reshape(N)
        self.sd = f8(np.ones(N) if sd is None else sd, (N,)).reshape(N)
        self.X = f8(X, (0, N)).reshape(-1, N)
        self.Yn = f8(Yn, (0, M)).reshape(-1, M)
        self.Lab = f8(Lab, (0, M)).reshape(-1, M)
        self.k = max(1, int(k))
        self.layers = i8(layers, (0,))
        self.W = f8(W, (0,))
        self.P = i8(P, (0, N)).reshape(-1, N)
        self.C = f8(C, (0, M)).reshape(-1, M)
        self.info = dict(info or {})
        self._check()
        # scratch: one set for the audio thread (one audio thread), one for control threads (under a lock)
        self.rt = self.scratch()
        self._ctl = self.scratch()
        self._lock = threading.Lock()

    def _check(self) -> None:
        N, M = self.n_in, self.n_out
        if not (np.all(np.isfinite(self.mu)) and np.all(np.isfinite(self.sd)) and np.all(self.sd > 0)):
            raise ValueError("model: input scaling must be finite, deviations > 0")
        for name in ("X", "Yn", "Lab", "W", "C"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"model: {name} holds NaN or inf")
        if len(self.X) != len(self.Yn) or len(self.X) != len(self.Lab):
            raise ValueError("model: X, Yn and Lab need one row per example")
        if self.kind == KNN and len(self.X) == 0:
            raise ValueError("model: a kNN model needs its examples")
        if np.any(self.classes < 0):
            raise ValueError("model: class counts must be >= 0")
        if np.any(self.classes > 0) and len(self.X) == 0:
            raise ValueError("model: classifier outputs need the examples (kNN)")
        if self.kind == MLP:
            L = self.layers
            if len(L) < 2 or L[0] != N or L[-1] != M or np.any(L < 1):
                raise ValueError(f"model: MLP layers {L.tolist()} do not go from {N} inputs to {M} outputs")
            want = int(sum(L[i] * L[i + 1] + L[i + 1] for i in range(len(L) - 1)))
            if self.W.size != want:
                raise ValueError(f"model: MLP needs {want} weights, has {self.W.size}")
        if self.kind == POLY:
            if self.P.shape[0] != self.C.shape[0] or self.P.shape[0] == 0 or np.any(self.P < 0):
                raise ValueError("model: polynomial exponents and coefficients do not match")

    def scratch(self) -> tuple:
        E = max(1, len(self.X))
        width = int(max(self.layers.max(initial=1), 1))
        k = self.k
        return (np.zeros(E), np.zeros(k, np.int64), np.zeros(k), np.zeros(width), np.zeros(width),
                np.zeros(max(1, self.P.shape[0])), np.zeros(self.n_in), np.zeros(self.n_out), np.zeros(self.n_out))

    def arrays(self) -> tuple:
        """The model's arguments of :func:`predict_into`, from ``kind`` to ``classes``."""
        return (self.kind, self.mu, self.sd, self.X, self.Yn, self.Lab, self.k, self.layers, self.W, self.P,
                self.C, self.classes)

    def predict(self, x) -> np.ndarray:
        """Outputs in Wekinator units for inputs ``x`` (N,) or (E, N) (any thread)."""
        x = np.asarray(x, dtype=np.float64)
        one = x.ndim == 1
        x2 = np.atleast_2d(x)
        if x2.shape[1] != self.n_in:
            raise ValueError(f"the model takes {self.n_in} inputs, got {x2.shape[1]}")
        out = np.empty((len(x2), self.n_out))
        with self._lock:
            dist, sel, seld, h0, h1, feat, xn, yn, yw = self._ctl
            for r in range(len(x2)):
                predict_into(np.ascontiguousarray(x2[r]), *self.arrays(), dist, sel, seld, h0, h1, feat, xn, yn, yw)
                out[r] = yw
        return out[0] if one else out

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": 1, "type": self.kind_name, "inputs": self.n_in, "outputs": self.n_out,
             "classes": self.classes.tolist(), "k": self.k, "mu": self.mu.tolist(), "sd": self.sd.tolist(),
             "X": self.X.tolist(), "Yn": self.Yn.tolist(), "Lab": self.Lab.tolist(), "info": self.info}
        if self.kind == MLP:
            d.update(layers=self.layers.tolist(), W=self.W.tolist())
        if self.kind == POLY:
            d.update(P=self.P.tolist(), C=self.C.tolist())
        return d

    def to_json(self, path: str) -> None:
        """Write the model as JSON (atomically: a temporary file, then a rename)."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh)
        os.replace(tmp, path)


def model_from_dict(d: dict) -> Model:
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} model file")
    if d.get("version") != 1:
        raise ValueError(f"model file version {d.get('version')!r} is not supported (1)")
    try:
        return Model(d["type"], int(d["inputs"]), int(d["outputs"]), d.get("classes"), mu=d["mu"], sd=d["sd"],
                     X=d.get("X"), Yn=d.get("Yn"), Lab=d.get("Lab"), k=d.get("k", 1), layers=d.get("layers"),
                     W=d.get("W"), P=d.get("P"), C=d.get("C"), info=d.get("info"))
    except (KeyError, TypeError) as e:
        raise ValueError(f"model file: missing or malformed field {e}") from None


def load_model(path: str) -> Model:
    """A model from its JSON file (plain data: no code runs)."""
    with open(path, encoding="utf-8") as fh:
        try:
            d = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e})") from None
    try:
        return model_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


# ---------------------------------------------------------------- examples files
def save_examples(path: str, X, Y, input_names, output_names) -> None:
    """Examples as CSV: a header ``in:NAME...,out:NAME...`` then one row per example (atomically)."""
    X = np.asarray(X, float).reshape(-1, len(input_names))
    Y = np.asarray(Y, float).reshape(-1, len(output_names))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([f"in:{n}" for n in input_names] + [f"out:{n}" for n in output_names])
        for x, y in zip(X, Y):
            w.writerow([repr(float(v)) for v in x] + [repr(float(v)) for v in y])
    os.replace(tmp, path)


def load_examples(path_or_text: str, *, text: bool = False):
    """``(X (E, N), Y (E, M), input names, output names)`` from an examples CSV."""
    fh = io.StringIO(path_or_text) if text else open(path_or_text, newline="", encoding="utf-8")
    name = "examples" if text else path_or_text
    with fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{name}: empty (want a header in:NAME,...,out:NAME,... then rows)")
    head = [h.strip() for h in rows[0]]
    ins = [h[3:] for h in head if h.startswith("in:")]
    outs = [h[4:] for h in head if h.startswith("out:")]
    if not ins or not outs or len(ins) + len(outs) != len(head) or head != [f"in:{n}" for n in ins] + [
            f"out:{n}" for n in outs]:
        raise ValueError(f"{name}: the header must be in:NAME columns then out:NAME columns, got {','.join(head)}")
    data = np.zeros((len(rows) - 1, len(head)))
    for i, r in enumerate(rows[1:]):
        if len(r) != len(head):
            raise ValueError(f"{name}:{i + 2}: {len(r)} values, the header has {len(head)}")
        try:
            data[i] = [float(c) for c in r]
        except ValueError:
            raise ValueError(f"{name}:{i + 2}: not a number in {','.join(r)}") from None
        if not np.all(np.isfinite(data[i])):
            raise ValueError(f"{name}:{i + 2}: NaN or inf")
    return data[:, :len(ins)], data[:, len(ins):], ins, outs


# ---------------------------------------------------------------- training
def normalise_outputs(Y, classes) -> np.ndarray:
    """Wekinator units -> 0..1 (continuous clipped; class c of K -> (c-1)/(K-1))."""
    Y = np.asarray(Y, float)
    out = np.clip(Y, 0.0, 1.0)
    for o, K in enumerate(classes):
        if K > 0:
            out[:, o] = (np.clip(np.rint(Y[:, o]), 1, K) - 1) / max(K - 1, 1)
    return out


def check_examples(X, Y, n_in: int, n_out: int, classes) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError("examples: X (E, inputs) and Y (E, outputs) with one row each")
    if len(X) == 0:
        raise ValueError("no examples to train on: record some first (startRecording, send inputs, stopRecording)")
    if X.shape[1] != n_in or Y.shape[1] != n_out:
        raise ValueError(f"examples have {X.shape[1]} inputs and {Y.shape[1]} outputs; the mapper has "
                         f"{n_in} and {n_out}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise ValueError("examples hold NaN or inf")
    for o, K in enumerate(classes):
        if K > 0 and np.any((Y[:, o] < 1) | (Y[:, o] > K) | (Y[:, o] != np.rint(Y[:, o]))):
            raise ValueError(f"output {o} is a classifier of {K} classes: its examples must be 1..{K}")
    return X, Y


def monomials(n_in: int, degree: int) -> np.ndarray:
    """Exponents (F, N) of every monomial of total degree <= ``degree`` (the constant first)."""
    rows = [np.zeros(n_in, np.int64)]
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(n_in), d):
            r = np.zeros(n_in, np.int64)
            for j in combo:
                r[j] += 1
            rows.append(r)
    return np.array(rows, np.int64)


def fit(X, Y, *, kind: str = "mlp", classes=None, k: int = 1, degree: int = 2, hidden=(16, 16), seed: int = 0,
        max_seconds: float = 10.0, steps: int = 2000, cancel: threading.Event | None = None) -> Model:
    """Train a model on examples (Wekinator units). Runs on the calling (control) thread.

    Args:
        kind: ``knn`` (k nearest, weighted by 1/distance; an input seen in
            training gives exactly its output), ``mlp`` (tanh hidden layers,
            Adam then L-BFGS, at most ``max_seconds``), ``linear`` (least
            squares), ``poly`` (least squares on every monomial up to ``degree``).
        classes: per output 0 (continuous) or K (a kNN classifier, classes 1..K).
        cancel: set it to stop an MLP's training early (raises ``TrainingCancelled``).
    """
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    n_in, n_out = X.shape[1] if X.ndim == 2 else 0, Y.shape[1] if Y.ndim == 2 else 0
    classes = np.zeros(n_out, np.int64) if classes is None else np.asarray(classes, np.int64)
    if kind not in KINDS:
        raise ValueError(f"unknown model type {kind!r}: one of {', '.join(KINDS)}")
    X, Y = check_examples(X, Y, n_in, n_out, classes)
    t0 = time.perf_counter()
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[~(sd > 1e-12)] = 1.0
    Xs = (X - mu) / sd
    Yn = normalise_outputs(Y, classes)
    Lab = np.where(classes[None, :] > 0, np.rint(Y), 0.0)
    if kind != "knn" and not np.any(classes > 0):  # only kNN and classifiers keep the examples
        common = dict(mu=mu, sd=sd, k=k)
    else:
        common = dict(mu=mu, sd=sd, X=Xs, Yn=Yn, Lab=Lab, k=k)
    info = {"examples": int(len(X)), "seed": int(seed)}
    if kind == "knn":
        model = Model("knn", n_in, n_out, classes, info=info, **common)
    elif kind in ("linear", "poly"):
        P = monomials(n_in, 1 if kind == "linear" else max(1, int(degree)))
        F = _features(Xs, P)
        C, *_ = np.linalg.lstsq(F, Yn, rcond=None)
        info["degree"] = int(P.sum(axis=1).max())
        model = Model(kind, n_in, n_out, classes, P=P, C=C, info=info, **common)
    else:
        layers = [n_in] + [int(h) for h in hidden] + [n_out]
        if any(h < 1 for h in layers):
            raise ValueError(f"hidden layer sizes must be >= 1, got {list(hidden)}")
        W, train_info = _fit_mlp(Xs, Yn, layers, seed=seed, max_seconds=max_seconds, steps=steps, cancel=cancel)
        info.update(train_info)
        model = Model("mlp", n_in, n_out, classes, layers=layers, W=W, info=info, **common)
    err = model.predict(X) - Y
    cont = classes == 0
    info["train_rmse"] = float(np.sqrt(np.mean(err[:, cont] ** 2))) if cont.any() else 0.0
    info["train_seconds"] = round(time.perf_counter() - t0, 3)
    model.info = info
    return model


def _features(Xs, P) -> np.ndarray:
    F = np.ones((len(Xs), len(P)))
    for f, p in enumerate(P):
        for j, e in enumerate(p):
            if e:
                F[:, f] *= Xs[:, j] ** e
    return F


class TrainingCancelled(Exception):
    """Training was cancelled (``/wekinator/control/cancelTrain``): the old model stays."""


def _fit_mlp(Xs, Yn, layers, *, seed, max_seconds, steps, cancel):
    import torch

    # a net this small trains fastest on one thread (and several threads on a busy machine are 50x slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_mlp_torch(torch, Xs, Yn, layers, seed=seed, max_seconds=max_seconds, steps=steps, cancel=cancel)
    finally:
        torch.set_num_threads(threads)


def _fit_mlp_torch(torch, Xs, Yn, layers, *, seed, max_seconds, steps, cancel):
    torch.manual_seed(int(seed))
    mods = []
    for i in range(len(layers) - 1):
        mods.append(torch.nn.Linear(layers[i], layers[i + 1], dtype=torch.float64))
        if i < len(layers) - 2:
            mods.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*mods)
    x = torch.from_numpy(Xs)
    y = torch.from_numpy(Yn)
    t0 = time.perf_counter()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    adam_steps = max(1, steps // 2)
    loss_v = float("nan")
    done = 0
    for step in range(adam_steps):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled()
        opt.zero_grad()
        loss = torch.mean((net(x) - y) ** 2)
        loss.backward()
        opt.step()
        done += 1
        loss_v = float(loss.detach())
        if loss_v < 1e-7 or time.perf_counter() - t0 > 0.5 * max_seconds:
            break
    # L-BFGS polishes a small full-batch problem far faster than more Adam steps
    lb = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        lb.zero_grad()
        loss = torch.mean((net(x) - y) ** 2)
        loss.backward()
        return loss

    for _ in range(max(1, (steps - adam_steps) // 20)):
        if cancel is not None and cancel.is_set():
            raise TrainingCancelled()
        if time.perf_counter() - t0 > max_seconds or loss_v < 1e-9:
            break
        keep = [p.detach().clone() for p in net.parameters()]
        lb.step(closure)
        with torch.no_grad():
            new = float(torch.mean((net(x) - y) ** 2))
        done += 20
        if not math.isfinite(new) or new > loss_v:  # a bad line search: back to the last good weights
            with torch.no_grad():
                for p, q in zip(net.parameters(), keep):
                    p.copy_(q)
            break
        loss_v = new
    W = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            W.append(m.weight.detach().numpy().ravel())
            W.append(m.bias.detach().numpy().ravel())
    W = np.concatenate(W).astype(np.float64)
    if not np.all(np.isfinite(W)):
        raise ValueError("MLP training diverged (NaN weights): the old model stays")
    return W, {"steps": done, "train_mse": loss_v}


# ---------------------------------------------------------------- dynamic time warping: whole gestures
@numba.njit(cache=True, nogil=True)
def dtw_step(x, T, D, Dprev):
    """One input frame of open-begin (subsequence) DTW against template ``T`` (L, N).

    ``Dprev`` holds the previous frame's column (``Dprev[0] = 0``: a match
    may start at any frame), ``D`` receives this frame's. Returns the cost
    of the best match of the whole template ending now, per template frame.
    """
    L = T.shape[0]
    N = T.shape[1]
    D[0] = 0.0
    for i in range(1, L + 1):
        d = 0.0
        for j in range(N):
            u = x[j] - T[i - 1, j]
            d += u * u
        m = D[i - 1]
        if Dprev[i] < m:
            m = Dprev[i]
        if Dprev[i - 1] < m:
            m = Dprev[i - 1]
        D[i] = math.sqrt(d) + m
    return D[L] / L


@numba.njit(cache=True, nogil=True)
def dtw_cost(A, T):
    """Streaming-DTW cost of the sequence ``A`` (any length) against template ``T``: the best match of
    all of ``T`` inside ``A``, per template frame (what :func:`dtw_step` reports)."""
    L = T.shape[0]
    D = np.full(L + 1, np.inf)
    P = np.full(L + 1, np.inf)
    P[0] = 0.0
    best = np.inf
    for t in range(A.shape[0]):
        c = dtw_step(A[t], T, D, P)
        if c < best:
            best = c
        D, P = P, D
    return best


class GestureRecognizer:
    """Recognises whole gestures (Wekinator's DTW): recorded templates, matched in the input stream.

    Each template is a sequence of input frames labelled with a gesture
    number 1..K. Running, every new frame advances an open-begin DTW
    against every template (cost linear in the templates' total length); when
    the best cost drops under ``threshold`` the gesture is recognised, the
    columns restart (the same performance is not reported twice) and
    :meth:`step` returns its number. ``threshold`` defaults (:meth:`train`) to
    half the smallest cost between templates of different gestures, or, with
    one gesture, twice the largest cost between its own templates (or the
    template's mean frame-to-frame motion with a single template).
    """

    def __init__(self, n_in: int, gestures: int, templates=None, threshold: float | None = None):
        self.n_in, self.gestures = int(n_in), int(gestures)
        self.templates: list = []  # (label, (L, N) array)
        for label, T in templates or []:
            self.add(label, T)
        self.threshold = threshold
        self._cols: list = []
        self.last = 0  # the last gesture recognised (0: none yet)
        self.reset()

    def add(self, label: int, T) -> None:
        T = np.ascontiguousarray(T, dtype=np.float64)
        if not 1 <= int(label) <= self.gestures:
            raise ValueError(f"gesture numbers are 1..{self.gestures}, got {label}")
        if T.ndim != 2 or T.shape[1] != self.n_in or len(T) < 2:
            raise ValueError(f"a gesture needs at least 2 frames of {self.n_in} inputs")
        if not np.all(np.isfinite(T)):
            raise ValueError("a gesture holds NaN or inf")
        self.templates.append((int(label), T))

    def reset(self) -> None:
        cols = []
        for _, T in list(self.templates):
            P = np.full(len(T) + 1, np.inf)
            P[0] = 0.0
            cols.append((np.full(len(T) + 1, np.inf), P))
        self._cols = cols  # one assignment: another thread's step sees the old columns or the new

    def train(self) -> float:
        if not self.templates:
            raise ValueError("no gestures recorded: record some first (startDtwRecording N, move, stopDtwRecording)")
        cross, within = [], []
        for a, (la, A) in enumerate(self.templates):
            for b, (lb, B) in enumerate(self.templates):
                if a != b:
                    (cross if la != lb else within).append(dtw_cost(A, B))
        if cross:
            thr = 0.5 * min(cross)
        elif within:
            thr = 2.0 * max(within)
        else:
            T = self.templates[0][1]
            thr = float(np.mean(np.linalg.norm(np.diff(T, axis=0), axis=1)))
        self.threshold = max(float(thr), 1e-9)
        self.reset()
        return self.threshold

    def step(self, x) -> int:
        """Advance every template by one frame; the gesture recognised now, or 0."""
        if self.threshold is None or not self.templates:
            return 0
        x = np.ascontiguousarray(x, dtype=np.float64)
        templates = list(self.templates)
        if len(self._cols) != len(templates):  # a gesture was recorded since: start every search afresh
            self.reset()
        cols = self._cols
        best, label = np.inf, 0
        for k, (lab, T) in enumerate(templates):
            D, P = cols[k]
            c = dtw_step(x, T, D, P)
            cols[k] = (P, D)  # this frame's column becomes the previous one
            if c < best:
                best, label = c, lab
        self.cost = best
        if best < self.threshold:
            self.reset()
            self.last = label
            return label
        return 0

    def to_dict(self) -> dict:
        return {"format": FORMAT + "-gestures", "version": 1, "inputs": self.n_in, "gestures": self.gestures,
                "threshold": self.threshold, "templates": [[lab, T.tolist()] for lab, T in self.templates]}

    @classmethod
    def from_dict(cls, d: dict) -> "GestureRecognizer":
        if not isinstance(d, dict) or d.get("format") != FORMAT + "-gestures" or d.get("version") != 1:
            raise ValueError(f"not a {FORMAT}-gestures file (version 1)")
        thr = d.get("threshold")
        if thr is not None and not (isinstance(thr, (int, float)) and math.isfinite(thr) and thr > 0):
            raise ValueError("gestures: threshold must be a positive number")
        try:
            return cls(int(d["inputs"]), int(d["gestures"]), [(lab, T) for lab, T in d["templates"]], thr)
        except (KeyError, TypeError) as e:
            raise ValueError(f"gestures file: missing or malformed field {e}") from None
