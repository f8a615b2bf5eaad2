"""Redis Sentinel (spec 13), the server's side: ``relay-trio server`` on a
``redis+sentinel://`` URL carries on across a failover, without a restart.

A real master, replica and sentinel (``support.sentinel``, all ``redis-server``)
and a real server process on port 0 (``support.servers.ServerProcess``), the
hub polling every 0.1 s, keep-alives every 0.5 s; alone, and with ``--fleet``
(its poll goes through the fleet's lease and its snapshots through Redis
pub/sub, both on the master that dies). One SSE client reads
``/api/stream`` on one connection all along; HTTP clients enqueue (POST) and
read queue stats and ``/readyz`` (GET) without pause, and one ``?wait=`` request
is in flight (on the blocking pool) when the master is killed with SIGKILL.

After the sentinel promotes the replica, the same server process (same pid,
never restarted):

- answers the API with 2xx again (enqueues, stats, a ``?wait=``, ``/readyz``);
- streams new snapshots on the same connection, whose content is what was
  written after the promotion (a queue created then, and the depth of the
  loaded queue as the API reads it then), under event ids that kept increasing;

and from the kill until the sentinel switched to the new master (its
``+switch-master``, read off its log) every API call answered 503 with a JSON
error (``{"error": "Redis is unavailable: ..."}``; ``/readyz``: ``Redis is not
ready``), well within the socket timeout (in practice in milliseconds), never a
500; the ``?wait=`` in flight got its 503 at once; the stream stayed open, with
keep-alive comments.

Measured (printed with ``-s``, and recorded with ``record_property``): the
promotion time, the switch, and how long after the kill the API and the stream
recovered.

Also here: the fleet's subscription (a blocking twin of the broker's sentinel
client) closing must leave the sentinel connections it shares alone.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
from support.sentinel import (
    DOWN_AFTER_MS,
    SERVICE,
    SentinelSetup,
    needs_sentinel,
    sentinel_setup,
)
from support.servers import ServerProcess
from support.sse import Events, data_of, is_data

from relay_trio.redis_connect import blocking_twin
from relay_trio.redis_sentinel import sentinel_client

pytestmark = needs_sentinel

LOAD = "load"  # enqueued to before, during and after the failover
AFTER = "after"  # created only after the promotion
PARKED = "parked"  # one job, waited for (?wait=) across the kill; no worker runs it
AFTER_JOBS = 25
ENQUEUERS = 3
KEEPALIVE_S = 0.5
REQUEST_TIMEOUT_S = 10.0  # httpx's: a request the server never answers fails the test
SERVER_SOCKET_TIMEOUT_S = 5.0  # the server's default RELAY_SOCKET_TIMEOUT


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    with sentinel_setup() as setup:
        yield setup


@dataclass(frozen=True)
class Call:
    """One HTTP request of the load and what came back."""

    what: str
    began: float
    ended: float
    status: int
    content_type: str
    body: Any

    @property
    def took(self) -> float:
        return self.ended - self.began


@dataclass(frozen=True)
class Seen:
    """One data event of the stream."""

    at: float
    seq: int
    entries: list[dict[str, Any]]

    def queue(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.entries if e["queue"] == name), None)

    def ready(self, name: str) -> int | None:
        """The queue's ``ready`` in this snapshot; None if it is not in it."""
        entry = self.queue(name)
        return None if entry is None else int(entry["ready"])


async def _call(http: httpx.AsyncClient, what: str, method: str, path: str, **kw: Any) -> Call:
    began = time.monotonic()
    response = await http.request(method, path, **kw)
    ended = time.monotonic()
    content_type = response.headers.get("content-type", "")
    body = response.json() if content_type.startswith("application/json") else response.text
    return Call(what, began, ended, response.status_code, content_type, body)


async def _enqueue(http: httpx.AsyncClient, queue: str, payload: str) -> Call:
    return await _call(
        http, "enqueue", "POST", f"/api/queues/{queue}/jobs", json={"payload": payload}
    )


async def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    """Poll ``check`` every 20 ms until truthy; fail saying ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await trio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("fleet", [False, True], ids=["alone", "fleet"])
async def test_the_server_carries_on_across_a_failover(
    sentinel: SentinelSetup,
    fleet: bool,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    monkeypatch.setenv("RELAY_KEEPALIVE_INTERVAL", str(KEEPALIVE_S))  # the process inherits it
    prefix = "relaytest-" + secrets.token_hex(6)
    extra = ("--fleet",) if fleet else ()
    server = ServerProcess(sentinel.url(), prefix, extra, poll_interval=0.1)
    await trio.to_thread.run_sync(server.start)
    proc = server.proc
    assert proc is not None
    pid = proc.pid

    calls: list[Call] = []
    seen: list[Seen] = []
    keepalives: list[float] = []
    stop_load = trio.Event()
    parked: list[Call] = []

    async def read_stream(
        http: httpx.AsyncClient, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with http.stream("GET", "/api/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            task_status.started()
            events = Events(response)  # "the stream ended" fails the test
            while True:
                block = await events.next()
                if is_data(block):
                    seq, entries = data_of(block)
                    seen.append(Seen(time.monotonic(), seq, entries))
                elif block.startswith(":"):
                    keepalives.append(time.monotonic())

    async def enqueue(http: httpx.AsyncClient, who: int) -> None:
        i = 0
        while not stop_load.is_set():
            calls.append(await _enqueue(http, LOAD, f"{who}-{i}"))
            i += 1
            await trio.sleep(0.02)

    async def read_stats(http: httpx.AsyncClient) -> None:
        while not stop_load.is_set():
            calls.append(await _call(http, "stats", "GET", f"/api/queues/{LOAD}/stats"))
            calls.append(await _call(http, "readyz", "GET", "/readyz"))
            await trio.sleep(0.05)

    async def wait_for_parked(http: httpx.AsyncClient, job_id: str) -> None:
        path = f"/api/queues/{PARKED}/jobs/{job_id}?wait=30"
        parked.append(await _call(http, "wait", "GET", path))

    def enqueued_after(moment: float) -> list[Call]:
        return [c for c in calls if c.what == "enqueue" and c.began > moment and c.status == 201]

    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    try:
        with trio.fail_after(90):
            async with (
                httpx.AsyncClient(
                    base_url=server.url, timeout=REQUEST_TIMEOUT_S, limits=limits
                ) as http,
                httpx.AsyncClient(base_url=server.url, timeout=60) as sse,
                trio.open_nursery() as nursery,
            ):
                await nursery.start(read_stream, sse)
                await _until(lambda: seen, 10, "a first snapshot on the stream")

                # -- before: load, seen through the API and the stream
                parked_job = await _enqueue(http, PARKED, "p")
                assert parked_job.status == 201, parked_job
                async with trio.open_nursery() as load:
                    for who in range(ENQUEUERS):
                        load.start_soon(enqueue, http, who)
                    load.start_soon(read_stats, http)
                    await _until(
                        lambda: len(enqueued_after(0)) >= 60 and (seen[-1].ready(LOAD) or 0) >= 30,
                        15,
                        "load enqueued, and its depth on the stream",
                    )
                    nursery.start_soon(wait_for_parked, http, parked_job.body["id"])
                    await trio.sleep(0.3)  # the wait is in its blocking pop
                    assert not parked, parked

                    # -- the failover, under load
                    last_before = seen[-1].seq
                    await trio.to_thread.run_sync(sentinel.kill, "master")
                    killed_at = time.monotonic()
                    wall_offset = time.time() - time.monotonic()
                    promotion_s = await trio.to_thread.run_sync(sentinel.wait_for_promotion)
                    promoted_at = time.monotonic()
                    assert proc.poll() is None, "the server died with the master"

                    # -- after: the same process takes enqueues again
                    await _until(
                        lambda: len(enqueued_after(promoted_at)) >= 60,
                        15,
                        "60 enqueues answered 201 after the promotion",
                    )
                    stop_load.set()
                load_done = time.monotonic()

                # a queue that only the new master ever held
                for i in range(AFTER_JOBS):
                    made = await _enqueue(http, AFTER, f"a{i}")
                    assert made.status == 201, made
                after_stats = await _call(http, "stats", "GET", f"/api/queues/{AFTER}/stats")
                load_stats = await _call(http, "stats", "GET", f"/api/queues/{LOAD}/stats")
                assert after_stats.status == 200 and load_stats.status == 200
                assert after_stats.body["ready"] == AFTER_JOBS, after_stats
                load_ready = load_stats.body["ready"]

                await _until(
                    lambda: (
                        seen[-1].ready(AFTER) == AFTER_JOBS and seen[-1].ready(LOAD) == load_ready
                    ),
                    10,
                    "the stream shows the writes made after the promotion",
                )

                # the blocking pool (?wait=) follows the new master too
                waited = await _call(
                    http, "wait", "GET", f"/api/queues/{AFTER}/jobs/{made.body['id']}?wait=0.3"
                )
                assert waited.status == 200 and waited.body["state"] == "ready", waited
                assert waited.took >= 0.25, waited  # it did wait, on the new master
                ready = await _call(http, "readyz", "GET", "/readyz")
                assert ready.status == 200, ready
                assert parked, "the ?wait= in flight at the kill never answered"
                nursery.cancel_scope.cancel()
    finally:
        output = "".join(server.output)
        alive = proc.poll() is None
        server.stop()

    # the same process all along, and it never failed a request
    assert alive and proc.pid == pid, output
    assert "Traceback" not in output and "unhandled error" not in output, output

    # -- the API during the outage: 503 with a JSON error, at once
    statuses = {c.status for c in calls}
    assert statuses <= {200, 201, 503}, statuses
    outage = [c for c in calls if c.status == 503]
    assert any(c.began > killed_at for c in outage), "the kill was never felt"
    for c in outage:
        assert c.content_type.startswith("application/json"), c
        if c.what == "readyz":
            assert c.body["status"] == "not ready", c
            assert c.body["error"].startswith("Redis is not ready"), c
        else:
            assert set(c.body) == {"error"}, c
            assert c.body["error"].startswith("Redis is unavailable"), c
    longest = max(c.took for c in calls)
    assert longest < SERVER_SOCKET_TIMEOUT_S, max(calls, key=lambda c: c.took)
    # nothing but 503 from the kill until the sentinel named the new master (a
    # request begun before the kill may still have been answered by the old one)
    switched_wall = sentinel.switched_at()
    assert switched_wall is not None, sentinel.log("sentinel")
    switched_at = switched_wall - wall_offset
    between = [c for c in calls if killed_at < c.began and c.ended < switched_at]
    assert between and all(c.status == 503 for c in between), between
    # the ?wait= in flight when the master died: answered (its connection was
    # lost: 503), not held for its 30 s
    (wait,) = parked
    assert wait.status == 503 and wait.body["error"].startswith("Redis is unavailable"), wait
    assert wait.ended - killed_at < SERVER_SOCKET_TIMEOUT_S, wait

    # -- the API after it: 2xx again, and to the end
    after_kill = [c for c in calls if c.began > killed_at]
    first_ok = min(c.ended for c in after_kill if c.status in (200, 201))
    tail = [c for c in calls if c.what == "enqueue"][-20:]
    assert all(c.status == 201 for c in tail), tail
    # what the API reads after the failover holds every enqueue it acknowledged
    # after the promotion (what asynchronous replication lost is from before it),
    # and no more than it acknowledged, but for those in flight at the kill (503,
    # yet they may have run on the old master and reached the replica)
    acknowledged = [c for c in calls if c.what == "enqueue" and c.status == 201]
    in_flight = [c for c in outage if c.what == "enqueue" and c.began < killed_at]
    assert len(enqueued_after(promoted_at)) <= load_ready <= len(acknowledged) + len(in_flight)

    # -- the stream: one connection all along, ids increasing, new content after
    seqs = [s.seq for s in seen]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
    # (a snapshot that arrived after the kill but before the switch was polled
    # from the old master before it died: nothing could be read in between)
    resumed = [s for s in seen if s.at > switched_at]
    assert resumed and resumed[0].seq > last_before, "no snapshot on the stream after the kill"
    first_event = min(s.at for s in resumed)
    silent = [t for t in keepalives if killed_at < t < first_event]
    assert silent, "no keep-alive on the stream during the outage"
    newest = seen[-1]
    assert newest.seq > last_before and newest.at > load_done
    assert newest.ready(AFTER) == AFTER_JOBS and newest.ready(LOAD) == load_ready

    measured = {
        "promotion_s": round(promotion_s, 2),
        "sentinel_switch_s": round(switched_at - killed_at, 2),
        "api_recovered_s": round(first_ok - killed_at, 2),
        "stream_recovered_s": round(first_event - killed_at, 2),
        "api_503s": len(outage),
        "slowest_request_s": round(longest, 3),
        "wait_in_flight_answered_s": round(wait.ended - killed_at, 2),
        "keepalives_in_outage": len(silent),
        "enqueued_201": len(acknowledged),
        "load_ready_after": load_ready,
        "event_id_before_kill": last_before,
        "event_id_resumed": resumed[0].seq,
        "down_after_ms": DOWN_AFTER_MS,
    }
    mode = "fleet" if fleet else "alone"
    print(f"\nserver ({mode}) across a sentinel failover: {measured}")
    for name, value in measured.items():
        record_property(f"sentinel_server_{mode}_{name}", value)


def test_closing_the_fleet_subscription_leaves_the_sentinel_connections_alone(
    sentinel: SentinelSetup,
) -> None:
    """With ``--fleet`` the hub's subscription is a blocking twin of the broker's
    client (``redis_connect.blocking_twin``, as ``fleet_redis`` makes it), on the
    same sentinels; it is closed whenever the last stream leaves, and after each
    failed attempt to subscribe (every interval while the master is down). Its
    close must not cut the sentinel connection another thread is using to look
    the master up for the API: that lookup would fail ("No master found"), a
    503 while Redis is fine."""
    client = sentinel_client(
        sentinel.url(), socket_timeout=2.0, connect_timeout=2.0, max_connections=4
    )
    pool: Any = client.connection_pool
    shared = pool.sentinel_manager.sentinels[0].connection_pool
    try:
        assert client.ping()
        twin = blocking_twin(client, 1)
        assert twin.ping()
        twin_pool: Any = twin.connection_pool
        assert twin_pool.sentinel_manager.sentinels[0].connection_pool is shared
        lookup = shared.get_connection()  # a master lookup under way in another thread
        try:
            lookup.send_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            twin_pool.disconnect()  # the subscription ends
            assert lookup.read_response() is not None  # the lookup was not cut
        finally:
            shared.release(lookup)
        assert client.ping()
    finally:
        client.connection_pool.disconnect()
    # the client's own close still closes them
    assert shared._available_connections
    assert all(c._sock is None for c in shared._available_connections)
