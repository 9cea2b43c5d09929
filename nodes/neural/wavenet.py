"""WaveNet as a non-autoregressive effect (Damskägg et al. 2019), shaped like Neural Amp Modeler's.

Structure (names follow NAM's ``_WaveNet``, ``_LayerArray`` and ``_Layer``
so that a ``.nam`` loader can map its flat weight list 1:1, in this order per
layer array: ``_rechannel.weight``; per layer ``_conv.weight``,
``_conv.bias``, ``_input_mixer.weight``, ``_1x1.weight``, ``_1x1.bias``;
``_head_rechannel.weight`` (and ``.bias`` when ``head_bias``); last the
model's ``head_scale``):

* a layer array rechannels its input (1x1, no bias) to ``channels``, then
  runs layers with dilations ``d``: ``z = conv_d(x) + input_mixer(c)``,
  ``a = tanh(z)`` (or gated ``tanh(z1) * sigmoid(z2)``), ``x <- x + 1x1(a)``
  (residual), and ``a`` is summed into the head (skip connections);
  the head sum is rechannelled to ``head_size``.
* array ``i + 1`` takes array ``i``'s residual output as input and adds its
  head to its own head sum (so ``head_size`` of array ``i`` equals
  ``channels`` of array ``i + 1``); the output is ``head_scale`` times the
  last array's head.
* the conditioning ``c`` is the input audio (as in NAM) plus one row per
  knob, so ``condition_size = 1 + knobs``: every layer sees the knob values
  sample by sample through its input mixer, and a swept knob is smooth.
* optional (``input_gain: true``, patchlib's own, not in NAM): a learnt
  knob-dependent input gain, FiLM on the input, ``x <- x * 10 ** (w . knobs + b)``
  per sample. A drive knob scales the signal into the clipping stage over
  tens of dB; additive conditioning can only approximate that product, this
  one weight row makes it exact (``w``, ``b`` start at 0: gain 1).

Receptive field: ``1 + sum over layers of (kernel - 1) * dilation``
(4093 samples for NAM's standard model); latency 0 (causal).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from .streaming import CausalConv1d, StreamingModel, compose_receptive_field

ACTIVATIONS = {"Tanh": torch.tanh, "ReLU": F.relu, "Hardtanh": F.hardtanh, "Sigmoid": torch.sigmoid}

_DIL = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]

#: the input gain is ``exp(INPUT_GAIN_SCALE * (w . knobs + b))``: its weights count in units of 20 dB
#: (ln 10 nepers), so that Adam, whose steps are about ``lr`` whatever the gradient, moves a drive knob's
#: span of tens of dB in hundreds of steps rather than thousands
INPUT_GAIN_SCALE = 2.302585092994046

#: named sizes; ``condition_size`` is 1 (audio) here: the model adds one per knob
PRESETS = {
    # NAM "standard": two arrays, 16 then 8 channels, dilations 1..512, kernel 3, plain tanh
    "standard": {
        "layers": [
            {"input_size": 1, "condition_size": 1, "channels": 16, "head_size": 8, "kernel_size": 3,
             "dilations": _DIL, "activation": "Tanh", "gated": False, "head_bias": False},
            {"input_size": 16, "condition_size": 1, "channels": 8, "head_size": 1, "kernel_size": 3,
             "dilations": _DIL, "activation": "Tanh", "gated": False, "head_bias": True},
        ],
        "head_scale": 0.02,
    },
    # Damskägg et al. 2019: 10 layers x 16 channels, gated, dilations 1..512
    "paper": {
        "layers": [
            {"input_size": 1, "condition_size": 1, "channels": 16, "head_size": 1, "kernel_size": 3,
             "dilations": _DIL, "activation": "Tanh", "gated": True, "head_bias": True},
        ],
        "head_scale": 1.0,
    },
    # for tests and the contract suite
    "tiny": {
        "layers": [
            {"input_size": 1, "condition_size": 1, "channels": 4, "head_size": 2, "kernel_size": 3,
             "dilations": [1, 2, 4], "activation": "Tanh", "gated": False, "head_bias": False},
            {"input_size": 4, "condition_size": 1, "channels": 2, "head_size": 1, "kernel_size": 3,
             "dilations": [1, 2], "activation": "Tanh", "gated": True, "head_bias": True},
        ],
        "head_scale": 0.5,
    },
}


def wavenet_config(preset: str = "standard", knobs: int = 0) -> dict:
    """The config of a named size with ``knobs`` knob rows added to every conditioning input."""
    cfg = copy.deepcopy(PRESETS[preset])
    for la in cfg["layers"]:
        la["condition_size"] += knobs
    return cfg


class _Layer(nn.Module):
    """One dilated causal conv + input mixin + activation + 1x1 residual (NAM's ``_Layer``)."""

    def __init__(self, condition_size, channels, kernel_size, dilation, activation, gated, streaming):
        super().__init__()
        mid = 2 * channels if gated else channels
        self._conv = CausalConv1d(channels, mid, kernel_size, dilation=dilation, bias=True, streaming=streaming)
        self._input_mixer = nn.Conv1d(condition_size, mid, 1, bias=False)
        self._1x1 = nn.Conv1d(channels, channels, 1, bias=True)
        self._activation = ACTIVATIONS[activation]
        self._gated = gated
        self._channels = channels

    def forward(self, x, c):
        z = self._conv(x) + self._input_mixer(c)
        if self._gated:
            a = self._activation(z[:, :self._channels]) * torch.sigmoid(z[:, self._channels:])
        else:
            a = self._activation(z)
        return x + self._1x1(a), a


class _LayerArray(nn.Module):
    """Rechannel, a stack of dilated layers, and a head rechannel (NAM's ``_LayerArray``)."""

    def __init__(self, input_size, condition_size, channels, head_size, kernel_size, dilations,
                 activation="Tanh", gated=False, head_bias=True, streaming=False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        self._rechannel = nn.Conv1d(input_size, channels, 1, bias=False)
        self._layers = nn.ModuleList(
            _Layer(condition_size, channels, kernel_size, d, activation, gated, streaming) for d in dilations)
        self._head_rechannel = nn.Conv1d(channels, head_size, 1, bias=head_bias)

    @property
    def receptive_field(self) -> int:
        return compose_receptive_field(layer._conv.receptive_field for layer in self._layers)

    def forward(self, x, c, head_input=None):
        x = self._rechannel(x)
        for layer in self._layers:
            x, a = layer(x, c)
            head_input = a if head_input is None else head_input + a
        return self._head_rechannel(head_input), x


class WaveNet(StreamingModel):
    """A conditioned WaveNet effect: ``forward(cond (B, 1 + knobs, T)) -> (B, 1, T)``.

    Args:
        layers: one dict per layer array (see :data:`PRESETS`): ``input_size``,
            ``condition_size`` (1 + knobs), ``channels``, ``head_size``,
            ``kernel_size``, ``dilations``, ``activation``, ``gated``, ``head_bias``.
        head_scale: output gain (NAM's ``head_scale``).
        head: NAM's optional post-head (``None`` in every released NAM WaveNet);
            accepted so a NAM config passes through, and refused when set.
        streaming: keep each conv's past input between calls.
        input_gain: add the learnt knob-dependent input gain (see the module docstring).
    """

    def __init__(self, layers, head_scale=1.0, head=None, streaming=False, input_gain=False):
        super().__init__()
        if head is not None:
            raise ValueError("a WaveNet 'head' block is not supported (NAM's standard models have none)")
        self.streaming = streaming
        self._layers = nn.ModuleList(_LayerArray(**la, streaming=streaming) for la in layers)
        self.register_buffer("_head_scale", torch.tensor(float(head_scale)))
        self.condition_size = layers[0]["condition_size"]
        self._input_gain = None
        if input_gain:
            if self.condition_size < 2:
                raise ValueError("input_gain needs at least one knob (condition_size >= 2)")
            self._input_gain = nn.Conv1d(self.condition_size - 1, 1, 1, bias=True)
            nn.init.zeros_(self._input_gain.weight)
            nn.init.zeros_(self._input_gain.bias)

    @property
    def receptive_field(self) -> int:
        return compose_receptive_field(la.receptive_field for la in self._layers)

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds per output sample (convs and mixers; activations not counted)."""
        total = 0
        for la in self._layers:
            total += la._rechannel.weight.numel() + la._head_rechannel.weight.numel()
            for layer in la._layers:
                total += sum(m.weight.numel() for m in (layer._conv, layer._input_mixer, layer._1x1))
        if self._input_gain is not None:
            total += self._input_gain.weight.numel() + 1
        return total

    def forward(self, cond):
        if self._input_gain is not None:
            x = cond[:, :1] * torch.exp(INPUT_GAIN_SCALE * self._input_gain(cond[:, 1:]))
            cond = torch.cat([x, cond[:, 1:]], dim=1)
        x = cond[:, :1]
        y, head = x, None
        for la in self._layers:
            head, y = la(y, cond, head)
        return self._head_scale * head
