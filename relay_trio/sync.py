"""relay-trio from plain Python: :class:`Client` (no event loop, no Trio).

For Django, Flask, scripts and cron jobs: the producer operations of
:class:`relay_trio.RelayClient` (enqueue, enqueue_many, task calls, results,
cancel, stats, the DLQ, schedules) with the same scripts, validation and typed
errors; each is a core operation of :class:`~relay_trio.broker_core.BrokerCore`
driven by :class:`~relay_trio.redis_sync.SyncIO` (blocking redis-py). A client
is thread-safe (redis-py's connection pool), and a context manager::

    with relay_trio.sync.Client("redis://localhost:6379/0") as client:
        job_id = client.enqueue("emails", b"hello")
        print(client.result("emails", job_id, timeout=10))
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
from .redis_sync import SyncIO
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
        self.io = SyncIO.from_url(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )

    def run(self, op: Op[T]) -> T:
        """Drive one core operation (``client.core.<name>(...)``) to its end."""
        return self.io.drive(op)

    def enqueue(self, queue: str, payload: bytes | str, **options: Unpack[EnqueueOptions]) -> str:
        """Enqueue one job; its id. :class:`DuplicateJob` for a taken idempotency key."""
        return self.io.drive(self.core.enqueue_strict(queue, payload, **options)).id

    def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[bytes | str | JobSpec],
        **options: Unpack[EnqueueOptions],
    ) -> list[EnqueueResult]:
        """Up to 10 000 jobs in one round trip (duplicates reported, not raised)."""
        return self.io.drive(self.core.enqueue_many(queue, self.core.specs(payloads, **options)))

    def spec(self, payload: bytes | str, **options: Unpack[EnqueueOptions]) -> JobSpec:
        """A job of its own for :meth:`enqueue_many` (an idempotency key, an id)."""
        return self.core.spec(payload, **options)

    def result(self, queue: str, job_id: str, timeout: float = 0.0) -> object:
        """The job's return value, waiting up to ``timeout`` s for it (one blocking
        wait, woken by the job's end): :class:`JobFailed`, :class:`ResultTimeout`,
        :class:`JobNotFound`."""
        return self.io.drive(self.core.result(queue, job_id, timeout))

    def cancel(self, queue: str, job_id: str) -> JobState:
        """Cancel a queued job or abort a running one: its state now."""
        return self.io.drive(self.core.cancel(queue, job_id))

    def get_job(self, queue: str, job_id: str) -> Job:
        return self.io.drive(self.core.get_job(queue, job_id))

    def queues(self) -> list[str]:
        return self.io.drive(self.core.queues())

    def stats(self, queue: str) -> QueueStats:
        return self.io.drive(self.core.stats(queue))

    def dlq(self, queue: str, limit: int = 50, offset: int = 0) -> list[Job]:
        return self.io.drive(self.core.dlq_list(queue, limit, offset))

    def requeue(self, queue: str, job_id: str) -> None:
        self.io.drive(self.core.dlq_requeue(queue, job_id))

    def add_schedule(self, schedule: Schedule) -> bool:
        """Store a cron schedule (replacing one of its name): True if new."""
        return self.io.drive(self.core.put_schedule(schedule))

    def schedules(self) -> list[Schedule]:
        return [s for s, _, _ in self.io.drive(self.core.list_schedules())]

    def remove_schedule(self, name: str) -> bool:
        return self.io.drive(self.core.remove_schedule(name))

    def close(self) -> None:
        """Close the connections (the client may not be used afterwards)."""
        self.io.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
