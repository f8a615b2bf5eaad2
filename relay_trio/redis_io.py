"""The one place where Redis calls cross into threads.

redis-py has no Trio support, so every command runs in a worker thread through
:func:`trio.to_thread.run_sync`, gated by a :class:`trio.CapacityLimiter` the
size of the connection pool (a thread never waits for a connection).

Cancellation: calls are **not** abandoned on cancel. A cancelled task waits
for its command to finish (bounded by the socket timeout) and then sees the
cancellation at its next checkpoint, so a command that consumes data (a claim)
is never left half-observed by Python: whatever it did to Redis is what the
scripts allow — a claimed job stays in flight under its lease and goes back to
``ready`` when the visibility deadline passes. Only commands that consume
nothing (a wake-up hint) may use :meth:`RedisIO.run_abandonable`.

Errors: every redis-py exception becomes one of relay-trio's (see
:func:`relay_error`), chained, its message free of the password; redis-py's own
retries are off, because retrying a command that may have run is the caller's
decision. Failures before a command was sent (refused, no answer while
connecting, credentials refused, a server that is not Redis) are
:class:`RedisUnavailable`; a timeout or a lost connection after it was sent is
:class:`RedisOutcomeUnknown`; error replies are :class:`RedisCommandError`. Each
new connection checks that it speaks to a Redis server (its answer to ``HELLO``,
or to ``PING`` on RESP2) before any command is sent on it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
import trio
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

T = TypeVar("T")

DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 16
MAX_BLOCK_SECONDS = 30.0
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


def _sent(exc: BaseException) -> bool:
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


class LuaScript:
    """A script from ``relay_trio/lua/<name>.lua`` (behind ``_lib.lua``), run by SHA."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        lua = resources.files("relay_trio").joinpath("lua")
        # every script runs behind the shared helpers of _lib.lua (Redis has no includes)
        self.source = lua.joinpath("_lib.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def run(self, client: redis.Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run on ``client`` (in a worker thread), loading the script on NOSCRIPT."""
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


class Batch:
    """A non-transactional pipeline: one round trip, each command atomic on its own.

    Built in a worker thread by the function passed to :meth:`RedisIO.batch`.
    Script calls that meet NOSCRIPT (Redis restarted or flushed its scripts) are
    loaded and re-run alone; they had no effect the first time. ``errors`` maps
    an error reply to the relay-trio error kept in its place (``raise_on_error``
    off); one that says Redis cannot take commands now is raised instead.
    """

    def __init__(
        self,
        client: redis.Redis,
        errors: Callable[[redis.RedisError], RelayError] | None = None,
    ) -> None:
        self._client = client
        self._errors = errors or (lambda exc: relay_error(exc, sent=True))
        self._pipe = client.pipeline(transaction=False)
        self._scripts: dict[int, tuple[LuaScript, Sequence[str], Sequence[Any]]] = {}
        self._count = 0

    @property
    def pipe(self) -> redis.client.Pipeline:
        """The pipeline, for plain commands; each one queued counts as one result."""
        return self._pipe

    def command(self, name: str, *args: Any) -> None:
        self._pipe.execute_command(name, *args)  # type: ignore[no-untyped-call]
        self._count += 1

    def script(self, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> None:
        self._scripts[self._count] = (script, keys, args)
        self._pipe.evalsha(script.sha, len(keys), *keys, *args)
        self._count += 1

    def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        """Send everything; with ``raise_on_error=False`` an error reply stands in
        the list as a :class:`RedisCommandError` instead of being raised."""
        results: list[Any] = self._pipe.execute(raise_on_error=False)
        for index, value in enumerate(results):
            if isinstance(value, redis.exceptions.ResponseError):
                entry = self._scripts.get(index)
                if entry is not None and isinstance(value, redis.exceptions.NoScriptError):
                    script, keys, args = entry
                    results[index] = script.run(self._client, keys, args)
                elif raise_on_error:
                    raise value
                else:
                    error = self._errors(value)
                    if isinstance(error, RedisUnavailable):  # busy, loading, read-only ...
                        raise value
                    results[index] = error
        return results


class RedisIO:
    """A redis-py client driven from Trio: :meth:`from_url`, then :meth:`aclose`."""

    def __init__(self, client: redis.Redis, *, max_connections: int) -> None:
        self.client = client
        kwargs = client.connection_pool.connection_kwargs
        self.where: str = str(
            kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        )
        """The server, as messages name it: ``host:port`` or the socket's path."""
        self._password: str | None = kwargs.get("password")
        self._limiter = trio.CapacityLimiter(max_connections)
        self._scripts: dict[str, LuaScript] = {}
        self._blocking: redis.Redis | None = None
        self._blocking_limiter = trio.CapacityLimiter(max_connections)
        self._waiters = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisIO:
        """A client for ``url`` with explicit timeouts and no automatic retries.

        ``socket_timeout`` bounds every command, and so how long a cancelled
        call can keep its task waiting. A URL redis-py cannot use is
        :class:`InvalidInput` (field ``redis_url``), checked without connecting.
        """
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
        return cls(redis.Redis(connection_pool=pool), max_connections=max_connections)

    def script(self, name: str) -> LuaScript:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = LuaScript(name)
        return script

    async def run(self, fn: Callable[[redis.Redis], T]) -> T:
        """Run ``fn(client)`` in a worker thread; see the module doc for cancellation."""
        return await self._to_thread(fn, abandon_on_cancel=False)

    async def run_abandonable(self, fn: Callable[[redis.Redis], T]) -> T:
        """Like :meth:`run`, but a cancel returns at once and leaves the thread to finish.

        Only for commands that consume nothing a job depends on (a wake-up hint).
        """
        return await self._to_thread(fn, abandon_on_cancel=True)

    async def eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` by SHA in one round trip (two after a NOSCRIPT)."""
        script = self.script(name)
        return await self.run(lambda client: script.run(client, keys, args))

    async def batch(
        self, build: Callable[[Batch], None], *, raise_on_error: bool = True
    ) -> list[Any]:
        """Queue commands with ``build(batch)`` and send them in one round trip."""

        def go(client: redis.Redis) -> list[Any]:
            batch = Batch(client, self._error)
            build(batch)
            return batch.execute(raise_on_error=raise_on_error)

        return await self.run(go)

    def reserve_waiters(self, n: int) -> None:
        """Make room for ``n`` more tasks blocked in :meth:`wait_hint` at once (a
        worker reserves one per queue), so that no waiter queues behind another."""
        self._waiters += n
        if self._waiters > self._blocking_limiter.total_tokens:
            self._blocking_limiter.total_tokens = self._waiters
            self._blocking = None  # the next wait builds a pool of the new size

    async def wait_hint(self, key: str, block_seconds: float) -> bool:
        """BLPOP one wake-up hint from list ``key``, blocking up to ``block_seconds``.

        Runs on a pool of its own, whose socket timeout (``BLOCKING_SOCKET_TIMEOUT``)
        exceeds the longest block, and is abandoned on cancel: it can only take a
        hint, never a job, so a cancel returns at once and the thread finishes on
        its own within ``block_seconds``.
        """
        block = min(max(block_seconds, 0.01), MAX_BLOCK_SECONDS)
        if self._blocking is None:
            kwargs = self.client.connection_pool.connection_kwargs
            pool = _Pool(  # type: ignore[no-untyped-call]
                connection_class=self.client.connection_pool.connection_class,
                max_connections=self._blocking_limiter.total_tokens,
                **{**kwargs, "socket_timeout": BLOCKING_SOCKET_TIMEOUT},
            )
            self._blocking = redis.Redis(connection_pool=pool)
        blocking = self._blocking

        def pop(_: redis.Redis) -> Any:
            return blocking.blpop([key], timeout=block)

        try:
            return (
                await trio.to_thread.run_sync(
                    pop, self.client, limiter=self._blocking_limiter, abandon_on_cancel=True
                )
                is not None
            )
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    async def ping(self) -> bool:
        return bool(await self.run(lambda client: client.ping()))

    async def aclose(self) -> None:
        """Close every pooled connection; calls still running finish first."""
        await self.run(lambda client: client.connection_pool.disconnect())
        if self._blocking is not None:
            self._blocking.connection_pool.disconnect()

    async def _to_thread(self, fn: Callable[[redis.Redis], T], *, abandon_on_cancel: bool) -> T:
        try:
            return await trio.to_thread.run_sync(
                fn, self.client, limiter=self._limiter, abandon_on_cancel=abandon_on_cancel
            )
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: redis.RedisError) -> RelayError:
        return relay_error(exc, sent=_sent(exc), where=self.where, secret=self._password)
