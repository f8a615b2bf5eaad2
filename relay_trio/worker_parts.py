"""The worker's parts that hold no loop: one running job, one queue's lane, and the
small rules the loops share (see :mod:`relay_trio.worker` for the runtime)."""

from __future__ import annotations

import collections
import inspect
import logging
import math
import traceback

import trio

from ._errors import RelayError
from .broker_jobs import encode_result
from .job import Job
from .worker_config import Handler, QueueHandler

log = logging.getLogger("relay_trio.worker")


class Run:
    """One job this worker runs: its current claim (``job``, whose lease a later
    claim of the same job replaces), its lane and its timeout."""

    __slots__ = ("aborted", "job", "lane", "scope", "timeout", "timeout_at")

    def __init__(self, job: Job, lane: Lane) -> None:
        self.job = job
        self.lane = lane
        self.timeout = job.timeout_ms / 1000 if job.timeout_ms else lane.handler.timeout
        self.timeout_at = math.inf
        self.scope: trio.CancelScope | None = None
        self.aborted = False

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
        log.warning("job %s returned a value that is not JSON: kept as its repr (%s)", job.id, exc)
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
