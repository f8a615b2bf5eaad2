"""What a setting is: a :class:`Range` for a number, a :class:`Setting` for a value.

A :class:`Range` is what the library, the configuration and the command line
all use for a bounded number, so that a bound is written in one place and
every message about it says the same words ("at least 0.05 and at most 3,600").
A :class:`Setting` adds a name, a ``RELAY_*`` variable, a default and a help
text (the settings themselves are in :mod:`relay_trio.settings`). A refused
value is a :class:`BadValue` (a ``ValueError``): the reason in words and, apart,
the value as people read it; the caller names the flag, variable or field it
came from.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ConfigError

N = TypeVar("N", int, float)
T = TypeVar("T")

MINUTE = 60.0
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY


class BadValue(ValueError):
    """A value a setting refuses. ``reason`` says why (``must be at least 1 and
    at most 10``); ``got`` is the value as people read it, or None when the
    reason shows it already or it must not be shown (a password, a token)."""

    def __init__(self, reason: str, got: str | None = None) -> None:
        super().__init__(reason if got is None else f"{reason}, got {got}")
        self.reason = reason
        self.got = got


def show(value: float) -> str:
    """``10,000``, ``0.05``, ``86,400,000``: a number as people read it."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}"
    return f"{int(value):,}"


@dataclass(frozen=True)
class Range(Generic[N]):
    """A ``kind`` in [low, high] (or (low, high] with ``exclude_low``); floats
    must be finite. ``bounds`` is the range in words, for help texts and errors."""

    kind: type[N]
    low: N
    high: N
    exclude_low: bool = False

    @property
    def bounds(self) -> str:
        first = "more than" if self.exclude_low else "at least"
        return f"{first} {show(self.low)} and at most {show(self.high)}"

    @property
    def noun(self) -> str:
        return "whole number" if self.kind is int else "number"

    def contains(self, value: object) -> bool:
        """Whether ``value`` is a number in this range (any int or float)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value) or value < self.low or value > self.high:
            return False
        return not (self.exclude_low and value == self.low)

    def parse(self, text: str) -> N:
        """The number ``text`` spells, in range; :class:`BadValue` otherwise."""
        try:
            value = self.kind(text)
        except ValueError:
            raise BadValue(f"not a {self.noun}", repr(str(text))) from None
        if not math.isfinite(value):
            raise BadValue(f"not a finite {self.noun}", repr(str(text)))
        return self._in_range(value)

    def check(self, value: object) -> N:
        """``value`` itself (an int for a whole number; an int or a float, made a
        float, for a number), in range; :class:`BadValue` otherwise."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (self.kind is int and not isinstance(value, int))
        ):
            raise BadValue(f"not a {self.noun}", repr(value))
        try:
            number = self.kind(value)
        except OverflowError:  # an int too large for a float
            raise BadValue(f"must be {self.bounds}", show(value)) from None
        return self._in_range(number)

    def _in_range(self, value: N) -> N:
        if not math.isfinite(value):
            raise BadValue(f"not a finite {self.noun}", repr(value))
        if not self.contains(value):
            raise BadValue(f"must be {self.bounds}", show(value))
        return value


def refused(field: str, message: str) -> ConfigError:
    """The error for a refused setting: ``field`` names it (a field, a variable)."""
    return ConfigError(field, message)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: ``name`` (the config field, the flag's ``dest``), ``env`` (its
    ``RELAY_*`` variable), ``default``, ``help``, ``parse`` (text from a flag or
    the variable to a value) and ``check`` (a value given in Python, made
    canonical); both raise :class:`BadValue`. ``flag`` is None for a setting
    set by its variable only. ``show_value`` False keeps the value out of every
    message (a secret, or a reason that quotes it already)."""

    name: str
    env: str
    default: T
    help: str
    parse: Callable[[str], T]
    check: Callable[[object], T]
    range: Range[Any] | None = None
    flag: str | None = None
    show_value: bool = True
    shown_default: str | None = None
    metavar: str | None = None

    @property
    def default_text(self) -> str:
        """The default in words: ``1``, ``0.05``, ``none``, ``off``, ``relay``."""
        value: object = self.default
        if self.shown_default is not None:
            return self.shown_default
        if value is None or value == ():
            return "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, int | float):
            return show(value)
        return str(value)

    def describe(self) -> str:
        """The help text: what it is, its range, its variable and its default."""
        bounds = "" if self.range is None else f"; {self.range.bounds}"
        return f"{self.help}{bounds} (env {self.env}, default {self.default_text})"

    def problem(self, exc: BadValue, got: str) -> str:
        """``reason, got value``; only the reason when the value is not to be shown."""
        return f"{exc.reason}, got {got}" if self.show_value else exc.reason

    def read(self, text: str) -> T:
        """The value the variable's ``text`` gives; a :class:`ConfigError` naming
        the variable: ``RELAY_X: must be ..., got 0``."""
        try:
            return self.parse(text)
        except BadValue as exc:
            raise refused(self.env, self.problem(exc, shlex.quote(text))) from None

    def validate(self, value: object) -> T:
        """``value`` checked and made canonical; a :class:`ConfigError` naming the
        field: ``poll_interval: must be ..., got 0``."""
        try:
            return self.check(value)
        except BadValue as exc:
            raise refused(self.name, self.problem(exc, repr(value))) from None


def from_environment(
    settings: Iterable[Setting[Any]],
    given: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Each setting's value: from ``given`` when there and not None, else from its
    variable when that is set and not empty; a setting with neither is left out
    (its default applies). A bad variable is a ConfigError naming it; a name that
    is no setting, a TypeError."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    names = set()
    for setting in settings:
        names.add(setting.name)
        if given.get(setting.name) is not None:
            values[setting.name] = given[setting.name]
        elif environ.get(setting.env):
            values[setting.name] = setting.read(environ[setting.env])
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")
    return values


def number(
    name: str,
    env: str,
    bounds: Range[N],
    default: N,
    help: str,
    *,
    flag: str | None = None,
) -> Setting[N]:
    return Setting(name, env, default, help, bounds.parse, bounds.check, bounds, flag)


def optional_number(
    name: str, env: str, bounds: Range[N], help: str, *, flag: str, none: str, metavar: str
) -> Setting[N | None]:
    """A number or None (the default, shown as ``none``)."""

    def check(value: object) -> N | None:
        return None if value is None else bounds.check(value)

    return Setting(
        name,
        env,
        None,
        help,
        bounds.parse,
        check,
        bounds,
        flag,
        shown_default=none,
        metavar=metavar,
    )


__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "WEEK",
    "BadValue",
    "Range",
    "Setting",
    "from_environment",
    "number",
    "optional_number",
    "refused",
    "show",
]
