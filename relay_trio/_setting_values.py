"""How settings are spelled: the parsers and checkers of :mod:`relay_trio.settings`.

Each turns a variable's (or a flag's) text, or a value given in Python, into
the setting's canonical value, or raises :class:`~relay_trio._setting.BadValue`
saying why (the caller names the setting).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

from ._errors import InvalidInput
from ._setting import BadValue, Range
from .keys import validate_prefix
from .logs import FORMATS
from .redis_wire import redis_url_problem

PORTS = Range(int, 0, 65535)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise BadValue("not text", repr(value))
    return str(value)  # a plain str, whatever subclass it came as


def _redis_url(value: object) -> str:
    """A URL redis-py can use (checked without connecting). Never shown: it may
    hold a password."""
    url = _text(value)
    problem = redis_url_problem(url)
    if problem is not None:
        raise BadValue(f"not a Redis URL ({problem})")
    return url


def _prefix(value: object) -> str:
    try:
        return _text(validate_prefix(value))
    except InvalidInput as exc:  # its message shows the value
        raise BadValue(exc.message) from None


def _token(what: str) -> Callable[[object], str | None]:
    """A token must be sendable as an HTTP header. Never shown."""

    def check(value: object) -> str | None:
        if value is None:
            return None
        token = _text(value)
        if not token:
            raise BadValue(f"the {what} is empty")
        if token != token.strip(" \t"):
            raise BadValue(f"the {what} starts or ends with a space or a tab, which HTTP drops")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
            raise BadValue(f"the {what} has a control character, which no HTTP header can carry")
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:
            raise BadValue(f"the {what} is not valid UTF-8 text") from None
        return token

    return check


_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch_text(text: str) -> bool:
    word = text.strip().lower()
    if word not in _YES + _NO:
        raise BadValue(f"not yes or no ({', '.join(_YES)}; or {', '.join(_NO)})", repr(text))
    return word in _YES


def _switch(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadValue("not True or False", repr(value))
    return value


def _host_names(value: object) -> tuple[str, ...]:
    """Allowed Host names, canonical, each once: one (a str) or several."""
    from .server.auth import allowed_host  # the server's rules; imported when needed

    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Iterable):
        raise BadValue("not a list of host names", repr(value))
    try:
        return tuple(dict.fromkeys(allowed_host(_text(name)) for name in names))
    except ValueError as exc:  # its message shows the name
        raise BadValue(str(exc)) from None


def _host_list_text(text: str) -> tuple[str, ...]:
    """Comma-separated names (blank entries skipped)."""
    return _host_names([name for name in text.split(",") if name.strip()])


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _bind_host(value: object) -> str:
    """An address to listen on: an IP address (v4, or v6 with or without brackets)
    or a host name (dot-separated labels of letters, digits and hyphens, the last
    not all digits: ``999.1.1.1`` is no address). Whether a name resolves, and
    whether the address is this host's, only binding can tell."""
    text = _text(value)
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
    raise BadValue("not an IP address or a host name", repr(text))


def _handler(value: object) -> str:
    spec = _text(value)
    if not spec:
        raise BadValue("empty: give module:function, or demo")
    return spec


def _tasks(value: object) -> str | None:
    """``module:registry``: its form and the import are checked when the worker
    loads it (:func:`~relay_trio.tasks.load_registry`), whose message says why."""
    if value is None:
        return None
    spec = _text(value)
    if not spec:
        raise BadValue("empty: give module:registry (e.g. myapp.tasks:tasks)")
    return spec


def _log_format(value: object) -> str:
    text = _text(value)
    if text not in FORMATS:
        raise BadValue(f"not a log format (choose {' or '.join(FORMATS)})", repr(text))
    return text


def _metrics_port_text(text: str) -> int | None:
    """A port, or ``off`` (no metrics)."""
    return None if text.strip().lower() == "off" else PORTS.parse(text)


def _metrics_port(value: object) -> int | None:
    return None if value is None else PORTS.check(value)
