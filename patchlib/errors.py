"""Errors a user can cause, each naming where it happened.

A :class:`PatchError` is what `patchlib check` prints: the file, the line,
the node, the key, what is wrong and what would be valid. The CLI prints
these without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass
class Where:
    """A place in a patch file: any field may be unknown."""

    file: str | None = None
    line: int | None = None
    node: str | None = None
    key: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            parts.append(f"line {self.line}")
        if self.node:
            parts.append(f"node '{self.node}'")
        if self.key:
            parts.append(f"key '{self.key}'")
        return ", ".join(parts)


class PatchError(Exception):
    """A mistake in a patch (or in a live edit), with its location."""

    def __init__(self, message: str, where: Where | None = None, hint: str | None = None):
        self.message = message
        self.where = where or Where()
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        loc = str(self.where)
        text = f"{loc}: {self.message}" if loc else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class PatchErrors(PatchError):
    """Several independent mistakes found in one pass (check reports them all)."""

    def __init__(self, errors: list[PatchError]):
        self.errors = errors
        Exception.__init__(self, "\n".join(str(e) for e in errors))
        self.message = str(self)
        self.where = errors[0].where if errors else Where()
        self.hint = None

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def suggest(word: str, choices, n: int = 3) -> str | None:
    """'did you mean ...' text for an unknown name, or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
