"""The worker never dies of a job (spec section 10), against a real Redis.

Each test drives one of the ways a handler or Redis can hurt a worker — its own
job claimed again after a stall, a rate limit at its extreme, any exception a
handler can raise, a handler that hangs, a shutdown in the middle of a job, a
job hash nobody can decode — and checks that the worker keeps serving and the
job ends in exactly one state.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from functools import partial
from typing import Any

import pytest
import redis
import trio
from support import eventually, running_worker

from relay_trio import Broker, Job, JobNotFound, JobState, QueueHandler, Worker
from relay_trio.broker import RATE_MIN, open_broker
from relay_trio.embedded import EmbeddedRedis

Q = "hard"


working = partial(running_worker, grace_period=1.0)
"""A started worker, stopped on exit (a worker that died fails the test there),
with a grace period of 1 s unless told."""


async def ends_in(broker: Broker, job_id: str, state: JobState | None) -> Job | None:
    """Wait until the job is in ``state`` (None: acked — done, or gone); return it."""

    async def check() -> Any:
        try:
            job = await broker.get_job(Q, job_id)
        except JobNotFound:
            return state is None
        if state is None:
            return job.state is JobState.DONE
        return job if job.state is state else None

    result = await eventually(check)
    return result if isinstance(result, Job) else None


async def still_serves(broker: Broker, worker: Worker) -> None:
    """A job enqueued now is processed: the worker is alive."""
    before = worker.stats.succeeded
    job_id = (await broker.enqueue(Q, "alive?")).id
    await ends_in(broker, job_id, None)
    assert worker.stats.succeeded == before + 1


# -- its own job claimed again -----------------------------------------------------------


async def test_a_job_reaped_and_claimed_again_by_its_own_worker_runs_once(
    broker: Broker, rdb: redis.Redis
) -> None:
    """The lease runs out while the handler still runs (a stall), a reaper pass
    gives the job back, and the same worker claims it again: the running attempt
    adopts the new lease, the job runs once and is acked once. (On the old
    worker, ``_running[job.id]`` was overwritten, then deleted twice: KeyError,
    the worker died.)"""
    calls: list[str] = []
    go_on = trio.Event()

    async def handler(job: Job) -> None:
        calls.append(job.id)
        if job.payload == b"held":
            await go_on.wait()

    job_id = (await broker.enqueue(Q, "held", max_retries=5)).id
    q = broker.keys.queue(Q)
    async with working(broker, [QueueHandler(Q, handler)]) as worker:
        first = await ends_in(broker, job_id, JobState.INFLIGHT)
        assert first is not None
        rdb.zadd(q.inflight, {job_id: 0})  # the lease ran out (heartbeats stalled)
        assert (await broker.reap(Q)).requeued == 1  # a reaper gives the job back

        async def reclaimed() -> bool:
            return worker.stats.reclaimed == 1

        await eventually(reclaimed)  # the same worker claimed it again, at once
        second = await broker.get_job(Q, job_id)
        assert second.state is JobState.INFLIGHT and second.lease != first.lease
        assert second.attempts == 2
        go_on.set()
        await ends_in(broker, job_id, None)  # acked under the new lease
        assert calls == [job_id]  # run once
        await eventually(lambda: worker.stats.acked == 1)  # the ack's reply is back too
        assert (worker.stats.acked, worker.stats.stale_acks) == (1, 0)
        await still_serves(broker, worker)
    assert (await broker.stats(Q)).processed_total == 2


# -- rate limits at their bounds ---------------------------------------------------------


async def test_a_rate_limit_at_its_lowest_neither_crashes_nor_stalls_the_worker(
    broker: Broker,
) -> None:
    """At RATE_MIN the next token is a day away: the worker sleeps in steps of
    at most a second, so clearing the limit is noticed within a second, and its
    other queues go on meanwhile. (The old claim script's wait overflowed or
    went negative for tiny rates, and the worker died in trio.sleep.)"""
    done: list[bytes] = []

    async def handler(job: Job) -> None:
        done.append(job.payload)

    await broker.enqueue_many(Q, [broker.spec(f"r{i}") for i in range(3)])
    await broker.enqueue("other", "o")
    await broker.set_rate_limit(Q, RATE_MIN, 1)
    async with working(broker, [QueueHandler(Q, handler), QueueHandler("other", handler)]):

        async def one_ran() -> bool:
            return (await broker.stats(Q)).processed_total == 1  # the burst of one

        await eventually(one_ran)
        await trio.sleep(0.5)
        assert (await broker.stats(Q)).ready == 2  # limited, and the worker is alive
        assert b"o" in done  # the other queue is not held up
        cleared_at = trio.current_time()
        await broker.clear_rate_limit(Q)

        async def all_ran() -> bool:
            return (await broker.stats(Q)).processed_total == 3

        await eventually(all_ran)
        assert trio.current_time() - cleared_at < 1.5


async def test_a_raised_rate_limit_is_noticed_within_a_second(broker: Broker) -> None:
    async def handler(job: Job) -> None:
        pass

    await broker.enqueue_many(Q, [broker.spec(f"r{i}") for i in range(4)])
    await broker.set_rate_limit(Q, 0.01, 1)  # one per 100 s
    async with working(broker, [QueueHandler(Q, handler)]):

        async def processed(n: int) -> Any:
            async def check() -> bool:
                return (await broker.stats(Q)).processed_total == n

            return check

        await eventually(await processed(1))
        raised_at = trio.current_time()
        await broker.set_rate_limit(Q, 1000, 10)
        await eventually(await processed(4))
        assert trio.current_time() - raised_at < 1.5


# -- whatever a handler raises ---------------------------------------------------------


class Custom(BaseException):
    """Not an Exception: the old worker let it through and died."""


RAISED = [
    ValueError("plain"),
    SystemExit(3),
    KeyboardInterrupt(),
    Custom("custom"),
    ExceptionGroup("group", [ValueError("a"), KeyError("b")]),
    BaseExceptionGroup("base group", [SystemExit(1)]),
]


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("exc", RAISED, ids=[type(e).__name__ for e in RAISED])
async def test_any_exception_from_a_handler_is_a_failed_attempt(
    broker: Broker, kind: str, exc: BaseException
) -> None:
    def fail(job: Job) -> None:
        if job.payload == b"bad":
            raise exc

    async def fail_async(job: Job) -> None:
        fail(job)

    job_id = (await broker.enqueue(Q, "bad", max_retries=0)).id
    handler = fail_async if kind == "async" else fail
    async with working(broker, [QueueHandler(Q, handler)]) as worker:
        dead = await ends_in(broker, job_id, JobState.DEAD)
        assert dead is not None
        assert type(exc).__name__ in dead.last_error.splitlines()[0]
        assert worker.stats.failed == 1
        await still_serves(broker, worker)


# -- timeouts ------------------------------------------------------------------------


async def test_a_hung_async_handler_is_cancelled_at_its_timeout_and_nacked(
    broker: Broker,
) -> None:
    cancelled: list[str] = []

    async def handler(job: Job) -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append(job.id)

    own = (await broker.enqueue(Q, "own", timeout_ms=200, max_retries=0)).id
    default = (await broker.enqueue(Q, "default", max_retries=0)).id
    async with working(broker, [QueueHandler(Q, handler, timeout=0.4)]) as worker:
        for job_id, text in ((own, "timed out after 0.2 s"), (default, "timed out after 0.4 s")):
            dead = await ends_in(broker, job_id, JobState.DEAD)
            assert dead is not None and dead.last_error == text
        assert sorted(cancelled) == sorted([own, default])
        assert worker.stats.timed_out == 2


async def test_a_job_timeout_overrides_the_queue_default(broker: Broker) -> None:
    async def handler(job: Job) -> None:
        await trio.sleep(0.3)

    job_id = (await broker.enqueue(Q, "slow but allowed", timeout_ms=5_000)).id
    async with working(broker, [QueueHandler(Q, handler, timeout=0.05)]) as worker:
        await ends_in(broker, job_id, None)  # acked: its own 5 s beat the queue's 50 ms
        assert worker.stats.timed_out == 0


async def test_a_hung_thread_handler_gives_its_job_back_through_the_reaper(
    broker: Broker,
) -> None:
    """A thread cannot be cancelled: past its timeout the heartbeat stops
    extending the job, its lease runs out and the reaper takes it back (here to
    the DLQ, its one attempt spent). The thread keeps its slot until it returns;
    its late ack is refused."""
    release = threading.Event()

    def handler(job: Job) -> None:
        release.wait(30)

    job_id = (await broker.enqueue(Q, "stuck", timeout_ms=100, max_retries=1)).id
    async with working(
        broker, [QueueHandler(Q, handler)], visibility_ms=600, reap_interval=0.1
    ) as worker:
        dead = await ends_in(broker, job_id, JobState.DEAD)
        assert dead is not None
        assert dead.last_error == "visibility timeout expired on attempt 1"
        release.set()

        async def late_ack_refused() -> bool:
            return worker.stats.stale_acks == 1

        await eventually(late_ack_refused)
        await still_serves(broker, worker)


async def test_the_heartbeat_keeps_a_job_alive_until_its_timeout_only(broker: Broker) -> None:
    """A thread handler within its timeout keeps its lease past the visibility."""

    def handler(job: Job) -> None:
        threading.Event().wait(1.0)  # longer than the 0.3 s visibility, shorter than 5 s

    job_id = (await broker.enqueue(Q, "long", timeout_ms=5_000)).id
    async with working(
        broker, [QueueHandler(Q, handler)], visibility_ms=300, reap_interval=0.05
    ) as worker:
        await ends_in(broker, job_id, None)
        assert (worker.stats.acked, worker.stats.stale_acks) == (1, 0)


# -- shutdown releases ------------------------------------------------------------------


async def test_shutdown_releases_a_job_without_using_an_attempt(broker: Broker) -> None:
    """A deploy in the middle of a job whose last attempt it is: the job goes back
    to ready with attempts as before, and the next worker runs it. (The old
    worker nacked it: with max_retries=1 a healthy job was dead-lettered.)"""
    started = trio.Event()
    finished: list[str] = []

    async def slow(job: Job) -> None:
        started.set()
        await trio.sleep(60)

    async def quick(job: Job) -> None:
        finished.append(job.id)

    job_id = (await broker.enqueue(Q, "deploy", max_retries=1)).id
    async with working(broker, [QueueHandler(Q, slow)], grace_period=0.1) as worker:
        await started.wait()
    released = await broker.get_job(Q, job_id)
    assert released.state is JobState.READY
    assert released.attempts == 0
    assert released.last_error.startswith("released")
    assert (worker.stats.cancelled, worker.stats.released, worker.stats.failed) == (1, 1, 0)
    async with working(broker, [QueueHandler(Q, quick)]):
        await ends_in(broker, job_id, None)
    assert finished == [job_id]


# -- a job nobody can decode --------------------------------------------------------------


async def test_an_undecodable_job_is_dead_lettered_and_the_worker_goes_on(
    broker: Broker, rdb: redis.Redis
) -> None:
    async def handler(job: Job) -> None:
        pass

    bad = (await broker.enqueue(Q, "bad")).id
    rdb.hset(broker.keys.queue(Q).job(bad), "created_at", "yesterday")
    q = broker.keys.queue(Q)
    async with working(broker, [QueueHandler(Q, handler)]) as worker:

        async def dead_lettered() -> bool:  # get_job cannot decode it either
            return rdb.hget(q.job(bad), "state") == b"dead"

        await eventually(dead_lettered)
        await still_serves(broker, worker)
    assert rdb.lrange(q.dlq, 0, -1) == [bad.encode()]
    assert rdb.hget(q.job(bad), "last_error").startswith(b"undecodable job hash")


# -- acks during an outage ------------------------------------------------------------


async def test_an_outage_alone_causes_no_second_run(own_redis: EmbeddedRedis) -> None:
    """Jobs finish while Redis is frozen for longer than their visibility: their
    acks fail, stay pending (leases kept alive by the heartbeat once Redis is
    back) and land afterwards. Whether the worker's own reaper gets there first
    or not, no job runs twice. (The old worker gave an ack up after 3 tries of
    1 s, and the job ran again after its visibility timeout.)"""
    assert own_redis.url is not None and own_redis.pid is not None
    calls: Counter[str] = Counter()
    frozen = trio.Event()

    async def handler(job: Job) -> None:
        calls[job.id] += 1
        await frozen.wait()  # finishes while Redis is frozen

    async with open_broker(own_redis.url, socket_timeout=0.5) as broker:
        ids = [r.id for r in await broker.enqueue_many(Q, [broker.spec(str(i)) for i in range(20)])]
        async with working(
            broker,
            [QueueHandler(Q, handler, concurrency=20)],
            visibility_ms=1000,
            reap_interval=0.1,
            error_retry_delay=0.1,
        ) as worker:

            async def all_running() -> bool:
                return len(calls) == 20

            await eventually(all_running)
            os.kill(own_redis.pid, signal.SIGSTOP)
            frozen.set()
            await trio.sleep(4.0)  # 3 ack tries of 1 s each would be over by now
            os.kill(own_redis.pid, signal.SIGCONT)

            async def all_acked() -> bool:
                return (await broker.stats(Q)).processed_total == 20

            await eventually(all_acked, within=10)
            await trio.sleep(1.5)  # past a visibility timeout: nothing comes back
            # (an ack that timed out may still run once Redis thaws, and a reaper
            # pass may give a job back first, which this worker then claims again
            # and adopts: the counts of stale and adopted acks vary, the runs do not)
            assert worker.stats.succeeded == 20
        s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (0, 0, 0, 0, 20)
    assert calls == Counter({job_id: 1 for job_id in ids})
