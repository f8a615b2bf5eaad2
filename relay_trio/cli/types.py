"""Argument types for the command line: each turns bad text into a clear argparse error.

A setting's flag (:func:`add_setting`) is made from its definition in
:mod:`relay_trio.settings`: its type is the setting's parser, its help says the
range, the variable and the default. A default read from a ``RELAY_*``
variable is an :class:`EnvValue`: argparse runs an option's ``type`` on a
string default too (only when the flag is not given), and the types below then
name the variable in their message, so a bad variable is one line and exit
status 2, like a bad flag.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import ConfigError, InvalidInput
from .._setting import BadValue, Range, show
from ..job import validate_job_id, validate_queue_name
from ..schedules import validate_cron, validate_schedule_name, validate_timezone
from ..settings import Setting

T = TypeVar("T")
NO_FALLBACK: Any = object()


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


def one_of(*names: str) -> Callable[[str], str]:
    """A parser that takes one of ``names`` (applied to a default from the
    environment too, unlike argparse's ``choices``)."""

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"choose one of {', '.join(names)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def argtype(parse: Callable[[str], T], *, name: str) -> Callable[[str], T]:
    """``parse`` as an argparse ``type`` for an argument that is no setting: a
    :class:`BadValue` becomes a one-line argparse error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def setting_type(setting: Setting[T]) -> Callable[[str], T]:
    """The type of ``setting``'s flag: from its variable (an :class:`EnvValue`),
    a bad value is ``RELAY_X: reason, got value``, as ``ServerConfig.from_env``
    says it; from the flag, ``reason, got value`` (the value left out when it is
    a secret)."""

    def convert(text: str) -> T:
        if isinstance(text, EnvValue):
            try:
                return setting.read(text)
            except ConfigError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            return setting.parse(text)
        except BadValue as exc:
            message = str(exc) if setting.show_value else exc.reason
            raise argparse.ArgumentTypeError(message) from None

    convert.__name__ = setting.name
    return convert


def int_between(low: int, high: int) -> Range[int]:
    return Range(int, low, high)


def float_between(low: float, high: float, *, exclude_low: bool = False) -> Range[float]:
    return Range(float, low, high, exclude_low)


def add_number(
    parser: argparse.ArgumentParser,
    flag: str,
    bounds: Range[Any],
    text: str,
    *,
    default: float | None = None,
    none: str = "none",
    **options: Any,
) -> None:
    """``flag``, a number in ``bounds`` (an argument of one command, not a
    setting: no variable); its help is ``text``, the range and ``default``
    (shown as ``none`` when None)."""
    shown = none if default is None else show(default)
    parser.add_argument(
        flag,
        type=argtype(bounds.parse, name=bounds.noun),
        default=default,
        help=f"{text}; {bounds.bounds} (default {shown})",
        **options,
    )


class _Switch(argparse.Action):
    """A flag without a value that sets True; its default (the variable's text)
    goes through ``type`` like any other."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, True)


class _Items(argparse.Action):
    """Repeatable, each value a tuple of items: the first use replaces the default
    (the variable's list), later ones add to it."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        marker = f"_{self.dest}_given"
        current = getattr(namespace, self.dest, ()) if getattr(namespace, marker, False) else ()
        setattr(namespace, marker, True)
        setattr(namespace, self.dest, tuple(dict.fromkeys((*current, *values))))


def add_setting(
    parser: argparse.ArgumentParser,
    setting: Setting[Any],
    *,
    fallback: Any = NO_FALLBACK,
    suppress: bool = False,
) -> None:
    """The flag of ``setting``: its type, its help (range, variable, default) and,
    as its default, its variable, or else ``fallback`` (by default the setting's
    default). ``suppress``: no default at all (a flag that, when absent, leaves
    what another parser set)."""
    assert setting.flag is not None, setting.name
    last = setting.default if fallback is NO_FALLBACK else fallback
    default = argparse.SUPPRESS if suppress else env(setting.env) or last
    options: dict[str, Any] = {"dest": setting.name, "default": default}
    if isinstance(setting.default, bool):
        options["action"] = _Switch
    elif isinstance(setting.default, tuple):
        options["action"] = _Items
    if setting.metavar:
        options["metavar"] = setting.metavar
    parser.add_argument(
        setting.flag,
        type=setting_type(setting),
        help=setting.describe(),
        **options,
    )


def _validated(check: Callable[[object], str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text)
        except InvalidInput as exc:  # the message shows the value already
            raise argparse.ArgumentTypeError(exc.message) from None

    parse.__name__ = check.__name__.removeprefix("validate_")
    return parse


queue = _validated(validate_queue_name)
job_id = _validated(validate_job_id)
schedule_name = _validated(validate_schedule_name)
cron = _validated(validate_cron)
timezone = _validated(validate_timezone)
