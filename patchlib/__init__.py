"""patchlib: a modular patching framework mixing classic DSP and neural nodes.

>>> import patchlib
>>> spec = patchlib.load_patch({"nodes": {"osc": {"type": "saw", "freq": 110}}, "out": "osc"})
>>> patchlib.Engine(spec).render(480).shape
(1, 480)
"""
from .errors import PatchError, Where
from .node import Context, Input, Node, Option, Output, Param
from .registry import register

__version__ = "0.1.0"


def __getattr__(name):
    # engine and patch import numba-compiled kernels; load them on first use
    if name in ("load_patch", "PatchSpec"):
        from . import patch

        return getattr(patch, name)
    if name == "Engine":
        from .engine import Engine

        return Engine
    if name in ("render_file",):
        from . import render

        return getattr(render, name)
    raise AttributeError(name)


__all__ = ["Context", "Engine", "Input", "Node", "Option", "Output", "Param", "PatchError", "Where",
           "load_patch", "register"]
