"""Fused CPU inference for the neural pedals: one numba kernel per block instead of ~200 small torch calls.

:func:`compile_model` turns a built (streaming) :class:`~nodes.neural.wavenet.WaveNet`
or :class:`~nodes.neural.lstm.LSTM` into a :class:`FastWaveNet` /
:class:`FastLSTM` that computes the same function (to ~1e-6, float32) from
the torch module's weights, with every buffer preallocated:

* WaveNet: one kernel call per layer array per block loops over the layers;
  each layer's dilated conv, input mixer, activation, skip sum and 1x1
  residual run on channel-major float32 rows with the inner loops over the
  block's frames (LLVM vectorises them; the conv and 1x1 update four output
  rows per pass over an input row). The history of every layer's input is a
  linear buffer ``(layers, channels, pad_max + slack)`` written at a moving
  position; only when the position reaches the end are the last ``pad``
  frames moved to the front (amortised: once per ``slack`` samples).
* LSTM: one kernel call per block, per sample per layer the four gates
  (vectorised over gate rows), the cell and the head.

``tanh`` is a vectorisable rational approximation (Eigen's float 13/6
rational; max error 2.6e-7, tested), sigmoid is ``0.5 + 0.5 tanh(x / 2)``;
kernels use ``error_model="numpy"`` (no zero-division branch, which would
stop vectorisation). The streaming state (histories, write position,
``h``/``c``) lives in numpy arrays; :meth:`reset` zeroes it (the LSTM puts
back its learnt initial state). Block sizes may vary from call to call up to
``max_block``.

:func:`bench_models` measures torch vs fast real-time factors (one thread) for
the named sizes, for ``patchlib bench``.
"""
from __future__ import annotations

import time

import numba
import numpy as np

_F = np.float32
_CLAMP = _F(7.90531110763549805)
_A1, _A3, _A5, _A7 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05), \
    _F(5.12229709037114e-08)
_A9, _A11, _A13 = _F(-8.60467152213735e-11), _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2, _B4, _B6 = _F(4.89352518554385e-03), _F(2.26843463243900e-03), _F(1.18534705686654e-04), \
    _F(1.19825839466702e-06)
_HALF = _F(0.5)
_ONE = _F(1.0)
_ZERO = _F(0.0)

#: activation codes of the kernels
ACT_CODES = {"Tanh": 0, "ReLU": 1, "Hardtanh": 2, "Sigmoid": 3}

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "arcp", "nsz"})


@numba.njit(inline="always", **_JIT)
def fast_tanh(x):
    """tanh in float32 by a 13/6 rational approximation on [-7.9, 7.9] (|error| < 3e-7), branch-free."""
    x = x if x < _CLAMP else _CLAMP  # selects, not min/max (which branch on NaN): vectorisable
    x = x if x > -_CLAMP else -_CLAMP
    x2 = x * x
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    return x * p / q


@numba.njit(inline="always", **_JIT)
def fast_sigmoid(x):
    return _HALF + _HALF * fast_tanh(_HALF * x)


@numba.njit(inline="always", **_JIT)
def _act(x, kind):
    if kind == 0:
        return fast_tanh(x)
    if kind == 1:
        return max(x, _ZERO)
    if kind == 2:
        return min(max(x, -_ONE), _ONE)
    return fast_sigmoid(x)


@numba.njit(**_JIT)
def _tanh_array(x, out):
    for i in range(x.size):
        out[i] = fast_tanh(x[i])


@numba.njit(**_JIT)
def _shift_history(hist, w, pads, pad_max):
    """Move every layer's last ``pads[l]`` frames before ``w`` to just before ``pad_max``."""
    for l in range(hist.shape[0]):
        p = pads[l]
        for i in range(hist.shape[1]):
            for r in range(p):
                hist[l, i, pad_max - p + r] = hist[l, i, w - p + r]


@numba.njit(**_JIT)
def _wavenet_array(n, w, xin, cond, R, Wc, bc, M, W1, b1, Hr, hb, dil, gated, act, hist, z, a, head,
                   head_in, has_head_in, xout, hout):
    """One layer array on ``n`` frames, channel-major: ``xin (in, n)``, ``cond (rows, n)`` -> ``xout (C, n)``,
    ``hout (head_size, n)``; ``hist[l, :, w:w+n]`` receives layer ``l``'s input (its history is below ``w``).

    Weights in torch's layout: ``R (C, in)``, ``Wc (L, mid, C, K)``, ``bc (L, mid)``, ``M (L, mid, rows)``,
    ``W1 (L, C, C)``, ``b1 (L, C)``, ``Hr (head, C)``, ``hb (head)``. Inner loops run over time (vectorised).
    """
    L, mid, C, K = Wc.shape
    crow = M.shape[2]
    nin = R.shape[1]
    H = Hr.shape[0]
    # inner loops index 1-D views by the loop counter only, so that LLVM vectorises them over time
    # rechannel into layer 0's history; the head sum starts from the previous array's head
    for o in range(C):
        dst = hist[0, o, w:w + n]
        for t in range(n):
            dst[t] = _ZERO
        for i in range(nin):
            wv = R[o, i]
            src = xin[i, :n]
            for t in range(n):
                dst[t] += wv * src[t]
        ho = head[o, :n]
        if has_head_in:
            src = head_in[o, :n]
            for t in range(n):
                ho[t] = src[t]
        else:
            for t in range(n):
                ho[t] = _ZERO
    mid4 = mid - mid % 4
    C4 = C - C % 4
    for l in range(L):
        d = dil[l]
        for o in range(mid):
            zo = z[o, :n]
            bv = bc[l, o]
            for t in range(n):
                zo[t] = bv
            for j in range(crow):
                wv = M[l, o, j]
                src = cond[j, :n]
                for t in range(n):
                    zo[t] += wv * src[t]
        # the dilated conv, four output rows per pass over an input row (amortises the loop overhead)
        for o in range(0, mid4, 4):
            z0 = z[o, :n]
            z1 = z[o + 1, :n]
            z2 = z[o + 2, :n]
            z3 = z[o + 3, :n]
            for i in range(C):
                for k in range(K):
                    w0 = Wc[l, o, i, k]
                    w1 = Wc[l, o + 1, i, k]
                    w2 = Wc[l, o + 2, i, k]
                    w3 = Wc[l, o + 3, i, k]
                    base = w - (K - 1 - k) * d
                    src = hist[l, i, base:base + n]
                    for t in range(n):
                        sv = src[t]
                        z0[t] += w0 * sv
                        z1[t] += w1 * sv
                        z2[t] += w2 * sv
                        z3[t] += w3 * sv
        for o in range(mid4, mid):
            zo = z[o, :n]
            for i in range(C):
                for k in range(K):
                    wv = Wc[l, o, i, k]
                    base = w - (K - 1 - k) * d
                    src = hist[l, i, base:base + n]
                    for t in range(n):
                        zo[t] += wv * src[t]
        for o in range(C):
            ao = a[o, :n]
            zo = z[o, :n]
            ho = head[o, :n]
            if gated:
                zg = z[C + o, :n]
                for t in range(n):
                    ao[t] = _act(zo[t], act) * fast_sigmoid(zg[t])
            else:
                for t in range(n):
                    ao[t] = _act(zo[t], act)
            for t in range(n):
                ho[t] += ao[t]
        # residual: the next layer's input (or the array's output)
        nxt = hist[l + 1] if l + 1 < L else xout
        off = w if l + 1 < L else 0
        for o in range(C):
            dst = nxt[o, off:off + n]
            src = hist[l, o, w:w + n]
            bv = b1[l, o]
            for t in range(n):
                dst[t] = src[t] + bv
        for o in range(0, C4, 4):
            d0 = nxt[o, off:off + n]
            d1 = nxt[o + 1, off:off + n]
            d2 = nxt[o + 2, off:off + n]
            d3 = nxt[o + 3, off:off + n]
            for i in range(C):
                w0 = W1[l, o, i]
                w1 = W1[l, o + 1, i]
                w2 = W1[l, o + 2, i]
                w3 = W1[l, o + 3, i]
                ai = a[i, :n]
                for t in range(n):
                    av = ai[t]
                    d0[t] += w0 * av
                    d1[t] += w1 * av
                    d2[t] += w2 * av
                    d3[t] += w3 * av
        for o in range(C4, C):
            dst = nxt[o, off:off + n]
            for i in range(C):
                wv = W1[l, o, i]
                ai = a[i, :n]
                for t in range(n):
                    dst[t] += wv * ai[t]
    for o in range(H):
        dst = hout[o, :n]
        bv = hb[o]
        for t in range(n):
            dst[t] = bv
        for i in range(C):
            wv = Hr[o, i]
            src = head[i, :n]
            for t in range(n):
                dst[t] += wv * src[t]


@numba.njit(**_JIT)
def _input_gain(n, cond, w, b, out):
    """``out[:, :n]`` = ``cond`` with its audio row times ``exp(b + w . knob rows)`` (``w``, ``b`` in nepers)."""
    for t in range(n):
        e = b
        for k in range(w.size):
            e += w[k] * cond[1 + k, t]
        out[0, t] = cond[0, t] * np.exp(e)
        for k in range(w.size):
            out[1 + k, t] = cond[1 + k, t]


def _np(t):
    return t.detach().cpu().float().numpy()


class FastWaveNet:
    """A :class:`~nodes.neural.wavenet.WaveNet`'s function as numba kernels (see the module docstring).

    ``fast(cond, out, n)``: ``cond`` float32 C-contiguous ``(1 + knobs, >= n)``
    (audio row then knob rows, as the torch model's input without the batch
    axis; pass the whole preallocated buffer and ``n``), ``out`` float32 of at
    least ``n`` samples.
    """

    def __init__(self, model, max_block: int, slack: int = 4096):
        from .wavenet import ACTIVATIONS

        self.max_block = B = int(max_block)
        self.condition_size = int(model.condition_size)
        self.head_scale = _F(float(model._head_scale))
        self.arrays = []
        pads = []
        for la in model._layers:
            layers = list(la._layers)
            conv0 = layers[0]._conv
            K = conv0.kernel_size[0]
            C = la._rechannel.out_channels
            gated = bool(layers[0]._gated)
            mid = 2 * C if gated else C
            act = [k for k, f in ACTIVATIONS.items() if f is layers[0]._activation][0]
            hb = la._head_rechannel.bias
            arr = {
                "R": np.ascontiguousarray(_np(la._rechannel.weight)[:, :, 0]),
                "Wc": np.ascontiguousarray(np.stack([_np(ly._conv.weight) for ly in layers])),
                "bc": np.ascontiguousarray(np.stack([_np(ly._conv.bias) for ly in layers])),
                "M": np.ascontiguousarray(np.stack([_np(ly._input_mixer.weight)[:, :, 0] for ly in layers])),
                "W1": np.ascontiguousarray(np.stack([_np(ly._1x1.weight)[:, :, 0] for ly in layers])),
                "b1": np.ascontiguousarray(np.stack([_np(ly._1x1.bias) for ly in layers])),
                "Hr": np.ascontiguousarray(_np(la._head_rechannel.weight)[:, :, 0]),
                "hb": _np(hb) if hb is not None else np.zeros(la._head_rechannel.out_channels, _F),
                "dil": np.array([ly._conv.dilation[0] for ly in layers], np.int64),
                "pads": np.array([ly._conv.pad for ly in layers], np.int64),
                "gated": gated, "act": ACT_CODES[act], "C": C, "mid": mid,
                "H": la._head_rechannel.out_channels,
            }
            assert arr["Wc"].shape == (len(layers), mid, C, K)
            pads.extend(arr["pads"].tolist())
            self.arrays.append(arr)
        self.pad_max = int(max(pads + [0]))
        self.length = self.pad_max + max(int(slack), B)
        for arr in self.arrays:
            L, C = len(arr["dil"]), arr["C"]
            arr["hist"] = np.zeros((L, C, self.length), _F)
            arr["z"] = np.zeros((arr["mid"], B), _F)
            arr["a"] = np.zeros((C, B), _F)
            arr["head"] = np.zeros((C, B), _F)
            arr["xout"] = np.zeros((C, B), _F)
            arr["hout"] = np.zeros((arr["H"], B), _F)
        self.macs_per_sample = int(model.macs_per_sample)
        self.gain_w = self.gain_b = None
        if model._input_gain is not None:  # the learnt input gain: x * 10 ** (w . knobs + b), on a scratch copy
            from .wavenet import INPUT_GAIN_SCALE

            self.gain_w = np.ascontiguousarray(_np(model._input_gain.weight)[0, :, 0] * _F(INPUT_GAIN_SCALE))
            self.gain_b = _F(float(_np(model._input_gain.bias)[0]) * INPUT_GAIN_SCALE)
            self.scaled = np.zeros((self.condition_size, B), _F)
        self.reset()

    def state_items(self) -> dict:
        """The streaming state: each layer's history and the write position."""
        from patchlib.takeover import Attr

        items = {f"hist{i}": arr["hist"] for i, arr in enumerate(self.arrays)}
        items["pos"] = Attr(self, "pos")
        return items

    def reset(self) -> None:
        for arr in self.arrays:
            arr["hist"][:] = 0.0
        self.pos = self.pad_max

    def __call__(self, cond: np.ndarray, out: np.ndarray, n: int | None = None) -> None:
        """Render ``n`` frames (default all of ``cond``'s columns) of ``cond`` into ``out[:n]``."""
        n = cond.shape[1] if n is None else int(n)
        if n > self.max_block:
            raise ValueError(f"block of {n} frames > prepared maximum {self.max_block}")
        w = self.pos
        if w + n > self.length:
            for arr in self.arrays:
                _shift_history(arr["hist"], w, arr["pads"], self.pad_max)
            w = self.pad_max
        if self.gain_w is not None:
            _input_gain(n, cond, self.gain_w, self.gain_b, self.scaled)
            cond = self.scaled
        xin, head_in, has = cond, cond, False
        for arr in self.arrays:
            _wavenet_array(n, w, xin, cond, arr["R"], arr["Wc"], arr["bc"], arr["M"], arr["W1"], arr["b1"],
                           arr["Hr"], arr["hb"], arr["dil"], arr["gated"], arr["act"], arr["hist"], arr["z"],
                           arr["a"], arr["head"], head_in, has, arr["xout"], arr["hout"])
            xin, head_in, has = arr["xout"], arr["hout"], True
        np.multiply(head_in[0, :n], self.head_scale, out=out[:n])
        self.pos = w + n


@numba.njit(**_JIT)
def _lstm_block(n, cond, skip, Wih, nin, Whh, b, h, c, hw, hb, g, out):
    """``n`` samples of a stacked LSTM + linear head; ``h``, ``c`` ``(layers, hidden)`` carried."""
    NL, Hd = h.shape
    G = 4 * Hd
    # 1-D views indexed by the loop counter only, so that LLVM vectorises the gate loops
    gi = g[:Hd]
    gf = g[Hd:2 * Hd]
    gc = g[2 * Hd:3 * Hd]
    go = g[3 * Hd:]
    hl = h[NL - 1]
    for t in range(n):
        for l in range(NL):
            bl = b[l]
            for o in range(G):
                g[o] = bl[o]
            if l == 0:
                for i in range(nin):
                    xv = cond[i, t]
                    wr = Wih[0, i]
                    for o in range(G):
                        g[o] += wr[o] * xv
            else:
                hp = h[l - 1]
                for i in range(Hd):
                    xv = hp[i]
                    wr = Wih[l, i]
                    for o in range(G):
                        g[o] += wr[o] * xv
            hh = h[l]
            cc = c[l]
            for i in range(Hd):
                hv = hh[i]
                wr = Whh[l, i]
                for o in range(G):
                    g[o] += wr[o] * hv
            # activations in simple passes (each over one or two arrays: vectorised)
            for o in range(2 * Hd):
                g[o] = fast_sigmoid(g[o])
            for o in range(Hd):
                gc[o] = fast_tanh(gc[o])
            for o in range(Hd):
                go[o] = fast_sigmoid(go[o])
            for o in range(Hd):
                cc[o] = gf[o] * cc[o] + gi[o] * gc[o]
            for o in range(Hd):
                gc[o] = fast_tanh(cc[o])
            for o in range(Hd):
                hh[o] = go[o] * gc[o]
        y = hb
        for i in range(Hd):
            y += hw[i] * hl[i]
        if skip:
            y += cond[0, t]
        out[t] = y


class FastLSTM:
    """A :class:`~nodes.neural.lstm.LSTM`'s function as one numba kernel per block (``fast(cond, out)``)."""

    def __init__(self, model, max_block: int):
        core = model._core
        NL, Hd = core.num_layers, core.hidden_size
        self.max_block = int(max_block)
        self.condition_size = int(model.condition_size)
        self.skip = bool(model.skip)
        width = max(self.condition_size, Hd)
        self.Wih = np.zeros((NL, width, 4 * Hd), _F)
        self.Whh = np.zeros((NL, Hd, 4 * Hd), _F)
        self.b = np.zeros((NL, 4 * Hd), _F)
        for l in range(NL):
            wih = _np(getattr(core, f"weight_ih_l{l}"))
            self.Wih[l, :wih.shape[1]] = wih.T
            self.Whh[l] = _np(getattr(core, f"weight_hh_l{l}")).T
            self.b[l] = _np(getattr(core, f"bias_ih_l{l}")) + _np(getattr(core, f"bias_hh_l{l}"))
        self.hw = np.ascontiguousarray(_np(model._head.weight)[0])
        self.hb = _F(float(model._head.bias.detach()[0]))
        self.h0 = _np(model._initial_hidden).copy()
        self.c0 = _np(model._initial_cell).copy()
        self.h = np.zeros((NL, Hd), _F)
        self.c = np.zeros((NL, Hd), _F)
        self.g = np.zeros(4 * Hd, _F)
        self.macs_per_sample = int(model.macs_per_sample)
        self.reset()

    def state_items(self) -> dict:
        """The streaming state: the hidden and cell vectors."""
        return {"h": self.h, "c": self.c}

    def reset(self) -> None:
        self.h[:] = self.h0
        self.c[:] = self.c0

    def __call__(self, cond: np.ndarray, out: np.ndarray, n: int | None = None) -> None:
        """Render ``n`` frames (default all of ``cond``'s columns) of ``cond`` into ``out[:n]``."""
        n = cond.shape[1] if n is None else int(n)
        if n > self.max_block:
            raise ValueError(f"block of {n} frames > prepared maximum {self.max_block}")
        _lstm_block(n, cond, self.skip, self.Wih, self.condition_size, self.Whh, self.b, self.h, self.c,
                    self.hw, self.hb, self.g, out)


def unsupported_reason(model) -> str | None:
    """Why ``model`` has no fast path (``None``: it has one)."""
    from .lstm import LSTM
    from .wavenet import ACTIVATIONS, WaveNet

    if isinstance(model, LSTM):
        core = model._core
        if core.bias is False or core.bidirectional or getattr(core, "proj_size", 0):
            return "LSTM without biases, bidirectional or projected"
        return None
    if isinstance(model, WaveNet):
        for la in model._layers:
            for ly in la._layers:
                if ly._activation not in ACTIVATIONS.values():
                    return "unknown activation"
            if len({ly._gated for ly in la._layers}) > 1 or len({ly._activation for ly in la._layers}) > 1:
                return "mixed layer kinds in one array"
        return None
    return f"no fast path for {type(model).__name__}"


def compile_model(model, max_block: int):
    """The fast twin of a built torch ``model`` (weights copied now), or ``None`` when unsupported."""
    from .lstm import LSTM

    if unsupported_reason(model) is not None:
        return None
    if isinstance(model, LSTM):
        return FastLSTM(model, max_block)
    return FastWaveNet(model, max_block)


def fast_realtime_factor(fast, block_size: int, sample_rate: float = 48000.0, seconds: float = 2.0,
                         seed: int = 0) -> float:
    """Like :func:`~nodes.neural.streaming.realtime_factor`, for a fast model (same random input)."""
    n = max(1, int(sample_rate * seconds) // block_size) * block_size
    rng = np.random.default_rng(seed)
    x = rng.random((fast.condition_size, n), dtype=_F)
    x[0] = 0.6 * x[0] - 0.3
    out = np.zeros(block_size, _F)
    blocks = [np.ascontiguousarray(x[:, i:i + block_size]) for i in range(0, n, block_size)]
    for blk in blocks[:20]:
        fast(blk, out)
    fast.reset()
    t0 = time.perf_counter()
    for blk in blocks:
        fast(blk, out)
    dt = time.perf_counter() - t0
    fast.reset()
    return (n / sample_rate) / dt


def bench_models(seconds: float = 2.0, block_sizes=(64, 256), repeats: int = 1, models=None) -> list[dict]:
    """Real-time factors (one thread, 48 kHz) of torch vs fast for the named model sizes.

    Returns one dict per (model, block): ``model``, ``block``, ``macs`` (per
    sample), ``torch_x`` / ``fast_x`` (real-time factors, best of
    ``repeats``), ``torch_gflops`` / ``fast_gflops`` (2 flops per
    multiply-add at that speed). Sets torch to one thread.
    """
    import torch

    from .lstm import LSTM
    from .streaming import realtime_factor
    from .torchnode import set_threads
    from .wavenet import WaveNet, wavenet_config

    set_threads(1)
    sr = 48000.0
    makers = {
        "wavenet-standard": lambda: WaveNet(**wavenet_config("standard"), streaming=True),
        "wavenet-paper": lambda: WaveNet(**wavenet_config("paper"), streaming=True),
        "wavenet-tiny": lambda: WaveNet(**wavenet_config("tiny", knobs=2), streaming=True),
        "lstm-1x16": lambda: LSTM(1, 16, 1, streaming=True),
        "lstm-3x16": lambda: LSTM(1, 16, 3, streaming=True),
    }
    rows = []
    for name in models or makers:
        torch.manual_seed(0)
        model = makers[name]().eval()
        for B in block_sizes:
            fast = compile_model(model, B)
            tx = max(realtime_factor(model, B, sr, seconds) for _ in range(repeats))
            fx = max(fast_realtime_factor(fast, B, sr, seconds) for _ in range(repeats))
            macs = int(model.macs_per_sample)
            rows.append({"model": name, "block": B, "macs": macs, "torch_x": tx, "fast_x": fx,
                         "torch_gflops": 2 * macs * sr * tx / 1e9, "fast_gflops": 2 * macs * sr * fx / 1e9})
    return rows


def format_table(rows) -> str:
    lines = [f"{'model':18} {'block':>5} {'MAC/smp':>8} {'torch x':>8} {'fast x':>8} "
             f"{'torch GF/s':>10} {'fast GF/s':>9}"]
    for r in rows:
        lines.append(f"{r['model']:18} {r['block']:5d} {r['macs']:8d} {r['torch_x']:8.2f} {r['fast_x']:8.2f} "
                     f"{r['torch_gflops']:10.2f} {r['fast_gflops']:9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(format_table(bench_models(seconds=1.0, repeats=2)))
