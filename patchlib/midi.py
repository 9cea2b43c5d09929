"""MIDI control of a running patch: notes to ``poly`` voices, controllers to bound params.

:class:`MidiInput` turns MIDI messages into engine events through the
player's thread-safe entry points (``player.note``, ``player.note_off``,
``player.schedule``); nothing here touches the graph or the audio thread.

* **note on / note off** go to the patch's voice nodes: every ``poly`` node,
  or those named by ``notes_to`` or the patch's top-level
  ``midi: {notes: keys}``. The pitch is the equal-tempered frequency of the
  note number (69 = A4 = 440 Hz), the velocity ``velocity / 127``; a note
  on with velocity 0 is a note off (running status senders use it).
* **control change**: every param bound with ``{midi_cc: CC, range: [a, b]}``
  in the patch (see ``docs/patch-format.md``) gets a ``set`` event to
  ``value / 127`` mapped onto ``[a, b]`` (exponentially for an exp curve:
  equal ratios per step, right for frequencies), so the param glides over
  its normal smoothing time: a knob makes no zipper noise. A binding with a
  ``channel`` hears only that channel.
* With no binding of its own: CC 64 (sustain pedal) holds note offs until
  the pedal is up; CC 120 (all sound off) and 123 (all notes off) release
  every note.
* Anything else (clock, sysex, aftertouch, pitch bend, program change...)
  is counted as ignored. A message that does not parse is counted as an
  error (``stats()["errors"]``), never raised: a flaky cable cannot stop the
  music.

Ports are opened with mido on its default backend (python-rtmidi: ALSA or
JACK on Linux, CoreMIDI, WinMM). Tests and scripts call :meth:`MidiInput.handle`
directly with mido messages or raw bytes.

Example:
    >>> with MidiInput(player, port="Launchkey") as midi:   # doctest: +SKIP
    ...     time.sleep(60)
    ...     print(midi.stats())
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, Iterable

from .engine import EngineBusy
from .patch import Event

log = logging.getLogger(__name__)

#: error kinds counted in ``stats()["errors"]``
ERROR_KINDS = ("malformed", "bad_message", "out_of_range", "unknown_node", "busy", "internal")
#: reasons a valid message did nothing, counted in ``stats()["ignored_by"]``
IGNORED_KINDS = ("channel", "unbound_cc", "no_voice", "type")
SUSTAIN, ALL_SOUND_OFF, ALL_NOTES_OFF = 64, 120, 123
#: the default port name of a virtual input
VIRTUAL_NAME = "patchlib"


class MidiError(RuntimeError):
    """A MIDI port that cannot be opened (the message names it and lists the available ports)."""


def note_hz(note: int) -> float:
    """The equal-tempered frequency of MIDI note ``note`` (69 = A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def list_ports() -> tuple[list[str], str | None]:
    """``(names, None)``: the MIDI inputs on this machine; ``([], reason)`` when none can be listed."""
    try:
        mido = _mido()
    except MidiError as e:
        return [], str(e)
    try:
        with _quiet_stderr():
            return list(mido.get_input_names()), None
    except ImportError as e:
        return [], f"no MIDI backend: {e} (pip install python-rtmidi)"
    except Exception as e:  # rtmidi raises SystemError when ALSA has no sequencer (/dev/snd/seq)
        return [], f"the MIDI system is not available: {_why(e)}"


def _ports_text(names: list[str], reason: str | None) -> str:
    if reason:
        return reason
    return "available MIDI inputs: " + (", ".join(repr(n) for n in names) if names else "none")


class MidiInput:
    """MIDI messages in, engine events out.

    Args:
        player: a :class:`~patchlib.realtime.Player` (or anything with
            ``engine``, ``schedule``, ``note`` and ``note_off``). Its engine
            is read anew for each message, so a swapped-in patch gets its own
            bindings.
        port: the input to open (:meth:`open`): an exact name, or a part of
            one that names a single port (``"Launchkey"``); None: the first.
        virtual: open a virtual input called ``port`` (default
            ``"patchlib"``) that other programs connect to (ALSA, JACK, CoreMIDI).
        channel: listen to this channel only (1..16); default the patch's
            ``midi: {channel: N}``, else every channel.
        notes_to: the poly node(s) notes go to (a name or a list); default
            the patch's ``midi: {notes: ...}``, else every poly node.
        latency: None (default): each event at the start of the next block,
            the least delay. Seconds: each event at its arrival time plus
            ``latency`` on the player's clock, so notes keep their relative
            timing within a block (jitter traded for a fixed delay; give
            a few blocks). Arrivals that would be late go at once.
    """

    def __init__(self, player, *, port: str | None = None, virtual: bool = False, channel: int | None = None,
                 notes_to: str | Iterable[str] | None = None, latency: float | None = None):
        if channel is not None and (isinstance(channel, bool) or not 1 <= int(channel) <= 16):
            raise ValueError(f"channel must be 1..16, got {channel!r}")
        self.player = player
        self.port_name = port
        self.virtual = bool(virtual)
        self._channel_arg = None if channel is None else int(channel)
        self._notes_arg = [notes_to] if isinstance(notes_to, str) else (None if notes_to is None else list(notes_to))
        self.latency = None if latency is None else max(0.0, float(latency))
        self._lock = threading.Lock()
        self._counts = {"received": 0, "applied": 0, "notes": 0, "note_offs": 0, "controls": 0}
        self._ignored = {k: 0 for k in IGNORED_KINDS}
        self._errors = {k: 0 for k in ERROR_KINDS}
        self._port = None
        self._cached: tuple = (None, ())  # (engine, its routing table): one tuple, read atomically
        self._sustain: dict[int, bool] = {}  # channel (0..15) -> pedal down
        self._held: dict[int, list] = {}  # channel -> note offs held by the pedal
        self._route(player.engine)  # checks notes_to against the patch now

    # ------------------------------------------------------------ the patch
    def _route(self, engine) -> tuple:
        """``(polys, channel, {cc: [bindings]})`` for ``engine`` (built once per engine)."""
        cached_for, table = self._cached
        if cached_for is engine:
            return table
        spec = engine.spec
        polys = list(getattr(spec, "polys", {}) or {})
        patch_midi = getattr(spec, "midi", {}) or {}
        wanted = self._notes_arg if self._notes_arg is not None else patch_midi.get("notes")
        if wanted is not None:
            missing = [n for n in wanted if n not in polys]
            if missing:
                raise ValueError(f"notes_to: {', '.join(map(repr, missing))} is not a poly node "
                                 f"(poly nodes: {', '.join(polys) or 'none in this patch'})")
            polys = list(wanted)
        channel = self._channel_arg if self._channel_arg is not None else patch_midi.get("channel")
        ccs: dict[int, list] = {}
        for b in getattr(spec, "midi_bindings", ()) or ():
            if b.node in engine.params and b.param in engine.params[b.node]:
                ccs.setdefault(b.cc, []).append(b)
        table = (polys, channel, ccs)
        self._cached = (engine, table)
        return table

    @property
    def bindings(self) -> list:
        """The running patch's MIDI bindings (:class:`~patchlib.patch.MidiBinding`)."""
        return [b for bs in self._route(self.player.engine)[2].values() for b in bs]

    @property
    def voices(self) -> list[str]:
        """The poly nodes notes go to."""
        return list(self._route(self.player.engine)[0])

    # ------------------------------------------------------------ messages
    def handle(self, msg: Any) -> None:
        """Act on one message: a ``mido.Message`` or its raw bytes (callable from any thread; never raises)."""
        self._count("received")
        try:
            self._handle(msg)
        except _Refused as e:
            self._error(e.kind)
            log.debug("MIDI message refused (%s): %s", e.kind, e)
        except Exception:  # the last line of defence: the callback thread never dies
            log.exception("MIDI message %r", msg)
            self._error("internal")

    __call__ = handle  # a MidiInput is itself a mido callback

    def _handle(self, msg) -> None:
        msg = self._message(msg)
        kind = msg.type
        if kind not in ("note_on", "note_off", "control_change"):
            self._ignore("type")
            return
        try:
            polys, channel, ccs = self._route(self.player.engine)
        except ValueError as e:  # a swapped-in patch lacks the poly nodes asked for
            raise _Refused("unknown_node", str(e)) from None
        ch = msg.channel  # 0..15
        if channel is not None and ch != channel - 1:
            self._ignore("channel")
            return
        frame = self._frame()
        if kind == "control_change":
            self._control(msg.control, msg.value, ch, ccs, polys, frame)
            return
        if not polys:
            self._ignore("no_voice")
            return
        pitch = note_hz(msg.note)
        if pitch >= self.player.engine.sample_rate / 2:
            raise _Refused("out_of_range", f"note {msg.note} ({pitch:.0f} Hz) is above half the sample rate")
        if kind == "note_on" and msg.velocity > 0:
            self._count("notes")
            for p in polys:
                self._call(self.player.note, p, pitch, msg.velocity / 127.0, frame=frame)
            return
        self._count("note_offs")
        if self._sustain.get(ch):
            with self._lock:
                self._held.setdefault(ch, []).append(pitch)
            return
        for p in polys:
            self._call(self.player.note_off, p, pitch, frame=frame)

    def _control(self, cc: int, value: int, ch: int, ccs: dict, polys: list, frame) -> None:
        self._count("controls")
        bound = [b for b in ccs.get(cc, ()) if b.channel is None or b.channel - 1 == ch]
        if bound:
            for b in bound:
                ev = Event(0.0, "ramp", b.node, b.param, b.map(value), None)
                self._call(self.player.schedule, ev, frame)
            return
        if cc == SUSTAIN and polys:
            down = value >= 64
            with self._lock:
                self._sustain[ch] = down
                held = [] if down else self._held.pop(ch, [])
            for pitch in held:
                for p in polys:
                    self._call(self.player.note_off, p, pitch, frame=frame)
            return
        if cc in (ALL_SOUND_OFF, ALL_NOTES_OFF) and polys:
            with self._lock:
                self._held.pop(ch, None)
            for p in polys:
                self._call(self.player.schedule, Event(0.0, "all_off", p), frame)
            return
        self._ignore("unbound_cc")

    def _message(self, msg):
        mido = _mido()
        if isinstance(msg, mido.Message):
            return msg
        if isinstance(msg, (bytes, bytearray, list, tuple)):
            data = list(msg)
            if not data or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in data):
                raise _Refused("malformed", f"not MIDI bytes: {msg!r}")
            try:
                return mido.Message.from_bytes(data)
            except (ValueError, TypeError) as e:
                raise _Refused("malformed", f"malformed MIDI message {bytes(data).hex(' ')}: {e}") from None
        if getattr(msg, "is_meta", False):  # a MetaMessage from a MIDI file
            raise _Refused("bad_message", "a meta message is not a live MIDI message")
        raise _Refused("bad_message", f"not a MIDI message: {type(msg).__name__}")

    def _frame(self):
        if self.latency is None:
            return None
        p = self.player
        frame = int(p.frame_at(p.clock() + self.latency))
        return frame if frame >= p.next_frame else None

    def _call(self, fn, *args, **kw) -> None:
        try:
            fn(*args, **kw)
        except ValueError as e:  # the patch was swapped under us and lost the node, or a bad pitch
            raise _Refused("unknown_node", str(e)) from None
        except EngineBusy as e:  # the audio thread takes no events (stopped) and its inbox is full
            raise _Refused("busy", str(e)) from None
        self._count_applied(1)

    # ------------------------------------------------------------ counters
    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _count_applied(self, n: int) -> None:
        with self._lock:
            self._counts["applied"] += n

    def _ignore(self, why: str) -> None:
        with self._lock:
            self._ignored[why] += 1

    def _error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def stats(self) -> dict:
        """Counters (a snapshot).

        ``received`` messages; ``notes``, ``note_offs`` and ``controls`` among
        them; ``applied`` events queued to the engine (a note to two poly
        nodes or a CC bound to eight voice copies counts each); ``ignored``
        (valid messages that did nothing) and ``ignored_by`` reason;
        ``errors`` by kind and ``errors_total``; ``port`` (the open port's
        name, or None).
        """
        with self._lock:
            out = dict(self._counts)
            out["ignored_by"] = {k: v for k, v in self._ignored.items() if v}
            out["ignored"] = sum(self._ignored.values())
            out["errors"] = {k: v for k, v in self._errors.items() if v}
            out["errors_total"] = sum(self._errors.values())
        out["port"] = getattr(self._port, "name", None)
        return out

    def summary(self) -> str:
        s = self.stats()
        text = (f"midi: {s['received']} message(s) received ({s['notes']} note(s), {s['controls']} control(s)), "
                f"{s['applied']} event(s) applied, {s['ignored']} ignored, {s['errors_total']} error(s)")
        if s["errors"]:
            text += " (" + ", ".join(f"{k} {v}" for k, v in s["errors"].items()) + ")"
        return text

    # ------------------------------------------------------------ ports
    def open(self) -> "MidiInput":
        """Open the input port; its messages call :meth:`handle` on mido's callback thread.

        Raises :class:`MidiError` (naming the port and listing the available
        ones) when no port can be opened.
        """
        if self._port is not None:
            return self
        mido = _mido()
        if self.virtual:
            name = self.port_name or VIRTUAL_NAME
            what = f"virtual MIDI input '{name}'"
        else:
            names, reason = list_ports()
            if reason:
                raise MidiError(f"cannot open MIDI input{_quoted(self.port_name)}: {reason}")
            name = self._pick(names)
            what = f"MIDI input '{name}'"
        try:
            with _quiet_stderr():
                self._port = mido.open_input(name, virtual=self.virtual, callback=self.handle)
        except ImportError as e:
            raise MidiError(f"cannot open {what}: no MIDI backend ({e}; pip install python-rtmidi)") from None
        except Exception as e:  # rtmidi: SystemError / OSError / RuntimeError, wording varies by system
            text = f"cannot open {what}: {_why(e)}"
            if not self.virtual:
                names, reason = list_ports()
                if not reason:
                    text += f"; {_ports_text(names, None)}"
            raise MidiError(text) from None
        return self

    def _pick(self, names: list[str]) -> str:
        want = self.port_name
        if not names:
            raise MidiError(f"cannot open MIDI input{_quoted(want)}: no MIDI inputs on this machine "
                            "(connect a device, or use a virtual port)")
        if not want:
            return names[0]
        if want in names:
            return want
        hits = [n for n in names if want.lower() in n.lower()]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise MidiError(f"MIDI input '{want}' is ambiguous: it matches " + ", ".join(map(repr, hits)))
        raise MidiError(f"no MIDI input '{want}'; {_ports_text(names, None)}")

    def close(self) -> None:
        """Close the port (idempotent); held sustain notes are released."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # closing must not raise on the way out
                log.exception("closing MIDI port")
        with self._lock:
            held = self._held
            self._held, self._sustain = {}, {}
        if not held:
            return
        try:
            polys = self._route(self.player.engine)[0]
            for pitches in held.values():
                for pitch in pitches:
                    for p in polys:
                        self.player.note_off(p, pitch)
        except (ValueError, EngineBusy):  # the patch lost its poly nodes, or the engine takes no events
            pass

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def __enter__(self) -> "MidiInput":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


class _Refused(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


def _mido():
    try:
        import mido
    except ImportError:
        raise MidiError("MIDI input needs mido: pip install mido python-rtmidi") from None
    return mido


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the C library's own stderr lines (ALSA's "cannot open /dev/snd/seq") around a port call.

    The failure comes back as an exception that :class:`MidiError` words;
    ALSA's lines would only repeat it, out of order.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _why(e: Exception) -> str:
    text = str(e).strip().rstrip(".") or type(e).__name__
    if "ALSA" in text and "sequencer" in text:
        text += (" (no ALSA sequencer: /dev/snd/seq is missing; load the snd-seq kernel module, or run JACK)"
                 if not os.path.exists("/dev/snd/seq") else " (is the ALSA sequencer running?)")
    return text


def _quoted(name) -> str:
    return f" '{name}'" if name else ""
