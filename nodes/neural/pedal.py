"""The ``pedal`` node: a neural model of an effect (WaveNet or LSTM) with its knobs as params.

torch is imported only when a patch uses the node (in ``ports`` for a
patch that names a model, and in ``prepare``), so DSP-only patches start fast.
"""
from __future__ import annotations

import os

import numpy as np

from patchlib import Input, Option, Output, Param, PatchError, Where, register

from . import checkpoint
from .torchnode import TorchNode

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
#: a tiny random-weight WaveNet for the contract suite; regenerate with
#: ``python -c "from nodes.neural.pedal import write_test_model; write_test_model()"``
TEST_MODEL = os.path.join(_ROOT, "patches", "models", "test-tiny-pedal.pt")


def write_test_model(path: str = TEST_MODEL, seed: int = 0, knobs=("gain", "tone")) -> str:
    """Write a tiny deterministic WaveNet checkpoint (random weights, knobs ``gain``, ``tone`` in 0..1)."""
    import torch

    from .wavenet import WaveNet, wavenet_config

    torch.manual_seed(seed)
    cfg = wavenet_config("tiny", knobs=len(knobs))
    model = WaveNet(**cfg)
    checkpoint.save(path, "wavenet", cfg, model.state_dict(), 48000,
                    knobs=[{"name": k, "default": 0.5, "range": [0.0, 1.0], "doc": f"{k} knob of the test model"}
                           for k in knobs],
                    validation={"note": "random weights: a test fixture, not a trained model"},
                    train_command="python -c 'from nodes.neural.pedal import write_test_model; write_test_model()'")
    return path


class _ContractSettings:
    """The tiny test model, relative to the working directory (dict patches resolve files from it)."""

    def __get__(self, obj, owner):
        return {"model": os.path.relpath(TEST_MODEL, os.getcwd())}


def resolve_model(file, base_dir: str) -> str:
    """The path of ``file`` inside the patch's folder, or a PatchError naming it."""
    allowed = f"give a path relative to the patch's folder ({base_dir}), inside it, e.g. models/overdrive.pt"
    if not isinstance(file, str) or not file:
        raise PatchError("model needs a file name", Where(key="model"), hint=allowed)
    if os.path.isabs(file):
        raise PatchError(f"model '{file}' is an absolute path: not allowed", Where(key="model"), hint=allowed)
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, file))
    if os.path.commonpath([base, path]) != base:
        raise PatchError(f"model '{file}' is outside the patch's folder: not allowed", Where(key="model"), hint=allowed)
    return path


def _place(file):
    """``(patch folder, Where)`` of a model option: the loader's :class:`~patchlib.patch.PatchPath` knows
    both; a plain string (a node built by hand) resolves from the working directory."""
    return getattr(file, "base_dir", None) or os.getcwd(), getattr(file, "where", None) or Where(key="model")


def _knob_params(path: str, file: str) -> dict:
    hdr = checkpoint.header(path, name=file)
    params = {}
    for k in hdr["knobs"]:
        lo, hi = (float(v) for v in k["range"])
        params[k["name"]] = Param(float(k.get("default", lo)), (lo, hi), k.get("unit", ""),
                                  doc=f"{k.get('doc') or k['name']} (declared by {file})")
    return params


@register("pedal")
class Pedal(TorchNode):
    """Neural effect pedal: a WaveNet or LSTM model file, its knobs as params (conditioning per sample).

    The model (``model:``, a checkpoint relative to the patch's folder, see
    ``nodes/neural/checkpoint.py``) declares its knobs, names and ranges:
    each becomes a param of this node, read every sample and fed to the
    network as a conditioning channel (normalised to 0..1), so an LFO on a
    knob sweeps it smoothly. Mono in, mono out; causal (latency 0). Runs
    streaming: any block size gives what a whole-signal pass gives.

    Example: ``drive: {type: pedal, in: dry, model: models/overdrive.pt, gain: 0.7, tone: 0.5}``
    """

    inputs = {"in": Input("dry signal (mono)", channels=1)}
    outputs = {"out": Output("the modelled pedal's output", channels=1)}
    params: dict = {}
    options = {
        "model": Option(None, kind="path", required=True, doc="model checkpoint relative to the patch's folder"),
        **TorchNode.options,
    }
    contract_settings = _ContractSettings()

    @classmethod
    def ports(cls, opts):
        file = opts.get("model")
        if not file:
            return cls.inputs, cls.outputs, {}
        base, where = _place(file)
        try:
            path = resolve_model(file, base)
            return cls.inputs, cls.outputs, _knob_params(path, file)
        except PatchError as e:
            e.where = Where(where.file, where.line, where.node, e.where.key or "model")
            raise

    def configure(self, in_channels):
        # load (and check) the file before anything is allocated
        self.model_path = resolve_model(self.opts.get("model"), self.ctx.base_dir)
        self.model_file = self.opts.get("model")
        self.ckpt = checkpoint.load(self.model_path, name=self.model_file)
        return {"out": 1}

    def build_model(self):
        data = self.ckpt
        model = checkpoint.build(self.model_file, data, streaming=True)
        self.knobs = [(k["name"], float(k["range"][0]), float(k["range"][1])) for k in data["knobs"]]
        self.cond_rows = 1 + len(self.knobs)
        self.model_sample_rate = float(data["sample_rate"])
        return model

    def fill_conditioning(self, cond, n):
        cond[0, :n] = self.inp["in"][0, :n]
        for j, (name, lo, hi) in enumerate(self.knobs):
            np.subtract(self.par[name][:n], lo, out=cond[1 + j, :n])
            cond[1 + j, :n] *= 1.0 / (hi - lo)
