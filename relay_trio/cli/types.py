"""Argument types for the command line: each turns bad text into a clear argparse error."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TypeVar

from .._errors import InvalidInput
from ..job import validate_job_id, validate_queue_name

N = TypeVar("N", int, float)


def env(name: str, default: str | None = None) -> str | None:
    """The value of ``RELAY_*`` variable ``name``; empty counts as unset."""
    value = os.environ.get(name)
    return value if value else default


def one_of(*names: str) -> Callable[[str], str]:
    """A parser that takes one of ``names`` (applied to a default from the
    environment too, unlike argparse's ``choices``)."""

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose one of {', '.join(names)}")
        return text

    parse.__name__ = "choice"
    return parse


def number(kind: type[N], low: N, high: N, *, exclude_low: bool = False) -> Callable[[str], N]:
    """A parser for a ``kind`` in [low, high] (or (low, high] with ``exclude_low``)."""
    noun = "whole number" if kind is int else "number"
    bounds = f"{'more than' if exclude_low else 'at least'} {_show(low)} and at most {_show(high)}"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if value < low or value > high or (exclude_low and value == low):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {_show(value)}")
        return value

    return parse


def _show(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def int_between(low: int, high: int) -> Callable[[str], int]:
    return number(int, low, high)


positive_int = number(int, 1, 10**9)
port = number(int, 0, 65535)
positive_float = number(float, 0.0, 1e6, exclude_low=True)
non_negative_float = number(float, 0.0, 1e6)
fraction = number(float, 0.0, 1.0)


def _validated(check: Callable[[str], str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text)
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    return parse


queue = _validated(validate_queue_name)
job_id = _validated(validate_job_id)
