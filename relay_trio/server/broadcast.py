"""The broadcaster: one hub subscriber that writes every fast-path stream.

The hub hands each snapshot to its subscribers through memory channels only
(spec section 6): it knows nothing of sockets. A stream served through ASGI
subscribes to the hub itself, and its task is woken for every snapshot; at
thousands of clients those wakes alone cost more than a tick
(docs/benchmarks.md). So every stream that the socket fast path can serve
(:mod:`.direct`) registers here instead, and the server subscribes to the hub
**once** for all of them: the broadcaster's task, woken once per snapshot,
writes it to each registered socket without blocking
(:meth:`~.direct.SocketWriter.write_now`) — one wake per tick, not per client.

A stream whose socket cannot take the snapshot at once (full buffer, a write
cut part-way, Hypercorn writing) gets it in its own **outlet**: a memory
channel of one, latest wins, which its task drains with the cancellable
:meth:`~.direct.SocketWriter.send`. While something waits in its outlet, later
snapshots go there too (replacing it), so events never overtake each other.
An outlet holding a snapshot for ``drop_after`` seconds belongs to a client
that stopped reading: it is closed and its cancel scope cancelled, which also
cancels a ``send`` stuck on that socket.

Ownership and lifetime: :meth:`Broadcaster.serve` runs in the app's nursery
(``task_status`` once ready) and returns when cancelled. The **first** stream
to register starts the subscribing task inside a cancel scope of its own; the
**last** to leave cancels it, so the hub's poller stops when nobody watches.
When the hub closes (shutdown) or :meth:`close` is called, every outlet ends
at once. The broadcaster reads snapshots and writes to sockets it was handed;
it writes nothing to Redis.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import trio

from ..hub import Hub, HubClosed, Snapshot

log = logging.getLogger(__name__)


class Writer(Protocol):
    """What the broadcaster needs of a stream's socket (:class:`.direct.SocketWriter`)."""

    def write_now(self, event: bytes) -> bool: ...


class BroadcastMetrics(Protocol):
    def stream_event(self, event: str, value: float = 1.0) -> None: ...


class Outlet:
    """One registered stream: its writer, and the snapshots its task must finish.

    Iterate it (``async for event in outlet``) to get, in order, each event the
    broadcaster could not write at once; the iteration ends when the stream is
    dropped, the broadcaster closes or the hub shuts down.
    """

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._send, self._recv = trio.open_memory_channel[Snapshot](1)
        self.waiting_since: float | None = None
        """When the snapshot now waiting in the outlet went in (None: nothing waits).
        A task that takes it resets this; one stuck on its socket does not."""
        self._sending = False
        self.dropped = False
        self.cancel_scope = trio.CancelScope()
        """Cancelled when the outlet ends: the stream's task sends inside it."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        while True:
            try:
                snapshot = await self._recv.receive()
            except trio.EndOfChannel:
                return
            self.waiting_since = None
            self._sending = True
            try:
                yield snapshot.event
            finally:
                self._sending = False

    @property
    def busy(self) -> bool:
        """The stream's task has a snapshot to finish: later ones queue behind it."""
        return self._sending or self.waiting_since is not None

    def hand_over(self, snapshot: Snapshot, now: float) -> bool:
        """Put ``snapshot`` into the outlet, replacing an unsent one. True if one
        was replaced (a snapshot the client never got)."""
        replaced = False
        try:
            self._send.send_nowait(snapshot)
        except trio.WouldBlock:
            with contextlib.suppress(trio.WouldBlock):
                self._recv.receive_nowait()
            self._send.send_nowait(snapshot)
            replaced = True
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        if self.waiting_since is None:
            self.waiting_since = now
        return replaced

    def end(self) -> None:
        """Close the outlet: its iteration ends, its cancel scope is cancelled."""
        self._send.close()
        self.cancel_scope.cancel()


class Broadcaster:
    """Writes each hub snapshot to every registered stream; see the module doc."""

    def __init__(
        self,
        hub: Hub,
        *,
        drop_after: float = 30.0,
        metrics: BroadcastMetrics | None = None,
    ) -> None:
        self.hub = hub
        self.drop_after = drop_after
        self._metrics = metrics
        self._outlets: set[Outlet] = set()
        self._nursery: trio.Nursery | None = None
        self._scope: trio.CancelScope | None = None
        self._closed = False
        self.fan_outs = 0
        """Snapshots fanned out (one wake of the broadcaster each)."""
        self.writes = 0
        """Events written straight to a socket by the broadcaster."""
        self.handed_over = 0
        """Events left to a stream's own task (its socket could not take them at once)."""

    @property
    def streams(self) -> int:
        return len(self._outlets)

    @property
    def subscribed(self) -> bool:
        return self._scope is not None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ready at once. Registered streams end when it ends."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.close()

    def close(self) -> None:
        """End every outlet, refuse new registrations, and end :meth:`serve`."""
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        self._end_all()
        self._unsubscribe()

    @asynccontextmanager
    async def register(self, writer: Writer) -> AsyncIterator[Outlet]:
        """Have the broadcaster write to ``writer`` for the duration of the block.

        Raises :class:`~relay_trio.hub.HubClosed` when shutting down. The newest
        snapshot, if the hub has a fresh one, goes into the outlet at once."""
        if self._closed or self._nursery is None or self.hub.closing:
            raise HubClosed("the server is shutting down")
        outlet = Outlet(writer)
        self._outlets.add(outlet)
        self._report("fast_path_streams", len(self._outlets))
        if self._scope is None:
            self._scope = trio.CancelScope()
            self._nursery.start_soon(self._run, self._scope)
        elif self.hub.latest is not None and self.hub.polling:
            outlet.hand_over(self.hub.latest, trio.current_time())
        try:
            yield outlet
        finally:
            self._outlets.discard(outlet)
            outlet.end()
            self._report("fast_path_streams", len(self._outlets))
            if not self._outlets:
                self._unsubscribe()

    def _unsubscribe(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None

    async def _run(self, scope: trio.CancelScope) -> None:
        with scope:
            try:
                async with self.hub.subscribe() as subscription:
                    with subscription.cancel_scope:
                        async for snapshot in subscription:
                            self.fan_out(snapshot)
            except HubClosed:
                pass
            # the hub closed (shutdown) or dropped this subscriber: every stream ends
            if self._scope is scope:
                self._scope = None
            self._end_all()

    def fan_out(self, snapshot: Snapshot) -> None:
        """Write ``snapshot`` to every registered stream that can take it now; hand
        it to the others' outlets; drop those that stopped reading."""
        now = trio.current_time()
        self.fan_outs += 1
        written = handed = 0
        for outlet in list(self._outlets):
            since = outlet.waiting_since
            if since is not None and now - since >= self.drop_after:
                self._drop(outlet)
            elif not outlet.busy and outlet.writer.write_now(snapshot.event):
                written += 1
            else:
                if outlet.hand_over(snapshot, now):
                    self._report("snapshots_dropped")
                handed += 1
        self.writes += written
        self.handed_over += handed
        if written:
            self._report("fast_path_writes", written)
        if handed:
            self._report("fast_path_handovers", handed)

    def _drop(self, outlet: Outlet) -> None:
        outlet.dropped = True
        outlet.end()
        self._outlets.discard(outlet)
        self._report("fast_path_streams", len(self._outlets))
        self._report("clients_dropped")
        if not self._outlets:
            self._unsubscribe()
        log.info("dropped a stream client that took nothing for %.0f s", self.drop_after)

    def _end_all(self) -> None:
        for outlet in list(self._outlets):
            outlet.end()

    def _report(self, event: str, value: float = 1.0) -> None:
        if self._metrics is not None:
            self._metrics.stream_event(event, value)
