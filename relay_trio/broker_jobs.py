"""The job lifecycle of the broker: enqueue, claim, ack, nack, release, extend.

:class:`JobLifecycle` is a base of :class:`~relay_trio.broker.Broker` (use it
through a broker; the broker's module doc gives the contract). Each operation
validates its input first (:class:`InvalidInput`, nothing written), then is one
round trip: one Lua script, or one pipeline of them for a batch. A lease fences
``ack``, ``nack``, ``release`` and ``extend``: they act only while the caller's
lease is the job's.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from . import job as jobmod
from ._errors import DuplicateJob, InvalidInput
from ._validate import check_int
from .job import Job, JobSpec, JobState
from .keys import Keyspace, QueueKeys
from .redis_io import Batch, RedisIO
from .results import BrokerEvents, Claim, EnqueueResult, NackResult

MAX_VISIBILITY_MS = 24 * 3600 * 1000
MAX_CLAIM = 1000
MAX_ENQUEUE_MANY = 10_000
ENQUEUE_CHUNK = 500  # jobs per script call inside the one round trip of enqueue_many
RELEASED_TEXT = "released: the worker shut down before the handler ended (no attempt used)"


def _by_queue(jobs: Sequence[Job]) -> dict[str, list[int]]:
    """The indexes of ``jobs``, grouped by queue (one script call per queue)."""
    out: dict[str, list[int]] = {}
    for index, j in enumerate(jobs):
        out.setdefault(j.queue, []).append(index)
    return out


class JobLifecycle:
    """Enqueue, claim, ack, nack, release, extend: see :class:`~relay_trio.broker.Broker`."""

    io: RedisIO
    keys: Keyspace
    events: BrokerEvents
    dedup_ttl_s: int
    max_payload_bytes: int
    backoff_base_ms: int
    backoff_cap_ms: int
    visibility_ms: int
    dlq_max: int
    dlq_ttl_s: int

    # -- enqueue ---------------------------------------------------------------

    def spec(
        self,
        payload: object,
        *,
        priority: int = jobmod.DEFAULT_PRIORITY,
        delay_ms: int = 0,
        ready_at: datetime | None = None,
        idempotency_key: str | None = None,
        max_retries: int = jobmod.DEFAULT_MAX_RETRIES,
        timeout_ms: int | None = None,
        job_id: str | None = None,
    ) -> JobSpec:
        """A validated :class:`JobSpec` under this broker's payload limit (the
        options are :meth:`enqueue`'s); :class:`InvalidInput` naming a bad one."""
        return JobSpec.create(
            payload,
            priority=priority,
            delay_ms=delay_ms,
            ready_at=ready_at,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            max_payload_bytes=self.max_payload_bytes,
            job_id=job_id,
        )

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
        existing id, writing nothing. ``priority`` 0-255 (higher first);
        ``delay_ms`` (up to a year) or ``ready_at`` (a datetime with a time zone);
        ``max_retries`` 0-1000; ``timeout_ms`` bounds each attempt (1 ms to a
        week; ``None``: the worker's default); ``job_id`` 32 lowercase hex
        characters (default: random). Raises :class:`InvalidInput` before any write."""
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

    async def enqueue_strict(
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
        """:meth:`enqueue`, raising :class:`DuplicateJob` for a taken idempotency key."""
        result = await self.enqueue(
            queue,
            payload,
            priority=priority,
            delay_ms=delay_ms,
            ready_at=ready_at,
            idempotency_key=idempotency_key,
            max_retries=max_retries,
            timeout_ms=timeout_ms,
            job_id=job_id,
        )
        if result.duplicate:
            raise DuplicateJob(queue, idempotency_key or "", result.id)
        return result

    async def enqueue_many(self, queue: str, specs: Sequence[JobSpec]) -> list[EnqueueResult]:
        """Add up to 10 000 jobs in one round trip; each job is atomic on its own.

        Returns one result per spec, in order. The queue is registered first, so
        a job never exists in a queue that discovery cannot see.
        """
        q = self.keys.queue(queue)
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
        q = self.keys.queue(queue)
        check_int("n", n, 1, MAX_CLAIM)
        vis = self.visibility_ms if visibility_ms is None else visibility_ms
        check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
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
        by_queue, replies = await self._per_lease(
            "ack", jobs, lambda q: [q.inflight, q.processed, q.ready], lambda q: [q.base]
        )
        out = [flag == 1 for flag in replies]
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
        q = self.keys.queue(job.queue)
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
        head = text[: jobmod.MAX_ERROR_TEXT]
        by_queue, replies = await self._per_lease(
            "release", jobs, lambda q: [q.inflight, q.ready, q.wake], lambda q: [q.base, head]
        )
        out = [flag == 1 for flag in replies]
        for queue, indexes in by_queue.items():
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
        check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
        _, replies = await self._per_lease(
            "extend", jobs, lambda q: [q.inflight], lambda q: [q.base, vis]
        )
        return [deadline != 0 for deadline in replies]

    async def _per_lease(
        self,
        name: str,
        jobs: Sequence[Job],
        keys: Callable[[QueueKeys], list[str]],
        head: Callable[[QueueKeys], list[Any]],
    ) -> tuple[dict[str, list[int]], list[Any]]:
        """Run script ``name`` once per queue of ``jobs`` — KEYS ``keys(q)``, ARGV
        ``head(q)`` then each job's id and lease — all in one round trip. Returns
        the jobs' indexes by queue, and each job's entry of its script's reply."""
        by_queue = _by_queue(jobs)
        out: list[Any] = [0] * len(jobs)
        if not jobs:
            return by_queue, out
        script = self.io.script(name)

        def build(batch: Batch) -> None:
            for queue, indexes in by_queue.items():
                q = self.keys.queue(queue)
                args = head(q)
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease)
                batch.script(script, keys(q), args)

        replies = await self.io.batch(build)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            for index, value in zip(indexes, reply, strict=True):
                out[index] = value
        return by_queue, out

    # -- waiting for work --------------------------------------------------------------

    async def wait_for_work(self, queue: str, block_seconds: float) -> bool:
        """Wait up to ``block_seconds`` (0.01-30) for a wake-up hint: jobs were made
        ready in ``queue``. True if one came. Takes a hint, never a job, so
        cancelling it at once loses nothing."""
        q = self.keys.queue(queue)
        return await self.io.wait_hint(q.wake, block_seconds)

    def reserve_waiters(self, n: int) -> None:
        """Make room for ``n`` more tasks in :meth:`wait_for_work` at once (a worker
        reserves one per queue it serves), so that no wait queues behind another
        for a connection. Reservations last as long as the broker."""
        self.io.reserve_waiters(n)
