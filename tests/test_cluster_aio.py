"""Redis Cluster through the asyncio client (:mod:`relay_trio.redis_aio`): detected
from any node, queues on every node, one pipeline per node, nothing spanning two
slots, and no more connections than allowed (spec 13).

The shared producer scenarios run on the cluster through all three runtimes in
test_runtimes.py (``cluster_too``); these check what is the asyncio client's own.
Each test is a plain function running its own event loop (``asyncio.run``)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio.connection
from redis.asyncio.cluster import RedisCluster as AsyncCluster
from support import RedisServer, delete_prefix
from support.cluster import LocalCluster, queues_by_node

import relay_trio.aio
from relay_trio import RedisCommandError
from relay_trio.calls import Call, Command, Script
from relay_trio.keys import Keyspace
from relay_trio.redis_aio import AsyncIO
from relay_trio.redis_sync import SyncIO

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@pytest.fixture
def cluster_prefix(redis_cluster: LocalCluster) -> Iterator[str]:
    value = "relaytest-" + secrets.token_hex(6)
    yield value
    delete_prefix(redis_cluster.url, value)


@pytest.mark.parametrize("node", [0, 1, 2])
def test_cluster_is_detected_from_any_node(redis_cluster: LocalCluster, node: int) -> None:
    async def main() -> None:
        io = AsyncIO.from_url(redis_cluster.urls[node])
        try:
            assert not io.is_cluster  # nothing asked yet
            set_a = Call([Command(("SET", "relaytest-aio{a}", "1"))])
            assert await io.execute(set_a) == [True]
            assert io.is_cluster and isinstance(io.client, AsyncCluster)
            assert io.where == f"127.0.0.1:{redis_cluster.ports[node]}"
            get_del = Call(
                [Command(("GET", "relaytest-aio{a}")), Command(("DEL", "relaytest-aio{a}"))]
            )
            assert await io.execute(get_del) == [b"1", 1]
        finally:
            await io.aclose()

    run(main)


def test_a_single_redis_is_not_taken_for_a_cluster(single_redis: RedisServer) -> None:
    async def main() -> None:
        io = AsyncIO.from_url(single_redis.url)
        try:
            assert await io.execute(Call([Command(("PING",))])) == [True]
            assert not io.is_cluster
        finally:
            await io.aclose()

    run(main)


def test_a_cluster_url_with_a_database_is_refused(redis_cluster: LocalCluster) -> None:
    """Redis refuses SELECT on a cluster node: every runtime says what to change."""
    url = redis_cluster.urls[0] + "/2"

    async def main() -> None:
        io = AsyncIO.from_url(url)
        try:
            await io.execute(Call([Command(("PING",))]))
        finally:
            await io.aclose()

    with pytest.raises(relay_trio.RedisUnavailable, match="has only database 0: drop the /N"):
        run(main)
    sync = SyncIO.from_url(url)
    try:
        with pytest.raises(relay_trio.RedisUnavailable, match="has only database 0: drop the /N"):
            sync.execute(Call([Command(("PING",))]))
    finally:
        sync.close()


def _commands_run(cluster: LocalCluster) -> list[dict[str, int]]:
    """Per node: how many times each command ran so far (Redis's own count)."""
    out = []
    for node in range(3):
        client = cluster.node(node)
        try:
            info = client.info("commandstats")
        finally:
            client.close()
        out.append({name[len("cmdstat_") :]: v["calls"] for name, v in info.items()})
    return out


def test_queues_on_every_node_one_pipeline_per_node(
    redis_cluster: LocalCluster, cluster_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enqueue, stats and a 30-queue snapshot through the asyncio client; the
    snapshot is written as one pipeline to each node (plus the registry read)."""
    groups = queues_by_node(redis_cluster, cluster_prefix, 10)
    names = [name for group in groups for name in group]
    registry_node = redis_cluster.node_of(Keyspace(cluster_prefix).registry)
    writes: list[int] = []
    original = redis.asyncio.connection.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        writes.append(self.port)
        await original(self, command, check_health)

    async def main() -> list[Any]:
        async with relay_trio.aio.Client(redis_cluster.urls[2], prefix=cluster_prefix) as client:
            for name in names:
                await client.enqueue_many(name, [client.spec(f"{name}-{i}") for i in range(2)])
            assert await client.queues() == sorted(names)
            assert (await client.stats(names[-1])).ready == 2
            await client.run(client.core.snapshot())  # warm: a connection to every node
            before = _commands_run(redis_cluster)
            monkeypatch.setattr(
                redis.asyncio.connection.AbstractConnection, "send_packed_command", counted
            )
            stats = await client.run(client.core.snapshot())
            monkeypatch.undo()
            after = _commands_run(redis_cluster)
            assert len(stats) == 30 and all(s.ready == 2 for s in stats)
            return [before, after]

    before, after = run(main)
    for node in range(3):
        ran = {k: after[node].get(k, 0) - before[node].get(k, 0) for k in ("zcard", "smembers")}
        registry = 1 if node == registry_node else 0
        assert ran == {"zcard": 30, "smembers": registry}  # 10 queues x 3 sorted sets
        assert writes.count(redis_cluster.ports[node]) == 1 + registry
    assert len(writes) == 3 + 1


def test_nothing_spans_two_slots(redis_cluster: LocalCluster, cluster_prefix: str) -> None:
    keys = Keyspace(cluster_prefix)
    a, b = keys.queue("alpha"), keys.queue("beta")

    async def main() -> None:
        io = AsyncIO.from_url(redis_cluster.urls[0])
        try:
            steps = [Command(("SET", a.paused, "1")), Command(("SET", b.paused, "1"))]
            both = Call(steps, transaction=True)
            with pytest.raises(RedisCommandError, match="MULTI/EXEC") as caught:
                await io.execute(both)
            assert "slots" in str(caught.value)
            exists = Call([Command(("EXISTS", a.paused)), Command(("EXISTS", b.paused))])
            assert await io.execute(exists) == [0, 0]  # nothing ran
            same = Call(
                [Command(("SET", a.paused, "1")), Command(("DEL", a.paused))], transaction=True
            )
            assert await io.execute(same) == [b"OK", 1]
            script = Call([Script("resume", [a.paused, b.wake], [])])
            with pytest.raises(RedisCommandError, match="resume would touch 2 Redis Cluster slots"):
                await io.execute(script)
        finally:
            await io.aclose()

    run(main)


def test_a_script_flushed_on_a_node_is_loaded_again(
    redis_cluster: LocalCluster, cluster_prefix: str
) -> None:
    """NOSCRIPT in a node's pipeline: the step did not run; it is run again alone."""

    async def main() -> None:
        async with relay_trio.aio.Client(redis_cluster.urls[0], prefix=cluster_prefix) as client:
            names = [group[0] for group in queues_by_node(redis_cluster, cluster_prefix, 1)]
            for name in names:
                await client.enqueue(name, b"x")
            for node in range(3):
                plain = redis_cluster.node(node)
                try:
                    plain.script_flush()
                finally:
                    plain.close()
            results = await client.enqueue_many(names[0], [client.spec(b"y"), client.spec(b"z")])
            assert len(results) == 2
            assert [(await client.stats(n)).ready for n in names] == [3, 1, 1]

    run(main)


def test_many_concurrent_calls_keep_to_the_connection_limit(
    redis_cluster: LocalCluster, cluster_prefix: str
) -> None:
    """redis-py's asyncio cluster nodes refuse a connection beyond their limit
    instead of waiting: the client lets at most max_connections calls run."""

    async def main() -> None:
        async with relay_trio.aio.Client(
            redis_cluster.urls[1], prefix=cluster_prefix, max_connections=3
        ) as client:
            names = [f"c{i}" for i in range(12)]
            await asyncio.gather(*(client.enqueue(n, f"{n}-{i}") for n in names for i in range(5)))
            stats = await asyncio.gather(*(client.stats(n) for n in names))
            assert [s.ready for s in stats] == [5] * 12
            for node in client.io.client.get_nodes():  # type: ignore[union-attr]
                assert len(node._connections) <= 3

    run(main)
