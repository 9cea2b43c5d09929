"""Fractional delay line with feedback and modulated time (numba kernels).

The line is a float64 ring buffer per channel whose size is a power of two
(index wrap = mask). A delay of ``d`` samples (``d = time * sr``, fractional)
reads between the samples written ``m = floor(d)`` and ``m + 1`` samples ago
with a 4-point, 3rd-order Hermite (Catmull-Rom) interpolator over the taps
``m - 1, m, m + 1, m + 2`` samples ago. It is exact at integer delays,
continuous with a continuous first derivative in ``d``, so a delay time swept
per sample (chorus, flanger, vibrato) gives a smooth, click-free output. Where
the newest tap (``m - 1`` samples ago) has not been written yet, i.e. for
``1 <= d < 2`` in the per-sample kernel, the read falls back to linear
interpolation between the two available taps (both agree at ``d == 2``).

Interpolation positions are computed from the integer write index and the
split ``d = m + f`` (never from ``write_index - d`` in floating point), so the
arithmetic is independent of where the ring wraps and of how a run is split
into blocks: N samples in one call are bit-identical to any chunking.

Two ways to run a delay node:

* :func:`delay_kernel`: per sample, read (delay >= 1 sample) then write
  ``x + feedback * read``. The feedback stays inside the node.
* :func:`delay_read` then :func:`delay_write`: for a feedback loop that runs
  through the patch graph. ``delay_read`` renders the block from samples
  written before the block only (delay clamped to ``>= n + 2``), the graph
  computes whatever the loop does with it, then ``delay_write`` writes
  ``x + feedback * y`` for the same block. With ``d >= n + 2`` this equals the
  per-sample kernel bit for bit.

The wet (delayed) signal is the only output; dry/wet mixing is the engine's.
"""
from __future__ import annotations

import numba
import numpy as np

from ._interp import hermite as _hermite

__all__ = [
    "FEEDBACK_MAX",
    "delay_ring_size",
    "delay_state",
    "delay_kernel",
    "delay_read",
    "delay_write",
]

#: Feedback is clamped to ``[-FEEDBACK_MAX, FEEDBACK_MAX]``.
FEEDBACK_MAX = 0.999
#: Guard samples beyond the longest delay: the cubic reads up to ``d + 2``.
_GUARD = 4
#: Values written smaller than this are flushed to zero so a decaying
#: feedback tail never sits on (slow) subnormal numbers (~-600 dB).
_FLUSH = 1e-30

# idx layout
_W = 0  # write position (next slot to write), in [0, size)
_MAXD = 1  # longest delay in samples (clamp); <= 0 means size - _GUARD


def delay_ring_size(max_delay_samples: float) -> int:
    """Ring length: the smallest power of two ``>= max_delay_samples + 4``."""
    need = int(np.ceil(max(float(max_delay_samples), 1.0))) + _GUARD
    return 1 << (need - 1).bit_length()


def delay_state(channels: int, max_delay_samples: float):
    """Fresh state for the delay kernels.

    Args:
        channels: Output channel count C.
        max_delay_samples: Longest delay the node must reach, in samples
            (``max_time * sr``). For the split read/write form it must also
            be at least ``block_size + 2`` (the read's minimum delay).

    Returns:
        ``(ring, idx)``:

        * ``ring``: float64 ``(C, size)``, zeros; ``size`` is a power of two
          ``>= max_delay_samples + 4`` (see :func:`delay_ring_size`).
        * ``idx``: int64 ``(2,)`` = ``[write position, max delay samples]``.
          Reset = zero ``ring`` and ``idx[0]``. If ``idx[1] <= 0`` (an
          all-zero idx) the kernels use ``size - 4`` as the maximum.
    """
    size = delay_ring_size(max_delay_samples)
    ring = np.zeros((int(channels), size), dtype=np.float64)
    idx = np.zeros(2, dtype=np.int64)
    idx[_MAXD] = int(np.floor(max(float(max_delay_samples), 1.0)))
    return ring, idx


@numba.njit(cache=True, nogil=True, inline="always")
def _max_delay(ring, idx):
    hi = float(ring.shape[1] - _GUARD)
    m = float(idx[_MAXD])
    if m > 0.0 and m < hi:
        hi = m
    return hi


@numba.njit(cache=True, nogil=True, inline="always")
def _clamp_fb(fb):
    fb = np.float64(fb)
    if not fb >= -FEEDBACK_MAX:  # also NaN
        fb = -FEEDBACK_MAX if fb < 0.0 else 0.0
    if fb > FEEDBACK_MAX:
        fb = FEEDBACK_MAX
    return fb


@numba.njit(cache=True, nogil=True, inline="always")
def _tap(ring, c, w, m, f, mask):
    """Value ``m + f`` samples before write position ``w`` (``m >= 2``)."""
    return _hermite(
        ring[c, (w - m + 1) & mask],
        ring[c, (w - m) & mask],
        ring[c, (w - m - 1) & mask],
        ring[c, (w - m - 2) & mask],
        f,
    )


@numba.njit(cache=True, nogil=True)
def delay_kernel(x, y, n, time, feedback, sr, ring, idx):
    """Per-sample fractional delay with feedback; writes the wet signal.

    For each sample: ``d = clamp(time[i] * sr, 1, max)``; ``r`` = the line
    read ``d`` samples back (cubic, or linear for ``d < 2``);
    ``y[c, i] = r``; then ``x[c, i] + clamp(feedback[i]) * float32(r)`` is
    written. (The float32-rounded read is fed back so that the split
    read/write form, which only sees ``y``, gives identical numbers.)

    Args:
        x: float32 input ``(Cx, frames)``; channel c reads ``x[min(c, Cx-1)]``.
        y: float32 output ``(C, frames)``, ``y[:, :n]`` written (wet only).
            May be the same array as ``x`` (in place) when the shapes match.
        n: Number of samples.
        time: float32 ``(>= n,)`` delay time in seconds per sample.
        feedback: float32 ``(>= n,)`` feedback gain, clamped to
            ``[-0.999, 0.999]``.
        sr: Sample rate in Hz.
        ring: float64 ``(>= C, size)`` ring from :func:`delay_state`.
        idx: int64 ``[write position, max delay]`` from :func:`delay_state`.
    """
    nch = y.shape[0]
    cx = x.shape[0]
    mask = ring.shape[1] - 1
    hi = _max_delay(ring, idx)
    w0 = idx[_W]
    for c in range(nch):
        xc = c if c < cx else cx - 1
        w = w0
        for i in range(n):
            d = np.float64(time[i]) * sr
            if not d >= 1.0:  # also NaN
                d = 1.0
            if d > hi:
                d = hi
            m = np.int64(d)
            f = d - m
            if m >= 2:
                r = _tap(ring, c, w, m, f, mask)
            else:
                z0 = ring[c, (w - 1) & mask]
                r = z0 + f * (ring[c, (w - 2) & mask] - z0)
            r32 = np.float32(r)
            v = np.float64(x[xc, i]) + _clamp_fb(feedback[i]) * np.float64(r32)
            y[c, i] = r32  # after reading x[xc, i]: in place (y is x) is fine
            if -_FLUSH < v < _FLUSH:
                v = 0.0
            ring[c, w] = v
            w = (w + 1) & mask
    idx[_W] = (w0 + n) & mask


@numba.njit(cache=True, nogil=True)
def delay_read(y, n, time, sr, ring, idx):
    """Render a block of the delayed signal from samples written before it.

    Sample ``i`` of the block is read ``d = clamp(time[i] * sr, n + 2, max)``
    samples before its own position (so ``d - i >= 2``: every cubic tap was
    written in an earlier block). The block size therefore sets the shortest
    delay (a loop through the graph has at least one block of latency), and
    that clamp makes results depend on the block size when ``time * sr <
    n + 2``. Does not advance the write position; call :func:`delay_write`
    for the same block afterwards.

    Args:
        y: float32 output ``(C, frames)``, ``y[:, :n]`` written (wet only).
        n: Number of samples in the block.
        time: float32 ``(>= n,)`` delay time in seconds per sample.
        sr: Sample rate in Hz.
        ring: float64 ``(>= C, size)`` ring from :func:`delay_state`; its
            maximum delay must be ``>= n + 2``.
        idx: int64 ``[write position, max delay]`` from :func:`delay_state`.
    """
    nch = y.shape[0]
    mask = ring.shape[1] - 1
    hi = _max_delay(ring, idx)
    lo = float(n + 2)
    w0 = idx[_W]
    for c in range(nch):
        for i in range(n):
            d = np.float64(time[i]) * sr
            if d > hi:
                d = hi
            if not d >= lo:  # also NaN; lo wins over hi
                d = lo
            m = np.int64(d)
            f = d - m
            y[c, i] = np.float32(_tap(ring, c, (w0 + i) & mask, m, f, mask))


@numba.njit(cache=True, nogil=True)
def delay_write(x, y, n, feedback, ring, idx):
    """Write ``x + clamp(feedback) * y`` for a block; advance the position.

    Args:
        x: float32 input ``(Cx, frames)``; ring row c takes ``x[min(c, Cx-1)]``.
        y: float32 ``(Cy, frames)``, the signal fed back (normally the block
            :func:`delay_read` produced, possibly processed by the graph);
            row c takes ``y[min(c, Cy-1)]``.
        n: Number of samples in the block.
        feedback: float32 ``(>= n,)`` feedback gain, clamped to
            ``[-0.999, 0.999]``.
        ring: float64 ``(C, size)`` ring from :func:`delay_state`; all its
            rows are written.
        idx: int64 ``[write position, max delay]``; ``idx[0]`` advances by n.
    """
    nch = ring.shape[0]
    cx = x.shape[0]
    cy = y.shape[0]
    mask = ring.shape[1] - 1
    w0 = idx[_W]
    for c in range(nch):
        xc = c if c < cx else cx - 1
        yc = c if c < cy else cy - 1
        w = w0
        for i in range(n):
            v = np.float64(x[xc, i]) + _clamp_fb(feedback[i]) * np.float64(y[yc, i])
            if -_FLUSH < v < _FLUSH:
                v = 0.0
            ring[c, w] = v
            w = (w + 1) & mask
    idx[_W] = (w0 + n) & mask
