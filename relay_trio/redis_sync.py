"""Redis I/O for plain Python (no event loop), and what every runtime shares.

This module is the synchronous runtime's one place for Redis I/O, and the Trio
runtime (:mod:`relay_trio.redis_io`) runs the same :func:`execute` in worker
threads. It builds redis-py clients with explicit timeouts and no automatic
retries (retrying a command that may have run is the caller's decision), checks
each new connection's handshake, and runs a :class:`~relay_trio.calls.Call`:
one command or script directly, several in one pipeline; a script that meets
NOSCRIPT (Redis restarted or flushed its scripts) is loaded and run again, as
it had no effect the first time.

Errors: every redis-py exception becomes one of relay-trio's (see
:func:`relay_error`), chained, its message free of the password. Failures
before a command was sent (refused, no answer while connecting, credentials
refused, a server that is not Redis) are :class:`RedisUnavailable`; a timeout
or a lost connection after it was sent is :class:`RedisOutcomeUnknown`; error
replies are :class:`RedisCommandError`. Each new connection checks that it
speaks to a Redis server (its answer to ``HELLO``, or to ``PING`` on RESP2)
before any command is sent on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.retry import Retry

from ._errors import (
    InvalidInput,
    RedisCommandError,
    RedisOutcomeUnknown,
    RedisUnavailable,
    RelayError,
)
from ._redact import redact_text
from .calls import Call, Op, Script, drive_sync

T = TypeVar("T")

DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 16
MAX_BLOCK_SECONDS = 60.0  # the longest blocking pop: a wait for a job's end
BLOCKING_SOCKET_TIMEOUT = MAX_BLOCK_SECONDS + 10.0

E = redis.exceptions
UNKNOWN_OUTCOME = (
    "the outcome of the command is unknown: it may have taken effect (an enqueue "
    "retried with the same idempotency key cannot add the job twice)"
)
_BUSY = (
    E.BusyLoadingError,
    E.ReadOnlyError,
    E.OutOfMemoryError,
    E.TryAgainError,
    E.ClusterDownError,
)
"""Redis refused the command for now (it did not run): loading, a read-only
replica, out of memory, a resharding; also ``BUSY`` (a script runs too long),
``CLUSTERDOWN`` and ``max number of clients reached``."""


def relay_error(
    exc: redis.RedisError, *, sent: bool, where: str = "Redis", secret: str | None = None
) -> RelayError:
    """The relay-trio error for redis-py's ``exc``; ``sent``: whether the command
    had been sent (False: it failed while getting a connection). ``where`` names
    the server in messages; ``secret`` (the password) is masked in them."""
    detail = redact_text(str(exc) or type(exc).__name__, [secret])
    if isinstance(exc, E.AuthenticationError | E.AuthorizationError):
        hint = "" if secret else ": it requires a password, and the URL gives none"
        return RedisUnavailable(
            f"Redis is unavailable: {where} refused the credentials{hint} ({detail})"
        )
    busy = isinstance(exc, _BUSY) or (
        isinstance(exc, E.ResponseError) and detail.startswith("BUSY ")
    )
    if busy or "max number of clients reached" in detail:
        return RedisUnavailable(
            f"Redis is unavailable: {where} cannot take commands now ({detail})"
        )
    if isinstance(exc, E.InvalidResponse):
        return RedisUnavailable(
            f"Redis is unavailable: {where} is not a Redis server, or not one this client "
            f"understands ({detail})"
        )
    if isinstance(exc, E.TimeoutError):
        if not sent:
            return RedisUnavailable(
                f"Redis is unavailable: no answer from {where} while connecting"
            )
        return RedisOutcomeUnknown(
            f"Redis is unavailable: no answer from {where} in time after the command was "
            f"sent; {UNKNOWN_OUTCOME}"
        )
    if isinstance(exc, E.ConnectionError):
        if not sent:
            return RedisUnavailable(f"Redis is unavailable: {detail}")
        return RedisOutcomeUnknown(
            f"Redis is unavailable: the connection to {where} was lost after the command was "
            f"sent ({detail}); {UNKNOWN_OUTCOME}"
        )
    if isinstance(exc, E.ResponseError):
        if not sent:  # HELLO unknown (Redis < 6), SELECT of a database that does not exist
            return RedisUnavailable(
                f"Redis is unavailable: {where} refused the connection handshake ({detail})"
            )
        return RedisCommandError(detail)
    return RedisCommandError(f"redis-py refused the command: {detail}")


_UNSENT = "_relay_unsent"


def was_sent(exc: BaseException) -> bool:
    return not getattr(exc, _UNSENT, False)


class _Pool(redis.BlockingConnectionPool):
    """Marks every error raised while handing out a connection (connecting, the
    handshake, the wait for a free one) as raised before the command was sent."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, _UNSENT, True)
            raise


class _RedisHandshake(AbstractConnection):
    """Mixed into the pool's connection class: a new connection must have met a
    Redis server (a map in answer to ``HELLO`` on RESP3, ``PONG`` to ``PING`` on
    RESP2) before a command is sent on it; anything else is ``InvalidResponse``.
    (An echo server, say, answers ``HELLO`` with a list, on which redis-py itself
    would fail with an ``AttributeError`` and keep the connection.)"""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self.handshake_metadata = None  # type: ignore[assignment]
        sock = self._sock
        try:
            if sock is not None:  # the handshake is part of connecting: its timeout
                sock.settimeout(self.socket_connect_timeout or self.socket_timeout)
            super().on_connect_check_health(check_health=check_health)
            hello = self.handshake_metadata
            if hello is None:  # RESP2: no HELLO was sent
                self.send_command("PING", check_health=False)
                reply = self.read_response()
                if reply not in (b"PONG", "PONG", True):
                    raise E.InvalidResponse("the answer to PING is not PONG")
            elif not isinstance(hello, dict):
                raise E.InvalidResponse("the answer to HELLO is not a map")
        except E.AuthenticationError as exc:
            # redis-py's own words for an answer to AUTH that is neither OK nor an
            # error reply (Redis answers a wrong password with WRONGPASS)
            if str(exc) == "Invalid Username or Password":
                raise E.InvalidResponse("the answer to AUTH is neither OK nor an error") from exc
            raise
        except redis.RedisError:
            raise
        except Exception as exc:  # redis-py choking on an answer no Redis gives
            raise E.InvalidResponse(f"unexpected answer ({type(exc).__name__})") from exc
        finally:
            if sock is not None and sock is self._sock:
                sock.settimeout(self.socket_timeout)


_HANDSHAKE_CLASSES: dict[type[Any], type[Any]] = {}


def _with_handshake(cls: type[Any]) -> type[Any]:
    if issubclass(cls, _RedisHandshake):
        return cls
    if cls not in _HANDSHAKE_CLASSES:
        _HANDSHAKE_CLASSES[cls] = type(f"Checked{cls.__name__}", (_RedisHandshake, cls), {})
    return _HANDSHAKE_CLASSES[cls]


def redis_url_problem(url: str) -> str | None:
    """Why redis-py could not use ``url`` (checked without connecting), or None.
    The reason never repeats the URL: it may hold a password."""
    try:
        parts = urlsplit(url)
        port = parts.port
        pool = redis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, E.RedisError) as exc:  # parse_url, protocol=5, ssl_cert_reqs=x ...
        reason = str(exc) or type(exc).__name__
        # not the value: with the "@" left out, a password reads as the port
        return reason.partition(" value as ")[0] if reason.startswith("Port ") else reason
    except TypeError as exc:  # a query parameter redis-py has no option for
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(exc))
        return f"unknown option {unknown[1]!r}" if unknown else str(exc)
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if port == 0:
        return "port 0 is not a port Redis listens on"
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        return "the path of a redis:// URL is a database number (/0, /1 ...)"
    return None


def connect(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> redis.Redis:
    """A redis-py client for ``url`` with explicit timeouts, no automatic retries
    and the handshake check; nothing connects yet. A URL redis-py cannot use is
    :class:`InvalidInput` (field ``redis_url``), checked without connecting."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise InvalidInput("redis_url", f"not a Redis URL ({problem})")
    pool = _Pool.from_url(
        url,
        max_connections=max_connections,
        timeout=connect_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
    )
    pool.connection_class = _with_handshake(pool.connection_class)
    return redis.Redis(connection_pool=pool)


def blocking_twin(client: redis.Redis, max_connections: int) -> redis.Redis:
    """A client on the same server for blocking pops: a pool of its own whose
    socket timeout (``BLOCKING_SOCKET_TIMEOUT``) exceeds the longest block."""
    kwargs = client.connection_pool.connection_kwargs
    pool = _Pool(  # type: ignore[no-untyped-call]
        connection_class=client.connection_pool.connection_class,
        max_connections=max_connections,
        **{**kwargs, "socket_timeout": BLOCKING_SOCKET_TIMEOUT},
    )
    return redis.Redis(connection_pool=pool)


def where(client: redis.Redis) -> str:
    """The server, as messages name it: ``host:port`` or the socket's path."""
    kwargs = client.connection_pool.connection_kwargs
    return str(
        kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    )


def _run_script(client: Any, step: Script) -> Any:
    script = step.script
    try:
        return client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        return client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)


def execute(
    client: redis.Redis, call: Call, errors: Callable[[redis.RedisError], RelayError]
) -> list[Any]:
    """Send ``call`` on ``client`` (blocking) and return its replies, in order.

    With ``call.inline_errors`` an error reply stands in the list as
    ``errors(reply)`` (one that says Redis cannot take commands now is raised
    instead); otherwise the first error reply is raised (as redis-py's)."""
    steps = call.steps
    if len(steps) == 1 and not call.transaction:
        step = steps[0]
        try:
            if isinstance(step, Script):
                return [_run_script(client, step)]
            return [client.execute_command(*step.args)]  # type: ignore[no-untyped-call]
        except redis.exceptions.ResponseError as exc:
            if not call.inline_errors or isinstance(errors(exc), RedisUnavailable):
                raise
            return [errors(exc)]
    pipe = client.pipeline(transaction=call.transaction)
    for step in steps:
        if isinstance(step, Script):
            script = step.script
            pipe.evalsha(script.sha, len(step.keys), *step.keys, *step.args)
        else:
            pipe.execute_command(*step.args)  # type: ignore[no-untyped-call]
    results: list[Any] = pipe.execute(raise_on_error=False)
    for index, value in enumerate(results):
        if isinstance(value, redis.exceptions.ResponseError):
            step = steps[index]
            if isinstance(step, Script) and isinstance(value, redis.exceptions.NoScriptError):
                results[index] = _run_script(client, step)
            elif not call.inline_errors:
                raise value
            else:
                error = errors(value)
                if isinstance(error, RedisUnavailable):  # busy, loading, read-only ...
                    raise value
                results[index] = error
    return results


class SyncIO:
    """The synchronous runtime's Redis I/O: :meth:`from_url`, then :meth:`close`.

    Thread-safe as redis-py's client is (a pool of connections). Blocking pops
    (waiting for a job's end) run on a pool of their own."""

    def __init__(self, client: redis.Redis, *, max_connections: int) -> None:
        self.client = client
        self.where = where(client)
        self._password: str | None = client.connection_pool.connection_kwargs.get("password")
        self._max_connections = max_connections
        self._blocking: redis.Redis | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> SyncIO:
        client = connect(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        return cls(client, max_connections=max_connections)

    def execute(self, call: Call) -> list[Any]:
        """Send ``call`` and return its replies; redis-py errors become relay-trio's."""
        client = self.client
        if call.block_s is not None:
            if self._blocking is None:
                self._blocking = blocking_twin(self.client, self._max_connections)
            client = self._blocking
        try:
            return execute(client, call, self.error)
        except redis.RedisError as exc:
            raise self.error(exc) from exc

    def drive(self, op: Op[T]) -> T:
        """Run operation ``op`` to its end."""
        return drive_sync(op, self.execute)

    def error(self, exc: redis.RedisError) -> RelayError:
        return relay_error(exc, sent=was_sent(exc), where=self.where, secret=self._password)

    def close(self) -> None:
        """Close every pooled connection."""
        self.client.connection_pool.disconnect()
        if self._blocking is not None:
            self._blocking.connection_pool.disconnect()
