"""Streaming building blocks: causal convolutions with cached padding.

A causal convolution of kernel ``k`` and dilation ``d`` needs the previous
``(k - 1) * d`` input frames to compute a frame. Offline (one pass over a
whole signal) they are zeros padded on the left; streaming (block by block)
each layer keeps them in a cache, the tail of the input it saw last (the
cached-padding idea of Caillon & Esling's cached_conv). Fed any sequence of
block sizes, a streaming layer computes what one offline pass computes.

Caches are allocated in :meth:`CausalConv1d.prepare` for a fixed maximum
block size (never lazily), zeroed by :meth:`CausalConv1d.reset`. Streaming vs
offline is a constructor argument, never a global switch.

This module imports torch: import it only from code that runs a model.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F


class CausalConv1d(nn.Conv1d):
    """A causal ``Conv1d`` (output frame t sees inputs t - (k-1)*d .. t), offline or streaming.

    Args:
        in_channels, out_channels, kernel_size, dilation, bias: as ``nn.Conv1d``.
        streaming: keep a cache of past input between calls (call
            :meth:`prepare` first); else zero-pad every call (a whole signal).

    Input and output are ``(batch, channels, frames)``; the output has as
    many frames as the input.
    """

    def __init__(self, in_channels, out_channels, kernel_size=1, dilation=1, bias=True, streaming=False):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.streaming = streaming
        self.pad = (kernel_size - 1) * dilation
        # two (batch, in_channels, pad + max_block) buffers, used in turn: the cache then the new
        # block; the next cache is copied into the other one (no overlap, no allocation per block)
        self._bufs = None

    @property
    def receptive_field(self) -> int:
        return self.pad + 1

    def prepare(self, max_block: int, batch: int = 1) -> None:
        """Allocate the cache for blocks of at most ``max_block`` frames."""
        self.max_block = int(max_block)
        p = next(self.parameters())
        self._bufs = [torch.zeros(batch, self.in_channels, self.pad + self.max_block, dtype=p.dtype, device=p.device)
                      for _ in range(2)]
        self._cur = 0

    def reset(self) -> None:
        if self._bufs is not None:
            for b in self._bufs:
                b.zero_()
            self._cur = 0

    def forward(self, x):
        if not self.streaming:
            return F.conv1d(F.pad(x, (self.pad, 0)), self.weight, self.bias, dilation=self.dilation)
        if self._bufs is None:
            raise RuntimeError("streaming CausalConv1d: call prepare(max_block) first")
        n = x.shape[-1]
        if n > self.max_block:
            raise ValueError(f"block of {n} frames > prepared maximum {self.max_block}")
        if self.pad == 0:
            return F.conv1d(x, self.weight, self.bias)
        p = self.pad
        buf, nxt = self._bufs[self._cur], self._bufs[1 - self._cur]
        buf[..., p:p + n].copy_(x)  # the cache (last p input frames) sits in buf[..., :p]
        y = F.conv1d(buf[..., :p + n], self.weight, self.bias, dilation=self.dilation)
        nxt[..., :p].copy_(buf[..., n:n + p])  # the new cache: the last p frames of cache + block
        self._cur = 1 - self._cur
        return y


def streaming_modules(module: nn.Module):
    """Every submodule that keeps streaming state (has ``prepare`` and ``reset``)."""
    return [m for m in module.modules() if m is not module and hasattr(m, "prepare") and hasattr(m, "reset")]


def compose_receptive_field(fields) -> int:
    """Receptive field of layers in series: 1 + sum of (rf - 1) (as NAM computes it)."""
    return 1 + sum(int(r) - 1 for r in fields)


class StreamingModel(nn.Module):
    """Base of the streaming models: one ``forward(cond) -> audio`` for every architecture.

    ``cond`` is ``(batch, 1 + knobs, frames)``: row 0 the audio, then one row
    per knob (normalised to 0..1). The output is ``(batch, 1, frames)``.
    Subclasses set ``streaming`` and list their stateful parts through
    :func:`streaming_modules` (or override :meth:`prepare` / :meth:`reset`).
    """

    streaming: bool = False

    #: samples by which the output lags the input (0 for causal models)
    latency: int = 0

    @property
    def receptive_field(self) -> int | None:
        """Input frames one output frame depends on (``None``: unbounded, a recurrent model)."""
        return None

    def prepare(self, max_block: int, batch: int = 1) -> None:
        for m in streaming_modules(self):
            m.prepare(max_block, batch)
        self.reset()

    def reset(self) -> None:
        for m in streaming_modules(self):
            m.reset()


def realtime_factor(model: StreamingModel, block_size: int, sample_rate: float = 48000.0, seconds: float = 2.0,
                    seed: int = 0) -> float:
    """Seconds of audio a streaming ``model`` renders per second of wall time, fed ``block_size`` blocks.

    Uses the current torch thread count; random input (audio and knob rows),
    a short warm-up, then ``seconds`` of audio. For ``patchlib bench``.
    """
    n = max(1, int(sample_rate * seconds) // block_size) * block_size
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, getattr(model, "condition_size", 1), n, generator=g)
    x[:, 0] = 0.6 * x[:, 0] - 0.3
    with torch.inference_mode():
        model.prepare(block_size)
        for i in range(0, min(n, 20 * block_size), block_size):
            model(x[..., i:i + block_size])
        model.reset()
        t0 = time.perf_counter()
        for i in range(0, n, block_size):
            model(x[..., i:i + block_size])
        dt = time.perf_counter() - t0
        model.reset()
    return (n / sample_rate) / dt
