"""What configures a worker, and what it counts: no I/O here.

:class:`QueueHandler` (a queue, its handler, its concurrency and default
timeout), :class:`WorkerConfig` (timing and batching) and :class:`WorkerStats`.
Every number has a documented range; a value outside it is a
:class:`~relay_trio.ConfigError` (a ``ValueError``) naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError
from ._setting import DAY, HOUR, WEEK, Range
from ._validate import in_range
from .broker import MAX_CLAIM, MAX_VISIBILITY_MS
from .job import Job, validate_queue_name

Handler = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]


MAX_CONCURRENCY = 10_000
MAX_JOB_TIMEOUT = WEEK

# The ranges of the numbers below: the command line and the RELAY_* variables
# (relay_trio.settings) use these very objects.
CONCURRENCY = Range(int, 1, MAX_CONCURRENCY)
JOB_TIMEOUT = Range(float, 0.0, MAX_JOB_TIMEOUT, exclude_low=True)
WORKER_CONFIG_RANGES: dict[str, Range[Any]] = {
    "visibility_ms": Range(int, 100, MAX_VISIBILITY_MS),
    "grace_period": Range(float, 0.0, DAY),
    "reap_interval": Range(float, 0.001, HOUR),
    "promote_interval": Range(float, 0.001, HOUR),
    "idle_wait": Range(float, 0.01, 30.0),
    "max_claim": Range(int, 1, MAX_CLAIM),
    "max_ack_batch": Range(int, 1, 10_000),
    "error_retry_delay": Range(float, 0.0, HOUR),
    "abort_check_interval": Range(float, 0.01, 60.0),
    "schedule_refresh": Range(float, 0.1, HOUR),
    # the registry keeps a worker for 3 intervals: 150 ms to an hour
    "presence_interval": Range(float, 0.05, 1200.0),
}


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
        in_range("concurrency", self.concurrency, CONCURRENCY, error=ConfigError)
        if self.timeout is not None:
            in_range("timeout", self.timeout, JOB_TIMEOUT, error=ConfigError)


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
    abort_check_interval: float = 0.5
    """How often, while jobs run, the worker asks which of them were aborted."""
    schedules: bool = True
    """Run the cron scheduler (every worker may: each fire time enqueues once)."""
    schedule_refresh: float = 5.0
    """How often the scheduler re-reads the schedules."""
    presence_interval: float = 2.0
    """How often the worker tells the registry of live workers that it is alive
    (and what it runs); it is dropped 3 intervals after its last word."""

    def __post_init__(self) -> None:
        for name, bounds in WORKER_CONFIG_RANGES.items():
            in_range(name, getattr(self, name), bounds, error=ConfigError)


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
    aborted: int = 0
    """Attempts cancelled because their job was aborted (cancel of a running job)."""
    rejected: int = 0
    """Jobs a handler rejected (:class:`~relay_trio.Reject`): dead-lettered at once."""
    running: dict[str, int] = field(default_factory=dict)
    """Jobs held per queue: running, or claimed and about to run."""
    claims: dict[str, int] = field(default_factory=dict)
    """Claim calls per queue (each takes up to ``max_claim`` jobs)."""
    heartbeat_failures: int = 0
    """Lease heartbeats (one round trip for every held job) that failed."""
    presence_failures: int = 0
    """Beats to the registry of live workers that failed."""
