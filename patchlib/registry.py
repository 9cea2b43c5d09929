"""Node types by name.

Built-in nodes and third-party packages register the same way: a package
lists a module under the ``patchlib.nodes`` entry point group, and importing
that module runs ``@register`` decorators. A user's own node is one class::

    # pyproject.toml of your package
    [project.entry-points."patchlib.nodes"]
    mynodes = "mypackage.nodes"

The engine never imports a node module by name; it asks this registry.
"""
from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from .errors import PatchError, suggest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "patchlib.nodes"
_TYPES: dict[str, type] = {}
_loaded = False


def register(name: str, *, override: bool = False):
    """Class decorator registering a node type under ``name``.

    A duplicate name is an error unless ``override=True`` is explicit.
    """

    def deco(cls):
        from .node import Node

        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise TypeError(f"@register({name!r}) needs a Node subclass, got {cls!r}")
        if name in _TYPES and _TYPES[name] is not cls and not override:
            raise ValueError(
                f"node type {name!r} is already registered by {_TYPES[name].__module__}; "
                "pass override=True to replace it"
            )
        cls.type_name = name
        _TYPES[name] = cls
        return cls

    return deco


def load_plugins() -> None:
    """Import every module of the ``patchlib.nodes`` entry point group once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("patchlib.poly")  # the engine's own node type
    eps = entry_points(group=ENTRY_POINT_GROUP)
    names = set()
    for ep in eps:
        names.add(ep.value)
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            log.warning("could not load node plugin %s (%s): %s", ep.name, ep.value, exc)
    if "nodes" not in names:
        # Running from a source tree that was never installed: the built-in
        # library is still the documented default.
        try:
            importlib.import_module("nodes")
        except ImportError:
            pass


def get(name: str) -> type:
    """The class registered under ``name``; unknown names get suggestions."""
    load_plugins()
    try:
        return _TYPES[name]
    except KeyError:
        raise PatchError(
            f"unknown node type '{name}'",
            hint=suggest(name, _TYPES) or "run 'patchlib nodes' for the list of types",
        ) from None


def all_types() -> dict[str, type]:
    load_plugins()
    return dict(sorted(_TYPES.items()))
