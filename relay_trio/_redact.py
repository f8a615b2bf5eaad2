"""Secrets never leave the process: URLs and messages with their passwords masked.

:func:`redact_url` is applied wherever a Redis URL is shown (start lines, the
demo, error messages); :func:`redact_text` masks every URL inside free text, and
any secret passed to it by value (a password redis-py might echo in an error).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_SECRET_PARAM = re.compile(
    r"(?P<name>(?:^|(?<=[?&;]))[^=&;#]*(?:password|passwd|secret|token)[^=&;#]*=)"
    r"(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its password masked: ``redis://user:***@host:6379/0``.

    The password of the user-info part goes (the user name stays), and so does
    the value of every query parameter whose name holds ``password``, ``secret``
    or ``token`` (``unix:///run/redis.sock?password=***&db=0``). It works on the
    text alone, so a URL redis-py would refuse is masked as well; text that is no
    URL comes back unchanged.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    rest = url[scheme.end() :]
    # the user info ends at the last "@" before the query: a password may hold "/"
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    head, tail = rest[:cut], rest[cut:]
    userinfo, at, hostpath = head.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            head = f"{user}:{MASK}@{hostpath}"
    if tail.startswith("?"):
        query, hash_, fragment = tail[1:].partition("#")
        tail = "?" + _SECRET_PARAM.sub(lambda m: m["name"] + MASK, query) + hash_ + fragment
    return scheme.group() + head + tail


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`, and every
    occurrence of each of ``secrets`` (empty ones are skipped) masked."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group()), text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


__all__ = ["MASK", "redact_text", "redact_url"]
