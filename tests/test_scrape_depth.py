"""``relay_queue_depth`` at scrape time (spec section 12): a ``/metrics`` scrape
reads the depths from one snapshot, at most one per second, shared with the
hub's tick when it polls, never stale; with no stream client connected too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.servers import ApiClient, api_client, running_server
from support.sse import Events, is_data

from relay_trio._errors import RedisUnavailable
from relay_trio.broker import Broker
from relay_trio.server.app import RelayApp
from relay_trio.server.snapshots import SCRAPE_MAX_AGE

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)


def depths(text: str) -> dict[tuple[str, str], float]:
    """``relay_queue_depth`` by (queue, state) in a scrape."""
    return {
        (s.labels["queue"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "relay_queue_depth"
    }


async def scrape(client: ApiClient) -> dict[tuple[str, str], float]:
    r = await client.get("/metrics")
    assert r.status_code == 200
    return depths(await r.get_data(as_text=True))


class Counted:
    """Counts the serving broker's snapshots and its Redis round trips."""

    def __init__(self, broker: Broker) -> None:
        self.snapshots = 0
        self.calls = 0
        snapshot, run = broker.snapshot, broker.io.run

        async def counting_snapshot() -> Any:
            self.snapshots += 1
            return await snapshot()

        async def counting_run(fn: Any) -> Any:
            self.calls += 1
            return await run(fn)

        broker.snapshot = counting_snapshot  # type: ignore[method-assign]
        broker.io.run = counting_run  # type: ignore[method-assign]


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[ApiClient]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


def serving_broker(client: ApiClient) -> Broker:
    app = client.app
    assert isinstance(app, RelayApp)
    return app.state.serving_broker


async def test_depth_is_read_at_scrape_time_with_no_stream_client(
    client: ApiClient, broker: Broker
) -> None:
    assert SCRAPE_MAX_AGE == 1.0
    hub = client.app.state.serving_hub  # type: ignore[attr-defined]
    await broker.enqueue_many("deep", [broker.spec(f"j{i}") for i in range(5)])
    got = await scrape(client)
    assert got[("deep", "ready")] == 5
    assert (got[("deep", "inflight")], got[("deep", "delayed")], got[("deep", "dlq")]) == (0, 0, 0)
    jobs = (await broker.claim("deep", 5)).jobs
    assert len(jobs) == 5
    assert await broker.ack_many(jobs) == [True] * 5
    await trio.sleep(SCRAPE_MAX_AGE)
    got = await scrape(client)
    assert got[("deep", "ready")] == 0 and got[("deep", "inflight")] == 0
    assert hub.polls == 0 and not hub.polling  # no stream: the hub never ran


async def test_two_scrapes_within_a_second_cost_one_snapshot(
    client: ApiClient, broker: Broker
) -> None:
    await broker.enqueue("q", "x")
    counted = Counted(serving_broker(client))
    await scrape(client)
    assert (counted.snapshots, counted.calls) == (1, 2)  # the registry, then one pipeline
    await broker.enqueue("q", "y")
    got = await scrape(client)  # within the second: the same snapshot
    assert (counted.snapshots, counted.calls) == (1, 2)
    assert got[("q", "ready")] == 1
    await trio.sleep(SCRAPE_MAX_AGE)
    assert (await scrape(client))[("q", "ready")] == 2
    assert (counted.snapshots, counted.calls) == (2, 4)


async def test_concurrent_scrapes_share_one_snapshot(client: ApiClient, broker: Broker) -> None:
    await broker.enqueue("q", "x")
    counted = Counted(serving_broker(client))
    seen: list[float] = []

    async def one() -> None:
        seen.append((await scrape(client))[("q", "ready")])

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(one)
    assert seen == [1] * 8
    assert counted.snapshots == 1


async def test_scrapes_share_the_hubs_snapshots_while_it_polls(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    await broker.enqueue_many("q", [broker.spec("x") for _ in range(3)])
    async with (
        running_server(redis_server.url, prefix, poll_interval=0.2) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url + "/api/stream") as response,
    ):
        events = Events(response)
        await events.take(1, is_data)
        counted = Counted(server.state.serving_broker)
        hub = server.state.serving_hub
        polls = hub.polls
        for _ in range(6):
            r = await client.get(server.url + "/metrics")
            assert depths(r.text)[("q", "ready")] == 3
            await trio.sleep(0.1)
        # every snapshot taken was a tick of the hub: the scrapes took none of their own
        assert counted.snapshots == hub.polls - polls >= 2


async def test_a_failed_snapshot_removes_the_depths_and_the_scrape_answers(
    client: ApiClient, broker: Broker
) -> None:
    await broker.enqueue("q", "x")
    assert (await scrape(client))[("q", "ready")] == 1
    serving = serving_broker(client)
    attempts = 0

    async def down() -> Any:
        nonlocal attempts
        attempts += 1
        raise RedisUnavailable("Redis at nowhere: connection refused")

    serving.snapshot = down  # type: ignore[method-assign]
    await trio.sleep(SCRAPE_MAX_AGE)
    assert await scrape(client) == {}  # unknown, rather than stale
    assert await scrape(client) == {}
    assert attempts == 1  # a failed attempt counts for the second too
