"""Cron schedules through the API (spec section 11): ``GET/POST /api/schedules``,
``GET/DELETE /api/schedules/{name}``, against the real Redis of the suite.
Every bad request is a 400 (413, 415) naming what is wrong, and writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from support import keys_under, redis_contents
from support.servers import ApiClient as Client
from support.servers import api_client, error_of, send

from relay_trio.broker import Broker
from relay_trio.schedules import Schedule
from relay_trio.server.openapi import build_openapi

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

FIELDS = {
    "name",
    "cron",
    "queue",
    "payload",
    "timezone",
    "priority",
    "next_fire_at",
    "last_fire_at",
}
NIGHTLY = {"name": "nightly", "cron": "0 3 * * *", "queue": "reports", "payload": "run"}


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


def redis_now_ms(rdb: redis.Redis) -> int:
    seconds, micros = rdb.time()
    return int(seconds) * 1000 + int(micros) // 1000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


async def save(client: Client, body: dict[str, Any], status: int = 201) -> Any:
    r = await client.post("/api/schedules", json=body)
    assert r.status_code == status, await r.get_data(as_text=True)
    return await r.get_json()


# -- create, read, replace, delete ----------------------------------------------------------


async def test_schedule_crud(client: Client, broker: Broker, rdb: redis.Redis, prefix: str) -> None:
    assert await (await client.get("/api/schedules")).get_json() == []
    r = await client.post("/api/schedules", json=NIGHTLY)
    assert r.status_code == 201
    assert r.headers["Location"] == "/api/schedules/nightly"
    created = await r.get_json()
    assert set(created) == FIELDS
    assert {k: created[k] for k in NIGHTLY} == NIGHTLY
    assert (created["timezone"], created["priority"], created["last_fire_at"]) == ("UTC", 0, None)
    assert created["next_fire_at"].endswith("T03:00:00Z")
    assert await broker.get_schedule("nightly") == Schedule.create(
        "nightly", "0 3 * * *", "reports", b"run"
    )
    assert await (await client.get("/api/schedules/nightly")).get_json() == created

    more = {"name": "a-first", "cron": "*/10 * * * *", "queue": "q", "payload": "{}"}
    await save(client, {**more, "timezone": "Europe/Berlin", "priority": 7})
    listed = await (await client.get("/api/schedules")).get_json()
    assert [s["name"] for s in listed] == ["a-first", "nightly"]
    assert (listed[0]["timezone"], listed[0]["priority"]) == ("Europe/Berlin", 7)

    # Replacing: 200, the new definition.
    replaced = await save(client, {**NIGHTLY, "cron": "15  4 * * *", "payload": "v2"}, 200)
    assert (replaced["cron"], replaced["payload"]) == ("15 4 * * *", "v2")
    assert replaced["next_fire_at"].endswith("T04:15:00Z")
    assert len(await (await client.get("/api/schedules")).get_json()) == 2

    r = await client.delete("/api/schedules/nightly")
    assert r.status_code == 200 and await r.get_json() == {"deleted": True}
    assert "nightly" in await error_of(await client.get("/api/schedules/nightly"), 404)
    await error_of(await client.delete("/api/schedules/nightly"), 404)
    assert [s["name"] for s in await (await client.get("/api/schedules")).get_json()] == ["a-first"]
    assert (await client.delete("/api/schedules/a-first")).status_code == 200
    assert keys_under(rdb, prefix) == []


async def test_next_and_last_fire_times(client: Client, broker: Broker, rdb: redis.Redis) -> None:
    before = redis_now_ms(rdb)
    body = await save(client, {**NIGHTLY, "cron": "*/5 * * * *"})
    after = redis_now_ms(rdb)
    five_min = 300_000
    expected = {(t // five_min + 1) * five_min for t in (before, after)}
    assert ms_of(body["next_fire_at"]) in expected
    assert body["next_fire_at"] == iso(ms_of(body["next_fire_at"]))  # 2026-...T..:..:00Z

    # A daily time in another zone: 09:30 in Kolkata (UTC+5:30, no DST) is 04:00 UTC.
    india = await save(
        client, {**NIGHTLY, "name": "india", "cron": "30 9 * * *", "timezone": "Asia/Kolkata"}
    )
    next_ms = ms_of(india["next_fire_at"])
    assert india["next_fire_at"].endswith("T04:00:00Z")
    assert before < next_ms <= after + 24 * 3600 * 1000

    # Seconds first in a 6-field form.
    fast = await save(client, {**NIGHTLY, "name": "fast", "cron": "*/15 * * * * *"})
    assert ms_of(fast["next_fire_at"]) % 15_000 == 0
    assert ms_of(fast["next_fire_at"]) - before <= 15_000 + (after - before)

    # A fire recorded by a scheduler shows as last_fire_at, and a replace keeps it.
    schedule = await broker.get_schedule("nightly")
    assert schedule is not None
    fire_ms = (before // five_min) * five_min
    assert await broker.fire_schedule(schedule, fire_ms)
    shown = await (await client.get("/api/schedules/nightly")).get_json()
    assert shown["last_fire_at"] == iso(fire_ms)
    again = await save(client, {**NIGHTLY, "cron": "*/5 * * * *", "payload": "v2"}, 200)
    assert again["last_fire_at"] == iso(fire_ms)
    listed = {s["name"]: s for s in await (await client.get("/api/schedules")).get_json()}
    assert listed["nightly"]["last_fire_at"] == iso(fire_ms)
    assert listed["india"]["last_fire_at"] is None


async def test_schedules_stored_by_python_show_too(client: Client, broker: Broker) -> None:
    schedule = Schedule.create("py", "0 0 1 1 *", "q", b"\xff bytes", priority=255)
    assert await broker.put_schedule(schedule)
    (shown,) = await (await client.get("/api/schedules")).get_json()
    assert (shown["name"], shown["payload"], shown["priority"]) == ("py", "\ufffd bytes", 255)
    assert shown["next_fire_at"].endswith("-01-01T00:00:00Z")


# -- bad requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"cron": "* * * * * * *"}, "cron"),
        ({"cron": "@daily"}, "cron"),
        ({"cron": "not a cron at all"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),  # never matches
        ({"cron": ""}, "cron"),
        ({"cron": "* * * * *\n"}, "cron"),
        ({"cron": "x" * 300}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "localtime"}, "timezone"),
        ({"queue": "b@d"}, "queue"),
        ({"queue": ".."}, "queue"),
        ({"queue": ""}, "queue"),
        ({"queue": "q" * 65}, "queue"),
        ({"name": "has space"}, "name"),
        ({"name": "."}, "name"),
        ({"name": "n" * 65}, "name"),
        ({"priority": 256}, "priority"),
        ({"priority": -1}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": None}, "priority"),
        ({"name": 5}, "name"),
        ({"cron": None}, "cron"),
        ({"cron": ["*"] * 5}, "cron"),
        ({"queue": {"q": 1}}, "queue"),
        ({"payload": {"a": 1}}, "payload"),
        ({"payload": None}, "payload"),
        ({"payload": "a\ud800b"}, "payload"),
        ({"timezone": 3}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"every": "day"}, "unknown field"),
        ({"next_fire_at": None}, "unknown field"),
    ],
)
async def test_bad_schedules_are_400_naming_the_field(
    client: Client, rdb: redis.Redis, prefix: str, change: dict[str, Any], field: str
) -> None:
    await save(client, NIGHTLY)
    before = redis_contents(rdb, prefix)
    r = await client.post("/api/schedules", json={**NIGHTLY, "name": "other", **change})
    assert field in await error_of(r, 400)
    assert set(await r.get_json()) == {"error"}
    assert redis_contents(rdb, prefix) == before


@pytest.mark.parametrize("missing", ["name", "cron", "queue", "payload"])
async def test_required_fields(client: Client, rdb: redis.Redis, prefix: str, missing: str) -> None:
    body = {k: v for k, v in NIGHTLY.items() if k != missing}
    assert missing in await error_of(await client.post("/api/schedules", json=body), 400)
    assert keys_under(rdb, prefix) == []


async def test_malformed_bodies(client: Client, rdb: redis.Redis, prefix: str) -> None:
    for raw in ("", "[]", '"x"', "{", '{"name": "a", "name": "b"}', "NaN"):
        await error_of(await send(client, "POST", "/api/schedules", raw), 400)
    r = await send(client, "POST", "/api/schedules", "name=x", **{"Content-Type": "text/plain"})
    await error_of(r, 415)
    await error_of(await client.post("/api/schedules?force=1", json=NIGHTLY), 400)
    assert keys_under(rdb, prefix) == []


async def test_integral_priorities_count_as_integers(client: Client) -> None:
    body = await save(client, {**NIGHTLY, "priority": 5.0})
    assert body["priority"] == 5


async def test_an_oversize_payload_is_413(redis_server: Any, prefix: str, rdb: redis.Redis) -> None:
    async with api_client(redis_server.url, prefix, max_payload_bytes=8) as client:
        r = await client.post("/api/schedules", json={**NIGHTLY, "payload": "é" * 5})
        assert "payload" in await error_of(r, 413)
        await save(client, {**NIGHTLY, "payload": "é" * 4})


async def test_bad_names_in_the_path(client: Client, rdb: redis.Redis, prefix: str) -> None:
    await save(client, NIGHTLY)
    before = redis_contents(rdb, prefix)
    for name in ("b@d", "n" * 65, "has%20space"):
        assert "name" in await error_of(await client.get(f"/api/schedules/{name}"), 400)
        await error_of(await client.delete(f"/api/schedules/{name}"), 400)
    await error_of(await send(client, "DELETE", "/api/schedules/nightly", '{"x": 1}'), 400)
    await error_of(await client.get("/api/schedules/nightly?verbose=1"), 400)
    await error_of(await client.put("/api/schedules/nightly", json=NIGHTLY), 405)
    assert redis_contents(rdb, prefix) == before


# -- read-only mode, auth, CSRF ----------------------------------------------------------------


async def test_writes_are_refused_in_read_only_mode(
    redis_server: Any, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    assert await broker.put_schedule(Schedule.create("kept", "0 3 * * *", "q", b"x"))
    before = redis_contents(rdb, prefix)
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        for method, path, body in (
            (
                "POST",
                "/api/schedules",
                '{"name": "n", "cron": "* * * * *", "queue": "q", "payload": "x"}',
            ),
            ("DELETE", "/api/schedules/kept", ""),
            ("DELETE", "/api/schedules/ghost", ""),
        ):
            assert "read-only" in await error_of(await send(client, method, path, body), 403)
        assert [s["name"] for s in await (await client.get("/api/schedules")).get_json()] == [
            "kept"
        ]
        assert (await client.get("/api/schedules/kept")).status_code == 200
    assert redis_contents(rdb, prefix) == before


async def test_schedules_want_the_token_and_no_cross_site_writes(
    redis_server: Any, rdb: redis.Redis, prefix: str
) -> None:
    async with api_client(redis_server.url, prefix, api_token="s3cret") as client:
        await error_of(await client.get("/api/schedules"), 401)
        await error_of(await client.post("/api/schedules", json=NIGHTLY), 401)
        await error_of(await client.delete("/api/schedules/nightly"), 401)
        ok = {"Authorization": "Bearer s3cret"}
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            r = await client.post("/api/schedules", json=NIGHTLY, headers={**ok, **headers})
            await error_of(r, 403)
        assert keys_under(rdb, prefix) == []
        r = await client.post("/api/schedules", json=NIGHTLY, headers=ok)
        assert r.status_code == 201
        assert (await client.get("/api/schedules/nightly", headers=ok)).status_code == 200


# -- the document -----------------------------------------------------------------------------


def test_openapi_documents_the_schedule_routes() -> None:
    doc = build_openapi()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    save_op = paths["/api/schedules"]["post"]
    assert {"200", "201", "400", "403", "413", "415"} <= set(save_op["responses"])
    request = schemas["ScheduleRequest"]
    assert request["additionalProperties"] is False
    assert request["required"] == ["name", "cron", "queue", "payload"]
    assert set(request["properties"]) == FIELDS - {"next_fire_at", "last_fire_at"}
    assert request["properties"]["cron"]["format"] == "cron"
    assert set(schemas["Schedule"]["required"]) == FIELDS
    assert "404" in paths["/api/schedules/{name}"]["get"]["responses"]
    assert "404" in paths["/api/schedules/{name}"]["delete"]["responses"]
    assert paths["/api/schedules"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] == {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}
