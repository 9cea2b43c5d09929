"""``patchlib bench``: reference workloads, each rendered by patchlib (and pyo, scipy where they can) in one run.

**The voice bank** (``voices``) is 16 voices summed: voice ``k`` (0..15) is a
band-limited saw at ``55 * 2**(k/7)`` Hz through a resonant lowpass (Q 4)
whose cutoff an own sine LFO at ``0.1 + 1.9*k/15`` Hz sweeps over
300..3000 Hz on an exponential curve; the mix has a gain of 1/16 per voice.
Three engines render it:

* **patchlib**: the patch as a dict (:func:`voice_bank_patch`) through
  :func:`patchlib.load_patch` and :class:`patchlib.Engine`; only
  ``Engine.render`` is timed, on a fresh engine, after a warm-up render of
  another engine (numba JIT / cache loading is not timed). Cutoff follows the
  LFO every sample.
* **pyo**: the same patch on pyo's offline server (``audio="offline"``, whose
  ``start()`` renders the whole duration synchronously into a WAV file in a
  temporary folder); ``Server.start()`` is timed, in a subprocess (pyo holds
  one server per process). Objects: ``LFO(type=0, sharp=1)`` (pyo's
  band-limited saw), ``Sine(mul=.5, add=.5)`` -> ``Pow(10, ., mul=300)``
  (the same exponential map), ``Biquad(type=0, q=4)`` with that audio-rate
  ``freq`` (coefficients every sample), ``Mix(..., mul=1/16).out()``.
* **scipy**: sixteen hand-written numpy + ``scipy.signal.lfilter`` chains
  (:class:`ScipyVoiceBank`): per block and per voice a naive saw by phase
  accumulation, the LFO and the cutoff once per block (control rate = block
  rate, what a hand-written chain does), RBJ lowpass coefficients and
  ``lfilter(b, a, x, zi=zi)`` carrying the state. The naive saw is cheaper
  than a band-limited one: the choice favours scipy, not patchlib.

**The plucked strings** (``strings``) are 8 Karplus-Strong strings at
E2 A2 D3 G3 B3 E4 A4 D5, T60 decay 2 s, each plucked (velocity 0.8) every
0.5 s, string ``k`` from ``k/16`` s on so that the plucks do not land on one
sample, mixed with a gain of 1/8 each. Two engines render it:

* **patchlib**: :func:`strings_patch`, 8 ``string`` nodes plucked by score
  ``trigger`` events, through a ``mix`` node; timed like the voice bank.
* **pyo**: per string ``Metro(0.5).play(delay=k/16)`` -> ``TrigEnv`` (a 5 ms
  decaying envelope, ``mul=0.8``) as the ``mul`` of a ``Noise`` (the pluck)
  -> ``Waveguide(pluck, freq, dur)``, ``Mix(..., mul=1/8).out()``.
  ``Waveguide``'s ``dur`` is the time to fall by 40 dB, so it is 2/3 of the
  T60 (the same decay as patchlib's).

**The neural pedals** (``neural``) are whole patches too (:func:`neural_patch`):
one ``string`` plucked every 0.25 s through a riff (E2 G2 A2 E2 D3 C3 A2 G2)
into one node, per row: nothing (the dry source's own cost), the ``pedal``
node with each shipped model (``patches/models/overdrive.pt``, an LSTM, and
``overdrive-wavenet.pt``), with NAM's standard
WaveNet and with NAM's default LSTM (3 layers x 18; both written by
:func:`write_neural_models` as ``.nam`` files with seeded random weights into
a temporary folder, the patches' folder), and the virtual-analog
``diode_clipper`` at oversample 4 and 2. Each pedal row runs with
``engine: fast`` (fused numba kernels) and ``engine: torch`` (one torch call
per op, our stand-in for NAM's Python package; at most :data:`TORCH_SECONDS`
rendered), one thread. Per row: real-time factors, fast/torch, the model's
multiply-adds per sample and the GFLOP/s they make, as a share of the
one-thread float32 peak :func:`measure_peak` measures in the same run
(matmul with numpy and torch, a numba multiply-add loop). No pyo: its targets
(:data:`NEURAL_TARGETS`) are real-time factors of the fast engine at block 64;
the report quotes the issue's NAM figures (:data:`NAM_REFERENCE`), measured
elsewhere.

**Live** (``live``) measures OSC control of a patch playing in real time:
a :class:`~patchlib.realtime.Player` on the null backend (paced by the real
clock, 48 kHz), an :class:`~patchlib.osc.OscServer` on 127.0.0.1 and a
client socket in the same process, all on real UDP sockets, *not* pinned to
one core (the audio, receive, reply and sender threads run as they would
live). Four figures (:func:`run_live`): the OSC-to-sound latency of
``/osc/freq 880`` to a sine, per block size (:func:`live_latency`); the
issue's throughput run, 5000 param messages per second for 10 s to a
20-node patch (:func:`live_patch`, :func:`live_throughput`), and the highest
rate sustained for 2 s with none lost (:func:`live_max_rate`); 10,000
malformed packets while the patch plays (:func:`live_robustness`); and the
timing error of timetagged bundles, in samples (:func:`live_bundle_timing`).

Everything else runs pinned to one core (where the OS lets us). Each figure is the
best of ``repeats`` runs, the engines interleaved run by run so that load
from elsewhere hits them alike. The targets (:data:`PYO_TARGETS`,
:data:`STARTUP_TARGET`) are ratios to pyo measured in the same run, so they
hold across machines; plus "faster than scipy" for the voice bank; the neural
pedals' are real-time factors (they depend on the machine).

    >>> from patchlib import bench
    >>> res = bench.run(seconds=2, block_sizes=(256,), output=None)  # doctest: +SKIP
    >>> res["workloads"]["strings"]["blocks"][256]["patchlib/pyo"]  # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

SAMPLE_RATE = 48000

#: the workloads, in the order they run and appear in the report
WORKLOADS = ("voices", "strings", "neural", "generators", "live")
TITLES = {"voices": "Voice bank", "strings": "Plucked strings", "neural": "Neural pedals",
          "generators": "Neural generators", "live": "Live: OSC control in real time"}
#: the engines each workload is rendered with (the neural pedals: patchlib's two model engines)
ENGINES = {"voices": ("patchlib", "pyo", "scipy"), "strings": ("patchlib", "pyo"), "neural": ("fast", "torch"),
           "generators": ("patchlib",), "live": ("patchlib",)}
#: targets: patchlib's real-time factor over pyo's in the same run, per workload and block size
PYO_TARGETS = {"voices": {256: 1.0, 64: 0.7}, "strings": {64: 2.0, 256: 2.0}}
#: target: seconds from ``import patchlib`` to the end of the first block (warm numba cache)
STARTUP_TARGET = 2.0

# the voice bank
VOICES = 16
CUTOFF_RANGE = (300.0, 3000.0)
Q = 4.0
GAIN = 1.0 / VOICES

# the plucked strings
STRINGS = 8
STRING_NOTES = ("E2", "A2", "D3", "G3", "B3", "E4", "A4", "D5")
_STRING_MIDI = (40, 45, 50, 55, 59, 64, 69, 74)
RETRIGGER = 0.5  # s between plucks of one string
STAGGER = 1.0 / 16.0  # s between the first plucks of neighbouring strings
DECAY = 2.0  # T60, s
VELOCITY = 0.8
BURST = 0.005  # s, pyo's noise burst
STRING_GAIN = 1.0 / STRINGS

_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}


def _check_workload(workload: str) -> str:
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}: use one of {', '.join(WORKLOADS)}")
    return workload


# --------------------------------------------------------------------- the patches
def voice_freqs() -> list[float]:
    """Saw frequencies: ``55 * 2**(k/7)`` Hz, k = 0..15."""
    return [55.0 * 2.0 ** (k / 7.0) for k in range(VOICES)]


def lfo_rates() -> list[float]:
    """LFO rates spread over 0.1..2 Hz: ``0.1 + 1.9*k/15``."""
    return [0.1 + 1.9 * k / (VOICES - 1) for k in range(VOICES)]


def voice_bank_patch(block_size: int = 256, sample_rate: int = SAMPLE_RATE) -> dict:
    """The reference voice bank as a patch dict (for :func:`patchlib.load_patch`)."""
    nodes: dict = {}
    for k, (f, r) in enumerate(zip(voice_freqs(), lfo_rates())):
        nodes[f"lfo{k}"] = {"type": "sine", "freq": r}
        nodes[f"osc{k}"] = {"type": "saw", "freq": f}
        nodes[f"flt{k}"] = {"type": "lowpass", "in": f"osc{k}",
                            "cutoff": {"from": f"lfo{k}", "range": list(CUTOFF_RANGE), "curve": "exp"},
                            "q": Q}
    nodes["sum"] = {"type": "mix", "in": [f"flt{k}" for k in range(VOICES)], "gains": [GAIN] * VOICES}
    return {"sample_rate": int(sample_rate), "block_size": int(block_size), "nodes": nodes, "out": "sum"}


def string_freqs() -> list[float]:
    """The strings' pitches in Hz: E2 A2 D3 G3 B3 E4 A4 D5 (equal temperament, A4 = 440 Hz)."""
    return [440.0 * 2.0 ** ((m - 69) / 12.0) for m in _STRING_MIDI]


def pluck_times(k: int, seconds: float) -> list[float]:
    """When string ``k`` is plucked within ``seconds``: ``k/16 + 0.5*j`` s."""
    out, j = [], 0
    while k * STAGGER + j * RETRIGGER < seconds:
        out.append(k * STAGGER + j * RETRIGGER)
        j += 1
    return out


def strings_patch(block_size: int = 256, seconds: float = 30.0, sample_rate: int = SAMPLE_RATE) -> dict:
    """The plucked strings as a patch dict, with a score of plucks covering ``seconds``."""
    nodes: dict = {}
    for k, f in enumerate(string_freqs()):
        nodes[f"s{k}"] = {"type": "string", "freq": f, "decay": DECAY}
    nodes["mix"] = {"type": "mix", "in": [f"s{k}" for k in range(STRINGS)], "gains": [STRING_GAIN] * STRINGS}
    score = [{"at": t, "trigger": f"s{k}", "velocity": VELOCITY}
             for k in range(STRINGS) for t in pluck_times(k, seconds)]
    score.sort(key=lambda ev: ev["at"])
    return {"sample_rate": int(sample_rate), "block_size": int(block_size), "duration": float(seconds),
            "nodes": nodes, "out": "mix", "score": score}


def patch(workload: str, block_size: int = 256, seconds: float = 30.0) -> dict:
    """A workload's patch dict (``seconds`` sets the strings' score); the neural workload's is its
    shipped-model row (see :func:`neural_patch`)."""
    if _check_workload(workload) == "voices":
        return voice_bank_patch(block_size)
    if workload == "live":
        return live_patch(block_size)
    if workload == "neural":
        return neural_patch("overdrive", block_size, seconds)
    return strings_patch(block_size, seconds)


def _frames(seconds: float) -> int:
    return int(round(seconds * SAMPLE_RATE))


def _rms(y) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(y * y))) if y.size else 0.0


# --------------------------------------------------------------------- patchlib
def _patchlib_engine(block_size: int, workload: str = "voices", seconds: float = 30.0):
    from . import Engine, load_patch

    return Engine(load_patch(patch(workload, block_size, seconds)), block_size=block_size)


def render_patchlib(seconds: float, block_size: int = 256, workload: str = "voices") -> np.ndarray:
    """A workload rendered by patchlib: mono float32, ``seconds * 48000`` frames."""
    return _patchlib_engine(block_size, workload, seconds).render(_frames(seconds))[0]


def _time_patchlib(workload: str, seconds: float, block_size: int) -> tuple[float, float, float]:
    """(wall seconds of Engine.render, output RMS, audio seconds); JIT / cache load excluded."""
    # warm-up on another engine: numba, caches; 0.4 s holds a pluck of every string
    _patchlib_engine(block_size, workload, seconds).render(min(_frames(seconds), 4 * 4800))
    engine = _patchlib_engine(block_size, workload, seconds)
    frames = _frames(seconds)
    t0 = time.perf_counter()
    y = engine.render(frames)
    wall = time.perf_counter() - t0
    return wall, _rms(y), y.shape[1] / SAMPLE_RATE


# --------------------------------------------------------------------- scipy
class ScipyVoiceBank:
    """The voice bank as sixteen hand-written numpy / ``scipy.signal.lfilter`` chains.

    Per block and voice: a naive saw (phase accumulation, vectorised over the
    block), the LFO and the cutoff once per block, the RBJ cookbook lowpass
    coefficients, and ``lfilter`` with its state carried in ``zi``.
    """

    def __init__(self, block_size: int = 256, sample_rate: int = SAMPLE_RATE):
        from scipy.signal import lfilter

        self._lfilter = lfilter
        self.block_size = int(block_size)
        self.sr = float(sample_rate)
        self.inc = [f / self.sr for f in voice_freqs()]
        self.lfo_inc = [r / self.sr for r in lfo_rates()]
        # the saw is 2*phase - 1 of a phase that starts at 0.5: it starts at 0
        # and rises, like patchlib's; the LFOs start at phase 0 (sin = 0)
        self.phase = [0.5] * VOICES
        self.lfo_phase = [0.0] * VOICES
        self.zi = [np.zeros(2) for _ in range(VOICES)]
        self.ramp = np.arange(self.block_size, dtype=np.float64)
        lo, hi = CUTOFF_RANGE
        self.lo, self.log_ratio = lo, math.log(hi / lo)

    def process(self, n: int) -> np.ndarray:
        """The next ``n`` (<= block size) frames, float64."""
        lfilter = self._lfilter
        mix = np.zeros(n)
        ramp = self.ramp[:n]
        two_pi = 2.0 * math.pi
        for v in range(VOICES):
            # saw
            inc = self.inc[v]
            ph = ramp * inc
            ph += self.phase[v]
            np.mod(ph, 1.0, out=ph)
            x = 2.0 * ph - 1.0
            self.phase[v] = (self.phase[v] + n * inc) % 1.0
            # LFO and cutoff, once per block
            s = math.sin(two_pi * self.lfo_phase[v])
            self.lfo_phase[v] = (self.lfo_phase[v] + n * self.lfo_inc[v]) % 1.0
            fc = self.lo * math.exp(self.log_ratio * (s + 1.0) * 0.5)
            # RBJ lowpass
            w0 = two_pi * fc / self.sr
            cw = math.cos(w0)
            alpha = math.sin(w0) / (2.0 * Q)
            a0 = 1.0 + alpha
            b = np.array([(1.0 - cw) * 0.5, 1.0 - cw, (1.0 - cw) * 0.5]) / a0
            a = np.array([1.0, -2.0 * cw / a0, (1.0 - alpha) / a0])
            y, self.zi[v] = lfilter(b, a, x, zi=self.zi[v])
            mix += y
        mix *= GAIN
        return mix

    def render(self, frames: int) -> np.ndarray:
        out = np.empty(frames)
        B = self.block_size
        for pos in range(0, frames, B):
            n = min(B, frames - pos)
            out[pos:pos + n] = self.process(n)
        return out


def render_scipy(seconds: float, block_size: int = 256) -> np.ndarray:
    """The voice bank rendered by the scipy chains: mono float32."""
    return ScipyVoiceBank(block_size).render(_frames(seconds)).astype(np.float32)


def _time_scipy(workload: str, seconds: float, block_size: int) -> tuple[float, float, float]:
    if workload != "voices":
        raise ValueError(f"no scipy version of the {workload} workload")
    ScipyVoiceBank(block_size).render(min(_frames(seconds), 4800))  # warm-up (imports, caches)
    bank = ScipyVoiceBank(block_size)
    frames = _frames(seconds)
    t0 = time.perf_counter()
    y = bank.render(frames)
    wall = time.perf_counter() - t0
    return wall, _rms(y), y.shape[0] / SAMPLE_RATE


# --------------------------------------------------------------------- pyo
_PYO_SERVER = ("Server(sr=48000, nchnls=1, buffersize=B, duplex=0, audio='offline'), setGlobalSeed(1), "
               "recordOptions(dur, <temp dir>/pyo.wav, fileformat=0 (WAV), sampletype=3 (float32))")
#: what pyo runs, per workload (for the report)
PYO_DESCRIPTIONS = {
    "voices": ("LFO(freq, sharp=1, type=0) (band-limited saw); Sine(rate, mul=0.5, add=0.5) -> "
               "Pow(10, sine, mul=300) (300..3000 Hz, exponential); Biquad(saw, freq=cutoff, q=4, type=0) "
               "(RBJ lowpass, coefficients per sample from the audio-rate freq); Mix(filters, voices=1, "
               "mul=1/16).out(); " + _PYO_SERVER),
    "strings": (f"per string k: Metro(time=0.5).play(delay=k/16) (the plucks); "
                f"TrigEnv(metro, table=LinTable([(0, 1), ({int(BURST * SAMPLE_RATE) - 1}, 0)], "
                f"size={int(BURST * SAMPLE_RATE)}), dur={BURST:g}, mul={VELOCITY:g}) (a {BURST * 1e3:g} ms "
                f"decaying envelope at velocity {VELOCITY:g}); Noise(mul=envelope) (the pluck: a noise burst); "
                f"Waveguide(pluck, freq=f, dur={DECAY * 2 / 3:.3f}, minfreq=20) (one delay line with a lowpass "
                f"and Lagrange interpolation; dur = the time to fall by 40 dB, 2/3 of the T60 of {DECAY:g} s; a "
                f"pluck adds to what still rings); "
                f"Mix(strings, voices=1, mul=1/8).out(); " + _PYO_SERVER),
}
PYO_OBJECTS = PYO_DESCRIPTIONS["voices"]


def _pyo_voices(pyo) -> tuple[list, object]:
    keep, voices = [], []
    lo, hi = CUTOFF_RANGE
    for f, r in zip(voice_freqs(), lfo_rates()):
        lfo = pyo.Sine(freq=r, mul=0.5, add=0.5)  # 0..1
        cutoff = pyo.Pow(hi / lo, lfo, mul=lo)  # 300 * 10**u: 300..3000, exponential
        saw = pyo.LFO(freq=f, sharp=1.0, type=0)
        flt = pyo.Biquad(saw, freq=cutoff, q=Q, type=0)
        keep += [lfo, cutoff, saw, flt]
        voices.append(flt)
    return keep, pyo.Mix(voices, voices=1, mul=GAIN).out()


def _pyo_strings(pyo) -> tuple[list, object]:
    n = int(BURST * SAMPLE_RATE)
    table = pyo.LinTable([(0, 1.0), (n - 1, 0.0)], size=n)
    keep, strings = [table], []
    for k, f in enumerate(string_freqs()):
        metro = pyo.Metro(time=RETRIGGER).play(delay=k * STAGGER)
        env = pyo.TrigEnv(metro, table=table, dur=BURST, mul=VELOCITY)
        pluck = pyo.Noise(mul=env)
        # Waveguide's dur: seconds to fall by 40 dB = 2/3 of the T60
        wg = pyo.Waveguide(pluck, freq=f, dur=DECAY * 40.0 / 60.0, minfreq=20)
        keep += [metro, env, pluck, wg]
        strings.append(wg)
    return keep, pyo.Mix(strings, voices=1, mul=STRING_GAIN).out()


def _pyo_worker(workload: str, block_size: int, seconds: float, path: str) -> None:
    """Render a workload with pyo's offline server; print one JSON line."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import pyo  # prints GUI-toolkit notices on import

    s = pyo.Server(sr=SAMPLE_RATE, nchnls=1, buffersize=int(block_size), duplex=0, audio="offline",
                   verbosity=1).boot()
    s.recordOptions(dur=float(seconds), filename=path, fileformat=0, sampletype=3)
    s.setGlobalSeed(1)  # the same noise bursts every run: the same RMS
    keep, mix = {"voices": _pyo_voices, "strings": _pyo_strings}[_check_workload(workload)](pyo)
    t0 = time.perf_counter()
    s.start()  # offline: renders the whole duration, then returns
    wall = time.perf_counter() - t0
    s.shutdown()
    del mix, keep
    print(json.dumps({"wall": wall, "version": getattr(pyo, "PYO_VERSION", None)}))


def _pyo_run(workload: str, block_size: int, seconds: float, path: str) -> dict:
    env = dict(os.environ, **_THREAD_ENV)
    cmd = [sys.executable, "-m", "patchlib.bench", "--pyo-worker", _check_workload(workload), str(int(block_size)),
           repr(float(seconds)), path]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=max(120.0, 20.0 * seconds))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit status {p.returncode}"]
        raise RuntimeError(f"pyo failed: {tail[0]}")
    return json.loads(lines[-1])


def _read_wav(path: str) -> np.ndarray:
    import soundfile as sf

    y, _ = sf.read(path, dtype="float32", always_2d=True)
    return y[:, 0]


def render_pyo(seconds: float, block_size: int = 256, workload: str = "voices") -> np.ndarray:
    """A workload rendered by pyo (offline server, in a subprocess): mono float32."""
    with tempfile.TemporaryDirectory(prefix="patchlib-bench-") as d:
        path = os.path.join(d, "pyo.wav")
        _pyo_run(workload, block_size, seconds, path)
        return _read_wav(path)[:_frames(seconds)]  # pyo renders whole buffers


def _time_pyo(workload: str, seconds: float, block_size: int) -> tuple[float, float, float]:
    # pyo renders whole buffers: a duration that is not a multiple of the
    # block renders a little more, and its real-time factor counts what it
    # rendered (the WAV's length)
    with tempfile.TemporaryDirectory(prefix="patchlib-bench-") as d:
        path = os.path.join(d, "pyo.wav")
        res = _pyo_run(workload, block_size, seconds, path)
        y = _read_wav(path)
        return float(res["wall"]), _rms(y[:_frames(seconds)]), y.shape[0] / SAMPLE_RATE


_TIMERS = {"patchlib": _time_patchlib, "pyo": _time_pyo, "scipy": _time_scipy}


# --------------------------------------------------------------------- the neural pedals
#: the neural workload's rows, in report order: the dry source alone, three models, the VA clipper
NEURAL_ROWS = ("source", "overdrive", "overdrive-wavenet", "nam-wavenet", "nam-lstm", "clipper-4x", "clipper-2x")
NEURAL_LABELS = {
    "source": "dry source alone (plucked-string riff)",
    "overdrive": "shipped `overdrive.pt` (LSTM)",
    "overdrive-wavenet": "shipped `overdrive-wavenet.pt`",
    "nam-wavenet": "NAM standard WaveNet (`.nam`)",
    "nam-lstm": "NAM LSTM 3×18 (`.nam`)",
    "clipper-4x": "`diode_clipper`, oversample 4",
    "clipper-2x": "`diode_clipper`, oversample 2",
}
#: the model file of each pedal row, in the patch's (temporary) folder
NEURAL_FILES = {"overdrive": "overdrive.pt", "overdrive-wavenet": "overdrive-wavenet.pt",
                "nam-wavenet": "nam-wavenet-standard.nam", "nam-lstm": "nam-lstm-3x18.nam"}
#: NAM's default LSTM (neural-amp-modeler, nam_full_configs/models/lstm.json)
NAM_LSTM = {"num_layers": 3, "hidden_size": 18}
#: targets: the fast engine's real-time factor at block NEURAL_TARGET_BLOCK, per pedal row
NEURAL_TARGETS = {"overdrive": 10.0, "overdrive-wavenet": 10.0, "nam-wavenet": 5.0, "nam-lstm": 10.0}
NEURAL_TARGET_BLOCK = 64
#: the engines of the pedal rows (the DSP rows run one: "patchlib")
NEURAL_ENGINES = ("fast", "torch")
#: the torch engine renders at most this many seconds (a rate: enough to measure it; it is slow)
TORCH_SECONDS = 10.0
#: the dry source: one string plucked every RIFF_STEP s through this riff
RIFF = ("E2", "G2", "A2", "E2", "D3", "C3", "A2", "G2")
RIFF_STEP = 0.25
RIFF_DECAY = 1.0  # T60, s
#: the shipped models (rows of the workload), in patches/models
_MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "patches", "models")
SHIPPED_MODELS = {row: os.path.join(_MODELS_DIR, NEURAL_FILES[row]) for row in ("overdrive", "overdrive-wavenet")}
#: the issue's reference figures (measured elsewhere, not by this run)
NAM_REFERENCE = (
    "NAM's own Python package (0.13, no streaming API), one thread, on the machine the issue was written on: "
    "standard WaveNet 3.7× real time on a whole 30 s file, 1.1× / 0.27× when fed 256- / 64-sample blocks with "
    "their history; its 3-layer LSTM 8.9× / 4.6× at block 256 / 64. NAM's C++ core is reported at 29–50× on an "
    "Apple M2. The standard WaveNet costs 13.3k multiply-adds per sample, 0.64 G per second of 48 kHz audio.")


def riff_score(seconds: float) -> list[dict]:
    """The dry source's score: per step a ``set`` of ``src.freq`` to the next riff note and a pluck."""
    score, j = [], 0
    while j * RIFF_STEP < seconds:
        t = j * RIFF_STEP
        score += [{"at": t, "set": "src.freq", "to": RIFF[j % len(RIFF)], "over": 0},
                  {"at": t, "trigger": "src", "velocity": VELOCITY}]
        j += 1
    return score


def neural_patch(row: str, block_size: int = 64, seconds: float = 30.0, engine: str = "fast") -> dict:
    """The patch dict of a neural-workload row: the riff's string -> the row's node (``fx``).

    A pedal row names its model file (:data:`NEURAL_FILES`) relative to the
    patch's folder: load it from a file in the folder that holds the models
    (:func:`write_neural_models`). ``engine`` is the pedal's ``engine``
    option; one thread.
    """
    if row not in NEURAL_ROWS:
        raise ValueError(f"unknown neural row {row!r}: use one of {', '.join(NEURAL_ROWS)}")
    nodes: dict = {"src": {"type": "string", "freq": RIFF[0], "decay": RIFF_DECAY}}
    if row in NEURAL_FILES:
        nodes["fx"] = {"type": "pedal", "in": "src", "model": NEURAL_FILES[row], "engine": engine, "threads": 1}
    elif row.startswith("clipper-"):
        nodes["fx"] = {"type": "diode_clipper", "in": "src", "oversample": int(row[len("clipper-"):-1])}
    return {"sample_rate": SAMPLE_RATE, "block_size": int(block_size), "duration": float(seconds), "nodes": nodes,
            "out": "fx" if "fx" in nodes else "src", "score": riff_score(seconds)}


def write_neural_models(folder: str) -> dict[str, str]:
    """Write the pedal rows' model files into ``folder``; returns ``{row: why}`` for those that could not be.

    The NAM-style models get random but deterministic weights
    (``torch.manual_seed``): speed does not depend on the weights' values.
    The shipped model is copied (a patch may name only files inside its folder).
    """
    import shutil

    import torch

    from nodes.neural.lstm import LSTM
    from nodes.neural.nam import save_nam
    from nodes.neural.wavenet import WaveNet, wavenet_config

    failed = {}
    for row, path in SHIPPED_MODELS.items():
        if os.path.isfile(path):
            shutil.copy(path, os.path.join(folder, NEURAL_FILES[row]))
        else:
            failed[row] = f"no shipped model at {path}"
    torch.manual_seed(0)
    save_nam(os.path.join(folder, NEURAL_FILES["nam-wavenet"]), WaveNet(**wavenet_config("standard")))
    torch.manual_seed(1)
    save_nam(os.path.join(folder, NEURAL_FILES["nam-lstm"]), LSTM(1, NAM_LSTM["hidden_size"], NAM_LSTM["num_layers"]))
    return failed


def _neural_engine(folder: str, row: str, block_size: int, seconds: float, engine: str):
    from . import Engine, load_patch

    path = os.path.join(folder, f"{row}-{engine}-{block_size}.yaml")
    if not os.path.isfile(path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(neural_patch(row, block_size, seconds, engine), f)  # JSON is YAML
    return Engine(load_patch(path), block_size=block_size)


def _time_neural(folder: str, row: str, block_size: int, seconds: float, engine: str) -> dict:
    """One timed render of a row: wall s, audio s, rms, and (pedals) the engine that ran and the model's MACs."""
    _neural_engine(folder, row, block_size, seconds, engine).render(min(_frames(seconds), 9600))  # warm-up
    eng = _neural_engine(folder, row, block_size, seconds, engine)
    frames = _frames(seconds)
    t0 = time.perf_counter()
    y = eng.render(frames)
    wall = time.perf_counter() - t0
    y = y[0]
    fx = eng.nodes.get("fx")
    res = {"wall": wall, "audio": y.shape[0] / SAMPLE_RATE, "rms": _rms(y), "finite": bool(np.isfinite(y).all()),
           "ac_rms": float(np.std(y.astype(np.float64)))}
    if fx is not None and hasattr(fx, "model"):
        res["engine"] = fx.engine
        res["macs"] = int(fx.model.macs_per_sample)
        res["arch"] = type(fx.model).__name__
    return res


_MATMUL_CODE = r"""
import json, time
import numpy as np
N = NSIZE
rng = np.random.default_rng(0)
a, b = rng.random((N, N), dtype=np.float32), rng.random((N, N), dtype=np.float32)
c = np.empty((N, N), np.float32)
reps = max(1, 4000000 // N ** 2)
best = 1e9
for i in range(6):
    t0 = time.perf_counter()
    for _ in range(reps):
        np.matmul(a, b, out=c)
    if i:
        best = min(best, (time.perf_counter() - t0) / reps)
print(json.dumps({"gflops": 2 * N ** 3 / best / 1e9}))
"""


def _fma_gflops(seconds: float = 0.2) -> float:
    """GFLOP/s of a numba loop of float32 multiply-adds over an array in L1 (vectorised by LLVM)."""
    import numba

    @numba.njit(fastmath=True, nogil=True)
    def fma(x, a, b, reps):
        for _ in range(reps):
            for i in range(x.size):
                x[i] = x[i] * a + b

    x = np.zeros(1024, np.float32)
    a, b = np.float32(0.999), np.float32(1e-3)
    fma(x, a, b, 1)
    reps, best = 1000, 0.0
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fma(x, a, b, reps)
        dt = time.perf_counter() - t0
        best = max(best, 2.0 * x.size * reps / dt / 1e9)
        if time.perf_counter() > end:
            return best
        if dt < 0.01:
            reps *= 4


def measure_peak(size: int = 256) -> dict:
    """The machine's one-thread float32 limit, measured now: GFLOP/s of a ``size``² matmul (numpy, in a
    one-thread subprocess; torch, one thread) and of a numba multiply-add loop; ``best`` is the highest."""
    out: dict = {"size": int(size)}
    env = dict(os.environ, **_THREAD_ENV)
    try:
        p = subprocess.run([sys.executable, "-c", _MATMUL_CODE.replace("NSIZE", str(int(size)))],
                           capture_output=True, text=True, env=env, timeout=120)
        out["numpy_matmul"] = json.loads(p.stdout.strip().splitlines()[-1])["gflops"]
    except Exception:  # no figure rather than no benchmark
        out["numpy_matmul"] = None
    try:
        import torch

        from nodes.neural.torchnode import set_threads

        set_threads(1)
        a, b, c = torch.rand(size, size), torch.rand(size, size), torch.empty(size, size)
        reps, best = max(1, 4000000 // size ** 2), 1e9
        for i in range(6):
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b, out=c)
            if i:
                best = min(best, (time.perf_counter() - t0) / reps)
        out["torch_matmul"] = 2 * size ** 3 / best / 1e9
    except Exception:
        out["torch_matmul"] = None
    try:
        out["numba_fma"] = _fma_gflops()
    except Exception:
        out["numba_fma"] = None
    figures = [v for k, v in out.items() if k != "size" and v]
    out["best"] = max(figures) if figures else None
    return out


def _gflops(macs, rt, sample_rate: float = SAMPLE_RATE):
    """GFLOP/s of a model doing ``macs`` multiply-adds per sample at ``rt`` x real time."""
    return None if macs is None or rt is None else 2.0 * macs * sample_rate * rt / 1e9


def _run_neural(seconds: float, block_sizes, repeats: int, say) -> dict:
    """Time the neural workload's rows at each block size (rows and engines interleaved per repeat)."""
    errors: dict[str, str] = {}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="patchlib-bench-neural-") as folder:
        try:
            errors.update(write_neural_models(folder))
        except Exception as exc:  # torch or the neural nodes missing: the pedal rows are n/a, the DSP rows run
            errors.update({row: f"{type(exc).__name__}: {exc}" for row in NEURAL_FILES})
        peak = measure_peak()
        say(f"  one-thread float32 peak: {_fmt(peak['best'], ' GFLOP/s')} (matmul {peak['size']}² numpy "
            f"{_fmt(peak['numpy_matmul'], '')}, torch {_fmt(peak['torch_matmul'], '')}; numba multiply-add loop "
            f"{_fmt(peak['numba_fma'], '')})")
        for row in NEURAL_ROWS:
            engines = NEURAL_ENGINES if row in NEURAL_FILES else ("patchlib",)
            rows[row] = {"label": NEURAL_LABELS[row], "engines": list(engines), "macs": None, "arch": None,
                         "blocks": {}}
        for bs in block_sizes:
            for row, info in rows.items():
                info["blocks"][bs] = {k: {e: None for e in info["engines"]} for k in ("rt", "wall", "rms", "ac_rms")}
            for _ in range(repeats):
                for row, info in rows.items():
                    if row in errors:
                        continue
                    cell = info["blocks"][bs]
                    for e in info["engines"]:
                        secs = min(seconds, TORCH_SECONDS) if e == "torch" else seconds
                        try:
                            r = _time_neural(folder, row, bs, secs, "fast" if e == "patchlib" else e)
                        except Exception as exc:  # a model that does not load: its row is n/a, go on
                            errors[row] = f"{type(exc).__name__}: {exc}"
                            say(f"  {row}: n/a ({errors[row]})")
                            break
                        if not r["finite"]:
                            errors[row] = f"{e} engine: NaN or inf in the output"
                        if e != "patchlib" and r["engine"] != e:
                            errors[row] = f"asked for engine {e}, the node ran {r['engine']}"
                        info["macs"], info["arch"] = r.get("macs", info["macs"]), r.get("arch", info["arch"])
                        if cell["wall"][e] is None or r["wall"] < cell["wall"][e]:
                            cell["wall"][e] = r["wall"]
                            cell["rt"][e] = r["audio"] / r["wall"]
                        cell["rms"][e], cell["ac_rms"][e] = r["rms"], r["ac_rms"]
            for row, info in rows.items():
                cell = info["blocks"][bs]
                rt = cell["rt"]
                if row in NEURAL_FILES:
                    cell["fast/torch"] = _ratio(rt["fast"], rt["torch"])
                cell["gflops"] = {e: _gflops(info["macs"], rt[e]) for e in info["engines"]}
                cell["peak_pct"] = {e: None if g is None or not peak["best"] else 100.0 * g / peak["best"]
                                    for e, g in cell["gflops"].items()}
                parts = ", ".join(f"{e} {_fmt(rt[e])} RT" for e in info["engines"])
                extra = ""
                if info["macs"]:
                    extra = (f"; {info['macs']} MAC/sample, fast {_fmt(cell['gflops']['fast'], ' GFLOP/s')} "
                             f"({_fmt(cell['peak_pct']['fast'], ' %', 0)} of peak); fast/torch "
                             f"{_fmt(cell['fast/torch'], '', 1)}")
                say(f"  {row:12s} block {bs:5d}: {parts}{extra}")
    return {"title": TITLES["neural"], "engines": list(NEURAL_ENGINES), "rows": rows, "peak": peak,
            "errors": errors, "blocks": {}}


def _neural_targets(sec: dict) -> list[dict]:
    out = []
    bs = NEURAL_TARGET_BLOCK
    for row, goal in NEURAL_TARGETS.items():
        info = sec["rows"][row]
        if bs not in info["blocks"]:
            continue
        r = info["blocks"][bs]["rt"]["fast"]
        out.append({"workload": "neural", "row": row, "goal": goal, "unit": "×RT", "measured": r,
                    "what": f"neural: {NEURAL_LABELS[row]}, fast engine, ≥ {goal:g}× real time at block {bs}",
                    "met": None if r is None else r >= goal})
    return out


# --------------------------------------------------------------------- generators
#: the generators' sample rate (the dataset's)
GEN_SR = 16000
#: row -> (label, the node's settings in a patch in patches/, target x real time at GEN_TARGET_BLOCK)
GENERATORS = {
    "sing": ("SING decoder, models/sing.pt (a note every second, released after 0.8 s)",
             {"type": "sing", "model": "models/sing.pt", "pitch": 220, "instrument": 2}, 50.0),
    "sample_rnn": ("conditional sample-level RNN, models/sample-rnn.pt",
                   {"type": "sample_rnn", "model": "models/sample-rnn.pt", "pitch": 220, "volume": -20,
                    "instrument": 1}, 2.0),
    "wavenet_gen": ("WaveNet generator, models/wavenet-gen.pt",
                    {"type": "wavenet_gen", "model": "models/wavenet-gen.pt", "pitch": 220, "loudness": -20,
                     "instrument": 1}, 1.0),
    "vae": ("VAE encoder + decoder, models/vae.pt (timbre transfer of a string plucked every 0.5 s)",
            {"type": "vae_decoder", "model": "models/vae.pt", "z": "enc", "f0": "enc.f0", "loudness": "enc.loudness"},
            20.0),
}
GEN_TARGET_BLOCK = 256


def generator_patch(row: str, seconds: float) -> dict:
    """The patch a generator row renders: the node alone (``g``), notes every second for a voice node."""
    _, settings, _ = GENERATORS[row]
    patch = {"sample_rate": GEN_SR, "nodes": {"g": dict(settings)}, "out": "g"}
    if row == "sing":
        patch["score"] = [ev for k in range(int(math.ceil(seconds)))
                          for ev in ({"at": float(k), "trigger": "g", "velocity": 0.8},
                                     {"at": k + 0.8, "release": "g"})]
    if row == "vae":  # the encoder and the decoder of a timbre transfer: a plucked string in, g decodes it
        patch["nodes"]["src"] = {"type": "string", "freq": 110, "decay": 1.5}
        patch["nodes"]["enc"] = {"type": "vae_encoder", "in": "src", "model": "models/vae.pt"}
        patch["score"] = [{"at": 0.5 * k, "trigger": "src", "velocity": 0.8} for k in range(int(2 * seconds) + 1)]
    return patch


def _gen_macs(node) -> float | None:
    """Multiply-adds per output sample, as the node's model declares them."""
    gen = getattr(node, "gen", None)  # the WaveNet generator's compiled twin holds its weights' count
    for obj, attr in ((node, "macs_per_sample"), (node, "macs"), (getattr(gen, "w", None), "macs_per_sample")):
        v = getattr(obj, attr, None)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    if node.type_name == "sing":
        from nodes.neural.sing import macs_per_frame

        return macs_per_frame(node._m["data"]["config"])["total"] / node.hop
    if node.type_name == "vae_decoder":  # the row's encoder and decoder together
        from nodes.neural.vae import macs_per_frame as vae_macs

        return vae_macs(node._m["config"])["total"] / node.engine.hop
    return None


def _run_generators(seconds: float, block_sizes, repeats: int, say) -> dict:
    """Each shipped generator rendered alone at 16 kHz, one thread: x real time against its multiply-adds."""
    from . import Engine, registry
    from .patch import PatchParser

    patches = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "patches")
    peak = measure_peak()
    rows: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for row, (label, settings, goal) in GENERATORS.items():
        info = rows[row] = {"label": label, "goal": goal, "macs": None, "blocks": {}}
        if settings["type"] not in registry.all_types():
            errors[row] = f"no node type '{settings['type']}' in this build"
            continue
        for bs in block_sizes:
            best = None
            for _ in range(repeats):
                try:
                    spec = PatchParser(generator_patch(row, seconds), None, patches).parse()
                    eng = Engine(spec, block_size=bs)
                    info["macs"] = _gen_macs(eng.nodes["g"])
                    frames = int(seconds * GEN_SR)
                    eng.render(GEN_SR // 4)  # warm-up: numba's cache loads and first calls are not timed
                    t0 = time.perf_counter()
                    y = eng.render(frames)
                    wall = time.perf_counter() - t0
                except Exception as exc:  # a model that does not load: its row is n/a
                    errors[row] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    break
                if not np.all(np.isfinite(y)):
                    errors[row] = "NaN or inf in the output"
                best = wall if best is None else min(best, wall)
            if row in errors:
                say(f"  {row}: n/a ({errors[row]})")
                break
            rt = seconds / best
            g = _gflops(info["macs"], rt, GEN_SR) if info["macs"] else None
            info["blocks"][bs] = {"rt": rt, "gflops": g,
                                  "peak_pct": None if g is None or not peak["best"] else 100.0 * g / peak["best"]}
            say(f"  {row:12s} block {bs:5d}: {rt:.1f}x real time at {GEN_SR} Hz"
                + (f"; {info['macs']:.0f} MAC/sample, {_fmt(g, ' GFLOP/s')} "
                   f"({_fmt(info['blocks'][bs]['peak_pct'], ' %', 1)} of the one-thread peak)" if g else ""))
    return {"title": TITLES["generators"], "engines": ["patchlib"], "rows": rows, "peak": peak, "errors": errors,
            "blocks": {}}


def _generator_targets(sec: dict) -> list[dict]:
    out = []
    for row, info in sec["rows"].items():
        c = info["blocks"].get(GEN_TARGET_BLOCK)
        r = None if c is None else c["rt"]
        out.append({"workload": "generators", "row": row, "goal": info["goal"], "unit": "×RT", "measured": r,
                    "what": f"generators: {row} ≥ {info['goal']:g}× real time at {GEN_SR} Hz, block "
                            f"{GEN_TARGET_BLOCK}, one core", "met": None if r is None else r >= info["goal"]})
    return out


def _generators_text(res: dict, sec: dict) -> list[str]:
    L = [f"Each shipped generator alone in a patch at {GEN_SR} Hz (the dataset's rate), pinned to one core, "
         f"{res['seconds']:g} s rendered, best of {res['repeats']} (`patchlib.bench.generator_patch`). MAC/sample: "
         "the multiply-adds the model does per output sample (SING, VAE: per frame over the hop); GFLOP/s = 2 × MAC × "
         f"samples per second, against the one-thread float32 peak measured in the run "
         f"({_fmt(sec['peak']['best'], ' GFLOP/s')}).", "",
         "| generator | block | ×RT | MAC/sample | GFLOP/s | % of peak |", "|---|---:|---:|---:|---:|---:|"]
    for row, info in sec["rows"].items():
        if not info["blocks"]:
            L.append(f"| {info['label']} | | n/a ({sec['errors'].get(row, 'not run')}) | | | |")
            continue
        for bs, c in info["blocks"].items():
            L.append(f"| {info['label']} | {bs} | {c['rt']:.1f} | {_fmt(info['macs'], '', 0)} | "
                     f"{_fmt(c['gflops'], '', 2)} | {_fmt(c['peak_pct'], '', 1)} |")
    L += ["", "Targets:", ""] + _targets_table(sec["targets"])
    return L


# --------------------------------------------------------------------- live: OSC on real sockets
#: the issue's throughput run: param messages per second, for seconds, to a patch of LIVE_NODES nodes
LIVE_RATE = 5000
LIVE_SECONDS = 10.0
LIVE_NODES = 20
LIVE_BLOCK = 256
#: rates tried (2 s each) for the highest sustained rate
LIVE_RATES = (5000, 10000, 20000, 40000, 80000)
LIVE_RATE_SECONDS = 2.0
#: malformed packets sent while a patch plays, and how fast
LIVE_BAD_PACKETS = 10_000
LIVE_BAD_RATE = 10_000
#: a rate run keeps up when, as the last message leaves, the server is at most this far behind
LIVE_KEEP_UP_S = 0.05
_LIVE_VOICES = 9
#: the params the throughput run sets, with the value range it draws from: (node, param, lo, hi)
_LIVE_RANGES = ([(f"osc{k}", "freq", 55.0, 880.0) for k in range(_LIVE_VOICES)]
                + [(f"flt{k}", "cutoff", 200.0, 5000.0) for k in range(_LIVE_VOICES)]
                + [(f"flt{k}", "q", 0.5, 2.0) for k in range(_LIVE_VOICES)]
                + [("mix", f"gain{k}", 0.0, 0.2) for k in range(_LIVE_VOICES)]
                + [("amp", "gain", 0.1, 0.5)])


def live_patch(block_size: int = LIVE_BLOCK, sample_rate: int = SAMPLE_RATE) -> dict:
    """The throughput run's patch: 9 saws -> 9 lowpasses -> a mix -> a gain, 20 nodes, 37 params set."""
    nodes: dict = {}
    for k in range(_LIVE_VOICES):
        nodes[f"osc{k}"] = {"type": "saw", "freq": 110.0 * (k + 1)}
        nodes[f"flt{k}"] = {"type": "lowpass", "in": f"osc{k}", "cutoff": 1200.0, "q": 1.0}
    nodes["mix"] = {"type": "mix", "in": [f"flt{k}" for k in range(_LIVE_VOICES)], "gains": [0.1] * _LIVE_VOICES}
    nodes["amp"] = {"type": "gain", "in": "mix", "gain": 0.5}
    assert len(nodes) == LIVE_NODES
    return {"sample_rate": int(sample_rate), "block_size": int(block_size), "nodes": nodes, "out": "amp"}


def live_messages(n: int) -> tuple[list[bytes], dict]:
    """``n`` OSC set messages (``/node/param f``) spread round-robin over every param of :func:`live_patch`,
    each value different; returns the datagrams and the last value sent to each ``(node, param)``."""
    import struct

    out, last = [], {}
    heads = [(f"/{node}/{param}".encode().ljust((len(node) + len(param) + 2) // 4 * 4 + 4, b"\0") + b",f\0\0",
              node, param, lo, hi) for node, param, lo, hi in _LIVE_RANGES]
    for i in range(n):
        head, node, param, lo, hi = heads[i % len(heads)]
        v = float(np.float32(lo + (hi - lo) * (((i * 7919) % 10007) / 10007.0)))
        out.append(head + struct.pack(">f", v))
        last[(node, param)] = v
    return out, last


def _live_player(spec: dict, block_size: int, **options):
    from . import load_patch
    from .realtime import Player, make_engine

    return Player(make_engine(load_patch(spec), block_size=block_size), "null", **options)


def pace(sock, target, packets, rate: float, clock=time.perf_counter) -> dict:
    """Send ``packets`` to ``target`` at ``rate`` per second on absolute deadlines (packet ``k`` at
    ``t0 + k / rate``): a sender held up (a loaded machine) sends what is due at once and keeps the
    average rate, where ``sleep(1 / rate)`` per packet would drift. Returns seconds taken and the
    largest lag behind the schedule."""
    n = len(packets)
    t0 = clock()
    k, lag = 0, 0.0
    while k < n:
        now = clock()
        due = min(n, int((now - t0) * rate) + 1)
        if k < due:
            lag = max(lag, now - (t0 + k / rate))
        while k < due:
            sock.sendto(packets[k], target)
            k += 1
        if k < n:
            wait = t0 + k / rate - clock()
            if wait > 0:
                time.sleep(wait)
    return {"seconds": clock() - t0, "max_lag_s": lag}


def _wait_for(server, key: str, n: int, timeout: float) -> float:
    """Seconds until ``server.stats[key]`` reaches ``n`` (or the timeout passes)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if server.stats[key] >= n:
            break
        time.sleep(0.001)
    return time.perf_counter() - t0


def live_throughput(rate: float = LIVE_RATE, seconds: float = LIVE_SECONDS, block_size: int = LIVE_BLOCK) -> dict:
    """Param messages to :func:`live_patch` played in real time: ``rate`` per second for ``seconds``.

    A sender thread paces the messages (:func:`pace`) to an :class:`~patchlib.osc.OscServer` on
    127.0.0.1 driving a :class:`~patchlib.realtime.Player` on the null backend. Returns ``sent``,
    ``received``, ``applied``, ``lost`` (sent - applied), ``underruns``, ``errors``, ``kernel_drops``,
    ``backlog`` (messages not yet received as the last left), ``drain_s`` (until all were received),
    ``send_s``, ``achieved_rate``, ``max_lag_s`` (the sender's), ``final_ok`` (every param's target
    is the last value sent to it), ``blocks``, ``rcvbuf``.
    """
    import socket
    import threading

    from .osc import OscServer

    n = int(round(rate * seconds))
    packets, last = live_messages(n)
    player = _live_player(live_patch(block_size), block_size)
    res: dict = {}
    gc.collect()  # a full collection now rather than in the middle of the run (tens of ms with torch loaded)
    with player, OscServer(player, port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            time.sleep(0.1)
            sender = threading.Thread(target=lambda: res.update(pace(cli, server.address, packets, rate)),
                                      name="live-sender")
            sender.start()
            sender.join()
            res["backlog"] = n - server.stats["received"]
            res["drain_s"] = _wait_for(server, "applied", n, timeout=10.0)
            time.sleep(3 * player.period + 0.02)  # the last events reach the engine
        finally:
            cli.close()
        st = server.stats
    ps = player.engine.params
    final_ok = all(abs(float(ps[node][param].state[3]) - v) <= 1e-6 * max(1.0, abs(v)) for (node, param), v in
                   last.items())
    pst = player.stats()
    return {"rate": float(rate), "seconds": float(seconds), "block_size": int(block_size), "nodes": LIVE_NODES,
            "params": len(last), "sent": n, "received": st["received"], "applied": st["applied"],
            "lost": n - st["applied"], "errors": st["errors_total"], "kernel_drops": st["kernel_drops"],
            "rcvbuf": st["rcvbuf"], "underruns": pst["underruns"], "late_events": pst["late_events"],
            "blocks": pst["blocks"], "load": pst["load"], "backlog": res["backlog"], "drain_s": res["drain_s"],
            "send_s": res["seconds"], "achieved_rate": n / res["seconds"], "max_lag_s": res["max_lag_s"],
            "final_ok": final_ok}


def live_max_rate(rates=LIVE_RATES, seconds: float = LIVE_RATE_SECONDS, block_size: int = LIVE_BLOCK) -> dict:
    """The highest of ``rates`` sustained for ``seconds``: none lost, no underrun, the server at most
    :data:`LIVE_KEEP_UP_S` behind as the last message leaves. Stops at the first rate that fails (or
    that the sender itself cannot reach). Returns ``best`` and ``runs`` (:func:`live_throughput` each)."""
    runs, best = [], None
    for rate in rates:
        r = live_throughput(rate, seconds, block_size)
        r["kept_up"] = r["backlog"] <= rate * LIVE_KEEP_UP_S
        r["sender_limited"] = r["achieved_rate"] < 0.95 * rate
        r["sustained"] = r["lost"] == 0 and r["underruns"] == 0 and r["kept_up"] and not r["sender_limited"]
        runs.append(r)
        if not r["sustained"]:
            break
        best = rate
    return {"best": best, "runs": runs}


def live_latency(block_size: int = LIVE_BLOCK, trials: int = 16, seed: int = 0) -> dict:
    """OSC-to-sound latency: ``/osc/freq 880`` to a 440 Hz sine played in real time (null backend).

    Per trial, a fresh player runs ~0.1 s, then the message leaves at a random point of a block; the
    latency is the first output frame that departs from the 440 Hz sine (by more than 1e-3: a few
    samples into the param's smoothing) minus the frame sounding when it left (``player.frame_at``).
    Returns frames per trial and their min / median / max, in frames, blocks and ms.
    """
    import random
    import socket

    from pythonosc.osc_message_builder import OscMessageBuilder

    from .osc import OscServer

    rng = random.Random(seed)
    b = OscMessageBuilder("/osc/freq")
    b.add_arg(880.0, "f")
    dgram = b.build().dgram
    spec = {"sample_rate": SAMPLE_RATE, "nodes": {"osc": {"type": "sine", "freq": 440.0}}, "out": "osc"}
    frames, discarded = [], 0
    for _ in range(3 * trials):  # a trial with an underrun (its clock slipped) is run again
        if len(frames) >= trials:
            break
        player = _live_player(spec, block_size, record_seconds=1.0)
        with player, OscServer(player, port=0) as server:
            cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            time.sleep(0.08 + rng.random() * player.period)
            t = player.clock()
            sent_at = player.frame_at(t)
            cli.sendto(dgram, server.address)
            time.sleep(0.05 + 3 * player.period)
            cli.close()
        y = player.backend.recording()[0]
        ref = np.sin(2 * np.pi * 440.0 * np.arange(y.size) / SAMPLE_RATE).astype(np.float32)
        diff = np.flatnonzero(np.abs(y - ref) > 1e-3)
        if diff.size and player.underruns == 0:
            frames.append(int(diff[0]) - sent_at)
        else:
            discarded += 1
    out = {"block_size": int(block_size), "trials": trials, "frames": frames, "discarded": discarded}
    if frames:
        for k, v in (("min", min(frames)), ("median", float(np.median(frames))), ("max", max(frames))):
            out[k] = {"frames": v, "blocks": v / block_size, "ms": 1e3 * v / SAMPLE_RATE}
    return out


def malformed_packets(n: int, seed: int = 0) -> list[bytes]:
    """``n`` malformed OSC packets of eight kinds, in turn: cut messages, random bytes, a cut float,
    unknown type tags, garbage bundles, bundles holding junk, lengths not a multiple of 4, oversized."""
    import random

    rng = random.Random(seed)
    good = b"/osc/freq\0\0\0,f\0\0" + b"\x43\xdc\x00\x00"
    out = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            p = good[:4 * rng.randrange(1, 4)]  # cut at a word: the type tags or the float missing
        elif kind == 1:
            p = bytes([rng.choice(b"abcXYZ\x00\x01\xff")]) + rng.randbytes(4 * rng.randrange(0, 16) + 3)
        elif kind == 2:
            p = good[:-4] + b"\x00\x00\x00\x00" + rng.randbytes(4)  # 2 floats' bytes for one 'f'
        elif kind == 3:
            p = b"/osc/freq\0\0\0,xq\0" + rng.randbytes(8)  # type tags nobody knows
        elif kind == 4:
            p = b"#bundle\0" + rng.randbytes(4 * rng.randrange(0, 10))
        elif kind == 5:
            p = b"#bundle\0" + b"\0" * 7 + b"\x01" + b"\0\0\0\x08" + b"junkjunk"
        elif kind == 6:
            p = good + rng.randbytes(rng.choice((1, 2, 3)))
        else:
            p = good + b"\0" * 20000
        out.append(p)
    return out


def live_robustness(n: int = LIVE_BAD_PACKETS, rate: float = LIVE_BAD_RATE, block_size: int = LIVE_BLOCK) -> dict:
    """``n`` malformed packets (:func:`malformed_packets`) at ``rate`` per second to a sine played in
    real time, then ``/osc/freq 660``. Returns the server's counts (``bad_packets``, ``dropped``,
    ``errors`` by kind, ``replies``, ``replies_suppressed``, ``kernel_drops``), the player's
    ``underruns`` and ``blocks`` against the blocks the elapsed time holds, the output's RMS during
    the flood (a sine: 0.707), and ``control_after`` (the set after the flood was applied)."""
    import socket

    from .osc import OscServer

    packets = malformed_packets(n)
    spec = {"sample_rate": SAMPLE_RATE, "nodes": {"osc": {"type": "sine", "freq": 440.0}}, "out": "osc"}
    seconds = n / rate
    player = _live_player(spec, block_size, record_seconds=seconds + 5.0)
    with player, OscServer(player, port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            time.sleep(0.1)
            b0, t0 = player.blocks_played, time.perf_counter()
            sent = pace(cli, server.address, packets, rate)
            wait = _wait_for(server, "received", n, timeout=10.0)
            elapsed, blocks = time.perf_counter() - t0, player.blocks_played - b0
            cli.sendto(b"/osc/freq\0\0\0,f\0\0" + np.array([660.0], ">f4").tobytes(), server.address)
            _wait_for(server, "applied", 1, timeout=2.0)
            time.sleep(3 * player.period + 0.02)
        finally:
            cli.close()
        st = server.stats
    y = player.backend.recording()[0]
    flood = y[-int((elapsed + 0.1) * SAMPLE_RATE):-int(0.05 * SAMPLE_RATE)]
    return {"packets": n, "rate": float(rate), "send_s": sent["seconds"], "drain_s": wait,
            "received": st["received"], "bad_packets": st["bad_packets"], "dropped": st["dropped"],
            "errors": st["errors"], "replies": st["replies"], "replies_suppressed": st["replies_suppressed"],
            "kernel_drops": st["kernel_drops"], "underruns": player.underruns, "blocks": blocks,
            "blocks_due": elapsed / player.period, "rms": _rms(flood), "finite": bool(np.isfinite(y).all()),
            "control_after": st["applied"] == 1 and float(player.engine.params["osc"]["freq"].state[3]) == 660.0}


def live_bundle_timing(block_size: int = LIVE_BLOCK, bundles: int = 20, ahead: float = 0.05,
                       spacing: float = 0.1) -> dict:
    """Timetagged bundles on a patch played in real time: ``bundles`` bundles, each stamped ``ahead``
    seconds after it leaves (wall clock, NTP, as a controller would), each making a ``constant`` node
    jump. The error of a bundle is the frame where its jump sounds minus the frame the player's clock
    puts at its timetag (``player.frame_at``). Returns the errors in samples (and ``late``)."""
    import socket

    from pythonosc.osc_bundle_builder import OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    from .osc import OscServer, wall_offset

    spec = {"sample_rate": SAMPLE_RATE, "nodes": {"c": {"type": "constant", "value": 0.0}}, "out": "c"}
    player = _live_player(spec, block_size, record_seconds=bundles * spacing + 2.0)
    intended = []
    with player, OscServer(player, port=0) as server:
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            time.sleep(0.1)
            for k in range(bundles):
                offset = wall_offset(player.clock)  # the sender's own reading of wall - player clock
                t = player.clock() + ahead
                intended.append(player.frame_at(t))
                m = OscMessageBuilder("/c/value/ramp")
                m.add_arg(0.5 if k % 2 == 0 else -0.5, "f")
                m.add_arg(0.0, "f")
                bb = OscBundleBuilder(t + offset)
                bb.add_content(m.build())
                cli.sendto(bb.build().dgram, server.address)
                time.sleep(spacing)
            time.sleep(ahead + 3 * player.period)
        finally:
            cli.close()
        st = server.stats
    y = player.backend.recording()[0]
    jumps = np.flatnonzero(np.abs(np.diff(y)) > 0.25) + 1  # jumps of 0.5 and 1
    errors = [int(j) - f for j, f in zip(jumps, intended)] if len(jumps) == bundles else []
    return {"block_size": int(block_size), "bundles": bundles, "ahead_s": ahead, "found": int(len(jumps)),
            "errors": errors, "max_abs": max((abs(e) for e in errors), default=None),
            "mean_abs": float(np.mean(np.abs(errors))) if errors else None, "late": st["late"],
            "underruns": player.underruns}


def live_baseline(seconds: float = LIVE_SECONDS, block_size: int = LIVE_BLOCK) -> dict:
    """The control for the throughput run: :func:`live_patch` played as long with no OSC at all; its
    underruns are the machine's (other processes), not OSC's."""
    player = _live_player(live_patch(block_size), block_size)
    gc.collect()
    with player:
        time.sleep(seconds)
    st = player.stats()
    return {"seconds": float(seconds), "underruns": st["underruns"], "blocks": st["blocks"],
            "compute_max_s": st["compute_max_s"]}


def run_live(block_sizes=(64, 256), say=print, repeats: int = 2) -> dict:
    """The live workload: latency and bundle timing per block size; throughput and robustness at 256.

    The issue's throughput run is made up to ``repeats`` times, until one has no underrun (the best
    counts, as for every figure of the bench; every attempt must lose nothing), then the same player
    plays as long without OSC (:func:`live_baseline`) for comparison."""
    sec: dict = {"title": TITLES["live"], "engines": ["patchlib"], "blocks": {}, "errors": {}}
    for bs in block_sizes:
        lat = live_latency(bs)
        sec["blocks"][bs] = {"latency": lat}
        if "median" in lat:
            say(f"  block {bs:5d}: OSC-to-sound latency min/median/max {lat['min']['frames']}/"
                f"{lat['median']['frames']:.0f}/{lat['max']['frames']} frames = "
                f"{lat['min']['ms']:.2f}/{lat['median']['ms']:.2f}/{lat['max']['ms']:.2f} ms "
                f"({lat['median']['blocks']:.2f} blocks median, {len(lat['frames'])} of {lat['trials']} trials)")
        bt = live_bundle_timing(bs)
        sec["blocks"][bs]["bundles"] = bt
        say(f"  block {bs:5d}: bundle timing error: max {bt['max_abs']} samples, mean {_fmt(bt['mean_abs'], '', 2)}"
            f" ({bt['found']} of {bt['bundles']} bundles found, {bt['late']} late)")
    attempts = []
    for _ in range(max(1, int(repeats))):
        attempts.append(live_throughput())
        if attempts[-1]["underruns"] == 0:
            break
    t = min(attempts, key=lambda r: (r["lost"] > 0, r["underruns"]))
    t["attempts"] = [{k: r[k] for k in ("lost", "underruns", "kernel_drops")} for r in attempts]
    t["lost_any"] = sum(r["lost"] for r in attempts)
    sec["throughput"] = t
    say(f"  {t['rate']:.0f} msg/s x {t['seconds']:g} s to {t['nodes']} nodes: sent {t['sent']}, received "
        f"{t['received']}, applied {t['applied']}, lost {t['lost']}, underruns {t['underruns']}, kernel drops "
        f"{t['kernel_drops']}, final values {'right' if t['final_ok'] else 'WRONG'} (attempts: "
        + ", ".join(f"lost {a['lost']} underruns {a['underruns']}" for a in t["attempts"]) + ")")
    base = live_baseline()
    sec["baseline"] = base
    say(f"  the same player without OSC for {base['seconds']:g} s: underruns {base['underruns']}")
    m = live_max_rate()
    sec["max_rate"] = m
    for r in m["runs"]:
        say(f"  {r['rate']:.0f} msg/s x {r['seconds']:g} s: achieved {r['achieved_rate']:.0f}/s, lost {r['lost']}, "
            f"underruns {r['underruns']}, behind {r['backlog']} as the last left -> "
            f"{'sustained' if r['sustained'] else 'not sustained'}")
    from .live import measure_edits

    sec["edits"] = {}
    for bs in block_sizes:
        e = measure_edits(100, block_size=bs)
        sec["edits"][bs] = e
        say(f"  block {bs:5d}: 100 random live edits in {100 / e['edits_per_s']:.1f} s ({e['edit_ms_mean']:.0f} ms "
            f"each, max {e['edit_ms_max']:.0f}), underruns {e['underruns']} in {e['blocks']} blocks, largest step "
            f"at a swap {e['step_ratio']:.2f}x the signal's own; {e['refused']} invalid edits refused")
    from .wekinator import bench_mapper

    sec["mapper"] = {kind: bench_mapper(kind) for kind in ("mlp", "knn", "linear", "poly")}
    say("  mapper 8 inputs x 8 outputs, block 256, ms per block: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sec["mapper"].items()))
    rb = live_robustness()
    sec["robustness"] = rb
    say(f"  {rb['packets']} malformed packets: {rb['bad_packets']} counted bad ({rb['dropped']} dropped), "
        f"underruns {rb['underruns']}, blocks {rb['blocks']} of {rb['blocks_due']:.0f} due, output RMS "
        f"{rb['rms']:.3f}, control after: {rb['control_after']}")
    return sec


def _live_targets(sec: dict) -> list[dict]:
    out = []
    t = sec.get("throughput")
    if t:
        ok = t["lost_any"] == 0 and t["underruns"] == 0 and t["final_ok"]
        out.append({"workload": "live", "goal": 0, "unit": "lost", "measured": t["lost"], "met": ok,
                    "what": f"live: {LIVE_RATE} param messages/s for {LIVE_SECONDS:g} s to a {LIVE_NODES}-node "
                            f"patch: none lost, no underrun (underruns: {t['underruns']})"})
    m = sec.get("mapper")
    if m:
        worst = max(m.values())
        out.append({"workload": "live", "goal": 0.1, "unit": "ms/block", "measured": worst, "met": worst < 0.1,
                    "what": "mapper: 8 inputs x 8 outputs cost < 0.1 ms per block (worst model: "
                            f"{max(m, key=m.get)})"})
    r = sec.get("robustness")
    if r:
        ok = r["bad_packets"] == r["packets"] and r["underruns"] == 0 and r["control_after"]
        out.append({"workload": "live", "goal": 0, "unit": "uncounted", "measured": r["packets"] - r["bad_packets"],
                    "met": ok, "what": f"live: {r['packets']:,} malformed packets all counted, no underrun, "
                                       f"control works after (underruns: {r['underruns']})"})
    return out


def _live_text(res: dict, sec: dict) -> list[str]:
    """The "Live" section of the report."""
    t, m, rb = sec["throughput"], sec["max_rate"], sec["robustness"]
    L = ["A `Player` on the null backend (paced by the real clock, 48 kHz: blocks computed on time or counted "
         "as underruns, no sound device), an `OscServer` on 127.0.0.1 and a client socket in the same process, "
         "all on real UDP sockets; not pinned to one core (audio, receive, reply and sender threads run as they "
         "would live). Senders pace on absolute deadlines (`patchlib.bench.pace`). "
         f"Socket receive buffer granted: {t['rcvbuf']:,} bytes.", "",
         "### OSC-to-sound latency", "",
         "`/osc/freq 880` to a 440 Hz sine: the first output frame that departs from the 440 Hz sine (by more than "
         "1e-3, a few samples into the param's 10 ms smoothing) minus the frame sounding when the message left "
         "(`player.frame_at(clock())`). It holds the wait for the next block boundary (0 to 1 block), the null "
         "sink's own output latency (1 block, as a sound card's buffer) and the receive path. "
         f"{sec['blocks'][next(iter(sec['blocks']))]['latency']['trials']} trials per block size, each on a "
         "fresh player and sent at a random point of a block; a trial whose player underran (its clock "
         "slipped) is run again (discarded: "
         + ", ".join(f"{c['latency']['discarded']} at block {bs}" for bs, c in sec["blocks"].items()) + ").", "",
         "| block | min frames | median frames | max frames | median blocks | min ms | median ms | max ms |",
         "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for bs, c in sec["blocks"].items():
        lat = c["latency"]
        if "median" not in lat:
            L.append(f"| {bs} | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        L.append(f"| {bs} | {lat['min']['frames']} | {lat['median']['frames']:.0f} | {lat['max']['frames']} | "
                 f"{lat['median']['blocks']:.2f} | {lat['min']['ms']:.2f} | {lat['median']['ms']:.2f} | "
                 f"{lat['max']['ms']:.2f} |")
    L += ["", "### Throughput", "",
          f"The issue's run: {t['rate']:.0f} set messages per second for {t['seconds']:g} s ({t['sent']:,} "
          f"messages), round-robin over the {t['params']} params of a {t['nodes']}-node patch (9 saws → 9 "
          f"lowpasses → mix → gain, `patchlib.bench.live_patch`), block {t['block_size']}: "
          f"**received {t['received']:,}, applied {t['applied']:,}, lost {t['lost']}, underruns {t['underruns']}**, "
          f"kernel drops {t['kernel_drops']}, errors {t['errors']}; every param's target is the last value sent "
          f"to it: {'yes' if t['final_ok'] else '**no**'}. The sender kept {t['achieved_rate']:.0f} msg/s (at "
          f"most {t['max_lag_s'] * 1e3:.1f} ms behind its schedule); the server was {t['backlog']} message(s) "
          f"behind as the last left; audio load {100 * t['load']:.1f} % of the block period. Attempts (up to "
          "the bench's repeats, until one has no underrun; the best counts, nothing may be lost in any): "
          + "; ".join(f"lost {a['lost']}, underruns {a['underruns']}" for a in t["attempts"])
          + f". The same player with no OSC at all for {sec['baseline']['seconds']:g} s, right after: "
          f"underruns {sec['baseline']['underruns']}.", "",
          f"Highest rate sustained for {LIVE_RATE_SECONDS:g} s (none lost, no underrun, the server at most "
          f"{LIVE_KEEP_UP_S * 1e3:.0f} ms behind as the last message leaves), trying "
          + ", ".join(f"{r:,}" for r in LIVE_RATES) + f" msg/s in turn: **{_fmt(m['best'], ' msg/s', 0)}**.", "",
          "| rate msg/s | achieved | lost | underruns | behind at the end | kernel drops | sustained |",
          "|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in m["runs"]:
        L.append(f"| {r['rate']:,.0f} | {r['achieved_rate']:,.0f} | {r['lost']} | {r['underruns']} | {r['backlog']} "
                 f"| {r['kernel_drops']} | {'yes' if r['sustained'] else 'no'} |")
    errs = ", ".join(f"{k} {v:,}" for k, v in rb["errors"].items())
    L += ["", "### Robustness", "",
          f"{rb['packets']:,} malformed packets (cut messages, random bytes, a cut float, unknown type tags, "
          "garbage bundles, bundles holding junk, lengths not a multiple of 4, 20 kB packets; "
          f"`patchlib.bench.malformed_packets`) at {rb['rate']:,.0f}/s to a sine playing at block {LIVE_BLOCK}: "
          f"**{rb['bad_packets']:,} counted bad** ({rb['dropped']:,} dropped unparsed; by kind: {errs}), "
          f"{rb['replies']} `/error` replies sent and {rb['replies_suppressed']:,} suppressed by the rate limit, "
          f"kernel drops {rb['kernel_drops']}; **underruns {rb['underruns']}**, {rb['blocks']} blocks played "
          f"of {rb['blocks_due']:.0f} due in the time, output RMS during the flood {rb['rms']:.3f} (the sine: "
          f"0.707); `/osc/freq 660` after it: {'applied' if rb['control_after'] else '**not applied**'}.", "",
          "### Bundle timing", "",
          "Bundles stamped 50 ms after they leave (wall clock, as a controller stamps its gestures), 0.1 s apart, "
          "each making a `constant` jump: the error is the frame where the jump sounds minus the frame the "
          "player's clock puts at the timetag.", "",
          "| block | bundles found | late | max abs error (samples) | mean abs error (samples) |",
          "|---:|---:|---:|---:|---:|"]
    for bs, c in sec["blocks"].items():
        bt = c["bundles"]
        L.append(f"| {bs} | {bt['found']} of {bt['bundles']} | {bt['late']} | "
                 f"{'n/a' if bt['max_abs'] is None else bt['max_abs']} | {_fmt(bt['mean_abs'], '', 2)} |")
    if sec.get("mapper"):
        L += ["", "### Gesture mapper", "",
              "One `mapper` node, 8 inputs (white noise, so the model runs at every control tick: 8 times a "
              "256-sample block) to 8 outputs, median over 2000 blocks (`patchlib.wekinator.bench_mapper`; kNN "
              "with 200 examples, k = 3; MLP 16-16):", "",
              "| model | ms per block |", "|---|---:|"]
        L += [f"| {k} | {v:.3f} |" for k, v in sec["mapper"].items()]
    if sec.get("edits"):
        L += ["", "### Live graph edits", "",
              "100 random valid edits sent back to back while the patch plays (`patchlib.live.measure_edits`: add "
              "a sine, triangle or LFO, connect one to the mixer, remove one, change the filter's q; each compiled "
              "off the audio thread, swapped in with a 20 ms crossfade, the unchanged nodes taking over their "
              "state), then 100 invalid ones. The step ratio is the largest sample-to-sample step in any swap's "
              "block and crossfade over the largest elsewhere: 1 or a little more means no click (an abrupt start "
              "of a source would be about 10). Underruns come from the compile's Python work taking the "
              "interpreter lock from the audio thread: the player lowers the switch interval to 0.1 ms while "
              "playing, but small blocks leave little margin on two shared cores.", "",
              "| block | edit time mean ms | max ms | edits/s | underruns | blocks | step ratio | invalid refused |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for bs, e in sec["edits"].items():
            L.append(f"| {bs} | {e['edit_ms_mean']:.1f} | {e['edit_ms_max']:.1f} | {e['edits_per_s']:.1f} | "
                     f"{e['underruns']} | {e['blocks']} | {e['step_ratio']:.2f} | {e['refused']} of 100 |")
    L += ["", "Targets:", ""] + _targets_table(sec["targets"])
    return L


# --------------------------------------------------------------------- start-up
_STARTUP_CODE = r"""
import time
t0 = time.perf_counter()
import json, patchlib
from patchlib.registry import load_plugins
load_plugins()
t1 = time.perf_counter()
res = {"import": t1 - t0, "workloads": {}}
for name, patch in json.loads(PATCHES).items():
    a = time.perf_counter()
    engine = patchlib.Engine(patchlib.load_patch(patch))
    b = time.perf_counter()
    engine.process()
    c = time.perf_counter()
    res["workloads"][name] = {"build": b - a, "first_block": c - b}
res["build"] = sum(w["build"] for w in res["workloads"].values())
res["first_block"] = sum(w["first_block"] for w in res["workloads"].values())
res["total"] = time.perf_counter() - t0
print(json.dumps(res))
"""


def measure_startup(runs: int = 2, workloads=("voices",)) -> dict:
    """Start-up of a fresh interpreter with a warm numba cache (best of ``runs``, after one warm-up).

    ``total`` runs from before ``import patchlib`` to the end of the first
    256-frame block of the last workload: import + node plugins, then for
    each workload in turn load_patch + Engine (``workloads[w]["build"]``) and
    one block (``workloads[w]["first_block"]``, numba's cache loading
    included); ``build`` and ``first_block`` are their sums; ``process`` is
    the whole ``python -c`` wall time, interpreter start-up included.
    """
    patches = {w: patch(w, 256, 1.0) for w in workloads}
    code = _STARTUP_CODE.replace("PATCHES", repr(json.dumps(patches)))
    env = dict(os.environ, **_THREAD_ENV)
    best = None
    for i in range(runs + 1):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError((p.stderr.strip().splitlines() or ["start-up run failed"])[-1])
        res = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
        res["process"] = wall
        if i == 0:
            continue  # warm-up: fills the numba cache if it was cold
        if best is None or res["total"] < best["total"]:
            best = res
    best["runs"] = runs
    return best


# --------------------------------------------------------------------- machine
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "numba": _version("numba"),
        "pyo": _version("pyo"),
        "torch": _version("torch"),
        "patchlib": _version("patchlib"),
    }


@contextlib.contextmanager
def _one_core():
    """Pin this process (and the subprocesses it starts) to one core; yields the core or None."""
    get = getattr(os, "sched_getaffinity", None)
    if get is None:
        yield None
        return
    before = get(0)
    core = min(before)
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        yield None
        return
    try:
        yield core
    finally:
        os.sched_setaffinity(0, before)


# --------------------------------------------------------------------- run
def _fmt(x, suffix="×", digits=1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{suffix}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def _workloads(workloads) -> tuple[str, ...]:
    if isinstance(workloads, str):
        workloads = [w.strip() for w in workloads.split(",") if w.strip()]
    wanted = {_check_workload(w) for w in workloads}
    if not wanted:
        raise ValueError(f"no workload: use one or more of {', '.join(WORKLOADS)}")
    return tuple(w for w in WORKLOADS if w in wanted)


def _run_workload(workload: str, seconds: float, block_sizes, repeats: int, skip: set, say) -> dict:
    """Time one workload with each of its engines at each block size (engines interleaved per repeat)."""
    errors: dict[str, str] = {e: "not requested" for e in ENGINES[workload] if e in skip}
    engines = [e for e in ENGINES[workload] if e not in skip]
    blocks: dict[int, dict] = {}
    for bs in block_sizes:
        walls: dict[str, float | None] = {e: None for e in engines}
        rms: dict[str, float | None] = {e: None for e in engines}
        rt: dict[str, float | None] = {"patchlib": None, "pyo": None, "scipy": None}
        for _ in range(repeats):
            for e in engines:
                if e in errors:
                    continue
                try:
                    wall, r, audio = _TIMERS[e](workload, seconds, bs)
                except Exception as exc:  # pyo / scipy missing or failing: n/a, go on
                    if e == "patchlib":
                        raise
                    errors[e] = f"{type(exc).__name__}: {exc}"
                    say(f"  {e}: n/a ({errors[e]})")
                    continue
                if walls[e] is None or wall < walls[e]:
                    walls[e] = wall
                    rt[e] = audio / wall
                rms[e] = r
        row = dict(rt)
        row["patchlib/pyo"] = _ratio(rt["patchlib"], rt["pyo"])
        row["patchlib/scipy"] = _ratio(rt["patchlib"], rt["scipy"])
        row["wall"] = {e: walls.get(e) for e in ("patchlib", "pyo", "scipy")}
        row["rms"] = {e: rms.get(e) for e in ("patchlib", "pyo", "scipy")}
        blocks[bs] = row
        line = ", ".join(f"{e} {_fmt(rt[e])} RT" for e in ENGINES[workload])
        ratios = "; ".join(f"patchlib/{e} {_fmt(row['patchlib/' + e], '', 2)}" for e in ENGINES[workload][1:])
        say(f"  block {bs:5d}: {line}; {ratios}")
    return {"title": TITLES[workload], "engines": list(ENGINES[workload]), "blocks": blocks, "errors": errors,
            "pyo_objects": PYO_DESCRIPTIONS[workload]}


def _targets(workload: str, blocks: dict) -> list[dict]:
    """The targets of one workload, each with its measured value and ``met`` (None: not measured)."""
    out = []
    name = TITLES[workload].lower()
    for bs, row in blocks.items():
        goal = PYO_TARGETS[workload].get(bs)
        if goal is not None:
            r = row["patchlib/pyo"]
            out.append({"workload": workload, "what": f"{name}: patchlib ≥ {goal:.1f}× pyo at block {bs}",
                        "goal": goal, "measured": r, "unit": "× pyo", "met": None if r is None else r >= goal})
        if "scipy" in ENGINES[workload]:
            r = row["patchlib/scipy"]
            out.append({"workload": workload, "what": f"{name}: patchlib faster than scipy at block {bs}",
                        "goal": 1.0, "measured": r, "unit": "× scipy", "met": None if r is None else r > 1.0})
    return out


def run(seconds: float = 30.0, block_sizes=(64, 256), output: str | None = "docs/benchmarks.md",
        pyo: bool = True, scipy: bool = True, repeats: int = 2, startup: bool = True,
        quiet: bool = False, workloads=WORKLOADS) -> dict:
    """Benchmark the workloads (voice bank, plucked strings against pyo and scipy; neural pedals); print and report.

    Args:
        seconds: audio seconds rendered per measurement (the same for all).
        block_sizes: block sizes to measure.
        output: Markdown report to write (its folder is created), or None.
        pyo, scipy: include those comparisons ("n/a" when skipped or failing).
        repeats: runs per figure; the best (fastest) counts.
        startup: also measure patchlib's start-up in a fresh interpreter.
        quiet: print nothing.
        workloads: which of :data:`WORKLOADS` to run (names, or one comma-separated string).

    Returns:
        A dict: ``workloads[w]`` per workload run holds ``blocks[bs]``
        (``patchlib``, ``pyo``, ``scipy``: x real time, None when not
        measured; ``patchlib/pyo``, ``patchlib/scipy``; ``wall`` and ``rms``
        per engine), ``targets``, ``errors`` (why an engine is n/a),
        ``engines``, ``title``, ``pyo_objects``. ``blocks`` is the voice
        bank's (empty when it did not run); ``targets`` lists every target
        (the workloads', then start-up's) with its measured value and ``met``
        (None: not measured); ``all_met`` is true when every target was
        measured and met; ``startup``; ``machine``; ``errors`` (the voice
        bank's engines by name, the others' as ``strings/pyo``, and
        ``startup``). The neural section instead holds ``rows[row]``
        (``label``, ``engines``, ``macs``, ``arch``, ``blocks[bs]`` with
        ``rt``, ``wall``, ``rms``, ``ac_rms``, ``gflops``, ``peak_pct`` per
        engine and ``fast/torch``), ``peak`` (:func:`measure_peak`),
        ``targets``, ``errors`` (by row, as ``neural/<row>`` in the result's).
        Start-up measures the DSP workloads' patches only (voices when none ran).
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    seconds = float(seconds)
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    repeats = max(1, int(repeats))
    block_sizes = tuple(int(b) for b in block_sizes)
    workloads = _workloads(workloads)
    skip = ({"pyo"} if not pyo else set()) | ({"scipy"} if not scipy else set())
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    sections: dict[str, dict] = {}
    errors: dict[str, str] = {}
    start = None
    with _one_core() as core:
        for w in workloads:
            if w == "live":
                continue  # after, unpinned: its threads run as they would live
            say(f"{TITLES[w].lower()}: " + {
                "voices": f"{VOICES} saws -> swept resonant lowpasses -> mix",
                "strings": f"{STRINGS} plucked strings, each plucked every {RETRIGGER:g} s -> mix",
                "neural": "a plucked-string riff -> a neural pedal (fast and torch engines, one thread) or the "
                          f"diode clipper (torch: at most {TORCH_SECONDS:g} s)",
                "generators": f"each shipped neural generator alone at {GEN_SR} Hz (at most 10 s)"}[w]
                + f"; {seconds:g} s at {SAMPLE_RATE} Hz, best of {repeats}")
            if w == "neural":
                sections[w] = _run_neural(seconds, block_sizes, repeats, say)
            elif w == "generators":
                sections[w] = _run_generators(min(seconds, 10.0), block_sizes, repeats, say)
            else:
                sections[w] = _run_workload(w, seconds, block_sizes, repeats, skip, say)
        if startup:
            try:
                # the DSP patches' start-up (a neural patch adds torch's import, a second or two, by design)
                start = measure_startup(repeats, tuple(w for w in workloads if w in ("voices", "strings"))
                                        or ("voices",))
                say(f"start-up (warm numba cache): import {start['import']:.2f} s, build {start['build']:.3f} s, "
                    f"first block {start['first_block'] * 1e3:.1f} ms, total {start['total']:.2f} s "
                    f"({start['process']:.2f} s with the interpreter)")
            except Exception as exc:
                errors["startup"] = f"{type(exc).__name__}: {exc}"
                say(f"  start-up: n/a ({errors['startup']})")
    if "live" in workloads:
        say(f"{TITLES['live'].lower()}: a player on the null backend driven over OSC on 127.0.0.1 (not pinned): "
            f"latency, {LIVE_RATE} msg/s x {LIVE_SECONDS:g} s, the highest sustained rate, "
            f"{LIVE_BAD_PACKETS:,} malformed packets, bundle timing")
        sections["live"] = run_live(block_sizes, say, repeats)
    sections = {w: sections[w] for w in workloads}  # report order
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    targets = []
    for w, sec in sections.items():
        sec["targets"] = (_neural_targets(sec) if w == "neural" else _live_targets(sec) if w == "live"
                          else _generator_targets(sec) if w == "generators" else _targets(w, sec["blocks"]))
        targets += sec["targets"]
        for e, why in sec["errors"].items():
            errors[e if w == "voices" else f"{w}/{e}"] = why
    if startup:
        total = None if start is None else start["total"]
        targets.append({"workload": "startup", "goal": STARTUP_TARGET,
                        "what": f"start-up (import + first block of each patch, warm cache) < {STARTUP_TARGET:g} s",
                        "measured": total, "unit": "s", "met": None if total is None else total < STARTUP_TARGET})
    all_met = bool(targets) and all(t["met"] is True for t in targets)
    for t in targets:
        say(f"target: {t['what']}: {_fmt(t['measured'], '', 2)} {t['unit']} -> "
            f"{'met' if t['met'] else 'n/a' if t['met'] is None else 'NOT met'}")

    result = {
        "date": date, "seconds": seconds, "sample_rate": SAMPLE_RATE, "voices": VOICES, "strings": STRINGS,
        "repeats": repeats, "core": core, "load": {"before": load_before, "after": load_after},
        "workloads": sections, "blocks": sections["voices"]["blocks"] if "voices" in sections else {},
        "targets": targets, "all_met": all_met, "startup": start, "machine": machine_info(),
        "errors": errors, "pyo_objects": PYO_OBJECTS,
    }
    if output:
        d = os.path.dirname(os.path.abspath(output))
        os.makedirs(d, exist_ok=True)
        with open(output, "w", encoding="utf-8") as f:
            f.write(report(result))
        say(f"wrote {output}")
    return result


# --------------------------------------------------------------------- report
def _met(t) -> str:
    return "n/a" if t["met"] is None else ("yes" if t["met"] else "**NO**")


def _targets_table(targets) -> list[str]:
    L = ["| target | measured | met |", "|---|---:|:---:|"]
    for t in targets:
        digits = 2 if t["unit"] != "×RT" else 1
        L.append(f"| {t['what']} | {_fmt(t['measured'], '', digits)} {t['unit']} | {_met(t)} |")
    return L


def _patch_text(w: str, res: dict) -> str:
    if w == "voices":
        return (f"{res['voices']} band-limited saws at 55·2^(k/7) Hz (k = 0..15), each through a resonant "
                "lowpass (Q 4) whose cutoff its own sine LFO (0.1 + 1.9·k/15 Hz) sweeps over 300–3000 Hz on an "
                "exponential curve, summed with gain 1/16 each (`patchlib.bench.voice_bank_patch`).")
    freqs = ", ".join(f"{n} {f:.1f}" for n, f in zip(STRING_NOTES, string_freqs()))
    plucks = sum(len(pluck_times(k, res["seconds"])) for k in range(STRINGS))
    return (f"{STRINGS} Karplus-Strong strings (`string` nodes) at {freqs} Hz, T60 decay {DECAY:g} s, each "
            f"plucked at velocity {VELOCITY:g} every {RETRIGGER:g} s by score `trigger` events, string k from "
            f"k/16 s on so that no two plucks land on one sample ({plucks} plucks in {res['seconds']:g} s), "
            f"summed with gain 1/8 each by a `mix` node (`patchlib.bench.strings_patch`).")


def _results_table(w: str, sec: dict) -> list[str]:
    engines = sec["engines"]
    head = " | ".join(f"{e} ×RT" for e in engines) + " | " + " | ".join(f"patchlib/{e}" for e in engines[1:])
    L = [f"| block size | {head} |", "|---:|" + "---:|" * (2 * len(engines) - 1)]
    for bs, r in sec["blocks"].items():
        cells = [_fmt(r[e]) for e in engines] + [_fmt(r[f"patchlib/{e}"], "", 2) for e in engines[1:]]
        L.append(f"| {bs} | " + " | ".join(cells) + " |")
    return L


def _neural_text(res: dict, sec: dict) -> list[str]:
    """The "Neural pedals" section: the patches, the table of rows, the peak, the NAM reference."""
    peak = sec["peak"]
    riff = " ".join(RIFF)
    L = [f"Each row is a whole patch rendered by patchlib's Engine, like the other workloads: one `string` node "
         f"(Karplus-Strong, T60 {RIFF_DECAY:g} s) plucked at velocity {VELOCITY:g} every {RIFF_STEP:g} s through "
         f"the riff {riff} (score `set` and `trigger` events), into the row's node, one thread "
         "(`threads: 1`, the process pinned to one core). The pedal rows run the `pedal` node twice: "
         "`engine: fast` (patchlib's fused numba kernels, one call per block) and `engine: torch` (the torch "
         "modules, one torch call per operation: our stand-in for NAM's Python package); fast/torch is the "
         "ratio of the two. The NAM-style models are written as `.nam` files with random but deterministic "
         f"weights (`torch.manual_seed`): the standard WaveNet (`wavenet_config(\"standard\")`) and NAM's default "
         f"LSTM ({NAM_LSTM['num_layers']} layers × {NAM_LSTM['hidden_size']} hidden, "
         "`nam_full_configs/models/lstm.json`); speed does not depend on the weights' values, but the output "
         "of random weights is no sound to listen to. The shipped models are `patches/models/overdrive.pt` (an "
         "LSTM) and `overdrive-wavenet.pt`, at their default knobs. "
         f"The torch engine renders min({res['seconds']:g}, {TORCH_SECONDS:g}) s (its rate is what "
         "counts). Nothing is subtracted: the figures include the source and the engine's per-block work; the "
         "source alone is the first row.", "",
         "MAC/sample: the model's multiply-adds per output sample (`macs_per_sample`: convolutions, mixers, "
         "gates and heads; activations not counted). GFLOP/s = 2 × MAC/sample × 48000 × ×RT. "
         f"**Measured one-thread float32 peak: {_fmt(peak['best'], ' GFLOP/s')}**, the best of, in this run: "
         f"a {peak['size']}×{peak['size']} matmul with numpy (one BLAS thread) {_fmt(peak['numpy_matmul'], '')}, "
         f"with torch (one thread) {_fmt(peak['torch_matmul'], '')}, and a numba loop of multiply-adds over an "
         f"array in L1 {_fmt(peak['numba_fma'], '')} GFLOP/s; \"% peak\" is the share of it.", ""]
    L += ["| patch | block | MAC/sample | fast ×RT | torch ×RT | fast/torch | fast GFLOP/s | fast % peak | "
          "torch GFLOP/s | torch % peak |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row, info in sec["rows"].items():
        for bs, c in info["blocks"].items():
            rt = c["rt"]
            fast = rt.get("fast", rt.get("patchlib"))
            macs = f"{info['macs']:,}" if info["macs"] else "–"
            if row in NEURAL_FILES:
                cells = [_fmt(fast), _fmt(rt["torch"]), _fmt(c["fast/torch"], "", 1),
                         _fmt(c["gflops"]["fast"], "", 2), _fmt(c["peak_pct"]["fast"], " %", 1),
                         _fmt(c["gflops"]["torch"], "", 2), _fmt(c["peak_pct"]["torch"], " %", 1)]
            else:
                cells = [_fmt(fast)] + ["–"] * 6
            L.append(f"| {info['label']} | {bs} | {macs} | " + " | ".join(cells) + " |")
    src = sec["rows"]["source"]["blocks"]
    shares = []
    for bs, c in src.items():
        s = c["rt"]["patchlib"]
        if s:
            shares.append(f"{_fmt(s)} real time at block {bs} (1/{s:.0f} of a second per second of audio: "
                          f"{100 * 10.0 / s:.1f} % of the time of a 10× patch)")
    if shares:
        L += ["", "The dry source alone (string, score and engine overhead) runs at " + "; ".join(shares) + "."]
    if sec["errors"]:
        L.append("")
        for row, why in sec["errors"].items():
            L.append(f"- {NEURAL_LABELS.get(row, row)}: n/a ({why})")
    L += ["", "Output RMS per row (block: fast / torch), a sanity check that every row renders finite, "
          "non-silent audio and that both engines compute the same model (the random LSTM's output is mostly "
          "a constant: it barely responds to the input):", ""]
    for row, info in sec["rows"].items():
        parts = []
        for bs, c in info["blocks"].items():
            vals = " / ".join(f"{c['rms'][e]:.3f}" for e in info["engines"] if c["rms"].get(e) is not None)
            parts.append(f"{bs}: {vals or 'n/a'}")
        L.append(f"- {info['label']}: " + "; ".join(parts))
    L += ["", "For reference, **quoted from the issue, measured elsewhere and not by this run:** " + NAM_REFERENCE,
          "", "Targets (the fast engine):", ""] + _targets_table(sec["targets"])
    return L


def report(res: dict) -> str:
    """The Markdown report of a :func:`run` result."""
    m = res["machine"]
    L = ["# Benchmarks", "",
         "Generated by `patchlib bench`; do not edit by hand.", "",
         f"- **Date:** {res['date']}",
         f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['os']}); "
         + (f"measured pinned to core {res['core']}" if res["core"] is not None else "not pinned to a core"),
         f"- **Software:** Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, numba {m['numba']}, "
         f"pyo {m['pyo']}, torch {m.get('torch', 'n/a')}, patchlib {m['patchlib']}"]
    lb, la = res["load"]["before"], res["load"]["after"]
    if lb and la:
        L.append(f"- **Load average** (1 min) before / after: {lb[0]:.2f} / {la[0]:.2f}")
    L.append(f"- **Method:** each engine renders {res['seconds']:g} s at {res['sample_rate']} Hz, mono, at every "
             f"block size, in the same run; ×RT = audio seconds / wall seconds, best of {res['repeats']} "
             f"run{'s' if res['repeats'] > 1 else ''} (engines interleaved run by run); patchlib/pyo is the "
             "ratio of the two ×RT figures (above 1: patchlib is faster).")
    missed = [t["what"] for t in res["targets"] if t["met"] is False]
    unmeasured = [t["what"] for t in res["targets"] if t["met"] is None]
    if res["all_met"]:
        L.append("- **Targets:** All targets are met.")
    else:
        if missed:
            L.append("- **Targets:** **Not met:** " + "; ".join(missed) + ".")
        if unmeasured:
            L.append("- **Targets not measured** (n/a): " + "; ".join(unmeasured) + ".")
    for w, sec in res["workloads"].items():
        if w == "neural":
            L += ["", f"## {sec['title']}", ""] + _neural_text(res, sec)
            continue
        if w == "live":
            L += ["", f"## {sec['title']}", ""] + _live_text(res, sec)
            continue
        if w == "generators":
            L += ["", f"## {sec['title']}", ""] + _generators_text(res, sec)
            continue
        L += ["", f"## {sec['title']}", "", _patch_text(w, res), ""]
        L += _results_table(w, sec)
        if sec["errors"]:
            L.append("")
            for e, why in sec["errors"].items():
                L.append(f"- {e}: n/a ({why})")
        L += ["", "Targets:", ""] + _targets_table(sec["targets"])
    s = res.get("startup")
    st = [t for t in res["targets"] if t["workload"] == "startup"]
    if s or st:
        L += ["", "## Start-up", ""]
        if s:
            parts = "; ".join(f"{TITLES[w].lower()}: load the patch and build the engine "
                              f"{v['build'] * 1e3:.0f} ms, first 256-frame block {v['first_block'] * 1e3:.1f} ms"
                              for w, v in s["workloads"].items())
            L += ["A fresh `python -c` with a warm numba cache (best of "
                  f"{s['runs']} after one warm-up run): import patchlib and its node plugins "
                  f"{s['import']:.2f} s; then, in turn, {parts}: **{s['total']:.2f} s** from import to the "
                  f"end of the last first block ({s['process']:.2f} s including the interpreter's own start-up).",
                  ""]
        elif "startup" in res["errors"]:
            L += [f"n/a ({res['errors']['startup']})", ""]
        L += _targets_table(st)
    if any(w != "live" for w in res["workloads"]):
        L += ["", "## What each engine runs"]
    if any(w in ("voices", "strings") for w in res["workloads"]):
        L += ["", "pyo renders whole buffers; its ×RT counts the frames it rendered (the same as the others when the "
              "duration is a multiple of the block, as 30 s at 64 and 256 is). pyo runs in a subprocess (one "
              "server per process) on its offline server, `Server.start()` timed, which renders the whole "
              "duration synchronously into a WAV file."]
    for w, sec in res["workloads"].items():
        if w in ("live", "generators"):
            continue  # described in its own section
        L += ["", f"### {sec['title']}", ""]
        if w == "neural":
            L += ["- **fast:** the `pedal` node with `engine: fast`: per block one numba kernel call per WaveNet "
                  "layer array (or one for the LSTM) computing the torch model's function from its weights, "
                  "buffers preallocated (`nodes/neural/fast.py`).",
                  "- **torch:** the same node with `engine: torch`: the streaming torch modules under "
                  "`torch.inference_mode()`, one thread, one torch call per operation per block (cached "
                  "convolution histories, `nodes/neural/streaming.py`).",
                  "- **diode_clipper / source:** patchlib's DSP nodes (numba kernels), one engine.",
                  "",
                  "No pyo here: pyo has no neural models; the NAM figures above are quoted, not measured."]
            continue
        if w == "voices":
            L += ["- **patchlib:** the patch as a dict through `patchlib.load_patch` and `patchlib.Engine(spec, "
                  "block_size=B).render(frames)`; only `render` is timed, on a fresh engine, after a warm-up "
                  "render of another (numba JIT and cache loading excluded). The engine is single-threaded; "
                  "cutoff follows the LFO every sample.",
                  f"- **pyo:** {sec['pyo_objects']}.",
                  "- **scipy:** sixteen hand-written chains (`patchlib.bench.ScipyVoiceBank`): per block and voice "
                  "a naive saw by phase accumulation in numpy, the LFO and the cutoff once per block (control "
                  "rate = block rate), RBJ lowpass coefficients, `scipy.signal.lfilter(b, a, x, zi=zi)` carrying "
                  "the state, summed. The naive (aliasing) saw is cheaper than the band-limited saws of the "
                  "others, so the comparison favours scipy.",
                  "",
                  "Output RMS, a sanity check that all three render the same patch. The scipy chains track "
                  "patchlib closely (same phases; only the naive saw and the block-rate cutoff differ). pyo's mix "
                  "is louder because pyo's `LFO` saw starts at its wrap where patchlib's and the scipy saw start "
                  "at their zero crossing: voices k and k+7 are an octave apart, so the start phase changes how "
                  "they add (patchlib with `phase: 0.5` on every saw measures like pyo, 0.22); single voices match "
                  "within ~5 %.", ""]
        else:
            L += ["- **patchlib:** the patch as a dict (8 `string` nodes, the score of plucks, a `mix`), "
                  "rendered and timed like the voice bank; each pluck is a score `trigger` event applied at its "
                  "exact sample (the engine splits the block there). A `string` is Karplus-Strong as extended "
                  "by Jaffe & Smith: a delay-line loop with an allpass for exact tuning and a one-pole loss "
                  "filter solved for the T60, the node's defaults for the rest (brightness 0.5, pluck position "
                  "0.15: a comb on the pluck, `retrigger: restart`: a pluck fades out what still rings over the "
                  "loop's first pass); a pluck is one period of seeded noise through that comb and a "
                  "velocity-dependent lowpass. The engine runs the eight strings as one batched kernel call.",
                  f"- **pyo:** {sec['pyo_objects']}.",
                  "",
                  "Output RMS, a sanity check that both render strings of the same pitch, decay and level (the "
                  "two excitations and loss filters differ, so the levels agree only roughly):", ""]
        for bs, r in sec["blocks"].items():
            parts = [f"{e} {r['rms'][e]:.3f}" for e in sec["engines"] if r["rms"].get(e) is not None]
            L.append(f"- block {bs}: " + ", ".join(parts))
    L += ["", "## How to reproduce", "",
          "```sh",
          "patchlib bench                      # 30 s per figure, all workloads, blocks 64 and 256, "
          "writes docs/benchmarks.md",
          "patchlib bench --workloads strings --seconds 5 --output -     # one workload, print only",
          "patchlib bench --workloads neural --seconds 5 --no-startup --output -   # the neural pedals",
          "patchlib bench --seconds 5 --block-sizes 64,256,1024 --output /tmp/bench.md",
          "patchlib bench --workloads live --no-startup --output -     # OSC live figures (about a minute)",
          "```", "",
          "The figures depend on the machine and on its load; compare ratios rather than absolute speeds "
          "across machines.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--pyo-worker":
        _pyo_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        print("usage: patchlib bench (see 'patchlib bench --help')", file=sys.stderr)
        sys.exit(2)
