"""What the tests share, in one place (no test module imports another).

Here: :class:`RedisServer` (the session's Redis), :func:`eventually` (wait for a
condition), :func:`keys_under`, :func:`redis_contents` and :func:`delete_prefix`
(what a test's prefix holds), :func:`make_dead` (jobs in a DLQ) and
:func:`running_worker`. Beside it:

- :mod:`support.servers`: every way the tests run the server (a test client, in
  process, in a thread, as a process) and read its JSON errors;
- :mod:`support.sse`: reading Server-Sent Events;
- :mod:`support.hub`: the hub's doubles (a snapshot source, metrics, a clock);
- :mod:`support.fake_redis`: servers that are not Redis, a frozen Redis.

``tests/handlers_for_tests.py`` stays a top-level module: worker subprocesses
import it by name (``--handler handlers_for_tests:slow``).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis
import trio
from redis.cluster import RedisCluster

from relay_trio import Broker, QueueHandler, Worker, WorkerConfig
from relay_trio.redis_connect import cluster_enabled


@dataclass(frozen=True)
class RedisServer:
    """The Redis of the test session (the ``redis_server`` fixture)."""

    url: str
    owned: bool
    """True when the suite started this server (only then may a test flush it)."""
    cluster: bool = False
    """True for the session's Redis Cluster (``url`` names one of its nodes)."""


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], *, within: float = 5.0
) -> Any:
    """Call ``check`` (sync or async) every 10 ms until it returns something truthy,
    and return that; fail after ``within`` seconds. For conditions no event tells."""
    with trio.fail_after(within):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await trio.sleep(0.01)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own; never anything else), on a
    single Redis or on every master of a cluster."""
    client = redis.Redis.from_url(redis_url)
    cluster: Any = None
    try:
        nodes: list[redis.Redis] = [client]
        if cluster_enabled(client):
            cluster: Any = RedisCluster.from_url(redis_url)
            nodes = [node.redis_connection for node in cluster.get_primaries()]
        for node in nodes:
            keys = list(node.scan_iter(match=prefix + ":*", count=1000))
            pipe = node.pipeline(transaction=False)
            for key in keys:  # one key a command: on a cluster they span slots
                pipe.unlink(key)
            pipe.execute()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def command_calls(rdb: redis.Redis, name: str) -> int:
    """How many times Redis ran command ``name`` (INFO commandstats); on a cluster,
    summed over its masters."""
    if isinstance(rdb, RedisCluster):
        cluster: Any = rdb
        per_node = cluster.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        stats = list(per_node.values())
    else:
        stats = [rdb.info("commandstats")]
    return sum(int(s.get(f"cmdstat_{name}", {}).get("calls", 0)) for s in stats)


def keys_under(rdb: redis.Redis, prefix: str) -> list[str]:
    """Every key under ``prefix``, sorted."""
    return sorted(key.decode() for key in rdb.keys(prefix + ":*"))


def redis_contents(rdb: redis.Redis, prefix: str) -> dict[str, tuple[bytes, Any]]:
    """Every key under ``prefix`` with its type and content (TTLs aside; a set as a
    set): equal before and after, nothing was written."""
    read = {
        b"hash": rdb.hgetall,
        b"list": lambda key: rdb.lrange(key, 0, -1),
        b"set": rdb.smembers,
        b"zset": lambda key: rdb.zrange(key, 0, -1, withscores=True),
    }
    out: dict[str, tuple[bytes, Any]] = {}
    for key in keys_under(rdb, prefix):
        kind = rdb.type(key)
        out[key] = (kind, read.get(kind, rdb.get)(key))
    return out


async def make_dead(
    broker: Broker,
    queue: str,
    n: int,
    *,
    error: str = "boom",
    payload: str = "dead-{}",
    max_retries: int = 0,
) -> list[str]:
    """``n`` jobs in the DLQ of ``queue`` (which holds no other ready job), oldest
    first: enqueued with ``max_retries`` 0 or 1 (``{}`` in ``payload`` becomes the
    index), claimed once and nacked with ``error`` (``{id}`` in it becomes the id)."""
    assert max_retries in (0, 1), "one nack must spend the job's attempts"
    specs = [broker.spec(payload.replace("{}", str(i)), max_retries=max_retries) for i in range(n)]
    ids = [r.id for r in await broker.enqueue_many(queue, specs)]
    claimed = {job.id: job for job in (await broker.claim(queue, n)).jobs}
    assert sorted(claimed) == sorted(ids)
    for job_id in ids:
        result = await broker.nack(claimed[job_id], error.replace("{id}", job_id))
        assert result.outcome == "dead"
    return ids


@asynccontextmanager
async def running_worker(
    broker: Broker, handlers: Sequence[QueueHandler], *, grace_period: float = 2.0, **config: Any
) -> AsyncIterator[Worker]:
    """A started worker for the block (``config``: :class:`WorkerConfig`'s); stopped
    gracefully and awaited on exit, so a worker that died fails the test here."""
    worker = Worker(broker, handlers, WorkerConfig(grace_period=grace_period, **config))
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        try:
            yield worker
        finally:
            worker.stop()
