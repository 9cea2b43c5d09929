"""Audio in and out of a patch."""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _basic


@register("input")
class AudioInput(Node):
    """Audio from a file: the one given on the command line (``--input``) or ``file:``.

    The file is resampled to the patch's rate if needed; after its end the
    node plays silence (or loops with ``loop: true``). In real time (later)
    the same node reads the sound card.

    Example: ``dry: {type: input}`` and ``patchlib render fx.yaml --input guitar.wav -o out.wav``
    """

    outputs = {"out": Output("the file's channels")}
    options = {
        "file": Option(None, kind="path", doc="WAV/FLAC file relative to the patch (default: --input)"),
        "loop": Option(False, kind=bool, doc="loop the file"),
    }

    def _load(self):
        ctx = self.ctx
        file = self.opts.get("file")
        if file:
            path = file if os.path.isabs(file) else os.path.join(ctx.base_dir, file)
            key = path
            if key not in ctx.audio_inputs:
                import soundfile as sf

                try:
                    data, rate = sf.read(path, dtype="float32", always_2d=True)
                except Exception as e:
                    raise PatchError(f"cannot read audio file '{file}': {e}", Where(key="file")) from None
                ctx.audio_inputs[key] = (data.T.copy(), rate)
        else:
            key = ""
            if key not in ctx.audio_inputs:
                raise PatchError("this input node has no audio: pass --input FILE (or give file: in the patch)",
                                 Where(key="file"))
        audio = ctx.audio_inputs[key]
        if isinstance(audio, tuple):
            audio, rate = audio
        else:
            rate = ctx.sample_rate
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim == 1:
            audio = audio[None, :]
        if int(rate) != int(ctx.sample_rate):
            from scipy.signal import resample_poly

            r = Fraction(int(ctx.sample_rate), int(rate)).limit_denominator(1000)
            audio = resample_poly(audio, r.numerator, r.denominator, axis=1).astype(np.float32)
        self.audio = np.ascontiguousarray(audio)

    def configure(self, in_channels):
        self._load()
        return {"out": self.audio.shape[0]}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.reset()

    def reset(self):
        self.pos = 0

    def feed(self, block) -> None:
        """Live input: play ``block`` (``(channels, frames)``, as many frames as the node's buffer, which the
        player sizes to one engine block) from the next block on; copied in place, no allocation. A device
        with fewer channels than the node repeats its last one; ``None`` is silence."""
        a = self.audio
        if block is None:
            a.fill(0.0)
        else:
            c = min(a.shape[0], block.shape[0])
            a[:c] = block[:c]
            if c < a.shape[0]:
                a[c:] = block[c - 1:c]
        self.pos = 0

    def process(self, n, t):
        y = self.out["out"]
        a = self.audio
        total = a.shape[1]
        done = 0
        while done < n:
            if self.pos >= total:
                if self.opts.get("loop") and total:
                    self.pos = 0
                else:
                    y[:, done:n] = 0.0
                    return
            k = min(n - done, total - self.pos)
            y[:, done:done + k] = a[:, self.pos:self.pos + k]
            self.pos += k
            done += k


@register("output")
class AudioOutput(Node):
    """What the patch plays: one signal (``in``) or a ``left``/``right`` pair.

    Usually written as the patch's ``out:`` key (``out: amp``,
    ``out: [l, r]``) rather than as a node. Mono into a stereo output plays
    in both channels.
    """

    inputs = {
        "in": Input("the signal (any channels)", optional=True),
        "left": Input("left channel", channels=1, optional=True),
        "right": Input("right channel", channels=1, optional=True),
    }
    options = {"channels": Option(None, kind=int, choices=(None, 1, 2), doc="force mono (1) or stereo (2)")}
    params = {"gain": Param(1.0, (0.0, 16.0), "x", doc="master gain (or in dB: -6dB)")}

    def configure(self, in_channels):
        lr = "left" in in_channels or "right" in in_channels
        if lr and not ("left" in in_channels and "right" in in_channels):
            raise PatchError("give both left and right", Where(key="left" if "left" not in in_channels else "right"))
        if lr and "in" in in_channels:
            raise PatchError("give either 'in' or left/right, not both", Where(key="in"))
        if not lr and "in" not in in_channels:
            raise PatchError("the output has nothing connected", Where(key="in"))
        self._lr = lr
        ch = self.opts.get("channels") or (2 if lr else in_channels["in"])
        if ch > 2 and not lr:
            ch = in_channels["in"]
        return {"out": int(ch)}

    def process(self, n, t):
        if self._lr:
            _basic.lr_kernel(self.inp["left"], self.inp["right"], self.out["out"], n, self.par["gain"])
        else:
            _basic.gain_kernel(self.inp["in"], self.out["out"], n, self.par["gain"])
