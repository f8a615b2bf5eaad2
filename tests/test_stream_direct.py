"""The stream's socket fast path (relay_trio.server.direct, written by the
broadcaster, relay_trio.server.broadcast) on a real Hypercorn server and a real
Redis: under the supported Hypercorn and h11 it applies, events written
straight to the socket are the same well-formed HTTP/1.1 chunks h11 would
write, whatever the kernel accepts per write, and the ASGI path takes over
wherever the fast path cannot apply.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import trio
from support import eventually
from support.servers import frozen_client, running_server
from support.sse import Events, data_of, is_data

from relay_trio.broker import Broker
from relay_trio.server.direct import SUPPORTED, SocketWriter, availability, chunk_of


class ChunkedReader:
    """A strict HTTP/1.1 client for one stream: the head, then chunk by chunk."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.head = b""

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        self.buffer += data

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill()
        part, self.buffer = self.buffer.split(marker, 1)
        return part

    async def read_head(self) -> bytes:
        self.head = await self._until(b"\r\n\r\n")
        return self.head

    async def chunk(self) -> bytes:
        size = int(await self._until(b"\r\n"), 16)
        while len(self.buffer) < size + 2:
            await self._fill()
        body, tail = self.buffer[:size], self.buffer[size : size + 2]
        assert tail == b"\r\n", "a chunk not followed by CRLF: the framing is broken"
        self.buffer = self.buffer[size + 2 :]
        return body


async def open_raw_stream(port: int, version: str = "1.1", rcvbuf: int | None = None) -> Any:
    sock = trio.socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    await stream.send_all(f"GET /api/stream HTTP/{version}\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return stream


def test_the_installed_hypercorn_and_h11_are_supported() -> None:
    """pyproject.toml bounds both to the range the adapter supports: if this fails,
    the fast path is off in this install (and the bounds or SUPPORTED are wrong)."""
    available, why = availability()
    assert available, why
    assert set(SUPPORTED) == {"hypercorn", "h11"}


def test_chunk_framing_matches_h11() -> None:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[]))
    event = b"id: 7\ndata: []\n\n"
    assert chunk_of(event) == conn.send(h11.Data(data=event))
    assert chunk_of(event) is chunk_of(event)  # framed once per snapshot


async def test_events_are_written_straight_to_the_socket(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    await broker.enqueue("emails", "x")
    async with running_server(redis_server.url, prefix) as server, httpx.AsyncClient() as client:
        state = server.state
        ids: list[list[int]] = []

        async def listen() -> None:
            async with client.stream("GET", server.url + "/api/stream") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["transfer-encoding"] == "chunked"
                events = await Events(response).take(6, is_data)
                seen = [data_of(e) for e in events]
                assert all(entries[0]["queue"] == "emails" for _, entries in seen)
                ids.append([seq for seq, _ in seen])

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(listen)
        for seqs in ids:
            assert seqs == sorted(set(seqs))
        # every stream took the fast path: the broadcaster, one subscriber of the
        # hub for all three, wrote their snapshots straight to the sockets
        metrics = state.metrics
        assert metrics.streams_opened.labels("fast")._value.get() == 3
        assert metrics.streams_opened.labels("asgi")._value.get() == 0
        broadcaster = state.serving_broadcaster
        assert broadcaster.writes >= 3 * 4
        assert metrics.fast_path_writes._value.get() == broadcaster.writes
        assert metrics.fast_path_available._value.get() == 1


async def test_one_hub_subscriber_serves_every_fast_path_stream(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    """Ten streams, one subscription to the hub: the broadcaster's."""
    await broker.enqueue("emails", "x")
    async with running_server(redis_server.url, prefix) as server, httpx.AsyncClient() as client:
        hub = server.state.serving_hub
        broadcaster = server.state.serving_broadcaster
        counted = trio.Event()

        async def listen() -> None:
            async with client.stream("GET", server.url + "/api/stream") as response:
                await Events(response).take(3, is_data)
                if broadcaster.streams == 10:
                    assert hub.subscribers == 1
                    counted.set()
                await counted.wait()

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(listen)
        assert counted.is_set()
        await eventually(lambda: hub.subscribers == 0 and not hub.polling)


async def test_an_http10_client_is_served_through_asgi(redis_server: Any, prefix: str) -> None:
    async with running_server(redis_server.url, prefix) as server:
        stream = await open_raw_stream(server.port, version="1.0")
        async with stream:
            received = b""
            with trio.fail_after(5):
                while received.count(b"\nid: ") < 3:  # no chunk framing: the events as they are
                    received += await stream.receive_some(65536)
            head, body = received.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"transfer-encoding" not in head.lower()
            assert body.startswith(b"retry: 2000\n\nid: ")
        metrics = server.state.metrics
        assert metrics.streams_opened.labels("asgi")._value.get() == 1
        assert metrics.streams_opened.labels("fast")._value.get() == 0


async def test_head_sends_the_head_only(redis_server: Any, prefix: str) -> None:
    async with running_server(redis_server.url, prefix) as server, httpx.AsyncClient() as client:
        with trio.fail_after(5):
            response = await client.head(server.url + "/api/stream")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert server.state.serving_hub.subscribers == 0


async def test_a_slow_reader_gets_whole_chunks_across_partial_writes(
    redis_server: Any, prefix: str, broker: Broker, rdb: Any, monkeypatch: Any
) -> None:
    # ~1 500 queues: each event is ~190 KB, far more than one non-blocking write
    # to a small socket buffer takes, so most writes are partial
    names = [f"queue-{i:04d}" for i in range(1500)]
    rdb.sadd(broker.keys.registry, *names)
    made: list[SocketWriter] = []
    original = SocketWriter.attach.__func__  # type: ignore[attr-defined]

    def recording(cls: type[SocketWriter], send: Any) -> SocketWriter | None:
        writer = original(cls, send)
        made.append(writer)
        return writer

    monkeypatch.setattr(SocketWriter, "attach", classmethod(recording))
    async with running_server(redis_server.url, prefix, poll_interval=0.1) as server:
        stream = await open_raw_stream(server.port, rcvbuf=8192)
        async with stream:
            reader = ChunkedReader(stream)
            with trio.fail_after(30):
                head = await reader.read_head()
                assert head.startswith(b"HTTP/1.1 200")
                assert b"transfer-encoding: chunked" in head.lower()
                assert await reader.chunk() == b"retry: 2000\n\n"
                seqs = []
                while len(seqs) < 12:
                    chunk = await reader.chunk()
                    if chunk == b": keep-alive\n\n":
                        continue
                    assert chunk.startswith(b"id: ") and chunk.endswith(b"\n\n")
                    first, data = chunk[:-2].split(b"\n", 1)
                    entries = json.loads(data.removeprefix(b"data: "))
                    assert [e["queue"] for e in entries] == names
                    seqs.append(int(first[4:]))
                    await trio.sleep(0.05)  # a slow reader: the socket fills up
            assert seqs == sorted(set(seqs))
            (writer,) = made
            assert writer is not None
            assert writer.partial_writes > 0
            assert not writer.broken


async def test_a_dropped_frozen_client_is_disconnected(
    redis_server: Any, prefix: str, broker: Broker, rdb: Any
) -> None:
    rdb.sadd(broker.keys.registry, *[f"queue-{i:04d}" for i in range(2000)])
    async with running_server(redis_server.url, prefix, poll_interval=0.2, drop_after=1.0) as s:
        sock = frozen_client(s.port)
        try:
            metrics = s.state.metrics
            await eventually(lambda: metrics.hub_clients_dropped._value.get() >= 1)
            await eventually(lambda: s.state.serving_hub.subscribers == 0)  # nobody is left
            # the server let go of the connection: draining it ends (EOF or reset)
            # instead of waiting forever on a write stuck behind a full buffer
            sock.settimeout(10)
            ended = False
            with trio.fail_after(15):
                while not ended:
                    try:
                        ended = await trio.to_thread.run_sync(sock.recv, 1 << 20) == b""
                    except ConnectionResetError:
                        ended = True
            assert ended
        finally:
            sock.close()
