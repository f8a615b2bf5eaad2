"""Queue administration through the API: delete, and pause, resume and rate limit
of queues that exist (spec sections 5 and 10). Only creating a job registers a
queue: every admin verb on an unknown queue is a 404 that writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from support import keys_under, make_dead, redis_contents
from support.servers import ApiClient as Client
from support.servers import api_client, error_of, send

from relay_trio.broker import BURST_MAX, RATE_MAX, RATE_MIN, Broker
from relay_trio.job import MAX_TIMEOUT_MS
from relay_trio.server.openapi import build_openapi

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


async def enqueue(client: Client, queue: str, **fields: Any) -> str:
    r = await client.post(f"/api/queues/{queue}/jobs", json={"payload": "x", **fields})
    assert r.status_code == 201, await r.get_data(as_text=True)
    return str((await r.get_json())["id"])


async def queue_names(client: Client) -> list[str]:
    return list(await (await client.get("/api/queues")).get_json())


# -- DELETE /api/queues/{q} -------------------------------------------------------------


async def test_delete_an_empty_queue(
    client: Client, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await enqueue(client, "done")
    (job,) = (await broker.claim("done", 1)).jobs
    assert await broker.ack(job)
    await client.put("/api/queues/done/rate-limit", json={"rate": 1, "burst": 1})
    await client.post("/api/queues/done/pause")
    r = await client.delete("/api/queues/done")
    assert r.status_code == 200
    assert await r.get_json() == {"queue": "done", "deleted": True, "jobs": 1}  # the done job
    assert await queue_names(client) == []
    assert keys_under(rdb, prefix) == []  # counters, pause flag and limit went too
    assert "not found" in await error_of(await client.delete("/api/queues/done"), 404)
    # A new job registers it again, with nothing left over.
    await enqueue(client, "done")
    assert await queue_names(client) == ["done"]
    stats = await (await client.get("/api/queues/done/stats")).get_json()
    assert (stats["ready"], stats["processed_total"], stats["paused"]) == (1, 0, False)
    assert await (await client.get("/api/queues/done/rate-limit")).get_json() == {
        "rate": None,
        "burst": None,
    }


async def test_a_queue_that_holds_jobs_is_deleted_only_with_force(
    client: Client, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    (dead,) = await make_dead(broker, "full", 1)
    inflight = await enqueue(client, "full")
    assert [j.id for j in (await broker.claim("full", 1)).jobs] == [inflight]
    ready = await enqueue(client, "full")
    delayed = await enqueue(client, "full", delay_ms=60_000)
    await enqueue(client, "other")
    before = redis_contents(rdb, prefix)
    for path in ("/api/queues/full", "/api/queues/full?force=false", "/api/queues/full?force=0"):
        r = await client.delete(path)
        assert "force" in await error_of(r, 409)
        body = await r.get_json()
        assert set(body) == {"error", "jobs"} and body["jobs"] == 4
        assert redis_contents(rdb, prefix) == before
    assert await queue_names(client) == ["full", "other"]
    r = await client.delete("/api/queues/full?force=true")
    assert r.status_code == 200
    assert await r.get_json() == {"queue": "full", "deleted": True, "jobs": 4}
    assert await queue_names(client) == ["other"]
    for job_id in (dead, inflight, ready, delayed):
        await error_of(await client.get(f"/api/queues/full/jobs/{job_id}"), 404)
    assert not any("{full}" in key for key in keys_under(rdb, prefix))
    # force=1 is true too.
    await enqueue(client, "other")
    r = await client.delete("/api/queues/other?force=1")
    assert await r.get_json() == {"queue": "other", "deleted": True, "jobs": 2}
    assert keys_under(rdb, prefix) == []


@pytest.mark.parametrize(
    "query",
    [
        "force=yes",
        "force=",
        "force=TRUE",
        "force=True",
        "force=2",
        "force=%20true",
        "force=on",
        "force=true&force=true",
        "forced=true",
        "force=true&limit=1",
    ],
)
async def test_delete_queue_query_is_checked(
    client: Client, rdb: redis.Redis, prefix: str, query: str
) -> None:
    await enqueue(client, "keep")
    before = redis_contents(rdb, prefix)
    await error_of(await client.delete(f"/api/queues/keep?{query}"), 400)
    await error_of(await client.delete(f"/api/queues/ghost?{query}"), 400)  # 400 before 404
    assert redis_contents(rdb, prefix) == before


# -- admin verbs of an unknown queue ---------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "/api/queues/{q}/pause", ""),
    ("POST", "/api/queues/{q}/resume", ""),
    ("GET", "/api/queues/{q}/rate-limit", ""),
    ("PUT", "/api/queues/{q}/rate-limit", '{"rate": 1, "burst": 1}'),
    ("DELETE", "/api/queues/{q}/rate-limit", ""),
    ("DELETE", "/api/queues/{q}", ""),
    ("DELETE", "/api/queues/{q}?force=true", ""),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_verbs_of_an_unknown_queue_are_404_and_write_nothing(
    client: Client, rdb: redis.Redis, prefix: str, method: str, path: str, body: str
) -> None:
    await enqueue(client, "real")
    before = redis_contents(rdb, prefix)
    r = await send(client, method, path.format(q="ghost"), body)
    assert "ghost" in await error_of(r, 404)
    assert set(await r.get_json()) == {"error"}
    assert redis_contents(rdb, prefix) == before
    assert await queue_names(client) == ["real"]
    # A deleted queue is unknown again.
    assert (await client.delete("/api/queues/real?force=true")).status_code == 200
    await error_of(await send(client, method, path.format(q="real"), body), 404)
    assert await queue_names(client) == []
    assert keys_under(rdb, prefix) == []


# -- rate-limit ranges -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"rate": 1e-20, "burst": 1},
        {"rate": 1e-16, "burst": 1},
        {"rate": 1e-300, "burst": 1},
        {"rate": 1e-10, "burst": 1},
        {"rate": RATE_MIN / 2, "burst": 1},
        {"rate": 0, "burst": 1},
        {"rate": 0.0, "burst": 1},
        {"rate": -1, "burst": 1},
        {"rate": 1e7, "burst": 1},
        {"rate": RATE_MAX * 1.000001, "burst": 1},
        {"rate": 10**400, "burst": 1},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": -1},
        {"rate": 1, "burst": 10**9},
        {"rate": 1, "burst": 1e9},
        {"rate": 1, "burst": BURST_MAX + 1},
    ],
)
async def test_rate_limits_out_of_range_are_400_and_change_nothing(
    client: Client, rdb: redis.Redis, prefix: str, body: Any
) -> None:
    await enqueue(client, "r")
    path = "/api/queues/r/rate-limit"
    assert (await client.put(path, json={"rate": 2.5, "burst": 3})).status_code == 200
    before = redis_contents(rdb, prefix)
    field = "rate" if body["burst"] in (1, 1.0) else "burst"
    assert field in await error_of(await client.put(path, json=body), 400)
    await error_of(await client.put("/api/queues/ghost/rate-limit", json=body), 400)
    assert redis_contents(rdb, prefix) == before
    assert await (await client.get(path)).get_json() == {"rate": 2.5, "burst": 3}


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(RATE_MIN, 1), (RATE_MIN, BURST_MAX), (RATE_MAX, 1), (RATE_MAX, BURST_MAX), (1e-4, 7)],
)
async def test_rate_limits_at_the_ends_of_the_range_round_trip(
    client: Client, broker: Broker, rate: float, burst: int
) -> None:
    await enqueue(client, "r")
    path = "/api/queues/r/rate-limit"
    r = await client.put(path, json={"rate": rate, "burst": burst})
    assert r.status_code == 200, await r.get_data(as_text=True)
    assert await r.get_json() == {"rate": rate, "burst": burst}
    assert await (await client.get(path)).get_json() == {"rate": rate, "burst": burst}
    limit = await broker.get_rate_limit("r")
    assert limit is not None and (limit.rate, limit.burst) == (rate, burst)


# -- read-only mode and auth -------------------------------------------------------------


async def test_delete_queue_is_403_in_read_only_mode(
    redis_server: Any, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await broker.enqueue("q", "x")
    before = redis_contents(rdb, prefix)
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        for path in ("/api/queues/q", "/api/queues/q?force=true", "/api/queues/ghost"):
            assert "read-only" in await error_of(await client.delete(path), 403)
        assert await queue_names(client) == ["q"]
    assert redis_contents(rdb, prefix) == before


async def test_delete_queue_needs_the_token(
    redis_server: Any, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await broker.enqueue("q", "x")
    before = redis_contents(rdb, prefix)
    async with api_client(redis_server.url, prefix, api_token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await client.delete("/api/queues/q?force=true", headers=headers)
            await error_of(r, 401)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert redis_contents(rdb, prefix) == before
        ok = {"Authorization": "Bearer s3cret"}
        await error_of(await client.delete("/api/queues/q", headers=ok), 409)
        r = await client.delete("/api/queues/q?force=true", headers=ok)
        assert r.status_code == 200 and (await r.get_json())["jobs"] == 1
    assert keys_under(rdb, prefix) == []


# -- the OpenAPI document ----------------------------------------------------------------


def test_openapi_documents_queue_admin() -> None:
    doc = build_openapi()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    delete = paths["/api/queues/{q}"]["delete"]
    assert set(delete["responses"]) == {"200", "400", "401", "403", "404", "409", "503"}
    conflict = delete["responses"]["409"]["content"]["application/json"]["schema"]
    assert conflict == {"$ref": "#/components/schemas/QueueNotEmptyError"}
    assert schemas["QueueNotEmptyError"]["required"] == ["error", "jobs"]
    assert {"$ref": "#/components/parameters/Force"} in delete["parameters"]
    force = doc["components"]["parameters"]["Force"]
    assert (force["in"], force["schema"]["type"]) == ("query", "boolean")
    for path, method in (
        ("pause", "post"),
        ("resume", "post"),
        ("rate-limit", "get"),
        ("rate-limit", "put"),
        ("rate-limit", "delete"),
    ):
        assert "404" in paths[f"/api/queues/{{q}}/{path}"][method]["responses"]
    rate_limit = schemas["RateLimitRequest"]["properties"]
    assert (rate_limit["rate"]["minimum"], rate_limit["rate"]["maximum"]) == (RATE_MIN, RATE_MAX)
    assert (rate_limit["burst"]["minimum"], rate_limit["burst"]["maximum"]) == (1, BURST_MAX)
    for name in ("EnqueueRequest", "BulkCountRequest"):
        timeout = schemas[name]["properties"]["timeout_ms"]
        assert timeout["type"] == ["integer", "null"]
        assert (timeout["minimum"], timeout["maximum"]) == (1, MAX_TIMEOUT_MS)
    assert "timeout_ms" in schemas["Job"]["properties"]
