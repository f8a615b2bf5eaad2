"""Redis Sentinel: ``redis+sentinel://`` URLs, and clients that follow the master.

The URL names the sentinels and the service they watch (spec section 13)::

    redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
                     [?sentinel_password=...&sentinel_username=...]

The password in the user-info part is the Redis master's (as in a ``redis://``
URL); sentinels that require one of their own (``requirepass`` in the
sentinel's configuration) take ``sentinel_password`` (and ``sentinel_username``
for an ACL user). A port left out is the sentinel's default, 26379; an IPv6
address is written in brackets. :func:`sentinel_url_problem` says why a URL is
no such URL without connecting, and never repeats any part of it (a password
may sit where a host was expected).

:func:`sentinel_client` (redis-py, blocking: the sync and Trio runtimes) and
:func:`async_sentinel_client` (``redis.asyncio``) build clients whose pool asks
the sentinels for the master's address whenever it opens a connection, with the
same rules as :func:`relay_trio.redis_sync.connect`: explicit timeouts, no
automatic retries, errors while getting a connection marked as raised before
the command was sent, and (sync) the handshake check on every new connection.

After a failover: a connection to the old master fails (refused, lost, or a
``READONLY`` reply once it came back as a replica, which redis-py turns into a
lost connection) and is dropped; the next connection asks the sentinels again
and reaches the new master. Meanwhile (the master is down and not yet replaced)
the sentinels name no master and every call is ``RedisUnavailable``; a call
that was in flight when the master died is ``RedisOutcomeUnknown``. Nothing is
retried here: the worker, the hub and the clients already retry what they may.

This module imports :mod:`relay_trio.redis_connect` and :mod:`relay_trio.redis_wire`
only inside its functions, so they may import it at the top.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import parse_qsl, unquote

import redis
import redis.asyncio as aioredis
from redis.asyncio import sentinel as aiosentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from ._errors import InvalidInput

__all__ = [
    "DEFAULT_SENTINEL_PORT",
    "SCHEME",
    "SentinelURL",
    "async_sentinel_client",
    "is_sentinel_client",
    "is_sentinel_url",
    "parse_sentinel_url",
    "sentinel_blocking_twin",
    "sentinel_client",
    "sentinel_url_problem",
    "sentinel_where",
]

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
_OPTIONS = ("sentinel_password", "sentinel_username")
_UNSENT = "_relay_unsent"  # redis_wire.UNSENT (that module imports this one)
_HOST = re.compile(r"[A-Za-z0-9._-]+")  # a name or an IPv4 address; IPv6 in brackets
_SERVICE = re.compile(r"[^\s/?#]+")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL (its passwords hidden from ``repr``)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: object) -> bool:
    """Does ``url`` use the ``redis+sentinel://`` scheme (in any case)?"""
    return isinstance(url, str) and url[: len(SCHEME) + 3].lower() == SCHEME + "://"


def _address(text: str, index: int, count: int) -> tuple[str, int]:
    which = "the sentinel address" if count == 1 else f"sentinel address {index} of {count}"
    if not text:
        return _fail(f"{which} is empty (host:port, separated by commas)")
    if text.startswith("["):  # [IPv6]:port
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or not all(c in "0123456789abcdefABCDEF:." for c in host):
            return _fail(f"{which} is not a host:port ([IPv6 address]:port for IPv6)")
        if rest and not rest.startswith(":"):
            return _fail(f"{which} is not a host:port ([IPv6 address]:port for IPv6)")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if not _HOST.fullmatch(host):
            return _fail(f"{which} is not a host:port (an IPv6 address goes in brackets)")
    if port_text is None:
        return host, DEFAULT_SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return _fail(f"the port of {which} is not a number from 1 to 65535")
    return host, int(port_text)


def _fail(reason: str) -> NoReturn:
    raise ValueError(reason)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse a ``redis+sentinel://`` URL; :class:`ValueError` with the reason
    (never a part of the URL) if it is not one."""
    if not is_sentinel_url(url):
        _fail(f"not a {SCHEME}:// URL")
    rest = url[len(SCHEME) + 3 :]
    if "#" in rest:
        _fail(f"a {SCHEME}:// URL has no fragment (#); percent-encode a # in a password")
    rest, _, query = rest.partition("?")
    # the user info ends at the last "@" before the path: a password may hold "@"
    slash = rest.find("/", rest.rfind("@") + 1)
    netloc, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        password = password or None
    if not hosts:
        _fail(f"a {SCHEME}:// URL names at least one sentinel (host:port[,host:port...])")
    parts = hosts.split(",")
    sentinels = tuple(_address(p.strip(), i, len(parts)) for i, p in enumerate(parts, 1))
    segments = path.split("/")[1:] if path else []
    if not segments or not segments[0]:
        _fail(f"a {SCHEME}:// URL needs the service name after the sentinels (/mymaster)")
    service = unquote(segments[0])
    if not _SERVICE.fullmatch(service):
        _fail("the service name holds a space, a slash or a control character")
    db = 0
    if len(segments) > 1 and segments[1:] != [""]:
        db_text = segments[1]
        if len(segments) > 2 and segments[2:] != [""]:
            _fail(f"the path of a {SCHEME}:// URL is /service_name or /service_name/db")
        if not (db_text.isascii() and db_text.isdigit()) or int(db_text) > 2**31 - 1:
            _fail("the database (after the service name) is not a number (/0, /1 ...)")
        db = int(db_text)
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        _fail("the query of the URL is not name=value pairs separated by &")
    for name, value in pairs:
        if name not in _OPTIONS:
            # a name is no secret unless it is one: never show a value
            shown = name if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name) else "(unprintable)"
            _fail(f"unknown option {shown!r} (known: {', '.join(_OPTIONS)})")
        if name in options:
            _fail(f"option {name!r} given twice")
        options[name] = value
    return SentinelURL(
        sentinels=sentinels,
        service=service,
        db=db,
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password") or None,
    )


def sentinel_url_problem(url: str) -> str | None:
    """Why ``url`` is no usable ``redis+sentinel://`` URL (checked without
    connecting), or None. The reason never repeats a part of the URL."""
    try:
        parse_sentinel_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _parse_or_raise(url: str) -> SentinelURL:
    try:
        return parse_sentinel_url(url)
    except ValueError as exc:
        raise InvalidInput("redis_url", f"not a Redis URL ({exc})") from None


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _sentinel_kwargs(parsed: SentinelURL, *, socket_timeout: float, connect_timeout: float) -> Any:
    """How the clients talk to the sentinels themselves: the same timeouts, no
    retries (the other sentinels are the redundancy), their own credentials."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": _no_retry(),
        "username": parsed.sentinel_username,
        "password": parsed.sentinel_password,
    }


def _master_kwargs(
    parsed: SentinelURL, *, socket_timeout: float, connect_timeout: float, max_connections: int
) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": connect_timeout,  # the wait for a free connection
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry": _no_retry(),
        "retry_on_timeout": False,
        "username": parsed.username,
        "password": parsed.password,
        "db": parsed.db,
    }


# -- redis-py, blocking -------------------------------------------------------------


class _SentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A bounded pool (a thread waits ``timeout`` for a free connection, as
    :class:`relay_trio.redis_connect._Pool`) whose connections go to the master
    the sentinels name. Errors while handing out a connection are marked as
    raised before the command was sent; closing it closes the connections to
    the sentinels as well, unless it shares them (:func:`sentinel_blocking_twin`)."""

    owns_sentinels = True
    """False for a twin: its client's pool closes the sentinel connections they
    share. A twin that closed them would cut a master lookup under way in
    another thread (``No master found``: a spurious failure while Redis is
    fine); the fleet's subscription closes its twin whenever it ends."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, _UNSENT, True)
            raise

    def disconnect(self, inuse_connections: bool = True) -> None:
        super().disconnect(inuse_connections)
        if inuse_connections and self.owns_sentinels:  # a close, not a switch of master
            for sentinel in self.sentinel_manager.sentinels:
                sentinel.connection_pool.disconnect()


def sentinel_client(
    url: str, *, socket_timeout: float, connect_timeout: float, max_connections: int
) -> redis.Redis:
    """A redis-py client for the master of the service ``url`` names (see the
    module doc); nothing connects yet. A URL that is not a usable
    ``redis+sentinel://`` one is :class:`InvalidInput` (``redis_url``)."""
    from .redis_connect import with_handshake

    parsed = _parse_or_raise(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels),
        sentinel_kwargs=_sentinel_kwargs(
            parsed, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        ),
    )
    pool = _SentinelPool(  # type: ignore[no-untyped-call]
        parsed.service,
        manager,
        connection_class=with_handshake(SentinelManagedConnection),
        is_master=True,
        **_master_kwargs(
            parsed,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        ),
    )
    return redis.Redis(connection_pool=pool)


def is_sentinel_client(client: redis.Redis | aioredis.Redis) -> bool:
    """Was ``client`` built by :func:`sentinel_client` or :func:`async_sentinel_client`?"""
    return isinstance(client.connection_pool, _SentinelPool | _AsyncSentinelPool)


def sentinel_blocking_twin(client: redis.Redis, max_connections: int) -> redis.Redis:
    """For a :func:`sentinel_client`: a client on the same service for blocking
    pops, with a pool of its own (that also follows the master) whose socket
    timeout is ``redis_wire.BLOCKING_SOCKET_TIMEOUT``. It asks the same
    sentinels, through the same connections: closing it leaves those open
    (closing ``client`` closes them)."""
    from .redis_wire import BLOCKING_SOCKET_TIMEOUT

    pool = client.connection_pool
    assert isinstance(pool, _SentinelPool), "not a client of sentinel_client()"
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs["socket_timeout"] = BLOCKING_SOCKET_TIMEOUT
    twin = _SentinelPool(  # type: ignore[no-untyped-call]
        pool.service_name,
        pool.sentinel_manager,
        connection_class=pool.connection_class,
        is_master=True,
        max_connections=max_connections,
        timeout=pool.timeout,
        **kwargs,
    )
    twin.owns_sentinels = False
    return redis.Redis(connection_pool=twin)


def _describe(service: str, sentinels: Sequence[Any]) -> str:
    hosts = []
    for sentinel in sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        host = str(kwargs.get("host", "localhost"))
        hosts.append(
            f"[{host}]:{kwargs.get('port')}" if ":" in host else f"{host}:{kwargs.get('port')}"
        )
    return f"the master of {service!r} (sentinels {','.join(sorted(hosts))})"


def sentinel_where(client: redis.Redis | aioredis.Redis) -> str | None:
    """How messages name the server of a sentinel client (``the master of 'svc'
    (sentinels host:port,...)``); None for any other client."""
    pool = client.connection_pool
    if not isinstance(pool, _SentinelPool | _AsyncSentinelPool):
        return None
    return _describe(pool.service_name, pool.sentinel_manager.sentinels)


# -- redis.asyncio ------------------------------------------------------------------


class _AsyncSentinelPool(aiosentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """:class:`_SentinelPool` for ``redis.asyncio``."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, _UNSENT, True)
            raise

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.connection_pool.disconnect()


def async_sentinel_client(
    url: str, *, socket_timeout: float, connect_timeout: float, max_connections: int
) -> aioredis.Redis:
    """:func:`sentinel_client` for ``redis.asyncio`` (no handshake check, as
    :mod:`relay_trio.redis_aio`'s other clients); call it once more with
    ``socket_timeout=BLOCKING_SOCKET_TIMEOUT`` for the blocking pops."""
    parsed = _parse_or_raise(url)
    manager = aiosentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels),
        sentinel_kwargs=_sentinel_kwargs(
            parsed, socket_timeout=socket_timeout, connect_timeout=connect_timeout
        ),
    )
    pool = _AsyncSentinelPool(  # type: ignore[no-untyped-call]
        parsed.service,
        manager,
        is_master=True,
        **_master_kwargs(
            parsed,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        ),
    )
    return aioredis.Redis(connection_pool=pool)
