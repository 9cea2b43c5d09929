"""Values with units: `250ms`, `-6dB`, `1.5kHz`, `A4`, `C#3`, `7st`.

Every param declares its unit; a value written in a patch (or sent over OSC)
may carry a unit that converts into it. Plain numbers are taken in the
param's own unit.

>>> parse_value("1.5kHz", "Hz"), parse_value("A4", "Hz"), parse_value("250ms", "s")
(1500.0, 440.0, 0.25)
>>> round(parse_value("-6dB", "x"), 4)
0.5012
"""
from __future__ import annotations

import math
import re

#: units a param may declare, with what they mean (shown by `patchlib nodes`)
UNITS = {
    "Hz": "frequency in hertz (also kHz, or a note name such as A4, C#3, Eb2)",
    "s": "time in seconds (also ms)",
    "dB": "level in decibels",
    "x": "linear amplitude factor (also written in dB: -6dB = 0.501)",
    "st": "interval in semitones",
    "": "plain number",
}

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = re.compile(rf"^\s*({_NUM})\s*([A-Za-z%]*)\s*$")
_NOTE = re.compile(r"^\s*([A-Ga-g])([#b♯♭]?)(-?\d+)\s*$")
_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def note_to_midi(text: str) -> float | None:
    """MIDI number of a note name (C4 = 60, A4 = 69), or None if not a note."""
    m = _NOTE.match(text)
    if not m:
        return None
    letter, accidental, octave = m.groups()
    step = _STEPS[letter.lower()] + {"#": 1, "♯": 1, "b": -1, "♭": -1, "": 0}[accidental]
    return float(12 * (int(octave) + 1) + step)


def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


class UnitError(ValueError):
    """A value that cannot be read in the wanted unit."""


def _accepted(unit: str) -> str:
    return {
        "Hz": "a number in Hz, '1.5kHz', '440Hz' or a note name like 'A4' / 'C#3'",
        "s": "a number in seconds, '2s' or '250ms'",
        "dB": "a number in dB or '-6dB'",
        "x": "a number (linear factor) or a level like '-6dB'",
        "st": "a number of semitones or '7st'",
        "": "a number",
    }.get(unit, "a number")


def parse_value(value, unit: str) -> float:
    """Convert a patch value into the param's unit.

    Args:
        value: a number, or a string with an optional unit suffix.
        unit: the param's declared unit (a key of :data:`UNITS`).

    Raises:
        UnitError: the value is not a number in a unit that converts.
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        v = float(value)
        if not math.isfinite(v):
            raise UnitError(f"{value!r} is not a finite number")
        return v
    if not isinstance(value, str):
        raise UnitError(f"expected {_accepted(unit)}, got {type(value).__name__} {value!r}")
    if unit == "Hz":
        midi = note_to_midi(value)
        if midi is not None:
            return midi_to_hz(midi)
    m = _VALUE.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r}: expected {_accepted(unit)}")
    num = float(m.group(1))
    suffix = m.group(2).lower()
    if suffix == "":
        return num
    table = {
        "Hz": {"hz": 1.0, "khz": 1000.0},
        "s": {"s": 1.0, "sec": 1.0, "ms": 1e-3},
        "st": {"st": 1.0, "semitones": 1.0},
        "dB": {"db": 1.0},
    }.get(unit, {})
    if suffix in table:
        return num * table[suffix]
    if unit == "x" and suffix == "db":
        return 10.0 ** (num / 20.0)
    if unit == "" and suffix == "%":
        return num / 100.0
    raise UnitError(f"cannot read {value!r} as {unit or 'a plain number'}: expected {_accepted(unit)}")


def parse_time(value) -> float:
    """A time in seconds (score times, durations)."""
    return parse_value(value, "s")
