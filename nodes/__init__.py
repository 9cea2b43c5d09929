"""patchlib's node library: classic DSP now, neural nodes to come.

Importing this package registers every built-in node type (the
``patchlib.nodes`` entry point points here).
"""
from . import dsp  # noqa: F401
from . import neural  # noqa: F401
from . import mapping  # noqa: F401
