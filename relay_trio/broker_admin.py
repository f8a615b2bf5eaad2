"""What the broker does to queues besides running jobs: sweeps, reading, the DLQ, admin.

:class:`QueueAdmin` is a base of :class:`~relay_trio.broker.Broker` (use it
through a broker): the sweeps the workers run (:meth:`~QueueAdmin.reap`,
:meth:`~QueueAdmin.promote`), reading (:meth:`~QueueAdmin.queues`, stats, the snapshot the
hub polls, :meth:`~QueueAdmin.get_job`), the dead-letter queue (list, requeue,
delete, requeue all, purge) and the queue-admin verbs (pause, resume, rate
limits, delete). Every state change is one Lua script or one transaction, as in
the broker; the admin verbs refuse a queue that is not in the registry
(:class:`QueueNotFound`) and never register one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import trio

from . import job as jobmod
from ._errors import JobNotFound, QueueNotEmpty, QueueNotFound, RelayError
from ._validate import check_int, check_number
from .job import Job, validate_job_id, validate_queue_name
from .keys import Keyspace, QueueKeys
from .redis_io import Batch, RedisIO
from .results import BrokerEvents, QueueStats, RateLimit, ReapResult

DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX = 50, 1000
MAX_DLQ_OFFSET = 2**62
SWEEP_LIMIT = 1000  # jobs moved per reap / promote / DLQ-bulk script call
RATE_MIN, RATE_MAX = 1e-5, 1e6
"""Rate limits, in jobs per second: from about one a day to a million a second."""
BURST_MAX = 1_000_000


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class QueueAdmin:
    """Reading, the DLQ and the queue-admin verbs of :class:`~relay_trio.broker.Broker`."""

    io: RedisIO
    keys: Keyspace
    events: BrokerEvents
    dlq_max: int
    dlq_ttl_s: int

    # -- sweeps (the workers run them) ---------------------------------------------

    async def reap(self, queue: str, limit: int = SWEEP_LIMIT) -> ReapResult:
        """One pass: expired in-flight jobs back to ready, or to the DLQ when spent."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, 100_000)
        requeued, dead, trimmed = await self.io.eval(
            "reap",
            [q.inflight, q.ready, q.dlq, q.dead, q.wake, q.dlq_trimmed],
            [q.base, limit, self.dlq_max, self.dlq_ttl_s * 1000],
        )
        self.events.count("reaped", queue, int(requeued) + int(dead))
        self.events.count("dead", queue, int(dead))
        self.events.count("dlq_trimmed", queue, int(trimmed))
        return ReapResult(int(requeued), int(dead), int(trimmed))

    async def promote(self, queue: str, limit: int = SWEEP_LIMIT) -> int:
        """One pass: due delayed jobs to ready. Returns how many moved."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, 100_000)
        moved = int(await self.io.eval("promote", [q.delayed, q.ready, q.wake], [q.base, limit]))
        self.events.count("promoted", queue, moved)
        return moved

    # -- reading -----------------------------------------------------------------

    async def queues(self) -> list[str]:
        """Sorted queue names from the registry (never a SCAN)."""
        names: set[Any] = await self.io.run(lambda client: client.smembers(self.keys.registry))
        return sorted(n.decode() for n in names)

    async def stats(self, queue: str) -> QueueStats:
        """Sizes of ready / inflight / delayed / dlq, lifetime counters, paused flag."""
        return (await self.stats_many([validate_queue_name(queue)]))[0]

    async def stats_many(
        self, queues: Sequence[str], *, skip_errors: bool = False
    ) -> list[QueueStats]:
        """Stats of several queues in one round trip (7 commands per queue).

        With ``skip_errors`` a queue whose commands failed (a key of the wrong
        type, say) is left out instead of failing the whole call."""
        for name in queues:
            validate_queue_name(name)

        def build(batch: Batch) -> None:
            for name in queues:
                q = self.keys.queue(name)
                batch.command("ZCARD", q.ready)
                batch.command("ZCARD", q.inflight)
                batch.command("ZCARD", q.delayed)
                batch.command("LLEN", q.dlq)
                batch.command("GET", q.processed)
                batch.command("GET", q.dead)
                batch.command("EXISTS", q.paused)

        if not queues:
            return []
        r = await self.io.batch(build, raise_on_error=not skip_errors)
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

    async def snapshot(self) -> list[QueueStats]:
        """Stats of every registered queue, in name order: two round trips.

        A queue whose keys cannot be read, or a registry entry that is not a
        valid queue name (written by something else), is left out rather than
        failing the whole snapshot."""
        names = [n for n in await self.queues() if jobmod.QUEUE_NAME_RE.fullmatch(n)]
        return await self.stats_many(names, skip_errors=True)

    async def get_job(self, queue: str, job_id: str) -> Job:
        """The job's current fields; raises :class:`JobNotFound` (e.g. once acked)."""
        q = self.keys.queue(queue)
        key = q.job(validate_job_id(job_id))
        raw: dict[Any, Any] = await self.io.run(lambda client: client.hgetall(key))
        if not raw:
            raise JobNotFound(queue, job_id)
        return Job.from_hash(raw)

    async def server_time_ms(self) -> int:
        seconds, micros = await self.io.run(lambda client: client.time())
        return int(seconds) * 1000 + int(micros) // 1000

    # -- dead-letter queue ---------------------------------------------------------

    async def dlq_list(
        self, queue: str, limit: int = DLQ_PAGE_DEFAULT, offset: int = 0
    ) -> list[Job]:
        """A page of dead jobs, oldest first."""
        q = self.keys.queue(queue)
        check_int("limit", limit, 1, DLQ_PAGE_MAX)
        check_int("offset", offset, 0, MAX_DLQ_OFFSET)
        ids: list[Any] = await self.io.run(
            lambda client: client.lrange(q.dlq, offset, offset + limit - 1)
        )
        if not ids:
            return []

        def build(batch: Batch) -> None:
            for job_id in ids:
                batch.command("HGETALL", q.job(job_id.decode()))

        raws = await self.io.batch(build)
        return [Job.from_hash(raw) for raw in raws if raw]

    async def dlq_requeue(self, queue: str, job_id: str) -> None:
        """Move one dead job back to ready with attempts 0; :class:`JobNotFound` if
        it is not in the DLQ."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        if not await self.io.eval("dlq_requeue", [q.dlq, q.ready, q.wake], [q.base, "one", job_id]):
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    async def dlq_delete(self, queue: str, job_id: str) -> None:
        """Delete one dead job for good; :class:`JobNotFound` if it is not in the DLQ."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        if not await self.io.eval("dlq_delete", [q.dlq], [q.base, "one", job_id]):
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    async def dlq_requeue_all(self, queue: str) -> int:
        """Requeue the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self.keys.queue(queue)
        return await self._sweep("dlq_requeue", [q.dlq, q.ready, q.wake], q.base)

    async def dlq_purge(self, queue: str) -> int:
        """Delete the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self.keys.queue(queue)
        return await self._sweep("dlq_delete", [q.dlq], q.base)

    async def _sweep(self, script: str, keys: list[str], base: str) -> int:
        total = 0
        while moved := int(await self.io.eval(script, keys, [base, "all", SWEEP_LIMIT])):
            total += moved
        return total

    # -- pause, rate limit, delete -------------------------------------------------

    async def _known(self, queue: str) -> QueueKeys:
        """The keys of ``queue``; :class:`QueueNotFound` unless it is registered.
        Only creating a job registers a queue: admin verbs never do."""
        q = self.keys.queue(queue)
        registry = self.keys.registry
        if not await self.io.run(lambda client: client.sismember(registry, queue)):
            raise QueueNotFound(queue)
        return q

    async def pause(self, queue: str) -> None:
        """Stop claims from ``queue`` (enqueues go on) until :meth:`resume`."""
        q = await self._known(queue)
        await self.io.run(lambda client: client.set(q.paused, "1"))

    async def resume(self, queue: str) -> None:
        """Allow claims again, and wake idle workers."""
        q = await self._known(queue)
        await self.io.eval("resume", [q.paused, q.wake], [])

    async def set_rate_limit(self, queue: str, rate: float, burst: int) -> None:
        """Every claimer of ``queue`` shares this token bucket; it starts full.

        ``rate``: jobs per second, :data:`RATE_MIN` (about one a day) to
        :data:`RATE_MAX`; ``burst``: 1 to :data:`BURST_MAX`."""
        check_number("rate", rate, RATE_MIN, RATE_MAX)
        check_int("burst", burst, 1, BURST_MAX)
        q = await self._known(queue)

        def go(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.delete(q.ratelimit)
            pipe.hset(q.ratelimit, mapping={"rate": repr(float(rate)), "burst": burst})
            pipe.execute()

        await self.io.run(go)

    async def clear_rate_limit(self, queue: str) -> None:
        q = await self._known(queue)
        await self.io.run(lambda client: client.delete(q.ratelimit))

    async def get_rate_limit(self, queue: str) -> RateLimit | None:
        q = await self._known(queue)
        rate, burst = await self.io.run(lambda client: client.hmget(q.ratelimit, "rate", "burst"))
        if rate is None or burst is None:
            return None
        return RateLimit(float(rate), int(burst))

    async def delete_queue(self, queue: str, *, force: bool = False) -> int:
        """Delete ``queue``: its registry entry, its jobs and every key of it.

        A queue that still holds jobs (ready, in flight, delayed or dead) raises
        :class:`QueueNotEmpty` and is left as it was, unless ``force``; then its
        jobs are deleted, 1000 per atomic step. Returns how many jobs went.
        :class:`QueueNotFound` if it is not registered.

        The registry entry goes first, so the hub stops showing the queue at
        once; a refused delete puts it back. A job enqueued while a forced
        delete runs may be deleted with the rest, or may re-register the queue.
        Workers still serving the queue keep waiting for jobs; a handler's late
        ack of a deleted job is refused as stale.
        """
        q = self.keys.queue(queue)
        registry = self.keys.registry
        if not await self.io.run(lambda client: client.srem(registry, queue)):
            raise QueueNotFound(queue)
        keys = list(q.all_fixed())  # ready, inflight, delayed, dlq come first
        total = 0
        try:
            while True:
                code, n = await self.io.eval(
                    "queue_delete", keys, [q.base, "1" if force else "0", SWEEP_LIMIT]
                )
                if code == 0:
                    raise QueueNotEmpty(queue, int(n))
                total += int(n)
                if code == 1:
                    return total
        except BaseException:
            # refused, or stopped part-way: the queue (what is left of it) stays visible
            # (if Redis went away, the error being raised says so already)
            with trio.CancelScope(shield=True), contextlib.suppress(RelayError):
                await self.io.run(lambda client: client.sadd(registry, queue))
            raise
