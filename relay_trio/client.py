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
from typing import Any

from ._errors import DuplicateJob
from .broker import Broker, open_broker
from .job import Job, JobSpec
from .results import EnqueueResult, QueueStats


class RelayClient:
    """Use :func:`open_client`; or wrap a :class:`Broker` you already have."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def enqueue(self, queue: str, payload: bytes | str, **options: Any) -> str:
        """Enqueue one job and return its id. ``options``: ``priority``,
        ``delay_ms`` or ``ready_at``, ``idempotency_key``, ``max_retries``,
        ``timeout_ms`` (per attempt; default: the worker's for the queue).
        Raises :class:`DuplicateJob` (with ``existing_id``) for a taken key."""
        result = await self.broker.enqueue(queue, payload, **options)
        if result.duplicate:
            raise DuplicateJob(queue, options.get("idempotency_key") or "", result.id)
        return result.id

    async def enqueue_many(
        self, queue: str, payloads: Sequence[bytes | str | JobSpec], **options: Any
    ) -> list[EnqueueResult]:
        """Enqueue up to 10 000 jobs in one round trip. Each item is a payload
        (sharing ``options``) or a :class:`JobSpec` of its own. Duplicates are
        reported per job (``duplicate=True``), not raised."""
        specs = [p if isinstance(p, JobSpec) else self.broker.spec(p, **options) for p in payloads]
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
async def open_client(url: str, **options: Any) -> AsyncIterator[RelayClient]:
    """A :class:`RelayClient` on Redis ``url`` for the block (``prefix=`` and
    other :func:`open_broker` options pass through)."""
    async with open_broker(url, **options) as broker:
        yield RelayClient(broker)
