"""What every ``patchlib train`` generator command shares: the config from the parsed options, the checks
of counts, and the run with its exit codes.

Each trainer keeps its own options (its ``add_train_parser``) and its own config dataclass, whose field
names are the options' ``dest`` names; these helpers map one onto the other, so a new option is one
``add_argument`` and one field, never a third list to keep in step.
"""
from __future__ import annotations

import dataclasses
import sys


def config_from_args(cls, a, **extra):
    """``cls`` (a dataclass) from the parsed options ``a``: every field that ``a`` has, then ``extra``."""
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in vars(a).items() if k in fields}
    kw.update(extra)
    return cls(**kw)


def check_counts(a, names) -> str | None:
    """The first of the options ``names`` (dest names) that is below 1, as an error message; None if all are."""
    for name in names:
        v = getattr(a, name, None)
        if v is not None and v < 1:
            return f"--{name.replace('_', '-')} must be >= 1 (got {v})"
    return None


def run_train(train_fn, cfg, counts_error: str | None = None) -> int:
    """Run ``train_fn(cfg)`` as a command: 0 when it ends, 2 with ``error: ...`` on stderr for bad options or
    data (``counts_error`` from :func:`check_counts`, or a ValueError), 1 with ``error: ...`` when the run
    fails (a RuntimeError: a training that diverged), 130 when interrupted (the saved training state is kept;
    the same command carries on from it: with --resume for wavenet-gen, by default for the others)."""
    if counts_error:
        print(f"error: {counts_error}", file=sys.stderr)
        return 2
    try:
        train_fn(cfg)
    except KeyboardInterrupt:
        print("interrupted: the last saved training state is kept", file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
