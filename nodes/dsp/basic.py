"""Utility nodes: constant, gain, mix, pan."""
from __future__ import annotations

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register
from patchlib.node import stacked_rows
from patchlib.units import UNITS

from . import _basic

GAIN = dict(range=(-16.0, 16.0), unit="x", smooth=0.01)


@register("constant")
class Constant(Node):
    """A constant (or scored, smoothed) control value.

    Example: ``level: {type: constant, value: 0.5}`` then ``gain: level``;
    a score ``{at: 2, set: level.value, to: 1, over: 0}`` jumps at 2 s.
    With ``unit: Hz`` it holds a pitch (``value: A2``) that oscillators can
    follow (``freq: pitch``, or ``freq: {from: pitch, scale: 0.5}`` an octave down).
    """

    outputs = {"out": Output("the value", channels=1)}
    params = {"value": Param(0.0, (-1e6, 1e6), doc="the value", smooth=0.01)}
    options = {"unit": Option("", choices=tuple(UNITS), doc="unit of the value, so it can be written "
                              "as 'A2', '250ms' or '-6dB' (Hz, s, dB, x, st)")}

    @classmethod
    def ports(cls, opts):
        unit = opts.get("unit") or ""
        if not unit:
            return cls.inputs, cls.outputs, cls.params
        return cls.inputs, cls.outputs, {"value": Param(0.0, (-1e6, 1e6), unit, doc="the value", smooth=0.01)}

    def process(self, n, t):
        self.out["out"][0, :n] = self.par["value"][:n]

    @classmethod
    def process_batch(cls, b, n, t):
        b.out["out"][:, 0, :n] = b.par["value"][:, :n]


@register("gain")
class Gain(Node):
    """Multiplies a signal by a gain (give dB as '-6dB'); drive it with an envelope for a VCA.

    Example: ``amp: {type: gain, in: filter, gain: -10dB}``
    """

    inputs = {"in": Input("signal")}
    params = {"gain": Param(1.0, doc="linear factor (or in dB: -6dB)", **GAIN)}

    def process(self, n, t):
        _basic.gain_kernel(self.inp["in"], self.out["out"], n, self.par["gain"])

    @classmethod
    def process_batch(cls, b, n, t):
        _basic.gain_batch(b.inp["in"], b.out["out"], n, b.par["gain"])


@register("mix")
class Mix(Node):
    """Sum of N inputs, each with its own (modulatable) gain.

    Write the inputs as a list and, optionally, their gains; each gain is a
    param ``gain0``, ``gain1``, ... that can also be driven by a signal.

    Example: ``sum: {type: mix, in: [osc1, osc2, noise], gains: [0.5, 0.5, -20dB]}``
    """

    options = {"count": Option(2, kind=int, doc="number of inputs (set by the 'in' list)")}

    @classmethod
    def expand(cls, body):
        """``in: [a, b]`` and ``gains: [..]`` -> ports ``in0, in1`` and params ``gain0, gain1``."""
        from patchlib.patch import LineDict

        line_of = getattr(body, "line_of", lambda key: 0)
        srcs = body.get("in")
        if isinstance(srcs, str):
            srcs = [srcs]
        if not isinstance(srcs, list) or not srcs:
            raise PatchError("mix needs 'in: [a, b, ...]' (a list of nodes)", Where(line=line_of("in"), key="in"))
        out = LineDict()
        out.line = getattr(body, "line", 0)

        def put(key, value, line):
            out[key] = value
            out.lines[key] = line

        for k, v in body.items():
            if k not in ("in", "gains"):
                put(k, v, line_of(k))
        for i, s in enumerate(srcs):
            put(f"in{i}", s, line_of("in"))
        gains = body.get("gains")
        if gains is not None:
            if not isinstance(gains, list) or len(gains) != len(srcs):
                raise PatchError(f"gains must be a list of {len(srcs)} values, one per input",
                                 Where(line=line_of("gains"), key="gains"))
            for i, g in enumerate(gains):
                if f"gain{i}" not in out:  # an explicit gainN wins over the list
                    put(f"gain{i}", g, line_of("gains"))
        put("count", len(srcs), line_of("in"))
        return out

    @classmethod
    def ports(cls, opts):
        count = int(opts.get("count") or 2)
        inputs = {f"in{i}": Input(f"input {i}") for i in range(count)}
        params = {f"gain{i}": Param(1.0, doc=f"gain of input {i}", **GAIN) for i in range(count)}
        return inputs, cls.outputs, params

    def prepare(self, ctx):
        super().prepare(ctx)
        count = int(self.opts["count"])
        self._pairs = [(self.inp[f"in{i}"], self.par[f"gain{i}"]) for i in range(count)]
        # sources that are rows of one array (a batch of voices) and gains
        # (one array per node) mix in a single kernel call
        self._xs = stacked_rows([x for x, _ in self._pairs])
        self._gs = stacked_rows([g for _, g in self._pairs])

    def batch_key(self):
        return (int(self.opts["count"]),)

    @classmethod
    def process_batch(cls, b, n, t):
        y = b.out["out"]
        for i in range(int(b.opts["count"])):
            _basic.mac_batch(b.inp[f"in{i}"], y, n, b.par[f"gain{i}"], i == 0)

    def process(self, n, t):
        y = self.out["out"]
        if self._xs is not None and self._gs is not None:
            _basic.mix_stacked(self._xs, self._gs, y, n)
            return
        first = True
        for x, g in self._pairs:
            _basic.mac_kernel(x, y, n, g, first)
            first = False


@register("pan")
class Pan(Node):
    """Equal-power stereo panner: mono in, stereo out (-3 dB each side at the centre).

    Example: ``p: {type: pan, in: osc, pan: {from: lfo}}``
    """

    inputs = {"in": Input("mono signal", channels=1)}
    outputs = {"out": Output("stereo signal", channels=2)}
    params = {"pan": Param(0.0, (-1.0, 1.0), doc="-1 left, 0 centre, +1 right")}

    def process(self, n, t):
        _basic.pan_kernel(self.inp["in"], self.out["out"], n, self.par["pan"])

    @classmethod
    def process_batch(cls, b, n, t):
        _basic.pan_batch(b.inp["in"], b.out["out"], n, b.par["pan"])
