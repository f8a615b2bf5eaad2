"""Broker administration against a real Redis: input validation, dedup, rate limits,
pause, reap, promote, stats, the DLQ, job lookup, script reloads, key layout."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import trio
from support import keys_under, make_dead

from relay_trio._errors import (
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    QueueNotFound,
    RedisUnavailable,
    RelayError,
)
from relay_trio.broker import (
    DLQ_PAGE_DEFAULT,
    Broker,
    Claim,
    EnqueueResult,
    QueueStats,
    RateLimit,
    ReapResult,
    open_broker,
)
from relay_trio.job import DEFAULT_MAX_PAYLOAD_BYTES, JobSpec, JobState

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

MIB = 1024 * 1024


def unknown_id() -> str:
    return secrets.token_hex(16)


async def fill(broker: Broker, queue: str, n: int, **options: Any) -> list[str]:
    """Enqueue ``n`` jobs in one round trip; their ids in enqueue order."""
    results = await broker.enqueue_many(
        queue, [broker.spec(f"job-{i}", **options) for i in range(n)]
    )
    assert not any(r.duplicate for r in results)
    return [r.id for r in results]


async def make_dead_bulk(broker: Broker, queue: str, n: int) -> None:
    """``n`` dead jobs quickly: claim with a tiny visibility, let reap dead-letter them."""
    await fill(broker, queue, n, max_retries=0)
    claimed = 0
    while claimed < n:
        claim = await broker.claim(queue, min(1000, n - claimed), visibility_ms=1)
        assert claim.jobs
        claimed += len(claim.jobs)
    await trio.sleep(0.01)
    dead = 0
    while result := await broker.reap(queue):
        if result == ReapResult(0, 0):
            break
        dead += result.dead
    assert dead == n
    assert (await broker.stats(queue)).dlq == n


# -- bad input -------------------------------------------------------------------------

BAD_QUEUES: list[object] = ["", "x" * 65, "a b", "a/b", "caf\u00e9", "a{b}", 7, None]


async def expect_invalid(call: Awaitable[object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await call
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, RelayError)
    assert info.value.field == field
    assert str(info.value).startswith(field + ": ")


async def test_bad_queue_names_rejected_and_nothing_written(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    good_id = unknown_id()
    for name in BAD_QUEUES:
        q: Any = name
        await expect_invalid(broker.enqueue(q, "x"), "queue")
        await expect_invalid(broker.enqueue(q, "x", idempotency_key="k"), "queue")
        await expect_invalid(broker.enqueue_many(q, [JobSpec.create("x")]), "queue")
        await expect_invalid(broker.claim(q), "queue")
        await expect_invalid(broker.pause(q), "queue")
        await expect_invalid(broker.resume(q), "queue")
        await expect_invalid(broker.set_rate_limit(q, 1, 1), "queue")
        await expect_invalid(broker.stats(q), "queue")
        await expect_invalid(broker.get_job(q, good_id), "queue")
        await expect_invalid(broker.dlq_list(q), "queue")
        await expect_invalid(broker.dlq_requeue(q, good_id), "queue")
        await expect_invalid(broker.dlq_delete(q, good_id), "queue")
        await expect_invalid(broker.dlq_requeue_all(q), "queue")
        await expect_invalid(broker.dlq_purge(q), "queue")
        await expect_invalid(broker.reap(q), "queue")
        await expect_invalid(broker.promote(q), "queue")
    assert keys_under(rdb, prefix) == []
    assert await broker.queues() == []


async def test_stats_many_rejects_bad_queue_names(broker: Broker) -> None:
    # Every other public broker method validates queue names; stats_many builds
    # keys from whatever it is given (a name with "}" even breaks the hash tag).
    await expect_invalid(broker.stats_many(["a}b"]), "queue")
    await expect_invalid(broker.stats_many(["ok", ""]), "queue")


async def test_bad_job_options_rejected_and_nothing_written(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await expect_invalid(broker.enqueue("q", "x", priority=256), "priority")
    await expect_invalid(broker.enqueue("q", "x", priority=-1), "priority")
    await expect_invalid(broker.enqueue("q", "x", priority=True), "priority")
    await expect_invalid(broker.enqueue("q", "x", delay_ms=-1), "delay_ms")
    await expect_invalid(broker.enqueue("q", "x", max_retries=-1), "max_retries")
    await expect_invalid(broker.enqueue("q", "x", idempotency_key="a\nb"), "idempotency_key")
    await expect_invalid(broker.enqueue("q", "x", job_id="XYZ"), "id")
    await expect_invalid(broker.enqueue("q", 12345), "payload")
    await expect_invalid(broker.enqueue_strict("q", "x", priority=300), "priority")
    await expect_invalid(broker.enqueue_many("q", []), "jobs")
    await expect_invalid(broker.enqueue_many("q", ["raw"]), "jobs")  # type: ignore[list-item]
    await expect_invalid(
        broker.enqueue_many("q", [JobSpec.create("x")] * 10_001), "jobs"
    )  # too many
    await expect_invalid(broker.claim("q", 0), "n")
    await expect_invalid(broker.claim("q", 1001), "n")
    await expect_invalid(broker.claim("q", 1, visibility_ms=0), "visibility_ms")
    assert keys_under(rdb, prefix) == []


async def test_oversize_payload_rejected_and_nothing_written(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    small = Broker(broker.io, prefix=broker.keys.prefix, max_payload_bytes=8)
    assert (await small.enqueue("small", b"12345678")).state is JobState.READY
    before = keys_under(rdb, prefix)
    await expect_invalid(small.enqueue("small", b"123456789"), "payload")
    await expect_invalid(small.enqueue("small", "\u00e9" * 5), "payload")  # 10 bytes
    with pytest.raises(InvalidInput):
        small.spec(b"x" * 9)
    assert keys_under(rdb, prefix) == before
    assert (await small.stats("small")).ready == 1

    assert broker.max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES == MIB
    await expect_invalid(broker.enqueue("big", b"x" * (MIB + 1)), "payload")
    assert keys_under(rdb, prefix) == before
    assert (await broker.enqueue("big", b"x" * MIB)).state is JobState.READY


async def test_bad_job_ids_and_dlq_paging_rejected(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    for bad in ["", "nope", "A" * 32, "0" * 31, "0" * 33, "g" * 32, None, 5]:
        b: Any = bad
        await expect_invalid(broker.get_job("q", b), "id")
        await expect_invalid(broker.dlq_requeue("q", b), "id")
        await expect_invalid(broker.dlq_delete("q", b), "id")
    await expect_invalid(broker.dlq_list("q", limit=0), "limit")
    await expect_invalid(broker.dlq_list("q", limit=1001), "limit")
    await expect_invalid(broker.dlq_list("q", limit=True), "limit")
    await expect_invalid(broker.dlq_list("q", offset=-1), "offset")
    assert keys_under(rdb, prefix) == []
    assert await broker.dlq_list("q", limit=1000) == []


# -- dedup -----------------------------------------------------------------------------


async def test_dedup_same_key_same_queue(broker: Broker, rdb: redis.Redis, prefix: str) -> None:
    first = await broker.enqueue("dq", "one", idempotency_key="order-1")
    assert first.duplicate is False
    assert first.state is JobState.READY
    before = keys_under(rdb, prefix)
    seq_before = rdb.get(broker.keys.queue("dq").seq)

    second = await broker.enqueue("dq", "two", idempotency_key="order-1", priority=9)
    assert second == EnqueueResult(first.id, JobState.READY, duplicate=True)
    assert keys_under(rdb, prefix) == before
    assert rdb.get(broker.keys.queue("dq").seq) == seq_before
    assert (await broker.stats("dq")).ready == 1
    job = await broker.get_job("dq", first.id)
    assert job.payload == b"one"
    assert job.priority == 0
    assert job.idempotency_key == "order-1"

    # The duplicate reports the existing job's current state.
    claim = await broker.claim("dq")
    assert [j.id for j in claim.jobs] == [first.id]
    third = await broker.enqueue("dq", "three", idempotency_key="order-1")
    assert third == EnqueueResult(first.id, JobState.INFLIGHT, duplicate=True)

    # Without a key, or with another key, nothing is deduplicated.
    other = await broker.enqueue("dq", "other", idempotency_key="order-2")
    plain = await broker.enqueue("dq", "plain")
    assert not other.duplicate and not plain.duplicate
    assert len({first.id, other.id, plain.id}) == 3


async def test_dedup_is_per_queue(broker: Broker) -> None:
    a = await broker.enqueue("qa", "x", idempotency_key="k")
    b = await broker.enqueue("qb", "x", idempotency_key="k")
    assert not a.duplicate and not b.duplicate
    assert a.id != b.id
    assert (await broker.enqueue("qb", "x", idempotency_key="k")).id == b.id
    assert [s.ready for s in await broker.stats_many(["qa", "qb"])] == [1, 1]


async def test_dedup_ttl_is_set(broker: Broker, rdb: redis.Redis) -> None:
    assert broker.core.dedup_ttl_s == 24 * 3600
    r = await broker.enqueue("dq", "x", idempotency_key="ttl-key")
    key = broker.keys.queue("dq").dedup("ttl-key")
    assert rdb.get(key) == r.id.encode()
    assert 24 * 3600 - 5 <= rdb.ttl(key) <= 24 * 3600

    short = Broker(broker.io, prefix=broker.keys.prefix, dedup_ttl_s=30)
    await short.enqueue("dq", "x", idempotency_key="short")
    assert 25 <= rdb.ttl(broker.keys.queue("dq").dedup("short")) <= 30


async def test_dedup_key_reusable_after_ttl(broker: Broker, rdb: redis.Redis) -> None:
    short = Broker(broker.io, prefix=broker.keys.prefix, dedup_ttl_s=1)
    first = await short.enqueue("dq", "x", idempotency_key="expiring")
    assert (await short.enqueue("dq", "x", idempotency_key="expiring")).duplicate
    await trio.sleep(1.2)
    assert rdb.exists(short.keys.queue("dq").dedup("expiring")) == 0
    again = await short.enqueue("dq", "y", idempotency_key="expiring")
    assert again.duplicate is False
    assert again.id != first.id
    assert (await short.stats("dq")).ready == 2


async def test_dedup_key_not_released_on_ack(broker: Broker) -> None:
    first = await broker.enqueue("dq", "x", idempotency_key="done-once")
    (job,) = (await broker.claim("dq")).jobs
    assert await broker.ack(job)
    assert (await broker.get_job("dq", first.id)).state is JobState.DONE
    again = await broker.enqueue("dq", "x", idempotency_key="done-once")
    assert again == EnqueueResult(first.id, JobState.DONE, duplicate=True)
    forgetful = Broker(broker.io, prefix=broker.keys.prefix, result_ttl_s=0)
    second = await forgetful.enqueue("dq", "x", idempotency_key="gone-once")
    (job,) = (await forgetful.claim("dq")).jobs
    assert await forgetful.ack(job)
    with pytest.raises(JobNotFound):
        await broker.get_job("dq", second.id)
    again = await broker.enqueue("dq", "x", idempotency_key="gone-once")
    assert again == EnqueueResult(second.id, None, duplicate=True)
    assert (await broker.stats("dq")).ready == 0


async def test_dedup_concurrent_single_winner(broker: Broker) -> None:
    results: list[EnqueueResult] = []

    async def one(i: int) -> None:
        results.append(await broker.enqueue("race", f"p{i}", idempotency_key="same"))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    winners = [r for r in results if not r.duplicate]
    assert len(results) == 20
    assert len(winners) == 1
    assert all(r.id == winners[0].id for r in results)
    stats = await broker.stats("race")
    assert stats.ready == 1
    assert (await broker.get_job("race", winners[0].id)).idempotency_key == "same"


async def test_enqueue_strict_raises_duplicate(broker: Broker) -> None:
    first = await broker.enqueue_strict("dq", "x", idempotency_key="strict")
    assert not first.duplicate
    with pytest.raises(DuplicateJob) as info:
        await broker.enqueue_strict("dq", "y", idempotency_key="strict")
    assert isinstance(info.value, RelayError)
    assert info.value.existing_id == first.id
    assert info.value.idempotency_key == "strict"
    assert info.value.queue == "dq"
    assert (await broker.stats("dq")).ready == 1


async def test_dedup_inside_one_batch(broker: Broker) -> None:
    specs = [
        broker.spec("a", idempotency_key="k1"),
        broker.spec("b", idempotency_key="k2"),
        broker.spec("c", idempotency_key="k1"),
        broker.spec("d"),
    ]
    results = await broker.enqueue_many("batch", specs)
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert results[2].id == results[0].id == specs[0].id
    assert results[2].state is JobState.READY
    assert results[1].id == specs[1].id
    assert (await broker.stats("batch")).ready == 3


# -- rate limit ------------------------------------------------------------------------


async def test_rate_limit_round_trip(broker: Broker, rdb: redis.Redis) -> None:
    await fill(broker, "rl", 1)  # only a job registers a queue
    assert await broker.get_rate_limit("rl") is None
    await broker.set_rate_limit("rl", 2.5, 10)
    assert await broker.get_rate_limit("rl") == RateLimit(2.5, 10)
    await broker.set_rate_limit("rl", 7, 3)
    assert await broker.get_rate_limit("rl") == RateLimit(7.0, 3)
    await broker.clear_rate_limit("rl")
    assert await broker.get_rate_limit("rl") is None
    assert rdb.exists(broker.keys.queue("rl").ratelimit) == 0
    await broker.clear_rate_limit("rl")  # idempotent


async def test_rate_limit_invalid(broker: Broker, rdb: redis.Redis, prefix: str) -> None:
    bad_rates: list[Any] = [0, -1, 1e6 + 1, float("nan"), float("inf"), True, "5", None]
    for rate in bad_rates:
        await expect_invalid(broker.set_rate_limit("rl", rate, 5), "rate")
    bad_bursts: list[Any] = [0, -1, 1.5, True, "3", 1_000_001]
    for burst in bad_bursts:
        await expect_invalid(broker.set_rate_limit("rl", 1, burst), "burst")
    assert keys_under(rdb, prefix) == []


async def test_rate_limit_burst_then_limited(broker: Broker) -> None:
    await fill(broker, "rl", 20)
    await broker.set_rate_limit("rl", 1, 5)
    claim = await broker.claim("rl", 20)
    assert len(claim.jobs) == 5
    nxt = await broker.claim("rl", 20)
    assert nxt.jobs == []
    assert nxt.paused is False
    assert 0 < nxt.retry_after_ms <= 1000
    assert (await broker.stats("rl")).ready == 15


async def test_rate_limit_refill(broker: Broker) -> None:
    await fill(broker, "rl", 60)
    await broker.set_rate_limit("rl", 20, 10)
    assert len((await broker.claim("rl", 50)).jobs) == 10
    await trio.sleep(0.3)
    got = len((await broker.claim("rl", 50)).jobs)
    assert 4 <= got <= 8


async def test_rate_limit_concurrent_claims_respect_burst(broker: Broker) -> None:
    await fill(broker, "rl", 40)
    await broker.set_rate_limit("rl", 0.001, 7)
    claims: list[Claim] = []

    async def one() -> None:
        claims.append(await broker.claim("rl", 3))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    ids = [j.id for c in claims for j in c.jobs]
    assert len(ids) == 7
    assert len(set(ids)) == 7
    assert all(c.retry_after_ms > 0 for c in claims if not c.jobs)
    assert (await broker.stats("rl")).inflight == 7


async def test_rate_limit_token_only_for_popped_job(broker: Broker) -> None:
    await fill(broker, "rl", 1)
    assert len((await broker.claim("rl", 5)).jobs) == 1  # no limit yet
    await broker.set_rate_limit("rl", 0.001, 3)
    for _ in range(10):
        claim = await broker.claim("rl", 5)
        assert claim == Claim()  # empty queue: no jobs, not limited
    await fill(broker, "rl", 5)
    assert len((await broker.claim("rl", 5)).jobs) == 3
    assert (await broker.claim("rl", 5)).retry_after_ms > 0


async def test_rate_limit_cleared_lifts_limit(broker: Broker) -> None:
    await fill(broker, "rl", 10)
    await broker.set_rate_limit("rl", 0.001, 2)
    assert len((await broker.claim("rl", 10)).jobs) == 2
    await broker.clear_rate_limit("rl")
    assert len((await broker.claim("rl", 10)).jobs) == 8


# -- pause / resume --------------------------------------------------------------------


async def test_pause_and_resume(broker: Broker) -> None:
    with pytest.raises(QueueNotFound):
        await broker.pause("pq")  # only a job registers a queue
    assert await broker.queues() == []
    r = await broker.enqueue("pq", "x")
    assert r.state is JobState.READY
    await broker.pause("pq")
    claim = await broker.claim("pq", 5)
    assert claim == Claim(paused=True)
    stats = await broker.stats("pq")
    assert stats.paused is True
    assert stats.ready == 1
    assert stats.inflight == 0

    await broker.resume("pq")
    assert (await broker.stats("pq")).paused is False
    claim = await broker.claim("pq", 5)
    assert claim.paused is False
    assert [j.id for j in claim.jobs] == [r.id]


async def test_pause_is_per_queue(broker: Broker) -> None:
    await fill(broker, "p1", 1)
    await fill(broker, "p2", 1)
    await broker.pause("p1")
    assert (await broker.claim("p1")).paused
    assert len((await broker.claim("p2")).jobs) == 1


# -- reap ------------------------------------------------------------------------------


async def test_reap_requeues_expired_keeping_priority(broker: Broker) -> None:
    high = (await broker.enqueue("rq", "high", priority=200)).id
    (claimed,) = (await broker.claim("rq", 1, visibility_ms=400)).jobs
    assert claimed.id == high
    high2 = (await broker.enqueue("rq", "high2", priority=200)).id
    low = await fill(broker, "rq", 2)
    live = (await broker.enqueue("rq", "live", priority=255)).id
    (live_job,) = (await broker.claim("rq", 1, visibility_ms=60_000)).jobs
    assert live_job.id == live

    assert await broker.reap("rq") == ReapResult(0, 0)  # nothing expired yet
    await trio.sleep(0.45)
    assert await broker.reap("rq") == ReapResult(requeued=1, dead=0)
    assert await broker.reap("rq") == ReapResult(0, 0)

    job = await broker.get_job("rq", high)
    assert job.state is JobState.READY
    assert job.attempts == 1
    assert job.lease == ""
    assert job.deadline_ms is None
    assert "visibility" in job.last_error
    # The unexpired job is untouched.
    still = await broker.get_job("rq", live)
    assert still.state is JobState.INFLIGHT
    assert still.lease == live_job.lease
    assert still.deadline_ms == live_job.deadline_ms

    claim = await broker.claim("rq", 10)
    assert [j.id for j in claim.jobs] == [high, high2, *low]
    assert claim.jobs[0].attempts == 2
    # A late ack of the reaped claim, now claimed again, is refused.
    assert await broker.ack(claimed) is False


async def test_reap_dead_letters_spent_job(broker: Broker) -> None:
    spent = (await broker.enqueue("rq", "x", max_retries=1)).id
    (job,) = (await broker.claim("rq", 1, visibility_ms=30)).jobs
    assert job.attempts == 1
    retry = (await broker.enqueue("rq", "y", max_retries=2)).id
    (job2,) = (await broker.claim("rq", 1, visibility_ms=30)).jobs
    assert job2.id == retry
    assert (await broker.stats("rq")).dead_total == 0
    await trio.sleep(0.08)

    assert await broker.reap("rq") == ReapResult(requeued=1, dead=1)
    dead = await broker.get_job("rq", spent)
    assert dead.state is JobState.DEAD
    assert dead.lease == ""
    assert dead.dead_at_ms is not None
    assert "visibility" in dead.last_error
    assert [j.id for j in await broker.dlq_list("rq")] == [spent]
    stats = await broker.stats("rq")
    assert (stats.ready, stats.inflight, stats.dlq, stats.dead_total) == (1, 0, 1, 1)
    assert (await broker.get_job("rq", retry)).state is JobState.READY


# -- promote ---------------------------------------------------------------------------


async def test_promote_due_jobs_keep_priority(broker: Broker) -> None:
    low = await fill(broker, "pr", 2)
    due = await broker.enqueue("pr", "due", priority=100, delay_ms=300)
    later = await broker.enqueue("pr", "later", priority=255, delay_ms=60_000)
    assert due.state is JobState.DELAYED
    assert later.state is JobState.DELAYED
    assert (await broker.get_job("pr", due.id)).ready_at_ms is not None

    assert await broker.promote("pr") == 0
    await trio.sleep(0.35)
    assert await broker.promote("pr") == 1
    assert await broker.promote("pr") == 0

    job = await broker.get_job("pr", due.id)
    assert job.state is JobState.READY
    assert job.ready_at_ms is None
    assert (await broker.get_job("pr", later.id)).state is JobState.DELAYED
    stats = await broker.stats("pr")
    assert (stats.ready, stats.delayed) == (3, 1)

    claim = await broker.claim("pr", 10)
    assert [j.id for j in claim.jobs] == [due.id, *low]


async def test_promote_counts_many(broker: Broker) -> None:
    await fill(broker, "pr", 25, delay_ms=20)
    await trio.sleep(0.06)
    assert await broker.promote("pr", limit=10) == 10
    assert await broker.promote("pr") == 15
    assert (await broker.stats("pr")).ready == 25


# -- stats / counters / snapshot -------------------------------------------------------


async def test_stats_after_a_mix(broker: Broker) -> None:
    await fill(broker, "mix", 5)
    await fill(broker, "mix", 2, delay_ms=60_000)
    a, b = (await broker.claim("mix", 2)).jobs
    assert await broker.ack(a)
    assert (await broker.nack(b, "bad", dead=True)).outcome == "dead"
    await broker.claim("mix", 1)
    stats = await broker.stats("mix")
    assert stats == QueueStats(
        "mix",
        ready=2,
        inflight=1,
        delayed=2,
        dlq=1,
        processed_total=1,
        dead_total=1,
        paused=False,
    )
    assert stats.to_dict() == {
        "queue": "mix",
        "ready": 2,
        "inflight": 1,
        "delayed": 2,
        "dlq": 1,
        "processed_total": 1,
        "dead_total": 1,
        "paused": False,
    }


async def test_counters_default_zero(broker: Broker, rdb: redis.Redis, prefix: str) -> None:
    assert await broker.stats("never") == QueueStats("never", 0, 0, 0, 0, 0, 0, False)
    assert keys_under(rdb, prefix) == []  # reading writes nothing
    await fill(broker, "fresh", 1)
    stats = await broker.stats("fresh")
    assert (stats.processed_total, stats.dead_total) == (0, 0)
    assert stats.ready == 1


async def test_snapshot_and_stats_many(broker: Broker) -> None:
    assert await broker.snapshot() == []
    assert await broker.stats_many([]) == []
    await fill(broker, "zeta", 3)
    await fill(broker, "alpha", 1)
    await fill(broker, "Mid.q", 2, delay_ms=60_000)
    await fill(broker, "beta", 1)
    await broker.pause("beta")
    (job,) = (await broker.claim("alpha")).jobs
    await broker.ack(job)

    names = await broker.queues()
    assert names == ["Mid.q", "alpha", "beta", "zeta"]
    snap = await broker.snapshot()
    assert [s.queue for s in snap] == names
    by_name = {s.queue: s for s in snap}
    assert by_name["zeta"] == QueueStats("zeta", 3, 0, 0, 0, 0, 0, False)
    assert by_name["alpha"] == QueueStats("alpha", 0, 0, 0, 0, 1, 0, False)
    assert by_name["Mid.q"] == QueueStats("Mid.q", 0, 0, 2, 0, 0, 0, False)
    assert by_name["beta"] == QueueStats("beta", 1, 0, 0, 0, 0, 0, True)

    many = await broker.stats_many(["zeta", "alpha", "nope"])
    assert [s.queue for s in many] == ["zeta", "alpha", "nope"]
    assert many[0] == by_name["zeta"]
    assert many[1] == by_name["alpha"]
    assert many[2] == QueueStats("nope", 0, 0, 0, 0, 0, 0, False)
    for name in names:
        assert await broker.stats(name) == by_name[name]


# -- dead-letter queue -----------------------------------------------------------------


async def test_dlq_list_paging(broker: Broker) -> None:
    ids = await make_dead(broker, "dl", 7)
    pages = [await broker.dlq_list("dl", limit=3, offset=off) for off in (0, 3, 6, 7)]
    assert [[j.id for j in page] for page in pages] == [ids[0:3], ids[3:6], ids[6:7], []]
    first = pages[0][0]
    assert first.state is JobState.DEAD
    assert first.queue == "dl"
    assert first.payload == b"dead-0"
    assert first.attempts == 1
    assert first.max_retries == 0
    assert first.last_error == "boom"
    assert [j.id for j in await broker.dlq_list("dl")] == ids
    assert [j.id for j in await broker.dlq_list("dl", limit=1000, offset=2)] == ids[2:]
    stats = await broker.stats("dl")
    assert (stats.dlq, stats.dead_total, stats.inflight) == (7, 7, 0)


async def test_dlq_requeue(broker: Broker) -> None:
    ids = await make_dead(broker, "dl", 3)
    await broker.dlq_requeue("dl", ids[1])
    job = await broker.get_job("dl", ids[1])
    assert job.state is JobState.READY
    assert job.attempts == 0
    assert job.dead_at_ms is None
    assert [j.id for j in await broker.dlq_list("dl")] == [ids[0], ids[2]]
    stats = await broker.stats("dl")
    assert (stats.ready, stats.dlq, stats.dead_total) == (1, 2, 3)

    (claimed,) = (await broker.claim("dl")).jobs
    assert claimed.id == ids[1]
    assert claimed.attempts == 1

    with pytest.raises(JobNotFound) as info:
        await broker.dlq_requeue("dl", ids[1])  # in flight now, not in the DLQ
    assert info.value.job_id == ids[1]
    assert (await broker.get_job("dl", ids[1])).state is JobState.INFLIGHT
    with pytest.raises(JobNotFound):
        await broker.dlq_requeue("dl", unknown_id())
    with pytest.raises(JobNotFound):
        await broker.dlq_requeue("other", ids[0])  # the DLQ of another queue
    assert (await broker.stats("dl")).dlq == 2


async def test_dlq_delete(broker: Broker, rdb: redis.Redis) -> None:
    ids = await make_dead(broker, "dl", 3)
    await broker.dlq_delete("dl", ids[0])
    with pytest.raises(JobNotFound):
        await broker.get_job("dl", ids[0])
    assert rdb.exists(broker.keys.queue("dl").job(ids[0])) == 0
    assert [j.id for j in await broker.dlq_list("dl")] == ids[1:]
    with pytest.raises(JobNotFound):
        await broker.dlq_delete("dl", ids[0])
    with pytest.raises(JobNotFound):
        await broker.dlq_delete("dl", unknown_id())
    live = (await broker.enqueue("dl", "live")).id
    with pytest.raises(JobNotFound):
        await broker.dlq_delete("dl", live)  # a ready job is not in the DLQ
    assert (await broker.get_job("dl", live)).state is JobState.READY
    assert (await broker.stats("dl")).dlq == 2


async def test_dlq_requeue_all_crosses_sweep_limit(broker: Broker) -> None:
    await make_dead_bulk(broker, "bulk", 2500)
    page = await broker.dlq_list("bulk")
    assert len(page) == DLQ_PAGE_DEFAULT == 50
    assert await broker.dlq_requeue_all("bulk") == 2500
    stats = await broker.stats("bulk")
    assert (stats.dlq, stats.ready, stats.inflight) == (0, 2500, 0)
    job = await broker.get_job("bulk", page[0].id)
    assert (job.state, job.attempts) == (JobState.READY, 0)
    assert await broker.dlq_requeue_all("bulk") == 0
    assert len((await broker.claim("bulk", 1000)).jobs) == 1000


async def test_dlq_purge_crosses_sweep_limit(broker: Broker, rdb: redis.Redis) -> None:
    await make_dead_bulk(broker, "purge", 2500)
    keep = (await broker.enqueue("purge", "keep")).id
    assert await broker.dlq_purge("purge") == 2500
    stats = await broker.stats("purge")
    assert (stats.dlq, stats.ready, stats.dead_total) == (0, 1, 2500)
    job_keys = list(rdb.scan_iter(match=broker.keys.queue("purge").job("*"), count=1000))
    assert job_keys == [broker.keys.queue("purge").job(keep).encode()]
    assert await broker.dlq_purge("purge") == 0


# -- job lookup ------------------------------------------------------------------------


async def test_get_job_in_every_state(broker: Broker) -> None:
    ready = await broker.enqueue("gj", "r", priority=7, idempotency_key="ik")
    job = await broker.get_job("gj", ready.id)
    assert (job.id, job.queue, job.payload, job.state) == (ready.id, "gj", b"r", JobState.READY)
    assert (job.priority, job.attempts, job.max_retries) == (7, 0, 5)
    assert job.idempotency_key == "ik"
    now_ms = await broker.server_time_ms()
    assert now_ms - 5000 <= job.created_at_ms <= now_ms

    delayed = await broker.enqueue("gj", "d", delay_ms=60_000)
    job = await broker.get_job("gj", delayed.id)
    assert job.state is JobState.DELAYED
    assert job.ready_at_ms is not None and job.ready_at_ms >= now_ms + 55_000

    (claimed,) = (await broker.claim("gj", visibility_ms=10_000)).jobs
    job = await broker.get_job("gj", ready.id)
    assert job.state is JobState.INFLIGHT
    assert job.attempts == 1
    assert job.lease == claimed.lease != ""
    assert job.deadline_ms is not None

    dead = await broker.enqueue("gj", "x", max_retries=0)
    (to_kill,) = (await broker.claim("gj")).jobs
    assert to_kill.id == dead.id
    await broker.nack(to_kill, "fatal")
    assert (await broker.get_job("gj", dead.id)).state is JobState.DEAD

    assert await broker.ack(claimed, {"sum": 5})
    done = await broker.get_job("gj", ready.id)
    assert (done.state, done.result_value, done.lease) == (JobState.DONE, {"sum": 5}, "")
    assert done.finished_at_ms is not None
    with pytest.raises(JobNotFound) as info:
        await broker.get_job("gj", "f" * 32)
    assert isinstance(info.value, RelayError)
    assert isinstance(info.value, LookupError)
    assert (info.value.queue, info.value.job_id) == ("gj", "f" * 32)
    with pytest.raises(JobNotFound):
        await broker.get_job("gj", unknown_id())
    with pytest.raises(JobNotFound):
        await broker.get_job("other", delayed.id)  # ids are looked up per queue


# -- scripts reloaded after NOSCRIPT ---------------------------------------------------


async def test_scripts_reloaded_after_flush(
    broker: Broker, rdb: redis.Redis, redis_server: Any
) -> None:
    if not redis_server.owned:
        pytest.skip("SCRIPT FLUSH touches the whole server; only done on the suite's own Redis")
    ops: list[Callable[[], Awaitable[object]]] = [
        lambda: broker.enqueue("ns", "one"),
        lambda: broker.enqueue_many("ns", [broker.spec(f"m{i}") for i in range(1200)]),
        lambda: broker.claim("ns", 2),
        lambda: broker.promote("ns"),
        lambda: broker.reap("ns"),
    ]
    results = []
    for op in ops:
        rdb.script_flush()
        results.append(await op())
    assert isinstance(results[0], EnqueueResult)
    many = results[1]
    assert isinstance(many, list) and len(many) == 1200
    assert len({r.id for r in many}) == 1200
    claim = results[2]
    assert isinstance(claim, Claim) and len(claim.jobs) == 2
    stats = await broker.stats("ns")
    assert (stats.ready, stats.inflight) == (1199, 2)  # each job written exactly once
    rdb.script_flush()
    assert await broker.ack_many(claim.jobs) == [True, True]
    assert (await broker.stats("ns")).processed_total == 2


# -- Redis unavailable -----------------------------------------------------------------


async def test_redis_unavailable_is_typed() -> None:
    async with open_broker("redis://127.0.0.1:1/0", connect_timeout=0.5) as b:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: b.enqueue("q", "x"),
            lambda: b.claim("q"),
            lambda: b.stats("q"),
            lambda: b.queues(),
        ]
        for call in calls:
            with pytest.raises(RedisUnavailable) as info:
                await call()
            assert isinstance(info.value, RelayError)
            assert not isinstance(info.value, redis.exceptions.RedisError)
            assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)


# -- key layout ------------------------------------------------------------------------


async def test_every_queue_key_carries_the_hash_tag(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    q = "tag.q-1"
    await broker.enqueue(q, "x", idempotency_key="ik")
    await broker.enqueue(q, "later", delay_ms=60_000)
    await fill(broker, q, 3, max_retries=0)
    await broker.set_rate_limit(q, 1000, 100)
    a, b, _c = (await broker.claim(q, 3)).jobs
    await broker.ack(a)
    await broker.nack(b, "x")
    await broker.pause(q)
    await broker.claim(q)

    keys = keys_under(rdb, prefix)
    registry = prefix + ":queues"
    assert registry in keys
    queue_keys = [k for k in keys if k != registry]
    suffixes = {k.removeprefix(f"{prefix}:{{{q}}}:").split(":")[0] for k in queue_keys}
    assert {"ready", "inflight", "delayed", "dlq", "processed", "dead", "dedup", "job"} <= suffixes
    assert {"ratelimit", "paused", "seq"} <= suffixes
    for key in queue_keys:
        # Redis Cluster hashes the text between the first "{" and the next "}".
        start = key.index("{")
        assert key[start + 1 : key.index("}", start)] == q, key
        assert key.startswith(f"{prefix}:{{{q}}}:"), key


async def test_enqueue_many_checks_payload_size_of_direct_specs(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    small = Broker(broker.io, prefix=broker.keys.prefix, max_payload_bytes=4)
    spec = JobSpec(id="a" * 32, payload=b"12345")
    with pytest.raises(InvalidInput) as info:
        await small.enqueue_many("q", [spec])
    assert info.value.field == "payload"
    assert rdb.keys(prefix + "*") == []


@pytest.mark.parametrize("limit", [0, -1, 100_001, "10"])
async def test_reap_and_promote_reject_bad_limits(broker: Broker, limit: Any) -> None:
    with pytest.raises(InvalidInput):
        await broker.reap("q", limit)
    with pytest.raises(InvalidInput):
        await broker.promote("q", limit)
