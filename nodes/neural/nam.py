"""Neural Amp Modeler (``.nam``) files: load them as patchlib checkpoints, and export ours.

A ``.nam`` file is JSON::

    {"version": "0.5.4", "architecture": "WaveNet" | "LSTM",
     "config": {...}, "weights": [float, ...], "sample_rate": 48000,
     "metadata": {...}}

``weights`` is one flat list; its layout (from NAM's exporters and
NeuralAmpModelerCore's loaders) is, every tensor flattened in PyTorch's
C order:

* **WaveNet**, per layer array: ``rechannel`` weight (1x1, no bias); per
  layer: dilated conv weight ``(mid, channels, kernel)``, conv bias
  ``(mid,)``, input mixer weight ``(mid, condition_size)`` (no bias), 1x1
  weight ``(channels, channels)``, 1x1 bias; then the head rechannel weight
  ``(head_size, channels)`` and its bias when ``head_bias``. Last, one
  number: ``head_scale``. (``mid`` is ``2 * channels`` when gated: the
  first half goes through the activation, the second through a sigmoid.)
* **LSTM**, per layer: the matrix ``(4H, in + H)`` = ``[W_ih | W_hh]``
  (gates i, f, g, o), the bias ``b_ih + b_hh`` ``(4H,)``, the initial
  hidden state ``(H,)``, the initial cell state ``(H,)``; then the head
  weight ``(H,)`` and head bias ``(1,)``.

Start-up state, as NAM's own implementations have it:

* WaveNet: NAM's Python package pads the input with ``receptive_field - 1``
  zeros and NAM's C++ core pre-warms on zeros; both give every layer the
  history it has after silence (not zeros: the biases make it a constant).
  :func:`prewarm` (called by ``checkpoint.build``) folds that history into
  the biases, so a plain zeroed reset gives it.
* LSTM: the file's initial states (NAM's exporter writes the state after 1 s
  of silence); the C++ core (what the plugin runs) then pre-warms 0.5 s of
  silence at the file's sample rate on every reset. :func:`prewarm` runs
  that once at build and makes the result the initial state
  (``load_nam(..., prewarm=False)`` keeps the file's states, as NAM's Python
  package does).

The checkpoint dict :func:`load_nam` returns holds the file's tensors as they
are (so :func:`save_nam` writes them back unchanged); the start-up state is
applied to the built model only.

This module imports torch only inside functions that need it.
"""
from __future__ import annotations

import json
import math
import os

from patchlib import PatchError, Where

#: NAM architecture name -> patchlib architecture
ARCHITECTURES = {"WaveNet": "wavenet", "LSTM": "lstm"}
#: the format version written by :func:`save_nam` (NeuralAmpModelerCore reads 0.5.x)
NAM_VERSION = "0.5.4"
#: activation names NAM writes that patchlib's WaveNet runs exactly
_ACTIVATIONS = ("Tanh", "ReLU", "Hardtanh", "Sigmoid")
_LAYER_KEYS = {"input_size", "condition_size", "head_size", "channels", "kernel_size", "dilations",
               "activation", "gated", "head_bias"}
#: newer NAM options accepted when they hold the classic architecture's value
_NEUTRAL = {"groups": 1, "groups_input": 1, "groups_1x1": 1}


def _err(name, msg, hint=None):
    return PatchError(f"model '{name}': {msg}", Where(key="model"), hint=hint)


# ---------------------------------------------------------------- layouts
def wavenet_layout(config: dict) -> list:
    """``[(state_dict key, shape), ...]`` of a patchlib WaveNet config, in NAM's flat-weight order."""
    out = []
    for i, la in enumerate(config["layers"]):
        c, k = la["channels"], la["kernel_size"]
        mid = 2 * c if la["gated"] else c
        p = f"_layers.{i}."
        out.append((p + "_rechannel.weight", (c, la["input_size"], 1)))
        for j in range(len(la["dilations"])):
            q = f"{p}_layers.{j}."
            out += [(q + "_conv.weight", (mid, c, k)), (q + "_conv.bias", (mid,)),
                    (q + "_input_mixer.weight", (mid, la["condition_size"], 1)),
                    (q + "_1x1.weight", (c, c, 1)), (q + "_1x1.bias", (c,))]
        out.append((p + "_head_rechannel.weight", (la["head_size"], c, 1)))
        if la["head_bias"]:
            out.append((p + "_head_rechannel.bias", (la["head_size"],)))
    out.append(("_head_scale", ()))
    return out


def lstm_layout(config: dict) -> list:
    """``[(name, shape), ...]`` of NAM's LSTM flat weights (names are NAM's blocks, not state_dict keys)."""
    h, out = config["hidden_size"], []
    for i in range(config["num_layers"]):
        n_in = config["input_size"] if i == 0 else h
        out += [(f"w{i}", (4 * h, n_in + h)), (f"b{i}", (4 * h,)), (f"h{i}", (h,)), (f"c{i}", (h,))]
    return out + [("head.weight", (h,)), ("head.bias", (1,))]


def _count(layout) -> int:
    return sum(math.prod(s) for _, s in layout)


# ---------------------------------------------------------------- configs
def _wavenet_config(cfg: dict, name) -> dict:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list) or not cfg["layers"]:
        raise _err(name, "WaveNet config needs a non-empty 'layers' list")
    if cfg.get("head") is not None:
        raise _err(name, "WaveNet with a post-stack 'head' is not supported (no released NAM model has one)")
    if cfg.get("condition_dsp") is not None:
        raise _err(name, "WaveNet with a 'condition_dsp' is not supported")
    layers = []
    for i, la in enumerate(cfg["layers"]):
        if not isinstance(la, dict):
            raise _err(name, f"layer array {i} is not an object")
        missing = sorted(_LAYER_KEYS - set(la))
        if missing:
            raise _err(name, f"layer array {i} misses {', '.join(missing)}")
        for key in set(la) - _LAYER_KEYS:
            neutral = la.get("channels") if key == "bottleneck" else _NEUTRAL.get(key, object())
            if la[key] != neutral:
                raise _err(name, f"layer array {i}: option {key}={la[key]!r} is not supported",
                           hint="patchlib reads NAM's classic WaveNet (gated or not, no groups, bottleneck, FiLM)")
        act = la["activation"]
        if act not in _ACTIVATIONS:
            raise _err(name, f"layer array {i}: activation {act!r} is not supported",
                       hint="supported: " + ", ".join(_ACTIVATIONS))
        try:
            ints = {k: int(la[k]) for k in ("input_size", "condition_size", "head_size", "channels", "kernel_size")}
            dil = [int(d) for d in la["dilations"]]
        except (TypeError, ValueError):
            raise _err(name, f"layer array {i}: sizes and dilations must be integers") from None
        if min(ints.values()) < 1 or not dil or min(dil) < 1:
            raise _err(name, f"layer array {i}: sizes and dilations must be >= 1")
        if ints["condition_size"] != 1:
            raise _err(name, f"layer array {i}: condition_size {ints['condition_size']} (NAM conditions on the "
                             "mono input only: 1)")
        if i > 0 and ints["input_size"] != layers[-1]["channels"]:
            raise _err(name, f"layer array {i}: input_size {ints['input_size']} != channels of array {i - 1}")
        if i > 0 and ints["channels"] != layers[-1]["head_size"]:
            raise _err(name, f"layer array {i}: channels {ints['channels']} != head_size of array {i - 1}")
        layers.append({**ints, "dilations": dil, "activation": act, "gated": bool(la["gated"]),
                       "head_bias": bool(la["head_bias"])})
    if layers[0]["input_size"] != 1 or layers[-1]["head_size"] != 1:
        raise _err(name, "WaveNet must take 1 input channel and give 1 output channel")
    try:
        head_scale = float(cfg.get("head_scale", 1.0))  # the flat list's last number overrides it, as in NAM
    except (TypeError, ValueError):
        raise _err(name, f"bad head_scale {cfg.get('head_scale')!r}") from None
    return {"layers": layers, "head_scale": head_scale}


def _lstm_config(cfg: dict, name) -> dict:
    try:
        out = {"input_size": int(cfg["input_size"]), "hidden_size": int(cfg["hidden_size"]),
               "num_layers": int(cfg["num_layers"])}
    except (KeyError, TypeError, ValueError):
        raise _err(name, "LSTM config needs integer input_size, hidden_size and num_layers") from None
    if out["input_size"] != 1:
        raise _err(name, f"LSTM input_size {out['input_size']}: only mono (1) NAM models are supported")
    if out["hidden_size"] < 1 or out["num_layers"] < 1:
        raise _err(name, "LSTM hidden_size and num_layers must be >= 1")
    return out


# ---------------------------------------------------------------- loading
def _read(path, name) -> dict:
    if not os.path.isfile(path):
        raise _err(name, "no such file", hint="check the path (relative to the patch's folder)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _err(name, f"not valid .nam JSON ({type(e).__name__}: {str(e)[:200]})",
                   hint="the file is truncated or corrupted; export it again from NAM") from None
    if not isinstance(data, dict):
        raise _err(name, "a .nam file must hold a JSON object")
    missing = [k for k in ("architecture", "config", "weights") if k not in data]
    if missing:
        raise _err(name, "missing field(s) " + ", ".join(missing))
    if data["architecture"] not in ARCHITECTURES:
        raise _err(name, f"unknown architecture {data['architecture']!r}",
                   hint="patchlib loads NAM's " + " and ".join(ARCHITECTURES))
    if not isinstance(data["config"], dict):
        raise _err(name, "'config' must be an object")
    w = data["weights"]
    if not isinstance(w, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w):
        raise _err(name, "'weights' must be a flat list of numbers")
    return data


def load_nam(path, name=None, prewarm: bool = True) -> dict:
    """The ``.nam`` file at ``path`` as a patchlib checkpoint dict (see ``checkpoint.py``), weights mapped.

    ``name``: how errors call the file (default ``path``). ``prewarm``: for an
    LSTM, start from the state after NAM's 0.5 s of silence (see the module doc).
    """
    import numpy as np
    import torch

    from .checkpoint import FORMAT, VERSION

    name = name or path
    data = _read(path, name)
    nam_arch = data["architecture"]
    arch = ARCHITECTURES[nam_arch]
    config = (_wavenet_config if arch == "wavenet" else _lstm_config)(data["config"], name)
    layout = wavenet_layout(config) if arch == "wavenet" else lstm_layout(config)
    want = _count(layout)
    flat = np.asarray(data["weights"], dtype=np.float64)
    if flat.size != want:
        raise _err(name, f"{flat.size} weights, but the {nam_arch} config needs {want} (expected {want}, "
                         f"got {flat.size})", hint="the weights do not match the config: corrupted or truncated file")
    if not np.all(np.isfinite(flat)):
        raise _err(name, "weights hold NaN or inf")
    blocks, at = {}, 0
    for key, shape in layout:
        n = math.prod(shape)
        blocks[key] = torch.from_numpy(flat[at:at + n].reshape(shape)).to(torch.float32)
        at += n
    try:
        sr = float(data.get("sample_rate") or 48000.0)
    except (TypeError, ValueError):
        raise _err(name, f"bad sample_rate {data.get('sample_rate')!r}") from None
    state = blocks if arch == "wavenet" else _lstm_state(config, blocks)
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    return {"format": FORMAT, "version": VERSION, "arch": arch, "config": config, "sample_rate": sr,
            "knobs": [], "validation": {k: meta[k] for k in ("validation_esr",) if k in meta},
            "train_command": "", "state_dict": state,
            "nam": {"version": str(data.get("version", "")), "architecture": nam_arch,
                    "metadata": meta, "lstm_prewarm": arch == "lstm" and bool(prewarm)}}


def _lstm_state(config, blocks) -> dict:
    import torch

    h, n_in = config["hidden_size"], config["input_size"]
    state = {}
    for i in range(config["num_layers"]):
        w = blocks[f"w{i}"]
        k = n_in if i == 0 else h
        state[f"_core.weight_ih_l{i}"] = w[:, :k].contiguous()
        state[f"_core.weight_hh_l{i}"] = w[:, k:].contiguous()
        state[f"_core.bias_ih_l{i}"] = blocks[f"b{i}"]
        state[f"_core.bias_hh_l{i}"] = torch.zeros(4 * h)
    state["_head.weight"] = blocks["head.weight"].reshape(1, h)
    state["_head.bias"] = blocks["head.bias"]
    state["_initial_hidden"] = torch.stack([blocks[f"h{i}"] for i in range(config["num_layers"])])
    state["_initial_cell"] = torch.stack([blocks[f"c{i}"] for i in range(config["num_layers"])])
    return state


def prewarm(model, data: dict) -> None:
    """Give a built model (weights loaded from ``data``) NAM's start-up state; in place.

    * WaveNet: silence leaves every layer's input at a constant ``v``
      (biases), not at zero. Writing each layer's input as ``x = x' + v``
      turns the same network into one on ``x'`` whose silent history *is*
      zero: conv bias ``+= sum_k W_k v``, 1x1 bias ``+= v - v_next``. So the
      zero caches of a reset (torch or fused kernels, streaming or a whole
      signal) give exactly what NAM gives, with no pre-warm pass at all.
    * LSTM: when ``data["nam"]["lstm_prewarm"]``, 0.5 s of silence at the
      file's rate from the file's states (NeuralAmpModelerCore's prewarm);
      the state reached becomes the initial state ``reset`` puts back.
    """
    import numpy as np
    import torch

    from .lstm import LSTM
    from .wavenet import WaveNet

    info = data.get("nam") or {}
    with torch.no_grad():
        if isinstance(model, WaveNet):
            out = None  # silence's value of the previous array's residual output
            for la in model._layers:
                R = la._rechannel.weight[:, :, 0].double().numpy()
                v = np.zeros(R.shape[0]) if out is None else R @ out
                for layer in la._layers:
                    W = layer._conv.weight.double().numpy()
                    z = W.sum(axis=2) @ v + layer._conv.bias.double().numpy()
                    act = layer._activation(torch.from_numpy(z)).numpy()
                    if layer._gated:
                        c = layer._channels
                        a = act[:c] * (1.0 / (1.0 + np.exp(-z[c:])))
                    else:
                        a = act
                    v_next = v + layer._1x1.weight[:, :, 0].double().numpy() @ a + layer._1x1.bias.double().numpy()
                    layer._conv.bias += torch.from_numpy(W.sum(axis=2) @ v).to(layer._conv.bias.dtype)
                    layer._1x1.bias += torch.from_numpy(v - v_next).to(layer._1x1.bias.dtype)
                    v = v_next
                out = v
        elif isinstance(model, LSTM) and info.get("lstm_prewarm"):
            samples = max(1, int(0.5 * float(data.get("sample_rate") or 48000.0)))
            h0 = model._initial_hidden[:, None, :].contiguous()
            c0 = model._initial_cell[:, None, :].contiguous()
            x = torch.zeros(1, samples, model.condition_size, dtype=h0.dtype)
            _, (h, c) = model._core(x, (h0, c0))
            model._initial_hidden.copy_(h[:, 0])
            model._initial_cell.copy_(c[:, 0])
            model.reset()


# ---------------------------------------------------------------- export
def save_nam(path, model_or_checkpoint, sample_rate: float | None = None, metadata: dict | None = None) -> None:
    """Write an unconditioned patchlib WaveNet or LSTM (a model or a checkpoint dict) as a ``.nam`` file.

    Refuses models with knobs (NAM's classic models take only the audio) and
    an LSTM with ``skip`` (NAM's LSTM has no dry skip).
    """
    import numpy as np

    from .lstm import LSTM
    from .wavenet import WaveNet

    obj = model_or_checkpoint
    if isinstance(obj, dict):
        arch, config, state = obj["arch"], obj["config"], obj["state_dict"]
        sample_rate = sample_rate or obj.get("sample_rate")
        if obj.get("knobs"):
            raise ValueError("a .nam file cannot hold knobs: export an unconditioned model")
    elif isinstance(obj, WaveNet):
        arch, state = "wavenet", obj.state_dict()
        config = {"layers": [_array_config(la) for la in obj._layers], "head_scale": float(obj._head_scale)}
    elif isinstance(obj, LSTM):
        arch, state = "lstm", obj.state_dict()
        config = {"input_size": obj._core.input_size, "hidden_size": obj._core.hidden_size,
                  "num_layers": obj._core.num_layers, "skip": obj.skip}
    else:
        raise TypeError(f"cannot export {type(obj).__name__} to .nam (a WaveNet or LSTM, or a checkpoint)")
    sample_rate = float(sample_rate or 48000.0)

    def arr(t):
        return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, dtype=np.float64).ravel()

    if arch == "wavenet":
        for la in config["layers"]:
            if la["condition_size"] != 1:
                raise ValueError("a .nam WaveNet conditions on the audio only (condition_size 1): this model has knobs")
        nam_cfg = {"layers": [{"input_size": la["input_size"], "condition_size": 1, "head_size": la["head_size"],
                               "channels": la["channels"], "kernel_size": la["kernel_size"],
                               "dilations": list(la["dilations"]), "activation": la["activation"],
                               "gated": bool(la["gated"]), "head_bias": bool(la["head_bias"])}
                              for la in config["layers"]],
                   "head": None, "head_scale": float(arr(state["_head_scale"])[0])}
        flat = np.concatenate([arr(state[k]) for k, _ in wavenet_layout(config)])
        nam_arch = "WaveNet"
    elif arch == "lstm":
        if config.get("skip"):
            raise ValueError("NAM's LSTM has no dry skip: cannot export an LSTM with skip=True")
        if config.get("input_size", 1) != 1:
            raise ValueError("a .nam LSTM takes the audio only (input_size 1): this model has knobs")
        nl = config.get("num_layers", 1)
        nam_cfg = {"input_size": 1, "hidden_size": config["hidden_size"], "num_layers": nl}
        parts = []
        for i in range(nl):
            w = np.concatenate([state[f"_core.weight_ih_l{i}"].detach().numpy(),
                                state[f"_core.weight_hh_l{i}"].detach().numpy()], axis=1)
            parts += [arr(w), arr(state[f"_core.bias_ih_l{i}"]) + arr(state[f"_core.bias_hh_l{i}"]),
                      arr(state["_initial_hidden"][i]), arr(state["_initial_cell"][i])]
        flat = np.concatenate(parts + [arr(state["_head.weight"]), arr(state["_head.bias"])])
        nam_arch = "LSTM"
    else:
        raise ValueError(f"cannot export architecture {arch!r} to .nam")
    doc = {"version": NAM_VERSION, "metadata": dict(metadata or {}), "architecture": nam_arch,
           "config": nam_cfg, "weights": [float(v) for v in flat.astype(np.float32)], "sample_rate": sample_rate}
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def _array_config(la) -> dict:
    layer0 = la._layers[0]
    act = next(k for k, f in _activation_table().items() if f is layer0._activation)
    return {"input_size": la._rechannel.in_channels, "condition_size": layer0._input_mixer.in_channels,
            "channels": la._rechannel.out_channels, "head_size": la._head_rechannel.out_channels,
            "kernel_size": layer0._conv.kernel_size[0], "dilations": [l._conv.dilation[0] for l in la._layers],
            "activation": act, "gated": layer0._gated, "head_bias": la._head_rechannel.bias is not None}


def _activation_table():
    from .wavenet import ACTIVATIONS

    return ACTIVATIONS
