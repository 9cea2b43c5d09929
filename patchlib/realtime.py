"""Real-time playback: a :class:`Player` runs an :class:`~patchlib.engine.Engine` against an audio backend.

A backend asks the player for one block at a time (:meth:`Player.pull`), on
its own audio thread: ``null`` paces blocks with a clock and plays them to
no device (headless machines, tests), ``pyo`` is pyo's Server on
PortAudio/JACK, whose per-buffer callback pulls the block.

The audio path (``pull``) allocates no arrays, does no file I/O and takes no
lock: the output, mix and input buffers are allocated before the stream
starts; other threads reach the engine only through its event queue
(:meth:`Player.schedule`, :meth:`Player.note`) or by handing over a whole new
engine (:meth:`Player.swap`), picked up at the next block boundary.

Interface for other threads (OSC, MIDI, hot reload)
----------------------------------------------------
Frames here are **player frames**: frames played since the stream started,
which go on counting across swaps (each swapped-in engine keeps its own
frame counter; the player translates).

``player.clock()``
    the player's clock, seconds on the ``time.perf_counter()`` scale
    (CLOCK_MONOTONIC on Linux; tests inject a :class:`ManualClock`). An OSC
    timetag (wall clock, NTP) converts to it as
    ``player.clock() + (timetag_unix_seconds - time.time())``.
``player.frame_at(t) -> int``
    the player frame heard at clock time ``t`` (rounded to the nearest
    sample); ``player.time_of(frame) -> float`` is its inverse.
    ``frame_at(clock())`` is *behind* :attr:`Player.next_frame` by the
    output latency (one to two blocks): the frame sounding now was
    rendered already, so an event for "now" is late. Place timetagged
    events at ``frame_at(t + latency)`` with a latency window of a few
    blocks (SuperCollider's ``s.latency``) and they land on their sample.
``player.next_frame``
    the first frame of the next block to be rendered: an event scheduled
    before it is late (applied at the start of the next block and counted
    in ``engine.late_events``).
``player.schedule(event, frame=None)``, ``player.note(poly, pitch, velocity, frame=None)``, ``player.note_off(...)``
    thread-safe; ``frame`` is a player frame, ``None`` means as soon as
    possible (the start of the next block). ``schedule`` checks that the
    event's node exists in the running engine (``ValueError`` otherwise).
``player.engine``
    the engine now playing: read its ``nodes``/``params``/``spec`` for
    queries; never call its ``process``/``reset`` from another thread.
``player.swap(new_engine, crossfade_s=0.02, curve="linear")``
    thread-safe: at the next block boundary (after any crossfade in
    progress), the blocks mix old -> new over ``crossfade_s``, then the old
    engine is dropped (handed back to a control thread through
    :meth:`Player.collect`, so it is never freed on the audio thread).
``player.stats()``
    the counters: blocks and frames played, underruns, compute time
    (mean/max), late events, errors, swaps.

Live audio input: an ``input`` node without a ``file:`` option reads the
backend's input (the sound card with ``pyo``, silence or a given array
with ``null``). Build the engine with :func:`make_engine` (which gives such
nodes a one-block buffer); the player writes each input block into that
buffer and rewinds the node (see :class:`_LiveInputs`).

Example:
    >>> from patchlib import load_patch
    >>> from patchlib.realtime import Player, make_engine, ManualClock
    >>> spec = load_patch({"nodes": {"osc": {"type": "sine", "freq": "A4"}}, "out": "osc"})
    >>> p = Player(make_engine(spec, block_size=64), "null", clock=ManualClock(), record_seconds=1)
    >>> p.backend.run_blocks(10)   # no thread: instantly, on a manual clock
    >>> p.stats()["blocks"], p.stats()["underruns"], p.backend.recording().shape
    (10, 0, (1, 640))

    In real time: ``with Player(make_engine(spec), "null") as p: time.sleep(2)``.
"""
from __future__ import annotations

import gc
import math
import queue
import sys
import threading
import time
from typing import Callable

import numpy as np

from .engine import ASAP as _ASAP, Engine
from .params import MOD
from .patch import Event, PatchSpec



class ManualClock:
    """A clock that moves only when told: ``sleep(dt)`` and ``advance(dt)`` add to it.

    Lets the null backend run faster than real time and deterministically
    (tests make a block "slow" by advancing the clock inside ``process``).
    """

    def __init__(self, start: float = 0.0):
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        if dt > 0:
            self.t += dt

    advance = sleep


def make_engine(spec: PatchSpec, *, block_size: int | None = None, sample_rate: int | None = None,
                input_channels: int = 1, warm: bool = True, on_warning=None) -> Engine:
    """An engine ready for live playback.

    ``input`` nodes without a file of their own get a silent one-block buffer
    of ``input_channels`` that the player fills from the backend's input.
    ``warm`` renders one block and resets, so numba's compilation (or cache
    load) happens here and not in the first real-time block.
    """
    sr = int(sample_rate or spec.sample_rate)
    B = int(block_size or spec.block_size)
    live = np.zeros((max(1, int(input_channels)), B), dtype=np.float32)
    engine = Engine(spec, block_size=B, sample_rate=sr, audio_inputs={"": (live, sr)}, on_warning=on_warning)
    if warm:
        engine.process(B)
        # a second block with every constant param moving: a node may run another kernel while a
        # param glides (a filter recomputing its coefficients), and numba loads each kernel on its
        # first call; better here than in the first audio block after an OSC set or a live edit
        for states in engine.params.values():
            for ps in states.values():
                if ps.mode != MOD:
                    v = ps.value
                    ps.ramp(v + (ps.hi - v) * 1e-3 if v < ps.hi else v - (v - ps.lo) * 1e-3, B / sr)
        engine._refresh_active()
        engine.process(B)
        engine.reset()
    return engine


class _LiveInputs:
    """The engine's ``input`` nodes that read the live input (no ``file:`` option).

    With a one-block buffer (see :func:`make_engine`), each node's
    :meth:`~nodes.dsp.io.AudioInput.feed` before each block makes it play the
    live input with no latency and no allocation.
    """

    def __init__(self, engine: Engine):
        B = engine.block_size
        self.nodes = [node for node in engine.nodes.values()
                      if node.type_name == "input" and not node.opts.get("file")
                      and getattr(node, "audio", None) is not None and node.audio.shape[1] == B]

    def feed(self, block: np.ndarray | None) -> None:
        for node in self.nodes:
            node.feed(block)


class Player:
    """A running engine and an audio backend, started and stopped together.

    Args:
        engine: the engine to play (see :func:`make_engine`); its block size
            and sample rate are the stream's.
        backend: ``"null"``, ``"pyo"`` or a backend object (``start``, ``stop``).
        clock: seconds, monotonic (default ``time.perf_counter``).
        channels: output channels (default: the engine's).
        input_channels: channels of live input the backend provides.
        **options: passed to the backend (see :class:`NullBackend`, :class:`PyoBackend`).

    Example:
        >>> with Player(make_engine(spec), "null") as p:   # doctest: +SKIP
        ...     time.sleep(2)
        ...     print(p.stats())
    """

    def __init__(self, engine: Engine, backend="null", *, clock: Callable[[], float] | None = None,
                 channels: int | None = None, input_channels: int = 1, **options):
        self.engine = engine
        self.sample_rate = engine.sample_rate
        self.block_size = B = engine.block_size
        self.channels = int(channels or engine.channels)
        self.input_channels = int(input_channels)
        self.clock = clock or time.perf_counter
        self.period = B / self.sample_rate
        self._check_channels(engine)
        # audio-path buffers, allocated once
        self.out = np.zeros((self.channels, B), dtype=np.float32)
        self.input = np.zeros((self.input_channels, B), dtype=np.float32)
        self._scratch = np.zeros((self.channels, B), dtype=np.float32)
        self._inputs = _LiveInputs(engine)
        self._route = (engine, -engine.frame)  # (engine, player frame - its frame): one tuple, read atomically
        self._pending = None  # (engine, live inputs, fade in, fade out), set by swap()
        self._old = None  # (engine, live inputs) fading out
        self._fade_in = self._fade_out = None
        self._fade_pos = 0
        self._retired: queue.SimpleQueue = queue.SimpleQueue()
        self._anchor = (self.clock(), 0)  # (clock time, player frame heard then)
        self.frames_played = 0
        self.blocks_played = 0
        self.underruns = 0
        self.errors = 0
        self.first_error: BaseException | None = None
        self.swaps = 0
        self.last_swap_frame: int | None = None
        self.compute_max = 0.0
        self.compute_total = 0.0
        self._late_before = 0  # late events of engines already dropped
        self.running = False
        self.backend = _make_backend(backend, self, options)

    # ------------------------------------------------------------ life cycle
    #: the interpreter's thread switch interval while playing: Python hands the GIL to a
    #: waiting thread after this long, so the audio thread never waits a whole block (the default
    #: 5 ms is a block of 256 at 48 kHz) for a control thread compiling a live edit
    switch_interval = 0.0001

    def start(self) -> "Player":
        if not self.running:
            self._switch_before = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch_before, self.switch_interval))
            # what exists now (modules, the engine) leaves the collector's view: a full collection
            # triggered by a control thread (compiling a live edit) holds the GIL, and would
            # otherwise walk every object of torch, numpy and numba while the audio thread waits
            gc.freeze()
            self.backend.start()
            self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.backend.stop()
            sys.setswitchinterval(self._switch_before)
            gc.unfreeze()
        self.collect()

    def __enter__(self) -> "Player":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ the audio path
    def pull(self, input_block: np.ndarray | None = None) -> np.ndarray:
        """Render the next block into :attr:`out` and return it (the backend's call, on its audio thread).

        ``input_block`` ``(input_channels, block)`` is the live input for
        this block (``None``: silence). Never raises: an exception in the
        engine gives a silent block, counted in ``errors``.
        """
        clock = self.clock
        t0 = clock()
        out = self.out
        B = self.block_size
        try:
            if self._old is None and self._pending is not None:
                self._begin_swap()
            eng = self.engine
            self._inputs.feed(input_block)
            y = eng.process(B)
            if self._old is None:
                out[...] = y
            else:
                self._crossfade(y, input_block)
        except Exception as e:  # the sound goes on; the control thread reports it
            out.fill(0.0)
            self.errors += 1
            if self.first_error is None:
                self.first_error = e
        self.frames_played += B
        self.blocks_played += 1
        dt = clock() - t0
        self.compute_total += dt
        if dt > self.compute_max:
            self.compute_max = dt
        return out

    def _begin_swap(self) -> None:
        new, inputs, fin, fout, takeover = self._pending
        self._pending = None
        if takeover is not None and takeover.old is self.engine:
            takeover.apply()  # copies only: the plan was made on the control thread
        self._old = (self.engine, self._inputs)
        self._fade_in, self._fade_out, self._fade_pos = fin, fout, 0
        self._inputs = inputs
        self.engine = new
        # one assignment: events scheduled from now on go to the new engine, at its frames
        self._route = (new, self.frames_played - new.frame)
        self.swaps += 1
        self.last_swap_frame = self.frames_played

    def _crossfade(self, y: np.ndarray, input_block) -> None:
        old, old_inputs = self._old
        old_inputs.feed(input_block)
        yo = old.process(self.block_size)
        out, tmp = self.out, self._scratch[0]
        pos, n = self._fade_pos, len(self._fade_in)
        k = min(self.block_size, n - pos)
        fin, fout = self._fade_in[pos:pos + k], self._fade_out[pos:pos + k]
        # channel by channel on 1-D rows: numpy buffers (allocates) a broadcast 2-D x 1-D ufunc
        for c in range(out.shape[0]):
            np.multiply(y[min(c, y.shape[0] - 1), :k], fin, out=out[c, :k])
            np.multiply(yo[min(c, yo.shape[0] - 1), :k], fout, out=tmp[:k])
            np.add(out[c, :k], tmp[:k], out=out[c, :k])
        if k < self.block_size:
            out[:, k:] = y[:, k:]
        self._fade_pos = pos + k
        if self._fade_pos >= n:
            self._late_before += old.late_events
            self._old = None
            self._retired.put(old)  # freed by collect() on a control thread

    # ------------------------------------------------------------ control threads
    def swap(self, engine: Engine, crossfade_s: float = 0.02, curve: str = "linear", *,
             takeover=None, hold: int = 0) -> None:
        """Replace the running engine at the next block boundary, crossfading over ``crossfade_s``.

        ``curve``: ``"linear"`` (equal gain: right for the usual live edit or
        reload, where old and new are mostly the same signal) or ``"power"``
        (equal power: for unrelated signals). A swap asked for while
        another crossfade runs waits for it to end; of several waiting, the
        last one wins. The new engine keeps its own frame counter (usually
        0 at the swap, so its score starts at the swap); player frames go
        on, and :meth:`schedule` translates. Thread-safe.

        ``takeover``: a :class:`~patchlib.takeover.Takeover` planned from the
        running engine (:func:`~patchlib.takeover.plan_takeover`): at the
        swap, the new engine gets the running state of the nodes that did
        not change and continues at the old engine's frame (a live edit, a
        reload). It is skipped if another engine was swapped in meanwhile.

        ``hold``: frames to play the old engine alone before the crossfade
        starts (the new one runs meanwhile). With a takeover, the new engine
        sounds exactly like the old one until a change has come through the
        patch's latency (a limiter's lookahead): the crossfade is placed where
        the change is heard, so a source connected mid-cycle fades in instead
        of starting abruptly. Default: the takeover's ``latency``.
        """
        if engine.sample_rate != self.sample_rate or engine.block_size != self.block_size:
            raise ValueError(f"the new engine runs at {engine.sample_rate} Hz, block {engine.block_size}; "
                             f"the stream at {self.sample_rate} Hz, block {self.block_size}")
        self._check_channels(engine)
        n = max(1, int(round(crossfade_s * self.sample_rate)))
        x = (np.arange(n, dtype=np.float64) + 0.5) / n
        if curve == "linear":
            fin = x
            fout = 1.0 - x
        elif curve == "power":
            fin, fout = np.sin(0.5 * np.pi * x), np.cos(0.5 * np.pi * x)
        else:
            raise ValueError(f"curve must be 'linear' or 'power', not {curve!r}")
        if takeover is not None and not hold:
            hold = takeover.latency
        hold = max(0, min(int(hold), 10 * self.sample_rate))
        if hold:
            fin = np.concatenate([np.zeros(hold), fin])
            fout = np.concatenate([np.ones(hold), fout])
        self.collect()
        if takeover is not None and takeover.new is not engine:
            raise ValueError("the takeover was planned for another engine")
        self._pending = (engine, _LiveInputs(engine), fin.astype(np.float32), fout.astype(np.float32), takeover)

    def collect(self) -> int:
        """Drop the engines retired by finished crossfades (call from a control thread); returns how many."""
        k = 0
        while True:
            try:
                self._retired.get_nowait()
            except queue.Empty:
                return k
            k += 1

    @property
    def swapping(self) -> bool:
        """A swap is waiting or its crossfade is running."""
        return self._pending is not None or self._old is not None

    def _check_channels(self, engine: Engine) -> None:
        if engine.channels not in (1, self.channels):
            raise ValueError(f"the engine plays {engine.channels} channels; the stream has {self.channels}")

    def schedule(self, ev: Event, frame: int | None = None) -> None:
        """Queue an event at player frame ``frame`` (``None``: the start of the next block). Thread-safe."""
        engine, offset = self._route
        if ev.node not in engine.nodes and ev.node not in engine.spec.polys:
            raise ValueError(f"no node '{ev.node}' in the running patch")
        if ev.action == "ramp" and ev.param not in engine.params.get(ev.node, {}):
            raise ValueError(f"node '{ev.node}' has no param '{ev.param}'")
        engine.schedule(ev, _ASAP if frame is None else max(0, int(frame) - offset))

    def note(self, poly: str, pitch, velocity: float = 1.0, *, frame: int | None = None) -> None:
        """A note on a ``poly`` node at player frame ``frame`` (``None``: as soon as possible). Thread-safe."""
        engine, offset = self._route
        engine.note(poly, pitch, velocity, frame=None if frame is None else max(0, int(frame) - offset))

    def note_off(self, poly: str, pitch=None, *, frame: int | None = None) -> None:
        engine, offset = self._route
        engine.note_off(poly, pitch, frame=None if frame is None else max(0, int(frame) - offset))

    # ------------------------------------------------------------ the clock
    def set_anchor(self, t: float, frame: int) -> None:
        """Say that player frame ``frame`` is heard at clock time ``t`` (the backend's call)."""
        self._anchor = (float(t), int(frame))  # one tuple: readers see both or neither

    def frame_at(self, t: float) -> int:
        """The player frame heard at clock time ``t``."""
        t_ref, f_ref = self._anchor
        return f_ref + int(math.floor((t - t_ref) * self.sample_rate + 0.5))

    def time_of(self, frame: int) -> float:
        """The clock time at which player frame ``frame`` is heard."""
        t_ref, f_ref = self._anchor
        return t_ref + (frame - f_ref) / self.sample_rate

    @property
    def next_frame(self) -> int:
        """The first player frame of the next block to render."""
        return self.frames_played

    # ------------------------------------------------------------ report
    def stats(self) -> dict:
        blocks = self.blocks_played
        mean = self.compute_total / blocks if blocks else 0.0
        old = self._old
        late = self._late_before + self.engine.late_events + (old[0].late_events if old else 0)
        return {"blocks": blocks, "frames": self.frames_played, "seconds": self.frames_played / self.sample_rate,
                "underruns": self.underruns, "compute_mean_s": mean, "compute_max_s": self.compute_max,
                "block_period_s": self.period, "load": mean / self.period, "late_events": late,
                "errors": self.errors, "swaps": self.swaps}

    def summary(self) -> str:
        s = self.stats()
        return (f"played {s['seconds']:.2f} s ({s['blocks']} blocks of {self.block_size} at {self.sample_rate} Hz); "
                f"underruns {s['underruns']}; compute mean {s['compute_mean_s'] * 1e3:.2f} ms, "
                f"max {s['compute_max_s'] * 1e3:.2f} ms per {s['block_period_s'] * 1e3:.2f} ms block "
                f"(load {100 * s['load']:.0f}%); late events {s['late_events']}; errors {s['errors']}; "
                f"swaps {s['swaps']}")


# ---------------------------------------------------------------- backends
def _make_backend(backend, player: Player, options: dict):
    if backend == "null":
        return NullBackend(player, **options)
    if backend == "pyo":
        return PyoBackend(player, **options)
    if isinstance(backend, str):
        raise ValueError(f"unknown backend '{backend}' (null or pyo)")
    if options:
        raise TypeError("backend options go to a backend named by string")
    return backend


class NullBackend:
    """Blocks paced by the player's clock, played to no device.

    Block ``k`` is computed from ``t0 + k * period`` and due at
    ``t0 + (k + 1) * period``, when the device would start playing it; a
    block finished after that is an underrun (the device played a gap)
    and the schedule slips by the lateness, as a sound card's does.

    Args:
        record_seconds: keep the last so many seconds of output in a ring
            buffer (:meth:`recording`, :meth:`write_wav`); 0 for none.
        input: live input to loop ``(channels, frames)`` (default silence).
        sleep: how to wait (default: real time, or the clock's own
            ``sleep`` for a :class:`ManualClock`).
    """

    def __init__(self, player: Player, *, record_seconds: float = 0.0, input: np.ndarray | None = None,
                 sleep: Callable[[float], None] | None = None):
        self.player = player
        self._stop = threading.Event()
        if sleep is None:
            sleep = getattr(player.clock, "sleep", None) or self._stop.wait
        self.sleep = sleep
        R = int(round(record_seconds * player.sample_rate))
        self.ring = np.zeros((player.channels, R), dtype=np.float32) if R > 0 else None
        self._wpos = 0
        self.input = None
        if input is not None:
            a = np.asarray(input, dtype=np.float32)
            a = a[None, :] if a.ndim == 1 else a
            B = player.block_size
            reps = -(-B // a.shape[1]) + 1  # room for a block read across the loop point
            self.input = np.ascontiguousarray(np.tile(a, (1, reps)))
            self._in_len = a.shape[1]
            self._in_pos = 0
        self._thread: threading.Thread | None = None
        self._next = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="patchlib-null-audio", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run_blocks(self, n: int) -> None:
        """Play ``n`` blocks in the caller's thread (tests, scripts; with a :class:`ManualClock`, instantly)."""
        if self._thread is not None:
            raise RuntimeError("the backend's thread is running: stop the player first")
        self._loop(n)

    def _loop(self, nblocks: int | None = None) -> None:
        p = self.player
        clock, P, B = p.clock, p.period, p.block_size
        if self._next is None:
            self._next = clock()
            p.set_anchor(self._next + P, p.frames_played)
        k = 0
        while not self._stop.is_set() and (nblocks is None or k < nblocks):
            wait = self._next - clock()
            if wait > 0:
                self.sleep(wait)
                if self._stop.is_set():
                    break
            deadline = self._next + P
            y = p.pull(self._input_block(B))
            self._record(y)
            done = clock()
            if done > deadline:
                p.underruns += 1
                self._next = done
                p.set_anchor(done + P, p.frames_played)
            else:
                self._next = deadline
            k += 1

    def _input_block(self, B: int):
        if self.input is None:
            return None
        block = self.input[:, self._in_pos:self._in_pos + B]
        self._in_pos = (self._in_pos + B) % self._in_len
        return block

    def _record(self, y: np.ndarray) -> None:
        ring = self.ring
        if ring is None:
            return
        R, B = ring.shape[1], y.shape[1]
        if B >= R:
            ring[:] = y[:, B - R:]
            self._wpos = 0
            return
        w = self._wpos
        k = min(B, R - w)
        ring[:, w:w + k] = y[:, :k]
        if k < B:
            ring[:, :B - k] = y[:, k:]
        self._wpos = (w + B) % R

    def recording(self) -> np.ndarray:
        """The last recorded frames, oldest first ``(channels, frames)`` (a copy)."""
        if self.ring is None:
            return np.zeros((self.player.channels, 0), dtype=np.float32)
        R = self.ring.shape[1]
        n = min(self.player.frames_played, R)
        if n < R:
            return self.ring[:, :n].copy()
        return np.concatenate([self.ring[:, self._wpos:], self.ring[:, :self._wpos]], axis=1)

    def write_wav(self, path: str) -> int:
        """Write :meth:`recording` to a float WAV; returns the frames written (call after stop)."""
        import soundfile as sf

        audio = self.recording()
        sf.write(path, audio.T, self.player.sample_rate, subtype="FLOAT")
        return audio.shape[1]


class PyoBackend:
    """pyo's Server (PortAudio, JACK, or its offline/manual modes) pulling blocks from the player.

    pyo's documented way to run Python per buffer: ``Server.setCallback(f)``
    calls ``f`` at the start of every buffer, before pyo's objects compute.
    ``f`` pulls one block from the player and writes it into a
    ``DataTable(size=buffersize)`` per channel through the table's shared
    memory (``getBuffer()``, no copy into Python lists); a
    ``TableRead(table, freq=table.getRate(), loop=True, interp=1)`` per
    channel plays the table out in the same buffer, so the engine's
    block ``k`` is pyo's buffer ``k`` (pyo's own server fades the first few
    milliseconds in). Live input: ``Input(c)`` -> ``TableFill`` into a
    one-buffer table per channel, read by the next callback: one block of
    input latency.

    A callback longer than the block period is counted as an underrun: pyo
    does not report the device's xruns to Python.

    Args:
        audio: pyo's ``audio`` (``"portaudio"``, ``"jack"``, ``"offline"``, ``"manual"``...).
        duplex: open the input too (``None``: when the patch has a live input node).
        record: with ``audio="offline"``: the WAV file pyo writes (float32) and
            ``duration`` its length in seconds; ``start()`` renders it all, blocking.
        input_source: ``f(pyo, channel) -> PyoObject`` in place of ``pyo.Input(channel)``
            (tests feed a known signal as the "sound card" input).
        server_options: more keyword arguments for ``pyo.Server``.
    """

    def __init__(self, player: Player, *, audio: str = "portaudio", duplex: bool | None = None,
                 record: str | None = None, duration: float | None = None, input_source=None,
                 server_options: dict | None = None):
        self.player = player
        self.audio = audio
        self.duplex = bool(player._inputs.nodes) if duplex is None else bool(duplex)
        if input_source is not None:
            self.duplex = True
        self.record = record
        self.duration = duration
        self.input_source = input_source
        self.server_options = dict(server_options or {})
        self.server = None
        self._keep: list = []
        self._anchored = False
        self.notes: list[str] = []  # things the user should know (read by the command line)

    def start(self) -> None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pyo prints GUI-toolkit notices on import
            import pyo
        p = self.player
        B, C = p.block_size, p.channels
        if self.audio in ("portaudio", "pa"):
            # pyo 1.1's boot() crashes the process (SIGSEGV) when PortAudio has no device: ask first
            if pyo.pa_get_default_output() < 0:
                raise RuntimeError("pyo/PortAudio finds no audio output device on this machine; "
                                   "use the null backend (--backend null)")
            if self.duplex and pyo.pa_get_default_input() < 0:
                self.duplex = False
                self.notes.append("no audio input device: the patch's input node plays silence")
        opts = dict(sr=p.sample_rate, nchnls=C, buffersize=B, duplex=int(self.duplex), audio=self.audio)
        if self.duplex:
            opts["ichnls"] = p.input_channels
        opts.update(self.server_options)
        s = pyo.Server(**opts)
        s.setVerbosity(1)
        s.boot()
        if not s.getIsBooted():
            raise RuntimeError(f"pyo could not open the audio device (audio={self.audio!r}); "
                               "try --backend null, or check PortAudio/JACK")
        self.server = s
        out_tables = [pyo.DataTable(size=B) for _ in range(C)]
        self._out = [np.asarray(t.getBuffer()) for t in out_tables]
        reads = [pyo.TableRead(t, freq=t.getRate(), loop=True, interp=1) for t in out_tables]
        for c, r in enumerate(reads):
            r.out(c)
        self._keep = out_tables + reads
        self._in = None
        if self.duplex:
            in_tables = [pyo.DataTable(size=B) for _ in range(p.input_channels)]
            srcs = [self.input_source(pyo, c) if self.input_source else pyo.Input(chnl=c)
                    for c in range(p.input_channels)]
            fills = [pyo.TableFill(src, t) for src, t in zip(srcs, in_tables)]
            self._keep += in_tables + srcs + fills
            self._in_arrays = [np.asarray(t.getBuffer()) for t in in_tables]
            self._in = p.input  # (input_channels, B), filled by the callback
        s.setCallback(self._callback)
        if self.audio == "offline":
            if not (self.record and self.duration):
                raise ValueError("pyo offline mode needs record=PATH and duration=SECONDS")
            s.recordOptions(dur=self.duration, filename=self.record, fileformat=0, sampletype=3)
        s.start()  # offline: renders the whole file here

    def _callback(self) -> None:
        p = self.player
        t = p.clock()
        if self._in is not None:
            for c, a in enumerate(self._in_arrays):
                self._in[c] = a  # last buffer's input (the tables fill during pyo's processing)
        # re-anchor when the callback drifts more than a block from the clock's prediction
        due = t + p.period  # this block starts sounding after one buffer
        if not self._anchored or abs(p.time_of(p.frames_played) - due) > p.period:
            p.set_anchor(due, p.frames_played)
            self._anchored = True
        y = p.pull(self._in)
        for c, a in enumerate(self._out):
            a[:] = y[c]
        if p.clock() - t > p.period:
            p.underruns += 1

    def process(self) -> None:
        """With ``audio="manual"``: compute one buffer now."""
        self.server.process()

    def stop(self) -> None:
        s = self.server
        if s is None:
            return
        if self.audio != "offline":
            s.stop()
            time.sleep(0.05)
        # free pyo's objects (and the arrays viewing their tables) while the server is
        # still booted: collected after shutdown(), pyo crashes the process
        self._out = self._in_arrays = self._in = None
        self._keep = []
        import gc

        gc.collect()
        s.shutdown()
        self.server = None
