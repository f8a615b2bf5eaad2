"""The job lifecycle, sans I/O: enqueue, claim, ack, nack, release, extend, cancel.

:class:`JobOps` is a base of :class:`~relay_trio.broker_core.BrokerCore`: each
operation is a generator (see :mod:`relay_trio.calls`) that validates its input
first (:class:`InvalidInput`, nothing sent), then yields one round trip: one Lua
script, or one pipeline of them for a batch, and decodes the replies. A lease
fences ``ack``, ``nack``, ``release``, ``extend`` and ``finish_abort``: they act
only while the caller's lease is the job's. Use the operations through a
runtime: :class:`~relay_trio.broker.Broker` (Trio), :mod:`relay_trio.sync`,
:mod:`relay_trio.aio`.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import job as jobmod
from ._errors import (
    DuplicateJob,
    InvalidInput,
    JobFailed,
    JobFinished,
    JobNotFound,
    ResultTimeout,
)
from ._validate import check_int
from .calls import Call, Command, Op, Script, command, script
from .job import EnqueueOptions, Job, JobSpec, JobState, validate_job_id
from .keys import Keyspace, QueueKeys
from .results import BrokerEvents, Claim, EnqueueResult, NackResult

MAX_VISIBILITY_MS = 24 * 3600 * 1000
MAX_CLAIM = 1000
MAX_ENQUEUE_MANY = 10_000
ENQUEUE_CHUNK = 500  # jobs per script call inside the one round trip of enqueue_many
RELEASED_TEXT = "released: the worker shut down before the handler ended (no attempt used)"
MAX_WAIT_S = 60.0
"""The longest one wait for a job's end (:meth:`JobOps.wait_job`)."""
MAX_RESULT_WAIT_S = 24 * 3600.0
"""The longest :meth:`JobOps.result` waits (in waits of up to MAX_WAIT_S each)."""


def _by_queue(jobs: Sequence[Job]) -> dict[str, list[int]]:
    """The indexes of ``jobs``, grouped by queue (one script call per queue)."""
    out: dict[str, list[int]] = {}
    for index, j in enumerate(jobs):
        out.setdefault(j.queue, []).append(index)
    return out


def encode_result(value: object) -> bytes:
    """A handler's return value as the ack script stores it: ``b"b"`` + bytes for
    bytes, else ``b"j"`` + its JSON text. Raises :class:`InvalidInput`
    (``result``) for a value JSON cannot encode."""
    if isinstance(value, bytes | bytearray | memoryview):
        return b"b" + bytes(value)
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            "result", f"a {type(value).__name__} is neither bytes nor JSON ({exc})"
        ) from exc
    return b"j" + text.encode()


NULL_RESULT = b"jnull"
"""The encoded result of a handler that returned None."""


class JobOps:
    """Enqueue, claim, ack, nack, release, extend, cancel: see the module doc."""

    keys: Keyspace
    events: BrokerEvents
    dedup_ttl_s: int
    max_payload_bytes: int
    backoff_base_ms: int
    backoff_cap_ms: int
    visibility_ms: int
    dlq_max: int
    dlq_ttl_s: int
    result_ttl_s: int

    # -- enqueue ---------------------------------------------------------------

    def spec(self, payload: object, **options: Any) -> JobSpec:
        """A validated :class:`JobSpec` under this broker's payload limit (the
        options are :class:`~relay_trio.job.EnqueueOptions`); :class:`InvalidInput`
        naming a bad one."""
        unknown = set(options) - set(EnqueueOptions.__annotations__)
        if unknown:
            raise InvalidInput(sorted(unknown)[0], "is not an enqueue option")
        return JobSpec.create(payload, max_payload_bytes=self.max_payload_bytes, **options)

    def specs(self, payloads: Sequence[object], **options: Any) -> list[JobSpec]:
        """One spec per item of ``payloads``: a payload (taking ``options``, which
        may not name an idempotency key or id: those belong to one job) or a
        :class:`JobSpec` of its own."""
        for name in ("idempotency_key", "job_id"):
            if options.get(name) is not None:
                raise InvalidInput(name, "give each job its own, as a JobSpec (spec())")
        return [p if isinstance(p, JobSpec) else self.spec(p, **options) for p in payloads]

    def enqueue(self, queue: str, payload: object, **options: Any) -> Op[EnqueueResult]:
        """Add one job. A taken idempotency key returns ``duplicate=True`` and the
        existing id, writing nothing. Raises :class:`InvalidInput` before any write."""
        spec = self.spec(payload, **options)
        (result,) = yield from self.enqueue_many(queue, [spec])
        return result

    def enqueue_strict(self, queue: str, payload: object, **options: Any) -> Op[EnqueueResult]:
        """:meth:`enqueue`, raising :class:`DuplicateJob` for a taken idempotency key."""
        result = yield from self.enqueue(queue, payload, **options)
        if result.duplicate:
            raise DuplicateJob(queue, options.get("idempotency_key") or "", result.id)
        return result

    def enqueue_many(self, queue: str, specs: Sequence[JobSpec]) -> Op[list[EnqueueResult]]:
        """Add up to 10 000 jobs in one round trip; each job is atomic on its own.

        Returns one result per spec, in order. The queue is registered first (a
        command of its own: the registry is in another Cluster slot), so a job
        never exists in a queue that discovery cannot see.
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
        keys = [q.ready, q.delayed, q.seq, q.wake]
        steps: list[Command | Script] = [Command(("SADD", self.keys.registry, queue))]
        for start in range(0, len(specs), ENQUEUE_CHUNK):
            args: list[Any] = [queue, self.dedup_ttl_s]
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
            steps.append(Script("enqueue", keys, args))
        replies = yield Call(steps)
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

    def claim(self, queue: str, n: int = 1, *, visibility_ms: int | None = None) -> Op[Claim]:
        """Atomically take up to ``n`` ready jobs (best priority, then oldest) under
        a new lease with deadline now + visibility. Concurrent claimers never get
        the same job. A paused or rate-limited queue yields no jobs."""
        q = self.keys.queue(queue)
        check_int("n", n, 1, MAX_CLAIM)
        vis = self.visibility_ms if visibility_ms is None else visibility_ms
        check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
        (reply,) = yield script(
            "claim",
            [q.ready, q.inflight, q.ratelimit, q.paused],
            [n, vis, secrets.token_hex(8)],
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
                yield from self._dead_letter_undecodable(queue, values, exc)
        self.events.count("claimed", queue, len(jobs))
        return Claim(jobs=jobs)

    def _dead_letter_undecodable(self, queue: str, values: Any, exc: Exception) -> Op[None]:
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
        yield from self.nack(stub, f"undecodable job hash: {exc}", dead=True)

    def ack(self, job: Job, result: object = None) -> Op[bool]:
        """Finish ``job``: True if it was still in flight under its lease (or a
        reaper gave it back to ready and nobody has claimed it since). With a
        result TTL the job becomes ``done`` with ``result`` (see :meth:`ack_many`)."""
        (acked,) = yield from self.ack_many([job], [result])
        return acked

    def ack_many(
        self, jobs: Sequence[Job], results: Sequence[object] | None = None, *, encoded: bool = False
    ) -> Op[list[bool]]:
        """Ack several jobs in one round trip (grouped per queue); a bool per job.

        ``results`` (one per job: bytes, or a JSON-encodable value) are kept for
        ``result_ttl_s`` in state ``done``; with ``result_ttl_s`` 0 the job is
        deleted at once and no result is sent. A result JSON cannot encode is
        :class:`InvalidInput` before anything is sent (the worker stores its
        ``repr`` instead). With ``encoded`` the results are
        :func:`encode_result`'s bytes already."""
        ttl_ms = self.result_ttl_s * 1000
        if ttl_ms:
            given = results or [None] * len(jobs)
            if encoded:
                for r in given:
                    if not isinstance(r, bytes) or r[:1] not in (b"j", b"b"):
                        raise InvalidInput("results", "encoded results are encode_result()'s")
                values = list(given)
            else:
                values = [encode_result(r) for r in given]
            if len(values) != len(jobs):
                raise InvalidInput("results", "give one result per job")
            extra: Callable[[int], tuple[Any, ...]] | None = lambda i: (values[i],)  # noqa: E731
        else:
            extra = None
        clocks: list[Any] = []  # each script's last reply entry: the Redis time (ms)
        by_queue, replies = yield from self._per_lease(
            "ack",
            jobs,
            lambda q: [q.inflight, q.processed, q.ready, q.done],
            lambda q: [ttl_ms],
            extra,
            tails=clocks,
        )
        out = [flag == 1 for flag in replies]
        # latency on one clock: Redis's, which stamped created_at at enqueue
        for (queue, indexes), now_ms in zip(by_queue.items(), clocks, strict=True):
            acked = [jobs[i] for i in indexes if out[i]]
            self.events.count("processed", queue, len(acked))
            now_s = int(now_ms) / 1000
            self.events.observe_latency(queue, [now_s - j.created_at_ms / 1000 for j in acked])
        return out

    def nack(self, job: Job, error: str = "", *, dead: bool = False) -> Op[NackResult]:
        """A failed attempt: retry after a full-jitter backoff, or dead-letter when
        the attempts are spent (or at once with ``dead=True``). ``error`` is kept
        on the job as ``last_error``."""
        q = self.keys.queue(job.queue)
        (reply,) = yield script(
            "nack",
            [q.inflight, q.delayed, q.dlq, q.dead, q.dlq_trimmed],
            [
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

    def release(self, job: Job) -> Op[bool]:
        """Give ``job`` back to ``ready`` without using up an attempt (its worker is
        shutting down). True if it was still in flight under its lease."""
        (released,) = yield from self.release_many([job])
        return released

    def release_many(self, jobs: Sequence[Job], text: str = RELEASED_TEXT) -> Op[list[bool]]:
        """:meth:`release` for several jobs in one round trip; a bool per job.
        ``text`` becomes each released job's ``last_error``."""
        head = text[: jobmod.MAX_ERROR_TEXT]
        by_queue, replies = yield from self._per_lease(
            "release", jobs, lambda q: [q.inflight, q.ready, q.wake], lambda q: [head]
        )
        out = [flag == 1 for flag in replies]
        for queue, indexes in by_queue.items():
            self.events.count("released", queue, sum(out[i] for i in indexes))
        return out

    def extend(self, job: Job, visibility_ms: int | None = None) -> Op[bool]:
        """Heartbeat: push the deadline to now + visibility if still leased. Returns
        whether it did; a finished or re-claimed job is never touched."""
        (extended,) = yield from self.extend_many([job], visibility_ms)
        return extended

    def extend_many(self, jobs: Sequence[Job], visibility_ms: int | None = None) -> Op[list[bool]]:
        vis = self.visibility_ms if visibility_ms is None else visibility_ms
        check_int("visibility_ms", vis, 1, MAX_VISIBILITY_MS)
        _, replies = yield from self._per_lease(
            "extend", jobs, lambda q: [q.inflight], lambda q: [vis]
        )
        return [deadline != 0 for deadline in replies]

    def _per_lease(
        self,
        name: str,
        jobs: Sequence[Job],
        keys: Callable[[QueueKeys], list[str]],
        head: Callable[[QueueKeys], list[Any]],
        extra: Callable[[int], tuple[Any, ...]] | None = None,
        *,
        tails: list[Any] | None = None,
    ) -> Op[tuple[dict[str, list[int]], list[Any]]]:
        """Run script ``name`` once per queue of ``jobs`` — KEYS ``keys(q)``, ARGV
        ``head(q)`` then each job's id, lease and ``extra(index)`` — all in one
        round trip. Returns the jobs' indexes by queue, and each job's entry of
        its script's reply. With ``tails``, each reply ends with one entry more
        (after the jobs'), appended to ``tails`` in the order of the queues."""
        by_queue = _by_queue(jobs)
        out: list[Any] = [0] * len(jobs)
        if not jobs:
            return by_queue, out
        steps: list[Command | Script] = []
        for queue, indexes in by_queue.items():
            q = self.keys.queue(queue)
            args = head(q)
            if extra is None:
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease)
            else:
                for index in indexes:
                    args += (jobs[index].id, jobs[index].lease, *extra(index))
            steps.append(Script(name, keys(q), args))
        replies = yield Call(steps)
        for indexes, reply in zip(by_queue.values(), replies, strict=True):
            if tails is not None:
                tails.append(reply[-1])
                reply = reply[:-1]
            for index, value in zip(indexes, reply, strict=True):
                out[index] = value
        return by_queue, out

    # -- cancel, abort, waiting for a job's end ----------------------------------------

    def cancel(self, queue: str, job_id: str) -> Op[JobState]:
        """Cancel a job: a ready or delayed one leaves its set and is ``cancelled``
        at once; for one in flight an abort is requested (the worker running it
        cancels its handler within a second and the job ends ``cancelled``; if
        that worker is gone, the reaper does it). Returns the state the job is
        in now (``cancelled``, or ``inflight`` while the abort is pending).
        :class:`JobNotFound` for an unknown job, :class:`JobFinished` for one
        that has ended (done, dead or cancelled)."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        (reply,) = yield script(
            "cancel",
            [q.ready, q.delayed, q.inflight, q.aborting, q.cancelled],
            [job_id, self.result_ttl_ms_for_end()],
        )
        code, state = int(reply[0]), reply[1].decode() if reply[1] else ""
        if code == -1:
            raise JobNotFound(queue, job_id)
        if code == 0:
            raise JobFinished(queue, job_id, state)
        self.events.count("cancelled" if code == 1 else "abort_requested", queue)
        return JobState(state)

    def result_ttl_ms_for_end(self) -> int:
        """How long a cancelled job is kept (ms): the result TTL, at least a minute,
        so that whoever cancelled it can still read how it ended."""
        return max(self.result_ttl_s, 60) * 1000

    def aborts(self, queues: Sequence[str]) -> Op[dict[str, set[str]]]:
        """The ids whose abort was requested, per queue: one round trip for all."""
        if not queues:
            return {}
        qs = [self.keys.queue(name) for name in queues]
        replies = yield Call([Script("aborts", [q.aborting], [3_600_000]) for q in qs])
        return {
            name: {job_id.decode() for job_id in reply}
            for name, reply in zip(queues, replies, strict=True)
        }

    def finish_abort(self, job: Job) -> Op[bool]:
        """End an aborted job as ``cancelled`` (never retried): True if it was still
        in flight under its lease."""
        q = self.keys.queue(job.queue)
        (done,) = yield script(
            "abort",
            [q.inflight, q.aborting, q.cancelled],
            [self.result_ttl_ms_for_end(), job.id, job.lease],
        )
        if done:
            self.events.count("cancelled", job.queue)
        return bool(done)

    def watch_job(self, queue: str, job_id: str) -> Op[Job | None]:
        """The job if it has ended; else None, and the job now counts one waiter
        (its end pushes a token to its end-notification list for each)."""
        q = self.keys.queue(queue)
        validate_job_id(job_id)
        (reply,) = yield script("watch", [q.job(job_id)], [])
        if reply == 0:
            raise JobNotFound(queue, job_id)
        if reply == 1:
            return None
        return Job.from_hash(reply)

    def wait_job(self, queue: str, job_id: str, timeout: float) -> Op[Job]:
        """Wait up to ``timeout`` seconds (0-60) for the job to end: the job as it
        is then (ended, or still running when the time ran out). One blocking
        pop per wait, woken by the script that ends the job; no polling.
        :class:`JobNotFound` if there is no such job (a job whose result was not
        kept is gone the moment it is acked)."""
        timeout = float(timeout)
        if not 0 <= timeout <= MAX_WAIT_S:
            raise InvalidInput("timeout", f"must be 0 to {MAX_WAIT_S:g} seconds, got {timeout}")
        if timeout == 0:
            return (yield from self.get_job(queue, job_id))
        ended = yield from self.watch_job(queue, job_id)
        if ended is None:
            key = self.keys.queue(queue).ended(job_id)
            yield Call((Command(("BLPOP", key, max(timeout, 0.01))),), block_s=timeout)
        if ended is None:
            ended = yield from self.get_job(queue, job_id)
        return ended

    def result(self, queue: str, job_id: str, timeout: float = 0.0) -> Op[object]:
        """The job's result, waiting up to ``timeout`` seconds (0 to a day) for it
        to end: its return value (decoded JSON, or bytes; ``None`` if it returned
        nothing). :class:`JobFailed` if it ended dead or cancelled,
        :class:`ResultTimeout` if it has not ended in time, :class:`JobNotFound`
        if there is no such job (or it ended and its result was not kept)."""
        timeout = float(timeout)
        if not 0 <= timeout <= MAX_RESULT_WAIT_S:
            raise InvalidInput(
                "timeout", f"must be 0 to {MAX_RESULT_WAIT_S:g} seconds, got {timeout}"
            )
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            job = yield from self.wait_job(queue, job_id, min(left, MAX_WAIT_S))
            if job.state is JobState.DONE:
                return job.result_value
            if job.state.finished:
                raise JobFailed(queue, job_id, job.state.value, job.last_error)
            if deadline - time.monotonic() <= 0:
                raise ResultTimeout(queue, job_id, job.state.value, timeout)

    def get_job(self, queue: str, job_id: str) -> Op[Job]:
        """The job's current fields; :class:`JobNotFound` (e.g. once acked without
        a result TTL, or expired)."""
        q = self.keys.queue(queue)
        (raw,) = yield command("HGETALL", q.job(validate_job_id(job_id)))
        if not raw:
            raise JobNotFound(queue, job_id)
        return Job.from_hash(raw)

    # -- waiting for work --------------------------------------------------------------

    def wait_for_work(self, queue: str, block_seconds: float) -> Op[bool]:
        """Wait up to ``block_seconds`` (0.01-30) for a wake-up hint: jobs were made
        ready in ``queue``. True if one came. Takes a hint, never a job, so
        abandoning it at once loses nothing."""
        q = self.keys.queue(queue)
        block = min(max(float(block_seconds), 0.01), 30.0)
        (reply,) = yield Call((Command(("BLPOP", q.wake, block)),), block_s=block)
        return reply is not None
