"""The broker's value types: what its operations return, and its event hook. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .job import Job, JobState


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """``id`` is the new job, or for a duplicate the job that already holds the key.

    ``state`` is the new job's state, or the existing job's state for a
    duplicate (``None`` once that job is gone: acked or deleted).
    """

    id: str
    state: JobState | None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of :meth:`Broker.claim`: jobs (maybe none), and why there were none."""

    jobs: list[Job] = field(default_factory=list)
    paused: bool = False
    retry_after_ms: int = 0
    """Rate limited: when the next token will be there (0 when not limited)."""


@dataclass(frozen=True, slots=True)
class NackResult:
    outcome: str
    """``"retry"`` (delayed by ``delay_ms``), ``"dead"`` (in the DLQ) or
    ``"stale"`` (the lease was lost: nothing changed)."""
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReapResult:
    requeued: int = 0
    dead: int = 0
    dlq_trimmed: int = 0
    """Dead jobs dropped in the same pass by the DLQ's cap or TTL."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: float
    """Jobs per second refilled into the bucket."""
    burst: int
    """Bucket size: how many jobs may start at once after a quiet spell."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    ready: int
    inflight: int
    delayed: int
    dlq: int
    processed_total: int = 0
    dead_total: int = 0
    paused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ready": self.ready,
            "inflight": self.inflight,
            "delayed": self.delayed,
            "dlq": self.dlq,
            "processed_total": self.processed_total,
            "dead_total": self.dead_total,
            "paused": self.paused,
        }


class BrokerEvents(Protocol):
    """What the broker reports after each operation (e.g. to Prometheus metrics).

    ``event`` is one of enqueued, deduplicated, claimed, processed, retried,
    dead, reaped, promoted, released, dlq_trimmed, cancelled (a job ended cancelled:
    cancelled while queued, aborted, or reaped after its abort was requested),
    abort_requested. Called on the thread of the runtime's caller; must not block.
    """

    def count(self, event: str, queue: str, n: int = 1) -> None: ...

    def observe_latency(self, queue: str, seconds: Sequence[float]) -> None: ...


class NoEvents:
    def count(self, event: str, queue: str, n: int = 1) -> None:
        pass

    def observe_latency(self, queue: str, seconds: Sequence[float]) -> None:
        pass
