"""The broker's core operations against a real Redis (spec sections 1-3).

enqueue / enqueue_many, priority order, claim, ack, nack and its backoff,
extend, lease fencing and the server clock. Every test uses the ``broker``
fixture (a private key prefix on a real redis-server) and looks at Redis itself
through ``rdb`` where the Python API alone would not prove the behaviour.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from support import command_calls

import relay_trio
from relay_trio import Broker, InvalidInput, Job, JobNotFound, JobState
from relay_trio import job as jobmod
from relay_trio.broker import ENQUEUE_CHUNK

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "core"
HEX32 = re.compile(r"[0-9a-f]{32}")


def dec(values: Any) -> list[str]:
    return [v.decode() for v in values]


async def enqueue_n(broker: Broker, queue: str, n: int, **options: Any) -> list[str]:
    specs = [broker.spec(f"job-{i}", **options) for i in range(n)]
    results = await broker.enqueue_many(queue, specs)
    return [r.id for r in results]


async def claim_all(broker: Broker, queue: str, n: int, **options: Any) -> list[Job]:
    claim = await broker.claim(queue, n, **options)
    assert len(claim.jobs) == n
    return claim.jobs


class CallCounter:
    """Wraps ``broker.io.run`` to count calls (each one is one thread hop)."""

    def __init__(self, broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = broker.io.run

        async def counted(fn: Any) -> Any:
            self.calls += 1
            return await original(fn)

        monkeypatch.setattr(broker.io, "run", counted)


def cmdstat(rdb: redis.Redis, name: str) -> int:
    return command_calls(rdb, name)


# -- enqueue -------------------------------------------------------------------


async def test_enqueue_returns_id_and_writes_hash(broker: Broker, rdb: redis.Redis) -> None:
    before = await broker.server_time_ms()
    result = await broker.enqueue(Q, b"\x00\xffbytes", priority=7, max_retries=3)
    after = await broker.server_time_ms()

    assert HEX32.fullmatch(result.id)
    assert result.state is JobState.READY
    assert result.duplicate is False

    job = await broker.get_job(Q, result.id)
    assert job.id == result.id
    assert job.queue == Q
    assert job.payload == b"\x00\xffbytes"
    assert job.state is JobState.READY
    assert job.attempts == 0
    assert job.max_retries == 3
    assert job.priority == 7
    assert before <= job.created_at_ms <= after
    assert job.lease == ""
    # In Redis: the hash and the ready set, nothing else.
    q = broker.keys.queue(Q)
    assert rdb.type(q.job(result.id)) == b"hash"
    assert dec(rdb.zrange(q.ready, 0, -1)) == [result.id]
    assert rdb.zcard(q.delayed) == 0
    assert rdb.zcard(q.inflight) == 0


async def test_enqueue_ids_are_distinct(broker: Broker) -> None:
    ids = {(await broker.enqueue(Q, "x")).id for _ in range(20)}
    assert len(ids) == 20
    assert all(HEX32.fullmatch(i) for i in ids)


async def test_enqueue_defaults(broker: Broker) -> None:
    result = await broker.enqueue(Q, "x")
    job = await broker.get_job(Q, result.id)
    assert job.max_retries == 5
    assert job.priority == 0
    assert job.idempotency_key == ""


async def test_str_payload_is_utf8(broker: Broker) -> None:
    text = "héllo wörld ✓ 日本"
    result = await broker.enqueue(Q, text)
    job = await broker.get_job(Q, result.id)
    assert job.payload == text.encode("utf-8")
    (claimed,) = (await broker.claim(Q)).jobs
    assert claimed.payload.decode("utf-8") == text


async def test_queue_registry(broker: Broker, rdb: redis.Redis) -> None:
    assert await broker.queues() == []
    for name in ["zeta", "alpha", "m.id-dle_1", "alpha"]:
        await broker.enqueue(name, "x")
    assert await broker.queues() == ["alpha", "m.id-dle_1", "zeta"]
    registry = broker.keys.registry
    assert rdb.type(registry) == b"set"
    assert sorted(dec(rdb.smembers(registry))) == ["alpha", "m.id-dle_1", "zeta"]
    # queues() reads the registry alone: another queue's keys written behind the
    # broker's back (no registry entry) do not show up, so no SCAN is involved.
    rdb.zadd(broker.keys.queue("ghost").ready, {"a" * 32: 1})
    assert await broker.queues() == ["alpha", "m.id-dle_1", "zeta"]


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "q:1", "q{1}", "ü"])
async def test_bad_queue_name_rejected(broker: Broker, rdb: redis.Redis, name: str) -> None:
    with pytest.raises(InvalidInput):
        await broker.enqueue(name, "x")
    assert await broker.queues() == []


async def test_enqueue_with_delay(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    before = await broker.server_time_ms()
    result = await broker.enqueue(Q, "later", delay_ms=150)
    after = await broker.server_time_ms()
    assert result.state is JobState.DELAYED
    job = await broker.get_job(Q, result.id)
    assert job.state is JobState.DELAYED

    score = rdb.zscore(q.delayed, result.id)
    assert score is not None
    assert before + 150 <= score <= after + 150
    assert job.ready_at_ms == int(score)
    assert rdb.zcard(q.ready) == 0

    # Not claimable, and not promotable, before its time.
    assert (await broker.claim(Q)).jobs == []
    assert await broker.promote(Q) == 0
    await trio.sleep(0.2)
    assert await broker.promote(Q) == 1
    assert (await broker.get_job(Q, result.id)).state is JobState.READY
    (claimed,) = (await broker.claim(Q)).jobs
    assert claimed.id == result.id
    assert claimed.attempts == 1


async def test_enqueue_ready_at(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    past = await broker.enqueue(Q, "p", ready_at=datetime.now(UTC) - timedelta(minutes=5))
    assert past.state is JobState.READY
    assert rdb.zscore(q.ready, past.id) is not None

    when = datetime.now(UTC) + timedelta(hours=1)
    future = await broker.enqueue(Q, "f", ready_at=when)
    assert future.state is JobState.DELAYED
    assert rdb.zscore(q.delayed, future.id) == int(when.timestamp() * 1000)
    assert rdb.zscore(q.ready, future.id) is None

    (claimed,) = (await broker.claim(Q, 10)).jobs
    assert claimed.id == past.id


async def test_enqueue_ready_at_and_delay_rejected(broker: Broker, rdb: redis.Redis) -> None:
    when = datetime.now(UTC) + timedelta(seconds=10)
    with pytest.raises(InvalidInput):
        await broker.enqueue(Q, "x", delay_ms=1000, ready_at=when)
    with pytest.raises(InvalidInput):
        await broker.enqueue(Q, "x", ready_at=datetime(2030, 1, 1))  # naive: no time zone
    assert await broker.queues() == []
    assert rdb.keys(broker.keys.prefix + ":*") == []


@pytest.mark.parametrize(
    "options",
    [
        {"priority": -1},
        {"priority": 256},
        {"priority": True},
        {"max_retries": -1},
        {"delay_ms": -5},
        {"delay_ms": 1.5},
    ],
)
async def test_enqueue_bad_options_write_nothing(
    broker: Broker, rdb: redis.Redis, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInput):
        await broker.enqueue(Q, "x", **options)
    assert rdb.keys(broker.keys.prefix + ":*") == []


# -- enqueue_many ----------------------------------------------------------------


async def test_enqueue_many_is_one_round_trip(
    broker: Broker, rdb: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await broker.enqueue(Q, "warm-up")  # the script is loaded; no NOSCRIPT retry below
    counter = CallCounter(broker, monkeypatch)
    specs = [broker.spec(f"payload-{i}", priority=i % 3) for i in range(2500)]
    evalsha_before = cmdstat(rdb, "evalsha")
    load_before = cmdstat(rdb, "script|load")

    results = await broker.enqueue_many(Q, specs)

    assert counter.calls == 1
    # One pipeline: the scripts ran as EVALSHA (a few chunks), none was reloaded.
    assert cmdstat(rdb, "evalsha") - evalsha_before == math.ceil(2500 / ENQUEUE_CHUNK)
    assert cmdstat(rdb, "script|load") == load_before
    assert [r.id for r in results] == [s.id for s in specs]
    assert all(r.state is JobState.READY and not r.duplicate for r in results)
    stats = await broker.stats(Q)
    assert stats.ready == 2501


async def test_enqueue_many_keeps_distinct_payloads(broker: Broker) -> None:
    payloads = [f"distinct-{i}".encode() for i in range(30)]
    results = await broker.enqueue_many(Q, [broker.spec(p) for p in payloads])
    for payload, result in zip(payloads, results, strict=True):
        assert (await broker.get_job(Q, result.id)).payload == payload
    claimed = (await broker.claim(Q, 30)).jobs
    assert [j.payload for j in claimed] == payloads


async def test_enqueue_many_mixed_delays(broker: Broker) -> None:
    specs = [broker.spec("now"), broker.spec("later", delay_ms=60_000), broker.spec("now2")]
    results = await broker.enqueue_many(Q, specs)
    assert [r.state for r in results] == [JobState.READY, JobState.DELAYED, JobState.READY]
    stats = await broker.stats(Q)
    assert (stats.ready, stats.delayed) == (2, 1)


async def test_enqueue_many_limits(broker: Broker, rdb: redis.Redis) -> None:
    with pytest.raises(InvalidInput):
        await broker.enqueue_many(Q, [])
    specs = [broker.spec(b"x") for _ in range(10_001)]
    with pytest.raises(InvalidInput):
        await broker.enqueue_many(Q, specs)
    assert await broker.queues() == []
    assert rdb.keys(broker.keys.prefix + ":*") == []
    # The limit itself is accepted.
    results = await broker.enqueue_many(Q, specs[:10_000])
    assert len(results) == 10_000
    assert (await broker.stats(Q)).ready == 10_000


# -- priority ------------------------------------------------------------------


async def test_higher_priority_claimed_first(broker: Broker) -> None:
    low = await broker.enqueue(Q, "low", priority=1)
    high = await broker.enqueue(Q, "high", priority=200)
    mid = await broker.enqueue(Q, "mid", priority=50)
    claimed = [(await broker.claim(Q)).jobs[0].id for _ in range(3)]
    assert claimed == [high.id, mid.id, low.id]


async def test_fifo_within_priority_batch(broker: Broker) -> None:
    ids = await enqueue_n(broker, Q, 50, priority=9)
    order: list[str] = []
    while jobs := (await broker.claim(Q, 7)).jobs:
        order += [j.id for j in jobs]
    assert order == ids


async def test_fifo_within_priority_one_by_one(broker: Broker) -> None:
    ids = [(await broker.enqueue(Q, f"j{i}", priority=3)).id for i in range(50)]
    order = [(await broker.claim(Q)).jobs[0].id for _ in range(50)]
    assert order == ids


async def test_priority_mix_0_to_255(broker: Broker) -> None:
    # Every priority 0..255 twice, in a shuffled but fixed order.
    prios = [(i * 97) % 256 for i in range(256)] * 2
    specs = [broker.spec(f"{p}", priority=p) for p in prios]
    results = await broker.enqueue_many(Q, specs)
    claimed = (await broker.claim(Q, 512)).jobs
    got = [(j.priority, j.id) for j in claimed]
    # Highest priority first; within a priority, the older job first.
    position = {r.id: i for i, r in enumerate(results)}
    expected = sorted(got, key=lambda pi: (-pi[0], position[pi[1]]))
    assert got == expected
    assert got[0][0] == 255 and got[-1][0] == 0


async def test_retry_keeps_priority_and_age(broker: Broker) -> None:
    base = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=1, backoff_cap_ms=1)
    first = await base.enqueue(Q, "first", priority=5)
    (job,) = (await base.claim(Q)).jobs
    assert job.id == first.id
    second = await base.enqueue(Q, "second", priority=5)
    low = await base.enqueue(Q, "low", priority=4)
    assert (await base.nack(job, "boom")).outcome == "retry"
    await trio.sleep(0.01)
    assert await base.promote(Q) == 1
    order = [j.id for j in (await base.claim(Q, 3)).jobs]
    assert order == [first.id, second.id, low.id]


# -- claim ---------------------------------------------------------------------


async def test_claim_many_returns_up_to_n(broker: Broker) -> None:
    ids = await enqueue_n(broker, Q, 5)
    claim = await broker.claim(Q, 3)
    assert [j.id for j in claim.jobs] == ids[:3]
    assert not claim.paused and claim.retry_after_ms == 0
    claim = await broker.claim(Q, 10)
    assert [j.id for j in claim.jobs] == ids[3:]
    assert (await broker.claim(Q, 10)).jobs == []


async def test_claim_empty_and_unknown_queue(broker: Broker, rdb: redis.Redis) -> None:
    claim = await broker.claim("never-used", 5)
    assert claim.jobs == []
    assert not claim.paused
    assert claim.retry_after_ms == 0


async def test_claim_sets_state_lease_and_deadline(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    ids = await enqueue_n(broker, Q, 2)
    before = await broker.server_time_ms()
    jobs = (await broker.claim(Q, 2, visibility_ms=5000)).jobs
    after = await broker.server_time_ms()
    for job in jobs:
        assert job.state is JobState.INFLIGHT
        assert job.attempts == 1
        assert job.lease != ""
        score = rdb.zscore(q.inflight, job.id)
        assert score is not None
        assert before + 5000 <= score <= after + 5000
        assert job.deadline_ms == int(score)
        stored = await broker.get_job(Q, job.id)
        assert stored.state is JobState.INFLIGHT
        assert stored.lease == job.lease
    assert sorted(j.id for j in jobs) == sorted(ids)
    assert rdb.zcard(q.ready) == 0


async def test_claim_default_visibility(broker: Broker, rdb: redis.Redis) -> None:
    await broker.enqueue(Q, "x")
    before = await broker.server_time_ms()
    (job,) = (await broker.claim(Q)).jobs
    after = await broker.server_time_ms()
    score = rdb.zscore(broker.keys.queue(Q).inflight, job.id)
    assert score is not None
    assert before + 30_000 <= score <= after + 30_000


async def test_attempts_and_lease_change_on_every_claim(broker: Broker) -> None:
    fast = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=1, backoff_cap_ms=1)
    result = await fast.enqueue(Q, "x", max_retries=50)
    leases = []
    # Through reap (visibility expiry) ...
    for attempt in (1, 2, 3):
        (job,) = (await fast.claim(Q, visibility_ms=20)).jobs
        assert job.id == result.id
        assert job.attempts == attempt
        leases.append(job.lease)
        await trio.sleep(0.04)
        assert (await fast.reap(Q)).requeued == 1
        assert (await fast.get_job(Q, result.id)).attempts == attempt  # reap keeps attempts
    # ... and through nack + promote.
    for attempt in (4, 5, 6):
        (job,) = (await fast.claim(Q)).jobs
        assert job.attempts == attempt
        leases.append(job.lease)
        assert (await fast.nack(job, "again")).outcome == "retry"
        await trio.sleep(0.005)
        assert await fast.promote(Q) == 1
    assert len(set(leases)) == len(leases) == 6


async def test_claimed_jobs_carry_every_field_as_stored(broker: Broker, rdb: redis.Redis) -> None:
    fast = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=1, backoff_cap_ms=1)
    q = broker.keys.queue(Q)
    first = await fast.enqueue(
        Q, b"\xff\x00bytes", priority=7, max_retries=9, idempotency_key="k-1"
    )
    plain = await fast.enqueue(Q, "plain")
    (job,) = (await fast.claim(Q)).jobs
    assert (await fast.nack(job, "boom \u00e9")).outcome == "retry"  # sets last_error
    await trio.sleep(0.005)
    assert await fast.promote(Q) == 1
    # no script leaves these on a ready job
    rdb.hset(q.job(first.id), mapping={"ready_at": "5678", "dead_at": "1234"})
    jobs = (await fast.claim(Q, 2, visibility_ms=7000)).jobs
    assert [j.id for j in jobs] == [first.id, plain.id]
    for claimed in jobs:
        assert claimed == await fast.get_job(Q, claimed.id)  # the HGETALL decoding
    again = jobs[0]
    assert (again.payload, again.priority, again.max_retries) == (b"\xff\x00bytes", 7, 9)
    assert (again.idempotency_key, again.last_error, again.attempts) == ("k-1", "boom \u00e9", 2)
    assert (again.ready_at_ms, again.dead_at_ms) == (5678, 1234)
    assert again.deadline_ms == rdb.zscore(q.inflight, again.id)
    assert jobs[1].attempts == 1 and jobs[1].last_error == "" and jobs[1].ready_at_ms is None


def test_the_claim_script_reads_the_fields_the_decoder_expects() -> None:
    source = (Path(relay_trio.__file__).parent / "lua" / "claim.lua").read_text()
    hmget = re.search(r"redis\.call\('HMGET', jk, (.*?)\)", source, re.S)
    assert hmget is not None
    assert tuple(re.findall(r"'(\w+)'", hmget.group(1))) == jobmod.FIELDS


async def test_claim_of_a_job_whose_hash_is_gone_skips_it(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    gone, kept = await enqueue_n(broker, Q, 2)
    rdb.delete(q.job(gone))
    jobs = (await broker.claim(Q, 2)).jobs
    assert [j.id for j in jobs] == [kept]
    assert rdb.zrange(q.inflight, 0, -1) == [kept.encode()]


@pytest.mark.parametrize("n", [0, -1, 1001, 1.5, True, "2"])
async def test_claim_bad_n(broker: Broker, n: Any) -> None:
    await broker.enqueue(Q, "x")
    with pytest.raises(InvalidInput):
        await broker.claim(Q, n)
    assert (await broker.stats(Q)).ready == 1


@pytest.mark.parametrize("vis", [0, -1, 24 * 3600 * 1000 + 1, 2.5, False])
async def test_claim_bad_visibility(broker: Broker, vis: Any) -> None:
    await broker.enqueue(Q, "x")
    with pytest.raises(InvalidInput):
        await broker.claim(Q, 1, visibility_ms=vis)
    assert (await broker.stats(Q)).ready == 1


async def test_claim_1000_is_allowed(broker: Broker) -> None:
    await enqueue_n(broker, Q, 1200)
    assert len((await broker.claim(Q, 1000)).jobs) == 1000
    assert len((await broker.claim(Q, 1000)).jobs) == 200
    assert (await broker.stats(Q)).inflight == 1200


async def test_ack_many_of_thousands_in_one_call(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await enqueue_n(broker, Q, 2500)
    jobs = [job for _ in range(3) for job in (await broker.claim(Q, 1000)).jobs]
    assert len(jobs) == 2500
    assert await broker.ack_many(jobs) == [True] * 2500
    s = await broker.stats(Q)
    assert (s.inflight, s.processed_total) == (0, 2500)
    assert all(rdb.hget(q.job(j.id), "state") == b"done" for j in jobs[::97])


async def test_the_same_job_twice_in_one_ack_counts_once(broker: Broker) -> None:
    await enqueue_n(broker, Q, 2)
    a, b = (await broker.claim(Q, 2)).jobs
    assert await broker.ack_many([a, b, a]) == [True, True, False]
    assert (await broker.stats(Q)).processed_total == 2


# -- concurrency -----------------------------------------------------------------


async def test_concurrent_claimers_each_job_once(broker: Broker, rdb: redis.Redis) -> None:
    specs = [broker.spec(f"p{i}") for i in range(4000)]
    for start in range(0, 4000, 500):
        await broker.enqueue_many(Q, specs[start : start + 500])
    expected = {s.id for s in specs}
    seen: Counter[str] = Counter()
    acks = 0
    claimers_done = 0

    async def claimer(batch: int) -> None:
        nonlocal acks, claimers_done
        while jobs := (await broker.claim(Q, batch)).jobs:
            for job in jobs:
                seen[job.id] += 1
                assert job.attempts == 1
            flags = await broker.ack_many(jobs)
            assert all(flags)
            acks += sum(flags)
        claimers_done += 1

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(claimer, 5 + i * 3)

    assert claimers_done == 8
    assert set(seen) == expected
    assert max(seen.values()) == 1
    assert acks == 4000
    stats = await broker.stats(Q)
    assert stats.processed_total == 4000
    assert (stats.ready, stats.inflight, stats.delayed, stats.dlq) == (0, 0, 0, 0)
    done = {k.decode() for k in rdb.keys(broker.keys.queue(Q).base + "job:*")}
    assert done == {broker.keys.queue(Q).job(i) for i in expected}  # kept, with results
    assert rdb.zcard(broker.keys.queue(Q).done) == 4000


# -- ack -----------------------------------------------------------------------


async def test_ack_without_a_result_ttl_deletes_the_job(broker: Broker, rdb: redis.Redis) -> None:
    broker = Broker(broker.io, prefix=broker.keys.prefix, result_ttl_s=0)
    q = broker.keys.queue(Q)
    result = await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q)).jobs
    assert await broker.ack(job) is True
    assert rdb.zscore(q.inflight, job.id) is None
    assert not rdb.exists(q.job(job.id))
    with pytest.raises(JobNotFound):
        await broker.get_job(Q, result.id)
    assert (await broker.stats(Q)).processed_total == 1
    # A second ack is refused and counts nothing.
    assert await broker.ack(job) is False
    assert (await broker.stats(Q)).processed_total == 1
    assert not rdb.exists(q.job(job.id))


async def test_ack_wrong_lease(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q)).jobs
    deadline = rdb.zscore(q.inflight, job.id)
    forged = Job(**{**_fields(job), "lease": "not-the-lease"})
    assert await broker.ack(forged) is False
    assert rdb.zscore(q.inflight, job.id) == deadline
    stored = await broker.get_job(Q, job.id)
    assert stored.state is JobState.INFLIGHT
    assert stored.lease == job.lease
    assert (await broker.stats(Q)).processed_total == 0
    assert await broker.ack(job) is True


async def test_ack_of_a_job_never_claimed(broker: Broker) -> None:
    result = await broker.enqueue(Q, "x")
    ready = await broker.get_job(Q, result.id)  # lease ""
    assert await broker.ack(ready) is False
    assert (await broker.get_job(Q, result.id)).state is JobState.READY


async def test_ack_many_over_queues(
    broker: Broker, rdb: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("qa", "qb", "qc"):
        await enqueue_n(broker, name, 3)
    a = (await broker.claim("qa", 3)).jobs
    b = (await broker.claim("qb", 3)).jobs
    c = (await broker.claim("qc", 2)).jobs
    assert await broker.ack(a[1]) is True  # already acked below: False
    stale = Job(**{**_fields(c[1]), "lease": "stale"})
    batch = [a[0], b[0], a[1], c[0], b[2], stale, a[2]]
    counter = CallCounter(broker, monkeypatch)
    flags = await broker.ack_many(batch)
    assert counter.calls == 1
    assert flags == [True, True, False, True, True, False, True]
    stats = {s.queue: s for s in await broker.stats_many(["qa", "qb", "qc"])}
    assert stats["qa"].processed_total == 3 and stats["qa"].inflight == 0
    assert stats["qb"].processed_total == 2 and stats["qb"].inflight == 1
    assert stats["qc"].processed_total == 1 and stats["qc"].inflight == 1
    assert stats["qc"].ready == 1
    assert await broker.ack_many([]) == []


def _fields(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in Job.__slots__}


# -- nack ----------------------------------------------------------------------


async def test_nack_retry(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x", max_retries=3)
    (job,) = (await broker.claim(Q)).jobs
    before = await broker.server_time_ms()
    result = await broker.nack(job, "ValueError: boom")
    after = await broker.server_time_ms()
    assert result.outcome == "retry"
    assert 0 <= result.delay_ms < 1000  # attempts 1: ceiling = base
    stored = await broker.get_job(Q, job.id)
    assert stored.state is JobState.DELAYED
    assert stored.last_error == "ValueError: boom"
    assert stored.lease == ""
    assert stored.attempts == 1
    score = rdb.zscore(q.delayed, job.id)
    assert score is not None
    assert before + result.delay_ms <= score <= after + result.delay_ms
    assert stored.ready_at_ms == int(score)
    assert rdb.zscore(q.inflight, job.id) is None
    stats = await broker.stats(Q)
    assert (stats.inflight, stats.delayed, stats.dlq, stats.dead_total) == (0, 1, 0, 0)
    # The old lease is spent.
    assert (await broker.nack(job, "again")).outcome == "stale"
    assert await broker.ack(job) is False


async def test_nack_dead_after_max_retries(broker: Broker, rdb: redis.Redis) -> None:
    fast = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=1, backoff_cap_ms=1)
    q = fast.keys.queue(Q)
    result = await fast.enqueue(Q, "x", max_retries=2)
    for attempt in (1, 2):
        (job,) = (await fast.claim(Q)).jobs
        assert job.attempts == attempt
        outcome = await fast.nack(job, f"fail {attempt}")
        if attempt < 2:
            assert outcome.outcome == "retry"
            await trio.sleep(0.005)
            assert await fast.promote(Q) == 1
    assert outcome.outcome == "dead"
    stored = await fast.get_job(Q, result.id)
    assert stored.state is JobState.DEAD
    assert stored.last_error == "fail 2"
    assert stored.attempts == 2
    assert dec(rdb.lrange(q.dlq, 0, -1)) == [result.id]
    assert rdb.zscore(q.delayed, result.id) is None
    assert rdb.zscore(q.inflight, result.id) is None
    stats = await fast.stats(Q)
    assert (stats.dlq, stats.dead_total, stats.delayed, stats.ready) == (1, 1, 0, 0)
    assert [j.id for j in await fast.dlq_list(Q)] == [result.id]


async def test_nack_max_retries_zero_dead_at_first_failure(broker: Broker) -> None:
    await broker.enqueue(Q, "x", max_retries=0)
    (job,) = (await broker.claim(Q)).jobs
    assert (await broker.nack(job, "e")).outcome == "dead"
    assert (await broker.stats(Q)).dead_total == 1


async def test_nack_dead_flag(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x", max_retries=100)
    (job,) = (await broker.claim(Q)).jobs
    result = await broker.nack(job, "poison", dead=True)
    assert result.outcome == "dead"
    stored = await broker.get_job(Q, job.id)
    assert stored.state is JobState.DEAD
    assert stored.last_error == "poison"
    assert dec(rdb.lrange(q.dlq, 0, -1)) == [job.id]
    assert (await broker.stats(Q)).dead_total == 1


async def test_nack_stale_lease_changes_nothing(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x", max_retries=0)
    (job,) = (await broker.claim(Q)).jobs
    before = rdb.hgetall(q.job(job.id))
    deadline = rdb.zscore(q.inflight, job.id)
    forged = Job(**{**_fields(job), "lease": "stale"})
    for dead in (False, True):
        result = await broker.nack(forged, "late", dead=dead)
        assert result.outcome == "stale"
        assert result.delay_ms == 0
    assert rdb.hgetall(q.job(job.id)) == before
    assert rdb.zscore(q.inflight, job.id) == deadline
    stats = await broker.stats(Q)
    assert (stats.inflight, stats.delayed, stats.dlq, stats.dead_total) == (1, 0, 0, 0)


async def test_nack_error_text_is_bounded(broker: Broker) -> None:
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q)).jobs
    await broker.nack(job, "e" * 10_000)
    stored = await broker.get_job(Q, job.id)
    assert 0 < len(stored.last_error) <= 4096


# -- backoff -------------------------------------------------------------------


async def _nack_delays(broker: Broker, rdb: redis.Redis, attempts: int, n: int) -> list[int]:
    """``n`` retry delays for jobs nacked at ``attempts``.

    The jobs are claimed for real (lease and state are genuine); then the
    ``attempts`` field - the input of the backoff function - is set directly in
    Redis so that the k-th attempt needs no k-1 rounds of waiting.
    """
    q = broker.keys.queue(Q)
    await enqueue_n(broker, Q, n, max_retries=1000)
    jobs = await claim_all(broker, Q, n)
    pipe = rdb.pipeline(transaction=False)
    for job in jobs:
        pipe.hset(q.job(job.id), "attempts", attempts)
    pipe.execute()
    results: dict[str, int] = {}

    async def one(job: Job) -> None:
        result = await broker.nack(job, "x")
        assert result.outcome == "retry"
        results[job.id] = result.delay_ms

    before = await broker.server_time_ms()
    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(one, job)
    after = await broker.server_time_ms()
    assert rdb.zcard(q.inflight) == 0
    # The job waits in `delayed` until server-now + the delay it was told.
    scores = dict(rdb.zrange(q.delayed, 0, -1, withscores=True))
    assert len(scores) == n
    for job_id, delay in results.items():
        assert before + delay <= scores[job_id.encode()] <= after + delay
    delays = list(results.values())
    rdb.delete(q.delayed)
    return delays


def _check_spread(delays: list[int], ceiling: int) -> None:
    assert all(isinstance(d, int) for d in delays)
    assert all(0 <= d < ceiling for d in delays), (ceiling, min(delays), max(delays))
    assert min(delays) < 0.25 * ceiling
    assert max(delays) > 0.75 * ceiling
    assert 0.35 < sum(delays) / len(delays) / ceiling < 0.65
    assert len(set(delays)) > len(delays) // 2 or ceiling < len(delays)


@pytest.mark.parametrize("attempts", range(1, 13))
async def test_backoff_ceiling_and_full_jitter_defaults(
    broker: Broker, rdb: redis.Redis, attempts: int
) -> None:
    assert (broker.core.backoff_base_ms, broker.core.backoff_cap_ms) == (1000, 600_000)
    ceiling = min(600_000, 1000 * 2 ** (attempts - 1))
    delays = await _nack_delays(broker, rdb, attempts, 200)
    assert len(delays) == 200
    _check_spread(delays, ceiling)


async def test_backoff_custom_base_and_cap(broker: Broker, rdb: redis.Redis) -> None:
    custom = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=300, backoff_cap_ms=5000)
    for attempts, ceiling in [(1, 300), (2, 600), (4, 2400), (5, 4800), (6, 5000), (40, 5000)]:
        delays = await _nack_delays(custom, rdb, attempts, 200)
        _check_spread(delays, ceiling)


async def test_backoff_through_the_real_flow(broker: Broker, rdb: redis.Redis) -> None:
    # base 2 ms, cap 16 ms: ceilings 2, 4, 8, 16, 16, 16 for attempts 1..6.
    fast = Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=2, backoff_cap_ms=16)
    ids = await enqueue_n(fast, Q, 100, max_retries=6)
    for attempt in range(1, 7):
        jobs = await claim_all(fast, Q, 100)
        assert {j.attempts for j in jobs} == {attempt}
        assert sorted(j.id for j in jobs) == sorted(ids)
        ceiling = min(16, 2 * 2 ** (attempt - 1))
        outcomes = [await fast.nack(job, f"a{attempt}") for job in jobs]
        if attempt < 6:
            assert {o.outcome for o in outcomes} == {"retry"}
            delays = [o.delay_ms for o in outcomes]
            assert all(0 <= d < ceiling for d in delays)
            # spread over [0, ceiling): (all 16 values of 100 draws would flake ~2.5%)
            assert len(set(delays)) >= max(2, ceiling * 3 // 4)
            await trio.sleep(0.03)
            assert await fast.promote(Q) == 100
        else:
            assert {o.outcome for o in outcomes} == {"dead"}
    stats = await fast.stats(Q)
    assert (stats.dlq, stats.dead_total, stats.ready, stats.delayed) == (100, 100, 0, 0)


# -- extend --------------------------------------------------------------------


async def test_extend_pushes_deadline(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q, visibility_ms=100)).jobs
    first = rdb.zscore(q.inflight, job.id)
    assert first is not None
    before = await broker.server_time_ms()
    assert await broker.extend(job, 60_000) is True
    after = await broker.server_time_ms()
    second = rdb.zscore(q.inflight, job.id)
    assert second is not None
    assert second > first
    assert before + 60_000 <= second <= after + 60_000
    assert (await broker.get_job(Q, job.id)).deadline_ms == int(second)
    # It stays leased past the original deadline: reap leaves it alone.
    await trio.sleep(0.15)
    assert (await broker.reap(Q)).requeued == 0
    assert await broker.ack(job) is True


async def test_extend_default_visibility_and_bad_input(broker: Broker, rdb: redis.Redis) -> None:
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q, visibility_ms=100)).jobs
    before = await broker.server_time_ms()
    assert await broker.extend(job) is True
    score = rdb.zscore(broker.keys.queue(Q).inflight, job.id)
    assert score is not None and score >= before + 30_000
    for bad in (0, -1, 24 * 3600 * 1000 + 1):
        with pytest.raises(InvalidInput):
            await broker.extend(job, bad)


async def test_extend_after_ack_is_refused(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q)).jobs
    assert await broker.ack(job) is True
    assert await broker.extend(job, 10_000) is False
    assert rdb.zscore(q.inflight, job.id) is None
    assert rdb.zcard(q.inflight) == 0
    assert rdb.hget(q.job(job.id), "state") == b"done"


async def test_extend_wrong_lease_and_after_nack(broker: Broker, rdb: redis.Redis) -> None:
    q = broker.keys.queue(Q)
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q, visibility_ms=5000)).jobs
    deadline = rdb.zscore(q.inflight, job.id)
    forged = Job(**{**_fields(job), "lease": "other"})
    assert await broker.extend(forged, 60_000) is False
    assert rdb.zscore(q.inflight, job.id) == deadline
    await broker.nack(job, "e")
    assert await broker.extend(job, 60_000) is False
    assert rdb.zscore(q.inflight, job.id) is None
    assert (await broker.get_job(Q, job.id)).state is JobState.DELAYED


async def test_extend_many(broker: Broker, rdb: redis.Redis) -> None:
    await enqueue_n(broker, "ea", 2)
    await enqueue_n(broker, "eb", 1)
    a = (await broker.claim("ea", 2, visibility_ms=1000)).jobs
    b = (await broker.claim("eb", 1, visibility_ms=1000)).jobs
    await broker.ack(a[1])
    assert await broker.extend_many([a[0], b[0], a[1]], 50_000) == [True, True, False]
    now = await broker.server_time_ms()
    for queue, job in (("ea", a[0]), ("eb", b[0])):
        score = rdb.zscore(broker.keys.queue(queue).inflight, job.id)
        assert score is not None and score > now + 40_000
    assert await broker.extend_many([]) == []


# -- fencing: a late answer after reap + re-claim ----------------------------------


async def test_late_ack_after_reap_does_not_touch_new_claim(
    broker: Broker, rdb: redis.Redis
) -> None:
    q = broker.keys.queue(Q)
    result = await broker.enqueue(Q, "x")
    (old,) = (await broker.claim(Q, visibility_ms=100)).jobs
    await trio.sleep(0.15)
    assert (await broker.reap(Q)).requeued == 1
    (new,) = (await broker.claim(Q, visibility_ms=10_000)).jobs
    assert new.id == old.id == result.id
    assert new.lease != old.lease
    assert new.attempts == 2
    deadline = rdb.zscore(q.inflight, new.id)

    # Every late answer of the old worker is refused and leaves the new claim alone.
    assert await broker.ack(old) is False
    assert await broker.extend(old, 60_000) is False
    assert (await broker.nack(old, "late", dead=True)).outcome == "stale"
    assert rdb.zscore(q.inflight, new.id) == deadline
    stored = await broker.get_job(Q, new.id)
    assert (stored.state, stored.lease, stored.attempts) == (JobState.INFLIGHT, new.lease, 2)
    stats = await broker.stats(Q)
    assert (stats.processed_total, stats.dead_total, stats.dlq) == (0, 0, 0)

    assert await broker.ack(new) is True
    assert (await broker.stats(Q)).processed_total == 1
    assert await broker.ack(old) is False
    assert (await broker.stats(Q)).processed_total == 1


async def test_reap_sends_spent_job_to_dlq(broker: Broker, rdb: redis.Redis) -> None:
    await broker.enqueue(Q, "x", max_retries=1)
    (job,) = (await broker.claim(Q, visibility_ms=30)).jobs
    await trio.sleep(0.06)
    reaped = await broker.reap(Q)
    assert (reaped.requeued, reaped.dead) == (0, 1)
    assert (await broker.stats(Q)).dead_total == 1
    stored = await broker.get_job(Q, job.id)
    assert stored.state is JobState.DEAD
    assert dec(rdb.lrange(broker.keys.queue(Q).dlq, 0, -1)) == [job.id]


async def test_late_ack_after_reap_before_reclaim(broker: Broker, rdb: redis.Redis) -> None:
    result = await broker.enqueue(Q, "x")
    (old,) = (await broker.claim(Q, visibility_ms=30)).jobs
    await trio.sleep(0.06)
    assert (await broker.reap(Q)).requeued == 1
    assert await broker.extend(old, 60_000) is False  # no lease to extend
    assert (await broker.nack(old, "late")).outcome == "stale"  # the reaper gave it back
    stored = await broker.get_job(Q, result.id)
    assert (stored.state, stored.attempts, stored.lease) == (JobState.READY, 1, "")
    # the attempt did finish and nobody claimed the job since: its late ack counts
    assert await broker.ack(old) is True
    stats = await broker.stats(Q)
    assert (stats.ready, stats.inflight, stats.delayed, stats.processed_total) == (0, 0, 0, 1)


# -- the server clock --------------------------------------------------------------


async def test_deadlines_come_from_the_redis_clock(
    broker: Broker, rdb: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = broker.keys.queue(Q)
    # Put this host's wall clock two hours off: nothing the broker stores may follow it.
    skew = 7200.0
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + skew)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(skew * 1e9))

    before = await broker.server_time_ms()
    created = await broker.enqueue(Q, "x")
    delayed = await broker.enqueue(Q, "d", delay_ms=5000)
    (job,) = (await broker.claim(Q, visibility_ms=2000)).jobs
    after = await broker.server_time_ms()
    seconds, micros = rdb.time()
    assert abs(seconds * 1000 + micros // 1000 - after) < 1000  # server_time_ms is TIME

    assert job.id == created.id
    assert before <= job.created_at_ms <= after
    inflight = rdb.zscore(q.inflight, job.id)
    assert inflight is not None and before + 2000 <= inflight <= after + 2000
    due = rdb.zscore(q.delayed, delayed.id)
    assert due is not None and before + 5000 <= due <= after + 5000

    before = await broker.server_time_ms()
    assert await broker.extend(job, 3000) is True
    nack_result = await broker.nack(job, "e")
    after = await broker.server_time_ms()
    stored = await broker.get_job(Q, job.id)
    assert stored.ready_at_ms is not None
    assert before + nack_result.delay_ms <= stored.ready_at_ms <= after + nack_result.delay_ms
