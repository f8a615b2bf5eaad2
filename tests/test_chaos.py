"""Chaos: a worker whose Redis stops answering for longer than the visibility timeout.

The test starts a redis-server of its own (never the suite's: it is frozen
with SIGSTOP), runs a worker through a few thousand jobs — some of which fail
and are retried — and, in the middle, freezes Redis for longer than the
visibility timeout while a reaper in another broker (another connection pool,
as another process would have) keeps sweeping. When Redis thaws, the reaper
and the worker race for the same jobs: leases that ran out are reaped and
claimed again, acks that failed are retried, the worker's own jobs come back
to it. At the end the worker must still be alive and every job must be acked
once or in the DLQ with the reason, none lost.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal

import pytest
import redis
import trio

from relay_trio import Job, JobState, QueueHandler, RelayError, Worker, WorkerConfig
from relay_trio.broker import open_broker
from relay_trio.embedded import EmbeddedRedis

Q = "chaos"
JOBS = 3000
VISIBILITY_MS = 1000
FREEZE = 2.5  # seconds: longer than the visibility timeout


@pytest.mark.slow
async def test_a_worker_survives_its_redis_freezing_and_loses_no_job(
    own_redis: EmbeddedRedis,
) -> None:
    assert own_redis.url is not None and own_redis.pid is not None
    rng = random.Random(8)
    succeeded: set[str] = set()
    handled = 0
    a_third_handled = trio.Event()

    async def handler(job: Job) -> None:
        nonlocal handled
        handled += 1
        if handled >= JOBS // 3:
            a_third_handled.set()
        # one job in fifty outlasts the freeze: its lease runs out under it
        await trio.sleep(3.0 if job.payload.endswith(b"0") and rng.random() < 0.2 else 0.004)
        if rng.random() < 0.05:
            raise RuntimeError("flaky handler")
        succeeded.add(job.id)

    async with (
        open_broker(
            own_redis.url, socket_timeout=1.0, backoff_base_ms=20, backoff_cap_ms=200
        ) as broker,
        open_broker(own_redis.url, socket_timeout=1.0) as elsewhere,
    ):
        ids: list[str] = []
        for start in range(0, JOBS, 1000):
            specs = [broker.spec(f"job-{i}", max_retries=3) for i in range(start, start + 1000)]
            ids += [r.id for r in await broker.enqueue_many(Q, specs)]
        worker = Worker(
            broker,
            [QueueHandler(Q, handler, concurrency=50)],
            WorkerConfig(
                visibility_ms=VISIBILITY_MS,
                reap_interval=0.2,
                promote_interval=0.05,
                error_retry_delay=0.1,
                grace_period=5.0,
            ),
        )

        async def reaper_elsewhere() -> None:
            while True:
                with contextlib.suppress(RelayError):  # frozen: try again
                    await elsewhere.reap(Q)
                await trio.sleep(0.05)

        async def settled() -> bool:
            s = await broker.stats(Q)
            return s.ready + s.inflight + s.delayed == 0

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reaper_elsewhere)
                await nursery.start(worker.serve)
                await a_third_handled.wait()
                os.kill(own_redis.pid, signal.SIGSTOP)  # Redis freezes mid-run
                await trio.sleep(FREEZE)
                os.kill(own_redis.pid, signal.SIGCONT)
                while True:
                    if await settled():
                        break
                    await trio.sleep(0.1)
                worker.stop()  # serve returns: the worker lived through it all
                nursery.cancel_scope.cancel()

        stats = await broker.stats(Q)
        dead = []
        offset = 0
        while page := await broker.dlq_list(Q, 1000, offset):
            dead += page
            offset += len(page)
        raw = redis.Redis.from_url(own_redis.url)
        try:
            left = {k for k in raw.scan_iter(match="relay:{chaos}:job:*")}
        finally:
            raw.close()

    dead_ids = {j.id for j in dead}
    assert all(j.state is JobState.DEAD and j.last_error for j in dead)  # a stated reason
    assert stats.processed_total + stats.dlq == JOBS  # acked once each, or dead
    assert len(dead_ids) == stats.dlq
    left_ids = {k.decode().rpartition(":")[2] for k in left}
    assert dead_ids <= left_ids  # the dead jobs are there; the others are done, with results
    assert len(left_ids - dead_ids) == stats.processed_total  # none lost
    acked = set(ids) - dead_ids
    assert acked <= succeeded  # every acked job's handler returned
    assert worker.stats.reclaimed + worker.stats.stale_acks > 0  # the race did happen
