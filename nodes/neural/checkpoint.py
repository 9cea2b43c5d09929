"""Checkpoints of neural effects: plain tensors + JSON-like metadata, loaded without executing code.

A checkpoint is one ``torch.save`` of a dict holding only strings, numbers,
lists, dicts and tensors, read back with ``torch.load(weights_only=True)``
(no pickled classes: a model file cannot run code)::

    {"format": "patchlib-neural", "version": 1,
     "arch": "wavenet" | "lstm",         # a key of ARCHITECTURES
     "config": {...},                    # the architecture's constructor arguments
     "sample_rate": 48000,
     "knobs": [{"name": "gain", "default": 0.5, "range": [0, 1], "doc": "..."}],
     "validation": {"esr": 0.008, ...},  # the validation score(s)
     "train_command": "patchlib train pedal ...",
     "state_dict": {name: tensor}}

Knob values reach the model normalised to 0..1 over their range.
Loading checks the format, builds the architecture from its config and
refuses missing, unknown or mis-shaped tensors, each error a
:class:`~patchlib.PatchError` naming the file.

A path ending in ``.nam`` is a Neural Amp Modeler file: :func:`load` reads it
with :func:`nodes.neural.nam.load_nam` into the same dict (no knobs).
"""
from __future__ import annotations

import os

from patchlib import PatchError, Where

FORMAT = "patchlib-neural"
VERSION = 1
_HEADER_KEYS = ("arch", "config", "sample_rate", "knobs", "validation", "train_command")
_header_cache: dict = {}


def _architectures():
    from .lstm import LSTM
    from .wavenet import WaveNet

    return {"wavenet": WaveNet, "lstm": LSTM}


def _err(path, msg, hint=None):
    return PatchError(f"model '{path}': {msg}", Where(key="model"), hint=hint)


def save(path, arch: str, config: dict, state_dict: dict, sample_rate: float, knobs=(), validation=None,
         train_command: str = "") -> None:
    """Write a checkpoint (see the module docstring for the fields)."""
    import torch

    knobs = [dict(k) for k in knobs]
    for k in knobs:
        k.setdefault("default", float(k["range"][0]))
        k.setdefault("doc", k["name"])
        k["range"] = [float(k["range"][0]), float(k["range"][1])]
    data = {"format": FORMAT, "version": VERSION, "arch": arch, "config": config,
            "sample_rate": float(sample_rate), "knobs": knobs, "validation": dict(validation or {}),
            "train_command": str(train_command),
            "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}}
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    torch.save(data, path)


def read(path, name=None, *, train: str = "pedal") -> dict:
    """A patchlib checkpoint file, any architecture: read with ``weights_only=True``, format and version checked.

    Every neural node's loader starts here (then checks its own
    architecture). ``name``: how errors call the file (the path as the patch
    gives it); ``train``: the ``patchlib train`` command the hint names.
    """
    import torch

    name = name or path
    if not os.path.isfile(path):
        raise _err(name, "no such file", hint=f"train one with 'patchlib train {train}' or check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, a pickled class...
        raise _err(name, f"cannot read the checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                   hint="the file is corrupted or not a patchlib model") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _err(name, f"not a {FORMAT} checkpoint")
    if data.get("version") != VERSION:
        raise _err(name, f"checkpoint version {data.get('version')!r}, this patchlib reads {VERSION}")
    return data


def load(path, name=None) -> dict:
    """The checkpoint at ``path`` as a dict, checked for format and fields (not yet against its architecture).

    ``name``: how errors call the file (the path as the patch gives it); default ``path``.
    """
    path, path_ = name or path, path

    if os.fspath(path_).lower().endswith(".nam"):
        from .nam import load_nam

        return load_nam(path_, name=path)
    data = read(path_, path)
    missing = [k for k in _HEADER_KEYS + ("state_dict",) if k not in data]
    if missing:
        raise _err(path, "missing field(s) " + ", ".join(missing))
    if data["arch"] not in _architectures():
        raise _err(path, f"unknown architecture {data['arch']!r}", hint="known: " + ", ".join(_architectures()))
    for k in data["knobs"]:
        ok = isinstance(k, dict) and isinstance(k.get("name"), str) and len(k.get("range", ())) == 2
        if ok:
            lo, hi = k["range"]
            ok = lo < hi and lo <= k.get("default", lo) <= hi
        if not ok:
            raise _err(path, f"bad knob declaration {k!r}",
                       hint="each knob needs a name, a range [lo, hi] and a default in it")
    return data


def header(path, name=None) -> dict:
    """The checkpoint's metadata without its tensors, cached by path, size and modification time."""
    st = os.stat(path) if os.path.isfile(path) else None
    key = (os.path.realpath(path), st and st.st_mtime_ns, st and st.st_size)
    if key not in _header_cache:
        data = load(path, name)
        _header_cache[key] = {k: data[k] for k in _HEADER_KEYS}
    return _header_cache[key]


def build(path, data: dict, streaming: bool = True):
    """The model described by checkpoint ``data`` (read from ``path``), weights loaded and checked."""
    import torch

    cls = _architectures()[data["arch"]]
    try:
        model = cls(**data["config"], streaming=streaming)
    except (TypeError, ValueError, KeyError) as e:
        raise _err(path, f"bad {data['arch']} config: {e}") from None
    cond = getattr(model, "condition_size", None)
    if cond is not None and cond != 1 + len(data["knobs"]):
        raise _err(path, f"the architecture takes {cond} conditioning rows but the file declares "
                         f"{len(data['knobs'])} knob(s) (needs 1 + knobs)")
    want = model.state_dict()
    got = data["state_dict"]
    unknown = sorted(set(got) - set(want))
    missing = sorted(set(want) - set(got))
    if unknown or missing:
        raise _err(path, "weights do not match the declared architecture: "
                   + (f"unknown {unknown[:5]}" if unknown else "") + (" " if unknown and missing else "")
                   + (f"missing {missing[:5]}" if missing else ""))
    for k, t in want.items():
        g = got[k]
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(t.shape):
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            raise _err(path, f"weight '{k}' has shape {shape}, the declared architecture needs {tuple(t.shape)}")
        if not torch.isfinite(g).all():
            raise _err(path, f"weight '{k}' holds NaN or inf")
    model.load_state_dict({k: v.to(want[k].dtype) for k, v in got.items()})
    if data.get("nam"):
        from .nam import prewarm

        prewarm(model, data)  # NAM's start-up state (silence's history), see nodes/neural/nam.py
    return model.eval()
