"""What configures a worker, and what it counts: no I/O here.

:class:`QueueHandler` (a queue, its handler, its concurrency and default
timeout), :class:`WorkerConfig` (timing and batching) and :class:`WorkerStats`.
Every number has a documented range; a value outside it is a ``ValueError``
naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .job import Job, validate_queue_name

Handler = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]


MAX_CONCURRENCY = 10_000
MAX_JOB_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class QueueHandler:
    """``handler`` runs each job of ``queue``, at most ``concurrency`` (1-10 000) at
    a time. ``timeout`` (seconds, up to a week; ``None`` = none) bounds each
    attempt of a job that was enqueued without a ``timeout_ms`` of its own."""

    queue: str
    handler: Handler
    concurrency: int = 10
    timeout: float | None = None

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1-{MAX_CONCURRENCY}, got {self.concurrency}")
        if self.timeout is not None and not 0 < self.timeout <= MAX_JOB_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_JOB_TIMEOUT:g}] s, got {self.timeout}")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    visibility_ms: int = 30_000
    grace_period: float = 10.0
    reap_interval: float = 5.0
    promote_interval: float = 1.0
    idle_wait: float = 2.0
    """Longest wait for a wake-up hint on an empty queue (the hint ends it early)."""
    max_claim: int = 100
    """Most jobs claimed in one call."""
    max_ack_batch: int = 500
    error_retry_delay: float = 1.0
    """Pause before a loop retries after Redis failed."""

    def __post_init__(self) -> None:
        checks = {
            "visibility_ms": 100 <= self.visibility_ms <= 24 * 3600 * 1000,
            "grace_period": 0 <= self.grace_period <= 24 * 3600,
            "reap_interval": 0.001 <= self.reap_interval <= 3600,
            "promote_interval": 0.001 <= self.promote_interval <= 3600,
            "idle_wait": 0.01 <= self.idle_wait <= 30,
            "max_claim": 1 <= self.max_claim <= 1000,
            "max_ack_batch": 1 <= self.max_ack_batch <= 10_000,
            "error_retry_delay": 0 <= self.error_retry_delay <= 3600,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"WorkerConfig: out of range: {', '.join(bad)}")


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    """Attempts that raised (any exception) or timed out: nacked."""
    timed_out: int = 0
    cancelled: int = 0
    """Attempts cancelled by the shutdown: released."""
    released: int = 0
    acked: int = 0
    stale_acks: int = 0
    reclaimed: int = 0
    """Claims that returned a job this worker already held: the new lease was adopted."""
    running: dict[str, int] = field(default_factory=dict)
