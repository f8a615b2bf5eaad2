"""Live workers (spec section 12, issue 12 item 3, the worker's side): each worker
registers itself with a TTL of three heartbeats, says what it runs, leaves when it
stops, and disappears within three heartbeats when it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from support import eventually, running_worker
from support.cli import TESTS_DIR, Cli, clean_env

from relay_trio import Broker, ConfigError, Job, QueueHandler, Worker, WorkerConfig
from relay_trio.broker_workers import WorkerInfo

Q, Q2 = "present", "present2"


async def entry(broker: Broker, worker_id: str) -> WorkerInfo | None:
    return next((w for w in await broker.workers() if w.id == worker_id), None)


async def test_a_worker_registers_says_what_it_runs_and_leaves(broker: Broker) -> None:
    started = trio.Event()
    release = trio.Event()

    async def handler(job: Job) -> None:
        started.set()
        await release.wait()

    handlers = [QueueHandler(Q, handler, concurrency=3), QueueHandler(Q2, handler, concurrency=1)]
    before = datetime.now(UTC)
    async with running_worker(broker, handlers, presence_interval=0.1) as worker:
        host, pid, _ = worker.id.split(":")
        assert (host, int(pid)) == (socket.gethostname(), os.getpid())
        found = await eventually(lambda: entry(broker, worker.id))
        info = found.info
        assert info["host"] == socket.gethostname() and info["pid"] == os.getpid()
        assert info["queues"] == [Q, Q2]
        assert info["concurrency"] == {Q: 3, Q2: 1}
        assert info["version"]
        began = datetime.fromisoformat(info["started_at"])
        assert before - timedelta(seconds=1) <= began <= datetime.now(UTC)
        assert info["running"] == [] and info["running_count"] == 0
        job_id = (await broker.enqueue(Q, "x")).id
        await started.wait()

        async def running() -> Any:
            found = await entry(broker, worker.id)
            return found is not None and found.info["running"]

        (run,) = await eventually(running)
        assert (run["queue"], run["id"]) == (Q, job_id)
        assert datetime.fromisoformat(run["started_at"]) >= began
        first_seen = found.last_seen_ms
        assert (await entry(broker, worker.id)).last_seen_ms > first_seen  # type: ignore[union-attr]
        release.set()
    assert await entry(broker, worker.id) is None  # left at once, no TTL to wait for


async def test_extra_info_goes_with_the_description(broker: Broker) -> None:
    async def handler(job: Job) -> None:
        pass

    worker = Worker(
        broker,
        [QueueHandler(Q, handler)],
        WorkerConfig(presence_interval=0.1, grace_period=1),
        info={"tasks": ["send_email"]},
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        found = await eventually(lambda: entry(broker, worker.id))
        assert found.info["tasks"] == ["send_email"]
        worker.stop()


async def test_a_failed_beat_is_counted_and_the_worker_goes_on(broker: Broker) -> None:
    done: list[bytes] = []

    async def handler(job: Job) -> None:
        done.append(job.payload)

    worker = Worker(
        broker,
        [QueueHandler(Q, handler)],
        WorkerConfig(presence_interval=0.05, grace_period=1),
        info={"bad": object()},  # cannot be JSON: every beat fails before Redis
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        await eventually(lambda: worker.stats.presence_failures >= 3)
        await broker.enqueue(Q, "still works")
        await eventually(lambda: done == [b"still works"])
        assert await entry(broker, worker.id) is None
        worker.stop()


def test_the_interval_has_a_range() -> None:
    for bad in (0, 0.01, 1201, float("nan")):
        with pytest.raises(ConfigError, match="presence_interval"):
            WorkerConfig(presence_interval=bad)


# -- a real worker process, killed ----------------------------------------------------


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


async def test_a_killed_worker_process_disappears_within_three_heartbeats(
    cli: Cli, broker: Broker, tmp_path: Path
) -> None:
    interval = 0.5
    argv = cli.argv(
        "worker", "--queue", Q, "--handler", "handlers_for_tests:slow",
        "--presence-interval", str(interval), "--no-schedules",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            argv, env=clean_env(), cwd=TESTS_DIR.parent, stdout=out, stderr=out
        )
    try:
        job_id = (await broker.enqueue(Q, "forever")).id

        async def running_it() -> WorkerInfo | None:
            assert proc.poll() is None, log.read_text()
            for w in await broker.workers():
                if [r["id"] for r in w.info["running"]] == [job_id]:
                    return w
            return None

        found = await eventually(running_it, within=15)
        assert found.info["pid"] == proc.pid
        assert found.info["queues"] == [Q]
        assert found.info["running"][0]["queue"] == Q
        json.dumps(found.to_dict())  # what GET /api/workers can serve as it is
        proc.send_signal(signal.SIGKILL)
        killed_at = trio.current_time()
        await proc.wait()

        async def gone() -> bool:
            return await entry(broker, found.id) is None

        await eventually(gone, within=5)
        took = trio.current_time() - killed_at
        # the TTL (3 intervals) runs from the last beat, before the kill; the slack
        # is this test's own polling
        assert took <= 3 * interval + 0.25, took
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()
