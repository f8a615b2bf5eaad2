"""``GET /api/queues/{q}/jobs?state=…&limit&offset`` (spec section 12): every
state's jobs in that state's order, paged, payloads cut in the list and whole in
the single-job endpoint; and the broker operation under it, ``jobs_page``."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
import trio
from support import keys_under, make_dead
from support.servers import ApiClient as Client
from support.servers import api_client, error_of

from relay_trio._errors import InvalidInput
from relay_trio.broker import LISTED_STATES, Broker
from relay_trio.server.limits import LIST_PAYLOAD_BYTES

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

STATES = [s.value for s in LISTED_STATES]


@pytest.fixture
async def client(redis_server: Any, prefix: str) -> AsyncIterator[Client]:
    async with api_client(redis_server.url, prefix) as c:
        yield c


async def listed(client: Client, queue: str, query: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/queues/{queue}/jobs?{query}")
    assert r.status_code == 200, await r.get_data(as_text=True)
    body = await r.get_json()
    assert isinstance(body, list)
    return body


async def ids(client: Client, queue: str, query: str) -> list[str]:
    return [job["id"] for job in await listed(client, queue, query)]


async def test_the_listed_states_are_the_spec_s() -> None:
    assert STATES == ["ready", "inflight", "delayed", "dead", "done", "cancelled"]


async def test_ready_in_claim_order_with_paging(client: Client, broker: Broker) -> None:
    specs = [broker.spec(f"p{p}-{i}", priority=p) for i, p in enumerate((0, 5, 0, 5, 9))]
    made = [r.id for r in await broker.enqueue_many("q", specs)]
    claim_order = [made[4], made[1], made[3], made[0], made[2]]  # priority, then age
    assert await ids(client, "q", "state=ready") == claim_order
    assert await ids(client, "q", "state=ready&limit=2&offset=1") == claim_order[1:3]
    assert await ids(client, "q", "state=ready&offset=4&limit=1000") == claim_order[4:]
    assert await ids(client, "q", "state=ready&offset=5") == []
    jobs = await listed(client, "q", "state=ready&limit=1")
    assert jobs[0]["state"] == "ready" and jobs[0]["priority"] == 9
    assert [j.id for j in (await broker.claim("q", 5)).jobs] == claim_order  # as claimed


async def test_inflight_by_deadline(client: Client, broker: Broker) -> None:
    made = [r.id for r in await broker.enqueue_many("q", [broker.spec(str(i)) for i in range(3)])]
    for visibility in (60_000, 20_000, 40_000):
        await broker.claim("q", 1, visibility_ms=visibility)
    assert await ids(client, "q", "state=inflight") == [made[1], made[2], made[0]]
    assert await ids(client, "q", "state=inflight&offset=1&limit=1") == [made[2]]
    jobs = await listed(client, "q", "state=inflight")
    deadlines = [j["deadline"] for j in jobs]
    assert all(deadlines) and deadlines == sorted(deadlines)
    assert [j["state"] for j in jobs] == ["inflight"] * 3
    assert await ids(client, "q", "state=ready") == []


async def test_delayed_by_ready_at(client: Client, broker: Broker) -> None:
    made = {d: (await broker.enqueue("q", f"in {d}", delay_ms=d)).id for d in (30_000, 10_000)}
    made[20_000] = (await broker.enqueue("q", "in 20000", delay_ms=20_000)).id
    assert await ids(client, "q", "state=delayed") == [made[10_000], made[20_000], made[30_000]]
    assert await ids(client, "q", "state=delayed&limit=1&offset=2") == [made[30_000]]
    jobs = await listed(client, "q", "state=delayed")
    assert [j["ready_at"] for j in jobs] == sorted(j["ready_at"] for j in jobs)
    assert all(j["deadline"] is None and j["dead_at"] is None for j in jobs)


async def test_dead_oldest_first_beyond_the_first_page(client: Client, broker: Broker) -> None:
    made = await make_dead(broker, "d", 60)
    assert await ids(client, "d", "state=dead") == made[:50]  # the default page: 50
    assert await ids(client, "d", "state=dead&offset=50") == made[50:]
    assert await ids(client, "d", "state=dead&limit=1000") == made
    first = (await listed(client, "d", "state=dead&limit=1"))[0]
    assert (first["state"], first["last_error"], first["attempts"]) == ("dead", "boom", 1)
    assert first["dead_at"] is not None
    dlq = await (await client.get("/api/queues/d/dlq?limit=3&offset=2")).get_json()
    assert [j["id"] for j in dlq] == made[2:5]  # the DLQ list stays as it was


async def test_done_and_cancelled_most_recently_finished_first(
    client: Client, broker: Broker
) -> None:
    made = [r.id for r in await broker.enqueue_many("q", [broker.spec(str(i)) for i in range(6)])]
    claimed = {j.id: j for j in (await broker.claim("q", 3)).jobs}
    for job_id in made[:3]:
        assert await broker.ack(claimed[job_id], {"n": job_id[:4]})
        await trio.sleep(0.005)  # finished on distinct milliseconds
    for job_id in made[3:]:
        assert (await broker.cancel("q", job_id)).value == "cancelled"
        await trio.sleep(0.005)
    assert await ids(client, "q", "state=done") == made[2::-1]
    assert await ids(client, "q", "state=done&limit=1&offset=1") == [made[1]]
    assert await ids(client, "q", "state=cancelled") == made[:2:-1]
    done = await listed(client, "q", "state=done")
    assert done[0]["result"] == {"n": made[2][:4]} and done[0]["finished_at"] is not None
    assert [j["state"] for j in done] == ["done"] * 3
    assert await ids(client, "q", "state=ready") == []


async def test_large_payloads_are_cut_in_lists_and_whole_alone(
    client: Client, broker: Broker
) -> None:
    # 1 + 2 * 2000 bytes: byte 1024 is inside an "é", so the cut is at 1023
    big = "a" + "é" * 2000
    big_id = (await broker.enqueue("q", big)).id
    small_id = (await broker.enqueue("q", "small é")).id
    exact_id = (await broker.enqueue("q", "x" * LIST_PAYLOAD_BYTES)).id
    jobs = {j["id"]: j for j in await listed(client, "q", "state=ready")}
    cut = jobs[big_id]
    assert cut["payload"] == "a" + "é" * 511
    assert (cut["payload_bytes"], cut["payload_truncated"]) == (4001, True)
    small = jobs[small_id]
    assert (small["payload"], small["payload_bytes"], small["payload_truncated"]) == (
        "small é",
        8,
        False,
    )
    exact = jobs[exact_id]
    assert (exact["payload_bytes"], exact["payload_truncated"]) == (LIST_PAYLOAD_BYTES, False)
    alone = await (await client.get(f"/api/queues/q/jobs/{big_id}")).get_json()
    assert alone["payload"] == big and "payload_truncated" not in alone


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("", "state"),
        ("state=", "state"),
        ("state=pending", "state"),
        ("state=READY", "state"),
        ("state=dlq", "state"),
        ("state=ready&state=dead", "state"),
        ("state=ready&limit=0", "limit"),
        ("state=ready&limit=1001", "limit"),
        ("state=ready&limit=abc", "limit"),
        ("state=ready&limit=1.5", "limit"),
        ("state=ready&offset=-1", "offset"),
        ("state=ready&offset=99999999999999999999999", "offset"),
        ("state=ready&page=2", "page"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    client: Client, rdb: redis.Redis, prefix: str, query: str, named: str
) -> None:
    error = await error_of(await client.get(f"/api/queues/q/jobs?{query}"), 400)
    assert named in error
    if named == "state":
        assert ", ".join(STATES) in error or "once" in error
    assert keys_under(rdb, prefix) == []


async def test_an_unknown_state_names_the_allowed_ones(client: Client) -> None:
    error = await error_of(await client.get("/api/queues/q/jobs?state=running"), 400)
    assert "ready, inflight, delayed, dead, done, cancelled" in error


async def test_bad_queue_name_is_400(client: Client) -> None:
    assert "queue" in await error_of(await client.get("/api/queues/a:b/jobs?state=ready"), 400)


@pytest.mark.parametrize("state", STATES)
async def test_a_queue_never_used_lists_nothing(
    client: Client, rdb: redis.Redis, prefix: str, state: str
) -> None:
    assert await listed(client, "never-used", f"state={state}") == []
    assert keys_under(rdb, prefix) == []  # reading registers nothing


async def test_jobs_whose_hash_vanished_are_left_out(
    client: Client, broker: Broker, rdb: redis.Redis
) -> None:
    made = [r.id for r in await broker.enqueue_many("q", [broker.spec(str(i)) for i in range(4)])]
    rdb.delete(broker.keys.queue("q").job(made[1]))  # gone between the two calls, say
    assert await ids(client, "q", "state=ready") == [made[0], *made[2:]]
    assert [j.id for j in await broker.jobs_page("q", "ready", 2, 0)] == [made[0]]


async def test_the_broker_operation_checks_its_input(broker: Broker) -> None:
    for state, limit, offset, field in (
        ("pending", 10, 0, "state"),
        ("ready", 0, 0, "limit"),
        ("ready", 1001, 0, "limit"),
        ("dead", 10, -1, "offset"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await broker.jobs_page("q", state, limit, offset)
        assert refused.value.field == field
    with pytest.raises(InvalidInput):
        await broker.jobs_page("a b", "ready")


async def test_listed_jobs_carry_every_field(client: Client, broker: Broker) -> None:
    job_id = (await broker.enqueue("q", "x", idempotency_key="k", timeout_ms=500)).id
    (job,) = await listed(client, "q", "state=ready")
    alone = await (await client.get(f"/api/queues/q/jobs/{job_id}")).get_json()
    assert set(job) == set(alone) | {"payload_bytes", "payload_truncated"}
    assert {k: job[k] for k in alone} == alone
    assert (job["idempotency_key"], job["timeout_ms"]) == ("k", 500)


async def test_lists_follow_the_api_token_and_read_only(redis_server: Any, prefix: str) -> None:
    async with api_client(redis_server.url, prefix, api_token=secrets.token_hex(8)) as client:
        await error_of(await client.get("/api/queues/q/jobs?state=ready"), 401)
    async with api_client(redis_server.url, prefix, read_only=True) as client:
        assert await listed(client, "q", "state=dead") == []
