"""The fleet's metrics (spec sections 8 and 13): ``relay_fleet_*`` on a ``--fleet``
server's ``/metrics`` only, read from its :class:`~relay_trio.fleet.Fleet` at
scrape time; two real servers (Hypercorn, in this Trio loop) on the real Redis."""

from __future__ import annotations

import itertools
from contextlib import AsyncExitStack
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.servers import Running, running_server
from support.sse import Events, is_data

from relay_trio.fleet import Fleet
from relay_trio.fleet_memory import MemoryBus, MemoryLease
from relay_trio.metrics import Metrics

FLEET_METRICS = {
    "relay_fleet_leader": "gauge",
    "relay_fleet_epoch": "gauge",
    "relay_fleet_leads": "counter",
    "relay_fleet_handovers": "counter",
    "relay_fleet_leaves": "counter",
    "relay_fleet_relayed": "counter",
    "relay_fleet_ignored": "counter",
}


def parse(text: str) -> dict[str, float]:
    """Unlabelled samples by name (``_total`` included); types under ``TYPE <name>``."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        out[f"TYPE {family.name}"] = {"gauge": 0.0, "counter": 1.0}.get(family.type, -1.0)
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = sample.value
    return out


def fleet_samples(text: str) -> dict[str, float]:
    return {k: v for k, v in parse(text).items() if "relay_fleet_" in k}


def test_the_fleet_metrics_are_read_from_the_fleet_and_only_when_watched() -> None:
    metrics = Metrics()
    assert fleet_samples(metrics.render().decode()) == {}
    fleet = Fleet(MemoryLease(), MemoryBus())
    metrics.watch_fleet(fleet)
    got = parse(metrics.render().decode())
    for name, kind in FLEET_METRICS.items():
        assert got[f"TYPE {name}"] == (0.0 if kind == "gauge" else 1.0), name
        assert got[name if kind == "gauge" else name + "_total"] == 0
    fleet.epoch = fleet.newest_epoch = 7  # as while leading
    fleet.leads, fleet.handovers, fleet.left, fleet.relayed, fleet.ignored = 3, 2, 1, 40, 5
    got = parse(metrics.render().decode())
    assert got["relay_fleet_leader"] == 1
    assert got["relay_fleet_epoch"] == 7
    assert got["relay_fleet_leads_total"] == 3
    assert got["relay_fleet_handovers_total"] == 2
    assert got["relay_fleet_leaves_total"] == 1
    assert got["relay_fleet_relayed_total"] == 40
    assert got["relay_fleet_ignored_total"] == 5
    metrics.watch_fleet(Fleet(MemoryLease(), MemoryBus()))  # another: replaces it
    assert parse(metrics.render().decode())["relay_fleet_leads_total"] == 0
    metrics.watch_fleet(None)
    assert fleet_samples(metrics.render().decode()) == {}


async def stream_into(client: httpx.AsyncClient, server: Running, flowing: trio.Event) -> None:
    """Hold a stream open on ``server``; set ``flowing`` once it got 3 snapshots."""
    async with client.stream("GET", server.url + "/api/stream") as response:
        assert response.status_code == 200
        events = Events(response)
        for n in itertools.count(1):
            try:
                await events.next(is_data)
            except AssertionError:  # the stream ended: its server stopped
                return
            if n == 3:
                flowing.set()


async def scrape(client: httpx.AsyncClient, server: Running) -> dict[str, float]:
    response = await client.get(server.url + "/metrics")
    assert response.status_code == 200
    return parse(response.text)


async def test_fleet_servers_export_who_leads_and_what_they_relay(
    redis_server: Any, prefix: str
) -> None:
    """Two ``--fleet`` servers with a stream each: the leader's gauge is 1, the
    follower's 0 and its relayed counter grows; stop the leader and the follower
    leads, by a handover. A server without ``--fleet`` exports none of it."""
    interval = 0.1
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                running_server(redis_server.url, prefix, fleet=True, poll_interval=interval)
            )
            for _ in range(2)
        ]
        alone = await stack.enter_async_context(
            running_server(redis_server.url, prefix + "-alone", poll_interval=interval)
        )
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        nursery = await stack.enter_async_context(trio.open_nursery())
        flowing = [trio.Event() for _ in servers]
        for server, event in zip(servers, flowing, strict=True):
            nursery.start_soon(stream_into, client, server, event)
        with trio.fail_after(10):
            for event in flowing:
                await event.wait()

        first = [await scrape(client, s) for s in servers]
        leaders = [i for i, m in enumerate(first) if m["relay_fleet_leader"] == 1]
        assert len(leaders) == 1, first
        leader, follower = leaders[0], 1 - leaders[0]
        assert first[follower]["relay_fleet_leader"] == 0
        epoch = first[leader]["relay_fleet_epoch"]
        assert epoch >= 1 and first[follower]["relay_fleet_epoch"] == epoch
        assert first[leader]["relay_fleet_leads_total"] == 1
        assert first[follower]["relay_fleet_leads_total"] == 0
        assert first[leader]["relay_fleet_relayed_total"] == 0  # it polls, relays nothing
        assert first[follower]["relay_fleet_relayed_total"] >= 2
        await trio.sleep(5 * interval)
        second = await scrape(client, servers[follower])
        assert (
            second["relay_fleet_relayed_total"] >= first[follower]["relay_fleet_relayed_total"] + 3
        )
        assert second["relay_fleet_leader"] == 0
        for metrics in first:
            assert metrics["relay_fleet_handovers_total"] == 0
            assert metrics["relay_fleet_ignored_total"] == 0
        assert "relay_hub_polls_total" in first[leader]
        assert fleet_samples((await client.get(alone.url + "/metrics")).text) == {}

        # the leader's server stops: it hands the lead over, the follower takes it at once
        old: Fleet = servers[leader].app.extensions["relay_fleet"]
        servers[leader].stop.set()
        for _ in range(50):
            now = await scrape(client, servers[follower])
            if now["relay_fleet_leader"] == 1:
                break
            await trio.sleep(interval / 2)
        assert now["relay_fleet_leader"] == 1, now
        assert now["relay_fleet_handovers_total"] == 1
        assert now["relay_fleet_leads_total"] == 1
        assert now["relay_fleet_epoch"] == epoch + 1
        assert old.left == 1 and not old.leading
        nursery.cancel_scope.cancel()
