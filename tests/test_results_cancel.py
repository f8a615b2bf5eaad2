"""Results, waiting for a job's end, cancel and abort (spec section 11), on a real Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
import trio
from support import command_calls, eventually, running_worker

from relay_trio import (
    Broker,
    InvalidInput,
    JobFailed,
    JobFinished,
    JobNotFound,
    JobState,
    QueueHandler,
    Reject,
    ResultTimeout,
)
from relay_trio.job import Job

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "results"


def cmdstat(rdb: redis.Redis, name: str) -> int:
    return command_calls(rdb, name)


async def claim_one(broker: Broker, queue: str = Q, **options: Any) -> Job:
    (job,) = (await broker.claim(queue, **options)).jobs
    return job


# -- results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [({"a": [1, 2.5, None]}, "json"), ("text", "json"), (None, "json"), (b"\x00\xff", "bytes")],
)
async def test_an_acked_job_is_kept_done_with_its_result(
    broker: Broker, rdb: redis.Redis, value: object, kind: str
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    job = await claim_one(broker)
    assert await broker.ack(job, value)
    done = await broker.get_job(Q, job_id)
    assert (done.state, done.result_value, done.result_type) == (JobState.DONE, value, kind)
    assert done.finished_at_ms is not None and done.lease == ""
    q = broker.keys.queue(Q)
    ttl = rdb.pttl(q.job(job_id))
    assert 0 < ttl <= broker.result_ttl_s * 1000  # kept for the result TTL, then gone
    assert rdb.zscore(q.done, job_id) is not None
    view = done.to_dict()
    assert view["state"] == "done" and view["finished_at"]
    assert view["result"] == (value.decode(errors="replace") if kind == "bytes" else value)


async def test_a_result_expires_after_its_ttl(broker: Broker) -> None:
    short = Broker(broker.io, prefix=broker.keys.prefix, result_ttl_s=1)
    job_id = (await short.enqueue(Q, "x")).id
    assert await short.ack(await claim_one(short), 42)
    assert await short.run(short.core.result(Q, job_id)) == 42
    await trio.sleep(1.1)
    with pytest.raises(JobNotFound):
        await short.get_job(Q, job_id)


async def test_a_value_json_cannot_encode_is_refused_before_anything_is_sent(
    broker: Broker,
) -> None:
    await broker.enqueue(Q, "x")
    job = await claim_one(broker)
    with pytest.raises(InvalidInput, match="result"):
        await broker.ack(job, object())
    assert (await broker.get_job(Q, job.id)).state is JobState.INFLIGHT


# -- waiting for the end ----------------------------------------------------------------


async def test_a_waiter_wakes_when_the_job_ends_with_one_blocking_pop(
    broker: Broker, rdb: redis.Redis
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    job = await claim_one(broker)
    pops = cmdstat(rdb, "blpop")
    got: list[Job] = []

    async def wait() -> None:
        got.append(await broker.wait_job(Q, job_id, 20))

    async with trio.open_nursery() as nursery:
        for _ in range(3):  # three waiters: each woken by the one ack
            nursery.start_soon(wait)
        await eventually(lambda: rdb.hget(broker.keys.queue(Q).job(job_id), "waiters") == b"3")
        started = trio.current_time()
        assert await broker.ack(job, "finished")
    assert trio.current_time() - started < 2  # woken by the ack, not by the 20 s timeout
    assert [j.result_value for j in got] == ["finished"] * 3
    assert cmdstat(rdb, "blpop") - pops == 3  # one blocking wait per waiter, no polling


async def test_a_wait_ends_at_its_timeout_with_the_job_as_it_is(broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    started = time.monotonic()
    job = await broker.wait_job(Q, job_id, 0.3)
    assert 0.25 < time.monotonic() - started < 3
    assert job.state is JobState.READY


async def test_waiting_for_a_job_that_ended_returns_at_once(broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    await broker.ack(await claim_one(broker), 7)
    with trio.fail_after(1):
        assert (await broker.wait_job(Q, job_id, 60)).result_value == 7


@pytest.mark.parametrize("seconds", [-1, 61, float("nan")])
async def test_a_wait_outside_its_range_is_invalid(broker: Broker, seconds: float) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    with pytest.raises(InvalidInput, match="timeout"):
        await broker.wait_job(Q, job_id, seconds)


async def test_result_says_how_the_job_ended(broker: Broker) -> None:
    core = broker.core
    ok, dead, cancelled, waiting = [(await broker.enqueue(Q, n)).id for n in "abcd"]
    jobs = {j.id: j for j in (await broker.claim(Q, 3)).jobs}
    await broker.ack(jobs[ok], {"sum": 3})
    await broker.nack(jobs[dead], "boom", dead=True)
    await broker.cancel(Q, waiting)
    assert await broker.run(core.result(Q, ok, 1)) == {"sum": 3}
    with pytest.raises(JobFailed, match="boom") as failed:
        await broker.run(core.result(Q, dead))
    assert failed.value.state == "dead"
    with pytest.raises(JobFailed) as was_cancelled:
        await broker.run(core.result(Q, waiting))
    assert was_cancelled.value.state == "cancelled"
    await broker.release(jobs[cancelled])
    with pytest.raises(ResultTimeout) as timed_out:
        await broker.run(core.result(Q, cancelled, 0.2))
    assert isinstance(timed_out.value, TimeoutError) and timed_out.value.state == "ready"
    with pytest.raises(JobNotFound):
        await broker.run(core.result(Q, "f" * 32))


async def test_without_a_result_ttl_a_waiter_learns_the_job_is_gone(broker: Broker) -> None:
    forgetful = Broker(broker.io, prefix=broker.keys.prefix, result_ttl_s=0)
    job_id = (await forgetful.enqueue(Q, "x")).id
    job = await claim_one(forgetful)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forgetful.ack, job)
        with pytest.raises(JobNotFound):
            await forgetful.run(forgetful.core.result(Q, job_id, 10))


# -- cancel ------------------------------------------------------------------------------


async def test_cancel_a_ready_and_a_delayed_job(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    ready = (await broker.enqueue(Q, "r")).id
    delayed = (await broker.enqueue(Q, "d", delay_ms=60_000)).id
    assert await broker.cancel(Q, ready) is JobState.CANCELLED
    assert await broker.cancel(Q, delayed) is JobState.CANCELLED
    assert rdb.zcard(q.ready) == rdb.zcard(q.delayed) == 0
    assert (await broker.claim(Q)).jobs == []
    for job_id in (ready, delayed):
        job = await broker.get_job(Q, job_id)
        assert job.state is JobState.CANCELLED and job.finished_at_ms is not None
        assert rdb.pttl(q.job(job_id)) > 0 and rdb.zscore(q.cancelled, job_id) is not None
    with pytest.raises(JobFinished) as again:
        await broker.cancel(Q, ready)
    assert again.value.state == "cancelled"


async def test_cancel_of_a_finished_or_unknown_job(broker: Broker) -> None:
    done = (await broker.enqueue(Q, "x")).id
    await broker.ack(await claim_one(broker))
    with pytest.raises(JobFinished, match="done"):
        await broker.cancel(Q, done)
    with pytest.raises(JobNotFound):
        await broker.cancel(Q, "a" * 32)
    with pytest.raises(InvalidInput):
        await broker.cancel(Q, "not-an-id")


async def test_cancel_of_a_running_job_requests_an_abort(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    job_id = (await broker.enqueue(Q, "x")).id
    job = await claim_one(broker)
    assert await broker.cancel(Q, job_id) is JobState.INFLIGHT
    assert rdb.hget(q.job(job_id), "cancel_requested") == b"1"
    assert await broker.aborts([Q, "other"]) == {Q: {job_id}, "other": set()}
    assert await broker.finish_abort(job)
    assert (await broker.get_job(Q, job_id)).state is JobState.CANCELLED
    assert await broker.aborts([Q]) == {Q: set()}
    assert not await broker.ack(job)  # a late ack changes nothing
    assert (await broker.get_job(Q, job_id)).state is JobState.CANCELLED


async def test_the_reaper_cancels_an_aborted_job_whose_worker_is_gone(broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x", max_retries=0)).id
    await claim_one(broker, visibility_ms=50)
    await broker.cancel(Q, job_id)
    await trio.sleep(0.1)
    await broker.reap(Q)
    job = await broker.get_job(Q, job_id)
    assert job.state is JobState.CANCELLED  # not dead-lettered, not retried
    assert "aborted" in job.last_error
    assert (await broker.stats(Q)).dlq == 0


# -- the worker ----------------------------------------------------------------------------


async def test_the_worker_keeps_what_handlers_return(broker: Broker) -> None:
    seen: list[str] = []

    async def handler(job: Job) -> object:
        seen.append(job.id)
        return {"payload": job.payload.decode()}

    ids = [(await broker.enqueue(Q, f"p{i}")).id for i in range(5)]
    async with running_worker(broker, [QueueHandler(Q, handler)]):
        results = [await broker.run(broker.core.result(Q, i, 10)) for i in ids]
    assert results == [{"payload": f"p{i}"} for i in range(5)]
    assert sorted(seen) == sorted(ids)


async def test_a_result_that_is_not_json_is_kept_as_its_repr(broker: Broker) -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    job_id = (await broker.enqueue(Q, "x")).id
    async with running_worker(broker, [QueueHandler(Q, lambda job: Odd())]):
        assert await broker.run(broker.core.result(Q, job_id, 10)) == "<odd>"


async def test_reject_dead_letters_at_once(broker: Broker) -> None:
    async def handler(job: Job) -> None:
        raise Reject("not for us")

    job_id = (await broker.enqueue(Q, "x", max_retries=5)).id
    async with running_worker(broker, [QueueHandler(Q, handler)]) as worker:
        with pytest.raises(JobFailed, match="rejected: not for us"):
            await broker.run(broker.core.result(Q, job_id, 10))
    job = await broker.get_job(Q, job_id)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert worker.stats.rejected == 1


async def test_an_aborted_handler_is_cancelled_within_a_second(broker: Broker) -> None:
    started, stopped = trio.Event(), trio.Event()

    async def handler(job: Job) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    job_id = (await broker.enqueue(Q, "x")).id
    async with running_worker(broker, [QueueHandler(Q, handler)]) as worker:
        await started.wait()
        asked = trio.current_time()
        assert await broker.cancel(Q, job_id) is JobState.INFLIGHT
        with trio.fail_after(1):
            await stopped.wait()
        job = await eventually(
            lambda: _ended(broker, job_id), within=1.5 - (trio.current_time() - asked)
        )
        # its slot is free again (once the worker has the abort script's answer,
        # a moment after Redis shows the job cancelled)
        await eventually(lambda: worker.stats.running[Q] == 0, within=1)
        assert worker.stats.aborted == 1 and worker.stats.failed == 0
        stopping = trio.current_time()
    assert trio.current_time() - stopping < 1  # nothing left to wait for at shutdown
    assert (job.state, job.attempts) == (JobState.CANCELLED, 1)  # never retried
    assert (await broker.stats(Q)).delayed == 0


async def _ended(broker: Broker, job_id: str) -> Job | None:
    job = await broker.get_job(Q, job_id)
    return job if job.state.finished else None


async def test_an_aborted_thread_handler_is_abandoned_and_its_return_changes_nothing(
    broker: Broker,
) -> None:
    release = threading.Event()
    returned = threading.Event()

    def handler(job: Job) -> str:
        release.wait(10)
        returned.set()
        return "too late"

    job_id = (await broker.enqueue(Q, "x")).id
    async with running_worker(broker, [QueueHandler(Q, handler)]) as worker:
        await eventually(lambda: worker.stats.running[Q] == 1)
        await broker.cancel(Q, job_id)
        job = await eventually(lambda: _ended(broker, job_id), within=1.5)
        assert job.state is JobState.CANCELLED
        release.set()
        await trio.to_thread.run_sync(returned.wait, 5)
        await trio.sleep(0.2)
    job = await broker.get_job(Q, job_id)
    assert (job.state, job.result) == (JobState.CANCELLED, None)
    assert worker.stats.acked == 0
