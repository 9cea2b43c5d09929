"""Latent control signals for the timbre VAE: ``latent_morph`` (stored points) and ``latent_walk`` (a random walk).

Both emit the latent as a D-channel control signal (one channel per latent
dimension) that a ``vae_decoder``'s ``z`` input takes. Points are named by
the model (each instrument's mean latent, stored in the checkpoint by
``patchlib train vae``), written in the patch as D numbers, or captured from
a WAV file (relative to the patch: the encoder's mean latent over its loud
frames, computed when the patch is compiled).
"""
from __future__ import annotations

import os
import zlib

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _vae
from .vae import MODEL_OPTION, Analyser, _ContractSettings, load_for_node


def capture_file(m: dict, path: str) -> np.ndarray:
    """The encoder's mean latent over the loud frames (within 30 dB of the loudest) of a sound file."""
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = np.ascontiguousarray(x.mean(axis=1))
    if abs(sr - float(m["config"]["sample_rate"])) > 0.5:
        raise ValueError(f"it is at {sr} Hz, the model at {m['config']['sample_rate']:g} Hz")
    a = Analyser(m, float(sr))
    D, L = a.D, x.size
    z = np.zeros((D, L), np.float32)
    sd = np.zeros((D, L), np.float32)
    f0 = np.zeros((1, L), np.float32)
    ld = np.zeros((1, L), np.float32)
    a.run(x, L, z, sd, f0, ld)
    idx = np.arange(a.hop, L, a.hop)  # one sample per frame
    if idx.size == 0:
        raise ValueError("it is shorter than one frame")
    keep = ld[0, idx] > ld[0, idx].max() - 30.0
    return z[:, idx[keep]].mean(axis=1).astype(np.float64)


def resolve_points(m: dict, points, file, base_dir: str) -> tuple[np.ndarray, list[str]]:
    """``(P, D)`` latent points from the ``points`` option: model names, lists of D numbers or WAV files."""
    D = int(m["config"]["latent"])
    if not isinstance(points, (list, tuple)) or len(points) < 1:
        raise PatchError("points must be a list of at least one point (a name the model stores, a list of "
                         f"{D} numbers or a WAV file)", Where(key="points"),
                         hint="known names: " + ", ".join(sorted(m["points"])) if m["points"] else None)
    out, names = [], []
    for i, p in enumerate(points):
        if isinstance(p, (list, tuple)):
            try:
                v = np.array([float(x) for x in p])
            except (TypeError, ValueError):
                raise PatchError(f"point {i} must hold numbers", Where(key="points")) from None
            if v.shape != (D,) or not np.all(np.isfinite(v)):
                raise PatchError(f"point {i} has {v.size} values; model '{file}' has a {D}-dimensional latent",
                                 Where(key="points"))
            out.append(v)
            names.append(f"point {i}")
        elif isinstance(p, str) and p in m["points"]:
            out.append(m["points"][p])
            names.append(p)
        elif isinstance(p, str) and os.path.splitext(p)[1].lower() in (".wav", ".flac", ".aiff", ".ogg"):
            path = os.path.realpath(os.path.join(base_dir, p))
            if not os.path.isfile(path):
                raise PatchError(f"point {i}: no such sound file '{p}'", Where(key="points"))
            try:
                out.append(capture_file(m, path))
            except (ValueError, RuntimeError) as e:
                raise PatchError(f"point {i}: cannot capture a latent from '{p}': {e}", Where(key="points")) from None
            names.append(p)
        else:
            raise PatchError(f"point {i} ({p!r}) is not a name model '{file}' stores, a list of {D} numbers or a "
                             "sound file", Where(key="points"),
                             hint="known names: " + ", ".join(sorted(m["points"])) if m["points"] else None)
    return np.ascontiguousarray(np.stack(out)), names


def _base_dir(file, ctx) -> str:
    return getattr(file, "base_dir", None) or getattr(ctx, "base_dir", None) or os.getcwd()


@register("latent_morph")
class LatentMorph(Node):
    """Timbre morph: interpolates between stored latent points of a VAE model; ``position`` picks where.

    ``points`` lists two or more latent points: names the model stores (each
    instrument's mean latent: ``bell``, ``bowed``, ``pluck``, ``saw`` for
    ``models/vae.pt``), lists of D numbers (a point saved in the patch), or
    sound files (captured by the encoder when the patch is compiled: the mean
    latent of the file's loud frames). ``position`` 0 is the first point, 1
    the second, 1.5 halfway between the second and third... (piecewise
    linear). The output is the latent, D channels, for a ``vae_decoder``'s
    ``z``. See docs/vae.md.

    Example: ``morph: {type: latent_morph, model: models/vae.pt, points: [pluck, bowed], position: 0.5}``
    """

    outputs = {"out": Output("the latent, D channels", range=(-3.0, 3.0))}
    params = {"position": Param(0.0, (0.0, 1.0), doc="where between the points (0: the first, P-1: the last)")}
    options = {"model": MODEL_OPTION,
               "points": Option(None, kind=list, required=True,
                                doc="latent points: model names, lists of D numbers or sound files")}
    contract_settings = _ContractSettings(points=["a", "b", "c"])

    @classmethod
    def ports(cls, opts):
        pts = opts.get("points")
        hi = float(max(len(pts) - 1, 1)) if isinstance(pts, (list, tuple)) and pts else 1.0
        D = None
        if opts.get("model"):
            D = int(load_for_node(opts["model"])["config"]["latent"])
        outs = {"out": Output(f"the latent, {D} channels" if D else "the latent, D channels", channels=D,
                              range=(-3.0, 3.0))}
        return cls.inputs, outs, {"position": Param(0.0, (0.0, hi), doc=f"where between the points (0: the first, "
                                                                        f"{hi:g}: the last; piecewise linear)")}

    def configure(self, in_channels):
        self.model_file = self.opts.get("model")
        self._m = load_for_node(self.model_file)
        return {"out": int(self._m["config"]["latent"])}

    def prepare(self, ctx):
        super().prepare(ctx)
        self.points, self.point_names = resolve_points(self._m, self.opts.get("points"), self.model_file,
                                                       _base_dir(self.model_file, ctx))
        self.reset()

    def process(self, n, t):
        _vae.morph_block(self.out["out"], n, self.par["position"], self.points)


@register("latent_walk")
class LatentWalk(Node):
    """Timbre walk: the latent wanders around a point, a smooth random walk per dimension.

    Each latent dimension follows its own Ornstein-Uhlenbeck process
    (lowpassed noise, seeded): ``speed`` (Hz) sets how fast it wanders,
    ``depth`` how far, in units of the latents' spread in training (1: as
    far as the instruments' frames spread). It wanders around ``start`` (a
    point as in ``latent_morph``; default the prior's mean, all zeros) or
    around the ``center`` input when connected (a ``latent_morph``, another
    walk...). Drive ``speed`` or ``depth`` with an LFO or an envelope to
    shape the movement. Output: the latent, D channels, for a
    ``vae_decoder``'s ``z``. See docs/vae.md.

    Example: ``walk: {type: latent_walk, model: models/vae.pt, start: bowed, speed: 0.3, depth: 1.0}``
    """

    inputs = {"center": Input("the point to wander around, D channels (optional; default: start)", optional=True)}
    outputs = {"out": Output("the latent, D channels", range=(-3.0, 3.0))}
    params = {"speed": Param(0.5, (0.01, 20.0), "Hz", "exp", doc="how fast the walk wanders (corner frequency)"),
              "depth": Param(1.0, (0.0, 3.0), doc="how far it wanders, in latent spreads")}
    options = {"model": MODEL_OPTION,
               "start": Option(None, doc="the point wandered around without a center input: a name the model "
                                         "stores, a list of D numbers or a sound file (default: zeros)")}
    contract_settings = _ContractSettings(start="b")

    @classmethod
    def ports(cls, opts):
        if not opts.get("model"):
            return cls.inputs, cls.outputs, cls.params
        D = int(load_for_node(opts["model"])["config"]["latent"])
        return ({"center": Input(f"the point to wander around, {D} channels (optional; default: start)",
                                 optional=True)},
                {"out": Output(f"the latent, {D} channels", channels=D, range=(-3.0, 3.0))}, cls.params)

    def configure(self, in_channels):
        self.model_file = self.opts.get("model")
        self._m = load_for_node(self.model_file)
        D = int(self._m["config"]["latent"])
        c = in_channels.get("center")
        if c is not None and c not in (1, D):
            raise PatchError(f"input center has {c} channels; model '{self.model_file}' has a {D}-dimensional "
                             "latent", Where(key="center"))
        self.has_center = c is not None
        return {"out": D}

    def prepare(self, ctx):
        super().prepare(ctx)
        D = int(self._m["config"]["latent"])
        start = self.opts.get("start")
        if start is None:
            self.start = np.zeros(D)
        else:
            self.start = resolve_points(self._m, [start], self.model_file, _base_dir(self.model_file, ctx))[0][0]
        self.spread = np.ascontiguousarray(self._m["spread"], np.float64)
        self._center = np.ascontiguousarray(np.repeat(self.start[:, None], ctx.block_size, axis=1), np.float32)
        # seeds: from the patch's seed and this node's name, so two walks differ and a render repeats
        self.seed0 = (zlib.crc32(self.name.encode()) ^ (int(ctx.seed) * 2654435761)) % 2147483646
        self.state = np.zeros(2 * D)
        self.reset()

    def reset(self):
        D = self.spread.size
        self.state[:D] = 0.0
        for k in range(D):
            self.state[D + k] = float((self.seed0 + 7919 * (k + 1) * 104729) % 2147483646 + 1)

    def process(self, n, t):
        center = self.inp["center"] if self.has_center else self._center
        _vae.walk_block(self.out["out"], n, center, self.par["speed"], self.par["depth"], self.spread, self.state,
                        float(self.ctx.sample_rate))
