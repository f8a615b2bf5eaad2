"""The broker: every queue operation, each one atomic in Redis.

Every state change that touches more than one key is one Lua script from
``relay_trio/lua/`` (each names its KEYS and ARGV in a header). Deadlines and
scores come from the Redis server's clock, read inside the scripts, so clock
skew between hosts cannot reap a live job early. Every key of a queue carries
the ``{queue}`` hash tag; no operation ever SCANs the keyspace.

Delivery is at-least-once: a claimed job is leased for a visibility timeout; if
it is neither acked nor extended by then, :meth:`Broker.reap` gives it back to
``ready``. ``ack``, ``nack`` and ``extend`` act only while the caller's lease is
still the job's lease, so a late answer from a worker whose job was reaped and
claimed again never touches the new claim.

Cancellation: a broker call that is cancelled still finishes its Redis command
(see :mod:`relay_trio.redis_io`). A claim whose result the caller never used
leaves its jobs in flight; they return to ``ready`` at their deadline. Nothing
is lost.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import trio

from . import job as jobmod
from ._errors import (
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    QueueNotEmpty,
    QueueNotFound,
    RelayError,
)
from .job import Job, JobSpec, JobState, validate_job_id, validate_queue_name
from .keys import DEFAULT_PREFIX, Keyspace, QueueKeys
from .redis_io import Batch, RedisIO
from .results import (
    BrokerEvents,
    Claim,
    EnqueueResult,
    NackResult,
    NoEvents,
    QueueStats,
    RateLimit,
    ReapResult,
)

DEFAULT_VISIBILITY_MS = 30_000
MAX_VISIBILITY_MS = 24 * 3600 * 1000
MAX_CLAIM = 1000
MAX_ENQUEUE_MANY = 10_000
ENQUEUE_CHUNK = 500  # jobs per script call inside the one round trip of enqueue_many
DEFAULT_DEDUP_TTL_S = 24 * 3600
DEFAULT_BACKOFF_BASE_MS = 1000
DEFAULT_BACKOFF_CAP_MS = 10 * 60 * 1000
DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX = 50, 1000
SWEEP_LIMIT = 1000  # jobs moved per reap / promote / DLQ-bulk script call
RATE_MIN, RATE_MAX = 1e-5, 1e6
"""Rate limits, in jobs per second: from about one a day to a million a second."""
BURST_MAX = 1_000_000
DEFAULT_DLQ_MAX = 10_000
DLQ_MAX_LIMIT = 10_000_000
DEFAULT_DLQ_TTL_S = 30 * 24 * 3600
DLQ_TTL_MIN_S, DLQ_TTL_MAX_S = 60, 10 * 366 * 24 * 3600
RELEASED_TEXT = "released: the worker shut down before the handler ended (no attempt used)"


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _by_queue(jobs: Sequence[Job]) -> dict[str, list[int]]:
    """The indexes of ``jobs``, grouped by queue (one script call per queue)."""
    out: dict[str, list[int]] = {}
    for index, j in enumerate(jobs):
        out.setdefault(j.queue, []).append(index)
    return out


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(name, f"must be an integer between {low} and {high}, got {value!r}")
    return value


class Broker:
    """Queue operations on one Redis. Use :func:`open_broker`, or wrap a :class:`RedisIO`.

    The broker holds no state of its own beyond configuration: any number of
    brokers, in any number of processes, may share one Redis.
    """

    def __init__(
        self,
        io: RedisIO,
        *,
        prefix: str = DEFAULT_PREFIX,
        dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
        max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
        visibility_ms: int = DEFAULT_VISIBILITY_MS,
        dlq_max: int = DEFAULT_DLQ_MAX,
        dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
        events: BrokerEvents | None = None,
    ) -> None:
        """``dlq_max`` (1 to 10 million) and ``dlq_ttl_s`` (a minute to ten years)
        bound each queue's DLQ: beyond them the oldest dead jobs are dropped."""
        self.io = io
        self.events: BrokerEvents = events or NoEvents()
        self.keys = Keyspace(prefix)
        self.dedup_ttl_s = dedup_ttl_s
        self.max_payload_bytes = max_payload_bytes
        self.backoff_base_ms = backoff_base_ms
        self.backoff_cap_ms = backoff_cap_ms
        self.visibility_ms = visibility_ms
        self.dlq_max = _check_int("dlq_max", dlq_max, 1, DLQ_MAX_LIMIT)
        self.dlq_ttl_s = _check_int("dlq_ttl_s", dlq_ttl_s, DLQ_TTL_MIN_S, DLQ_TTL_MAX_S)

    def _q(self, queue: str) -> QueueKeys:
        return self.keys.queue(validate_queue_name(queue))

    # -- enqueue ---------------------------------------------------------------

    def spec(self, payload: object, **options: Any) -> JobSpec:
        """A validated :class:`JobSpec` under this broker's payload limit."""
        return JobSpec.create(payload, max_payload_bytes=self.max_payload_bytes, **options)

    async def enqueue(
        self,
        queue: str,
        payload: object,
        *,
        priority: int = jobmod.DEFAULT_PRIORITY,
        delay_ms: int = 0,
        ready_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_retries: int = jobmod.DEFAULT_MAX_RETRIES,
        timeout_ms: int | None = None,
        job_id: str | None = None,
    ) -> EnqueueResult:
        """Add one job. A taken idempotency key returns ``duplicate=True`` and the
        existing id, writing nothing. ``timeout_ms`` bounds each attempt (``None``:
        the worker's default). Raises :class:`InvalidInput` before any write."""
        spec = self.spec(
            payload,
            priority=priority,
            delay_ms=delay_ms,
            ready_at=ready_at,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            job_id=job_id,
        )
        (result,) = await self.enqueue_many(queue, [spec])
        return result

    async def enqueue_strict(self, queue: str, payload: object, **options: Any) -> EnqueueResult:
        """:meth:`enqueue`, raising :class:`DuplicateJob` for a taken idempotency key."""
        result = await self.enqueue(queue, payload, **options)
        if result.duplicate:
            raise DuplicateJob(queue, options.get("idempotency_key") or "", result.id)
        return result

    async def enqueue_many(self, queue: str, specs: Sequence[JobSpec]) -> list[EnqueueResult]:
        """Add up to 10 000 jobs in one round trip; each job is atomic on its own.

        Returns one result per spec, in order. The queue is registered first, so
        a job never exists in a queue that discovery cannot see.
        """
        q = self._q(queue)
        if not 1 <= len(specs) <= MAX_ENQUEUE_MANY:
            raise InvalidInput("jobs", f"give 1 to {MAX_ENQUEUE_MANY} jobs, got {len(specs)}")
        for spec in specs:
            if not isinstance(spec, JobSpec):
                raise InvalidInput("jobs", f"expected JobSpec, got {type(spec).__name__}")
            if len(spec.payload) > self.max_payload_bytes:
                raise InvalidInput(
                    "payload", f"is {len(spec.payload)} bytes; at most {self.max_payload_bytes}"
                )
        script = self.io.script("enqueue")
        keys = [q.ready, q.delayed, q.seq, q.wake]
        registry = self.keys.registry

        def build(batch: Batch) -> None:
            batch.command("SADD", registry, queue)
            for start in range(0, len(specs), ENQUEUE_CHUNK):
                args: list[Any] = [q.base, queue, self.dedup_ttl_s]
                for s in specs[start : start + ENQUEUE_CHUNK]:
                    args += (
                        s.id,
                        s.payload,
                        s.priority,
                        s.max_retries,
                        s.delay_ms,
                        "" if s.ready_at_ms is None else s.ready_at_ms,
                        s.idempotency_key,
                        "" if s.timeout_ms is None else s.timeout_ms,
                    )
                batch.script(script, keys, args)

        replies = await self.io.batch(build)
        results: list[EnqueueResult] = []
        for reply in replies[1:]:
            for code, job_id, state in zip(reply[::3], reply[1::3], reply[2::3], strict=True):
                results.append(
                    EnqueueResult(
                        job_id.decode(), JobState(state.decode()) if state else None, code == 0
                    )
                )
        duplicates = sum(r.duplicate for r in results)
        self.events.count("enqueued", queue, len(results) - duplicates)
        self.events.count("deduplicated", queue, duplicates)
        return results

    # -- claim / ack / nack / extend ---------------------------------------------

    async def claim(self, queue: str, n: int = 1, *, visibility_ms: int | None = None) -> Claim:
        """Atomically take up to ``n`` ready jobs (best priority, then oldest) under
        a new lease with deadline now + visibility. Concurrent claimers never get
        the same job. A paused or rate-limited queue yields no jobs."""
        q = self._q(queue)
        _check_int("n", n, 1, MAX_CLAIM)
        vis = self.visibility_ms if visibility_ms is None else visibility_ms
        _check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
        reply = await self.io.eval(
            "claim",
            [q.ready, q.inflight, q.ratelimit, q.paused],
            [q.base, n, vis, secrets.token_hex(8)],
        )
        code, wait = reply[0], reply[1]
        if code == 2:
            return Claim(paused=True)
        if code == 3:
            return Claim(retry_after_ms=max(1, int(wait)))
        jobs: list[Job] = []
        for values in reply[2:]:
            try:
                jobs.append(Job.from_fields(values))
            except (ValueError, TypeError, UnicodeError) as exc:
                await self._dead_letter_undecodable(queue, values, exc)
        self.events.count("claimed", queue, len(jobs))
        return Claim(jobs=jobs)

    async def _dead_letter_undecodable(self, queue: str, values: Any, exc: Exception) -> None:
        """A claimed job whose hash cannot be decoded (written by something else)
        goes to the DLQ at once, with the reason: no handler could run it."""
        job_id, lease = values[0], values[9]
        if not isinstance(job_id, bytes) or not isinstance(lease, bytes):
            return  # no id to name: the visibility deadline returns it to ready
        stub = Job(
            id=job_id.decode(errors="replace"),
            queue=queue,
            payload=b"",
            state=JobState.INFLIGHT,
            attempts=0,
            max_retries=0,
            priority=0,
            created_at_ms=0,
            lease=lease.decode(errors="replace"),
        )
        await self.nack(stub, f"undecodable job hash: {exc}", dead=True)

    async def ack(self, job: Job) -> bool:
        """Finish ``job``: True if it was still in flight under its lease (or a
        reaper gave it back to ready and nobody has claimed it since)."""
        return (await self.ack_many([job]))[0]

    async def ack_many(self, jobs: Sequence[Job]) -> list[bool]:
        """Ack several jobs in one round trip (grouped per queue); a bool per job."""
        by_queue = _by_queue(jobs)
        script = self.io.script("ack")

        def build(batch: Batch) -> None:
            for queue, indexes in by_queue.items():
                q = self._q(queue)
                args: list[Any] = [q.base]
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease)
                batch.script(script, [q.inflight, q.processed, q.ready], args)

        out = [False] * len(jobs)
        if not jobs:
            return out
        replies = await self.io.batch(build)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for index, flag in zip(indexes, reply, strict=True):
                out[index] = flag == 1
        now_ms = time.time() * 1000
        for queue, indexes in by_queue.items():
            acked = [jobs[i] for i in indexes if out[i]]
            self.events.count("processed", queue, len(acked))
            self.events.observe_latency(queue, [(now_ms - j.created_at_ms) / 1000 for j in acked])
        return out

    async def nack(self, job: Job, error: str = "", *, dead: bool = False) -> NackResult:
        """A failed attempt: retry after a full-jitter backoff, or dead-letter when
        the attempts are spent (or at once with ``dead=True``). ``error`` is kept
        on the job as ``last_error``."""
        q = self._q(job.queue)
        reply = await self.io.eval(
            "nack",
            [q.inflight, q.delayed, q.dlq, q.dead, q.dlq_trimmed],
            [
                q.base,
                job.id,
                job.lease,
                error[: jobmod.MAX_ERROR_TEXT],
                self.backoff_base_ms,
                self.backoff_cap_ms,
                repr(random.random()),
                "1" if dead else "0",
                self.dlq_max,
                self.dlq_ttl_s * 1000,
            ],
        )
        outcome = {1: "retry", 2: "dead"}.get(reply[0], "stale")
        if outcome != "stale":
            self.events.count("retried" if outcome == "retry" else "dead", job.queue)
        self.events.count("dlq_trimmed", job.queue, int(reply[2]))
        return NackResult(outcome, int(reply[1]))

    async def release(self, job: Job) -> bool:
        """Give ``job`` back to ``ready`` without using up an attempt (its worker is
        shutting down). True if it was still in flight under its lease."""
        return (await self.release_many([job]))[0]

    async def release_many(self, jobs: Sequence[Job], text: str = RELEASED_TEXT) -> list[bool]:
        """:meth:`release` for several jobs in one round trip; a bool per job.
        ``text`` becomes each released job's ``last_error``."""
        by_queue = _by_queue(jobs)
        script = self.io.script("release")

        def build(batch: Batch) -> None:
            for queue, indexes in by_queue.items():
                q = self._q(queue)
                args: list[Any] = [q.base, text[: jobmod.MAX_ERROR_TEXT]]
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease)
                batch.script(script, [q.inflight, q.ready, q.wake], args)

        out = [False] * len(jobs)
        if not jobs:
            return out
        replies = await self.io.batch(build)
        for (queue, indexes), reply in zip(by_queue.items(), replies, strict=True):
            for index, flag in zip(indexes, reply, strict=True):
                out[index] = flag == 1
            self.events.count("released", queue, sum(out[i] for i in indexes))
        return out

    async def extend(self, job: Job, visibility_ms: int | None = None) -> bool:
        """Heartbeat: push the deadline to now + visibility if still leased. Returns
        whether it did; a finished or re-claimed job is never touched."""
        return (await self.extend_many([job], visibility_ms))[0]

    async def extend_many(
        self, jobs: Sequence[Job], visibility_ms: int | None = None
    ) -> list[bool]:
        vis = self.visibility_ms if visibility_ms is None else visibility_ms
        _check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
        by_queue = _by_queue(jobs)
        script = self.io.script("extend")

        def build(batch: Batch) -> None:
            for queue, indexes in by_queue.items():
                q = self._q(queue)
                args: list[Any] = [q.base, vis]
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease)
                batch.script(script, [q.inflight], args)

        out = [False] * len(jobs)
        if not jobs:
            return out
        replies = await self.io.batch(build)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for index, deadline in zip(indexes, reply, strict=True):
                out[index] = deadline != 0
        return out

    # -- maintenance -------------------------------------------------------------

    async def reap(self, queue: str, limit: int = SWEEP_LIMIT) -> ReapResult:
        """One pass: expired in-flight jobs back to ready, or to the DLQ when spent."""
        q = self._q(queue)
        _check_int("limit", limit, 1, 100_000)
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
        q = self._q(queue)
        _check_int("limit", limit, 1, 100_000)
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
        q = self._q(queue)
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
        q = self._q(queue)
        _check_int("limit", limit, 1, DLQ_PAGE_MAX)
        _check_int("offset", offset, 0, 2**62)
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
        q = self._q(queue)
        validate_job_id(job_id)
        if not await self.io.eval("dlq_requeue", [q.dlq, q.ready, q.wake], [q.base, "one", job_id]):
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    async def dlq_delete(self, queue: str, job_id: str) -> None:
        """Delete one dead job for good; :class:`JobNotFound` if it is not in the DLQ."""
        q = self._q(queue)
        validate_job_id(job_id)
        if not await self.io.eval("dlq_delete", [q.dlq], [q.base, "one", job_id]):
            raise JobNotFound(queue, job_id, where="dead-letter queue")

    async def dlq_requeue_all(self, queue: str) -> int:
        """Requeue the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self._q(queue)
        return await self._sweep("dlq_requeue", [q.dlq, q.ready, q.wake], q.base)

    async def dlq_purge(self, queue: str) -> int:
        """Delete the whole DLQ, 1000 jobs per atomic step; returns how many."""
        q = self._q(queue)
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
        q = self._q(queue)
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

    async def wait_for_work(self, queue: str, block_seconds: float) -> bool:
        """Wait up to ``block_seconds`` (0.01-30) for a wake-up hint: jobs were made
        ready in ``queue``. True if one came. Takes a hint, never a job, so
        cancelling it at once loses nothing."""
        q = self._q(queue)
        return await self.io.wait_hint(q.wake, block_seconds)

    async def set_rate_limit(self, queue: str, rate: float, burst: int) -> None:
        """Every claimer of ``queue`` shares this token bucket; it starts full.

        ``rate``: jobs per second, :data:`RATE_MIN` (about one a day) to
        :data:`RATE_MAX`; ``burst``: 1 to :data:`BURST_MAX`."""
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not RATE_MIN <= rate <= RATE_MAX
        ):
            raise InvalidInput(
                "rate", f"must be a number from {RATE_MIN:g} to {RATE_MAX:g}, got {rate!r}"
            )
        _check_int("burst", burst, 1, BURST_MAX)
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
        q = self._q(queue)
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

    async def aclose(self) -> None:
        await self.io.aclose()


@asynccontextmanager
async def open_broker(url: str, **options: Any) -> AsyncIterator[Broker]:
    """A :class:`Broker` on ``url`` for the duration of the block; the connection
    pool is closed on exit. ``options`` go to :class:`Broker` (prefix, timeouts ...)."""
    io_options = {
        k: options.pop(k)
        for k in ("socket_timeout", "connect_timeout", "max_connections")
        if k in options
    }
    broker = Broker(RedisIO.from_url(url, **io_options), **options)
    try:
        yield broker
    finally:
        await broker.aclose()


__all__ = [
    "Broker",
    "BrokerEvents",
    "Claim",
    "EnqueueResult",
    "NackResult",
    "QueueStats",
    "RateLimit",
    "ReapResult",
    "open_broker",
]
