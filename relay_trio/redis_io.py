"""The one place where the Trio runtime's Redis calls cross into threads.

redis-py has no Trio support, so every call runs :func:`relay_trio.redis_sync.execute`
in a worker thread through :func:`trio.to_thread.run_sync`, gated by a
:class:`trio.CapacityLimiter` the size of the connection pool (a thread never
waits for a connection). Clients, timeouts and the error mapping are
:mod:`relay_trio.redis_sync`'s.

Cancellation: calls are **not** abandoned on cancel. A cancelled task waits
for its command to finish (bounded by the socket timeout) and then sees the
cancellation at its next checkpoint, so a command that consumes data (a claim)
is never left half-observed by Python: whatever it did to Redis is what the
scripts allow — a claimed job stays in flight under its lease and goes back to
``ready`` when the visibility deadline passes. Only blocking pops of hints
(:attr:`Call.block_s <relay_trio.calls.Call.block_s>`: a wake-up hint, a
job-end token) are abandoned: they consume nothing a job depends on. A call an
operation makes to undo what it started after an error (see
:mod:`relay_trio.calls`) runs shielded from cancellation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis
import trio

from ._errors import RelayError
from .calls import Call, Op
from .redis_connect import Client
from .redis_sync import Target, execute
from .redis_wire import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    relay_error,
    was_sent,
)

T = TypeVar("T")


class RedisIO:
    """A redis-py client driven from Trio: :meth:`from_url`, then :meth:`aclose`.

    The URL may name any node of a Redis Cluster: the first call finds out (see
    :class:`~relay_trio.redis_sync.Target`) and from then on the calls go to the
    cluster's nodes."""

    def __init__(self, client: Client | Target, *, max_connections: int) -> None:
        self.target = client if isinstance(client, Target) else Target(client=client)
        self.where: str = self.target.where
        """The server, as messages name it: ``host:port`` or the socket's path."""
        self._password: str | None = self.target.password
        self._limiter = trio.CapacityLimiter(max_connections)
        self._blocking_limiter = trio.CapacityLimiter(max_connections)
        self._waiters = 0

    @property
    def client(self) -> Client:
        """The client as known so far (a cluster's once the first call found one)."""
        return self.target.current

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
        target = Target(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        return cls(target, max_connections=max_connections)

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(client)`` in a worker thread; see the module doc for cancellation."""
        return await self._to_thread(fn, abandon_on_cancel=False)

    async def execute(self, call: Call) -> list[Any]:
        """Send ``call`` (one round trip) and return its replies."""
        if call.block_s is not None:
            return await self._blocking_call(call)
        return await self.run(lambda client: execute(client, call, self._error))

    async def drive(self, op: Op[T]) -> T:
        """Run operation ``op`` to its end (see :mod:`relay_trio.calls`). A call the
        operation yields after an error was thrown into it (its clean-up) runs
        shielded, so a cancel cannot stop it half-way."""
        shielded = False
        try:
            call = next(op)
            while True:
                try:
                    with trio.CancelScope(shield=shielded):
                        replies = await self.execute(call)
                except BaseException as exc:
                    shielded = True
                    call = op.throw(exc)
                else:
                    call = op.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def reserve_waiters(self, n: int) -> None:
        """Make room for ``n`` more tasks blocked in a blocking pop at once (a
        worker reserves one per queue), so that no waiter queues behind another."""
        self._waiters += n
        if self._waiters > self._blocking_limiter.total_tokens:
            self._blocking_limiter.total_tokens = self._waiters  # the next wait: a bigger pool

    async def _blocking_call(self, call: Call) -> list[Any]:
        """A blocking pop, on a pool of its own whose socket timeout exceeds the
        longest block, abandoned on cancel: it can only take a hint, never a
        job, so a cancel returns at once and the thread finishes on its own."""
        size = int(self._blocking_limiter.total_tokens)
        try:
            return await trio.to_thread.run_sync(
                lambda: execute(self.target.blocking(size), call, self._error),
                limiter=self._blocking_limiter,
                abandon_on_cancel=True,
            )
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    async def ping(self) -> bool:
        return bool(await self.run(lambda client: client.ping()))

    async def aclose(self) -> None:
        """Close every pooled connection; calls still running finish first."""
        await trio.to_thread.run_sync(self.target.close, limiter=self._limiter)

    async def _to_thread(self, fn: Callable[[Any], T], *, abandon_on_cancel: bool) -> T:
        target = self.target
        try:
            return await trio.to_thread.run_sync(
                lambda: fn(target.client()),
                limiter=self._limiter,
                abandon_on_cancel=abandon_on_cancel,
            )
        except redis.RedisError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: redis.RedisError) -> RelayError:
        return relay_error(exc, sent=was_sent(exc), where=self.where, secret=self._password)
