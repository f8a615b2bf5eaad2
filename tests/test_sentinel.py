"""Redis Sentinel (spec 13): ``redis+sentinel://`` URLs, and a failover under load.

A real master, replica and sentinel (``support.sentinel``, all ``redis-server``)
for each test that needs them. The brokers here are built on
:func:`relay_trio.redis_sentinel.sentinel_client` directly (``Broker(RedisIO(...))``),
so they test the sentinel client itself, whatever ``--redis-url`` does with the URL.

The failover test kills the master with SIGKILL while a producer enqueues (each
job with an idempotency key, retried until Redis answers) and a worker consumes;
after the promotion both carry on in the same process. Replication is
asynchronous, so what the master had acknowledged but not yet sent to the
replica is gone: the test measures it (enqueues acknowledged to the producer
whose job never ran; jobs that ran twice because an ack or a claim was lost)
and prints it (``-s``) and records it (``record_property``).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import trio
from support import eventually
from support.sentinel import SentinelSetup, sentinel_setup

from relay_trio import Job, QueueHandler, RedisUnavailable, Worker, WorkerConfig
from relay_trio._errors import InvalidInput
from relay_trio.broker import Broker, open_broker
from relay_trio.broker_core import BrokerCore
from relay_trio.redis_aio import AsyncIO
from relay_trio.redis_io import RedisIO
from relay_trio.redis_sentinel import (
    DEFAULT_SENTINEL_PORT,
    async_sentinel_client,
    is_sentinel_client,
    is_sentinel_url,
    parse_sentinel_url,
    sentinel_blocking_twin,
    sentinel_client,
    sentinel_url_problem,
    sentinel_where,
)
from relay_trio.redis_wire import BLOCKING_SOCKET_TIMEOUT

SECRET = "Pw-s3cret_42"


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    with sentinel_setup() as setup:
        yield setup


def _prefix() -> str:
    return "relaytest-" + secrets.token_hex(6)


def _client(url: str, max_connections: int = 16) -> redis.Redis:
    return sentinel_client(
        url, socket_timeout=1.0, connect_timeout=1.0, max_connections=max_connections
    )


# -- URLs ---------------------------------------------------------------------------


def test_good_urls_parse() -> None:
    parsed = parse_sentinel_url(
        f"redis+sentinel://:{SECRET}@10.0.0.1:26380,sentinel-b,[::1]:5000/my%2Dsvc/3"
        "?sentinel_password=s%26p"
    )
    assert parsed.sentinels == (
        ("10.0.0.1", 26380),
        ("sentinel-b", DEFAULT_SENTINEL_PORT),
        ("::1", 5000),
    )
    assert (parsed.service, parsed.db, parsed.password) == ("my-svc", 3, SECRET)
    assert (parsed.username, parsed.sentinel_password) == (None, "s&p")
    assert SECRET not in repr(parsed) and "s&p" not in repr(parsed)
    plain = parse_sentinel_url("REDIS+SENTINEL://alice:p%40ss@h:1/svc")
    assert (plain.username, plain.password, plain.db) == ("alice", "p@ss", 0)
    assert parse_sentinel_url("redis+sentinel://h:1/svc/").db == 0
    assert is_sentinel_url("Redis+Sentinel://h/svc") and not is_sentinel_url("redis://h/0")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:6379/0", "not a redis+sentinel:// URL"),
        ("redis+sentinel:///svc", "names at least one sentinel"),
        (f"redis+sentinel://:{SECRET}@/svc", "names at least one sentinel"),
        ("redis+sentinel://h:1", "needs the service name"),
        ("redis+sentinel://h:1/", "needs the service name"),
        ("redis+sentinel://h:0/svc", "port of the sentinel address is not a number from 1"),
        ("redis+sentinel://h:1,h:99999/svc", "port of sentinel address 2 of 2"),
        ("redis+sentinel://h:1,,h:2/svc", "sentinel address 2 of 3 is empty"),
        # a forgotten "@": the password reads as a host, and is not shown
        (f"redis+sentinel://:{SECRET},h:1/svc", "sentinel address 1 of 2 is not a host:port"),
        (f"redis+sentinel://h:{SECRET}/svc", "port of the sentinel address is not a number"),
        ("redis+sentinel://::1:26379/svc", "an IPv6 address goes in brackets"),
        ("redis+sentinel://[::1/svc", "[IPv6 address]:port"),
        ("redis+sentinel://h:1/svc/x", "the database (after the service name) is not a number"),
        ("redis+sentinel://h:1/svc/0/more", "is /service_name or /service_name/db"),
        ("redis+sentinel://h:1/s%20%0avc", "the service name holds a space"),
        (f"redis+sentinel://h:1/svc?password={SECRET}", "unknown option 'password'"),
        (f"redis+sentinel://h:1/svc?{SECRET}", "not name=value pairs"),
        ("redis+sentinel://h:1/svc?sentinel_password=a&sentinel_password=b", "given twice"),
        (f"redis+sentinel://:{SECRET}@h:1/svc#x", "has no fragment"),
    ],
)
def test_bad_urls_say_why_and_never_show_the_password(url: str, reason: str) -> None:
    problem = sentinel_url_problem(url)
    assert problem is not None and reason in problem, problem
    assert SECRET not in problem
    with pytest.raises(InvalidInput) as info:
        _client(url)
    assert info.value.field == "redis_url" and reason in str(info.value)
    assert SECRET not in str(info.value)


def test_a_good_url_has_no_problem_and_nothing_connects() -> None:
    url = f"redis+sentinel://:{SECRET}@127.0.0.1:1/svc/2?sentinel_password=x"
    assert sentinel_url_problem(url) is None
    client = _client(url)  # nothing listens on port 1: nothing was tried yet
    assert is_sentinel_client(client)
    assert sentinel_where(client) == "the master of 'svc' (sentinels 127.0.0.1:1)"
    assert sentinel_where(redis.Redis()) is None
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["password"], kwargs["db"], kwargs["socket_timeout"]) == (SECRET, 2, 1.0)
    assert kwargs["retry"].get_retries() == 0
    client.close()


# -- a broker through the sentinel --------------------------------------------------


async def test_enqueue_claim_ack_through_the_sentinel(sentinel: SentinelSetup) -> None:
    prefix = _prefix()
    broker = Broker(RedisIO(_client(sentinel.url()), max_connections=16), prefix=prefix)
    try:
        enqueued = await broker.enqueue("q", "hello", idempotency_key="k1")
        again = await broker.enqueue("q", "hello", idempotency_key="k1")
        assert again.duplicate and again.id == enqueued.id
        claim = await broker.claim("q", 5)
        assert [job.id for job in claim.jobs] == [enqueued.id]
        assert await broker.ack(claim.jobs[0], "result")
        # the blocking path (a wait for the job's end) goes to the master too
        assert await broker.run(broker.core.result("q", enqueued.id, 1.0)) == "result"
        stats = await broker.stats("q")
        assert (stats.ready, stats.inflight, stats.processed_total) == (0, 0, 1)
    finally:
        await broker.io.aclose()
    # it was the master that took it, and the replica has it
    with sentinel.client("replica") as replica:
        keys = await eventually(lambda: replica.keys(f"{prefix}:*"))
    assert keys


async def test_a_broker_from_the_url(sentinel: SentinelSetup) -> None:
    """Through ``Broker.from_url`` (redis_sync's hook): the same, and the
    messages name the sentinels, never the password."""
    async with open_broker(sentinel.url(db=2), prefix=_prefix(), socket_timeout=1.0) as broker:
        assert str(sentinel.ports["sentinel"]) in broker.io.where
        job_id = (await broker.enqueue("q", "x")).id
        (job,) = (await broker.claim("q", 1)).jobs
        assert job.id == job_id and await broker.ack(job)
    with redis.Redis(port=sentinel.ports["master"], db=2) as master:
        assert master.dbsize() > 0  # database 2 of the URL


@pytest.mark.slow
def test_a_blocking_twin_follows_the_master_too(sentinel: SentinelSetup) -> None:
    client = _client(sentinel.url(db=1))
    twin = sentinel_blocking_twin(client, 4)
    try:
        assert twin.connection_pool.connection_kwargs["socket_timeout"] == BLOCKING_SOCKET_TIMEOUT
        assert twin.connection_pool.connection_kwargs["db"] == 1
        client.rpush("l", "x")
        assert twin.blpop(["l"], timeout=1) == (b"l", b"x")
        sentinel.kill("master")
        sentinel.wait_for_promotion()
        deadline = time.monotonic() + 10
        while True:  # the first calls may fail: the sentinel has no master yet
            try:
                client.rpush("l", "y")
                break
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert twin.blpop(["l"], timeout=1) == (b"l", b"y")
        replica_port = sentinel.ports["replica"]
        pool: Any = twin.connection_pool
        assert pool.master_address == ("127.0.0.1", replica_port)
    finally:
        client.close()
        twin.close()


@pytest.mark.slow
def test_the_asyncio_client_follows_the_master(sentinel: SentinelSetup) -> None:
    """``redis.asyncio``: enqueue, claim and ack through the sentinel, then again
    after a failover, in the same event loop."""
    url = sentinel.url()
    core = BrokerCore(prefix=_prefix())

    async def main() -> list[str]:
        options: dict[str, Any] = {"connect_timeout": 1.0, "max_connections": 8}
        io = AsyncIO(
            "(not shown)",
            async_sentinel_client(url, socket_timeout=1.0, **options),
            async_sentinel_client(url, socket_timeout=BLOCKING_SOCKET_TIMEOUT, **options),
        )
        errors: list[str] = []
        try:
            for round_ in range(2):
                if round_ == 1:
                    sentinel.kill("master")  # blocking, but nothing else runs here
                    await asyncio.to_thread(sentinel.wait_for_promotion)
                while True:
                    try:
                        job_id = (await io.drive(core.enqueue("q", f"r{round_}"))).id
                        break
                    except RedisUnavailable as exc:
                        errors.append(type(exc).__name__)
                        await asyncio.sleep(0.1)
                (job,) = (await io.drive(core.claim("q", 5))).jobs
                assert job.id == job_id
                assert await io.drive(core.ack(job, round_))
                assert await io.drive(core.result("q", job_id, 1.0)) == round_
            assert io.client.connection_pool.master_address == (  # type: ignore[attr-defined]
                "127.0.0.1",
                sentinel.ports["replica"],
            )
        finally:
            await io.aclose()
        return errors

    errors = asyncio.run(main())
    assert set(errors) <= {"RedisUnavailable", "RedisOutcomeUnknown"}


# -- a failover under load -----------------------------------------------------------

Q = "failover"
PRODUCERS = 4  # each enqueues one job after another, as fast as Redis answers


@pytest.mark.slow
async def test_a_failover_under_load(
    sentinel: SentinelSetup, record_property: Callable[[str, object], None]
) -> None:
    io = RedisIO(_client(sentinel.url(), max_connections=32), max_connections=32)
    broker = Broker(io, prefix=_prefix(), backoff_base_ms=20, backoff_cap_ms=200)
    runs: Counter[str] = Counter()  # payload -> how many times the handler ran it
    answered: dict[str, float] = {}  # payload -> when its enqueue was acknowledged
    producer_errors: Counter[str] = Counter()
    stop_producing = trio.Event()

    async def handler(job: Job) -> None:
        runs[job.payload.decode()] += 1

    async def produce(first: int, step: int) -> None:
        i = first
        while not stop_producing.is_set():
            payload = f"job-{i}"
            while True:  # retried with the same key: never two jobs for one payload
                try:
                    await broker.enqueue(Q, payload, idempotency_key=f"key-{i}", max_retries=5)
                    break
                except RedisUnavailable as exc:
                    producer_errors[type(exc).__name__] += 1
                    await trio.sleep(0.05)
            answered[payload] = time.monotonic()
            i += step

    worker = Worker(
        broker,
        [QueueHandler(Q, handler, concurrency=20)],
        WorkerConfig(
            visibility_ms=2000,
            reap_interval=0.2,
            promote_interval=0.1,
            error_retry_delay=0.1,
            idle_wait=0.5,
            grace_period=2.0,
            schedules=False,
        ),
    )

    def ran_after(moment: float) -> int:
        return sum(1 for p, t in answered.items() if t > moment and runs[p])

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            for first in range(PRODUCERS):
                nursery.start_soon(produce, first, PRODUCERS)
            await eventually(lambda: len(answered) >= 2000 and sum(runs.values()) >= 1000)
            killed_at = time.monotonic()
            sentinel.kill("master")
            await trio.to_thread.run_sync(sentinel.wait_for_promotion)
            promoted_at = time.monotonic()
            # the same producer and worker carry on against the new master
            await eventually(lambda: ran_after(promoted_at) >= 200, within=15)
            stop_producing.set()

            async def settled() -> bool:
                stats = await broker.stats(Q)
                return stats.ready + stats.inflight + stats.delayed == 0

            await eventually(settled, within=15)  # a lost ack's job comes back, runs again
            worker.stop()
    await io.aclose()

    lost = sorted(p for p in answered if not runs[p])
    twice = sorted(p for p, n in runs.items() if n > 1)
    before_kill = sum(1 for t in answered.values() if t < killed_at)
    times = sorted(answered.values())
    measured = {
        "jobs_enqueued": len(answered),
        "acknowledged_before_kill": before_kill,
        "lost_enqueues": len(lost),
        "ran_twice": len(twice),
        "promotion_s": round(promoted_at - killed_at, 2),
        "longest_enqueue_gap_s": round(max(b - a for a, b in itertools.pairwise(times)), 2),
        "producer_errors": dict(producer_errors),
        "worker_stale_acks": worker.stats.stale_acks,
        "worker_reclaimed": worker.stats.reclaimed,
    }
    print(f"\nsentinel failover under load: {measured}")
    for name, value in measured.items():
        record_property(f"sentinel_{name}", value)

    # recovered: new jobs after the promotion ran, without a restart
    assert ran_after(promoted_at) >= 200
    assert producer_errors  # the kill was felt
    # what asynchronous replication lost: only enqueues acknowledged just before the kill
    # (a reply read just before the kill may be noted just after it: the bound is the promotion)
    assert all(answered[p] < promoted_at for p in lost)
    assert all(killed_at - answered[p] < 2.0 for p in lost)
    # a job ran twice only if an ack or a claim of the old master was lost with it
    assert all(answered[p] < promoted_at for p in twice)
    assert not any(n > 2 for n in runs.values())
