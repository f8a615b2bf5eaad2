"""The stream's socket fast path: the one adapter that reaches inside Hypercorn.

Through ASGI, one event to one client costs a wake of that client's task and
about five trips through Trio's scheduler (Quart's body loop, Hypercorn's
stream and protocol layers, h11's chunk framing, the connection's send lock and
``send_all``'s checkpoints): at 10 000 clients that alone is more than a 1 Hz
tick. A :class:`SocketWriter` skips those layers for a stream's events: one
non-blocking ``write`` of an HTTP/1.1 chunk, framed once per snapshot, with no
checkpoint, called by the broadcaster (:mod:`.broadcast`) for every stream in
one task. What it cannot write at once, the stream's own task finishes with
:meth:`SocketWriter.send`, which — unlike Hypercorn's shielded writes — can be
cancelled, so a client that stopped reading is dropped and shutdown never waits
for it.

**Supported versions.** It relies on names that are not public API: Hypercorn's
``HTTPStream``, ``H11Protocol`` and ``TCPServer`` (its ``stream`` and
``send_lock``) and h11's ``Connection`` state and ``ChunkedWriter``. It is used
only with the versions in :data:`SUPPORTED` (the range ``pyproject.toml``
allows, and the test suite runs); :func:`availability` says whether it applies
and why not, the app logs it at start and exports it as
``relay_stream_fast_path_available``, and a test fails if a supported version
stops taking it.

When it applies — found from the ASGI ``send`` callable: Hypercorn's trio
worker, HTTP/1.1 with chunked framing (h11's), the response head already sent;
over plain TCP the broadcaster writes without blocking, over TLS every event
goes through the stream's task (still cancellable). Anywhere else (another
server, HTTP/1.0 or HTTP/2, a test client) :meth:`SocketWriter.attach` returns
None and the stream is sent through ASGI like any response.

Ordering and ownership of the socket:

* :meth:`SocketWriter.write_now` writes only when nothing can interleave:
  Hypercorn's per-connection send lock is free and no earlier chunk is half
  written. A partial write keeps the rest; the stream's task sends it (under
  that lock) before anything else, via :meth:`SocketWriter.send`.
* :meth:`SocketWriter.send` holds Hypercorn's send lock while it writes, so
  Hypercorn's own writes (the final chunk) wait for it.
* If a write is cut part-way (cancelled, or the stream ends with a chunk
  half-written) the framing can no longer be trusted: :meth:`SocketWriter.abort`
  shuts the socket down and Hypercorn, seeing the end of input, closes the
  connection. The client reconnects (``retry:``); no other connection is touched.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import select
import socket
from typing import Any

import trio

SUPPORTED = {"hypercorn": ((0, 17), (0, 18)), "h11": ((0, 14), (0, 16))}
"""The (major, minor) ranges, both ends included, the fast path is used with."""

try:  # the objects the ASGI send callable leads to, in the supported versions
    import h11
    from h11._writers import ChunkedWriter
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio.tcp_server import TCPServer
except ImportError:  # pragma: no cover - a Hypercorn or h11 that moved: ASGI only
    HTTPStream = H11Protocol = TCPServer = ChunkedWriter = None  # type: ignore[assignment,misc]


def _minor(version: str) -> tuple[int, int] | None:
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


@functools.cache
def availability() -> tuple[bool, str]:
    """Whether the fast path may be used here, and a line saying why (or why not)."""
    found = []
    for name, (low, high) in SUPPORTED.items():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return False, f"{name} is not installed"
        minor = _minor(version)
        if minor is None or not low <= minor <= high:
            supported = f"{low[0]}.{low[1]}-{high[0]}.{high[1]}"
            return False, f"{name} {version} is outside the supported {supported}"
        found.append(f"{name} {version}")
    if TCPServer is None:  # pragma: no cover
        return False, "Hypercorn's or h11's internals moved"
    return True, ", ".join(found)


@functools.lru_cache(maxsize=8)
def chunk_of(event: bytes) -> bytes:
    """``event`` as one HTTP/1.1 chunk, as h11 frames it (cached: one snapshot is
    framed once, whatever the number of clients)."""
    return b"%x\r\n%s\r\n" % (len(event), event)


class SocketWriter:
    """Writes one chunked response body's events to its socket; see the module."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        sock: trio.socket.SocketType,
        lock: trio.Lock,
    ) -> None:
        self._stream = stream
        self._socket = sock
        self._direct = isinstance(stream, trio.SocketStream)
        """Plain TCP: :meth:`write_now` may write; over TLS it never does."""
        self._lock = lock
        self._rest = b""
        """The unsent end of a chunk that was written in part."""
        self._rest_of: bytes | None = None
        self.broken = False
        """The socket failed or was aborted: nothing more is written."""
        self.partial_writes = 0

    @classmethod
    def attach(cls, send: Any) -> SocketWriter | None:
        """A writer for the connection behind the ASGI ``send``, or None when the
        fast path does not apply (see the module). Call it once the response head
        and at least one body chunk went out through ``send``."""
        if not availability()[0]:
            return None
        http_stream = getattr(send, "__self__", None)
        if not isinstance(http_stream, HTTPStream):
            return None
        protocol = getattr(getattr(http_stream, "send", None), "__self__", None)
        if not isinstance(protocol, H11Protocol):
            return None
        connection = getattr(protocol, "connection", None)
        if not (
            isinstance(connection, h11.Connection)
            and connection.our_state is h11.SEND_BODY
            and isinstance(getattr(connection, "_writer", None), ChunkedWriter)
        ):
            return None
        tcp = getattr(getattr(protocol, "send", None), "__self__", None)
        if not isinstance(tcp, TCPServer):
            return None
        stream, lock = getattr(tcp, "stream", None), getattr(tcp, "send_lock", None)
        if not isinstance(lock, trio.Lock):
            return None
        if isinstance(stream, trio.SocketStream):
            return cls(stream, stream.socket, lock)
        transport = getattr(stream, "transport_stream", None)
        if isinstance(stream, trio.SSLStream) and isinstance(transport, trio.SocketStream):
            return cls(stream, transport.socket, lock)  # TLS: every event by ``send``
        return None

    @property
    def direct(self) -> bool:
        """:meth:`write_now` can write (plain TCP); False over TLS."""
        return self._direct

    def write_now(self, event: bytes) -> bool:
        """Hand ``event`` to the kernel now, without waiting; True if it is all
        there. False when it must go by :meth:`send` instead: the socket buffer
        is full (then the written part is kept and :meth:`send` finishes it),
        Hypercorn is writing, or the socket is gone."""
        if not self._direct or self._rest or self.broken or self._lock.locked():
            return False
        fd = self._socket.fileno()  # -1 once closed: never write to a reused number
        if fd < 0:
            self.broken = True
            return False
        chunk = chunk_of(event)
        try:
            written = os.write(fd, chunk)
        except BlockingIOError:
            return False
        except OSError:
            self.broken = True
            return False
        if written < len(chunk):
            self._rest, self._rest_of = chunk[written:], event
            self.partial_writes += 1
            return False
        return True

    async def send(self, event: bytes) -> None:
        """Finish a partly written chunk, then write ``event`` (unless it was that
        chunk), waiting for the socket. Cancelling it part-way aborts the
        connection. Raises :class:`trio.BrokenResourceError` once broken."""
        if self.broken:
            raise trio.BrokenResourceError("the stream's connection is gone")
        async with self._lock:
            try:
                if self._rest:
                    rest, rest_of = self._rest, self._rest_of
                    await self._stream.send_all(rest)
                    self._rest, self._rest_of = b"", None
                    if rest_of is event:
                        return
                await self._stream.send_all(chunk_of(event))
            except BaseException:
                self.abort()
                raise

    def writable_now(self) -> bool:
        """Nothing is half written, no one holds the lock, and the kernel would
        take a few bytes at once: ending the response cannot block."""
        if not self.clean or self._lock.locked():
            return False
        fd = self._socket.fileno()
        if fd < 0:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(mask & select.POLLOUT for _, mask in poller.poll(0))

    @property
    def clean(self) -> bool:
        """No chunk is half written: the response may be ended normally."""
        return not self._rest and not self.broken

    def abort(self) -> None:
        """Shut the connection down (its framing cannot be trusted any more);
        Hypercorn's reader sees the end and closes it."""
        self.broken = True
        self._rest, self._rest_of = b"", None
        if self._socket.fileno() >= 0:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
