"""The broker: every queue operation, each one atomic in Redis.

Every state change that touches more than one key is one Lua script from
``relay_trio/lua/`` (each names its KEYS and ARGV in a header). Deadlines and
scores come from the Redis server's clock, read inside the scripts, so clock
skew between hosts cannot reap a live job early. Every key of a queue carries
the ``{queue}`` hash tag; no operation ever SCANs the keyspace.

Delivery is at-least-once: a claimed job is leased for a visibility timeout; if
it is neither acked nor extended by then, :meth:`Broker.reap` gives it back to
``ready``. ``ack``, ``nack`` and ``extend`` act only while the caller's lease is
still the job's lease, so a late answer from a worker whose job was reaped and
claimed again never touches the new claim.

The logic is :class:`~relay_trio.broker_core.BrokerCore`'s (no I/O); this
class is the Trio runtime's thin layer over it: each method drives one core
operation through :class:`~relay_trio.redis_io.RedisIO` (threads).

Cancellation: a broker call that is cancelled still finishes its Redis command
(see :mod:`relay_trio.redis_io`). A claim whose result the caller never used
leaves its jobs in flight; they return to ``ready`` at their deadline. Nothing
is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, Unpack

from . import job as jobmod
from .broker_admin import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    JOBS_PAGE_DEFAULT,
    JOBS_PAGE_MAX,
    LISTED_STATES,
    MAX_DLQ_OFFSET,
    RATE_MAX,
    RATE_MIN,
    SWEEP_LIMIT,
)
from .broker_core import (
    DEFAULT_BACKOFF_BASE_MS,
    DEFAULT_BACKOFF_CAP_MS,
    DEFAULT_DEDUP_TTL_S,
    DEFAULT_DLQ_MAX,
    DEFAULT_DLQ_TTL_S,
    DEFAULT_RESULT_TTL_S,
    DEFAULT_VISIBILITY_MS,
    BrokerCore,
)
from .broker_jobs import (
    ENQUEUE_CHUNK,
    MAX_CLAIM,
    MAX_ENQUEUE_MANY,
    MAX_VISIBILITY_MS,
    RELEASED_TEXT,
)
from .broker_workers import WorkerInfo
from .calls import Op
from .job import EnqueueOptions, Job, JobSpec, JobState
from .keys import DEFAULT_PREFIX
from .redis_io import RedisIO
from .redis_wire import DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SOCKET_TIMEOUT
from .results import (
    BrokerEvents,
    Claim,
    EnqueueResult,
    NackResult,
    QueueStats,
    RateLimit,
    ReapResult,
)
from .schedules import Schedule

T = TypeVar("T")


class Broker:
    """Queue operations on one Redis, from Trio: :func:`open_broker`, or
    :meth:`from_url`, or wrap a :class:`RedisIO` of your own.

    The broker holds no state of its own beyond configuration (``core``): any
    number of brokers, in any number of processes, may share one Redis. Each
    method's contract is its core operation's (see
    :class:`~relay_trio.broker_jobs.JobOps`,
    :class:`~relay_trio.broker_admin.QueueAdmin`,
    :class:`~relay_trio.broker_schedules.ScheduleOps`).
    """

    def __init__(
        self,
        io: RedisIO,
        *,
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
    ) -> None:
        """The settings are :class:`~relay_trio.broker_core.BrokerCore`'s (each
        with its range, :class:`ConfigError` outside it)."""
        self.io = io
        self.core = BrokerCore(
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
        )
        self.keys = self.core.keys
        self.events = self.core.events

    @classmethod
    def from_url(
        cls,
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
    ) -> Broker:
        """A broker on Redis ``url``; nothing connects until the first call, and
        :meth:`aclose` closes its connections (:func:`open_broker` does both).

        The connection options go to :meth:`RedisIO.from_url` (``socket_timeout``
        bounds every command, ``connect_timeout`` every connect, in seconds;
        ``max_connections`` the pool), the rest to the constructor. A URL
        redis-py cannot use is :class:`InvalidInput` (``redis_url``)."""
        io = RedisIO.from_url(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        return cls(
            io,
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
        )

    async def run(self, op: Op[T]) -> T:
        """Drive one core operation (``broker.core.<name>(...)``) to its end."""
        return await self.io.drive(op)

    @property
    def max_payload_bytes(self) -> int:
        return self.core.max_payload_bytes

    @property
    def visibility_ms(self) -> int:
        return self.core.visibility_ms

    @property
    def result_ttl_s(self) -> int:
        return self.core.result_ttl_s

    # -- jobs ---------------------------------------------------------------------

    def spec(self, payload: object, **options: Unpack[EnqueueOptions]) -> JobSpec:
        return self.core.spec(payload, **options)

    async def enqueue(
        self, queue: str, payload: object, **options: Unpack[EnqueueOptions]
    ) -> EnqueueResult:
        return await self.io.drive(self.core.enqueue(queue, payload, **options))

    async def enqueue_strict(
        self, queue: str, payload: object, **options: Unpack[EnqueueOptions]
    ) -> EnqueueResult:
        return await self.io.drive(self.core.enqueue_strict(queue, payload, **options))

    async def enqueue_many(self, queue: str, specs: Sequence[JobSpec]) -> list[EnqueueResult]:
        return await self.io.drive(self.core.enqueue_many(queue, specs))

    async def claim(self, queue: str, n: int = 1, *, visibility_ms: int | None = None) -> Claim:
        return await self.io.drive(self.core.claim(queue, n, visibility_ms=visibility_ms))

    async def ack(self, job: Job, result: object = None) -> bool:
        return await self.io.drive(self.core.ack(job, result))

    async def ack_many(
        self, jobs: Sequence[Job], results: Sequence[object] | None = None, *, encoded: bool = False
    ) -> list[bool]:
        return await self.io.drive(self.core.ack_many(jobs, results, encoded=encoded))

    async def nack(self, job: Job, error: str = "", *, dead: bool = False) -> NackResult:
        return await self.io.drive(self.core.nack(job, error, dead=dead))

    async def release(self, job: Job) -> bool:
        return await self.io.drive(self.core.release(job))

    async def release_many(self, jobs: Sequence[Job], text: str = RELEASED_TEXT) -> list[bool]:
        return await self.io.drive(self.core.release_many(jobs, text))

    async def extend(self, job: Job, visibility_ms: int | None = None) -> bool:
        return await self.io.drive(self.core.extend(job, visibility_ms))

    async def extend_many(
        self, jobs: Sequence[Job], visibility_ms: int | None = None
    ) -> list[bool]:
        return await self.io.drive(self.core.extend_many(jobs, visibility_ms))

    async def cancel(self, queue: str, job_id: str) -> JobState:
        return await self.io.drive(self.core.cancel(queue, job_id))

    async def aborts(self, queues: Sequence[str]) -> dict[str, set[str]]:
        return await self.io.drive(self.core.aborts(queues))

    async def finish_abort(self, job: Job) -> bool:
        return await self.io.drive(self.core.finish_abort(job))

    async def wait_job(self, queue: str, job_id: str, timeout: float) -> Job:  # noqa: ASYNC109
        return await self.io.drive(self.core.wait_job(queue, job_id, timeout))

    async def get_job(self, queue: str, job_id: str) -> Job:
        return await self.io.drive(self.core.get_job(queue, job_id))

    async def wait_for_work(self, queue: str, block_seconds: float) -> bool:
        return await self.io.drive(self.core.wait_for_work(queue, block_seconds))

    def reserve_waiters(self, n: int) -> None:
        """Make room for ``n`` more tasks in :meth:`wait_for_work` at once (a worker
        reserves one per queue it serves), so that no wait queues behind another
        for a connection. Reservations last as long as the broker."""
        self.io.reserve_waiters(n)

    # -- sweeps, reading, the DLQ, admin -------------------------------------------

    async def reap(self, queue: str, limit: int = SWEEP_LIMIT) -> ReapResult:
        return await self.io.drive(self.core.reap(queue, limit))

    async def promote(self, queue: str, limit: int = SWEEP_LIMIT) -> int:
        return await self.io.drive(self.core.promote(queue, limit))

    async def queues(self) -> list[str]:
        return await self.io.drive(self.core.queues())

    async def stats(self, queue: str) -> QueueStats:
        return await self.io.drive(self.core.stats(queue))

    async def stats_many(
        self, queues: Sequence[str], *, skip_errors: bool = False
    ) -> list[QueueStats]:
        return await self.io.drive(self.core.stats_many(queues, skip_errors=skip_errors))

    async def snapshot(self) -> list[QueueStats]:
        return await self.io.drive(self.core.snapshot())

    async def server_time_ms(self) -> int:
        return await self.io.drive(self.core.server_time_ms())

    async def dlq_list(
        self, queue: str, limit: int = DLQ_PAGE_DEFAULT, offset: int = 0
    ) -> list[Job]:
        return await self.io.drive(self.core.dlq_list(queue, limit, offset))

    async def jobs_page(
        self, queue: str, state: str, limit: int = JOBS_PAGE_DEFAULT, offset: int = 0
    ) -> list[Job]:
        return await self.io.drive(self.core.jobs_page(queue, state, limit, offset))

    async def dlq_requeue(self, queue: str, job_id: str) -> None:
        await self.io.drive(self.core.dlq_requeue(queue, job_id))

    async def dlq_delete(self, queue: str, job_id: str) -> None:
        await self.io.drive(self.core.dlq_delete(queue, job_id))

    async def dlq_requeue_all(self, queue: str) -> int:
        return await self.io.drive(self.core.dlq_requeue_all(queue))

    async def dlq_purge(self, queue: str) -> int:
        return await self.io.drive(self.core.dlq_purge(queue))

    async def pause(self, queue: str) -> None:
        await self.io.drive(self.core.pause(queue))

    async def resume(self, queue: str) -> None:
        await self.io.drive(self.core.resume(queue))

    async def set_rate_limit(self, queue: str, rate: float, burst: int) -> None:
        await self.io.drive(self.core.set_rate_limit(queue, rate, burst))

    async def clear_rate_limit(self, queue: str) -> None:
        await self.io.drive(self.core.clear_rate_limit(queue))

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        return await self.io.drive(self.core.get_rate_limit(queue))

    async def delete_queue(self, queue: str, *, force: bool = False) -> int:
        return await self.io.drive(self.core.delete_queue(queue, force=force))

    # -- schedules (the store of relay_trio.scheduler) ----------------------------------

    async def put_schedule(self, schedule: Schedule) -> bool:
        return await self.io.drive(self.core.put_schedule(schedule))

    async def get_schedule(self, name: str) -> Schedule | None:
        return await self.io.drive(self.core.get_schedule(name))

    async def remove_schedule(self, name: str) -> bool:
        return await self.io.drive(self.core.remove_schedule(name))

    async def list_schedules(self) -> list[tuple[Schedule, int | None, int]]:
        return await self.io.drive(self.core.list_schedules())

    async def fire_schedule(self, schedule: Schedule, fire_ms: int) -> bool:
        return await self.io.drive(self.core.fire_schedule(schedule, fire_ms))

    # -- the worker registry ----------------------------------------------------------

    async def beat_worker(self, worker_id: str, info: dict[str, Any], ttl_ms: int) -> int:
        return await self.io.drive(self.core.beat_worker(worker_id, info, ttl_ms))

    async def leave_worker(self, worker_id: str) -> None:
        await self.io.drive(self.core.leave_worker(worker_id))

    async def workers(self) -> list[WorkerInfo]:
        return await self.io.drive(self.core.workers())

    # -- the connection -------------------------------------------------------------

    async def ping(self) -> None:
        """Check that Redis answers (one ``PING``): :class:`RedisUnavailable` (or
        another :class:`RelayError`) if it does not."""
        await self.io.ping()

    async def aclose(self) -> None:
        """Close every pooled connection; calls still running finish first."""
        await self.io.aclose()


@asynccontextmanager
async def open_broker(
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
) -> AsyncIterator[Broker]:
    """A :class:`Broker` on ``url`` for the duration of the block (the options are
    :meth:`Broker.from_url`'s); its connections are closed on exit."""
    broker = Broker.from_url(
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
    )
    try:
        yield broker
    finally:
        await broker.aclose()


__all__ = [
    "BURST_MAX",
    "DLQ_PAGE_DEFAULT",
    "DLQ_PAGE_MAX",
    "ENQUEUE_CHUNK",
    "JOBS_PAGE_DEFAULT",
    "JOBS_PAGE_MAX",
    "LISTED_STATES",
    "MAX_CLAIM",
    "MAX_DLQ_OFFSET",
    "MAX_ENQUEUE_MANY",
    "MAX_VISIBILITY_MS",
    "RATE_MAX",
    "RATE_MIN",
    "RELEASED_TEXT",
    "SWEEP_LIMIT",
    "Broker",
    "BrokerEvents",
    "Claim",
    "EnqueueResult",
    "NackResult",
    "QueueStats",
    "RateLimit",
    "ReapResult",
    "open_broker",
]
