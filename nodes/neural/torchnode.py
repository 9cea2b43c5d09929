"""TorchNode: the base of nodes that run a torch model block by block.

It owns what every neural node needs: torch imported only when a patch uses
one (``import patchlib`` stays fast), the thread count set once (option
``threads``, default 1 so the audio path does not fight other work), the
device (``cpu``, or ``cuda`` when present), ``torch.inference_mode()``
around every call, preallocated conditioning buffers, and a self-test at
load: one zero block through the model, checking the output's shape, dtype
and finiteness, and measuring the time one block takes against its duration
(``self.time_ratio``: 0.1 means a block renders in a tenth of real time).
On the CPU the model runs by default through :mod:`nodes.neural.fast`
(option ``engine``: one fused numba kernel per block computing the torch
model's function from its weights); ``self.engine`` says which one runs.

A subclass implements :meth:`TorchNode.build_model` (returning a
:class:`~nodes.neural.streaming.StreamingModel` in streaming mode) and
:meth:`TorchNode.fill_conditioning` (writing the block's model input rows).
Errors are :class:`~patchlib.PatchError` raised in ``configure`` or
``prepare``, so an Engine is never built half-way.
"""
from __future__ import annotations

import time

import numpy as np

from patchlib import Node, Option, PatchError, Where

_threads = {"n": None}


def set_threads(n: int) -> None:
    """Set torch's intra-op thread count (once per value; torch's setting is process-wide)."""
    import torch

    n = int(n)
    if n < 1:
        raise PatchError(f"threads must be >= 1, got {n}", Where(key="threads"))
    if _threads["n"] != n:
        torch.set_num_threads(n)
        _threads["n"] = n


def torch_device(name: str):
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise PatchError("device 'cuda' asked for but torch sees no CUDA GPU here", Where(key="device"),
                             hint="use device: cpu")
        return torch.device("cuda")
    raise PatchError(f"unknown device {name!r}", Where(key="device"), hint="cpu or cuda")


class TorchNode(Node):
    """Base of torch-model nodes (not registered itself): see the module docstring."""

    options = {
        "threads": Option(1, kind=int,
                          doc="torch threads for the model (process-wide; 1 keeps the audio path light)"),
        "device": Option("cpu", choices=("cpu", "cuda"),
                         doc="where the model runs: cpu, or cuda when a GPU is present"),
        "engine": Option("auto", choices=("auto", "torch", "fast"),
                         doc="fast: fused numba kernels (CPU, WaveNet/LSTM); torch: the torch modules; "
                             "auto: fast on cpu when the model supports it"),
    }
    #: rows of the model's input (audio + conditioning); set by build_model's caller
    cond_rows: int = 1

    # ---- for subclasses ------------------------------------------------
    def build_model(self):
        """The streaming model (torch ``nn.Module``): ``forward((1, cond_rows, n)) -> (1, 1, n)``."""
        raise NotImplementedError

    def fill_conditioning(self, cond: np.ndarray, n: int) -> None:
        """Write the model input of this block into ``cond[:, :n]`` (float32 ``(cond_rows, block)``)."""
        cond[0, :n] = self.inp["in"][0, :n]

    #: the file the model came from (for error messages)
    model_file: str = "model"

    # ---- life cycle ----------------------------------------------------
    def prepare(self, ctx):
        super().prepare(ctx)
        import torch

        set_threads(self.opts.get("threads", 1))
        self.device = torch_device(self.opts.get("device", "cpu"))
        B = int(ctx.block_size)
        with torch.inference_mode():
            model = self.build_model()
            self.model = model.to(self.device).eval()
            self.model.prepare(B)
            self.latency = int(getattr(self.model, "latency", 0))
            self.receptive_field = getattr(self.model, "receptive_field", None)
            self._cond = np.zeros((self.cond_rows, B), dtype=np.float32)
            self._cond_cpu = torch.from_numpy(self._cond)[None]  # shares memory with _cond
            self._cond_dev = self._cond_cpu if self.device.type == "cpu" else self._cond_cpu.to(self.device)
            self.fast = self.build_fast(B)
            self.engine = "torch" if self.fast is None else "fast"
            self._fast_out = np.zeros(B, dtype=np.float32)
            self._fast_out_t = torch.from_numpy(self._fast_out)[None, None]
            self.self_test(B, float(ctx.sample_rate))
        msr = getattr(self, "model_sample_rate", None)
        if msr and abs(float(msr) - float(ctx.sample_rate)) > 0.5:
            ctx.warn(f"node '{self.name}': model '{self.model_file}' was trained at {float(msr):g} Hz but the patch "
                     f"runs at {float(ctx.sample_rate):g} Hz: it will sound different (a WaveNet's dilations and "
                     f"filters are in samples); render at {float(msr):g} Hz or train at this rate")
        self.reset()

    def build_fast(self, B: int):
        """The fast twin of ``self.model`` for option ``engine`` (``None``: run torch)."""
        from . import fast

        engine = self.opts.get("engine", "auto")
        if engine == "torch":
            return None
        why = fast.unsupported_reason(self.model)
        if why is None and self.device.type != "cpu":
            why = f"it runs on the CPU only (device is {self.device.type})"
        if why is not None:
            if engine == "fast":
                raise PatchError(f"model '{self.model_file}': engine 'fast' is not available: {why}",
                                 Where(key="engine"), hint="use engine: torch (or auto)")
            return None
        return fast.compile_model(self.model, B)

    def self_test(self, B: int, sr: float) -> None:
        """One zero block through the model: shape, dtype, finite, and the time it takes."""
        import torch

        self._cond[:] = 0.0
        t0 = time.perf_counter()
        y = self._run(B)
        dt = time.perf_counter() - t0
        where = Where(key="model")
        if tuple(y.shape) != (1, 1, B):
            raise PatchError(f"model '{self.model_file}': self-test output shape {tuple(y.shape)}, "
                             f"expected (1, 1, {B})", where)
        if y.dtype != torch.float32:
            raise PatchError(f"model '{self.model_file}': self-test output dtype {y.dtype}, expected float32", where)
        if not torch.isfinite(y).all():
            raise PatchError(f"model '{self.model_file}': self-test on silence gives NaN or inf", where)
        self.time_ratio = dt / (B / sr)

    def state_items(self):
        """The streaming state (for a live edit's takeover, see ``patchlib/takeover.py``).

        The fast engine's histories, or the torch model's caches: tensors
        kept as plain attributes of its modules (weights are parameters or
        buffers, and the same for the same model file).
        """
        if self.fast is not None:
            return {f"fast.{k}": v for k, v in self.fast.state_items().items()}
        import numbers

        import torch

        from patchlib.takeover import Attr

        items = {}
        for mname, m in self.model.named_modules():
            for k, v in vars(m).items():
                key = f"model.{mname}.{k}"
                if isinstance(v, torch.Tensor):
                    items[key] = v
                elif isinstance(v, (list, tuple)) and v and all(isinstance(x, torch.Tensor) for x in v):
                    items.update({f"{key}.{i}": x for i, x in enumerate(v)})  # a double buffer
                elif isinstance(v, numbers.Number) and not k.startswith("__"):
                    items[key] = Attr(m, k)  # which buffer is current, a position
        return items

    def reset(self):
        import torch

        with torch.inference_mode():
            self.model.reset()
        if self.fast is not None:
            self.fast.reset()

    def _run(self, n):
        if self.fast is not None:
            self.fast(self._cond, self._fast_out, n)
            return self._fast_out_t[..., :n]
        y = self.model(self._cond_dev[..., :n] if self._cond_dev is self._cond_cpu
                       else self._cond_dev[..., :n].copy_(self._cond_cpu[..., :n]))
        return y

    def process(self, n, t):
        self.fill_conditioning(self._cond, n)
        if self.fast is not None:
            self.fast(self._cond, self._fast_out, n)
            self.out["out"][0, :n] = self._fast_out[:n]
            return
        import torch

        with torch.inference_mode():
            y = self._run(n)
            self.out["out"][0, :n] = y[0, 0].cpu().numpy()
