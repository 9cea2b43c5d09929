"""Sample playback: the ``file`` player."""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from patchlib import Node, Option, Output, Param, PatchError, Where, register

from . import _effects

#: the sample shipped with the repository that the contract suite plays
_SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "patches", "samples", "drumloop.wav")
#: fade (seconds) of a release, of a retrigger's old note, and before a non-looping end
FADE = 0.005


class _ContractSettings:
    """``File.contract_settings``: the shipped sample, relative to the working directory.

    The contract suite builds its patches from dicts, whose folder is the
    working directory; the player only takes paths inside the patch's
    folder, so the path is made relative when it is read (a test run from
    the repository root reads ``patches/samples/drumloop.wav``).
    """

    def __get__(self, obj, owner):
        return {"file": os.path.relpath(_SAMPLE, os.getcwd()), "autoplay": True, "loop": True}


def resolve(file: str, base_dir: str, what: str = "file") -> str:
    """The path of ``file`` inside the patch's folder ``base_dir``, or a PatchError.

    Only relative paths that stay inside the folder (after resolving ``..``
    and links) are allowed: a patch must not read arbitrary files.
    """
    allowed = f"give a path relative to the patch's folder ({base_dir}), inside it, e.g. samples/loop.wav"
    if not isinstance(file, str) or not file:
        raise PatchError(f"{what} needs a file name", Where(key=what), hint=allowed)
    if os.path.isabs(file):
        raise PatchError(f"{what} '{file}' is an absolute path: not allowed", Where(key=what), hint=allowed)
    base = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(base, file))
    if os.path.commonpath([base, path]) != base:
        raise PatchError(f"{what} '{file}' is outside the patch's folder: not allowed", Where(key=what), hint=allowed)
    return path


@register("file")
class FilePlayer(Node):
    """Sample player: plays a WAV/FLAC/OGG file (resampled to the patch's rate) at any speed.

    ``speed`` is the playback rate (2 = an octave up, negative = backwards)
    with cubic interpolation; ``start``/``end`` (seconds) pick a region;
    ``loop`` repeats it. A ``trigger`` event plays from the start (from the
    end when the speed is negative) with the event's velocity as gain; a
    retrigger fades the old note out over 5 ms (no click); ``release`` stops
    with a 5 ms fade. ``autoplay: true`` starts at time 0. The output has
    the file's channels. The file must lie inside the patch's folder.

    Example: ``loop: {type: file, file: samples/drumloop.wav, loop: true, autoplay: true, speed: 0.5}``
    """

    outputs = {"out": Output("the file's channels")}
    params = {
        "speed": Param(1.0, (-4.0, 4.0), doc="playback rate: 1 original, 0.5 an octave down, negative backwards"),
        "gain": Param(1.0, (0.0, 4.0), "x", doc="output gain (or in dB: -6dB)"),
    }
    options = {
        "file": Option(None, kind="path", required=True, doc="audio file relative to the patch's folder"),
        "loop": Option(False, kind=bool, doc="repeat the region"),
        "start": Option(0.0, kind=float, doc="start of the region in seconds"),
        "end": Option(None, kind=float, doc="end of the region in seconds (default: the file's end)"),
        "autoplay": Option(False, kind=bool, doc="start playing at time 0 (else wait for a trigger)"),
    }
    events = {"trigger": "play from the start (value: velocity, the gain)", "release": "stop with a short fade"}
    contract_settings = _ContractSettings()

    def _load(self):
        ctx = self.ctx
        file = self.opts.get("file")
        path = resolve(file, ctx.base_dir)
        import soundfile as sf

        try:
            data, rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:  # a missing file, a format soundfile does not read...
            reason = "no such file" if not os.path.exists(path) else str(e)
            raise PatchError(f"cannot read audio file '{file}': {reason}", Where(key="file")) from None
        audio = data.T
        if audio.shape[1] == 0:
            raise PatchError(f"audio file '{file}' is empty", Where(key="file"))
        if int(rate) != int(ctx.sample_rate):
            from scipy.signal import resample_poly

            r = Fraction(int(ctx.sample_rate), int(rate)).limit_denominator(1000)
            audio = resample_poly(audio, r.numerator, r.denominator, axis=1).astype(np.float32)
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        frames = self.audio.shape[1]
        sr = float(ctx.sample_rate)
        start = float(self.opts.get("start") or 0.0)
        end = self.opts.get("end")
        lo = int(round(start * sr))
        hi = frames if end is None else int(round(float(end) * sr))
        if not 0 <= lo < frames:
            raise PatchError(f"start {start} s is outside the file ({frames / sr:.3f} s long)", Where(key="start"))
        if not lo < hi <= frames:
            raise PatchError(f"end {end} s must be after start ({start} s) and within the file "
                             f"({frames / sr:.3f} s long)", Where(key="end"))
        self.lo, self.hi = lo, hi

    def configure(self, in_channels):
        self._load()
        return {"out": self.audio.shape[0]}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.fade_n = max(1.0, FADE * float(ctx.sample_rate))
        self.reset()

    def reset(self):
        # two voices x [mode, position, velocity, fade]; mode 3 = start on the next sample
        self.state = np.zeros((2, 4))
        if self.opts.get("autoplay"):
            self.state[0] = (3.0, 0.0, 1.0, 1.0)

    def event(self, kind, value=1.0):
        st = self.state
        if kind == "trigger":
            if st[0, 0] != 0.0 and st[0, 0] != 3.0:  # the sounding note fades out on voice 1
                st[1] = st[0]
                st[1, 0] = 2.0
            st[0] = (3.0, 0.0, float(value), 1.0)
        elif kind == "release":
            if st[0, 0] == 1.0:
                st[0, 0] = 2.0
            elif st[0, 0] == 3.0:
                st[0, 0] = 0.0
        else:
            super().event(kind, value)

    def process(self, n, t):
        _effects.player_kernel(self.audio, self.out["out"], n, self.par["speed"], self.par["gain"], self.lo,
                               self.hi, bool(self.opts.get("loop")), self.fade_n, self.state)
