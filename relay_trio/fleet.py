"""One poller per fleet (spec section 13): N server processes on one Redis share one poll.

Each process's hub keeps its shape (section 6); with a :class:`Fleet` as its
``relay``, its polling child (started by the first subscriber, cancelled with
the last) runs :meth:`Fleet.run` instead of polling on its own. So only the
processes that have subscribers take part, and a process leaves the fleet when
its child is cancelled.

While it runs, a member

* holds **one subscription** to the fleet's snapshot channel (:class:`Bus`) and
  hands every fresh snapshot it hears to its hub (``deliver``: the same memory
  channels as ever);
* tries to take the **lease** (:class:`Lease`) at once, again whenever it has
  heard nothing (no snapshot, no lease held by another) for ``lease_time +
  interval``, and again as soon as the leader says it left (see the timing
  below). Taking the lease yields a new **epoch** (a fencing token: each one
  is greater than every earlier one);
* while it holds the lease, it **leads**: it renews the lease, polls (the hub's
  ``take``), delivers the snapshot to its own subscribers and publishes it
  encoded, once per interval. A renewal that fails (the lease expired and
  another took it, or Redis did not answer) ends its lead at once: it publishes
  nothing more and follows. Cancelled while it leads, it leaves cleanly.

Event ids are ``epoch * 2**32 + n`` (n: the leader's tick within its epoch), so
they keep increasing across leader changes. A member takes a snapshot only if
its epoch is not older than the newest it has seen and its id is greater than
the last it delivered: a stale leader's late publishes are ignored (fencing),
and so are duplicates (the leader hears its own).

Timing, when the leader dies (or is cut off): a leader publishes right after
renewing, so a dead leader's lease ends at most ``lease_time`` after its last
snapshot; a member that heard nothing for ``lease_time + interval`` tries the
lease, finds it free, polls and publishes at once: the fleet's clients see a new
event within ``interval + lease_time`` (spec: two intervals plus the lease time)
of the leader's death.

Timing, when the leader leaves cleanly (its child cancelled: its last subscriber
left, or its server shuts down): within :data:`RELEASE_TIMEOUT` (shielded, so the
cancellation waits that long at most, plus a Redis call already under way: see
:mod:`relay_trio.fleet_redis`; a server waits for it, :meth:`Fleet.wait_idle`,
before it closes Redis) it releases the lease and then publishes a
**leaving** message with its epoch (:func:`encode_leaving`: distinct from every
snapshot). A follower that hears it, for an epoch not older than the newest it
has seen, tries the lease at once instead of waiting out the silence: exactly
one wins (the lease is fenced; it counts a ``handover``), polls and publishes,
so the fleet's clients see a new event a few Redis round trips after the leave
(a poll's worth), not ``lease_time + interval``; the others lose, keep
following, and keep the silence deadline they had (a leaving message never
delays a takeover). A leaving message of an older epoch is ignored (counted in
``ignored``, as a stale snapshot is); anything that is neither message is
ignored too. If the release or the message is lost (Redis down, the timeout
hit), the fleet falls back on the silence rule above. A cancelled member leaves
nothing behind but, at worst, a lease that expires on its own.

Nothing here does I/O of its own: :class:`Lease` and :class:`Bus` do
(:mod:`relay_trio.fleet_redis` over Redis; :mod:`relay_trio.fleet_memory` in
memory, for tests).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .hub import Deliver, Snapshot, Take

log = logging.getLogger(__name__)

ID_BITS = 32
"""Event ids are ``epoch << ID_BITS | n``."""
RELEASE_TIMEOUT = 1.0
"""Seconds a member leaving the lead spends at most releasing the lease."""


def event_id(epoch: int, n: int) -> int:
    """The id of the leader's ``n``-th snapshot of ``epoch``."""
    return (epoch << ID_BITS) | n


def default_lease_time(interval: float) -> float:
    """Two intervals and a second: a slow tick does not cost the lease."""
    return 2 * interval + 1.0


class Lease(Protocol):
    """The fleet's lease: at most one holder at a time, each with a new epoch."""

    async def acquire(self, ttl: float) -> int | None:
        """Take the lease for ``ttl`` seconds if nobody holds it: its new epoch
        (greater than every earlier one), else ``None``."""
        ...

    async def renew(self, epoch: int, ttl: float) -> bool:
        """Keep the lease of ``epoch`` for ``ttl`` more seconds; False if it is not
        held under ``epoch`` any more."""
        ...

    async def release(self, epoch: int) -> None:
        """Give the lease of ``epoch`` up (nothing if another holds it now)."""
        ...


class Bus(Protocol):
    """The fleet's snapshot channel."""

    async def publish(self, message: bytes) -> None:
        """Send ``message`` to every subscriber of the fleet."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[bytes]]:
        """Messages published while the block runs (and possibly the last one
        published before it). A bus that loses its connection reconnects on its
        own; messages may be lost meanwhile."""
        ...


# -- messages ------------------------------------------------------------------------


def encode_message(epoch: int, snapshot: Snapshot) -> bytes:
    """``<epoch>\\n`` and the snapshot's SSE event, as it is."""
    return b"%d\n%s" % (epoch, snapshot.event)


@dataclass(frozen=True, slots=True)
class Message:
    epoch: int
    id: int
    event: bytes
    data: bytes

    @property
    def entries(self) -> list[Mapping[str, Any]]:
        entries: list[Mapping[str, Any]] = json.loads(self.data)
        return entries


LEAVING = b"leaving"


def encode_leaving(epoch: int) -> bytes:
    """``<epoch>\\nleaving\\n``: the leader of ``epoch`` released the lease."""
    return b"%d\n%s\n" % (epoch, LEAVING)


def decode_leaving(message: bytes) -> int | None:
    """The epoch of a message of :func:`encode_leaving`, else ``None``."""
    head, sep, rest = message.partition(b"\n")
    if not sep or rest != LEAVING + b"\n" or not head.isdigit():
        return None
    return int(head)


def decode_message(message: bytes) -> Message:
    """The parts of a message of :func:`encode_message`; ValueError if it is not one."""
    head, sep, event = message.partition(b"\n")
    id_line, sep2, rest = event.partition(b"\n")
    if not (sep and sep2 and id_line.startswith(b"id: ") and rest.startswith(b"data: ")):
        raise ValueError("not a fleet snapshot message")
    if not rest.endswith(b"\n\n"):
        raise ValueError("not a fleet snapshot message")
    return Message(int(head), int(id_line[4:]), event, rest[6:-2])


# -- the member --------------------------------------------------------------------------


LOG_EVERY = 30.0
"""Seconds between two warnings while the subscription keeps failing."""


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups of one (a nursery's wrapping)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Failing:
    """Logs a run of failed subscriptions: the first at once, then one line per
    :data:`LOG_EVERY` seconds with the count, and the end of the run."""

    def __init__(self) -> None:
        self.count = 0
        self._logged = -math.inf

    def failed(self, exc: Exception) -> None:
        self.count += 1
        now = trio.current_time()
        if now - self._logged >= LOG_EVERY:
            self._logged = now
            log.warning(
                "fleet: no subscription to the snapshot channel (%d attempt(s) failed; "
                "retrying every poll interval): %s",
                self.count,
                _leaf(exc),
            )

    def ended(self) -> None:
        if self.count:
            log.info("fleet: subscribed again after %d failed attempt(s)", self.count)
        self.count = 0
        self._logged = -math.inf


class Fleet:
    """One process's part in the fleet: the ``relay`` of its hub (see the module doc).

    ``on_relayed``: called with the entries of each snapshot taken from another
    process (the server updates its ``/metrics`` depths with them)."""

    def __init__(
        self,
        lease: Lease,
        bus: Bus,
        *,
        lease_time: float | None = None,
        on_relayed: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
    ) -> None:
        self._lease = lease
        self._bus = bus
        self.lease_time = lease_time
        self._on_relayed = on_relayed
        self.epoch: int | None = None
        """The epoch this member leads under, while it leads."""
        self.newest_epoch = 0
        """The newest epoch this member has seen (its own or another's)."""
        self.last_id = 0
        """The id of the last snapshot delivered here."""
        self.relayed = 0
        """Snapshots taken from another member and delivered here."""
        self.ignored = 0
        """Messages of an older epoch than the newest seen (a stale leader's)."""
        self.leads = 0
        """Times this member took the lease."""
        self.handovers = 0
        """Of those, leads taken at once on a leaving leader's word."""
        self.left = 0
        """Leads this member gave up cleanly (lease released, leaving sent)."""
        self._heard = -math.inf
        self._leaving = trio.Event()  # set when a leader said it left: try the lease now
        self._runs = 0
        self._idle = trio.Event()  # set while no run is under way (its leave included)
        self._idle.set()

    @property
    def leading(self) -> bool:
        return self.epoch is not None

    def _lease_time(self, interval: float) -> float:
        return self.lease_time if self.lease_time is not None else default_lease_time(interval)

    async def run(self, take: Take, deliver: Deliver, interval: float) -> None:
        """Take part until cancelled: listen, lead when the lease is free. Cancelled
        while leading, it leaves cleanly first (see the module doc): at most
        :data:`RELEASE_TIMEOUT` seconds, shielded."""
        self._heard = -math.inf
        self._leaving = trio.Event()
        self._runs += 1
        if self._idle.is_set():
            self._idle = trio.Event()
        failing = _Failing()
        try:
            while True:
                try:
                    async with self._bus.subscribe() as messages, trio.open_nursery() as nursery:
                        failing.ended()
                        nursery.start_soon(self._listen, messages, deliver)
                        await self._take_part(take, deliver, interval)
                except Exception as exc:  # the bus could not subscribe: try again
                    failing.failed(exc)
                    await trio.sleep(interval)
        finally:
            self._runs -= 1
            if not self._runs:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no :meth:`run` is under way (at once if none is): a cancelled
        leader has then left (or given up within :data:`RELEASE_TIMEOUT`). The
        server waits for it before it closes the connections the leave uses."""
        await self._idle.wait()

    async def _take_part(self, take: Take, deliver: Deliver, interval: float) -> None:
        lease_time = self._lease_time(interval)
        handover = False  # this attempt follows a leaving message
        while True:
            self._leaving = trio.Event()  # a leave heard from now on: try again
            epoch: int | None = None
            try:
                epoch = await self._lease.acquire(lease_time)
            except Exception as exc:
                log.warning("fleet: lease not taken: %s", exc)
            if epoch is not None:
                if handover:
                    self.handovers += 1
                await self._lead(epoch, take, deliver, interval, lease_time)
            if epoch is not None or not handover:
                # another leads (or Redis failed): wait until it has been silent; a
                # handover lost to another member keeps the deadline it had
                self._heard = max(self._heard, trio.current_time())
            handover = await self._until_silent(lease_time + interval)

    async def _until_silent(self, silence: float) -> bool:
        """Sleep until nothing was heard for ``silence`` seconds (each snapshot heard
        meanwhile moves the deadline): False; or until a leader says it left: True."""
        while True:
            if self._leaving.is_set():
                return True
            wake = self._heard + silence
            if wake <= trio.current_time():
                return False
            with trio.move_on_at(wake):
                await self._leaving.wait()

    async def _lead(
        self, epoch: int, take: Take, deliver: Deliver, interval: float, lease_time: float
    ) -> None:
        self.epoch = epoch
        self.newest_epoch = max(self.newest_epoch, epoch)
        self.leads += 1
        log.info("fleet: leading under epoch %d", epoch)
        n = 0
        try:
            while True:
                began = trio.current_time()
                if n:
                    try:
                        kept = await self._lease.renew(epoch, lease_time)
                    except Exception as exc:
                        log.warning("fleet: lease not renewed, leading no more: %s", exc)
                        kept = False
                    if not kept:
                        log.info("fleet: lease of epoch %d lost", epoch)
                        return
                if self.newest_epoch > epoch:  # heard a newer leader: ours has expired
                    log.info("fleet: epoch %d superseded by %d", epoch, self.newest_epoch)
                    return
                n += 1
                snapshot = await take(event_id(epoch, n))
                if self.newest_epoch > epoch:  # superseded while polling: not ours to send
                    return
                if snapshot is not None and snapshot.seq > self.last_id:
                    self.last_id = snapshot.seq
                    self._heard = trio.current_time()
                    deliver(snapshot)
                    try:
                        await self._bus.publish(encode_message(epoch, snapshot))
                    except Exception as exc:
                        log.warning("fleet: snapshot not published: %s", exc)
                await trio.sleep_until(began + interval)
        except BaseException:
            if self.newest_epoch == epoch:  # cancelled (or failed) while holding it
                with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
                    await self._leave(epoch)
            raise
        finally:
            if self.epoch == epoch:  # (a run that began while this one left may lead)
                self.epoch = None

    async def _leave(self, epoch: int) -> None:
        """Give the lease of ``epoch`` up, then tell the fleet (a follower takes over
        at once). Never raises for the lease or the bus: what fails is logged, and
        the followers fall back on the silence."""
        try:
            await self._lease.release(epoch)
        except Exception as exc:
            log.warning("fleet: lease not released: %s", exc)
            return  # the lease stays ours until it expires: nothing to hand over
        try:
            await self._bus.publish(encode_leaving(epoch))
        except Exception as exc:
            log.warning("fleet: leave not announced: %s", exc)
            return
        self.left += 1
        log.info("fleet: left the lead of epoch %d", epoch)

    async def _listen(self, messages: trio.abc.ReceiveChannel[bytes], deliver: Deliver) -> None:
        async for raw in messages:
            try:
                message = decode_message(raw)
            except ValueError:
                left = decode_leaving(raw)
                if left is None:
                    log.warning("fleet: a message that is no snapshot was ignored")
                else:
                    self._heard_leaving(left)
                continue
            if message.epoch < self.newest_epoch or message.id <= self.last_id:
                if message.epoch < self.newest_epoch:
                    self.ignored += 1
                continue  # a stale leader's, or one delivered already (ours)
            self.newest_epoch = message.epoch
            self.last_id = message.id
            self._heard = trio.current_time()
            entries = message.entries
            self.relayed += 1
            deliver(Snapshot(message.id, entries, message.event, trio.current_time()))
            if self._on_relayed is not None:
                self._on_relayed(entries)

    def _heard_leaving(self, epoch: int) -> None:
        """The leader of ``epoch`` left: unless that is old news, wake
        :meth:`_take_part` to try the lease now. (A leaving run's own listener is
        cancelled already; a run of this member that began while an earlier one
        was leaving hears that one's message, and takes the lead too.)"""
        if epoch < self.newest_epoch:
            self.ignored += 1  # a stale leader's: the lease has moved on since
            return
        self.newest_epoch = epoch
        self._leaving.set()


__all__ = [
    "ID_BITS",
    "LEAVING",
    "RELEASE_TIMEOUT",
    "Bus",
    "Fleet",
    "Lease",
    "Message",
    "decode_leaving",
    "decode_message",
    "default_lease_time",
    "encode_leaving",
    "encode_message",
    "event_id",
]
