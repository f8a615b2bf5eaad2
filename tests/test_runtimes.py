"""One broker core, three runtimes: the same producer scenarios through the Trio
client, :class:`relay_trio.sync.Client` and :class:`relay_trio.aio.Client`, with a
Trio worker consuming what they produce; and producer processes that never import
Trio (plain Python, and ``asyncio.run``)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from support import RedisServer, running_worker

import relay_trio.aio
import relay_trio.sync
from relay_trio import (
    Broker,
    DuplicateJob,
    InvalidInput,
    JobFailed,
    JobFinished,
    JobNotFound,
    JobState,
    QueueHandler,
    RedisUnavailable,
    RelayClient,
    ResultTimeout,
    Schedule,
    TaskRegistry,
)
from relay_trio.job import Job

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "runtimes"
RUNTIMES = ["trio", "sync", "asyncio"]

Call = Callable[..., Awaitable[Any]]


@asynccontextmanager
async def producer(runtime: str, url: str, prefix: str) -> AsyncIterator[Call]:
    """``call(name, *args, **kwargs)``: the client method ``name`` of ``runtime``,
    awaited from this Trio test (the sync client in a thread, the asyncio one on an
    event loop of its own in a thread)."""
    if runtime == "trio":
        async with relay_trio.open_client(url, prefix=prefix) as trio_client:

            async def call_trio(name: str, *args: Any, **kwargs: Any) -> Any:
                return await getattr(trio_client, name)(*args, **kwargs)

            yield call_trio
    elif runtime == "sync":
        sync_client = relay_trio.sync.Client(url, prefix=prefix)
        try:

            async def call_sync(name: str, *args: Any, **kwargs: Any) -> Any:
                return await trio.to_thread.run_sync(
                    lambda: getattr(sync_client, name)(*args, **kwargs)
                )

            yield call_sync
        finally:
            sync_client.close()
    else:
        loop = asyncio.new_event_loop()
        aio_client = relay_trio.aio.Client(url, prefix=prefix)

        async def call_aio(name: str, *args: Any, **kwargs: Any) -> Any:
            coro = getattr(aio_client, name)(*args, **kwargs)
            return await trio.to_thread.run_sync(loop.run_until_complete, coro)

        try:
            yield call_aio
        finally:
            await trio.to_thread.run_sync(loop.run_until_complete, aio_client.aclose())
            loop.close()


tasks = TaskRegistry()


@tasks.task(queue=Q)
async def add(a: int, b: int) -> int:
    return a + b


@tasks.task(queue=Q, max_retries=0)
def explode(reason: str) -> None:
    raise RuntimeError(reason)


async def echo(job: Job) -> object:
    if job.payload.startswith(b"{"):
        return await tasks.handler(Q)(job)
    return {"echo": job.payload.decode()}


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_the_producer_scenarios_behave_the_same_in_every_runtime(
    runtime: str, redis_server: RedisServer, prefix: str, broker: Broker
) -> None:
    async with producer(runtime, redis_server.url, prefix) as call:
        # enqueue, and a duplicate key
        first = await call("enqueue", Q, b"one", idempotency_key="k1", priority=7)
        with pytest.raises(DuplicateJob) as duplicate:
            await call("enqueue", Q, b"again", idempotency_key="k1")
        assert duplicate.value.existing_id == first
        with pytest.raises(InvalidInput, match="priority"):
            await call("enqueue", Q, b"x", priority=256)
        many = await call("enqueue_many", Q, [b"a", b"b", "c"], delay_ms=60_000)
        assert [r.state for r in many] == [JobState.DELAYED] * 3
        assert await call("queues") == [Q]
        stats = await call("stats", Q)
        assert (stats.ready, stats.delayed) == (1, 3)
        job = await call("get_job", Q, first)
        assert (job.payload, job.priority, job.state) == (b"one", 7, JobState.READY)
        # cancel a delayed job; a finished or unknown one is a typed error
        assert await call("cancel", Q, many[0].id) is JobState.CANCELLED
        with pytest.raises(JobFinished):
            await call("cancel", Q, many[0].id)
        with pytest.raises(JobNotFound):
            await call("cancel", Q, "0" * 32)
        # a Trio worker consumes; results come back to this runtime
        task_call = await call("enqueue", Q, add.payload(2, 3), **add.options)
        failing = await call("enqueue", Q, explode.payload("boom"), **explode.options)
        async with running_worker(broker, [QueueHandler(Q, echo)]):
            assert await call("result", Q, first, timeout=10) == {"echo": "one"}
            assert await call("result", Q, task_call, timeout=10) == 5
            with pytest.raises(JobFailed, match="boom"):
                await call("result", Q, failing, timeout=10)
        with pytest.raises(ResultTimeout):
            await call("result", Q, many[1].id, timeout=0.2)
        # the DLQ
        (dead,) = await call("dlq", Q)
        assert dead.id == failing
        await call("requeue", Q, failing)
        assert (await call("get_job", Q, failing)).state is JobState.READY
        with pytest.raises(JobNotFound):
            await call("requeue", Q, failing)
        # schedules
        nightly = Schedule.create("nightly", "0 3 * * *", Q, "report", timezone="Asia/Tokyo")
        assert await call("add_schedule", nightly) is True
        assert await call("add_schedule", nightly) is False
        assert await call("schedules") == [nightly]
        assert await call("remove_schedule", "nightly") is True
        assert await call("schedules") == []


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_task_calls_enqueue_from_every_runtime(
    runtime: str, redis_server: RedisServer, prefix: str, broker: Broker
) -> None:
    async with producer(runtime, redis_server.url, prefix) as call:
        payload = add.payload(20, b=22)
        job_id = await call("enqueue", Q, payload, **add.with_options(priority=9).options)
        job = await call("get_job", Q, job_id)
        assert json.loads(job.payload) == {"task": "add", "args": [20], "kwargs": {"b": 22}}
        assert job.priority == 9
        async with running_worker(broker, [QueueHandler(Q, tasks.handler(Q))]):
            assert await call("result", Q, job_id, timeout=10) == 42


@pytest.mark.parametrize("runtime", ["sync", "asyncio"])
async def test_an_unreachable_redis_is_the_same_typed_error(runtime: str, prefix: str) -> None:
    async with producer(runtime, "redis://127.0.0.1:1/0", prefix) as call:
        with pytest.raises(RedisUnavailable):
            await call("enqueue", Q, b"x")


async def test_the_trio_client_and_the_task_use_the_same_entry_points(
    redis_server: RedisServer, prefix: str, broker: Broker
) -> None:
    async with relay_trio.open_client(redis_server.url, prefix=prefix) as client:
        assert isinstance(client, RelayClient)
        job_id = await add.enqueue(client, 1, 2)
        async with running_worker(broker, [QueueHandler(Q, tasks.handler(Q))]):
            assert await client.result(Q, job_id, timeout=10) == 3


# -- producer processes without Trio --------------------------------------------------

SYNC_PRODUCER = """
import json, sys
import relay_trio.sync
from relay_trio import TaskRegistry, JobFailed

tasks = TaskRegistry()

@tasks.task(queue="{queue}")
def add(a: int, b: int) -> int:
    return a + b

with relay_trio.sync.Client("{url}", prefix="{prefix}") as client:
    first = add.enqueue_sync(client, 2, 3)
    plain = client.enqueue("{queue}", b"plain")
    print(json.dumps({{"ids": [first, plain]}}), flush=True)
    out = {{
        "task": client.result("{queue}", first, timeout=20),
        "plain": client.result("{queue}", plain, timeout=20),
        "trio": "trio" in sys.modules,
    }}
    print(json.dumps(out), flush=True)
"""

ASYNC_PRODUCER = """
import asyncio, json, sys
import relay_trio.aio
from relay_trio import TaskRegistry

tasks = TaskRegistry()

@tasks.task(queue="{queue}")
async def add(a: int, b: int) -> int:
    return a + b

async def main() -> None:
    async with relay_trio.aio.Client("{url}", prefix="{prefix}") as client:
        first = await add.enqueue(client, 40, 2)
        plain = await client.enqueue("{queue}", b"plain")
        print(json.dumps({{"ids": [first, plain]}}), flush=True)
        got = await asyncio.gather(
            client.result("{queue}", first, timeout=20),
            client.result("{queue}", plain, timeout=20),
        )
        print(json.dumps({{"task": got[0], "plain": got[1], "trio": "trio" in sys.modules}}),
              flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize(("script", "expected"), [(SYNC_PRODUCER, 5), (ASYNC_PRODUCER, 42)])
async def test_producers_outside_trio_are_served_by_a_trio_worker(
    redis_server: RedisServer,
    prefix: str,
    broker: Broker,
    tmp_path: Path,
    script: str,
    expected: int,
) -> None:
    source = tmp_path / "producer.py"
    source.write_text(textwrap.dedent(script.format(queue=Q, url=redis_server.url, prefix=prefix)))
    # the worker runs the same task names: the registry of this module has "add"
    async with running_worker(broker, [QueueHandler(Q, echo)]):
        done = await trio.run_process(
            [sys.executable, str(source)], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(lines[0]["ids"]) == 2
    assert lines[1] == {"task": expected, "plain": {"echo": "plain"}, "trio": False}
