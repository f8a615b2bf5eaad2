"""Every way the tests run the server, in one place:

- :func:`api_client`: Quart's test client, no socket (between the app's startup
  and shutdown), for the API's rules;
- :func:`running_server`: a real Hypercorn server on port 0 in the test's own
  Trio loop, for what the network path decides (Host headers, streams);
- :func:`server_thread`: the same in a thread with a Trio loop of its own, for
  synchronous tests (Schemathesis);
- :class:`ServerProcess` / :func:`server_process`: ``relay-trio server`` as a
  process of its own (signals, deadlines, the browser).

Also :func:`send` and :func:`error_of` for the test client, and
:func:`frozen_client`, a client that never reads.
"""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import httpx
import hypercorn
import trio
from hypercorn.trio import serve
from quart import typing as quart_typing

from relay_trio.broker import Broker, open_broker
from relay_trio.server import ServerConfig, create_app
from relay_trio.server.app import RelayApp
from relay_trio.server.serve import port_of, serve_relay
from relay_trio.server.state import RelayState

T = TypeVar("T")

ApiClient = quart_typing.TestClientProtocol


# -- Quart's test client ---------------------------------------------------------------


@asynccontextmanager
async def api_client(url: str, prefix: str, **options: Any) -> AsyncIterator[ApiClient]:
    """A test client of an app on Redis ``url`` and ``prefix`` (``options``:
    :class:`ServerConfig`'s), between the app's startup and shutdown."""
    app = create_app(ServerConfig(redis_url=url, prefix=prefix, **options))
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def send(client: ApiClient, method: str, path: str, body: bytes | str, **headers: str) -> Any:
    """``body`` as it is (``application/json`` unless ``headers`` say otherwise)."""
    data = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": "application/json", **headers}
    return await client.open(path, method=method, data=data, headers=headers)


async def error_of(response: Any, status: int) -> str:
    """The ``error`` text of a JSON error response (of the test client) with ``status``."""
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type.startswith("application/json")
    body = await response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


# -- in process: Hypercorn in the test's Trio loop, or in a thread ------------------------------


@dataclass
class Running:
    url: str
    port: int
    app: RelayApp
    stop: trio.Event

    @property
    def state(self) -> RelayState:
        return self.app.state


@asynccontextmanager
async def running_server(
    redis_url: str, prefix: str, *, host: str = "127.0.0.1", **config: Any
) -> AsyncIterator[Running]:
    """A real server (Hypercorn, trio worker) bound to ``host``, port 0, in this
    Trio loop (``config``: :class:`ServerConfig`'s; the hub polls every 0.1 s
    unless told). Stopped when the block ends."""
    options: dict[str, Any] = {"poll_interval": 0.1, **config}
    app = create_app(ServerConfig(redis_url=redis_url, prefix=prefix, **options))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve_relay, app=app, host=host, port=0, stop=stop))
        port = port_of(binds)
        yield Running(f"http://{host}:{port}", port, app, stop)
        stop.set()


@contextmanager
def server_thread(app: RelayApp) -> Iterator[str]:
    """``app`` served by Hypercorn on 127.0.0.1, port 0, in a thread with a Trio
    loop of its own; yields the base URL. For tests that are not async."""
    started: queue.Queue[Any] = queue.Queue()

    async def main() -> None:
        config = hypercorn.Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
            started.put((binds[0], trio.lowlevel.current_trio_token(), stop))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            started.put(exc)
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    got = started.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    url, token, stop = got
    try:
        yield url
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=10)


def frozen_client(port: int) -> socket.socket:
    """A client that asks for the stream and then never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


# -- as a process ----------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """``relay-trio server`` as a process of its own, on ``port`` (0: any), the hub
    polling every ``poll_interval`` s; ``extra`` are more of its flags. Once
    started, a thread reads its output into ``output``, so a full pipe never
    blocks it."""

    redis_url: str
    prefix: str
    extra: tuple[str, ...] = ()
    port: int = 0
    poll_interval: float = 0.2
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start it and wait (15 s at most) until it says where it listens."""
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "relay_trio.cli", "--redis-url", self.redis_url),
                *("--prefix", self.prefix, "server", "--port", str(self.port)),
                *("--poll-interval", str(self.poll_interval), *self.extra),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            match = re.search(r"relay-trio server on http://[^:\s]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
                return self
        self.stop()
        raise AssertionError("the server did not report its address:\n" + "".join(self.output))

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it is not gone within 5 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def broker(self, work: Callable[[Broker], Awaitable[T]]) -> T:
        """Run ``work`` with a broker on this server's Redis and prefix."""

        async def main() -> T:
            async with open_broker(self.redis_url, prefix=self.prefix) as broker:
                return await work(broker)

        return trio.run(main)

    def metric(self, name: str) -> float:
        """The value of the unlabelled metric ``name`` in its ``/metrics``."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert match, f"{name} is not in /metrics"
        return float(match.group(1))


@contextmanager
def server_process(redis_url: str, prefix: str, *extra: str) -> Iterator[ServerProcess]:
    """A started :class:`ServerProcess` for the block; killed at the end if it still runs."""
    server = ServerProcess(redis_url, prefix, extra).start()
    try:
        yield server
    finally:
        server.kill()
