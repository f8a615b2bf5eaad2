"""The worker's parts that hold no loop: one running job, one queue's lane, and the
small rules the loops share (see :mod:`relay_trio.worker` for the runtime)."""

from __future__ import annotations

import collections
import inspect
import logging
import math
import traceback

import trio

from . import logs
from ._errors import RelayError
from .broker_jobs import encode_result
from .job import Job
from .worker_config import Handler, QueueHandler

log = logging.getLogger("relay_trio.worker")


class Run:
    """One job this worker runs: its current claim (``job``, whose lease a later
    claim of the same job replaces), its lane and its timeout."""

    __slots__ = ("aborted", "claimed_at", "job", "lane", "scope", "timeout", "timeout_at")

    def __init__(self, job: Job, lane: Lane, claimed_at: float) -> None:
        self.job = job
        self.lane = lane
        self.timeout = job.timeout_ms / 1000 if job.timeout_ms else lane.handler.timeout
        self.timeout_at = math.inf
        self.scope: trio.CancelScope | None = None
        self.aborted = False
        self.claimed_at = claimed_at
        """Wall clock (Unix seconds) of the claim (read once per claim call)."""

    def abort(self) -> None:
        """The job was cancelled while it ran: stop its handler."""
        self.aborted = True
        if self.scope is not None:
            self.scope.cancel()

    def start(self) -> None:
        """The attempt's clock starts (when a runner takes the job)."""
        if self.timeout is not None:
            self.timeout_at = trio.current_time() + self.timeout


class Lane:
    """One queue's runtime: its free slots, and its claimed jobs not yet started.

    Runners are long-lived tasks that each run one job after another, taking
    the next from ``pending`` as soon as they finish one. ``spares`` counts the
    runners woken (or started) that have not yet looked at ``pending``: while
    jobs wait there, one is always kept, so a job waits only for a scheduler
    round, never for another job's handler. There are never more runners than
    ``concurrency``.

    Why not a plainer pool. Two were measured against this one with the worker
    benchmark's relay-trio driver (``tests/benchmarks/peers/relay_trio_driver.py``:
    20 000 no-op jobs, one worker, C = 200, ``max_claim`` = C), seven runs each,
    interleaved on one 2-core machine, medians:

    * this lane (``pending``, spares woken by ``reschedule``): 36,553 jobs/s,
      17 µs of worker CPU per job;
    * a task per job, started as it is claimed (the slots bound them): 29,579
      jobs/s (81 %), 25 µs;
    * C runners reading one memory channel, started on demand: 26,395 jobs/s
      (72 %), 25 µs.

    A second run, after the rest of issue 10 part 3, gave 35,918, 26,368 (73 %) and
    27,627 (77 %) jobs/s.

    Both plain designs wake one task per job (a channel hands each job to a
    waiting receiver; a new task is one more); this lane wakes one spare per
    claim, and a runner whose handler did not block takes the next job without
    a task switch. They lost a fifth to a quarter of the throughput, more than
    the 10 % the issue allowed, so the lane stays.
    """

    def __init__(self, handler: QueueHandler, nursery: trio.Nursery) -> None:
        self.handler = handler
        self.is_async = is_async(handler.handler)
        self.slots = trio.Semaphore(handler.concurrency)
        self.pending: collections.deque[Job] = collections.deque()
        self.idle: set[trio.lowlevel.Task] = set()
        self.spares = 0
        self.nursery = nursery


def key(job: Job) -> tuple[str, str]:
    """Who a job is, whatever its lease: ids are unique per queue only."""
    return job.queue, job.id


def cancelled_part(exc: BaseException) -> BaseException | None:
    """The cancellation in ``exc`` (a Cancelled, or the Cancelled part of a group),
    or None if ``exc`` holds none: then it is the handler's own error."""
    if isinstance(exc, trio.Cancelled):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        cancelled, _ = exc.split(trio.Cancelled)
        return cancelled
    return None


def storable(value: object, job: Job) -> bytes:
    """``value`` encoded for the ack (bytes, or JSON); else its ``repr``, as JSON text."""
    try:
        return encode_result(value)
    except RelayError as exc:
        worker_event("job.result_not_json", job, error=str(exc))
        return encode_result(repr(value)[:4096])


def is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )


def error_text(exc: BaseException) -> str:
    """``Type: message``, then the innermost frames of the traceback."""
    head = "".join(traceback.format_exception_only(exc)).strip()
    frames = "".join(traceback.format_tb(exc.__traceback__, limit=-3)).rstrip()
    return f"{head}\n{frames}" if frames else head


# Every event the worker logs: its level and its text (``str.format``ted with the
# event's fields). A job's event also carries the job's queue, id and attempt.
EVENTS: dict[str, tuple[int, str]] = {
    "job.retry": (logging.WARNING, "attempt failed ({cause}): retry in {delay_ms} ms"),
    "job.dead": (logging.ERROR, "attempt failed ({cause}): dead-lettered"),
    "job.nack_stale": (
        logging.WARNING,
        "attempt failed ({cause}), but the job was no longer this worker's (lease lost)",
    ),
    "job.nack_failed": (
        logging.WARNING,
        "recording the failed attempt failed (the reaper returns the job): {redis_error}",
    ),
    "job.aborted": (logging.INFO, "aborted: cancelling its handler"),
    "job.abort_failed": (
        logging.WARNING,
        "ending the aborted job failed (the reaper cancels it): {error}",
    ),
    "job.released": (
        logging.INFO,
        "released at shutdown (its handler was cancelled): back to ready, no attempt used",
    ),
    "job.release_stale": (
        logging.WARNING,
        "release refused: the job was no longer this worker's (lease lost)",
    ),
    "job.ack_stale": (
        logging.WARNING,
        "ack refused: the job was no longer this worker's (lease lost; it may run again)",
    ),
    "job.adopted": (
        logging.WARNING,
        "claimed again while this worker held it (its lease ran out): new lease adopted",
    ),
    "job.lease_lost": (
        logging.WARNING,
        "the heartbeat found the lease gone (reaped?): its ack will be refused",
    ),
    "job.result_not_json": (
        logging.WARNING,
        "the handler returned a value that is not JSON: kept as its repr ({error})",
    ),
    "claim.failed": (logging.WARNING, "claim from {queue!r} failed: {error}"),
    "wait.failed": (logging.WARNING, "waiting for work on {queue!r} failed: {error}"),
    "ack.failed": (logging.WARNING, "ack of {count} job(s) failed (will retry): {error}"),
    "release.failed": (logging.WARNING, "release of {count} job(s) failed (will retry): {error}"),
    "heartbeat.failed": (logging.WARNING, "lease heartbeat of {count} job(s) failed: {error}"),
    "abort_check.failed": (logging.WARNING, "abort check failed: {error}"),
    "promote.failed": (logging.WARNING, "promote pass on {queue!r} failed: {error}"),
    "reap.failed": (logging.WARNING, "reap pass on {queue!r} failed: {error}"),
    "worker.beat_failed": (
        logging.WARNING,
        "presence beat failed (the next one in {interval:g} s): {error}",
    ),
    "worker.leave_failed": (
        logging.WARNING,
        "leaving the registry of workers failed (the entry expires): {error}",
    ),
}


def worker_event(name: str, job: Job | None = None, **fields: object) -> None:
    """Log event ``name`` of :data:`EVENTS` with its fields (and ``job``'s queue,
    id and attempt); see :mod:`relay_trio.logs`. Nothing is built when its level
    is off."""
    level, text = EVENTS[name]
    if log.isEnabledFor(level):
        logs.event(log, level, name, "%s", text.format_map(fields), job=job, **fields)


def log_nack(job: Job, outcome: str, delay_ms: int, cause: str, error: str) -> None:
    """The record of a failed attempt's outcome (retry, dead or stale)."""
    if outcome == "retry":
        worker_event(
            "job.retry",
            job,
            max_retries=job.max_retries,
            cause=cause,
            delay_ms=delay_ms,
            error=error,
        )
    elif outcome == "dead":
        worker_event("job.dead", job, max_retries=job.max_retries, cause=cause, error=error)
    else:
        worker_event("job.nack_stale", job, cause=cause, error=error)
