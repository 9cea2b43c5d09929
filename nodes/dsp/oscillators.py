"""Band-limited oscillators, wavetables, LFOs, a phasor and seeded noise.

The saw, square, pulse and triangle are band-limited with a minimum-phase
BLEP (Brandt 2001): aliasing of a 1760 Hz saw at 48 kHz measures about
-100 dB (tests/test_osc_kernels.py), with no latency. Phase accumulates in
float64, so pitch is exact (a 1 kHz sine measures 1000.0000 Hz).

Every periodic oscillator (sine, saw, square, pulse, triangle, wavetable)
has three optional inputs. Unconnected, they cost nothing: sine, saw,
square and triangle then run their plain kernels (chosen once in
``prepare``), which play what they played before these inputs existed (the
sine to within one float32 step, 6e-8: it now uses the polynomial ``sin2pi``).

* ``fm``: linear, through-zero FM. ``fm * fm_depth`` Hz is added to
  ``freq`` every sample; a negative sum runs the waveform backwards. With
  ``fm_depth`` = the deviation in Hz and a -1..1 modulator at ``fm_hz``, the
  index is ``fm_depth / fm_hz``.
* ``pm``: phase modulation. ``pm * pm_depth`` cycles are added to the phase
  (1 = a whole period; ``pm_depth: 0.159`` (1 / 2 pi) with a -1..1
  modulator is an index of 1 radian).
* ``sync``: hard sync. Each rising zero crossing of the signal (from <= 0
  to > 0, so a 0/1 gate works too; placed between samples by linear
  interpolation) restarts the cycle at the start ``phase``. The jump is
  band-limited with a minBLEP (on the triangle its slope change also with a
  minBLAMP; on the sine and wavetable the slope change stays naive).

Under FM and PM the saw, pulse and triangle stay band-limited: every edge
and corner is placed at its exact time, whichever way the phase travels
(see ``_osc.py``). The wavetable is band-limited by mipmaps (``_wavetable.py``).
Identical oscillators (voices) run as one batched kernel call.
"""
from __future__ import annotations

import os

import numpy as np

from patchlib import Input, Node, Option, Output, Param, PatchError, Where, register

from . import _osc, _wavetable

FREQ = dict(range=(0.0, 24000.0), unit="Hz", curve="exp", smooth=0.005)

#: The modulation inputs of every periodic oscillator (unconnected: zeros, and the plain kernel).
MOD_INPUTS = {
    "fm": Input("through-zero FM: fm * fm_depth Hz added to freq each sample (a negative sum runs "
                "the waveform backwards)", channels=1, optional=True),
    "pm": Input("phase modulation: pm * pm_depth cycles added to the phase (1 = one period)",
                channels=1, optional=True),
    "sync": Input("hard sync: each rising zero crossing (<= 0 to > 0: a gate works too) restarts the cycle "
                  "at the start phase", channels=1, optional=True),
}
MOD_PARAMS = {
    "fm_depth": Param(1.0, (0.0, 20000.0), "Hz", smooth=0.005,
                      doc="FM deviation in Hz per unit of the fm input (index = fm_depth / modulator Hz)"),
    "pm_depth": Param(1.0, (0.0, 16.0), smooth=0.005,
                      doc="phase shift in cycles per unit of the pm input (0.159 = 1 radian)"),
}
_PHASE = Option(0.0, kind=float, doc="start phase in cycles (0..1); a sync restarts the cycle here")


class _Periodic(Node):
    """Shared wiring: the state, the modulation inputs and the choice of kernel."""

    inputs = MOD_INPUTS
    outputs = {"out": Output("the waveform, -1..1", channels=1)}
    options = {"phase": _PHASE}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        # An unconnected optional input reads the engine's shared zeros: the
        # plain kernel (no fm/pm/sync work at all) gives the same samples.
        self.modulated = any(port in ctx.in_channels for port in MOD_INPUTS)
        self.reset()

    def _pw0(self):
        return 0.5

    def reset(self):
        self.state = _osc.periodic_state(float(self.opts.get("phase") or 0.0), self._pw0())

    def _mods(self):
        inp, par = self.inp, self.par
        return inp["fm"][0], par["fm_depth"], inp["pm"][0], par["pm_depth"], inp["sync"][0]

    @staticmethod
    def _batch_mods(b):
        return b.inp["fm"], b.par["fm_depth"], b.inp["pm"], b.par["pm_depth"], b.inp["sync"]


@register("sine")
class Sine(_Periodic):
    """Sine oscillator (also the plain LFO), with FM, PM and hard sync.

    Example: ``lfo: {type: sine, freq: 0.3}``; FM: ``car: {type: sine, freq: 440, fm: mod, fm_depth: 300}``
    """

    params = {"freq": Param(440.0, doc="frequency", **FREQ), **MOD_PARAMS}

    def prepare(self, ctx):
        self._zeros = np.zeros(ctx.block_size, dtype=np.float32)  # the plain kernel's phase offset
        super().prepare(ctx)

    def process(self, n, t):
        if self.modulated:
            _osc.sine_mod_kernel(self._y, n, self.par["freq"], *self._mods(), self.sr, self.state)
        else:
            _osc.sine_kernel(self._y, n, self.par["freq"], self._zeros, self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        if b.modulated:
            _osc.sine_mod_batch(b.out["out"], n, b.par["freq"], *cls._batch_mods(b), b.sr, b.state["state"])
        else:
            _osc.sine_batch(b.out["out"], n, b.par["freq"], b._zeros, b.sr, b.state["state"])


@register("saw")
class Saw(_Periodic):
    """Band-limited rising sawtooth (minBLEP), with FM, PM and hard sync.

    Example: ``osc: {type: saw, freq: A2}``; sync lead: ``lead: {type: saw, freq: 700, sync: master}``
    """

    params = {"freq": Param(110.0, doc="frequency", **FREQ), **MOD_PARAMS}

    def process(self, n, t):
        if self.modulated:
            _osc.saw_mod_kernel(self._y, n, self.par["freq"], *self._mods(), self.sr, self.state)
        else:
            _osc.saw_kernel(self._y, n, self.par["freq"], self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        if b.modulated:
            _osc.saw_mod_batch(b.out["out"], n, b.par["freq"], *cls._batch_mods(b), b.sr, b.state["state"])
        else:
            _osc.saw_batch(b.out["out"], n, b.par["freq"], b.sr, b.state["state"])


@register("square")
class Square(_Periodic):
    """Band-limited square / pulse wave with pulse width (minBLEP), with FM, PM and hard sync.

    Example: ``osc: {type: square, freq: 220, pw: 0.3}``
    """

    params = {
        "freq": Param(110.0, doc="frequency", **FREQ),
        "pw": Param(0.5, (0.01, 0.99), doc="pulse width (duty cycle); 0.5 is square"),
        **MOD_PARAMS,
    }

    def _pw0(self):
        return float(self.par["pw"][0]) if "pw" in self.par else self.params["pw"].default

    def process(self, n, t):
        if self.modulated:
            fm, fmd, pm, pmd, sync = self._mods()
            _osc.pulse_mod_kernel(self._y, n, self.par["freq"], fm, fmd, pm, pmd, sync, self.par["pw"], self.sr,
                                  self.state)
        else:
            _osc.pulse_kernel(self._y, n, self.par["freq"], self.par["pw"], self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        if b.modulated:
            fm, fmd, pm, pmd, sync = cls._batch_mods(b)
            _osc.pulse_mod_batch(b.out["out"], n, b.par["freq"], fm, fmd, pm, pmd, sync, b.par["pw"], b.sr,
                                 b.state["state"])
        else:
            _osc.pulse_batch(b.out["out"], n, b.par["freq"], b.par["pw"], b.sr, b.state["state"])


@register("pulse")
class Pulse(Square):
    """Band-limited pulse for pulse-width modulation: edges stay band-limited under audio-rate PWM.

    Like ``square``, but the width moves smoothly between samples and each
    edge is placed where the phase meets the moving width, so a fast PWM
    sweep (``pw: {from: lfo, range: [0.1, 0.9]}``) does not alias. FM, PM
    and hard sync as on every oscillator.

    Example: ``osc: {type: pulse, freq: 110, pw: {from: lfo, range: [0.2, 0.8]}}``
    """

    params = {
        "freq": Param(110.0, doc="frequency", **FREQ),
        "pw": Param(0.25, (0.01, 0.99), doc="pulse width (duty cycle): the share of the cycle spent high"),
        **MOD_PARAMS,
    }

    def process(self, n, t):
        fm, fmd, pm, pmd, sync = self._mods()
        _osc.pulse_mod_kernel(self._y, n, self.par["freq"], fm, fmd, pm, pmd, sync, self.par["pw"], self.sr,
                              self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        fm, fmd, pm, pmd, sync = cls._batch_mods(b)
        _osc.pulse_mod_batch(b.out["out"], n, b.par["freq"], fm, fmd, pm, pmd, sync, b.par["pw"], b.sr,
                             b.state["state"])


@register("triangle")
class Triangle(_Periodic):
    """Band-limited triangle (minBLAMP), with FM, PM and hard sync.

    Example: ``osc: {type: triangle, freq: 330}``
    """

    params = {"freq": Param(110.0, doc="frequency", **FREQ), **MOD_PARAMS}

    def process(self, n, t):
        if self.modulated:
            _osc.triangle_mod_kernel(self._y, n, self.par["freq"], *self._mods(), self.sr, self.state)
        else:
            _osc.triangle_kernel(self._y, n, self.par["freq"], self.sr, self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        if b.modulated:
            _osc.triangle_mod_batch(b.out["out"], n, b.par["freq"], *cls._batch_mods(b), b.sr, b.state["state"])
        else:
            _osc.triangle_batch(b.out["out"], n, b.par["freq"], b.sr, b.state["state"])


def _numbers(value, key, min_len=1):
    """A list option of finite numbers, or a PatchError naming ``key``."""
    if (not isinstance(value, (list, tuple)) or len(value) < min_len
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value)):
        raise PatchError(f"{key} must be a list of numbers, e.g. [1, 0.5, 0.33]", Where(key=key))
    if len(value) > 65536:
        raise PatchError(f"{key} has {len(value)} entries; at most 65536", Where(key=key))
    return [float(v) for v in value]


@register("wavetable")
class Wavetable(_Periodic):
    """Wavetable oscillator: a cycle from a harmonic list or a single-cycle WAV, band-limited by mipmaps.

    Give the cycle as ``harmonics`` (amplitudes of harmonics 1, 2, 3...;
    optional ``phases`` in cycles), as ``tables`` (several harmonic lists)
    or as a ``file`` holding ``cycles`` single cycles of equal length (a path
    relative to the patch). With several cycles, ``position`` (0..1) morphs
    through them. Each quarter octave of pitch plays a table that keeps only
    the harmonics below Nyquist, so no pitch, FM or PM makes it alias (at
    most 512 harmonics are kept; a file's cycle gives up to half its length).
    One gain scales all tables so the loudest peaks at 1 (``normalize:
    false`` keeps the given amplitudes). FM, PM and hard sync as on every
    oscillator.

    Example: ``organ: {type: wavetable, freq: C3, harmonics: [1, 0.5, 0, 0.25, 0, 0.125]}``
    """

    params = {
        "freq": Param(110.0, doc="frequency", **FREQ),
        "position": Param(0.0, (0.0, 1.0), smooth=0.005, doc="morph through the cycles: 0 the first, 1 the last"),
        **MOD_PARAMS,
    }
    options = {
        "phase": _PHASE,
        "harmonics": Option(None, kind=list, doc="amplitudes of harmonics 1, 2, 3... (e.g. [1, 0.5, 0.33])"),
        "phases": Option(None, kind=list, doc="phases of the harmonics in cycles (default 0: sines)"),
        "tables": Option(None, kind=list, doc="several harmonic lists to morph through with position"),
        "file": Option(None, kind="path", doc="WAV/FLAC file of single cycles, relative to the patch's folder"),
        "cycles": Option(1, kind=int, doc="how many equal-length cycles the file holds (to morph through)"),
        "normalize": Option(True, kind=bool, doc="scale the tables so the loudest peak is 1"),
    }
    contract_settings = {"tables": [[1.0], [1.0, 0.5, 0.333, 0.25, 0.2, 0.167, 0.143]]}

    def prepare(self, ctx):
        spectra, key = self._spectra(ctx)
        try:
            self.tables = _wavetable.build_tables(spectra, bool(self.opts.get("normalize", True)))
        except ValueError as e:
            raise PatchError(str(e), Where(key=key)) from None
        super().prepare(ctx)

    def batch_key(self):
        return None  # every node has its own tables

    def _spectra(self, ctx):
        opts = self.opts
        given = [k for k in ("harmonics", "tables", "file") if opts.get(k) is not None]
        if len(given) != 1:
            raise PatchError("a wavetable needs exactly one of harmonics, tables or file"
                             + (f" (got {', '.join(given)})" if given else ""),
                             Where(key=given[1] if len(given) > 1 else None),
                             hint="e.g. harmonics: [1, 0.5, 0.33, 0.25] or file: waves/cycle.wav")
        if opts.get("phases") is not None and "harmonics" not in given:
            raise PatchError("phases go with harmonics", Where(key="phases"))
        if "harmonics" in given:
            phases = opts.get("phases")
            if phases is not None:
                phases = _numbers(phases, "phases")
            spec = _wavetable.spectrum_from_harmonics(_numbers(opts["harmonics"], "harmonics"), phases)
            return spec[None, :], "harmonics"
        if "tables" in given:
            lists = opts["tables"]
            if not isinstance(lists, list) or not lists:
                raise PatchError("tables must be a list of harmonic lists, e.g. [[1], [1, 0.5, 0.33]]",
                                 Where(key="tables"))
            rows = [_numbers(row, "tables") for row in lists]
            spec = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.complex128)
            for i, r in enumerate(rows):
                spec[i, : len(r)] = _wavetable.spectrum_from_harmonics(r)
            return spec, "tables"
        return self._file_spectra(ctx), "file"

    def _file_spectra(self, ctx):
        from .sampler import resolve

        file = self.opts["file"]
        path = resolve(file, ctx.base_dir)
        cycles = self.opts.get("cycles") or 1
        if not isinstance(cycles, int) or cycles < 1:
            raise PatchError(f"cycles must be a whole number >= 1, not {cycles!r}", Where(key="cycles"))
        import soundfile as sf

        try:
            data, _ = sf.read(path, dtype="float64", always_2d=True)
        except Exception as e:  # missing, unreadable, not audio
            reason = "no such file" if not os.path.exists(path) else str(e)
            raise PatchError(f"cannot read wavetable file '{file}': {reason}", Where(key="file")) from None
        mono = data.mean(axis=1)
        if len(mono) < 8 * cycles:
            raise PatchError(f"wavetable file '{file}' has {len(mono)} samples: too short for {cycles} "
                             "cycle(s) (at least 8 samples each)", Where(key="file"))
        spec = _wavetable.spectra_from_audio(mono, cycles)
        if not np.any(np.abs(spec) > 1e-12):
            raise PatchError(f"wavetable file '{file}' is silent (or only DC)", Where(key="file"))
        return spec

    def process(self, n, t):
        _wavetable.wavetable_kernel(self._y, n, self.par["freq"], *self._mods(), self.par["position"], self.tables,
                                    self.sr, self.state)


@register("phasor")
class Phasor(Node):
    """Rising ramp 0..1 at freq: a phase for lookups and waveshaping, or a clock (not band-limited).

    Example: ``ph: {type: phasor, freq: 2}`` then ``{type: math, expr: "sin(2 * pi * a)", a: ph}``
    """

    inputs = {"sync": Input("rising zero crossings (<= 0 to > 0, e.g. a gate) restart the ramp at the "
                            "start phase", channels=1, optional=True)}
    outputs = {"out": Output("the phase in cycles, 0..1", channels=1, range=(0.0, 1.0))}
    params = {"freq": Param(1.0, doc="frequency (cycles per second)", **FREQ)}
    options = {"phase": _PHASE}
    batch_state = ("state",)

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        self.reset()

    def reset(self):
        self.state = _osc.lfo_state(float(self.opts.get("phase") or 0.0), 0)

    def process(self, n, t):
        _osc.lfo_kernel(self._y, n, self.par["freq"], self.inp["sync"][0], _osc.PHASOR, False, self.sr,
                        self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        _osc.lfo_batch(b.out["out"], n, b.par["freq"], b.inp["sync"], _osc.PHASOR, False, b.sr, b.state["state"])


@register("lfo")
class LFO(Node):
    """Low-frequency oscillator: sine, triangle, saw, ramp, square, random (sample & hold) or smooth random.

    Shapes over a cycle from the start phase: sine and triangle start at 0
    rising; ``saw`` rises from -1 to 1, ``ramp`` falls from 1 to -1;
    ``square`` is +1 for the first half; ``random`` holds a new seeded random
    value each cycle; ``smooth`` glides from one random value to the next.
    Output -1..1, or 0..1 with ``unipolar: true``. Naive (not band-limited):
    a control source. ``sync`` restarts the cycle (e.g. from a gate).

    Example: ``wobble: {type: lfo, shape: triangle, freq: 0.5, unipolar: true}``
    """

    inputs = {"sync": Input("rising zero crossings (<= 0 to > 0, e.g. a gate) restart the cycle at the "
                            "start phase", channels=1, optional=True)}
    outputs = {"out": Output("the LFO, -1..1", channels=1)}
    params = {"freq": Param(1.0, (0.0, 100.0), "Hz", "exp", smooth=0.005, doc="rate (cycles per second)")}
    options = {
        "shape": Option("sine", choices=_osc.LFO_SHAPES, doc="waveform"),
        "unipolar": Option(False, kind=bool, doc="output 0..1 instead of -1..1"),
        "phase": _PHASE,
        "seed": Option(None, kind=int, doc="seed of random/smooth (default: from the patch seed and node name)"),
    }
    batch_state = ("state",)

    @classmethod
    def ports(cls, opts):
        if opts.get("unipolar"):
            return cls.inputs, {"out": Output("the LFO, 0..1", channels=1, range=(0.0, 1.0))}, cls.params
        return cls.inputs, cls.outputs, cls.params

    def prepare(self, ctx):
        super().prepare(ctx)
        self.sr = float(ctx.sample_rate)
        self._y = self.out["out"][0]
        self.shape = _osc.LFO_SHAPES.index(self.opts.get("shape") or "sine")
        self.unipolar = bool(self.opts.get("unipolar"))
        self.reset()

    def batch_key(self):
        return (self.opts.get("shape") or "sine", bool(self.opts.get("unipolar")))

    def reset(self):
        seed = self.opts.get("seed")
        self.state = _osc.lfo_state(float(self.opts.get("phase") or 0.0),
                                    self.ctx.seed if seed is None else int(seed))

    def process(self, n, t):
        _osc.lfo_kernel(self._y, n, self.par["freq"], self.inp["sync"][0], self.shape, self.unipolar, self.sr,
                        self.state)

    @classmethod
    def process_batch(cls, b, n, t):
        _osc.lfo_batch(b.out["out"], n, b.par["freq"], b.inp["sync"], b.shape, b.unipolar, b.sr,
                       b.state["state"])


@register("noise")
class Noise(Node):
    """Seeded noise: white (flat), pink (-3 dB/octave) or brown (-6 dB/octave), RMS 0.3.

    The seed comes from the patch's ``seed`` and the node's name, so a patch
    renders the same bytes every time; set ``seed`` to pin one node. Brown
    noise is leaky-integrated white noise (a one-pole lowpass at 10 Hz), so
    it falls 6 dB per octave above 10 Hz and never drifts away.

    Example: ``hiss: {type: noise, color: pink}``
    """

    outputs = {"out": Output("noise, RMS 0.3", channels=1)}
    options = {
        "color": Option("white", choices=("white", "pink", "brown"), doc="spectrum"),
        "seed": Option(None, kind=int, doc="seed for this node (default: from the patch seed and node name)"),
    }

    def prepare(self, ctx):
        super().prepare(ctx)
        self._y = self.out["out"][0]
        self.color = self.opts.get("color") or "white"
        self._brown = _osc.brown_coefs(ctx.sample_rate)
        self.reset()

    def reset(self):
        seed = self.opts.get("seed")
        self.state = _osc.noise_state(self.ctx.seed if seed is None else int(seed))

    def process(self, n, t):
        if self.color == "pink":
            _osc.pink_kernel(self._y, n, self.state)
        elif self.color == "brown":
            _osc.brown_kernel(self._y, n, self._brown[0], self._brown[1], self.state)
        else:
            _osc.white_kernel(self._y, n, self.state)
