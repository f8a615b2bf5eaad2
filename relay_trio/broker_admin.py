"""What the broker does to queues besides running jobs, sans I/O: sweeps, reading, the
DLQ, admin.

:class:`QueueAdmin` extends the job operations (:class:`~relay_trio.broker_jobs.JobOps`)
for :class:`~relay_trio.broker_core.BrokerCore`:
the sweeps the workers run (:meth:`~QueueAdmin.reap`, :meth:`~QueueAdmin.promote`),
reading (:meth:`~QueueAdmin.queues`, stats, the snapshot the hub polls, job
pages), the dead-letter queue (list, requeue, delete, requeue all, purge) and the
queue-admin verbs (pause, resume, rate limits, delete). Each is an operation of
:mod:`relay_trio.calls`: every state change is one Lua script or one
transaction; the admin verbs refuse a queue that is not in the registry
(:class:`QueueNotFound`) and never register one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from . import job as jobmod
from ._errors import InvalidInput, JobNotFound, QueueNotEmpty, QueueNotFound
from ._validate import check_int, check_number
from .broker_jobs import JobOps
from .calls import Call, Command, Op, command, script
from .job import Job, JobState, validate_job_id, validate_queue_name
from .keys import QueueKeys
from .results import QueueStats, RateLimit, ReapResult

DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX = 50, 1000
MAX_DLQ_OFFSET = 2**62
JOBS_PAGE_DEFAULT, JOBS_PAGE_MAX = DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX
LISTED_STATES = (
    JobState.READY,
    JobState.INFLIGHT,
    JobState.DELAYED,
    JobState.DEAD,
    JobState.DONE,
    JobState.CANCELLED,
)
"""The states :meth:`QueueAdmin.jobs_page` lists, each in its own order: ready in
claim order (priority, then age), inflight by visibility deadline, delayed by
ready-at, dead oldest first (the DLQ), done and cancelled latest expiry first
(most recently finished first, while every process keeps results equally long)."""
SWEEP_LIMIT = 1000  # jobs moved per reap / promote / DLQ-bulk script call
RATE_MIN, RATE_MAX = 1e-5, 1e6
"""Rate limits, in jobs per second: from about one a day to a million a second."""
BURST_MAX = 1_000_000


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _listed_state(state: object) -> JobState:
    for listed in LISTED_STATES:
        if state == listed.value:
            return listed
    names = ", ".join(s.value for s in LISTED_STATES)
    raise InvalidInput("state", f"{state!r} is not a state to list; give one of {names}")


class QueueAdmin(JobOps):
    """Reading, the DLQ and the queue-admin verbs: see the module doc."""

    # -- sweeps (the workers run them) ---------------------------------------------

    def reap(self, queue: str, limit: int = SWEEP_LIMIT) -> Op[ReapResult]:
        """One pass: expired in-flight jobs back to ready, or to the DLQ when spent
        (or ``cancelled``, when their abort was requested)."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, 100_000)
        (reply,) = yield script(
            "reap",
            [q.inflight, q.ready, q.dlq, q.dead, q.wake, q.dlq_trimmed, q.aborting, q.cancelled],
            [limit, self.dlq_max, self.dlq_ttl_s * 1000, self.result_ttl_ms_for_end()],
        )
        requeued, dead, trimmed, cancelled = (int(v) for v in reply)
        self.events.count("reaped", queue, requeued + dead + cancelled)
        self.events.count("dead", queue, dead)
        self.events.count("cancelled", queue, cancelled)
        self.events.count("dlq_trimmed", queue, trimmed)
        return ReapResult(requeued, dead, trimmed)

    def promote(self, queue: str, limit: int = SWEEP_LIMIT) -> Op[int]:
        """One pass: due delayed jobs to ready. Returns how many moved."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, 100_000)
        (reply,) = yield script("promote", [q.delayed, q.ready, q.wake], [limit])
        moved = int(reply)
        self.events.count("promoted", queue, moved)
        return moved

    # -- reading -----------------------------------------------------------------

    def queues(self) -> Op[list[str]]:
        """Sorted queue names from the registry (never a SCAN)."""
        (names,) = yield command("SMEMBERS", self.keys.registry)
        return sorted(n.decode() for n in names)

    def stats(self, queue: str) -> Op[QueueStats]:
        """Sizes of ready / inflight / delayed / dlq, lifetime counters, paused flag."""
        (one,) = yield from self.stats_many([validate_queue_name(queue)])
        return one

    def stats_many(
        self, queues: Sequence[str], *, skip_errors: bool = False
    ) -> Op[list[QueueStats]]:
        """Stats of several queues in one round trip (7 commands per queue).

        With ``skip_errors`` a queue whose commands failed (a key of the wrong
        type, say) is left out instead of failing the whole call."""
        for name in queues:
            validate_queue_name(name)
        if not queues:
            return []
        steps: list[Command] = []
        for name in queues:
            q = self.keys.queue(name)
            steps += (
                Command(("ZCARD", q.ready)),
                Command(("ZCARD", q.inflight)),
                Command(("ZCARD", q.delayed)),
                Command(("LLEN", q.dlq)),
                Command(("GET", q.processed)),
                Command(("GET", q.dead)),
                Command(("EXISTS", q.paused)),
            )
        r = yield Call(steps, inline_errors=skip_errors)
        if skip_errors:
            broken = {
                i
                for i in range(len(queues))
                if any(isinstance(v, Exception) for v in r[i * 7 : i * 7 + 7])
            }
            if broken:
                keep = [i for i in range(len(queues)) if i not in broken]
                queues = [queues[i] for i in keep]
                r = [v for i in keep for v in r[i * 7 : i * 7 + 7]]
        return [
            QueueStats(
                name,
                ready=_int(r[i * 7]),
                inflight=_int(r[i * 7 + 1]),
                delayed=_int(r[i * 7 + 2]),
                dlq=_int(r[i * 7 + 3]),
                processed_total=_int(r[i * 7 + 4]),
                dead_total=_int(r[i * 7 + 5]),
                paused=r[i * 7 + 6] == 1,
            )
            for i, name in enumerate(queues)
        ]

    def snapshot(self) -> Op[list[QueueStats]]:
        """Stats of every registered queue, in name order: two round trips.

        A queue whose keys cannot be read, or a registry entry that is not a
        valid queue name (written by something else), is left out rather than
        failing the whole snapshot."""
        names = yield from self.queues()
        valid = [n for n in names if jobmod.QUEUE_NAME_RE.fullmatch(n)]
        return (yield from self.stats_many(valid, skip_errors=True))

    def server_time_ms(self) -> Op[int]:
        (reply,) = yield command("TIME")
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    # -- dead-letter queue ---------------------------------------------------------

    def dlq_list(self, queue: str, limit: int = DLQ_PAGE_DEFAULT, offset: int = 0) -> Op[list[Job]]:
        """A page of dead jobs, oldest first."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, DLQ_PAGE_MAX)
        check_int("offset", offset, 0, MAX_DLQ_OFFSET)
        (ids,) = yield command("LRANGE", q.dlq, offset, offset + limit - 1)
        if not ids:
            return []
        raws = yield Call([Command(("HGETALL", q.job(job_id.decode()))) for job_id in ids])
        return [Job.from_hash(raw) for raw in raws if raw]

    def jobs_page(
        self, queue: str, state: str, limit: int = JOBS_PAGE_DEFAULT, offset: int = 0
    ) -> Op[list[Job]]:
        """A page of the jobs in ``state`` (one of :data:`LISTED_STATES`), in that
        state's order: the ids in one call, then their hashes in one pipeline. A job
        whose hash vanished in between (acked, expired, deleted) is left out, as is
        one that does not decode (written by something else); a job that moved on
        in between is listed as it is now. A queue never used lists nothing."""
        q = self.keys.queue(queue)
        listed = _listed_state(state)
        check_int("limit", limit, 1, JOBS_PAGE_MAX)
        check_int("offset", offset, 0, MAX_DLQ_OFFSET)
        last = offset + limit - 1
        if listed is JobState.DEAD:
            (ids,) = yield command("LRANGE", q.dlq, offset, last)
        elif listed in (JobState.DONE, JobState.CANCELLED):
            key = q.done if listed is JobState.DONE else q.cancelled
            (ids,) = yield command("ZREVRANGE", key, offset, last)
        else:
            key = {JobState.READY: q.ready, JobState.INFLIGHT: q.inflight}.get(listed, q.delayed)
            (ids,) = yield command("ZRANGE", key, offset, last)
        if not ids:
            return []
        raws = yield Call([Command(("HGETALL", q.job(job_id.decode()))) for job_id in ids])
        jobs = []
        for raw in raws:
            if raw:
                with contextlib.suppress(KeyError, ValueError, UnicodeError):
                    jobs.append(Job.from_hash(raw))
        return jobs

    def dlq_requeue(self, queue: str, job_id: str) -> Op[None]:
        """Move one dead job back to ready with attempts 0; :class:`JobNotFound` if
        it is not in the DLQ."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        (moved,) = yield script("dlq_requeue", [q.dlq, q.ready, q.wake], ["one", job_id])
        if not moved:
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    def dlq_delete(self, queue: str, job_id: str) -> Op[None]:
        """Delete one dead job for good; :class:`JobNotFound` if it is not in the DLQ."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        (deleted,) = yield script("dlq_delete", [q.dlq], ["one", job_id])
        if not deleted:
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    def dlq_requeue_all(self, queue: str) -> Op[int]:
        """Requeue the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self.keys.queue(queue)
        return (yield from self._sweep("dlq_requeue", [q.dlq, q.ready, q.wake]))

    def dlq_purge(self, queue: str) -> Op[int]:
        """Delete the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self.keys.queue(queue)
        return (yield from self._sweep("dlq_delete", [q.dlq]))

    def _sweep(self, name: str, keys: list[str]) -> Op[int]:
        total = 0
        while True:
            (moved,) = yield script(name, keys, ["all", SWEEP_LIMIT])
            if not int(moved):
                return total
            total += int(moved)

    # -- pause, rate limit, delete -------------------------------------------------

    def _known(self, queue: str) -> Op[QueueKeys]:
        """The keys of ``queue``; :class:`QueueNotFound` unless it is registered.
        Only creating a job registers a queue: admin verbs never do."""
        q = self.keys.queue(queue)
        (known,) = yield command("SISMEMBER", self.keys.registry, queue)
        if not known:
            raise QueueNotFound(queue)
        return q

    def pause(self, queue: str) -> Op[None]:
        """Stop claims from ``queue`` (enqueues go on) until :meth:`resume`."""
        q = yield from self._known(queue)
        yield command("SET", q.paused, "1")

    def resume(self, queue: str) -> Op[None]:
        """Allow claims again, and wake idle workers."""
        q = yield from self._known(queue)
        yield script("resume", [q.paused, q.wake], [])

    def set_rate_limit(self, queue: str, rate: float, burst: int) -> Op[None]:
        """Every claimer of ``queue`` shares this token bucket; it starts full.

        ``rate``: jobs per second, :data:`RATE_MIN` (about one a day) to
        :data:`RATE_MAX`; ``burst``: 1 to :data:`BURST_MAX`."""
        check_number("rate", rate, RATE_MIN, RATE_MAX)
        check_int("burst", burst, 1, BURST_MAX)
        q = yield from self._known(queue)
        yield Call(
            (
                Command(("DEL", q.ratelimit)),
                Command(("HSET", q.ratelimit, "rate", repr(float(rate)), "burst", burst)),
            ),
            transaction=True,
        )

    def clear_rate_limit(self, queue: str) -> Op[None]:
        q = yield from self._known(queue)
        yield command("DEL", q.ratelimit)

    def get_rate_limit(self, queue: str) -> Op[RateLimit | None]:
        q = yield from self._known(queue)
        (reply,) = yield command("HMGET", q.ratelimit, "rate", "burst")
        rate, burst = reply
        if rate is None or burst is None:
            return None
        return RateLimit(float(rate), int(burst))

    def delete_queue(self, queue: str, *, force: bool = False) -> Op[int]:
        """Delete ``queue``: its registry entry, its jobs and every key of it.

        A queue that still holds jobs (ready, in flight, delayed or dead) raises
        :class:`QueueNotEmpty` and is left as it was, unless ``force``; then its
        jobs are deleted, 1000 per atomic step. Returns how many jobs went
        (finished jobs kept with their results included).
        :class:`QueueNotFound` if it is not registered.

        The registry entry goes first, so the hub stops showing the queue at
        once; a refused delete (or a failure part-way, or a cancel) puts it
        back. A job enqueued while a forced delete runs may be deleted with the
        rest, or may re-register the queue. Workers still serving the queue keep
        waiting for jobs; a handler's late ack of a deleted job is refused as stale.
        """
        q = self.keys.queue(queue)
        registry = self.keys.registry
        (removed,) = yield command("SREM", registry, queue)
        if not removed:
            raise QueueNotFound(queue)
        keys = list(q.all_fixed())  # ready, inflight, delayed, dlq, done, cancelled first
        total = 0
        try:
            while True:
                (reply,) = yield script("queue_delete", keys, ["1" if force else "0", SWEEP_LIMIT])
                code, n = reply
                if code == 0:
                    raise QueueNotEmpty(queue, int(n))
                total += int(n)
                if code == 1:
                    return total
        except GeneratorExit:
            raise
        except BaseException:
            # refused, or stopped part-way: the queue (what is left of it) stays
            # visible; drivers run this call even when cancelled. If Redis went
            # away, the error being raised says so already.
            with contextlib.suppress(Exception):  # the first error is the one to report
                yield command("SADD", registry, queue)
            raise
