"""relay-trio from asyncio: :class:`Client` (FastAPI, aiohttp, any asyncio program).

The producer operations of
:class:`relay_trio.RelayClient` (enqueue, enqueue_many, task calls, results,
cancel, stats, the DLQ, schedules) with the same scripts, validation and typed
errors; each is a core operation of :class:`~relay_trio.broker_core.BrokerCore`
driven by :class:`~relay_trio.redis_aio.AsyncIO` (``redis.asyncio``). Use it
from one event loop, as an async context manager::

    async with relay_trio.aio.Client("redis://localhost:6379/0") as client:
        job_id = await client.enqueue("emails", b"hello")
        print(await client.result("emails", job_id, timeout=10))

Cancellation: a cancelled call may or may not have run its command (as with
any asyncio Redis client); a blocking wait for a result consumes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar, Unpack

from . import job as jobmod
from .broker_core import DEFAULT_DEDUP_TTL_S, BrokerCore
from .calls import Op
from .job import EnqueueOptions, Job, JobSpec, JobState
from .keys import DEFAULT_PREFIX
from .redis_aio import AsyncIO
from .redis_wire import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SOCKET_TIMEOUT
from .results import EnqueueResult, QueueStats
from .schedules import Schedule

T = TypeVar("T")


class Client:
    """A producer on Redis ``url``; nothing connects until the first call.

    ``prefix`` must be the workers' (default ``relay``); ``socket_timeout``
    bounds every command and ``connect_timeout`` every connect (seconds);
    ``max_connections`` sizes the pool; ``max_payload_bytes`` and
    ``dedup_ttl_s`` are the broker's settings of those names. Every method
    raises :class:`~relay_trio.RelayError` subclasses only."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
        dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
    ) -> None:
        self.core = BrokerCore(
            prefix=prefix, max_payload_bytes=max_payload_bytes, dedup_ttl_s=dedup_ttl_s
        )
        self.io = AsyncIO.from_url(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )

    async def run(self, op: Op[T]) -> T:
        """Drive one core operation (``client.core.<name>(...)``) to its end."""
        return await self.io.drive(op)

    async def enqueue(
        self, queue: str, payload: bytes | str, **options: Unpack[EnqueueOptions]
    ) -> str:
        """Enqueue one job; its id. :class:`DuplicateJob` for a taken idempotency key."""
        return (await self.io.drive(self.core.enqueue_strict(queue, payload, **options))).id

    async def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[bytes | str | JobSpec],
        **options: Unpack[EnqueueOptions],
    ) -> list[EnqueueResult]:
        """Up to 10 000 jobs in one round trip (duplicates reported, not raised)."""
        return await self.io.drive(
            self.core.enqueue_many(queue, self.core.specs(payloads, **options))
        )

    def spec(self, payload: bytes | str, **options: Unpack[EnqueueOptions]) -> JobSpec:
        """A job of its own for :meth:`enqueue_many` (an idempotency key, an id)."""
        return self.core.spec(payload, **options)

    async def result(self, queue: str, job_id: str, timeout: float = 0.0) -> object:  # noqa: ASYNC109
        """The job's return value, waiting up to ``timeout`` s for it (one blocking
        wait, woken by the job's end): :class:`JobFailed`, :class:`ResultTimeout`,
        :class:`JobNotFound`."""
        return await self.io.drive(self.core.result(queue, job_id, timeout))

    async def cancel(self, queue: str, job_id: str) -> JobState:
        """Cancel a queued job or abort a running one: its state now."""
        return await self.io.drive(self.core.cancel(queue, job_id))

    async def get_job(self, queue: str, job_id: str) -> Job:
        return await self.io.drive(self.core.get_job(queue, job_id))

    async def queues(self) -> list[str]:
        return await self.io.drive(self.core.queues())

    async def stats(self, queue: str) -> QueueStats:
        return await self.io.drive(self.core.stats(queue))

    async def dlq(self, queue: str, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.io.drive(self.core.dlq_list(queue, limit, offset))

    async def requeue(self, queue: str, job_id: str) -> None:
        await self.io.drive(self.core.dlq_requeue(queue, job_id))

    async def add_schedule(self, schedule: Schedule) -> bool:
        """Store a cron schedule (replacing one of its name): True if new."""
        return await self.io.drive(self.core.put_schedule(schedule))

    async def schedules(self) -> list[Schedule]:
        return [s for s, _, _ in await self.io.drive(self.core.list_schedules())]

    async def remove_schedule(self, name: str) -> bool:
        return await self.io.drive(self.core.remove_schedule(name))

    async def aclose(self) -> None:
        """Close the connections (the client may not be used afterwards)."""
        await self.io.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
