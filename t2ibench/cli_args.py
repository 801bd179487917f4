"""Checks every command applies the same way: numeric ranges, "did you mean" for unknown keys, and
output locations that must be writable before any expensive step starts.

The argparse `type=` callables raise `argparse.ArgumentTypeError`, which the CLI's parser turns into
one line and exit status 2; the other helpers raise `UserError` (same contract).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from t2ibench.errors import UserError


def _number(kind: type, low: float | None, inclusive: bool, what: str) -> Callable[[str], int | float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if low is not None and (value < low or (not inclusive and value == low)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


positive_int = _number(int, 1, True, "a whole number >= 1")
nonnegative_int = _number(int, 0, True, "a whole number >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
nonnegative_float = _number(float, 0.0, True, "a number >= 0")
any_int = _number(int, None, True, "a whole number")
finite_float = _number(float, None, True, "a finite number")


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """'; did you mean X?' when a known word is close, else '; known: a, b, c'."""
    known = sorted(set(known))
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if known else "; it takes none"


def writable_dir(path: str | os.PathLike[str], option: str) -> Path:
    """`path` is (or can be created as) a directory this process may write; nothing is created.
    Checked before any model is loaded, so a typo or a read-only mount costs no work."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a directory; give a directory")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} {path}: {probe} is a file, so the directory cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {probe} is not writable by this user; choose another location")
    return path


def writable_file(path: str | os.PathLike[str], option: str) -> Path:
    """`path` is a file this process may replace (or create): its directory is writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} is not writable by this user")
    writable_dir(path.parent if str(path.parent) else Path("."), option)
    return path
