"""LSTM effect (Wright et al. 2019; NAM's ``LSTM``): LSTM layers + a linear head.

Input per sample: the audio plus one row per knob (normalised 0..1). The
output is ``head(h_t)``, plus the input audio when ``skip`` (Wright's skip
connection, so the net learns the difference from dry). Streaming carries
``(h, c)`` between calls in preallocated tensors; ``reset`` puts back the
(learnable, NAM's ``_initial_hidden`` / ``_initial_cell``) initial state.
Receptive field: unbounded (recurrent); latency 0.
"""
from __future__ import annotations

import torch
from torch import nn

from .streaming import StreamingModel


class LSTM(StreamingModel):
    """``forward(cond (1, 1 + knobs, T)) -> (1, 1, T)``.

    Args:
        input_size: 1 + knobs.
        hidden_size, num_layers: of the LSTM.
        skip: add the input audio to the output.
        streaming: carry ``(h, c)`` across calls.
    """

    def __init__(self, input_size=1, hidden_size=16, num_layers=1, skip=False, streaming=False):
        super().__init__()
        self.streaming = streaming
        self.skip = bool(skip)
        self.condition_size = input_size
        self._core = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self._head = nn.Linear(hidden_size, 1)
        self._initial_hidden = nn.Parameter(torch.zeros(num_layers, hidden_size))
        self._initial_cell = nn.Parameter(torch.zeros(num_layers, hidden_size))
        self._h = self._c = None

    def prepare(self, max_block: int, batch: int = 1) -> None:
        shape = (self._core.num_layers, batch, self._core.hidden_size)
        p = self._initial_hidden
        self._h = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self._c = torch.zeros(shape, dtype=p.dtype, device=p.device)
        self.reset()

    def reset(self) -> None:
        if self._h is not None:
            with torch.no_grad():
                self._h.copy_(self._initial_hidden[:, None, :].expand_as(self._h))
                self._c.copy_(self._initial_cell[:, None, :].expand_as(self._c))

    @property
    def macs_per_sample(self) -> int:
        """Multiply-adds per output sample (gate matrices and head; activations not counted)."""
        return sum(p.numel() for n, p in self._core.named_parameters() if n.startswith("weight")) \
            + self._head.weight.numel()

    def forward(self, cond):
        b = cond.shape[0]
        z = cond.transpose(1, 2)  # (B, T, inputs)
        if self.streaming:
            if self._h is None:
                raise RuntimeError("streaming LSTM: call prepare(max_block) first")
            out, (h, c) = self._core(z, (self._h, self._c))
            self._h.copy_(h)
            self._c.copy_(c)
        else:
            h0 = self._initial_hidden[:, None, :].expand(-1, b, -1).contiguous()
            c0 = self._initial_cell[:, None, :].expand(-1, b, -1).contiguous()
            out, _ = self._core(z, (h0, c0))
        y = self._head(out).transpose(1, 2)  # (B, 1, T)
        return y + cond[:, :1] if self.skip else y
