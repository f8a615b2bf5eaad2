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

Errors: connection failures and timeouts become :class:`RedisUnavailable`,
error replies :class:`RedisCommandError`; redis-py's own retries are off,
because retrying a command that may have run is the caller's decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._errors import RedisCommandError, RedisUnavailable

T = TypeVar("T")

DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 16
MAX_BLOCK_SECONDS = 30.0
BLOCKING_SOCKET_TIMEOUT = MAX_BLOCK_SECONDS + 10.0


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
    loaded and re-run alone; they had no effect the first time.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
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
                    results[index] = RedisCommandError(str(value))
        return results


class RedisIO:
    """A redis-py client driven from Trio: :meth:`from_url`, then :meth:`aclose`."""

    def __init__(self, client: redis.Redis, *, max_connections: int) -> None:
        self.client = client
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
        call can keep its task waiting.
        """
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=connect_timeout,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
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
            batch = Batch(client)
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
            pool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RedisUnavailable(f"Redis is unavailable: {exc}") from exc

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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise RedisUnavailable(f"Redis is unavailable: {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            raise RedisCommandError(str(exc)) from exc
