"""The worker runtime: claim jobs, run their handlers in a nursery, ack or nack.

One :class:`Worker` serves one or more queues, each with a handler and a
concurrency limit. Its tasks, all in the nursery of :meth:`Worker.serve`:

* a **claim loop** per queue: claims up to its free capacity in one call
  (batched), hands the jobs to the queue's runners, and when the queue is empty
  waits for a wake-up hint (a blocking pop that takes hints, never jobs) or its
  ``idle_wait``; a paused or rate-limited queue is retried later;
* **runners**: long-lived tasks, at most ``concurrency`` per queue, each running
  one claimed job after another; a job never waits for another job's handler,
  only for a runner to be scheduled. An async handler is awaited; a plain
  function runs in a thread. Return → the job goes to the acker; raise → nack
  with the error text (retry with backoff, or the DLQ). A handler that raises
  never stops the worker;
* the **acker**: acks finished jobs in batches, one round trip per batch;
* the **heartbeat**: every visibility/3, extends every running job's lease in
  one round trip;
* **reaper** (every 5 s) and **promoter** (every 1 s) passes per queue, each
  repeated at once while it still moves a full batch.

Shutdown (:meth:`Worker.stop`, or cancelling nothing but calling stop from a
signal handler): claiming stops at once (jobs a claim already took still run);
running handlers get ``grace_period`` seconds to finish; what still runs then,
or was claimed but not started, is cancelled and nacked (its error text says
so); finished jobs are acked; then ``serve`` returns. Nothing is lost: a
job is always in ready, inflight, delayed or the DLQ, or acked. If ``serve``
itself is cancelled (or the process dies), running jobs stay in flight under
their lease and the reaper of any worker returns them to ``ready`` once their
visibility deadline passes.
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._errors import RelayError
from .broker import SWEEP_LIMIT, Broker
from .job import Job, validate_queue_name

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]

CANCELLED_TEXT = "cancelled: the worker shut down before the handler ended"


@dataclass(frozen=True, slots=True)
class QueueHandler:
    """``handler`` runs each job of ``queue``, at most ``concurrency`` at a time."""

    queue: str
    handler: Handler
    concurrency: int = 10

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        if not 1 <= self.concurrency <= 10_000:
            raise ValueError(f"concurrency must be 1-10000, got {self.concurrency}")


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
    """Pause before a claim loop retries after Redis failed."""

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


class _Lane:
    """One queue's runtime: its free slots, and its claimed jobs not yet started.

    Runners are long-lived tasks that each run one job after another, taking
    the next from ``pending`` as soon as they finish one. ``spares`` counts the
    runners woken (or started) that have not yet looked at ``pending``: while
    jobs wait there, one is always kept, so a job waits only for a scheduler
    round, never for another job's handler. There are never more runners than
    ``concurrency``.
    """

    def __init__(self, handler: QueueHandler, nursery: trio.Nursery) -> None:
        self.handler = handler
        self.is_async = _is_async(handler.handler)
        self.slots = trio.Semaphore(handler.concurrency)
        self.pending: collections.deque[Job] = collections.deque()
        self.idle: set[trio.lowlevel.Task] = set()
        self.spares = 0
        self.nursery = nursery


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    acked: int = 0
    stale_acks: int = 0
    running: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs handlers for claimed jobs. See the module doc for the tasks and shutdown."""

    def __init__(
        self,
        broker: Broker,
        handlers: Sequence[QueueHandler],
        config: WorkerConfig | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("a worker needs at least one queue handler")
        if len({h.queue for h in handlers}) != len(handlers):
            raise ValueError("each queue may have one handler only")
        self.broker = broker
        self.handlers = list(handlers)
        self.config = config or WorkerConfig()
        self.stats = WorkerStats(running={h.queue: 0 for h in handlers})
        self._running: dict[str, Job] = {}
        self._stopping = trio.Event()
        self._drained = trio.Event()
        self._acks_done = trio.Event()
        self._ack_send, self._ack_recv = trio.open_memory_channel[Job](math.inf)

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call more than once, from a Trio task)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work until :meth:`stop`, then shut down gracefully and return."""
        self.broker.io.reserve_waiters(len(self.handlers))
        async with trio.open_nursery() as service:
            service.start_soon(self._acker)
            service.start_soon(self._heartbeat)
            for h in self.handlers:
                service.start_soon(self._maintain, h.queue, "promote", self.config.promote_interval)
                service.start_soon(self._maintain, h.queue, "reap", self.config.reap_interval)
            async with trio.open_nursery() as jobs:
                # claimed jobs that no runner took yet when this is cancelled are
                # still taken, each by a runner of its own (see ``_runner``), and
                # nacked when their handler sees the cancel
                lanes = [_Lane(h, jobs) for h in self.handlers]
                async with trio.open_nursery() as claimers:
                    for lane in lanes:
                        claimers.start_soon(self._claim_loop, lane)
                    task_status.started()
                    await self._stopping.wait()
                    claimers.cancel_scope.cancel()
                if self._running:
                    with trio.move_on_after(self.config.grace_period):
                        await self._drained.wait()
                jobs.cancel_scope.cancel()
            self._ack_send.close()  # the acker drains what is left, then ends
            with trio.move_on_after(self.config.grace_period):
                await self._acks_done.wait()
            service.cancel_scope.cancel()

    # -- claiming and running ------------------------------------------------------

    async def _claim_loop(self, lane: _Lane) -> None:
        h, slots = lane.handler, lane.slots
        while True:
            await slots.acquire()
            want = 1
            while want < self.config.max_claim:
                try:
                    slots.acquire_nowait()
                except trio.WouldBlock:
                    break
                want += 1
            try:
                # shielded: a claim that ran must hand its jobs to handlers, not
                # be dropped by a cancel (they would wait for the reaper)
                with trio.CancelScope(shield=True):
                    claim = await self.broker.claim(
                        h.queue, want, visibility_ms=self.config.visibility_ms
                    )
            except RelayError as exc:
                for _ in range(want):
                    slots.release()
                log.warning("claim from %r failed: %s", h.queue, exc)
                await trio.sleep(self.config.error_retry_delay)
                continue
            for _ in range(want - len(claim.jobs)):
                slots.release()
            self.stats.claimed += len(claim.jobs)
            for job in claim.jobs:
                self._running[job.id] = job
                self.stats.running[h.queue] += 1
            lane.pending.extend(claim.jobs)
            if lane.pending and not lane.spares:
                self._wake_runner(lane)
            if claim.jobs:
                continue
            if claim.paused:
                await self._idle(h.queue, self.config.idle_wait)
            elif claim.retry_after_ms:
                await trio.sleep(claim.retry_after_ms / 1000)
            else:
                await self._idle(h.queue, self.config.idle_wait)

    async def _idle(self, queue: str, seconds: float) -> None:
        try:
            await self.broker.wait_for_work(queue, seconds)
        except RelayError as exc:
            log.warning("waiting for work on %r failed: %s", queue, exc)
            await trio.sleep(self.config.error_retry_delay)

    def _wake_runner(self, lane: _Lane) -> None:
        """Make one more spare: wake an idle runner, or start one."""
        lane.spares += 1
        if lane.idle:
            trio.lowlevel.reschedule(lane.idle.pop())
        else:
            lane.nursery.start_soon(self._runner, lane)

    async def _runner(self, lane: _Lane) -> None:
        """Run pending jobs one after another; sleep while there are none.

        Before it starts a job, a runner makes sure that a spare is awake if more
        jobs wait, since this job's handler may block. Cancelled, it ends: its
        handler is nacked by :meth:`_run`, and a job still pending is taken by
        the spare it woke, whose handler is cancelled and nacked in turn.
        """
        me = trio.lowlevel.current_task()
        pending = lane.pending

        def abort(_: object) -> trio.lowlevel.Abort:
            lane.idle.discard(me)
            return trio.lowlevel.Abort.SUCCEEDED

        while True:
            lane.spares -= 1
            while pending:
                job = pending.popleft()
                if pending and not lane.spares:
                    self._wake_runner(lane)
                await self._run(lane, job)
            lane.idle.add(me)
            await trio.lowlevel.wait_task_rescheduled(abort)

    async def _run(self, lane: _Lane, job: Job) -> None:
        h = lane.handler
        try:
            if lane.is_async:
                await h.handler(job)
            else:
                await trio.to_thread.run_sync(h.handler, job, abandon_on_cancel=True)
        except trio.Cancelled:
            self.stats.cancelled += 1
            with trio.CancelScope(shield=True):
                await self._nack(job, CANCELLED_TEXT)
            raise
        except Exception as exc:
            self.stats.failed += 1
            await self._nack(job, _error_text(exc))
        else:
            self.stats.succeeded += 1
            self._ack_send.send_nowait(job)
        finally:
            self._finished(lane, job)

    def _finished(self, lane: _Lane, job: Job) -> None:
        del self._running[job.id]
        self.stats.running[lane.handler.queue] -= 1
        lane.slots.release()
        if not self._running and self.stopping:
            self._drained.set()

    async def _nack(self, job: Job, error: str) -> None:
        try:
            await self.broker.nack(job, error)
        except RelayError as exc:  # the job stays in flight; the reaper returns it
            log.warning("nack of job %s failed: %s", job.id, exc)

    # -- acks, heartbeats, maintenance -----------------------------------------------

    async def _acker(self) -> None:
        try:
            async for first in self._ack_recv:
                batch = [first]
                while len(batch) < self.config.max_ack_batch:
                    try:
                        batch.append(self._ack_recv.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._ack_batch(batch)
        finally:
            self._acks_done.set()

    async def _ack_batch(self, batch: list[Job]) -> None:
        for attempt in range(3):
            try:
                results = await self.broker.ack_many(batch)
            except RelayError as exc:
                log.warning("ack of %d jobs failed (attempt %d): %s", len(batch), attempt + 1, exc)
                await trio.sleep(self.config.error_retry_delay)
                continue
            self.stats.acked += sum(results)
            self.stats.stale_acks += len(results) - sum(results)
            return
        # still in flight under their leases: the reaper will deliver them again

    async def _heartbeat(self) -> None:
        period = self.config.visibility_ms / 3000
        while True:
            await trio.sleep(period)
            jobs = list(self._running.values())
            if not jobs:
                continue
            try:
                kept = await self.broker.extend_many(jobs, self.config.visibility_ms)
            except RelayError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for job, ok in zip(jobs, kept, strict=True):
                if not ok and job.id in self._running:
                    log.warning("job %s lost its lease (reaped?); its ack will be refused", job.id)

    async def _maintain(self, queue: str, what: str, interval: float) -> None:
        while True:
            try:
                while True:
                    if what == "promote":
                        moved = await self.broker.promote(queue)
                    else:
                        reaped = await self.broker.reap(queue)
                        moved = reaped.requeued + reaped.dead
                    if moved < SWEEP_LIMIT:
                        break
            except RelayError as exc:
                log.warning("%s pass on %r failed: %s", what, queue, exc)
            await trio.sleep(interval)


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )


def _error_text(exc: BaseException) -> str:
    """``Type: message``, then the innermost frames of the traceback."""
    head = "".join(traceback.format_exception_only(exc)).strip()
    frames = "".join(traceback.format_tb(exc.__traceback__, limit=-3)).rstrip()
    return f"{head}\n{frames}" if frames else head
