"""The producer client (spec section 9) against a real Redis, through ``open_client``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from support import make_dead

from relay_trio import (
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    JobSpec,
    JobState,
    RedisUnavailable,
    RelayClient,
    RelayError,
    open_client,
)

Q = "client"
HEX32 = re.compile(r"[0-9a-f]{32}")
DEAD_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[RelayClient]:
    async with open_client(redis_server.url, prefix=prefix) as c:
        yield c


async def test_enqueue_returns_the_new_id(client: RelayClient) -> None:
    job_id = await client.enqueue(Q, b"hello", priority=7, max_retries=2)
    assert HEX32.fullmatch(job_id)
    job = await client.get_job(Q, job_id)
    assert (job.payload, job.state, job.priority, job.max_retries, job.attempts) == (
        b"hello",
        JobState.READY,
        7,
        2,
        0,
    )
    delayed = await client.enqueue(Q, "later", delay_ms=60_000)
    assert (await client.get_job(Q, delayed)).state is JobState.DELAYED
    bounded = await client.enqueue(Q, "bounded", timeout_ms=1500)
    assert (await client.get_job(Q, bounded)).timeout_ms == 1500
    assert (await client.get_job(Q, job_id)).timeout_ms is None  # the worker's default
    (many,) = await client.enqueue_many(Q, ["m"], timeout_ms=250)
    assert (await client.get_job(Q, many.id)).timeout_ms == 250


async def test_a_duplicate_key_raises_with_the_existing_id(client: RelayClient) -> None:
    first = await client.enqueue(Q, "one", idempotency_key="order-17")
    with pytest.raises(DuplicateJob) as caught:
        await client.enqueue(Q, "two", idempotency_key="order-17")
    assert caught.value.existing_id == first
    assert caught.value.idempotency_key == "order-17"
    assert caught.value.queue == Q
    assert isinstance(caught.value, RelayError)
    assert (await client.stats(Q)).ready == 1  # nothing written for the duplicate
    assert (await client.get_job(Q, first)).payload == b"one"
    # dedup is per queue
    other = await client.enqueue("client-other", "two", idempotency_key="order-17")
    assert other != first


async def test_enqueue_many_with_payloads(client: RelayClient) -> None:
    results = await client.enqueue_many(Q, ["a", b"b", "c"], priority=3)
    assert [r.duplicate for r in results] == [False] * 3
    assert [r.state for r in results] == [JobState.READY] * 3
    assert len({r.id for r in results}) == 3
    jobs = [await client.get_job(Q, r.id) for r in results]
    assert [j.payload for j in jobs] == [b"a", b"b", b"c"]
    assert {j.priority for j in jobs} == {3}


async def test_enqueue_many_with_job_specs(client: RelayClient) -> None:
    spec = client.broker.spec
    taken = await client.enqueue(Q, "first", idempotency_key="k1")
    specs = [
        spec("urgent", priority=200),
        spec("later", delay_ms=60_000),
        spec("dup", idempotency_key="k1"),
        JobSpec.create("plain"),
    ]
    results = await client.enqueue_many(Q, specs)
    assert [r.duplicate for r in results] == [False, False, True, False]  # reported, not raised
    assert results[2].id == taken
    assert [r.state for r in results] == [
        JobState.READY,
        JobState.DELAYED,
        JobState.READY,
        JobState.READY,
    ]
    assert results[0].id == specs[0].id
    s = await client.stats(Q)
    assert (s.ready, s.delayed) == (3, 1)
    # the best priority is claimed first
    claim = await client.broker.claim(Q, 1)
    assert claim.jobs[0].payload == b"urgent"


async def test_stats_and_queues(client: RelayClient) -> None:
    assert await client.queues() == []
    await client.enqueue_many("zeta", ["x"] * 3)
    await client.enqueue("alpha", "y", delay_ms=60_000)
    await make_dead(client.broker, "alpha", 2)
    assert await client.queues() == ["alpha", "zeta"]
    z = await client.stats("zeta")
    assert (z.queue, z.ready, z.inflight, z.delayed, z.dlq) == ("zeta", 3, 0, 0, 0)
    a = await client.stats("alpha")
    assert (a.ready, a.inflight, a.delayed, a.dlq, a.dead_total, a.paused) == (
        0,
        0,
        1,
        2,
        2,
        False,
    )
    empty = await client.stats("never-used")
    assert (empty.ready, empty.dlq, empty.processed_total) == (0, 0, 0)


async def test_dlq_list_and_requeue(client: RelayClient) -> None:
    ids = await make_dead(client.broker, Q, 3, error="failed {id}")
    dead = await client.dlq(Q)
    assert [j.id for j in dead] == ids  # oldest first
    assert all(j.state is JobState.DEAD for j in dead)
    assert dead[0].last_error == f"failed {ids[0]}"
    assert [j.id for j in await client.dlq(Q, limit=1, offset=1)] == ids[1:2]

    await client.requeue(Q, ids[1])
    job = await client.get_job(Q, ids[1])
    assert (job.state, job.attempts) == (JobState.READY, 0)
    assert [j.id for j in await client.dlq(Q)] == [ids[0], ids[2]]
    s = await client.stats(Q)
    assert (s.ready, s.dlq) == (1, 2)

    with pytest.raises(JobNotFound) as caught:
        await client.requeue(Q, ids[1])  # no longer dead
    assert caught.value.job_id == ids[1]
    with pytest.raises(JobNotFound):
        await client.requeue(Q, "0" * 32)  # never existed


async def test_get_job_after_ack_shows_the_result(client: RelayClient) -> None:
    job_id = await client.enqueue(Q, "done soon")
    (job,) = (await client.broker.claim(Q, 1)).jobs
    assert (await client.get_job(Q, job_id)).state is JobState.INFLIGHT
    assert await client.broker.ack(job, [1, 2])
    done = await client.get_job(Q, job_id)
    assert (done.state, done.result_value) == (JobState.DONE, [1, 2])
    with pytest.raises(JobNotFound):
        await client.get_job(Q, "f" * 32)
    assert (await client.stats(Q)).processed_total == 1


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.enqueue("bad queue!", "x"), "queue"),
        (lambda c: c.enqueue("q" * 65, "x"), "queue"),
        (lambda c: c.enqueue(Q, "x", priority=256), "priority"),
        (lambda c: c.enqueue(Q, "x", priority=-1), "priority"),
        (lambda c: c.enqueue(Q, "x", delay_ms=-5), "delay_ms"),
        (lambda c: c.enqueue(Q, "x", max_retries="3"), "max_retries"),
        (lambda c: c.enqueue(Q, 12345), "payload"),
        (lambda c: c.enqueue(Q, "x", idempotency_key="a\nb"), "idempotency_key"),
        (lambda c: c.enqueue(Q, "x", timeout_ms=0), "timeout_ms"),
        (lambda c: c.enqueue(Q, "x", timeout_ms=7 * 86_400_000 + 1), "timeout_ms"),
        (lambda c: c.enqueue(Q, "x", timeout_ms=1.5), "timeout_ms"),
        (lambda c: c.enqueue_many(Q, []), "jobs"),
        (lambda c: c.enqueue_many(Q, ["x"], priority=999), "priority"),
        (lambda c: c.stats("no/slash"), "queue"),
        (lambda c: c.get_job(Q, "not-an-id"), "id"),
        (lambda c: c.requeue(Q, "ABC"), "id"),
        (lambda c: c.dlq(Q, limit=0), "limit"),
        (lambda c: c.dlq(Q, limit=1001), "limit"),
        (lambda c: c.dlq(Q, offset=-1), "offset"),
    ],
)
async def test_bad_input_is_invalid_input_and_writes_nothing(
    client: RelayClient, call: Any, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await call(client)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert await client.queues() == []


async def test_an_unreachable_redis_is_redis_unavailable(prefix: str) -> None:
    with trio.fail_after(10):
        async with open_client(DEAD_URL, prefix=prefix) as client:
            with pytest.raises(RedisUnavailable):
                await client.enqueue(Q, "x")
            with pytest.raises(RedisUnavailable):
                await client.stats(Q)
            with pytest.raises(RedisUnavailable):
                await client.queues()
            with pytest.raises(RedisUnavailable):
                await client.dlq(Q)
