"""The worker runtime against a real Redis (spec section 4).

Each test runs an in-process :class:`Worker` in a nursery (``nursery.start(worker.serve)``)
and stops it with ``worker.stop()``; one test kills a worker subprocess with SIGKILL.
Only the real clock is used: Redis computes every deadline from its own time.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
import trio.lowlevel
from support import eventually, running_worker

from relay_trio import (
    Broker,
    ConfigError,
    Job,
    JobState,
    QueueHandler,
    Worker,
    WorkerConfig,
)

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

TESTS_DIR = Path(__file__).resolve().parent
Q = "work"


async def total_jobs(broker: Broker, queue: str) -> int:
    """Every job the queue still holds, plus every job it acked."""
    s = await broker.stats(queue)
    return s.ready + s.inflight + s.delayed + s.dlq + s.processed_total


def fast_broker(broker: Broker) -> Broker:
    """The same Redis and prefix, with a backoff of a few milliseconds."""
    return Broker(broker.io, prefix=broker.keys.prefix, backoff_base_ms=5, backoff_cap_ms=20)


# -- processing -------------------------------------------------------------------


async def test_jobs_are_processed_and_acked(broker: Broker) -> None:
    seen: list[bytes] = []

    async def handler(job: Job) -> None:
        seen.append(job.payload)
        await trio.sleep(0.005)

    before = [r.id for r in await broker.enqueue_many(Q, [broker.spec(f"p{i}") for i in range(20)])]
    async with running_worker(broker, [QueueHandler(Q, handler, concurrency=4)]) as worker:
        after = [
            r.id
            for r in await broker.enqueue_many(Q, [broker.spec(f"p{i}") for i in range(20, 30)])
        ]

        async def all_acked() -> bool:
            return (await broker.stats(Q)).processed_total == 30

        await eventually(all_acked)
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (0, 0, 0, 0, 30)
    assert sorted(seen) == sorted(f"p{i}".encode() for i in range(30))  # each exactly once
    assert worker.stats.succeeded == worker.stats.acked == worker.stats.claimed == 30
    assert worker.stats.failed == worker.stats.stale_acks == 0
    for job_id in before + after:
        assert (await broker.get_job(Q, job_id)).state is JobState.DONE


async def test_handler_errors_retry_then_dead_letter_and_the_worker_keeps_going(
    broker: Broker,
) -> None:
    fast = fast_broker(broker)
    calls: Counter[bytes] = Counter()

    async def handler(job: Job) -> None:
        calls[job.payload] += 1
        if job.payload.startswith(b"bad"):
            raise ValueError(f"cannot handle {job.payload.decode()} (attempt {job.attempts})")

    bad = (await fast.enqueue(Q, "bad-1", max_retries=3)).id
    async with running_worker(fast, [QueueHandler(Q, handler)], promote_interval=0.05) as worker:

        async def dead() -> bool:
            return (await fast.stats(Q)).dlq == 1

        await eventually(dead)
        # the worker survived three failures and still processes other jobs
        good = [
            r.id for r in await fast.enqueue_many(Q, [fast.spec(f"good-{i}") for i in range(5)])
        ]

        async def processed() -> bool:
            return (await fast.stats(Q)).processed_total == 5

        await eventually(processed)
    job = await fast.get_job(Q, bad)
    assert job.state is JobState.DEAD
    assert job.attempts == 3
    assert "ValueError" in job.last_error
    assert "cannot handle bad-1 (attempt 3)" in job.last_error
    assert calls[b"bad-1"] == 3
    assert all(calls[f"good-{i}".encode()] == 1 for i in range(5))
    assert [j.id for j in await fast.dlq_list(Q)] == [bad]
    s = await fast.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total, s.dead_total) == (
        0,
        0,
        0,
        1,
        5,
        1,
    )
    assert worker.stats.failed == 3
    assert worker.stats.succeeded == 5
    assert len(good) == 5


async def test_heartbeat_keeps_a_long_job_from_being_reaped(broker: Broker) -> None:
    runs: list[int] = []
    checked: list[int] = []

    async def long_job(job: Job) -> None:
        runs.append(job.attempts)
        await trio.sleep(1.2)

    job_id = (await broker.enqueue(Q, "long")).id
    config: dict[str, Any] = {"visibility_ms": 300, "reap_interval": 0.1}
    async with (
        running_worker(broker, [QueueHandler(Q, long_job)], **config) as first,
        running_worker(broker, [QueueHandler(Q, long_job)], **config) as second,
    ):

        async def started() -> bool:
            return bool(runs)

        await eventually(started)
        # well past four visibility timeouts: both reapers ran many passes
        for _ in range(4):
            await trio.sleep(0.25)
            job = await broker.get_job(Q, job_id)
            assert job.state is JobState.INFLIGHT
            checked.append(job.attempts)

        async def acked() -> bool:
            return (await broker.stats(Q)).processed_total == 1

        await eventually(acked)
    assert runs == [1]
    assert checked == [1, 1, 1, 1]
    assert first.stats.stale_acks == second.stats.stale_acks == 0
    assert first.stats.acked + second.stats.acked == 1
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (0, 0, 0, 0, 1)


async def test_held_jobs_all_run_at_once_whatever_the_others_do(broker: Broker) -> None:
    """Blocking handlers each get a runner of their own at once, however many
    instant ones run beside them, and the limit is never passed."""
    limit = 40
    running = peak = 0
    blockers_in = trio.Event()
    blocking = 0

    async def handler(job: Job) -> None:
        nonlocal running, peak, blocking
        running += 1
        peak = max(peak, running)
        if job.payload == b"block":
            blocking += 1
            if blocking == limit:
                blockers_in.set()  # every blocking job runs now: all slots are theirs
            await blockers_in.wait()
        running -= 1

    specs = [broker.spec("block" if i % 3 == 0 else "instant") for i in range(3 * limit)]
    await broker.enqueue_many(Q, specs)
    async with running_worker(broker, [QueueHandler(Q, handler, concurrency=limit)]) as worker:

        async def done() -> bool:
            return worker.stats.acked == len(specs)

        await eventually(done)
    assert blockers_in.is_set()
    assert peak == limit
    assert worker.stats.succeeded == len(specs)


class HeldClaim(Broker):
    """Holds its first claim back until :attr:`release` is set."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.io, prefix=broker.keys.prefix, backoff_base_ms=5)
        self.claiming = trio.Event()
        self.release = trio.Event()

    async def claim(self, queue: str, n: int = 1, *, visibility_ms: int | None = None) -> Any:
        if not self.claiming.is_set():
            self.claiming.set()
            await self.release.wait()
        return await super().claim(queue, n, visibility_ms=visibility_ms)


@pytest.mark.parametrize("grace", [0.0, 2.0])
async def test_jobs_claimed_as_the_worker_stops_run_or_are_released(
    broker: Broker, grace: float
) -> None:
    """A claim that ends after stop() hands its jobs on: within the grace period
    they run and are acked; with none they are released, attempts unchanged.
    Nothing stays in flight."""
    ran: list[bytes] = []

    async def handler(job: Job) -> None:
        if grace:
            await trio.lowlevel.checkpoint()
        else:
            await trio.sleep(60)  # cancelled: released
        ran.append(job.payload)

    held = HeldClaim(broker)
    await held.enqueue_many(Q, [held.spec(f"j{i}") for i in range(30)])
    worker = Worker(
        held, [QueueHandler(Q, handler, concurrency=50)], WorkerConfig(grace_period=grace)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            await held.claiming.wait()
            worker.stop()
            held.release.set()
    s = await broker.stats(Q)
    assert worker.stats.claimed == 30
    assert s.inflight == 0
    if grace:
        assert sorted(ran) == sorted(f"j{i}".encode() for i in range(30))
        assert (s.processed_total, s.delayed, worker.stats.acked) == (30, 0, 30)
    else:
        assert ran == []
        assert (s.processed_total, s.ready, worker.stats.cancelled) == (0, 30, 30)
        assert worker.stats.released == 30
        for job_id in await broker.io.run(
            lambda client: client.zrange(broker.keys.queue(Q).ready, 0, -1)
        ):
            job = await broker.get_job(Q, job_id.decode())
            assert "released" in job.last_error and job.attempts == 0
    assert await total_jobs(broker, Q) == 30


# -- shutdown ---------------------------------------------------------------------


async def test_graceful_shutdown_acks_finishers_releases_the_rest_and_loses_nothing(
    broker: Broker,
) -> None:
    started: dict[bytes, float] = {}
    finished: list[bytes] = []

    async def handler(job: Job) -> None:
        started[job.payload] = trio.current_time()
        await trio.sleep(0.4 if job.payload == b"quick" else 60)
        finished.append(job.payload)

    quick = (await broker.enqueue(Q, "quick")).id
    stuck = (await broker.enqueue(Q, "stuck")).id
    worker = Worker(broker, [QueueHandler(Q, handler)], WorkerConfig(grace_period=1.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)

        async def both_running() -> bool:
            return len(started) == 2

        await eventually(both_running)
        await trio.sleep(0.1)  # the claim loop is idle again, waiting for a hint
        stopped_at = trio.current_time()
        worker.stop()
        late = [
            r.id for r in await broker.enqueue_many(Q, [broker.spec(f"late-{i}") for i in range(3)])
        ]
    took = trio.current_time() - stopped_at  # serve returned: the nursery is closed

    assert 0.9 <= took < 3.0, took  # the grace period, not the 60 s job
    assert finished == [b"quick"]
    assert (await broker.get_job(Q, quick)).state is JobState.DONE  # finished in the grace period
    job = await broker.get_job(Q, stuck)
    assert job.state is JobState.READY  # cancelled after the grace period: released
    assert job.attempts == 0  # the attempt the shutdown cut short is not counted
    assert "released" in job.last_error and "shut down" in job.last_error
    for job_id in late:  # enqueued after stop(): never claimed
        assert (await broker.get_job(Q, job_id)).state is JobState.READY
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (4, 0, 0, 0, 1)
    assert await total_jobs(broker, Q) == 5
    assert worker.stats.succeeded == 1
    assert worker.stats.cancelled == 1
    assert worker.stats.claimed == 2


async def test_stop_with_nothing_running_returns_at_once(broker: Broker) -> None:
    async def handler(job: Job) -> None:
        pass

    worker = Worker(broker, [QueueHandler(Q, handler)], WorkerConfig(grace_period=5.0))
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            await trio.sleep(0.1)
            worker.stop()
            worker.stop()  # twice is harmless


async def test_a_worker_killed_mid_job_loses_nothing(
    broker: Broker, redis_server: Any, prefix: str, tmp_path: Path
) -> None:
    job_id = (await broker.enqueue(Q, "survivor")).id
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "relay_trio.cli",
        "--redis-url",
        redis_server.url,
        "--prefix",
        prefix,
        "worker",
        "--queue",
        Q,
        "--handler",
        "handlers_for_tests:slow",
        "--visibility-ms",
        "1000",
    ]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=TESTS_DIR.parent
        )
    try:

        async def in_flight() -> bool:
            assert proc.poll() is None, log.read_text()
            return (await broker.stats(Q)).inflight == 1

        await eventually(in_flight, within=15)
        await trio.sleep(0.5)  # let it heartbeat at least once
        os.kill(proc.pid, signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()
    killed_at = trio.current_time()

    job = await broker.get_job(Q, job_id)
    assert (job.state, job.attempts) == (JobState.INFLIGHT, 1)  # still leased to the dead worker

    redelivered: list[tuple[int, float]] = []

    async def handler(job: Job) -> None:
        redelivered.append((job.attempts, trio.current_time() - killed_at))

    async with running_worker(broker, [QueueHandler(Q, handler)], reap_interval=0.05):

        async def acked() -> bool:
            return (await broker.stats(Q)).processed_total == 1

        await eventually(acked, within=5)
    assert len(redelivered) == 1
    attempts, after = redelivered[0]
    assert attempts == 2
    assert after < 2.0  # within the 1 s visibility timeout (plus a reap interval)
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (0, 0, 0, 0, 1)


# -- kinds of handlers, several queues ---------------------------------------------------


async def test_sync_handlers_run_in_a_thread_and_their_errors_nack(broker: Broker) -> None:
    main_thread = threading.get_ident()
    threads: list[int] = []

    def handler(job: Job) -> None:
        threads.append(threading.get_ident())
        if job.payload == b"bad":
            raise RuntimeError("sync handler failed")

    ok = (await broker.enqueue(Q, "ok")).id
    bad = (await broker.enqueue(Q, "bad", max_retries=1)).id
    async with running_worker(broker, [QueueHandler(Q, handler)]) as worker:

        async def settled() -> bool:
            s = await broker.stats(Q)
            return s.processed_total == 1 and s.dlq == 1

        await eventually(settled)
    assert len(threads) == 2
    assert main_thread not in threads
    assert (await broker.get_job(Q, ok)).state is JobState.DONE
    job = await broker.get_job(Q, bad)
    assert job.state is JobState.DEAD
    assert "RuntimeError: sync handler failed" in job.last_error
    assert (worker.stats.succeeded, worker.stats.failed) == (1, 1)


async def test_several_queues_with_their_own_handlers_and_concurrency(broker: Broker) -> None:
    limits = {"alpha": 2, "beta": 5}
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    seen: dict[str, list[str]] = {"alpha": [], "beta": []}

    def make(name: str) -> Callable[[Job], Awaitable[None]]:
        async def handler(job: Job) -> None:
            seen[name].append(job.queue)
            running[job.queue] += 1
            peak[job.queue] = max(peak[job.queue], running[job.queue])
            await trio.sleep(0.03)
            running[job.queue] -= 1

        return handler

    for queue in limits:
        await broker.enqueue_many(queue, [broker.spec(f"{queue}-{i}") for i in range(20)])
    handlers = [QueueHandler(queue, make(queue), concurrency=n) for queue, n in limits.items()]
    async with running_worker(broker, handlers):

        async def done() -> bool:
            rows = await broker.stats_many(list(limits))
            return all(r.processed_total == 20 for r in rows)

        await eventually(done)
    assert dict(peak) == limits  # each limit reached, never exceeded
    assert seen == {"alpha": ["alpha"] * 20, "beta": ["beta"] * 20}


# -- idling -------------------------------------------------------------------------


async def test_an_idle_worker_wakes_within_milliseconds(broker: Broker) -> None:
    started: dict[bytes, float] = {}

    async def handler(job: Job) -> None:
        started[job.payload] = trio.current_time()

    latencies: list[float] = []
    async with running_worker(broker, [QueueHandler(Q, handler)]):
        await trio.sleep(0.5)  # idle: the claim loop waits for a hint (idle_wait 2 s)
        for i in range(20):
            payload = f"ping-{i}".encode()
            enqueued_at = trio.current_time()
            await broker.enqueue(Q, payload)

            async def began(payload: bytes = payload) -> bool:
                return payload in started

            await eventually(began, within=3)
            latencies.append(started[payload] - enqueued_at)
            await trio.sleep(0.03)  # idle again before the next one
    median = statistics.median(latencies)
    assert median < 0.020, latencies  # the goal is a few ms; this is no benchmark
    assert max(latencies) < 0.5, latencies  # never a wait for the 2 s idle timeout


async def test_an_idle_worker_on_many_queues_wakes_within_milliseconds(broker: Broker) -> None:
    """More queues than the connection pool (16 by default) must not delay wake-ups.

    Each idle queue waits for its hint in a blocking pop of its own, on a pool
    and thread limiter of ``max_connections`` (16). With 20 queues, four claim
    loops wait for a slot instead of for their hint; a job enqueued to one of
    them starts only when some other queue's pop ends (a hint, or its 2 s
    idle timeout). A queue whose job just ran joins the back of that line, so
    a second job to the same queue shows it every time.
    """
    queues = [f"many-{i}" for i in range(20)]
    started: dict[bytes, float] = {}

    async def handler(job: Job) -> None:
        started[job.payload] = trio.current_time()

    latencies: list[float] = []
    async with running_worker(broker, [QueueHandler(q, handler) for q in queues]):
        await trio.sleep(0.5)
        for i in range(10):
            payload = f"again-{i}".encode()
            enqueued_at = trio.current_time()
            await broker.enqueue(queues[0], payload)

            async def began(payload: bytes = payload) -> bool:
                return payload in started

            await eventually(began, within=5)
            latencies.append(started[payload] - enqueued_at)
            assert latencies[-1] < 0.25, latencies  # fail fast: a 2 s idle wait shows here
            await trio.sleep(0.03)
    assert statistics.median(latencies) < 0.020, latencies


async def test_an_idle_worker_costs_redis_few_commands(
    broker: Broker, redis_server: Any, rdb: redis.Redis, prefix: str
) -> None:
    """Counts the commands the worker sends (MONITOR, filtered to this test's keys).

    ``total_commands_processed`` and INFO commandstats would also count every
    command a Lua script runs inside Redis (TIME, ZRANGEBYSCORE ... four or five
    per script call), which is not traffic: MONITOR tells those apart.
    """
    if not redis_server.owned:
        pytest.skip(
            "RELAY_TEST_REDIS_URL names a shared Redis: no MONITOR on someone else's server"
        )
    window = 3.0

    async def handler(job: Job) -> None:
        pass

    def watch(ready: trio.Event, token: trio.lowlevel.TrioToken) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        with rdb.monitor() as monitor:
            trio.from_thread.run_sync(ready.set, trio_token=token)
            end = time.monotonic() + window
            while True:
                command = monitor.next_command()
                if time.monotonic() >= end:
                    return seen
                seen.append(command)

    async with running_worker(broker, [QueueHandler(Q, handler)]):
        await trio.sleep(1.0)  # startup passes done
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            result: list[list[dict[str, Any]]] = []

            async def run_watch() -> None:
                token = trio.lowlevel.current_trio_token()
                result.append(await trio.to_thread.run_sync(watch, ready, token))

            nursery.start_soon(run_watch)
            await ready.wait()
            await trio.sleep(window + 0.1)
            await trio.to_thread.run_sync(rdb.ping)  # wakes the monitor thread
    sent = [
        c["command"]
        for c in result[0]
        if c["client_type"] != "lua" and prefix + ":" in c["command"]
    ]
    inside_scripts = [c for c in result[0] if c["client_type"] == "lua"]
    assert sent, "the idle worker sent nothing at all: is it running?"
    assert len(sent) <= 3 * window, f"{len(sent)} commands in {window} s: {sent}"
    assert len(inside_scripts) > len(sent)  # why commandstats would mislead


async def test_a_paused_queue_is_not_claimed_until_resumed(broker: Broker) -> None:
    started: list[float] = []

    async def handler(job: Job) -> None:
        started.append(trio.current_time())

    await broker.enqueue_many(Q, [broker.spec(f"p{i}") for i in range(3)])
    await broker.pause(Q)
    async with running_worker(broker, [QueueHandler(Q, handler)]):
        await trio.sleep(0.6)
        assert started == []
        s = await broker.stats(Q)
        assert (s.ready, s.inflight, s.paused) == (3, 0, True)
        resumed_at = trio.current_time()
        await broker.resume(Q)

        async def all_done() -> bool:
            return (await broker.stats(Q)).processed_total == 3

        await eventually(all_done)
    assert min(started) - resumed_at < 0.3  # resume wakes the idle worker (idle_wait is 2 s)


async def test_a_rate_limited_queue_is_paced(broker: Broker) -> None:
    started: list[float] = []

    async def handler(job: Job) -> None:
        started.append(trio.current_time())

    await broker.enqueue_many(Q, [broker.spec(f"r{i}") for i in range(5)])
    await broker.set_rate_limit(Q, 5, 1)
    async with running_worker(broker, [QueueHandler(Q, handler)]):

        async def all_done() -> bool:
            return (await broker.stats(Q)).processed_total == 5

        await eventually(all_done)
    assert len(started) == 5
    span = max(started) - min(started)
    assert span >= 0.75, started  # 4 tokens at 5/s after the first: 0.8 s
    assert span < 2.0, started  # paced, not stalled


@pytest.mark.parametrize(
    "field,value",
    [
        ("visibility_ms", 0),
        ("max_claim", 1001),
        ("idle_wait", 0),
        ("grace_period", -1),
        ("max_ack_batch", 0),
    ],
)
def test_worker_config_rejects_out_of_range_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        WorkerConfig(**{field: value})
