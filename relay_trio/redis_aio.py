"""The asyncio runtime's one place for Redis I/O: :class:`AsyncIO`.

It runs a :class:`~relay_trio.calls.Call` on ``redis.asyncio``: one command or
script directly, several in one pipeline; a script that meets NOSCRIPT is
loaded and run again. Timeouts are explicit, redis-py's retries are off, and
every redis-py error becomes relay-trio's through the same mapping as the other
runtimes (:func:`relay_trio.redis_wire.relay_error`). Blocking pops (a wait
for a job's end) run on a pool of their own whose socket timeout exceeds the
longest block.

Cancellation: asyncio cancels at any await; a cancelled call may or may not
have run its command. A blocking pop consumes only a token, never a job.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._errors import InvalidInput, RedisUnavailable, RelayError
from .calls import Call, Op, Script
from .redis_sentinel import async_sentinel_client, is_sentinel_url, sentinel_where
from .redis_wire import (
    BLOCKING_SOCKET_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    redis_url_problem,
    relay_error,
)

T = TypeVar("T")


class _Pool(aioredis.BlockingConnectionPool):
    """Marks errors raised while handing out a connection as raised before the
    command was sent (see :func:`relay_trio.redis_wire.was_sent`)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            exc._relay_unsent = True  # type: ignore[attr-defined]
            raise


async def _run_script(client: aioredis.Redis, step: Script) -> Any:
    script = step.script
    try:
        return await client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)
    except redis.exceptions.NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)


class AsyncIO:
    """A ``redis.asyncio`` client: :meth:`from_url`, then :meth:`aclose`."""

    def __init__(self, url: str, client: aioredis.Redis, blocking: aioredis.Redis) -> None:
        self.client = client
        self._blocking = blocking
        kwargs = client.connection_pool.connection_kwargs
        self.where = sentinel_where(client) or str(
            kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        )
        self._password: str | None = kwargs.get("password")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> AsyncIO:
        """Clients for ``url`` (nothing connects yet); a URL redis-py cannot use is
        :class:`InvalidInput` (``redis_url``)."""
        problem = redis_url_problem(url)
        if problem is not None:
            raise InvalidInput("redis_url", f"not a Redis URL ({problem})")
        if is_sentinel_url(url):
            return cls(
                url,
                async_sentinel_client(
                    url,
                    socket_timeout=socket_timeout,
                    connect_timeout=connect_timeout,
                    max_connections=max_connections,
                ),
                async_sentinel_client(
                    url,
                    socket_timeout=BLOCKING_SOCKET_TIMEOUT,
                    connect_timeout=connect_timeout,
                    max_connections=max_connections,
                ),
            )
        options: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        pool = _Pool.from_url(url, socket_timeout=socket_timeout, **options)
        blocking = _Pool.from_url(url, socket_timeout=BLOCKING_SOCKET_TIMEOUT, **options)
        return cls(
            url,
            aioredis.Redis(connection_pool=pool),
            aioredis.Redis(connection_pool=blocking),
        )

    async def execute(self, call: Call) -> list[Any]:
        """Send ``call`` (one round trip) and return its replies."""
        client = self._blocking if call.block_s is not None else self.client
        try:
            return await self._execute(client, call)
        except redis.RedisError as exc:
            raise self.error(exc) from exc

    async def _execute(self, client: aioredis.Redis, call: Call) -> list[Any]:
        steps = call.steps
        if len(steps) == 1 and not call.transaction:
            step = steps[0]
            try:
                if isinstance(step, Script):
                    return [await _run_script(client, step)]
                return [await client.execute_command(*step.args)]  # type: ignore[no-untyped-call]
            except redis.exceptions.ResponseError as exc:
                if not call.inline_errors or isinstance(self.error(exc), RedisUnavailable):
                    raise
                return [self.error(exc)]
        pipe = client.pipeline(transaction=call.transaction)
        for step in steps:
            if isinstance(step, Script):
                script = step.script
                pipe.evalsha(script.sha, len(step.keys), *step.keys, *step.args)
            else:
                pipe.execute_command(*step.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for index, value in enumerate(results):
            if isinstance(value, redis.exceptions.ResponseError):
                step = steps[index]
                if isinstance(step, Script) and isinstance(value, redis.exceptions.NoScriptError):
                    results[index] = await _run_script(client, step)
                elif not call.inline_errors:
                    raise value
                else:
                    error = self.error(value)
                    if isinstance(error, RedisUnavailable):
                        raise value
                    results[index] = error
        return results

    async def drive(self, op: Op[T]) -> T:
        """Run operation ``op`` to its end; a clean-up call it yields after an error
        runs even if this task is being cancelled."""
        try:
            call = next(op)
            while True:
                try:
                    replies = await self.execute(call)
                except BaseException as exc:
                    call = op.throw(exc)
                    replies = await asyncio.shield(self.execute(call))
                    call = op.send(replies)
                else:
                    call = op.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def error(self, exc: redis.RedisError) -> RelayError:
        sent = not getattr(exc, "_relay_unsent", False)
        return relay_error(exc, sent=sent, where=self.where, secret=self._password)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self.client.aclose()
        await self._blocking.aclose()
        await self.client.connection_pool.disconnect()
        await self._blocking.connection_pool.disconnect()
