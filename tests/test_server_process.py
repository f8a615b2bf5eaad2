"""`relay-trio server` as a real process: signals, deadlines, and Redis going away."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from support.servers import server_process

from relay_trio.embedded import EmbeddedRedis, find_redis_server


def open_stream(url: str, *, read: bool = True) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    if not read:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if read:
        received = b""
        while b"\nid: " not in received:
            received += sock.recv(65536)
    return sock


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_open_streams_exits_within_the_graceful_timeout(
    redis_server: Any, prefix: str, rdb: redis.Redis, signum: int
) -> None:
    # big snapshots, so that the client that stops reading really blocks a write
    rdb.sadd(prefix + ":queues", *[f"queue-{i:04d}" for i in range(2000)])
    with server_process(redis_server.url, prefix) as server:
        proc = server.proc
        assert proc is not None
        readers = [open_stream(server.url) for _ in range(3)]
        frozen = open_stream(server.url, read=False)
        time.sleep(2.0)  # let the frozen client's buffers fill
        began = time.monotonic()
        proc.send_signal(signum)
        proc.wait(timeout=8)
        took = time.monotonic() - began
        for sock in [*readers, frozen]:
            sock.close()
    assert proc.returncode == 0
    # within the graceful timeout (2 s), not by the forced-exit timer: the frozen
    # client's connection is shut down instead of waiting on its full buffer
    assert took < 1.0, took


def test_the_server_says_at_start_whether_the_fast_path_is_on(
    redis_server: Any, prefix: str
) -> None:
    """A log line before it listens, and the gauge: under the supported Hypercorn
    and h11 it is on."""
    with server_process(redis_server.url, prefix) as server:
        started = "".join(server.output)
        assert re.search(
            r"level=info logger=relay_trio\.server\.app "
            r'msg="stream fast path available \(hypercorn',
            started,
        )
        assert server.metric("relay_stream_fast_path_available") == 1.0
        server.stop()


def test_redis_stopped_under_open_streams(prefix: str) -> None:
    """Redis goes away for a few seconds: the server stays up and streams resume."""
    with EmbeddedRedis() as own:
        url = own.url
        assert url is not None
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        client = redis.Redis.from_url(url)
        client.sadd(prefix + ":queues", "alpha")
        with server_process(url, prefix) as server:
            proc, server_url = server.proc, server.url
            assert proc is not None
            with (
                httpx.Client(timeout=10) as http,
                http.stream("GET", server_url + "/api/stream") as response,
            ):
                lines = response.iter_lines()
                ids = wait_ids(lines, 2)
                own.stop()  # Redis is gone
                time.sleep(3)
                assert proc.poll() is None, "the server died with Redis"
                assert http.get(server_url + "/healthz").status_code == 200
                assert http.get(server_url + "/readyz").status_code == 503
                restarted = subprocess.Popen(
                    [
                        find_redis_server(),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    wait_ping(url)
                    redis.Redis.from_url(url).sadd(prefix + ":queues", "beta")
                    later = wait_ids(lines, 3, contains='"queue":"beta"')
                    assert min(later) > max(ids)
                    assert http.get(server_url + "/readyz").status_code == 200
                finally:
                    restarted.terminate()
                    restarted.wait(5)
            assert proc.poll() is None
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(5)


def wait_ids(lines: Iterator[str], count: int, contains: str = "") -> list[int]:
    ids: list[int] = []
    last_id = None
    for line in lines:
        if line.startswith("id: "):
            last_id = int(line[4:])
        elif line.startswith("data: ") and contains in line and last_id is not None:
            ids.append(last_id)
            if len(ids) == count:
                return ids
    raise AssertionError("the stream ended")


def wait_ping(url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_timeout=1).ping():
                return
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis did not come back")


def test_hypercorn_launch_serves_the_stream_by_the_fast_path(
    redis_server: Any, prefix: str, rdb: redis.Redis
) -> None:
    """The documented ``hypercorn --worker-class trio relay_trio.server.asgi:app``."""
    rdb.sadd(prefix + ":queues", "alpha")
    env = {
        **os.environ,
        "RELAY_REDIS_URL": redis_server.url,
        "RELAY_PREFIX": prefix,
        "RELAY_POLL_INTERVAL": "0.1",
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hypercorn", "--worker-class", "trio"),
            *("--graceful-timeout", "1"),
            *("--bind", "127.0.0.1:0", "relay_trio.server.asgi:app"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 15
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"Running on (http://\S+)", line)
            url = match.group(1) if match else None
        assert url is not None, "hypercorn did not report its address"
        with (
            httpx.Client(timeout=10) as http,
            http.stream("GET", url + "/api/stream") as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            wait_ids(response.iter_lines(), 5, contains='"queue":"alpha"')
            metrics = http.get(url + "/metrics").text
        # the documented launch takes the fast path: the broadcaster wrote the events
        assert re.search(r"^relay_stream_fast_path_available 1\.0$", metrics, re.M)
        assert re.search(r'^relay_streams_opened_total\{path="fast"\} 1\.0$', metrics, re.M)
        written = re.search(r"^relay_stream_fast_path_writes_total (\S+)$", metrics, re.M)
        assert written is not None and float(written.group(1)) >= 3
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
