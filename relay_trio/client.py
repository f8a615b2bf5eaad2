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
from datetime import datetime

from . import job as jobmod
from .broker import (
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_CAP_MS,
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_DLQ_MAX,
    DEFAULT_DLQ_TTL_S,
    DEFAULT_VISIBILITY_MS,
    Broker,
    open_broker,
)
from .job import Job, JobSpec
from .keys import DEFAULT_PREFIX
from .redis_io import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SOCKET_TIMEOUT
from .results import BrokerEvents, EnqueueResult, QueueStats


class RelayClient:
    """Use :func:`open_client`; or wrap a :class:`Broker` you already have."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue(
        self,
        queue: str,
        payload: bytes | str,
        *,
        priority: int = jobmod.DEFAULT_PRIORITY,
        delay_ms: int = 0,
        ready_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_retries: int = jobmod.DEFAULT_MAX_RETRIES,
        timeout_ms: int | None = None,
        job_id: str | None = None,
    ) -> str:
        """Enqueue one job and return its id (the options are
        :meth:`Broker.enqueue`'s; ``timeout_ms`` bounds each attempt, default: the
        worker's for the queue). Raises :class:`DuplicateJob` (with
        ``existing_id``) for a taken key."""
        result = await self.broker.enqueue_strict(
            queue,
            payload,
            priority=priority,
            delay_ms=delay_ms,
            ready_at=ready_at,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            job_id=job_id,
        )
        return result.id

    async def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[bytes | str | JobSpec],
        *,
        priority: int = jobmod.DEFAULT_PRIORITY,
        delay_ms: int = 0,
        ready_at: datetime | None = None,
        max_retries: int = jobmod.DEFAULT_MAX_RETRIES,
        timeout_ms: int | None = None,
    ) -> list[EnqueueResult]:
        """Enqueue up to 10 000 jobs in one round trip. Each item is a payload
        (sharing the options, which are :meth:`Broker.enqueue`'s) or a
        :class:`JobSpec` of its own (from :meth:`Broker.spec`: an idempotency
        key, an id). Duplicates are reported per job (``duplicate=True``), not
        raised."""
        specs = [
            p
            if isinstance(p, JobSpec)
            else self.broker.spec(
                p,
                priority=priority,
                delay_ms=delay_ms,
                ready_at=ready_at,
                max_retries=max_retries,
                timeout_ms=timeout_ms,
            )
            for p in payloads
        ]
        return await self.broker.enqueue_many(queue, specs)

    async def queues(self) -> list[str]:
        return await self.broker.queues()

    async def stats(self, queue: str) -> QueueStats:
        return await self.broker.stats(queue)

    async def get_job(self, queue: str, job_id: str) -> Job:
        """Raises :class:`JobNotFound` once the job is acked (or never existed)."""
        return await self.broker.get_job(queue, job_id)

    async def dlq(self, queue: str, limit: int = 50, offset: int = 0) -> list[Job]:
        return await self.broker.dlq_list(queue, limit, offset)

    async def requeue(self, queue: str, job_id: str) -> None:
        """Move a dead job back to ready; :class:`JobNotFound` if not in the DLQ."""
        await self.broker.dlq_requeue(queue, job_id)


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
        events=events,
    ) as broker:
        yield RelayClient(broker)
