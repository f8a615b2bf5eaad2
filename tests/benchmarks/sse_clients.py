"""A cheap load client for ``GET /api/stream``: all sockets on one epoll thread.

:class:`EpollSSEClients` runs many stream clients for the benchmarks with no
trio task per connection: one dedicated OS thread owns every socket and runs
a plain ``select.epoll`` loop over non-blocking sockets (connect, send the
request, read the response head, decode the body, scan it for events).
At thousands of clients that costs a fraction of the per-task client's CPU and
adds little of its own scheduling to the delays a benchmark measures.

The trio side hands new clients to the thread through a deque and an eventfd;
the thread wakes trio only when client 0 sees a new snapshot (once per tick,
``TrioToken.run_sync_soon``) and when it stops. ``grow_to`` checks its counters
every 10 ms.

The clients speak HTTP/1.1 by default: the body comes in chunked framing, which
they decode. With ``http_version="1.0"`` they send ``GET /api/stream HTTP/1.0``
instead: the server cannot frame the body in chunks for such a client, so the
event bytes arrive as they are and the body ends when the server closes the
connection. :attr:`EpollSSEClients.chunked_bodies` and
:attr:`~EpollSSEClients.plain_bodies` count the responses of each kind, so a
benchmark can check it got the framing (and the server path) it asked for.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import heapq
import itertools
import os
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

FIRST_EVENT_WITHIN = 20.0  # s; a connection with no event by then is retried
ATTEMPTS = 3
RETRY_PAUSE = 0.5  # s between a failed attempt and the next
RECV_SIZE = 256 * 1024
MAX_HEAD = 64 * 1024  # a response head longer than this fails the attempt
# Each event's id, and the first ``"ts":`` of its data line (two plain patterns
# run in half the time of one with a lazy ``[^\n]*?"ts":`` between them).
ID_RE = re.compile(rb"id: (\d+)\ndata: \[")
TS_RE = re.compile(rb'"ts":(\d+)')
STATUS_OK_RE = re.compile(rb"http/1\.[01] 200\b")  # on the lower-cased head
HTTP_VERSIONS = ("1.1", "1.0")
POLL_EVERY = 0.01  # s; how often grow_to looks at the counters

# _Conn.state
CONNECTING, SENDING, HEAD, BODY = range(4)
# timer kinds
DEADLINE, RETRY = 0, 1


@dataclass(slots=True)
class StreamClient:
    """One client's record (all its attempts); written by the I/O thread."""

    events: int = 0
    first_seq: int = 0
    last_seq: int = 0
    attempts: int = 0


class _Conn:
    """One attempt: a socket and where its response parser stands."""

    __slots__ = (
        "chunked",
        "client",
        "done",
        "fd",
        "head",
        "index",
        "left",
        "open",
        "out",
        "rest",
        "sock",
        "state",
        "text",
    )

    def __init__(self, sock: socket.socket, index: int, client: StreamClient, out: bytes) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.client = client
        self.state = CONNECTING
        self.open = True
        self.out = out  # request bytes not sent yet
        self.head = b""  # response head so far
        self.chunked = False
        self.left = 0  # bytes of the current chunk still to come, its CRLF included
        self.rest = b""  # an incomplete chunk-size line
        self.text = b""  # body text after the last complete event
        self.done = False  # the last chunk (size 0) came


class EpollSSEClients:
    """Many ``GET /api/stream`` clients, all on one OS thread with ``select.epoll``.

    ``on_event(client, seq, ts_ms,
    now_ms)`` is called once per event a client receives — **from the I/O
    thread**, not trio's: keep it short and thread-safe (appending to a list and
    updating ints is fine under the GIL); ``now_ms`` is ``time.time() * 1000``
    taken right after the ``recv`` that completed the event. ``http_version``
    ("1.1" or "1.0") is the request's (see the module). Client 0 also drives
    :meth:`wait_seq` (the hub's tick clock). A client with no event within
    ``FIRST_EVENT_WITHIN`` s of starting an attempt (a handshake lost to a full
    accept queue, say), or whose attempt failed (refused, reset, not ``200``,
    closed before its first event), starts again ``RETRY_PAUSE`` s later,
    ``ATTEMPTS`` times at most (``retries`` counts the restarts; then it counts
    in ``failed``). A client that had events and is then closed by the server
    just ends.

    The thread starts in a task in ``nursery``; when that nursery is cancelled the
    task stops the thread, which closes every socket, and joins it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        nursery: trio.Nursery,
        on_event: Callable[[int, int, int, float], None] | None = None,
        *,
        http_version: str = "1.1",
    ) -> None:
        if http_version not in HTTP_VERSIONS:
            raise ValueError(f"http_version must be one of {HTTP_VERSIONS}, not {http_version!r}")
        self.host = host
        self.port = port
        self.nursery = nursery
        self.on_event = on_event
        self.clients: list[StreamClient] = []
        self.failed = 0
        self.retries = 0
        self.http_version = http_version
        self.chunked_bodies = 0
        """Responses (status 200) whose body came in chunked framing."""
        self.plain_bodies = 0
        """Responses (status 200) whose body came as it is, ended by the close."""
        self.seq = 0
        self.ts_of: dict[int, int] = {}
        """Client 0's snapshots: seq -> the server's ``ts`` (ms) of that poll."""
        self._with_event = 0
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._family, self._kind, self._proto, self._address = family, kind, proto, address
        host_header = f"[{host}]" if ":" in host else host  # the server's Host allow-list
        self._request = (
            f"GET /api/stream HTTP/{http_version}\r\nHost: {host_header}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        self._token = trio.lowlevel.current_trio_token()
        self._seq_changed = trio.Event()
        self._thread_done = trio.Event()
        self._crash: BaseException | None = None
        # trio -> thread: (first index, count) batches, then a write to the eventfd
        self._todo: collections.deque[tuple[int, int]] = collections.deque()
        self._stopping = False
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        # thread-only state
        self._conns: dict[int, _Conn] = {}
        self._timers: list[tuple[float, int, int, object]] = []
        self._tie = itertools.count()
        self._buffer = bytearray(RECV_SIZE)
        self._view = memoryview(self._buffer)
        nursery.start_soon(self._guard)

    # -- trio side ---------------------------------------------------------------------

    @property
    def live(self) -> int:
        """Clients that have had an event."""
        return self._with_event

    @property
    def pending(self) -> int:
        """Clients started that have had no event yet and have not failed."""
        return len(self.clients) - self._with_event - self.failed

    async def grow_to(
        self, count: int, *, batch: int = 200, pause: float = 0.05, may_fail: bool = False
    ) -> None:
        """Open clients up to ``count``: a batch of ``batch`` every ``pause`` s, while
        fewer than ``batch`` earlier ones still wait for their first event. Then wait
        until each has had one (or failed, if ``may_fail``); all within 300 s."""
        with trio.fail_after(300):
            while len(self.clients) < count:
                self._check()
                if self.pending < batch:
                    first = len(self.clients)
                    added = min(batch, count - first)
                    self.clients.extend(StreamClient() for _ in range(added))
                    self._todo.append((first, added))
                    os.eventfd_write(self._wake_fd, 1)
                await trio.sleep(pause)
            while self.pending > 0:
                self._check()
                await trio.sleep(POLL_EVERY)
        if self.failed and not may_fail:
            raise RuntimeError(f"{self.failed} of {count} stream clients failed")

    async def wait_seq(self, seq: int) -> None:
        """Wait until client 0 has seen snapshot ``seq``."""
        while self.seq < seq:
            self._check()
            await self._seq_changed.wait()

    async def next_tick(self) -> int:
        await self.wait_seq(self.seq + 1)
        return self.seq

    def _check(self) -> None:
        if self._crash is not None:
            raise RuntimeError("the SSE client thread failed") from self._crash

    def _seq_advanced(self) -> None:  # run by trio, from the thread's run_sync_soon
        self._seq_changed.set()
        self._seq_changed = trio.Event()

    def _thread_ended(self) -> None:  # likewise
        self._seq_advanced()  # wait_seq then sees a crash
        self._thread_done.set()

    async def _guard(self) -> None:
        """Run the I/O thread for as long as the nursery lives; stop and join it then."""
        thread = threading.Thread(target=self._thread_main, name="epoll-sse-clients", daemon=True)
        thread.start()
        try:
            await self._thread_done.wait()  # only if it crashed: it runs until told to stop
            self._check()
        finally:
            self._stopping = True
            os.eventfd_write(self._wake_fd, 1)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
            self._epoll.close()
            os.close(self._wake_fd)

    def _call_trio(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # trio is gone (not expected)
            self._token.run_sync_soon(fn)

    # -- the I/O thread ----------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._crash = exc
        finally:
            for conn in self._conns.values():
                conn.sock.close()
            self._conns.clear()
            self._call_trio(self._thread_ended)

    def _loop(self) -> None:
        poll = self._epoll.poll
        conns = self._conns
        timers = self._timers
        wake_fd = self._wake_fd
        while not self._stopping:
            timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else -1.0
            woken = False
            for fd, _mask in poll(timeout):
                conn = conns.get(fd)
                if conn is None:
                    woken = woken or fd == wake_fd
                elif conn.state >= HEAD:
                    self._readable(conn)
                else:
                    self._writable(conn)
            # New sockets only after the batch: none may take a number still in it.
            if woken:
                self._take_requests()
            if timers and timers[0][0] <= time.monotonic():
                self._fire_timers()

    def _take_requests(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        while self._todo and not self._stopping:
            first, count = self._todo.popleft()
            for index in range(first, first + count):
                self._start(index)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, item = heapq.heappop(timers)
            if kind == RETRY:
                assert isinstance(item, int)
                self._start(item)
            else:
                assert isinstance(item, _Conn)
                if item.open and not item.client.events:
                    self._end(item)  # no first event in time

    def _start(self, index: int) -> None:
        """Begin an attempt of client ``index``: a non-blocking connect."""
        client = self.clients[index]
        client.attempts += 1
        sock = socket.socket(self._family, self._kind, self._proto)
        sock.setblocking(False)
        conn = _Conn(sock, index, client, self._request)
        self._conns[conn.fd] = conn
        deadline = time.monotonic() + FIRST_EVENT_WITHIN
        heapq.heappush(self._timers, (deadline, next(self._tie), DEADLINE, conn))
        try:
            error = sock.connect_ex(self._address)
        except OSError as exc:
            error = exc.errno or errno.EIO
        if error not in (0, errno.EINPROGRESS):
            self._end(conn)
            return
        self._epoll.register(conn.fd, select.EPOLLOUT)

    def _writable(self, conn: _Conn) -> None:
        """Connected (or failed to), or room to send the rest of the request."""
        sock = conn.sock
        if conn.state == CONNECTING:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._end(conn)
                return
            conn.state = SENDING
        try:
            sent = sock.send(conn.out)
        except BlockingIOError:
            return
        except OSError:
            self._end(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            conn.state = HEAD
            self._epoll.modify(conn.fd, select.EPOLLIN)

    def _readable(self, conn: _Conn) -> None:
        """One ``recv`` (level-triggered: anything left is read on the next round)."""
        try:
            size = conn.sock.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError:
            self._end(conn)
            return
        if not size:
            self._end(conn)  # closed by the server
            return
        now_ms = time.time() * 1000
        data = bytes(self._view[:size])
        if conn.state == HEAD:
            data = conn.head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                conn.head = data
                if len(data) > MAX_HEAD:
                    self._end(conn)
                return
            head = data[:end].lower()
            if not STATUS_OK_RE.match(head):
                self._end(conn)
                return
            conn.head = b""
            conn.state = BODY
            conn.chunked = any(
                line.startswith(b"transfer-encoding:") and b"chunked" in line
                for line in head.split(b"\r\n")
            )
            if conn.chunked:
                self.chunked_bodies += 1
            else:  # no framing (HTTP/1.0): the bytes as they are, until the close
                self.plain_bodies += 1
            data = data[end + 4 :]
            if not data:
                return
        if conn.chunked:
            if not (conn.left or conn.rest or conn.text):
                # The usual case: ``data`` is one whole chunk of whole events.
                newline = data.find(b"\n")
                try:
                    length = int(data[:newline], 16) if newline > 0 else 0
                except ValueError:  # a chunk extension, say: the general path
                    length = 0
                stop = newline + 1 + length
                if length >= 2 and len(data) == stop + 2 and data.endswith(b"\n\n\r\n"):
                    self._scan(conn, data, newline + 1, stop, now_ms)
                    return
            try:
                data = self._dechunk(conn, data)
            except ValueError:  # not a chunk-size line: the framing is lost
                self._end(conn)
                return
        text = conn.text + data if conn.text else data
        end = text.rfind(b"\n\n")
        if end < 0:
            conn.text = text
        else:
            conn.text = text[end + 2 :]
            self._scan(conn, text, 0, end + 2, now_ms)
        if conn.done:
            self._end(conn)

    def _scan(self, conn: _Conn, text: bytes, pos: int, end: int, now_ms: float) -> None:
        """The events in ``text[pos:end]``, which ends with a blank line."""
        search = ID_RE.search
        match = search(text, pos, end)
        while match is not None:
            data_at = match.end()
            line_end = text.find(b"\n", data_at, end)  # found: the blank line is ahead
            ts = TS_RE.search(text, data_at, line_end)
            if ts is not None:
                self._event(conn, int(match[1]), int(ts[1]), now_ms)
            match = search(text, line_end, end)

    @staticmethod
    def _dechunk(conn: _Conn, data: bytes) -> bytes:
        """The payload in ``data`` (HTTP/1.1 chunked framing, continued from the
        previous call's state in ``conn``)."""
        if conn.rest:
            data = conn.rest + data
            conn.rest = b""
        left = conn.left
        pos, size = 0, len(data)
        parts = []
        while pos < size:
            if left:  # inside a chunk: its data, then its CRLF
                take = min(left, size - pos)
                payload = min(take, left - 2)
                if payload > 0:
                    parts.append(data[pos : pos + payload])
                pos += take
                left -= take
                continue
            newline = data.find(b"\n", pos)
            if newline < 0:
                conn.rest = data[pos:]
                break
            length = int(data[pos:newline].partition(b";")[0], 16)
            pos = newline + 1
            if not length:  # the last chunk: the response is over
                conn.done = True
                break
            left = length + 2
        conn.left = left
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def _event(self, conn: _Conn, seq: int, ts: int, now_ms: float) -> None:
        client = conn.client
        if not client.events:
            client.first_seq = seq
            self._with_event += 1
        client.events += 1
        client.last_seq = seq
        if self.on_event is not None:
            self.on_event(conn.index, seq, ts, now_ms)
        if conn.index == 0 and seq > self.seq:
            self.ts_of[seq] = ts
            self.seq = seq
            self._call_trio(self._seq_advanced)

    def _end(self, conn: _Conn) -> None:
        """This attempt is over: close it; retry (or fail) a client that had no event."""
        if not conn.open:
            return
        conn.open = False
        del self._conns[conn.fd]
        conn.sock.close()  # also takes it out of the epoll set
        client = conn.client
        if client.events:
            return  # it streamed, then ended
        if client.attempts < ATTEMPTS:
            self.retries += 1
            when = time.monotonic() + RETRY_PAUSE
            heapq.heappush(self._timers, (when, next(self._tie), RETRY, conn.index))
        else:
            self.failed += 1
