"""Helpers shared by the training-side CLIs: turning bad input into one-line errors."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from absl import app


@contextlib.contextmanager
def usage_errors(*, rename: Callable[[str], str] = str) -> Iterator[None]:
    """Re-raises bad-input errors (ValueError, FileNotFoundError) as `app.UsageError`.

    The library's messages name the flag, the config field or the file, so absl prints them as
    usage errors instead of a traceback; `rename` rewrites a message (config fields as flags).
    """
    try:
        yield
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:
        raise app.UsageError(rename(str(err))) from None


def fail(message: str, exit_code: int = 1) -> None:
    """Prints a one-line error to stderr and exits non-zero (for run-time failures)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(exit_code)


def parse_floats(flag: str, values: list[str] | None) -> tuple[float, ...] | None:
    """A list flag of numbers as floats; ValueError names the flag."""
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(
            f"--{flag} must be a comma-separated list of numbers; got {values}"
        ) from None


def parse_ints(flag: str, values: list[str] | None) -> tuple[int, ...] | None:
    """A list flag of integers; ValueError names the flag."""
    if values is None:
        return None
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(
            f"--{flag} must be a comma-separated list of integers; got {values}"
        ) from None
