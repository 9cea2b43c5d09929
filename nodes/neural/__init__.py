"""Neural nodes: a streaming torch runtime and the ``pedal`` node (neural effects with live knobs).

Importing this package registers ``pedal`` without importing torch: torch
loads when a patch uses a neural node. The runtime lives in
``streaming`` (cached-padding causal convs), ``torchnode`` (the node base),
``wavenet`` and ``lstm`` (architectures), ``checkpoint`` (the file format).
"""
from . import pedal  # noqa: F401
from . import sample_rnn  # noqa: F401
from . import wavenet_gen  # noqa: F401
from . import sing  # noqa: F401
from . import vae  # noqa: F401
from . import latent  # noqa: F401
