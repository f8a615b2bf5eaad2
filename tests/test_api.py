"""The JSON API (spec section 5) against a real Redis, through Quart's test client.

Each test builds the app on the test's key prefix and runs it with
``app.test_app()`` (startup and shutdown: the broker and the hub live in the
app's nursery). ``GET /api/stream`` is tested elsewhere: the test client hangs
after a stream disconnect.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from support import keys_under, make_dead
from support.servers import ApiClient as Client
from support.servers import api_client, error_of, send
from werkzeug.routing import Rule

from relay_trio._errors import InvalidInput
from relay_trio.broker import Broker
from relay_trio.job import (
    MAX_DELAY_MS,
    MAX_TIMEOUT_MS,
    validate_idempotency_key,
    validate_payload,
    validate_queue_name,
)
from relay_trio.server import ServerConfig, create_app
from relay_trio.server.openapi import build_openapi

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

JOB_FIELDS = {
    "id",
    "queue",
    "payload",
    "state",
    "attempts",
    "max_retries",
    "priority",
    "created_at",
    "idempotency_key",
    "last_error",
    "timeout_ms",
    "result",
    "result_type",
    "finished_at",
    "ready_at",
    "deadline",
    "dead_at",
}


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


# -- enqueue -------------------------------------------------------------------------


async def test_enqueue_is_201_with_id_and_state(client: Client) -> None:
    r = await client.post("/api/queues/emails/jobs", json={"payload": "hello"})
    assert r.status_code == 201
    body = await r.get_json()
    assert set(body) == {"id", "state"} and body["state"] == "ready"
    assert r.headers["Location"] == f"/api/queues/emails/jobs/{body['id']}"
    job = await (await client.get(r.headers["Location"])).get_json()
    assert set(job) == JOB_FIELDS
    assert (job["payload"], job["priority"], job["max_retries"]) == ("hello", 0, 5)
    assert job["timeout_ms"] is None


async def test_enqueue_options_are_kept(client: Client) -> None:
    options = {"priority": 255, "delay_ms": 60_000, "idempotency_key": "k-1", "max_retries": 0}
    r = await client.post("/api/queues/q/jobs", json={"payload": "é ✓", **options})
    assert r.status_code == 201
    body = await r.get_json()
    assert body["state"] == "delayed"
    job = await (await client.get(f"/api/queues/q/jobs/{body['id']}")).get_json()
    assert job["payload"] == "é ✓" and job["state"] == "delayed"
    assert (job["priority"], job["idempotency_key"], job["max_retries"]) == (255, "k-1", 0)


async def test_timeout_ms_is_stored_and_returned(client: Client) -> None:
    async def timeout_of(job_id: str) -> Any:
        job = await (await client.get(f"/api/queues/t/jobs/{job_id}")).get_json()
        return job["timeout_ms"]

    ids = []
    for value in (1, 1500, MAX_TIMEOUT_MS, None):
        r = await client.post("/api/queues/t/jobs", json={"payload": "x", "timeout_ms": value})
        assert r.status_code == 201, await r.get_data(as_text=True)
        ids.append((await r.get_json())["id"])
    assert [await timeout_of(i) for i in ids] == [1, 1500, MAX_TIMEOUT_MS, None]
    jobs = [
        {"payload": "a", "timeout_ms": 2500},
        {"payload": "b"},
        {"payload": "c", "timeout_ms": None},
    ]
    r = await client.post("/api/queues/t/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 201
    assert [await timeout_of(i) for i in (await r.get_json())["ids"]] == [2500, None, None]
    r = await client.post(
        "/api/queues/t/jobs/bulk", json={"count": 3, "payload": "p", "timeout_ms": 60_000.0}
    )
    assert r.status_code == 201
    assert [await timeout_of(i) for i in (await r.get_json())["ids"]] == [60_000] * 3


async def test_integral_numbers_count_as_integers(client: Client) -> None:
    # JSON Schema's "integer" takes 5.0; the API does too (5.5 is a 400 below).
    r = await send(client, "POST", "/api/queues/q/jobs", '{"payload": "x", "priority": 5.0}')
    assert r.status_code == 201
    job_id = (await r.get_json())["id"]
    assert (await (await client.get(f"/api/queues/q/jobs/{job_id}")).get_json())["priority"] == 5


async def test_taken_idempotency_key_is_409_with_the_existing_id(client: Client) -> None:
    first = await client.post("/api/queues/q/jobs", json={"payload": "a", "idempotency_key": "k"})
    existing = (await first.get_json())["id"]
    again = await client.post("/api/queues/q/jobs", json={"payload": "b", "idempotency_key": "k"})
    assert "k" in await error_of(again, 409)
    body = await again.get_json()
    assert body["id"] == existing and body["state"] == "ready"
    stats = await (await client.get("/api/queues/q/stats")).get_json()
    assert stats["ready"] == 1
    # Empty or null means no key: never a duplicate.
    for key in ("", None, ""):
        r = await client.post("/api/queues/q/jobs", json={"payload": "c", "idempotency_key": key})
        assert r.status_code == 201


async def test_bulk_count(client: Client) -> None:
    r = await client.post("/api/queues/bulk/jobs/bulk", json={"count": 250, "payload": "p"})
    assert r.status_code == 201
    body = await r.get_json()
    assert set(body) == {"enqueued", "duplicates", "state", "ids"}
    assert (body["enqueued"], body["duplicates"], body["state"]) == (250, 0, "ready")
    assert len(set(body["ids"])) == 250
    stats = await (await client.get("/api/queues/bulk/stats")).get_json()
    assert stats["ready"] == 250
    r = await client.post(
        "/api/queues/bulk/jobs/bulk",
        json={"count": 3, "payload": "later", "delay_ms": 10_000, "priority": 9, "max_retries": 1},
    )
    assert (await r.get_json())["state"] == "delayed"


async def test_bulk_list_keeps_order_and_reports_duplicates(client: Client) -> None:
    first = await client.post("/api/queues/b/jobs", json={"payload": "x", "idempotency_key": "old"})
    old_id = (await first.get_json())["id"]
    jobs = [
        {"payload": "one", "priority": 3},
        {"payload": "two", "delay_ms": 60_000, "idempotency_key": "new"},
        {"payload": "three", "idempotency_key": "old"},
        {"payload": "four", "idempotency_key": "new", "max_retries": 2},
    ]
    r = await client.post("/api/queues/b/jobs/bulk", json={"jobs": jobs})
    assert r.status_code == 201
    body = await r.get_json()
    assert (body["enqueued"], body["duplicates"], body["state"]) == (2, 2, "mixed")
    ids = body["ids"]
    assert len(ids) == 4 and ids[2] == old_id and ids[3] == ids[1]
    payloads = [
        (await (await client.get(f"/api/queues/b/jobs/{i}")).get_json())["payload"] for i in ids
    ]
    assert payloads == ["one", "two", "x", "two"]
    # Nothing new: no state.
    again = await client.post("/api/queues/b/jobs/bulk", json={"jobs": jobs[2:]})
    assert (await again.get_json())["enqueued"] == 0
    assert (await again.get_json())["state"] is None


# -- reading ---------------------------------------------------------------------------


async def test_queues_are_sorted_and_stats_have_their_shape(client: Client) -> None:
    assert await (await client.get("/api/queues")).get_json() == []
    for name in ("zeta", "Alpha", "mid.q", "a_b-c"):
        await client.post(f"/api/queues/{name}/jobs", json={"payload": "x"})
    r = await client.get("/api/queues")
    assert r.status_code == 200
    assert await r.get_json() == sorted(["zeta", "Alpha", "mid.q", "a_b-c"])
    stats = await (await client.get("/api/queues/zeta/stats")).get_json()
    assert stats == {
        "queue": "zeta",
        "ready": 1,
        "inflight": 0,
        "delayed": 0,
        "dlq": 0,
        "processed_total": 0,
        "dead_total": 0,
        "paused": False,
    }
    unknown = await (await client.get("/api/queues/never-used/stats")).get_json()
    assert unknown["ready"] == unknown["dlq"] == 0


async def test_job_lookup_404s(client: Client) -> None:
    r = await client.get(f"/api/queues/q/jobs/{secrets.token_hex(16)}")
    assert "not found" in await error_of(r, 404)
    for bad in ("ABCDEF" * 5 + "00", "xyz", "0" * 33):
        await error_of(await client.get(f"/api/queues/q/jobs/{bad}"), 404)


# -- dead-letter queue -------------------------------------------------------------------


async def test_dlq_list_and_paging(client: Client, broker: Broker) -> None:
    ids = await make_dead(broker, "d", 5)
    r = await client.get("/api/queues/d/dlq")
    assert r.status_code == 200
    page = await r.get_json()
    assert [j["id"] for j in page] == ids
    assert set(page[0]) == JOB_FIELDS | {"payload_bytes", "payload_truncated"}
    assert page[0]["state"] == "dead" and page[0]["last_error"] == "boom"
    page = await (await client.get("/api/queues/d/dlq?limit=2&offset=1")).get_json()
    assert [j["id"] for j in page] == ids[1:3]
    assert await (await client.get("/api/queues/d/dlq?offset=99&limit=1000")).get_json() == []


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=1.5",
        "limit=",
        "limit=+5",
        "limit=5_0",
        "limit=%205",
        "offset=-1",
        "offset=99999999999999999999999",
        "limit=1&limit=2",
        "page=2",
    ],
)
async def test_dlq_paging_must_be_integers_in_range(client: Client, query: str) -> None:
    await error_of(await client.get(f"/api/queues/d/dlq?{query}"), 400)


async def test_dlq_requeue_and_delete_one(client: Client, broker: Broker) -> None:
    ids = await make_dead(broker, "d", 2)
    r = await client.post(f"/api/queues/d/dlq/{ids[0]}/requeue")
    assert r.status_code == 200 and await r.get_json() == {"requeued": True}
    job = await (await client.get(f"/api/queues/d/jobs/{ids[0]}")).get_json()
    assert (job["state"], job["attempts"]) == ("ready", 0)
    await error_of(await client.post(f"/api/queues/d/dlq/{ids[0]}/requeue"), 404)
    r = await client.delete(f"/api/queues/d/dlq/{ids[1]}")
    assert r.status_code == 200 and await r.get_json() == {"deleted": True}
    await error_of(await client.delete(f"/api/queues/d/dlq/{ids[1]}"), 404)
    await error_of(await client.get(f"/api/queues/d/jobs/{ids[1]}"), 404)
    unknown = secrets.token_hex(16)
    await error_of(await client.post(f"/api/queues/d/dlq/{unknown}/requeue"), 404)
    await error_of(await client.post("/api/queues/d/dlq/not-an-id/requeue"), 404)


async def test_dlq_requeue_all_and_purge(client: Client, broker: Broker) -> None:
    await make_dead(broker, "d", 3)
    r = await client.post("/api/queues/d/dlq/requeue-all")
    assert r.status_code == 200 and await r.get_json() == {"requeued": 3}
    stats = await (await client.get("/api/queues/d/stats")).get_json()
    assert (stats["ready"], stats["dlq"]) == (3, 0)
    await make_dead(broker, "e", 2)
    r = await client.post("/api/queues/e/dlq/purge")
    assert r.status_code == 200 and await r.get_json() == {"purged": 2}
    assert await (await client.post("/api/queues/e/dlq/purge")).get_json() == {"purged": 0}


# -- pause and rate limit -------------------------------------------------------------------


async def test_pause_and_resume(client: Client) -> None:
    await client.post("/api/queues/p/jobs", json={"payload": "x"})  # registers the queue
    r = await client.post("/api/queues/p/pause")
    assert r.status_code == 200 and await r.get_json() == {"queue": "p", "paused": True}
    assert (await (await client.get("/api/queues/p/stats")).get_json())["paused"] is True
    assert "p" in await (await client.get("/api/queues")).get_json()
    r = await client.post("/api/queues/p/resume")
    assert r.status_code == 200 and await r.get_json() == {"queue": "p", "paused": False}
    assert (await (await client.get("/api/queues/p/stats")).get_json())["paused"] is False


async def test_rate_limit_get_put_delete(client: Client, broker: Broker) -> None:
    await client.post("/api/queues/r/jobs", json={"payload": "x"})  # registers the queue
    path = "/api/queues/r/rate-limit"
    assert await (await client.get(path)).get_json() == {"rate": None, "burst": None}
    r = await client.put(path, json={"rate": 2.5, "burst": 3})
    assert r.status_code == 200 and await r.get_json() == {"rate": 2.5, "burst": 3}
    assert await (await client.get(path)).get_json() == {"rate": 2.5, "burst": 3}
    limit = await broker.get_rate_limit("r")
    assert limit is not None and (limit.rate, limit.burst) == (2.5, 3)
    r = await client.put(path, json={"rate": 7, "burst": 1})
    assert await r.get_json() == {"rate": 7.0, "burst": 1}
    r = await client.delete(path)
    assert r.status_code == 200 and await r.get_json() == {"rate": None, "burst": None}
    assert await broker.get_rate_limit("r") is None


@pytest.mark.parametrize(
    "body",
    [
        {"rate": 0, "burst": 1},
        {"rate": -1, "burst": 1},
        {"rate": 1e7, "burst": 1},
        {"rate": "5", "burst": 1},
        {"rate": True, "burst": 1},
        {"rate": None, "burst": 1},
        {"rate": 1, "burst": 0},
        {"rate": 1, "burst": 1.5},
        {"rate": 1, "burst": False},
        {"rate": 1, "burst": 10**7},
        {"rate": 1},
        {"burst": 1},
        {"rate": 1, "burst": 1, "per": "second"},
        [],
    ],
)
async def test_bad_rate_limits_are_400_and_write_nothing(
    client: Client, rdb: redis.Redis, prefix: str, body: Any
) -> None:
    await error_of(await client.put("/api/queues/r/rate-limit", json=body), 400)
    assert keys_under(rdb, prefix) == []


# -- bad input ---------------------------------------------------------------------------------

BAD_JOB_BODIES = [
    # (raw body, what the error must mention)
    (b'{"payload": ', "malformed JSON"),
    (b"\xff\xfe{", "malformed JSON"),
    (b'{"payload": "x", "priority": NaN}', "NaN"),
    (b'{"payload": "x", "delay_ms": Infinity}', "Infinity"),
    (b'{"payload": "a", "payload": "b"}', "repeated"),
    (b'{"payload": "x", "priority": 1' + b"0" * 5000 + b"}", "malformed JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
    (b"[]", "JSON object"),
    (b'"text"', "JSON object"),
    (b"null", "JSON object"),
    (b"", "JSON object"),
    (b"{}", "payload"),
    (b'{"priority": 1}', "payload"),
    (b'{"payload": 5}', "payload"),
    (b'{"payload": null}', "payload"),
    (b'{"payload": ["x"]}', "payload"),
    (b'{"payload": "\\ud800"}', "surrogate"),
    (b'{"payload": "x", "prio": 1, "zz": 2}', "prio, zz"),
    (b'{"payload": "x", "priority": true}', "priority"),
    (b'{"payload": "x", "priority": -1}', "priority"),
    (b'{"payload": "x", "priority": 256}', "priority"),
    (b'{"payload": "x", "priority": "5"}', "priority"),
    (b'{"payload": "x", "priority": 5.5}', "priority"),
    (b'{"payload": "x", "priority": null}', "priority"),
    (b'{"payload": "x", "delay_ms": -1}', "delay_ms"),
    (b'{"payload": "x", "delay_ms": %d}' % (MAX_DELAY_MS + 1), "delay_ms"),
    (b'{"payload": "x", "delay_ms": false}', "delay_ms"),
    (b'{"payload": "x", "max_retries": -1}', "max_retries"),
    (b'{"payload": "x", "max_retries": 1001}', "max_retries"),
    (b'{"payload": "x", "idempotency_key": 5}', "idempotency_key"),
    (b'{"payload": "x", "idempotency_key": "%s"}' % (b"k" * 257), "idempotency_key"),
    (b'{"payload": "x", "idempotency_key": "a\\nb"}', "idempotency_key"),
    (b'{"payload": "x", "idempotency_key": "\\udfff"}', "idempotency_key"),
    (b'{"payload": "x", "timeout_ms": 0}', "timeout_ms"),
    (b'{"payload": "x", "timeout_ms": -1}', "timeout_ms"),
    (b'{"payload": "x", "timeout_ms": %d}' % (MAX_TIMEOUT_MS + 1), "timeout_ms"),
    (b'{"payload": "x", "timeout_ms": "5"}', "timeout_ms"),
    (b'{"payload": "x", "timeout_ms": true}', "timeout_ms"),
    (b'{"payload": "x", "timeout_ms": 1.5}', "timeout_ms"),
]


FIELDS = {
    "payload",
    "priority",
    "delay_ms",
    "max_retries",
    "idempotency_key",
    "timeout_ms",
    "prio, zz",
}


@pytest.mark.parametrize(("raw", "mentions"), BAD_JOB_BODIES)
async def test_bad_job_bodies_are_400_and_write_nothing(
    client: Client, rdb: redis.Redis, prefix: str, raw: bytes, mentions: str
) -> None:
    assert mentions in await error_of(await send(client, "POST", "/api/queues/q/jobs", raw), 400)
    # The same job inside a bulk list is refused too, naming its index.
    if mentions in FIELDS and raw.startswith(b"{"):
        bulk = b'{"jobs": [{"payload": "ok"}, ' + raw + b"]}"
        error = await error_of(await send(client, "POST", "/api/queues/q/jobs/bulk", bulk), 400)
        assert "jobs[1]" in error
    assert keys_under(rdb, prefix) == []


@pytest.mark.parametrize(
    "body",
    [
        {"count": 0, "payload": "x"},
        {"count": 10_001, "payload": "x"},
        {"count": True, "payload": "x"},
        {"count": "5", "payload": "x"},
        {"count": 2},
        {"payload": "x"},
        {"count": 2, "payload": "x", "idempotency_key": "k"},
        {"count": 2, "payload": "x", "priority": 300},
        {"count": 2, "payload": "x", "timeout_ms": 0},
        {"count": 2, "payload": "x", "timeout_ms": -1},
        {"count": 2, "payload": "x", "timeout_ms": MAX_TIMEOUT_MS + 1},
        {"count": 2, "payload": "x", "timeout_ms": "5"},
        {"count": 2, "payload": "x", "timeout_ms": True},
        {"count": 2, "payload": 7},
        {"count": 2, "payload": "x", "jobs": []},
        {"jobs": []},
        {"jobs": {"payload": "x"}},
        {"jobs": ["x"]},
        {"jobs": [{"payload": "x"}, {}]},
        {"jobs": [{"payload": "x", "color": "red"}]},
        {"jobs": [{"payload": "x"}] * 10_001},
        {"priority": 1},
        {},
    ],
)
async def test_bad_bulk_bodies_are_400_and_write_nothing(
    client: Client, rdb: redis.Redis, prefix: str, body: Any
) -> None:
    await error_of(await client.post("/api/queues/q/jobs/bulk", json=body), 400)
    assert keys_under(rdb, prefix) == []


async def test_oversize_payloads_are_413_and_write_nothing(
    redis_server: Any, rdb: redis.Redis, prefix: str
) -> None:
    async with api_client(redis_server.url, prefix, max_payload_bytes=1000) as client:
        ok = await client.post("/api/queues/q/jobs", json={"payload": "x" * 1000})
        assert ok.status_code == 201
        before = keys_under(rdb, prefix)
        # 501 two-byte characters: 501 characters, 1002 bytes.
        for body in ({"payload": "é" * 501}, {"payload": "x" * 1001}):
            assert "bytes" in await error_of(
                await client.post("/api/queues/q/jobs", json=body), 413
            )
        bulk = {"jobs": [{"payload": "x"}, {"payload": "y" * 1001}]}
        assert "jobs[1]" in await error_of(
            await client.post("/api/queues/q/jobs/bulk", json=bulk), 413
        )
        # More than the server takes in one body: the app's 413, as JSON too.
        huge = {"payload": "x" * 100_000}
        await error_of(await client.post("/api/queues/q/jobs", json=huge), 413)
        assert keys_under(rdb, prefix) == before


async def test_bulk_bytes_limit_is_413(client: Client, rdb: redis.Redis, prefix: str) -> None:
    body = {"count": 10_000, "payload": "x" * 7000}  # 70 MB in all
    assert "bytes" in await error_of(await client.post("/api/queues/q/jobs/bulk", json=body), 413)
    assert keys_under(rdb, prefix) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_a_body_must_be_json(
    client: Client, rdb: redis.Redis, prefix: str, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for method, path, body in (
        ("POST", "/api/queues/q/jobs", b'{"payload": "x"}'),
        ("POST", "/api/queues/q/jobs/bulk", b'{"count": 1, "payload": "x"}'),
        ("PUT", "/api/queues/q/rate-limit", b'{"rate": 1, "burst": 1}'),
    ):
        r = await client.open(path, method=method, data=body, headers=headers)
        assert "application/json" in await error_of(r, 415)
    assert keys_under(rdb, prefix) == []


ID = "0" * 32
QUEUE_ROUTES = [
    ("GET", "/api/queues/{q}/stats", ""),
    ("POST", "/api/queues/{q}/jobs", '{"payload": "x"}'),
    ("POST", "/api/queues/{q}/jobs/bulk", '{"count": 1, "payload": "x"}'),
    ("GET", "/api/queues/{q}/jobs/" + ID, ""),
    ("GET", "/api/queues/{q}/dlq", ""),
    ("POST", "/api/queues/{q}/dlq/" + ID + "/requeue", ""),
    ("DELETE", "/api/queues/{q}/dlq/" + ID, ""),
    ("POST", "/api/queues/{q}/dlq/requeue-all", ""),
    ("POST", "/api/queues/{q}/dlq/purge", ""),
    ("POST", "/api/queues/{q}/pause", ""),
    ("POST", "/api/queues/{q}/resume", ""),
    ("GET", "/api/queues/{q}/rate-limit", ""),
    ("PUT", "/api/queues/{q}/rate-limit", '{"rate": 1, "burst": 1}'),
    ("DELETE", "/api/queues/{q}/rate-limit", ""),
    ("DELETE", "/api/queues/{q}", ""),
]


@pytest.mark.parametrize(("method", "path", "body"), QUEUE_ROUTES)
async def test_bad_queue_names_are_400_and_write_nothing(
    client: Client, rdb: redis.Redis, prefix: str, method: str, path: str, body: str
) -> None:
    for queue in ("a%20b", "x" * 65, "caf%C3%A9", "a:b", "%7Bq%7D", "a*"):
        r = await send(client, method, path.format(q=queue), body)
        assert "queue" in await error_of(r, 400)
    assert keys_under(rdb, prefix) == []


async def test_endpoints_without_a_body_refuse_one(
    client: Client, rdb: redis.Redis, prefix: str
) -> None:
    r = await send(client, "POST", "/api/queues/q/dlq/purge", '{"only": "old ones"}')
    assert "no request body" in await error_of(r, 400)
    await error_of(await send(client, "POST", "/api/queues/q/pause", "not json"), 400)
    await error_of(await send(client, "DELETE", "/api/queues/q", '{"force": true}'), 400)
    assert keys_under(rdb, prefix) == []
    # Nothing, or an empty object, is fine.
    assert (await send(client, "POST", "/api/queues/q/dlq/purge", " {} ")).status_code == 200
    await client.post("/api/queues/q/jobs", json={"payload": "x"})
    assert (await client.post("/api/queues/q/pause")).status_code == 200


async def test_unknown_query_parameters_are_400(client: Client) -> None:
    assert "verbose" in await error_of(await client.get("/api/queues/q/stats?verbose=1"), 400)
    r = await client.post("/api/queues/q/jobs?priority=5", json={"payload": "x"})
    assert "priority" in await error_of(r, 400)


async def test_cross_site_browser_mutations_are_403(
    client: Client, rdb: redis.Redis, prefix: str
) -> None:
    headers = {"Sec-Fetch-Site": "cross-site"}
    r = await client.post("/api/queues/q/jobs", json={"payload": "x"}, headers=headers)
    await error_of(r, 403)
    await error_of(await client.post("/api/queues/q/dlq/purge", headers=headers), 403)
    assert keys_under(rdb, prefix) == []
    assert (await client.get("/api/queues", headers=headers)).status_code == 200
    await client.post("/api/queues/q/jobs", json={"payload": "x"})
    await error_of(await client.delete("/api/queues/q?force=true", headers=headers), 403)
    assert "q" in await (await client.get("/api/queues")).get_json()
    same = await client.post("/api/queues/q/pause", headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200


# -- auth, read-only, operations -------------------------------------------------------------


async def test_bearer_token(redis_server: Any, prefix: str) -> None:
    async with api_client(redis_server.url, prefix, api_token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = await client.get("/api/queues", headers=headers)
            await error_of(r, 401)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await client.post("/api/queues/q/jobs", json={"payload": "x"})
        await error_of(r, 401)
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = await client.delete("/api/queues/q?force=true", headers=headers)
            await error_of(r, 401)
        ok = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/api/queues", headers=ok)).status_code == 200
        r = await client.post("/api/queues/q/jobs", json={"payload": "x"}, headers=ok)
        assert r.status_code == 201
        for open_path in ("/healthz", "/readyz"):
            assert (await client.get(open_path)).status_code == 200
        await error_of(await client.get("/metrics"), 401)  # queue names and depths: no
        assert (await client.get("/metrics", headers=ok)).status_code == 200


async def test_read_only(redis_server: Any, rdb: redis.Redis, prefix: str) -> None:
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        for method, path, body in (
            ("POST", "/api/queues/q/jobs", '{"payload": "x"}'),
            ("POST", "/api/queues/q/jobs/bulk", '{"count": 2, "payload": "x"}'),
            ("POST", "/api/queues/q/pause", ""),
            ("POST", "/api/queues/q/dlq/purge", ""),
            ("PUT", "/api/queues/q/rate-limit", '{"rate": 1, "burst": 1}'),
            ("DELETE", "/api/queues/q/rate-limit", ""),
            ("DELETE", "/api/queues/q/dlq/" + "0" * 32, ""),
            ("DELETE", "/api/queues/q", ""),
            ("DELETE", "/api/queues/q?force=true", ""),
        ):
            assert "read-only" in await error_of(await send(client, method, path, body), 403)
        for path in (
            "/api/queues",
            "/api/queues/q/stats",
            "/api/queues/q/dlq",
            "/api/openapi.json",
        ):
            assert (await client.get(path)).status_code == 200
        assert keys_under(rdb, prefix) == []


async def test_health_and_readiness(client: Client) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and await r.get_json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and await r.get_json() == {"status": "ready"}


async def test_metrics_count_enqueues(client: Client) -> None:
    await client.post("/api/queues/metered/jobs", json={"payload": "x"})
    await client.post("/api/queues/metered/jobs/bulk", json={"count": 4, "payload": "x"})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    assert 'relay_jobs_enqueued_total{queue="metered"} 5.0' in await r.get_data(as_text=True)


async def test_redis_down_is_503_json(prefix: str) -> None:
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with api_client(url, prefix, socket_timeout=0.5) as client:
        await error_of(await client.post("/api/queues/q/jobs", json={"payload": "x"}), 503)
        await error_of(await client.get("/api/queues/q/stats"), 503)
        await error_of(await client.get("/readyz"), 503)
        # Bad input is still a 400: it never reaches Redis.
        await error_of(await client.post("/api/queues/q/jobs", json={"payload": 1}), 400)


async def test_errors_are_json_never_html(client: Client) -> None:
    for path in ("/api/nope", "/nope", "/api/queues/q/jobs/" + "0" * 32 + "/x"):
        await error_of(await client.get(path), 404)
    r = await client.delete("/api/queues")
    await error_of(r, 405)
    assert "GET" in r.headers["Allow"]
    r = await client.get("/api/queues/q/jobs/bulk")
    await error_of(r, 405)
    assert "POST" in r.headers["Allow"] and "GET" not in r.headers["Allow"]
    await error_of(await client.patch("/api/queues/q/rate-limit"), 405)


# -- the OpenAPI document ------------------------------------------------------------------------


async def test_openapi_document_describes_every_route(client: Client) -> None:
    r = await client.get("/api/openapi.json")
    assert r.status_code == 200
    doc = await r.get_json()
    assert doc == json.loads(json.dumps(build_openapi()))
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    rules: list[Rule] = list(client.app.url_map.iter_rules())
    served = {
        (_openapi_path(rule.rule), method)
        for rule in rules
        if rule.endpoint != "index"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert served == documented
    enqueue = doc["components"]["schemas"]["EnqueueRequest"]
    assert enqueue["additionalProperties"] is False and enqueue["required"] == ["payload"]


def _openapi_path(rule: str) -> str:
    return rule.replace("<q>", "{q}").replace("<job_id:job_id>", "{id}").replace("<name>", "{name}")


async def test_cross_origin_mutation_is_refused(client: Client, rdb: Any, prefix: str) -> None:
    response = await client.post(
        "/api/queues/q/jobs", json={"payload": "x"}, headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert "error" in await response.get_json()
    assert rdb.keys(prefix + "*") == []
    same = await client.post(
        "/api/queues/q/jobs", json={"payload": "x"}, headers={"Origin": "http://localhost"}
    )
    assert same.status_code == 201


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_queue_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_queue_name(name)


def test_lone_surrogates_are_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        validate_payload("a\ud800b")
    with pytest.raises(InvalidInput):
        validate_idempotency_key("k\udfff")


async def test_a_request_while_the_app_is_not_serving_is_503(
    redis_server: Any, prefix: str
) -> None:
    app = create_app(ServerConfig(prefix=prefix))
    client = app.test_client()  # never started: no broker, no hub
    assert "not serving" in await error_of(await client.get("/api/queues"), 503)
