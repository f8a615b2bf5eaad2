"""Stream events written straight to the connection's socket (the fan-out fast path).

Through ASGI, one event to one client costs a wake of that client's task and
about five trips through Trio's scheduler (Quart's body loop, Hypercorn's
stream and protocol layers, h11's chunk framing, the connection's send lock and
``send_all``'s checkpoints): at 10 000 clients that alone is more than a 1 Hz
tick. A :class:`SocketWriter` skips those layers: one non-blocking ``write`` of
an HTTP/1.1 chunk, framed once per snapshot, with no checkpoint. Who calls it
is ``ServerConfig.stream_writes``:

* ``tick`` (default): the stream sets it as its subscription's writer and the
  hub's tick calls :meth:`write_now` for every subscriber, waking no task; the
  subscriber's channel (latest wins) takes every snapshot the writer cannot
  take at once, and its task finishes it with :meth:`send`.
* ``task``: every snapshot goes through the subscriber's channel as for any
  subscriber; its task, woken, calls :meth:`write_now`, then :meth:`send` if
  that could not write it all. One task wake per client per tick — two to
  three times the CPU of ``tick`` at 10 000 clients (docs/benchmarks.md).

When it applies — found from the ASGI ``send`` callable: Hypercorn's trio
worker, plain TCP (no TLS), HTTP/1.1 with chunked framing (h11's), the
response head already sent. Anywhere else (another server, TLS, HTTP/1.0 or
HTTP/2, a test client, a Hypercorn whose internals moved) :meth:`attach`
returns None and the stream keeps to ASGI sends; nothing else changes.

Ordering and ownership of the socket:

* :meth:`write_now` writes only when nothing can interleave: Hypercorn's
  per-connection send lock is free and no earlier chunk is half written. A
  partial write keeps the rest; the connection's task sends it (under that
  lock) before anything else, via :meth:`send`.
* :meth:`send` (the slow path: a full socket buffer, a busy lock) holds
  Hypercorn's send lock while it writes, so Hypercorn's own writes (the final
  chunk) wait for it. It is cancellable, unlike Hypercorn's shielded writes:
  a client that stopped reading can be dropped.
* If a write is cut part-way (cancelled, or the stream ends with a chunk
  half-written) the framing can no longer be trusted: :meth:`abort` shuts the
  socket down and Hypercorn, seeing the end of input, closes the connection.
  The client reconnects (``retry:``); no other connection is touched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from typing import Any

import trio

try:  # the objects the ASGI send callable leads to, in the tested Hypercorn
    import h11
    from h11._writers import ChunkedWriter
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.protocol.http_stream import HTTPStream
    from hypercorn.trio.tcp_server import TCPServer
except ImportError:  # pragma: no cover - a Hypercorn or h11 that moved: ASGI only
    HTTPStream = H11Protocol = TCPServer = ChunkedWriter = None  # type: ignore[assignment,misc]


@functools.lru_cache(maxsize=8)
def chunk_of(event: bytes) -> bytes:
    """``event`` as one HTTP/1.1 chunk, as h11 frames it (cached: one snapshot is
    framed once, whatever the number of clients)."""
    return b"%x\r\n%s\r\n" % (len(event), event)


class SocketWriter:
    """Writes one chunked response body's events to its socket; see the module."""

    def __init__(self, stream: trio.SocketStream, lock: trio.Lock) -> None:
        self._stream = stream
        self._socket = stream.socket
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
        if TCPServer is None:  # pragma: no cover
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
        if not isinstance(stream, trio.SocketStream) or not isinstance(lock, trio.Lock):
            return None  # TLS, or internals that moved
        return cls(stream, lock)

    def write_now(self, event: bytes) -> bool:
        """Hand ``event`` to the kernel now, without waiting; True if it is all
        there. False when it must go by :meth:`send` instead: the socket buffer
        is full (then the written part is kept and :meth:`send` finishes it),
        Hypercorn is writing, or the socket is gone."""
        if self._rest or self.broken or self._lock.locked():
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
