"""``GET /api/workers`` and the stream's ``workers`` count (spec section 12), with
workers registered the way a worker process does it (``broker.beat_worker``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import trio
from support.servers import ApiClient as Client
from support.servers import api_client, error_of, running_server
from support.sse import Events, data_of, is_data

from relay_trio._errors import RedisUnavailable
from relay_trio.broker import Broker

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

INFO = {
    "host": "box-1",
    "pid": 4242,
    "queues": ["emails", "thumbs"],
    "concurrency": {"emails": 4, "thumbs": 1},
    "running": [{"queue": "emails", "id": "0" * 32, "attempt": 1}],
    "started_at": "2026-01-02T03:04:05Z",
    "version": "1.2.3",
    "extra": {"anything": ["the", "worker", "said"]},
}


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


async def workers(client: Client) -> list[dict[str, Any]]:
    r = await client.get("/api/workers")
    assert r.status_code == 200
    assert r.content_type.startswith("application/json")
    body = await r.get_json()
    assert isinstance(body, list)
    return body


def parse_iso(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_no_workers_is_an_empty_list(client: Client) -> None:
    assert await workers(client) == []


async def test_a_beating_worker_is_listed_as_it_described_itself(
    client: Client, broker: Broker
) -> None:
    now_ms = await broker.beat_worker("w-1", INFO, 5000)
    (listed,) = await workers(client)
    assert listed == {
        **INFO,
        "id": "w-1",
        "last_seen": listed["last_seen"],
        "last_seen_ms": listed["last_seen_ms"],
    }
    assert abs(listed["last_seen_ms"] - now_ms) < 50
    assert abs(parse_iso(listed["last_seen"]).timestamp() * 1000 - listed["last_seen_ms"]) < 1
    assert abs(listed["last_seen_ms"] - time.time() * 1000) < 5000  # Redis's clock, near ours
    await trio.sleep(0.01)
    await broker.beat_worker("w-1", {**INFO, "running": []}, 5000)
    (again,) = await workers(client)
    assert again["running"] == [] and again["last_seen_ms"] > listed["last_seen_ms"]


async def test_workers_by_id_and_gone_after_leave_or_ttl(client: Client, broker: Broker) -> None:
    await broker.beat_worker("w-b", INFO, 5000)
    await broker.beat_worker("w-a", {**INFO, "host": "box-2"}, 5000)
    await broker.beat_worker("w-c", INFO, 200)  # killed: it never beats again
    assert [w["id"] for w in await workers(client)] == ["w-a", "w-b", "w-c"]
    await broker.leave_worker("w-b")  # a clean shutdown
    assert [(w["id"], w["host"]) for w in await workers(client)] == [
        ("w-a", "box-2"),
        ("w-c", "box-1"),
    ]
    await trio.sleep(0.3)
    assert [w["id"] for w in await workers(client)] == ["w-a"]


async def test_missing_fields_are_there_all_the_same(client: Client, broker: Broker) -> None:
    await broker.beat_worker("sparse", {"host": "h", "id": "a lie"}, 5000)
    (listed,) = await workers(client)
    assert listed["id"] == "sparse"  # the registry's id, whatever the info says
    assert (listed["host"], listed["queues"], listed["running"]) == ("h", [], [])
    assert listed["pid"] is listed["concurrency"] is listed["started_at"] is None
    assert listed["version"] is None and listed["last_seen"]


async def test_workers_follow_the_api_token_and_refuse_input(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    token = secrets.token_hex(8)
    await broker.beat_worker("w", INFO, 5000)
    async with api_client(redis_server.url, prefix, api_token=token) as client:
        await error_of(await client.get("/api/workers"), 401)
        ok = {"Authorization": f"Bearer {token}"}
        r = await client.get("/api/workers", headers=ok)
        assert r.status_code == 200 and len(await r.get_json()) == 1
        await error_of(await client.get("/api/workers?host=x", headers=ok), 400)
        await error_of(await client.post("/api/workers", headers=ok), 405)
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        assert len(await workers(client)) == 1


# -- the stream's count of workers per queue -----------------------------------------------


async def next_snapshot(events: Events) -> dict[str, dict[str, Any]]:
    _, entries = data_of(await events.next(is_data))
    return {e["queue"]: e for e in entries}


async def test_the_stream_counts_live_workers_per_queue(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    for queue in ("emails", "thumbs", "idle"):
        await broker.enqueue(queue, "x")
    await broker.beat_worker("w-1", INFO, 5000)
    await broker.beat_worker("w-2", {**INFO, "queues": ["emails"]}, 5000)
    await broker.beat_worker("w-3", {"host": "h"}, 5000)  # says nothing of its queues
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url + "/api/stream") as response,
    ):
        events = Events(response)
        snapshot = await next_snapshot(events)
        assert {q: e["workers"] for q, e in snapshot.items()} == {
            "emails": 2,
            "idle": 0,
            "thumbs": 1,
        }
        assert snapshot["emails"]["ready"] == 1
        await broker.leave_worker("w-1")
        with trio.fail_after(5):
            while (await next_snapshot(events))["emails"]["workers"] != 1:
                pass
        snapshot = await next_snapshot(events)
        assert (snapshot["thumbs"]["workers"], snapshot["idle"]["workers"]) == (0, 0)


async def test_a_failed_registry_read_keeps_the_snapshot(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    await broker.enqueue("q", "x")
    await broker.beat_worker("w", {"queues": ["q"]}, 5000)
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient() as client,
    ):
        serving = server.state.serving_broker

        async def unreadable() -> Any:
            raise RedisUnavailable("the registry is not there")

        serving.workers = unreadable  # type: ignore[method-assign]
        async with client.stream("GET", server.url + "/api/stream") as response:
            snapshot = await next_snapshot(Events(response))
        assert snapshot["q"]["ready"] == 1 and snapshot["q"]["workers"] is None
        hub = server.state.serving_hub
        assert hub.poll_errors == 0
