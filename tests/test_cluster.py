"""Redis Cluster: detection from any node, queues on every node, nothing spanning
two slots, and the hub's snapshot at one round trip per node (spec 13).

Runs against the session's real cluster of three masters (``redis_cluster``);
the broker, worker and results tests run on it too (``cluster_too``)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from redis.cluster import NodeCommands, RedisCluster
from support import RedisServer, delete_prefix
from support.cluster import LocalCluster, queues_by_node

import relay_trio
from relay_trio import Broker, RedisCommandError, open_broker
from relay_trio.calls import _SCRIPTS, Call, Command, LuaScript, Script
from relay_trio.keys import Keyspace
from relay_trio.metrics import Metrics
from relay_trio.redis_aio import AsyncIO
from relay_trio.redis_io import RedisIO
from relay_trio.redis_sync import SyncIO, connect
from relay_trio.redis_wire import flags_scripts
from relay_trio.server.snapshots import Snapshots


@pytest.fixture
def cluster_prefix(redis_cluster: LocalCluster) -> Iterator[str]:
    value = "relaytest-" + secrets.token_hex(6)
    yield value
    delete_prefix(redis_cluster.url, value)


@pytest.fixture
async def cbroker(redis_cluster: LocalCluster, cluster_prefix: str) -> AsyncIterator[Broker]:
    async with open_broker(redis_cluster.urls[1], prefix=cluster_prefix) as b:
        yield b


# -- detection -----------------------------------------------------------------


@pytest.mark.parametrize("node", [0, 1, 2])
async def test_cluster_is_detected_from_any_node(redis_cluster: LocalCluster, node: int) -> None:
    url = redis_cluster.urls[node]
    assert isinstance(connect(url), RedisCluster)
    io = RedisIO.from_url(url)
    try:
        assert await io.execute(Call([Command(("SET", "relaytest-detect{a}", "1"))])) == [True]
        assert isinstance(io.client, RedisCluster)
        assert io.where == f"127.0.0.1:{redis_cluster.ports[node]}"
    finally:
        await io.aclose()
    sync = SyncIO.from_url(url)
    try:
        assert sync.execute(Call([Command(("GET", "relaytest-detect{a}"))])) == [b"1"]
        assert isinstance(sync.client, RedisCluster)
    finally:
        sync.execute(Call([Command(("DEL", "relaytest-detect{a}"))]))
        sync.close()


def test_a_single_redis_is_not_taken_for_a_cluster(single_redis: RedisServer) -> None:
    client = connect(single_redis.url)
    assert type(client) is redis.Redis
    client.close()


# -- the broker on queues of every node ------------------------------------------


async def test_queues_on_every_node_and_the_registry_elsewhere(
    cbroker: Broker, redis_cluster: LocalCluster, cluster_prefix: str
) -> None:
    keys = Keyspace(cluster_prefix)
    registry_node = redis_cluster.node_of(keys.registry)
    names = [group[0] for group in queues_by_node(redis_cluster, cluster_prefix, 1)]
    assert any(redis_cluster.node_of(keys.queue(n).ready) != registry_node for n in names)
    for name in names:  # SADD registry + scripts in one call: two nodes, one call
        results = await cbroker.enqueue_many(
            name, [cbroker.spec(f"{name}-{i}", max_retries=3) for i in range(5)]
        )
        assert len({r.id for r in results}) == 5
    assert await cbroker.queues() == sorted(names)
    for name in names:
        claim = await cbroker.claim(name, 5, visibility_ms=50)
        assert len(claim.jobs) == 5
        assert await cbroker.ack(claim.jobs[0], {"ok": name})
        nacked = await cbroker.nack(claim.jobs[1], "boom", dead=True)
        assert nacked.outcome == "dead"
    stats = {s.queue: s for s in await cbroker.snapshot()}
    assert sorted(stats) == sorted(names)
    for name in names:
        assert (stats[name].inflight, stats[name].dlq, stats[name].processed_total) == (3, 1, 1)
    await trio.sleep(0.1)
    for name in names:  # the leases (50 ms) have run out: the reaper puts them back
        reaped = await cbroker.reap(name)
        assert reaped.requeued == 3
        assert (await cbroker.stats(name)).ready == 3
    for node in range(3):  # every node holds some of it
        client = redis_cluster.node(node)
        try:
            assert client.keys(cluster_prefix + ":*")
        finally:
            client.close()


# -- nothing spans two slots ---------------------------------------------------------


async def test_a_transaction_over_two_slots_is_refused(
    cbroker: Broker, cluster_prefix: str
) -> None:
    keys = Keyspace(cluster_prefix)
    a, b = keys.queue("alpha").paused, keys.queue("beta").paused
    call = Call([Command(("SET", a, "1")), Command(("SET", b, "1"))], transaction=True)
    with pytest.raises(RedisCommandError, match="slots") as caught:
        await cbroker.io.execute(call)
    assert "MULTI/EXEC" in str(caught.value)
    assert await cbroker.io.execute(Call([Command(("EXISTS", a, a))])) == [0]  # nothing ran
    same = Call([Command(("SET", a, "1")), Command(("DEL", a))], transaction=True)
    assert await cbroker.io.execute(same) == [True, 1]


async def test_a_script_over_two_slots_is_refused(cbroker: Broker, cluster_prefix: str) -> None:
    keys = Keyspace(cluster_prefix)
    a, b = keys.queue("alpha"), keys.queue("beta")
    call = Call([Script("resume", [a.paused, b.wake], [])])
    with pytest.raises(RedisCommandError, match="resume would touch 2 Redis Cluster slots"):
        await cbroker.io.execute(call)


# -- the hub's tick ------------------------------------------------------------------


def _node_stats(cluster: LocalCluster) -> list[dict[str, Any]]:
    out = []
    for node in range(3):
        client = cluster.node(node)
        try:
            info = client.info("all")
        finally:
            client.close()
        out.append(info)
    return out


async def test_snapshot_of_30_queues_is_one_round_trip_per_node(
    cbroker: Broker,
    redis_cluster: LocalCluster,
    cluster_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis's own count of the commands each node ran, and the pipelines written
    to each node's socket (redis-py's NodeCommands: one write, then the replies)."""
    groups = queues_by_node(redis_cluster, cluster_prefix, 10)
    for names in groups:
        for name in names:
            await cbroker.enqueue(name, b"x")
    registry_node = redis_cluster.node_of(Keyspace(cluster_prefix).registry)
    await cbroker.snapshot()  # warm: connections open to every node
    writes: list[int] = []
    original = NodeCommands.write

    def counted(self: NodeCommands) -> None:
        writes.append(self.connection.port)
        original(self)  # type: ignore[no-untyped-call]

    before = _node_stats(redis_cluster)
    monkeypatch.setattr(NodeCommands, "write", counted)
    stats = await cbroker.snapshot()
    monkeypatch.undo()
    after = _node_stats(redis_cluster)
    assert len(stats) == 30 and all(s.ready == 1 for s in stats)
    for node in range(3):
        calls = {
            name: after[node].get(f"cmdstat_{name}", {}).get("calls", 0)
            - before[node].get(f"cmdstat_{name}", {}).get("calls", 0)
            for name in ("zcard", "llen", "get", "exists", "smembers", "command", "cluster|slots")
        }
        registry = 1 if node == registry_node else 0
        assert calls == {
            "zcard": 30,  # 10 queues x 3
            "llen": 10,
            "get": 20,
            "exists": 10,
            "smembers": registry,
            "command": 0,  # no key lookups sent to Redis
            "cluster|slots": 0,  # no rediscovery
        }
        # one pipeline written to each node (the registry read is a call of its own)
        assert writes.count(redis_cluster.ports[node]) == 1 + registry
    assert len(writes) == 3 + 1


async def test_a_hub_tick_is_one_round_trip_per_node_plus_the_registry_reads(
    cbroker: Broker,
    redis_cluster: LocalCluster,
    cluster_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server's tick (spec 13): the queue registry, the worker registry, and
    one pipeline per node holding queues, whatever the number of queues."""
    groups = queues_by_node(redis_cluster, cluster_prefix, 10)
    for names in groups:
        for name in names:
            await cbroker.enqueue(name, b"x")
    await cbroker.beat_worker("w1", {"queues": [groups[0][0]]}, ttl_ms=60_000)
    snapshots = Snapshots(cbroker, Metrics())
    await snapshots.tick()  # warm: connections open to every node
    writes: list[int] = []
    sent: list[list[str]] = []
    original = NodeCommands.write

    def counted(self: NodeCommands) -> None:
        writes.append(self.connection.port)
        sent.append([str(c.args[0]) for c in self.commands])
        original(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(NodeCommands, "write", counted)
    entries = await snapshots.tick()
    monkeypatch.undo()
    assert len(entries) == 30
    assert {e["queue"]: e["workers"] for e in entries}[groups[0][0]] == 1
    keys = Keyspace(cluster_prefix)
    registries = [redis_cluster.node_of(keys.registry), redis_cluster.node_of(keys.workers_seen)]
    for node in range(3):
        assert writes.count(redis_cluster.ports[node]) == 1 + registries.count(node)
    assert len(writes) == 3 + 2
    assert sorted(len(batch) for batch in sent)[-3:] == [70, 70, 70]  # 10 queues x 7 reads


# -- the server enforces the key rule ----------------------------------------------


def _two_slots_one_node(cluster: LocalCluster, prefix: str) -> tuple[str, str]:
    """A key, and one of another slot on the same node (Redis would not notice a
    script touching it without the #!lua line)."""
    first = f"{prefix}:{{a}}:x"
    client = connect(cluster.urls[0])
    for n in range(1000):
        other = f"{prefix}:{{b{n}}}:x"
        same_node = cluster.node_of(other) == cluster.node_of(first)
        if same_node and client.keyslot(other) != client.keyslot(first):  # type: ignore[union-attr]
            return first, other
    raise AssertionError("no such key")


ROGUE = "redis.call('SET', KEYS[1], '1')\nreturn redis.call('SET', ARGV[1], '1')\n"


@pytest.mark.parametrize("runtime", ["trio", "asyncio"])
async def test_redis_refuses_a_script_that_touches_a_key_outside_its_slot(
    redis_cluster: LocalCluster,
    cluster_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    runtime: str,
) -> None:
    """Every script goes to a cluster with a ``#!lua`` line, so Redis itself
    refuses a key outside the slot of the script's KEYS: the cluster runs of the
    broker, worker and server tests prove the scripts keep the rule."""
    if redis_cluster.version < (7, 0):
        pytest.skip("Redis 6.2 takes no #!lua line: it does not check a script's keys")
    monkeypatch.setitem(_SCRIPTS, "rogue", LuaScript("rogue", source=ROGUE))
    key, outside = _two_slots_one_node(redis_cluster, cluster_prefix)
    inside = key.replace(":x", ":y")
    calls = [Call([Script("rogue", [key], [value])]) for value in (outside, inside)]
    if runtime == "trio":
        io = RedisIO.from_url(redis_cluster.urls[0])
        try:
            with pytest.raises(RedisCommandError, match="do not hash to the same slot"):
                await io.execute(calls[0])
            assert await io.execute(calls[1]) == [b"OK"]
        finally:
            await io.aclose()
    else:

        async def main() -> None:
            aio = AsyncIO.from_url(redis_cluster.urls[0])
            try:
                with pytest.raises(RedisCommandError, match="do not hash to the same slot"):
                    await aio.execute(calls[0])
                assert await aio.execute(calls[1]) == [b"OK"]
            finally:
                await aio.aclose()

        await trio.to_thread.run_sync(asyncio.run, main())
    node = redis_cluster.node(redis_cluster.node_of(key))
    try:
        script = _SCRIPTS["rogue"]
        assert node.script_exists(script.flagged_sha, script.sha) == [True, False]
        assert node.exists(outside) == 0
    finally:
        node.close()


def test_scripts_go_flagged_from_redis_7_on() -> None:
    assert flags_scripts({"redis_version": "7.0.15"})
    assert flags_scripts({"redis_version": "8.2.1"})
    assert not flags_scripts({"redis_version": "6.2.14"})  # it knows no #!lua line
    assert not flags_scripts({"redis_version": "unknown"})
    assert not flags_scripts(None)  # INFO refused


def test_every_key_a_script_builds_starts_from_a_declared_key() -> None:
    """The static side of the rule: a key a script builds (a job's hash after a
    pop) starts with ``key_base(KEYS[1])``, the declared key's ``{tag}`` base; no
    key is built from an argument."""
    scripts = sorted((Path(relay_trio.__file__).parent / "lua").glob("*.lua"))
    bases = 0
    for path in scripts:
        text = path.read_text()
        code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
        assert not re.search(r"ARGV\[[^\]]*\]\s*\.\.", code), path.name
        if path.name == "_lib.lua":
            continue
        for name, expr in re.findall(r"local (\w*base)\s*=\s*(.+)", code):
            assert expr.startswith("key_base(KEYS[1])"), (path.name, name, expr)
            bases += 1
    assert bases == 14  # every script that builds keys
