"""The producer client: what an application needs to feed queues and watch them.

It talks to Redis directly, through the same broker scripts the workers use,
so producing needs no relay-trio server; every operation is one atomic step.
(Programs in other languages, or without Redis access, use the HTTP API.)
Duplicates and unknown jobs are typed errors: :class:`DuplicateJob`,
:class:`JobNotFound`; bad input is :class:`InvalidInput`; an unreachable Redis
is :class:`RedisUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Unpack

from . import job as jobmod
from .broker import Broker, open_broker
from .broker_core import (
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_CAP_MS,
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_DLQ_MAX,
    DEFAULT_DLQ_TTL_S,
    DEFAULT_RESULT_TTL_S,
    DEFAULT_VISIBILITY_MS,
)
from .job import EnqueueOptions, Job, JobSpec, JobState
from .keys import DEFAULT_PREFIX
from .redis_wire import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SOCKET_TIMEOUT
from .results import BrokerEvents, EnqueueResult, QueueStats
from .schedules import Schedule


class RelayClient:
    """Use :func:`open_client`; or wrap a :class:`Broker` you already have.

    The same operations, with the same errors, exist for plain Python
    (:class:`relay_trio.sync.Client`) and asyncio (:class:`relay_trio.aio.Client`)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue(
        self, queue: str, payload: bytes | str, **options: Unpack[EnqueueOptions]
    ) -> str:
        """Enqueue one job and return its id (``options``: see
        :class:`~relay_trio.job.EnqueueOptions`). Raises :class:`DuplicateJob`
        (with ``existing_id``) for a taken key."""
        return (await self.broker.enqueue_strict(queue, payload, **options)).id

    async def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[bytes | str | JobSpec],
        **options: Unpack[EnqueueOptions],
    ) -> list[EnqueueResult]:
        """Enqueue up to 10 000 jobs in one round trip. Each item is a payload
        (sharing the options) or a :class:`JobSpec` of its own (from
        :meth:`Broker.spec`: an idempotency key, an id). Duplicates are reported
        per job (``duplicate=True``), not raised."""
        specs = self.broker.core.specs(payloads, **options)
        return await self.broker.enqueue_many(queue, specs)

    async def result(self, queue: str, job_id: str, timeout: float = 0.0) -> object:  # noqa: ASYNC109
        """Wait up to ``timeout`` s for the job's result (see
        :meth:`~relay_trio.broker_jobs.JobOps.result`): :class:`JobFailed`,
        :class:`ResultTimeout`, :class:`JobNotFound`."""
        return await self.broker.run(self.broker.core.result(queue, job_id, timeout))

    async def cancel(self, queue: str, job_id: str) -> JobState:
        """Cancel a queued job, or abort a running one: its new state
        (``cancelled``, or ``inflight`` while the abort is pending)."""
        return await self.broker.cancel(queue, job_id)

    async def queues(self) -> list[str]:
        return await self.broker.queues()

    async def stats(self, queue: str) -> QueueStats:
        return await self.broker.stats(queue)

    async def get_job(self, queue: str, job_id: str) -> Job:
        """Raises :class:`JobNotFound` once the job is gone (acked without a result
        TTL, expired) or if it never existed."""
        return await self.broker.get_job(queue, job_id)

    async def dlq(self, queue: str, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.broker.dlq_list(queue, limit, offset)

    async def requeue(self, queue: str, job_id: str) -> None:
        """Move a dead job back to ready; :class:`JobNotFound` if not in the DLQ."""
        await self.broker.dlq_requeue(queue, job_id)

    async def add_schedule(self, schedule: Schedule) -> bool:
        """Store a cron schedule (replacing one of its name): True if new."""
        return await self.broker.put_schedule(schedule)

    async def schedules(self) -> list[Schedule]:
        return [s for s, _, _ in await self.broker.list_schedules()]

    async def remove_schedule(self, name: str) -> bool:
        return await self.broker.remove_schedule(name)


@asynccontextmanager
async def open_client(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    prefix: str = DEFAULT_PREFIX,
    dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
    max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
    backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
    backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
    visibility_ms: int = DEFAULT_VISIBILITY_MS,
    dlq_max: int = DEFAULT_DLQ_MAX,
    dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    events: BrokerEvents | None = None,
) -> AsyncIterator[RelayClient]:
    """A :class:`RelayClient` on Redis ``url`` for the block; the options are
    :func:`open_broker`'s (``prefix``, timeouts ...)."""
    async with open_broker(
        url,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        prefix=prefix,
        dedup_ttl_s=dedup_ttl_s,
        max_payload_bytes=max_payload_bytes,
        backoff_base_ms=backoff_base_ms,
        backoff_cap_ms=backoff_cap_ms,
        visibility_ms=visibility_ms,
        dlq_max=dlq_max,
        dlq_ttl_s=dlq_ttl_s,
        result_ttl_s=result_ttl_s,
        events=events,
    ) as broker:
        yield RelayClient(broker)
