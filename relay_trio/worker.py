"""The worker runtime: claim jobs, run their handlers in a nursery, ack or nack.

One :class:`Worker` serves one or more queues, each with a handler and a
concurrency limit. Its tasks, all in the nursery of :meth:`Worker.serve`:

* a **claim loop** per queue: claims up to its free capacity in one call
  (batched), hands the jobs to the queue's runners, and when the queue is empty
  waits for a wake-up hint (a blocking pop that takes hints, never jobs) or its
  ``idle_wait``; a paused queue is retried later, a rate-limited one after the
  bucket's wait, re-checked at least every second (so a cleared or raised limit
  is noticed within a second);
* **runners**: long-lived tasks, at most ``concurrency`` per queue, each running
  one claimed job after another; a job never waits for another job's handler,
  only for a runner to be scheduled. An async handler is awaited; a plain
  function runs in a thread. Return → the job goes to the finisher; raise →
  nack with the error text (retry with backoff, or the DLQ);
* the **finisher**: acks finished jobs, and releases jobs given back at
  shutdown, in batches of one round trip; a batch that fails is retried until
  it lands (or the shutdown deadline passes), and those jobs' leases are kept
  alive meanwhile;
* the **heartbeat**: every visibility/3, extends the lease of every job this
  worker holds (running, or waiting to be acked or released) in one round trip
  — except a job past its timeout;
* **reaper** (every 5 s) and **promoter** (every 1 s) passes per queue, each
  repeated at once while it still moves a full batch;
* the **abort check**: while jobs run, every ``abort_check_interval`` (0.5 s)
  one round trip asks which of them were cancelled (aborted); their handlers
  are cancelled and the jobs end ``cancelled``, never retried. A thread handler
  cannot be stopped: it is abandoned (it finishes in the background, and what
  it returns changes nothing);
* the **scheduler** (:func:`relay_trio.scheduler.run_scheduler`): enqueues the
  cron schedules' jobs; every worker runs one, each fire time enqueues once;
* **presence** (:mod:`relay_trio.worker_upkeep`): every ``presence_interval``
  (2 s) the worker tells the registry of live workers who it is (:attr:`Worker.id`)
  and what it runs; it leaves at the end of ``serve``.

**Logs.** Every job event (a failure and its retry, a dead-letter, a timeout, a
reject, an abort, a release at shutdown, an adopted claim, a refused ack ...)
is one record of the ``relay_trio.worker`` logger with the job's queue, id and
attempt as fields (see :mod:`relay_trio.logs`); a job that succeeds logs nothing.

**Results.** What a handler returns is kept as the job's result (state
``done``) for the broker's ``result_ttl_s``; a value that is neither bytes nor
JSON-encodable is kept as its ``repr`` text (and logged). A handler gets its
job as its argument; a task function (:mod:`relay_trio.tasks`, which sets it)
reads it from :func:`relay_trio.current_job`. A handler that raises
:class:`~relay_trio.Reject` dead-letters its job at once.

**The worker never dies of a job.** Whatever a handler raises (any exception,
``SystemExit`` and ``KeyboardInterrupt`` included) is a failed attempt: the job
is nacked with the error text. Only cancellation propagates. A job this worker
already holds that a claim returns again (its lease ran out during a stall and
a reaper gave it back) is not run twice: the running attempt adopts the new
lease. Errors of Redis, or of the worker's own loops, are logged and retried.

**Timeouts.** Each attempt may run for the job's ``timeout_ms`` (set at
enqueue), else the queue's :attr:`QueueHandler.timeout`, else without limit. At
the timeout an async handler is cancelled and the job nacked with ``timed out
after …``. The heartbeat never extends a job past its timeout, so a handler
that cannot be cancelled (a thread) gives its job back through the reaper once
its lease runs out; its slot stays taken until the thread returns.

**Shutdown** (:meth:`Worker.stop`, or a signal handler calling it): claiming
stops at once (jobs a claim already took still run); running handlers get
``grace_period`` seconds to finish; what still runs then, or was claimed but
not started, is cancelled and **released**: back to ``ready`` with its attempt
count as it was before the claim (``last_error`` says it was released), so a
deploy never uses up a job's retries. Finished jobs are acked; then ``serve``
returns. Nothing is lost: a job is always in ready, inflight, delayed or the
DLQ, or acked. If ``serve`` itself is cancelled (or the process dies), what
could not be released or acked within a second stays in flight under its lease,
and the reaper of any worker returns it to ``ready`` once its deadline passes.
A thread handler that is still running at the end is abandoned (it finishes in
the background, or dies with the process); its job was released.
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ._errors import ConfigError, Reject, RelayError
from .broker import Broker
from .broker_jobs import NULL_RESULT
from .job import Job
from .scheduler import run_scheduler
from .worker_config import (
    MAX_CONCURRENCY,
    MAX_JOB_TIMEOUT,
    Handler,
    QueueHandler,
    WorkerConfig,
    WorkerStats,
)
from .worker_parts import (
    Lane,
    Run,
    cancelled_part,
    error_text,
    key,
    log_nack,
    storable,
    worker_event,
)
from .worker_upkeep import check_aborts, keep_present, leave, maintain, new_worker_id

RATE_LIMIT_RECHECK = 1.0
"""Longest sleep of a rate-limited claim loop before it asks again."""


class Worker:
    """Runs handlers for claimed jobs. See the module doc for the tasks and shutdown."""

    def __init__(
        self,
        broker: Broker,
        handlers: Sequence[QueueHandler],
        config: WorkerConfig | None = None,
        *,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """``info``: more of what the worker tells the registry of live workers
        about itself (JSON-encodable; e.g. ``{"tasks": [...]}``)."""
        if not handlers:
            raise ConfigError("handlers", "a worker needs at least one queue handler")
        if len({h.queue for h in handlers}) != len(handlers):
            raise ConfigError("handlers", "each queue may have one handler only")
        self.broker = broker
        self.handlers = list(handlers)
        self.config = config or WorkerConfig()
        self.stats = WorkerStats(
            running={h.queue: 0 for h in handlers}, claims={h.queue: 0 for h in handlers}
        )
        self.id = new_worker_id()
        """This worker's id in the registry of live workers: ``host:pid:random``."""
        self.host = socket.gethostname()
        self.started_at = time.time()
        self.info = dict(info or {})
        self._running: dict[tuple[str, str], Run] = {}  # by (queue, id): see key()
        # finished (to ack) or given back (to release), not yet confirmed by Redis;
        # a later claim of the same job replaces the entry with its new lease
        self._to_ack: dict[tuple[str, str], Job] = {}
        self._results: dict[tuple[str, str], bytes] = {}
        self._keep_results = broker.result_ttl_s > 0
        self._to_release: dict[tuple[str, str], Job] = {}
        # jobs whose ack came back stale: a claim in flight at the same time may
        # return one of them (it was reaped and claimed again before the ack ran,
        # but its reply was read after the ack's): adopted, not run again
        self._stale: dict[tuple[str, str], tuple[float, bytes | None]] = {}
        self._finisher_wake = trio.Event()
        self._finishing_closed = False
        self._stopping = trio.Event()
        self._drained = trio.Event()
        self._finisher_done = trio.Event()

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call more than once, from a Trio task)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work until :meth:`stop`, then shut down gracefully and return."""
        self.broker.reserve_waiters(len(self.handlers))
        try:
            async with trio.open_nursery() as service:
                service.start_soon(self._finisher)
                service.start_soon(self._heartbeat)
                service.start_soon(check_aborts, self)
                service.start_soon(keep_present, self)
                if self.config.schedules:
                    service.start_soon(
                        lambda: run_scheduler(self.broker, refresh_s=self.config.schedule_refresh)
                    )
                for h in self.handlers:
                    interval = self.config.promote_interval
                    service.start_soon(maintain, self.broker, h.queue, "promote", interval)
                    interval = self.config.reap_interval
                    service.start_soon(maintain, self.broker, h.queue, "reap", interval)
                async with trio.open_nursery() as jobs:
                    lanes = [Lane(h, jobs) for h in self.handlers]
                    async with trio.open_nursery() as claimers:
                        for lane in lanes:
                            claimers.start_soon(self._claim_loop, lane)
                        task_status.started()
                        await self._stopping.wait()
                        claimers.cancel_scope.cancel()
                    if self._running:
                        with trio.move_on_after(self.config.grace_period):
                            await self._drained.wait()
                    # what still runs (or waits in ``pending``, taken by a spare
                    # runner whose handler sees the cancel at once) is released
                    jobs.cancel_scope.cancel()
                self._finishing_closed = True  # the finisher drains what is left, then ends
                self._finisher_wake.set()
                with trio.move_on_after(self.config.grace_period):
                    await self._finisher_done.wait()
                service.cancel_scope.cancel()
        finally:
            if self._to_ack or self._to_release:  # cancelled from outside: one last try
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await self._finish_batch()
            await leave(self)

    # -- claiming and running ------------------------------------------------------

    async def _claim_loop(self, lane: Lane) -> None:
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
            self.stats.claims[h.queue] += 1
            try:
                # shielded: a claim that ran must hand its jobs to handlers, not
                # be dropped by a cancel (they would wait for the reaper)
                with trio.CancelScope(shield=True):
                    claim = await self.broker.claim(
                        h.queue, want, visibility_ms=self.config.visibility_ms
                    )
            except Exception as exc:  # RelayError, or anything a foreign key causes
                for _ in range(want):
                    slots.release()
                worker_event("claim.failed", queue=h.queue, error=str(exc))
                await trio.sleep(self.config.error_retry_delay)
                continue
            for _ in range(want - len(claim.jobs)):
                slots.release()
            now = time.time()
            self.stats.claimed += len(claim.jobs)
            for job in claim.jobs:
                if self._adopt(job):
                    slots.release()
                    continue
                self._running[key(job)] = Run(job, lane, now)
                self.stats.running[h.queue] += 1
                lane.pending.append(job)
            if lane.pending and not lane.spares:
                self._wake_runner(lane)
            if claim.jobs:
                continue
            if claim.retry_after_ms:
                await trio.sleep(min(claim.retry_after_ms / 1000, RATE_LIMIT_RECHECK))
            else:  # empty, or paused
                await self._idle(h.queue, self.config.idle_wait)

    def _adopt(self, job: Job) -> bool:
        """A claim returned a job this worker still holds (its lease ran out during
        a stall and a reaper gave it back): keep the one attempt under the new
        lease instead of running the job twice. True if adopted."""
        who = key(job)
        run = self._running.get(who)
        if run is not None:
            run.job = job
        elif who in self._to_ack:
            self._to_ack[who] = job
        elif who in self._to_release:
            self._to_release[who] = job
        elif who in self._stale and self._stale[who][0] > trio.current_time():
            _, result = self._stale.pop(who)
            self._to_ack[who] = job
            if result is not None:
                self._results[who] = result
            self._finisher_wake.set()
        else:
            return False
        self.stats.reclaimed += 1
        worker_event("job.adopted", job)
        return True

    async def _idle(self, queue: str, seconds: float) -> None:
        try:
            await self.broker.wait_for_work(queue, seconds)
        except RelayError as exc:
            worker_event("wait.failed", queue=queue, error=str(exc))
            await trio.sleep(self.config.error_retry_delay)

    def _wake_runner(self, lane: Lane) -> None:
        """Make one more spare: wake an idle runner, or start one."""
        lane.spares += 1
        if lane.idle:
            trio.lowlevel.reschedule(lane.idle.pop())
        else:
            lane.nursery.start_soon(self._runner, lane)

    async def _runner(self, lane: Lane) -> None:
        """Run pending jobs one after another; sleep while there are none.

        Before it starts a job, a runner makes sure that a spare is awake if more
        jobs wait, since this job's handler may block. Cancelled, it ends: its
        job is released by :meth:`_run`, and a job still pending is taken by
        the spare it woke, whose handler is cancelled and released in turn.
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
                run = self._running[key(job)]
                run.start()
                await self._run(run)
            lane.idle.add(me)
            await trio.lowlevel.wait_task_rescheduled(abort)

    async def _run(self, run: Run) -> None:
        """One attempt. Every outcome but cancellation is handled here: return →
        ack (with the result); raise anything (or time out) → nack; Reject →
        dead-letter; aborted → cancelled; cancelled → release, re-raise."""
        lane = run.lane
        handler = lane.handler.handler
        error: str | None = None
        dead = False
        cause = "error"
        value: object = None
        try:
            with trio.CancelScope(deadline=run.timeout_at if lane.is_async else math.inf) as scope:
                run.scope = scope
                if run.aborted:
                    scope.cancel()
                if lane.is_async:
                    value = await handler(run.job)
                else:  # a thread cannot be cancelled: an abort abandons it
                    value = await trio.to_thread.run_sync(handler, run.job, abandon_on_cancel=True)
            if run.aborted:
                self.stats.aborted += 1
                try:
                    await self._finish_abort(run.job)
                finally:
                    self._finished(run)
                return
            if scope.cancelled_caught:
                self.stats.timed_out += 1
                error, cause = f"timed out after {run.timeout:g} s", "timeout"
        except BaseException as exc:
            cancelled = cancelled_part(exc)
            if cancelled is not None:  # the worker is shutting down (or cancelled)
                self.stats.cancelled += 1
                self._to_release[key(run.job)] = run.job
                self._finisher_wake.set()
                self._finished(run)
                raise cancelled from None
            if isinstance(exc, Reject):
                self.stats.rejected += 1
                error, dead, cause = f"rejected: {exc}", True, "reject"
            else:
                error = error_text(exc)
        finally:
            run.scope = None
        try:
            if error is None:
                self.stats.succeeded += 1
                self._to_ack[key(run.job)] = run.job
                if self._keep_results and value is not None:
                    self._results[key(run.job)] = storable(value, run.job)
                self._finisher_wake.set()
            else:
                self.stats.failed += 1
                lease = run.job.lease
                await self._nack(run.job, error, dead=dead, cause=cause)
                if run.job.lease != lease:  # claimed again while the nack ran
                    self._to_release[key(run.job)] = run.job
                    self._finisher_wake.set()
        finally:
            self._finished(run)

    def _finished(self, run: Run) -> None:
        if self._running.get(key(run.job)) is not run:
            return
        del self._running[key(run.job)]
        self.stats.running[run.lane.handler.queue] -= 1
        run.lane.slots.release()
        if not self._running and self.stopping:
            self._drained.set()

    async def _nack(self, job: Job, error: str, *, dead: bool, cause: str) -> None:
        """Record a failed attempt (``cause``: error, timeout or reject) and log it."""
        try:
            with trio.CancelScope(shield=True):  # a failed attempt is recorded even at shutdown
                result = await self.broker.nack(job, error, dead=dead)
        except RelayError as exc:  # the job stays in flight; the reaper returns it
            worker_event("job.nack_failed", job, cause=cause, error=error, redis_error=str(exc))
            return
        log_nack(job, result.outcome, result.delay_ms, cause, error)

    async def _finish_abort(self, job: Job) -> None:
        try:
            with trio.CancelScope(shield=True):
                await self.broker.finish_abort(job)
        except RelayError as exc:  # the job stays in flight; the reaper cancels it
            worker_event("job.abort_failed", job, error=str(exc))

    # -- acks and releases, heartbeats, maintenance -------------------------------------

    async def _finisher(self) -> None:
        """Ack and release in batches until closed and drained; a failed batch is
        retried after ``error_retry_delay`` (the heartbeat keeps its leases)."""
        try:
            while True:
                if not (self._to_ack or self._to_release):
                    if self._finishing_closed:
                        return
                    self._finisher_wake = trio.Event()
                    await self._finisher_wake.wait()
                    continue
                if not await self._finish_batch():
                    await trio.sleep(self.config.error_retry_delay)
        finally:
            self._finisher_done.set()

    async def _finish_batch(self) -> bool:
        """Release (first) or ack one batch. False if Redis failed."""
        pending, releasing = (self._to_release, True) if self._to_release else (self._to_ack, False)
        batch = list(itertools.islice(pending.values(), self.config.max_ack_batch))
        try:
            if releasing:
                results = await self.broker.release_many(batch)
            elif self._keep_results:
                values = [self._results.get(key(job), NULL_RESULT) for job in batch]
                results = await self.broker.ack_many(batch, values, encoded=True)
            else:
                results = await self.broker.ack_many(batch)
        except RelayError as exc:
            what = "release" if releasing else "ack"
            worker_event(
                f"{what}.failed",
                count=len(batch),
                queues=sorted({j.queue for j in batch}),
                jobs=[j.id for j in batch[:20]],  # the first few
                error=str(exc),
            )
            return False
        for job, ok in zip(batch, results, strict=True):
            if pending.get(key(job)) is not job:
                continue  # claimed again meanwhile: finish it under its new lease
            del pending[key(job)]
            result = self._results.pop(key(job), None) if self._results else None
            if releasing:
                self.stats.released += ok
                worker_event("job.released" if ok else "job.release_stale", job)
            elif ok:
                self.stats.acked += 1
            else:
                self.stats.stale_acks += 1
                worker_event("job.ack_stale", job)
                self._remember_stale(job, result)
        return True

    def _remember_stale(self, job: Job, result: bytes | None) -> None:
        """Keep a stale-acked job's result for a visibility timeout (see _stale)."""
        now = trio.current_time()
        if len(self._stale) > 10_000:
            self._stale = {k: v for k, v in self._stale.items() if v[0] > now}
        self._stale[key(job)] = (now + self.config.visibility_ms / 1000, result)

    async def _heartbeat(self) -> None:
        period = self.config.visibility_ms / 3000
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            jobs = [r.job for r in self._running.values() if r.timeout_at > now]
            jobs += self._to_ack.values()
            jobs += self._to_release.values()
            if not jobs:
                continue
            try:
                kept = await self.broker.extend_many(jobs, self.config.visibility_ms)
            except RelayError as exc:
                self.stats.heartbeat_failures += 1
                worker_event("heartbeat.failed", count=len(jobs), error=str(exc))
                continue
            for job, ok in zip(jobs, kept, strict=True):
                if not ok:
                    worker_event("job.lease_lost", job)


__all__ = [
    "MAX_CONCURRENCY",
    "MAX_JOB_TIMEOUT",
    "Handler",
    "QueueHandler",
    "Worker",
    "WorkerConfig",
    "WorkerStats",
]
