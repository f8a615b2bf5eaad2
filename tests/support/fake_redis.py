"""Redis that fails: servers that are not Redis (:class:`FakeServer`), a Redis
frozen with SIGSTOP (:func:`frozen`), a URL nobody answers (:data:`REFUSED_URL`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator

from relay_trio.embedded import EmbeddedRedis

PASSWORD = "Pw-s3cret_42"
REFUSED_URL = f"redis://:{PASSWORD}@127.0.0.1:1/0"

# what a server that is not Redis answers to anything
REPLIES = {
    "http": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"garbage\r\n",
    "binary": bytes(range(256)),
}


class FakeServer:
    """A TCP server on 127.0.0.1 that is not Redis, in threads (redis-py runs in
    threads too). ``mode``: a key of ``REPLIES`` (answer that to the first data,
    keep the connection open), ``echo`` (send back what comes), ``close`` (hang
    up at once), ``silent`` (accept, read, never answer)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, password: str | None = PASSWORD, query: str = "") -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0{query}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.mode == "close":
                conn.close()
                return
            while data := conn.recv(65536):
                if self.mode == "echo":
                    conn.sendall(data)
                elif self.mode in REPLIES:
                    conn.sendall(REPLIES[self.mode])


@contextlib.contextmanager
def frozen(server: EmbeddedRedis) -> Iterator[None]:
    """``server`` stopped (SIGSTOP): connections open, nothing answered."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)
