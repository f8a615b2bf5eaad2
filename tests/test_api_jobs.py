"""One job through the API (spec section 11): its result, waiting for its end
(``?wait=``), and cancel / abort, against the real Redis of the suite.

A wait is one blocking pop the job's end wakes: the tests end the job with a
broker of their own (ack, nack, cancel, a worker's abort) while a request
waits, and check that the answer comes right after the end, not at the end of
the wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
import trio
from support import eventually, keys_under, redis_contents, running_worker
from support.servers import ApiClient as Client
from support.servers import api_client, error_of, running_server, send

from relay_trio import Job, QueueHandler
from relay_trio.broker import Broker
from relay_trio.server import ServerConfig, create_app
from relay_trio.server.api_jobs import JOB_WAITERS_CONFIG, MAX_JOB_WAITERS
from relay_trio.server.openapi import build_openapi

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "work"


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


async def job_of(client: Client, job_id: str, query: str = "", queue: str = Q) -> Any:
    r = await client.get(f"/api/queues/{queue}/jobs/{job_id}{query}")
    assert r.status_code == 200, await r.get_data(as_text=True)
    return await r.get_json()


async def claimed(broker: Broker, job_id: str, queue: str = Q) -> Job:
    (job,) = (await broker.claim(queue, 1)).jobs
    assert job.id == job_id
    return job


def waiters(rdb: redis.Redis, broker: Broker, job_id: str, queue: str = Q) -> int:
    """How many waits the job counts (each gets one token when it ends)."""
    return int(rdb.hget(broker.keys.queue(queue).job(job_id), "waiters") or 0)


async def wait_and_end(
    client: Client,
    rdb: redis.Redis,
    broker: Broker,
    job_id: str,
    end: Callable[[], Awaitable[object]],
    wait: float = 20,
) -> tuple[Any, float, float]:
    """GET the job with ``?wait=``, run ``end`` once the request waits, and return
    the job it answered, the seconds from ``end`` to the answer, and in all."""
    out: dict[str, Any] = {}

    async def ask() -> None:
        started = trio.current_time()
        out["job"] = await job_of(client, job_id, f"?wait={wait}")
        out["answered"] = trio.current_time()
        out["total"] = out["answered"] - started

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await eventually(lambda: waiters(rdb, broker, job_id) == 1)
        await trio.sleep(0.1)  # it waits, and keeps waiting
        assert "job" not in out
        ended = trio.current_time()
        await end()
    return out["job"], out["answered"] - ended, out["total"]


# -- the job and its result ------------------------------------------------------------


async def test_a_done_job_shows_its_result(client: Client, broker: Broker) -> None:
    first = (await broker.enqueue(Q, "a")).id
    second = (await broker.enqueue(Q, "b")).id
    assert await broker.ack(await claimed(broker, first), {"sum": 5, "ok": [True, None]})
    assert await broker.ack(await claimed(broker, second), b"raw \xe2\x9c\x93")
    job = await job_of(client, first)
    assert (job["state"], job["result"], job["result_type"]) == (
        "done",
        {"sum": 5, "ok": [True, None]},
        "json",
    )
    assert job["finished_at"].endswith("Z")
    job = await job_of(client, second)
    assert (job["state"], job["result"], job["result_type"]) == ("done", "raw ✓", "bytes")
    ready = await job_of(client, (await broker.enqueue(Q, "c")).id)
    assert ready["state"] == "ready"
    assert (ready["result"], ready["result_type"], ready["finished_at"]) == (None, None, None)


async def test_unknown_jobs_and_bad_names(client: Client, broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    for query in ("", "?wait=5"):
        assert "not found" in await error_of(
            await client.get(f"/api/queues/{Q}/jobs/{'0' * 32}{query}"), 404
        )
        await error_of(await client.get(f"/api/queues/other/jobs/{job_id}{query}"), 404)
        await error_of(await client.get(f"/api/queues/b@d/jobs/{job_id}{query}"), 400)
        await error_of(await client.get(f"/api/queues/{Q}/jobs/NOT-AN-ID{query}"), 404)


# -- ?wait= ------------------------------------------------------------------------------


async def test_wait_answers_right_after_the_ack(
    client: Client, broker: Broker, rdb: redis.Redis
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    job = await claimed(broker, job_id)
    seen, after_end, total = await wait_and_end(
        client, rdb, broker, job_id, lambda: broker.ack(job, [1, 2, 3])
    )
    assert (seen["state"], seen["result"]) == ("done", [1, 2, 3])
    assert after_end < 1.0 and total < 5


@pytest.mark.parametrize("how", ["cancel", "nack"])
async def test_wait_answers_right_after_a_cancel_or_a_dead_letter(
    client: Client, broker: Broker, rdb: redis.Redis, how: str
) -> None:
    job_id = (await broker.enqueue(Q, "x", max_retries=0)).id
    if how == "cancel":
        seen, after_end, _ = await wait_and_end(
            client, rdb, broker, job_id, lambda: broker.cancel(Q, job_id)
        )
        assert seen["state"] == "cancelled"
    else:
        job = await claimed(broker, job_id)
        seen, after_end, _ = await wait_and_end(
            client, rdb, broker, job_id, lambda: broker.nack(job, "boom")
        )
        assert (seen["state"], seen["last_error"]) == ("dead", "boom")
    assert after_end < 1.0


async def test_wait_without_an_end_answers_after_the_wait(client: Client, broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    started = trio.current_time()
    job = await job_of(client, job_id, "?wait=1.5")
    assert 1.4 <= trio.current_time() - started < 3.5
    assert job["state"] == "ready"


async def test_a_job_that_has_ended_is_answered_at_once(client: Client, broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    await broker.cancel(Q, job_id)
    for query in ("?wait=60", "?wait=0", "?wait=0.5", "?wait=1e1", "?wait=3.0", ""):
        started = trio.current_time()
        assert (await job_of(client, job_id, query))["state"] == "cancelled"
        assert trio.current_time() - started < 1


@pytest.mark.parametrize(
    "wait",
    [
        "-1",
        "61",
        "60.5",
        "abc",
        "",
        "1e400",
        "nan",
        "inf",
        "1,5",
        "0x10",
        "%201",
        "1_0",
        "5&wait=5",
    ],
)
async def test_bad_waits_are_400(client: Client, broker: Broker, wait: str) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    assert "wait" in await error_of(
        await client.get(f"/api/queues/{Q}/jobs/{job_id}?wait={wait}"), 400
    )
    await error_of(await client.get(f"/api/queues/{Q}/jobs/{'0' * 32}?wait={wait}"), 400)


async def test_waits_beyond_the_cap_are_429_at_once(
    redis_server: Any, prefix: str, broker: Broker, rdb: redis.Redis
) -> None:
    assert MAX_JOB_WAITERS >= 16
    app = create_app(ServerConfig(redis_url=redis_server.url, prefix=prefix))
    app.config[JOB_WAITERS_CONFIG] = 2
    first, second, third = [(await broker.enqueue(Q, str(i))).id for i in range(3)]
    async with app.test_app() as test_app:
        client = test_app.test_client()
        answers: dict[str, Any] = {}

        async def hold(job_id: str) -> None:
            answers[job_id] = await job_of(client, job_id, "?wait=30")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold, first)
            nursery.start_soon(hold, second)
            await eventually(
                lambda: waiters(rdb, broker, first) + waiters(rdb, broker, second) == 2
            )
            started = trio.current_time()
            r = await client.get(f"/api/queues/{Q}/jobs/{third}?wait=30")
            assert "wait" in await error_of(r, 429)
            assert r.headers["Retry-After"] == "1"
            assert trio.current_time() - started < 1
            assert waiters(rdb, broker, third) == 0  # refused before Redis was asked
            assert (await job_of(client, third))["state"] == "ready"  # no wait: served
            await broker.cancel(Q, first)
            await eventually(lambda: first in answers)
            # A wait ended: its place is free again.
            assert (await job_of(client, third, "?wait=0.2"))["state"] == "ready"
            await broker.cancel(Q, second)
        assert answers[first]["state"] == answers[second]["state"] == "cancelled"


async def test_a_wait_given_up_frees_its_place(
    redis_server: Any, prefix: str, broker: Broker, rdb: redis.Redis
) -> None:
    app = create_app(ServerConfig(redis_url=redis_server.url, prefix=prefix))
    app.config[JOB_WAITERS_CONFIG] = 1
    job_id = (await broker.enqueue(Q, "x")).id
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for count in range(1, 4):  # each wait counts itself in the job, and stays counted
            with trio.move_on_after(5) as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(job_of, client, job_id, "?wait=30")
                    await eventually(lambda: waiters(rdb, broker, job_id) >= count)  # noqa: B023
                    nursery.cancel_scope.cancel()  # the client goes away
            assert not scope.cancelled_caught  # the place was free: no 429, no hang
        assert (await job_of(client, job_id, "?wait=0.1"))["state"] == "ready"


async def test_a_real_server_answers_a_wait_when_a_worker_aborts_the_job(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    """The whole path: a worker runs the job, the API cancels it, the worker
    aborts the handler, and the waiting HTTP request gets ``cancelled``."""
    started_jobs: list[str] = []

    async def forever(job: Job) -> None:
        started_jobs.append(job.id)
        await trio.sleep_forever()

    job_id = (await broker.enqueue(Q, "x")).id
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        running_worker(broker, [QueueHandler(Q, forever)], abort_check_interval=0.2),
    ):
        await eventually(lambda: started_jobs == [job_id])
        answer: dict[str, Any] = {}

        async def ask() -> None:
            r = await http.get(f"/api/queues/{Q}/jobs/{job_id}", params={"wait": 20})
            answer["at"] = trio.current_time()
            answer["job"] = r.json()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.sleep(0.3)
            r = await http.post(f"/api/queues/{Q}/jobs/{job_id}/cancel")
            cancelled_at = trio.current_time()
            assert r.status_code == 200
            assert r.json() == {"id": job_id, "state": "inflight"}
        assert answer["job"]["state"] == "cancelled"
        assert answer["at"] - cancelled_at < 2.0  # the abort check runs every 0.2 s
    assert (await broker.stats(Q)).inflight == 0


# -- cancel -----------------------------------------------------------------------------


def cancel_path(job_id: str, queue: str = Q) -> str:
    return f"/api/queues/{queue}/jobs/{job_id}/cancel"


async def test_cancel_a_ready_and_a_delayed_job(client: Client, broker: Broker) -> None:
    ready = (await broker.enqueue(Q, "r")).id
    delayed = (await broker.enqueue(Q, "d", delay_ms=60_000)).id
    for job_id in (ready, delayed):
        r = await client.post(cancel_path(job_id))
        assert r.status_code == 200
        assert await r.get_json() == {"id": job_id, "state": "cancelled"}
        job = await job_of(client, job_id)
        assert job["state"] == "cancelled" and job["finished_at"] is not None
    stats = await broker.stats(Q)
    assert (stats.ready, stats.delayed, stats.inflight) == (0, 0, 0)
    assert (await broker.claim(Q, 10)).jobs == []


async def test_cancel_an_inflight_job_requests_its_abort(
    client: Client, broker: Broker, rdb: redis.Redis
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    job = await claimed(broker, job_id)
    for _ in range(2):  # asking again changes nothing
        r = await client.post(cancel_path(job_id))
        assert r.status_code == 200
        assert await r.get_json() == {"id": job_id, "state": "inflight"}
    assert rdb.hget(broker.keys.queue(Q).job(job_id), "cancel_requested") == b"1"
    assert (await job_of(client, job_id))["state"] == "inflight"
    assert await broker.aborts([Q]) == {Q: {job_id}}
    assert await broker.finish_abort(job)  # what the worker running it does
    assert (await job_of(client, job_id))["state"] == "cancelled"
    r = await client.post(cancel_path(job_id))
    assert "ended" in await error_of(r, 409)
    assert (await r.get_json())["state"] == "cancelled"


async def test_cancel_of_a_finished_job_is_409_with_its_state(
    client: Client, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    done = (await broker.enqueue(Q, "ok")).id
    assert await broker.ack(await claimed(broker, done), "fine")
    dead = (await broker.enqueue(Q, "bad", max_retries=0)).id
    assert (await broker.nack(await claimed(broker, dead), "boom")).outcome == "dead"
    before = redis_contents(rdb, prefix)
    for job_id, state in ((done, "done"), (dead, "dead")):
        r = await client.post(cancel_path(job_id))
        assert state in await error_of(r, 409)
        body = await r.get_json()
        assert set(body) == {"error", "state"} and body["state"] == state
    assert redis_contents(rdb, prefix) == before


async def test_cancel_of_unknown_jobs_and_bad_requests(
    client: Client, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    before = redis_contents(rdb, prefix)
    assert "not found" in await error_of(await client.post(cancel_path("0" * 32)), 404)
    await error_of(await client.post(cancel_path(job_id, "ghost")), 404)
    await error_of(await client.post(cancel_path(job_id, "b@d")), 400)
    await error_of(await client.post(cancel_path("XYZ")), 404)
    await error_of(await client.post(cancel_path(job_id) + "?now=1"), 400)
    await error_of(await send(client, "POST", cancel_path(job_id), '{"force": true}'), 400)
    await error_of(await client.get(cancel_path(job_id)), 405)
    await error_of(
        await client.post(cancel_path(job_id), headers={"Sec-Fetch-Site": "cross-site"}), 403
    )
    await error_of(
        await client.post(cancel_path(job_id), headers={"Origin": "http://evil.example"}), 403
    )
    assert redis_contents(rdb, prefix) == before


async def test_cancel_is_refused_in_read_only_mode_and_without_the_token(
    redis_server: Any, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        assert (await job_of(client, job_id, "?wait=0.1"))["state"] == "ready"  # reads: yes
        before = redis_contents(rdb, prefix)  # (a wait counts itself in the job's hash)
        assert "read-only" in await error_of(await client.post(cancel_path(job_id)), 403)
        assert "read-only" in await error_of(await client.post(cancel_path("0" * 32)), 403)
        assert redis_contents(rdb, prefix) == before
    async with api_client(redis_server.url, prefix, api_token="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            await error_of(await client.post(cancel_path(job_id), headers=headers), 401)
            await error_of(await client.get(f"/api/queues/{Q}/jobs/{job_id}", headers=headers), 401)
        assert redis_contents(rdb, prefix) == before
        r = await client.post(cancel_path(job_id), headers={"Authorization": "Bearer s3cret"})
        assert (await r.get_json())["state"] == "cancelled"
    assert keys_under(rdb, prefix)  # the cancelled job is kept, to be read


# -- the document ---------------------------------------------------------------------------


def test_openapi_documents_the_job_routes() -> None:
    doc = build_openapi()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    get = paths["/api/queues/{q}/jobs/{id}"]["get"]
    assert {"$ref": "#/components/parameters/Wait"} in get["parameters"]
    assert {"200", "404", "429"} <= set(get["responses"])
    wait = doc["components"]["parameters"]["Wait"]["schema"]
    assert (wait["type"], wait["minimum"], wait["maximum"]) == ("number", 0, 60)
    cancel = paths["/api/queues/{q}/jobs/{id}/cancel"]["post"]
    assert set(cancel["responses"]) == {"200", "400", "401", "403", "404", "409", "503"}
    conflict = cancel["responses"]["409"]["content"]["application/json"]["schema"]
    assert conflict == {"$ref": "#/components/schemas/JobFinishedError"}
    assert schemas["Cancelled"]["properties"]["state"]["enum"] == ["cancelled", "inflight"]
    job = schemas["Job"]["properties"]
    assert {"result", "result_type", "finished_at"} <= set(job)
    assert "done" in schemas["JobState"]["enum"] and "cancelled" in schemas["JobState"]["enum"]
