"""Argument types for the command line: each turns bad text into a clear argparse error.

A default read from a ``RELAY_*`` variable is an :class:`EnvValue`: argparse
runs an option's ``type`` on a string default too (only when the flag is not
given), and the types below then name the variable in their message, so a bad
variable is one line and exit status 2, like a bad flag.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._errors import InvalidInput
from ..job import validate_job_id, validate_queue_name
from ..keys import validate_prefix
from ..redis_io import redis_url_problem

N = TypeVar("N", int, float)


class EnvValue(str):
    """Text from the environment variable ``var`` (a ``str`` to argparse)."""

    var: str

    def __new__(cls, value: str, var: str) -> EnvValue:
        self = super().__new__(cls, value)
        self.var = var
        return self


def env(name: str, default: str | None = None) -> str | None:
    """The value of ``RELAY_*`` variable ``name`` as an :class:`EnvValue`, or
    ``default`` when it is unset; empty counts as unset."""
    value = os.environ.get(name)
    return EnvValue(value, name) if value else default


def _error(text: str, reason: str, got: str) -> argparse.ArgumentTypeError:
    """``reason`` (and ``got``) for a flag; ``VAR=value: reason`` for a variable."""
    if isinstance(text, EnvValue):
        return argparse.ArgumentTypeError(f"{text.var}={shlex.quote(text)}: {reason}")
    return argparse.ArgumentTypeError(f"{reason}, got {got}" if got else reason)


def one_of(*names: str) -> Callable[[str], str]:
    """A parser that takes one of ``names`` (applied to a default from the
    environment too, unlike argparse's ``choices``)."""

    def parse(text: str) -> str:
        if text not in names:
            raise _error(text, f"choose one of {', '.join(names)}", repr(text))
        return text

    parse.__name__ = "choice"
    return parse


def show(value: float) -> str:
    """``10,000``, ``0.05``, ``86,400,000``: a bound as people read it."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}"
    return f"{int(value):,}"


@dataclass(frozen=True)
class Number(Generic[N]):
    """A parser for a ``kind`` in [low, high] (or (low, high] with ``exclude_low``).
    Floats must be finite. ``bounds`` is the range in words, for help texts."""

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

    def __call__(self, text: str) -> N:
        try:
            value = self.kind(text)
        except ValueError:
            raise _error(text, f"not a {self.noun}", repr(text)) from None
        if not math.isfinite(value):
            raise _error(text, f"not a finite {self.noun}", repr(text))
        if value < self.low or value > self.high or (self.exclude_low and value == self.low):
            raise _error(text, f"must be {self.bounds}", show(value))
        return value


def number(kind: type[N], low: N, high: N, *, exclude_low: bool = False) -> Number[N]:
    return Number(kind, low, high, exclude_low)


def int_between(low: int, high: int) -> Number[int]:
    return Number(int, low, high)


def float_between(low: float, high: float, *, exclude_low: bool = False) -> Number[float]:
    return Number(float, low, high, exclude_low)


port = int_between(0, 65535)
fraction = float_between(0.0, 1.0)


def add_number(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Number[Any],
    text: str,
    *,
    default: float | None = None,
    var: str | None = None,
    none: str = "none",
    **options: Any,
) -> None:
    """``flag`` of type ``kind``; its help is ``text``, the range, the variable
    (``var``, read here) and ``default`` (shown as ``none`` when None)."""
    given = "" if var is None else f"env {var}, "
    shown = none if default is None else show(default)
    parser.add_argument(
        flag,
        type=kind,
        default=default if var is None else env(var) or default,
        help=f"{text}; {kind.bounds} ({given}default {shown})",
        **options,
    )


def redis_url(text: str) -> str:
    """A URL redis-py can use (checked without connecting: scheme, port, database,
    options). The message leaves the URL out: it may hold a password."""
    problem = redis_url_problem(text)
    if problem is not None:
        where = f"{text.var}: " if isinstance(text, EnvValue) else ""
        raise argparse.ArgumentTypeError(f"{where}not a Redis URL ({problem})")
    return text


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def host(text: str) -> str:
    """An address to listen on: an IP address (v4, or v6 with or without brackets)
    or a host name (dot-separated labels of letters, digits and hyphens, the last
    not all digits: ``999.1.1.1`` is no address). Whether a name resolves, and
    whether the address is this host's, only binding can tell."""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if (
        len(text) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return text
    raise _error(text, "not an IP address or a host name", repr(text))


def _validated(check: Callable[[str], str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text)
        except InvalidInput as exc:
            if isinstance(text, EnvValue):  # the message shows the value already
                raise argparse.ArgumentTypeError(f"{text.var}: {exc.message}") from None
            raise argparse.ArgumentTypeError(exc.message) from None

    parse.__name__ = check.__name__.removeprefix("validate_")
    return parse


queue = _validated(validate_queue_name)
job_id = _validated(validate_job_id)
prefix = _validated(validate_prefix)
