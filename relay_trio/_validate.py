"""The one range check of the library: every bounded number it takes goes through it.

The bounds and their words are :class:`~relay_trio._setting.Range`'s, the same
object the configuration and the command line use, so a bound is written once
and every message says it the same way (``must be at least 1 and at most
1,000, got 0``). What is added here is the field's name and the error: an
operation's input out of range is :class:`InvalidInput`, a setting (what
configures a broker, a worker, a server) :class:`ConfigError`; the caller says
which with ``error``. No I/O.
"""

from __future__ import annotations

from typing import TypeVar

from ._errors import ConfigError, InvalidInput
from ._setting import BadValue, Range

N = TypeVar("N", int, float)

FieldError = type[InvalidInput] | type[ConfigError]
"""Which error a check raises: ``InvalidInput`` (input) or ``ConfigError`` (a setting)."""


def in_range(field: str, value: object, bounds: Range[N], *, error: FieldError = InvalidInput) -> N:
    """``value`` if ``bounds`` take it (a whole number: an ``int``, never a
    ``bool``; a number: finite); else ``error(field, <why>)``."""
    try:
        return bounds.check(value)
    except BadValue as exc:
        raise error(field, str(exc)) from None


def check_int(
    field: str, value: object, low: int, high: int, *, error: FieldError = InvalidInput
) -> int:
    """``value`` if it is an integer from ``low`` to ``high``; else ``error(field, ...)``.

    The broker checks several numbers of every job it enqueues: an ``int`` in
    range is accepted at once, anything else goes to :func:`in_range` (the words)."""
    if type(value) is int and low <= value <= high:
        return value
    return in_range(field, value, Range(int, low, high), error=error)


def check_number(
    field: str,
    value: object,
    low: float,
    high: float,
    *,
    above: bool = False,
    error: FieldError = InvalidInput,
) -> float:
    """``value`` if it is a finite number from ``low`` (excluded when ``above``) to
    ``high``; else ``error(field, ...)``."""
    return in_range(field, value, Range(float, low, high, exclude_low=above), error=error)
