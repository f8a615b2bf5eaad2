"""Production rules of the broker (spec section 10), against a real Redis.

No half-written state (a key of a foreign type under every script: the script
fails and Redis is byte for byte as it was), bounded retention of the DLQ,
release without an attempt, queue deletion, rate limits at their bounds, and
admin verbs that never register a queue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from support import keys_under, make_dead, redis_contents

from relay_trio import (
    Broker,
    ConfigError,
    InvalidInput,
    JobNotFound,
    JobState,
    QueueNotEmpty,
    QueueNotFound,
    RedisCommandError,
)
from relay_trio.broker import BURST_MAX, RATE_MAX, RATE_MIN
from relay_trio.metrics import Metrics

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "rules"


async def populate(broker: Broker) -> dict[str, Any]:
    """A queue with a job in each state: 2 ready, 1 in flight, 1 delayed, 1 dead."""
    ids = [r.id for r in await broker.enqueue_many(Q, [broker.spec(f"j{i}") for i in range(4)])]
    (inflight,) = (await broker.claim(Q, 1)).jobs
    (dead,) = (await broker.claim(Q, 1)).jobs
    await broker.nack(dead, "boom", dead=True)
    delayed = (await broker.enqueue(Q, "later", delay_ms=60_000, idempotency_key="k1")).id
    return {"ids": ids, "inflight": inflight, "dead": dead, "delayed": delayed}


# -- a key of a foreign type: nothing written ------------------------------------------


def corrupt(rdb: redis.Redis, key: str, how: str) -> None:
    rdb.delete(key)
    if how == "string":
        rdb.set(key, "foreign")
    elif how == "list":
        rdb.rpush(key, "foreign")
    elif how == "not-a-number":
        rdb.set(key, "twelve")


Op = Callable[[Broker, dict[str, Any]], Awaitable[Any]]


async def _enqueue(b: Broker, s: dict[str, Any]) -> Any:
    return await b.enqueue_many(Q, [b.spec("a"), b.spec("b", idempotency_key="k2")])


async def _enqueue_dup(b: Broker, s: dict[str, Any]) -> Any:
    return await b.enqueue(Q, "c", idempotency_key="k1")


async def _claim(b: Broker, s: dict[str, Any]) -> Any:
    return await b.claim(Q, 5)


async def _ack(b: Broker, s: dict[str, Any]) -> Any:
    return await b.ack_many([s["inflight"]])


async def _nack(b: Broker, s: dict[str, Any]) -> Any:
    return await b.nack(s["inflight"], "again")


async def _nack_dead(b: Broker, s: dict[str, Any]) -> Any:
    return await b.nack(s["inflight"], "dead", dead=True)


async def _extend(b: Broker, s: dict[str, Any]) -> Any:
    return await b.extend_many([s["inflight"]])


async def _release(b: Broker, s: dict[str, Any]) -> Any:
    return await b.release_many([s["inflight"]])


async def _reap(b: Broker, s: dict[str, Any]) -> Any:
    return await b.reap(Q)  # the in-flight job's deadline is set to 0 first (see the test)


async def _promote(b: Broker, s: dict[str, Any]) -> Any:
    return await b.promote(Q)  # the delayed job is made due first (see the test)


async def _requeue_one(b: Broker, s: dict[str, Any]) -> Any:
    return await b.dlq_requeue(Q, s["dead"].id)


async def _requeue_all(b: Broker, s: dict[str, Any]) -> Any:
    return await b.dlq_requeue_all(Q)


async def _dlq_delete(b: Broker, s: dict[str, Any]) -> Any:
    return await b.dlq_delete(Q, s["dead"].id)


async def _resume(b: Broker, s: dict[str, Any]) -> Any:
    return await b.resume(Q)


# (operation, the key to corrupt: a QueueKeys attribute or "job:<which>" / "dedup:<key>", how)
CASES: list[tuple[Op, str, str]] = [
    (_enqueue, "ready", "string"),
    (_enqueue, "delayed", "list"),
    (_enqueue, "seq", "not-a-number"),
    (_enqueue, "seq", "list"),
    (_enqueue, "wake", "string"),
    (_enqueue, "dedup:k2", "list"),
    (_enqueue_dup, "job:delayed", "list"),
    (_claim, "ready", "list"),
    (_claim, "inflight", "string"),
    (_claim, "ratelimit", "string"),
    (_claim, "job:ready", "list"),
    (_ack, "inflight", "string"),
    (_ack, "processed", "not-a-number"),
    (_ack, "job:inflight", "list"),
    (_ack, "ready", "string"),
    (_nack, "inflight", "string"),
    (_nack, "delayed", "list"),
    (_nack_dead, "dlq", "string"),
    (_nack_dead, "dead", "not-a-number"),
    (_nack_dead, "dlq_trimmed", "list"),
    (_extend, "inflight", "string"),
    (_release, "ready", "string"),
    (_release, "wake", "string"),
    (_reap, "ready", "string"),
    (_reap, "dlq", "string"),
    (_reap, "dead", "not-a-number"),
    (_reap, "wake", "string"),
    (_reap, "dlq_trimmed", "not-a-number"),
    (_reap, "job:inflight", "list"),
    (_promote, "ready", "string"),
    (_promote, "wake", "string"),
    (_promote, "job:delayed", "list"),
    (_requeue_one, "ready", "string"),
    (_requeue_one, "job:dead", "list"),
    (_requeue_all, "wake", "string"),
    (_dlq_delete, "dlq", "string"),
    (_resume, "wake", "string"),
]


@pytest.mark.parametrize(
    "op,target,how", CASES, ids=[f"{op.__name__[1:]}-{t}-{h}" for op, t, h in CASES]
)
async def test_a_script_meeting_a_foreign_key_type_writes_nothing(
    broker: Broker, rdb: redis.Redis, prefix: str, op: Op, target: str, how: str
) -> None:
    state = await populate(broker)
    q = broker.keys.queue(Q)
    if target.startswith("job:"):
        which = target[4:]
        job_id = {
            "ready": lambda: rdb.zrange(q.ready, 0, 0)[0].decode(),
            "inflight": lambda: state["inflight"].id,
            "delayed": lambda: state["delayed"],
            "dead": lambda: state["dead"].id,
        }[which]()
        key = q.job(job_id)
    elif target.startswith("dedup:"):
        key = q.dedup(target[6:])
    else:
        key = getattr(q, target)
    corrupt(rdb, key, how)
    if op is _resume:
        rdb.set(q.paused, "1")
    if op is _reap and rdb.type(q.inflight) == b"zset":
        rdb.zadd(q.inflight, {state["inflight"].id: 0})  # its lease ran out
    if op is _promote and rdb.type(q.delayed) == b"zset":
        rdb.zadd(q.delayed, {state["delayed"]: 0})  # it is due
    before = redis_contents(rdb, prefix)
    with pytest.raises(RedisCommandError):
        await op(broker, state)
    assert redis_contents(rdb, prefix) == before


async def test_the_reported_case_enqueue_onto_a_string_ready_key(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    """The issue's repro: ``ready`` set to a string; the old script bumped ``seq``
    and left a job hash in no set."""
    await broker.enqueue("broken", "first")
    rdb.set(broker.keys.queue("broken").ready, "oops")
    before = redis_contents(rdb, prefix)
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await broker.enqueue("broken", "x")
    assert redis_contents(rdb, prefix) == before


# -- bounded retention of the DLQ --------------------------------------------------------


async def test_the_dlq_is_capped_oldest_first_and_counted(broker: Broker, rdb: redis.Redis) -> None:
    metrics = Metrics()
    capped = Broker(broker.io, prefix=broker.keys.prefix, dlq_max=3, events=metrics)
    ids = await make_dead(capped, Q, 5)
    q = capped.keys.queue(Q)
    assert [j.id for j in await capped.dlq_list(Q)] == ids[2:]
    for gone in ids[:2]:
        assert not rdb.exists(q.job(gone))  # the hash goes with the entry
        with pytest.raises(JobNotFound):
            await capped.get_job(Q, gone)
    assert rdb.get(q.dlq_trimmed) == b"2"
    assert metrics.jobs["dlq_trimmed"].labels(Q)._value.get() == 2
    stats = await capped.stats(Q)
    assert (stats.dlq, stats.dead_total) == (3, 5)


async def test_dead_jobs_older_than_the_ttl_are_dropped_by_the_reaper(
    broker: Broker, rdb: redis.Redis
) -> None:
    short = Broker(broker.io, prefix=broker.keys.prefix, dlq_ttl_s=60)
    ids = await make_dead(short, Q, 4)
    q = short.keys.queue(Q)
    now_ms = await short.server_time_ms()
    for old in ids[:3]:
        rdb.hset(q.job(old), "dead_at", now_ms - 61_000)
    assert (await short.reap(Q)).dlq_trimmed == 3
    assert [j.id for j in await short.dlq_list(Q)] == ids[3:]
    assert (await short.reap(Q)).dlq_trimmed == 0
    assert rdb.get(q.dlq_trimmed) == b"3"


@pytest.mark.parametrize("option,value", [("dlq_max", 0), ("dlq_ttl_s", 59), ("dlq_max", 10**8)])
async def test_retention_settings_are_bounded(broker: Broker, option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=option):
        Broker(broker.io, prefix=broker.keys.prefix, **{option: value})


# -- release --------------------------------------------------------------------------


async def test_release_gives_the_job_back_without_an_attempt(broker: Broker) -> None:
    await broker.enqueue(Q, "x", priority=7)
    (job,) = (await broker.claim(Q)).jobs
    assert job.attempts == 1
    assert await broker.release(job) is True
    back = await broker.get_job(Q, job.id)
    assert (back.state, back.attempts, back.priority, back.lease) == (JobState.READY, 0, 7, "")
    assert back.last_error.startswith("released")
    assert await broker.release(job) is False  # the lease is gone: nothing changes
    (again,) = (await broker.claim(Q)).jobs
    assert again.id == job.id and again.attempts == 1


# -- a late ack after a reap --------------------------------------------------------------


async def test_a_late_ack_counts_until_the_reaped_job_is_claimed_again(
    broker: Broker, rdb: redis.Redis
) -> None:
    """The attempt finished but its ack came after a reaper gave the job back
    (an outage, say): while nobody has claimed the job since, the ack still
    finishes it, so it does not run again. Once claimed again, the old lease
    is stale and the new claim is untouched (fencing)."""
    q = broker.keys.queue(Q)
    await broker.enqueue_many(Q, [broker.spec("a"), broker.spec("b")])
    first, second = (await broker.claim(Q, 2)).jobs
    rdb.zadd(q.inflight, {first.id: 0, second.id: 0})
    assert (await broker.reap(Q)).requeued == 2
    assert await broker.ack(first) is True  # reaped, not yet claimed: acked
    assert (await broker.stats(Q)).ready == 1
    (again,) = (await broker.claim(Q)).jobs
    assert again.id == second.id
    assert await broker.ack(second) is False  # claimed again: the old lease is stale
    assert await broker.ack(again) is True
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.processed_total) == (0, 0, 2)


# -- deleting queues -------------------------------------------------------------------


async def test_deleting_an_empty_queue_removes_it_everywhere(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q)).jobs
    await broker.ack(job)
    await broker.set_rate_limit(Q, 5, 5)
    await broker.pause(Q)
    assert await broker.delete_queue(Q) == 1  # the done job, kept with its result, goes too
    assert await broker.queues() == []
    assert redis_contents(rdb, prefix) == {}


async def test_a_queue_with_jobs_is_kept_unless_forced(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await populate(broker)
    before = redis_contents(rdb, prefix)
    with pytest.raises(QueueNotEmpty) as refused:
        await broker.delete_queue(Q)
    assert refused.value.jobs == 5
    assert redis_contents(rdb, prefix) == before  # the registry entry is back too
    assert await broker.queues() == [Q]
    assert await broker.delete_queue(Q, force=True) == 5
    assert await broker.queues() == []
    left = [k for k in keys_under(rdb, prefix) if ":dedup:" not in k]
    assert left == []
    assert not rdb.exists(broker.keys.queue(Q).dedup("k1"))  # its job's key went with it


async def test_a_forced_delete_of_a_large_queue_goes_in_steps(
    broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    for _ in range(3):
        await broker.enqueue_many(Q, [broker.spec("x") for _ in range(1000)])
    await broker.enqueue("other", "stays")
    assert await broker.delete_queue(Q, force=True) == 3000
    assert await broker.queues() == ["other"]
    registry = broker.keys.registry
    assert all("{other}" in k or k == registry for k in keys_under(rdb, prefix))


async def test_deleting_an_unknown_queue_is_not_found(broker: Broker) -> None:
    with pytest.raises(QueueNotFound):
        await broker.delete_queue("nope")


# -- only a job registers a queue -----------------------------------------------------------


@pytest.mark.parametrize(
    "verb",
    ["pause", "resume", "set_rate_limit", "clear_rate_limit", "get_rate_limit"],
)
async def test_admin_verbs_on_an_unknown_queue_are_not_found_and_register_nothing(
    broker: Broker, rdb: redis.Redis, prefix: str, verb: str
) -> None:
    args: tuple[Any, ...] = (5.0, 5) if verb == "set_rate_limit" else ()
    with pytest.raises(QueueNotFound):
        await getattr(broker, verb)("junk", *args)
    assert redis_contents(rdb, prefix) == {}


# -- rate limits at their bounds ---------------------------------------------------------


@pytest.mark.parametrize("rate", [RATE_MIN, 1e-3, 0.37, 1, 999.5, RATE_MAX])
@pytest.mark.parametrize("burst", [1, BURST_MAX])
async def test_the_claim_arithmetic_is_safe_for_every_accepted_limit(
    broker: Broker, rate: float, burst: int
) -> None:
    await broker.enqueue_many(Q, [broker.spec("x") for _ in range(1000)])
    await broker.set_rate_limit(Q, rate, burst)
    first = await broker.claim(Q, 1000)
    assert len(first.jobs) == min(1000, burst)
    second = await broker.claim(Q, 1000)
    if burst == 1 and rate <= 1:  # the next token is a second or more away
        assert second.jobs == []
    if not second.jobs and second.retry_after_ms:  # limited: a bounded, whole wait
        assert isinstance(second.retry_after_ms, int)
        assert 1 <= second.retry_after_ms <= min(86_400_000, 1000 / rate + 1)
    else:  # refilled between the two claims (a fast rate), or the bucket holds more
        assert burst > 1 or rate > 1


@pytest.mark.parametrize("rate", [1e-20, 1e-16, 1e-300, 1e-10, 0, -1, 1e7, float("nan"), True])
async def test_rates_outside_the_range_are_refused(
    broker: Broker, rdb: redis.Redis, prefix: str, rate: Any
) -> None:
    await broker.enqueue(Q, "x")
    before = redis_contents(rdb, prefix)
    with pytest.raises(InvalidInput, match="rate"):
        await broker.set_rate_limit(Q, rate, 1)
    assert redis_contents(rdb, prefix) == before


@pytest.mark.parametrize(
    "fields,ok",
    [
        ({"rate": "1e-300", "burst": "1"}, True),  # written by something else: still safe
        ({"rate": "0", "burst": "1"}, False),
        ({"rate": "-2", "burst": "1"}, False),
        ({"rate": "nan", "burst": "1"}, False),
        ({"rate": "5", "burst": "0"}, False),
        ({"rate": "5"}, False),
    ],
)
async def test_a_foreign_bucket_never_yields_a_bad_wait(
    broker: Broker, rdb: redis.Redis, fields: dict[str, str], ok: bool
) -> None:
    await broker.enqueue_many(Q, [broker.spec("x") for _ in range(3)])
    rdb.hset(broker.keys.queue(Q).ratelimit, mapping=fields)
    if not ok:
        with pytest.raises(RedisCommandError, match="rate limit"):
            await broker.claim(Q, 3)
        assert (await broker.stats(Q)).ready == 3
        return
    assert len((await broker.claim(Q, 3)).jobs) == 1
    assert (await broker.claim(Q, 3)).retry_after_ms == 86_400_000


# -- the prefix ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a{b}", "{x}", "", "x" * 65, "sp ace", "é"])
async def test_a_prefix_that_would_break_cluster_slots_is_refused(broker: Broker, bad: str) -> None:
    with pytest.raises(InvalidInput, match="prefix"):
        Broker(broker.io, prefix=bad)
