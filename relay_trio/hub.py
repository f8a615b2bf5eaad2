"""The hub: one poller per process, its snapshot fanned out to every subscriber.

The hub depends on a *snapshot source* only — an async callable returning one
entry (a JSON-ready mapping) per queue — so it runs in tests with no Redis and
no sockets. In the server the source is :meth:`Broker.snapshot`: a constant
number of round trips per tick, whatever the number of subscribers.

Ownership and lifetime:

* :meth:`Hub.serve` runs in a nursery the caller owns (the app's). It is the
  parent of the polling task and returns only when cancelled.
* The **first** subscriber starts the polling child in that nursery, inside a
  cancel scope of its own; when the **last** subscriber leaves, that scope is
  cancelled. An idle hub does no work and no Redis I/O.
* The poller polls at once, then once per ``interval``. Each snapshot is encoded
  **once** into a complete SSE event and handed to every subscriber through its
  own memory channel of size 1: **latest wins** — an unread snapshot is replaced
  by the newer one, so a slow subscriber holds one snapshot at most and can
  block neither the poller nor anyone else.
* The channel is the only way a snapshot leaves the hub: it does no socket
  I/O and knows nothing of HTTP. (The server's fan-out to thousands of
  streams is one subscriber of its own: :mod:`relay_trio.server.broadcast`.)
* A new subscriber is seeded with the cached snapshot at once while the poller
  runs; after an idle spell the cache is stale, and the poller, starting, polls
  at once instead.
* A failing source skips the tick; the poller and the cache live on. With
  ``keepalive`` set, a subscriber that got nothing for that long (failing or
  slow polls) is handed a keep-alive comment instead; it never replaces an
  unread snapshot.
* A subscriber that takes nothing for ``drop_after`` seconds while snapshots
  wait for it is dropped: its channel is closed and its cancel scope cancelled.
* :meth:`Hub.close` (server shutdown) ends every subscription at once (their
  ``receive`` raises :class:`trio.EndOfChannel`) and makes ``serve`` return.

With a ``relay`` (:class:`relay_trio.fleet.Fleet`: one poller per fleet of
server processes, spec section 13) the polling child runs the relay instead of
polling on its own: while its process leads the fleet, the relay polls through
:meth:`Hub._take` (with the event id to use) and hands the snapshot to
:meth:`Hub._deliver`; while it follows, it delivers the snapshots another
process polled. Everything else is unchanged: the child is
still started by the first subscriber and cancelled with the last, snapshots
still reach subscribers only through their channels.

Cancelling ``serve`` cancels the poller; subscriptions still open see their
channel closed. Nothing is left running and nothing is written anywhere: the
hub only reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ._errors import HubClosed

log = logging.getLogger(__name__)

SnapshotSource = Callable[[], Awaitable[Sequence[Mapping[str, Any]]]]


class HubMetrics(Protocol):
    """What the hub reports; :class:`relay_trio.metrics.Metrics` implements it."""

    def hub_event(self, event: str, value: float = 1.0) -> None: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One poll's result, encoded once for every subscriber."""

    seq: int
    entries: Sequence[Mapping[str, Any]]
    event: bytes
    """The whole SSE event: ``id: <seq>\\ndata: <compact JSON array>\\n\\n``."""
    taken_at: float
    """``trio.current_time()`` when the poll finished."""


KEEPALIVE_EVENT = b": keep-alive\n\n"


def encode_event(seq: int, entries: Sequence[Mapping[str, Any]]) -> bytes:
    data = json.dumps(list(entries), separators=(",", ":"), ensure_ascii=False)
    return b"id: %d\ndata: %s\n\n" % (seq, data.encode())


Take = Callable[[int], Awaitable["Snapshot | None"]]
"""Poll once and encode the snapshot under the given event id (nothing is
delivered); ``None`` if the poll failed (the tick is skipped)."""
Deliver = Callable[["Snapshot"], None]
"""Hand a snapshot (polled elsewhere) to every subscriber."""


class Relay(Protocol):
    """What drives a hub's polling child in a fleet; see :mod:`relay_trio.fleet`."""

    async def run(self, take: Take, deliver: Deliver, interval: float) -> None: ...


class Subscription:
    """One subscriber's end: :meth:`receive` waits for the newest snapshot."""

    def __init__(self, now: float) -> None:
        self._send, self._recv = trio.open_memory_channel[Snapshot](1)
        self._waiting = False
        self.last_taken = now
        self.dropped = False
        self.cancel_scope = trio.CancelScope()
        """Cancelled when the hub drops this subscriber or closes; a consumer may
        run its sending inside it."""

    async def receive(self) -> Snapshot:
        """The newest snapshot not yet taken; :class:`trio.EndOfChannel` once the
        hub closed or dropped this subscription."""
        snapshot = await self._recv.receive()
        self._waiting = False
        self.last_taken = trio.current_time()
        return snapshot

    def __aiter__(self) -> AsyncIterator[Snapshot]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Snapshot]:
        while True:
            try:
                yield await self.receive()
            except trio.EndOfChannel:
                return

    @property
    def pending(self) -> bool:
        """A snapshot waits unread in the channel."""
        return self._waiting

    def offer(self, snapshot: Snapshot) -> bool:
        """Hand over ``snapshot``, replacing an unread one. True if one was replaced."""
        replaced = False
        try:
            self._send.send_nowait(snapshot)
        except trio.WouldBlock:
            self._recv.receive_nowait()
            self._send.send_nowait(snapshot)
            replaced = True
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._waiting = True
        return replaced

    def end(self) -> None:
        """Close at once: an unread snapshot is discarded, ``receive`` raises
        :class:`trio.EndOfChannel`."""
        with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            self._recv.receive_nowait()
        self._waiting = False
        self._send.close()
        self.cancel_scope.cancel()


class Hub:
    """Polls ``source`` once per ``interval`` while anyone is subscribed."""

    def __init__(
        self,
        source: SnapshotSource,
        *,
        interval: float = 1.0,
        drop_after: float = 30.0,
        keepalive: float | None = None,
        metrics: HubMetrics | None = None,
        relay: Relay | None = None,
    ) -> None:
        self._source = source
        self._relay = relay
        self.interval = interval
        self.keepalive = keepalive
        self._last_offer = -math.inf
        self.drop_after = drop_after
        self._metrics = metrics
        self._subscribers: set[Subscription] = set()
        self._nursery: trio.Nursery | None = None
        self._poll_scope: trio.CancelScope | None = None
        self._closed = False
        self.latest: Snapshot | None = None
        self.polls = 0
        self.poll_errors = 0
        self._seq = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def closing(self) -> bool:
        """True once closed, or when not serving: :meth:`subscribe` would refuse."""
        return self._closed or self._nursery is None

    @property
    def polling(self) -> bool:
        return self._poll_scope is not None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub until cancelled; ready (``task_status.started()``) at once."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.close()

    def close(self) -> None:
        """End every subscription, refuse new ones, and end :meth:`serve`."""
        self._closed = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        for subscription in list(self._subscribers):
            subscription.end()
        self._stop_polling()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Subscribe for the duration of the block; the last one out stops the poller.

        Raises :class:`HubClosed` when the hub is closed or not serving.
        """
        if self._closed or self._nursery is None:
            raise HubClosed("the hub is not serving")
        subscription = Subscription(trio.current_time())
        self._subscribers.add(subscription)
        self._report("subscribers", len(self._subscribers))
        if self.latest is not None and self._poll_scope is not None:
            # fresh while the poller runs; after an idle spell the cache may be
            # minutes old, and the poller starting below polls at once instead
            subscription.offer(self.latest)
        if self._poll_scope is None:
            self._poll_scope = trio.CancelScope()
            self._nursery.start_soon(self._poll, self._poll_scope)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)
            subscription.end()
            self._report("subscribers", len(self._subscribers))
            if not self._subscribers:
                self._stop_polling()

    def _stop_polling(self) -> None:
        if self._poll_scope is not None:
            self._poll_scope.cancel()
            self._poll_scope = None

    async def _poll(self, scope: trio.CancelScope) -> None:
        if self._relay is not None:
            with scope:
                await self._relayed(self._relay)
            return
        with scope:
            next_poll = trio.current_time()
            while True:
                now = trio.current_time()
                if now >= next_poll:
                    next_poll = now + self.interval
                    await self._tick()
                elif self.keepalive and now - self._last_offer >= self.keepalive:
                    self._offer_keepalive(now)
                wake = next_poll
                if self.keepalive:
                    wake = min(wake, self._last_offer + self.keepalive)
                await trio.sleep_until(wake)

    async def _relayed(self, relay: Relay) -> None:
        """The polling child in a fleet: the relay polls or delivers; keep-alives
        go out here when nothing did for ``keepalive`` seconds."""
        self._last_offer = max(self._last_offer, trio.current_time())
        async with trio.open_nursery() as nursery:
            if self.keepalive:
                nursery.start_soon(self._keepalives, self.keepalive)
            await relay.run(self._take, self._deliver, self.interval)
            nursery.cancel_scope.cancel()

    async def _keepalives(self, keepalive: float) -> None:
        while True:
            await trio.sleep_until(self._last_offer + keepalive)
            now = trio.current_time()
            if now - self._last_offer >= keepalive:
                self._offer_keepalive(now)

    def _offer_keepalive(self, now: float) -> None:
        """Nothing was sent for ``keepalive`` seconds (failing or slow polls): hand a
        keep-alive comment to every subscriber that has nothing waiting."""
        self._last_offer = now
        keepalive = Snapshot(self._seq, (), KEEPALIVE_EVENT, now)
        for subscription in list(self._subscribers):
            if not subscription.pending:
                subscription.offer(keepalive)

    async def _tick(self) -> None:
        snapshot = await self._take(self._seq + 1)
        if snapshot is not None:
            self._deliver(snapshot)

    async def _take(self, seq: int) -> Snapshot | None:
        """Poll, and encode the snapshot as event ``seq``; ``None`` when the poll
        failed (counted and logged)."""
        began = trio.current_time()
        self.polls += 1
        self._report("polls")
        try:
            entries = list(await self._source())
            event = encode_event(seq, entries)
        except Exception as exc:  # a failed tick is skipped; the poller lives on
            self.poll_errors += 1
            self._report("poll_errors")
            log.warning("hub poll failed, tick skipped: %s", exc)
            return None
        now = trio.current_time()
        self._report("poll_duration", now - began)
        return Snapshot(seq, entries, event, now)

    def _deliver(self, snapshot: Snapshot) -> None:
        """Hand ``snapshot`` to every subscriber (latest wins), dropping those that
        took nothing for ``drop_after`` seconds while snapshots waited."""
        now = trio.current_time()
        self._seq = snapshot.seq
        self.latest = snapshot
        self._last_offer = now
        for subscription in list(self._subscribers):
            if subscription.pending and now - subscription.last_taken >= self.drop_after:
                self._drop(subscription)
            elif subscription.offer(snapshot):
                self._report("snapshots_dropped")

    def _drop(self, subscription: Subscription) -> None:
        subscription.dropped = True
        subscription.end()
        self._subscribers.discard(subscription)
        self._report("clients_dropped")
        self._report("subscribers", len(self._subscribers))
        if not self._subscribers:
            self._stop_polling()

    def _report(self, event: str, value: float = 1.0) -> None:
        if self._metrics is not None:
            self._metrics.hub_event(event, value)


__all__ = [
    "KEEPALIVE_EVENT",
    "Deliver",
    "Hub",
    "HubClosed",
    "HubMetrics",
    "Relay",
    "Snapshot",
    "SnapshotSource",
    "Subscription",
    "Take",
    "encode_event",
]
