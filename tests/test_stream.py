"""The stream over a real Redis and a real Hypercorn server on port 0 (in process)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from support import eventually
from support.servers import frozen_client, running_server
from support.sse import Events, data_of, is_data

from relay_trio.broker import Broker
from relay_trio.server.app import create_app
from relay_trio.server.config import ServerConfig
from relay_trio.server.serve import port_of, serve_relay

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)


async def test_stream_headers_retry_and_first_event(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    await broker.enqueue("beta", "x")
    await broker.enqueue("alpha", "y", delay_ms=60_000)
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url + "/api/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        first, second = await Events(response).take(2)
        assert first == "retry: 2000"
        seq, entries = data_of(second)
        assert seq >= 1
        assert [e["queue"] for e in entries] == ["alpha", "beta"]
        assert abs(entries[0].pop("ts") - time.time() * 1000) < 5000  # poll time, ms
        assert entries[0] == {
            "queue": "alpha",
            "ready": 0,
            "inflight": 0,
            "delayed": 1,
            "dlq": 0,
            "processed_total": 0,
            "dead_total": 0,
            "paused": False,
            "workers": 0,
        }
        assert entries[1]["ready"] == 1
        assert '"queue":"alpha"' in second  # compact JSON, encoded once by the hub


async def test_stream_follows_changes_with_increasing_ids(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url + "/api/stream") as response,
    ):
        reader = Events(response)
        events = await reader.take(2, is_data)
        await broker.enqueue("q1", "x")
        seen: list[int] = [data_of(e)[0] for e in events]
        with trio.fail_after(5):
            while True:
                seq, entries = data_of(await reader.next(is_data))
                seen.append(seq)
                if entries and entries[0]["ready"] == 1:
                    break
        assert seen == sorted(seen) and len(set(seen)) == len(seen)


async def test_last_client_leaving_stops_the_poller(redis_server: Any, prefix: str) -> None:
    async with running_server(redis_server.url, prefix) as server, httpx.AsyncClient() as client:
        hub = server.state.serving_hub
        assert not hub.polling and hub.subscribers == 0
        async with client.stream("GET", server.url + "/api/stream") as response:
            await Events(response).take(2)
            assert hub.polling and hub.subscribers == 1
        await eventually(lambda: hub.subscribers == 0 and not hub.polling)
        polls = hub.polls
        await trio.sleep(0.5)  # five intervals: an idle server does no Redis work
        assert hub.polls == polls


async def test_tick_cost_is_constant_in_clients_and_queues(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    for i in range(30):
        await broker.enqueue(f"q{i:02d}", "x")
    async with running_server(redis_server.url, prefix) as server, httpx.AsyncClient() as client:
        serving = server.state.serving_broker
        calls = 0
        original = serving.io.run

        async def counting(fn: Any) -> Any:
            nonlocal calls
            calls += 1
            return await original(fn)

        serving.io.run = counting  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                async with client.stream("GET", server.url + "/api/stream") as response:
                    await Events(response).take(6)

            for _ in range(20):
                nursery.start_soon(listen)
        hub = server.state.serving_hub
        # 20 clients, 30 queues: every completed tick was three thread crossings (queue
        # registry, stats pipeline, worker registry); the last tick may have been
        # cancelled part-way when the last client left
        assert hub.latest is not None
        completed = hub.latest.seq
        assert hub.poll_errors == 0
        assert completed <= hub.polls <= completed + 1
        assert 3 * completed <= calls <= 3 * hub.polls
        assert hub.polls <= 8


async def test_keepalive_comment_when_nothing_changes(redis_server: Any, prefix: str) -> None:
    async with (
        running_server(redis_server.url, prefix, poll_interval=10.0, keepalive_interval=0.2) as s,
        httpx.AsyncClient() as client,
        client.stream("GET", s.url + "/api/stream") as response,
    ):
        events = await Events(response).take(4)
        assert events[0] == "retry: 2000"
        assert events[1].startswith("id: 1\n")
        assert events[2:] == [": keep-alive", ": keep-alive"]


async def test_stream_auth_by_header_or_ticket(redis_server: Any, prefix: str) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token="s3cret") as server,
        httpx.AsyncClient() as client,
    ):
        denied = await client.get(server.url + "/api/stream")
        assert denied.status_code == 401 and "error" in denied.json()
        for token in ("nope", "s3cret"):  # a token in a URL is refused, even the right one
            wrong = await client.get(server.url + f"/api/stream?access_token={token}")
            assert wrong.status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        ticket = (await client.post(server.url + "/api/stream/ticket", headers=auth)).json()
        for kwargs in ({"headers": auth}, {"params": {"ticket": ticket["ticket"]}}):
            async with client.stream("GET", server.url + "/api/stream", **kwargs) as response:
                assert response.status_code == 200
                assert (await Events(response).take(1)) == ["retry: 2000"]


async def test_shutdown_ends_open_streams_promptly(redis_server: Any, prefix: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        ended = trio.Event()
        async with running_server(redis_server.url, prefix) as server:

            async def listen() -> None:
                async with client.stream("GET", server.url + "/api/stream") as response:
                    async for _ in response.aiter_bytes():
                        pass
                ended.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await eventually(lambda: server.state.serving_hub.subscribers == 1)
                began = trio.current_time()
                server.stop.set()
                with trio.fail_after(2):
                    await ended.wait()
                assert trio.current_time() - began < 1.0


async def test_close_streams_ends_them_and_refuses_new_ones(redis_server: Any, prefix: str) -> None:
    """``RelayApp.close_streams`` (the launcher's first step of a shutdown)."""
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        async with client.stream("GET", server.url + "/api/stream") as response:
            events = Events(response)
            await events.take(2, is_data)
            server.app.close_streams()
            with trio.fail_after(2), pytest.raises(AssertionError, match="the stream ended"):
                await events.next()
        assert (await client.get(server.url + "/api/stream")).status_code == 503
        assert (await client.get(server.url + "/healthz")).status_code == 200


async def test_frozen_client_is_dropped_and_delays_no_one(
    redis_server: Any, prefix: str, broker: Broker, rdb: Any
) -> None:
    # ~2 000 queues make each event ~250 KB, so a client that does not read
    # fills its socket buffers within a few ticks
    rdb.sadd(broker.keys.registry, *[f"queue-{i:04d}" for i in range(2000)])
    async with (
        running_server(redis_server.url, prefix, poll_interval=0.2, drop_after=1.0) as server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        hub = server.state.serving_hub
        sock = frozen_client(server.port)
        try:
            async with client.stream("GET", server.url + "/api/stream") as response:
                gaps = []
                last = trio.current_time()
                seqs = []
                reader = Events(response)
                for _ in range(15):
                    event = await reader.next(is_data)
                    seqs.append(int(event.split("\n", 1)[0][4:]))
                    now = trio.current_time()
                    gaps.append(now - last)
                    last = now
                assert max(gaps[1:]) < 1.0, gaps  # the reader kept getting every tick
                assert seqs == sorted(seqs)
                metrics = server.state.metrics
                await eventually(lambda: metrics.hub_clients_dropped._value.get() >= 1)
                assert hub.subscribers == 1  # only the reading client is left
        finally:
            sock.close()


async def test_idle_keepalive_connection_times_out(redis_server: Any, prefix: str) -> None:
    app = create_app(ServerConfig(redis_url=redis_server.url, prefix=prefix))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve_relay, app=app, port=0, stop=stop, keep_alive_timeout=0.5)
        )
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(binds))
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with trio.fail_after(3):
            while b'{"status":"ok"}' not in received:
                received += await stream.receive_some(4096)
            assert received.startswith(b"HTTP/1.1 200")
            # idle now: the server must close the connection after ~0.5 s
            began = trio.current_time()
            assert await stream.receive_some(4096) == b""
        assert trio.current_time() - began < 2.0
        await stream.aclose()
        stop.set()
