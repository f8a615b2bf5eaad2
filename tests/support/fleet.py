"""Doubles for the fleet's tests (spec 13): members (a hub with a Fleet as its
relay) over an in-memory lease and bus, and helpers to read their subscribers' ids."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from relay_trio.fleet import ID_BITS, Fleet, Lease
from relay_trio.fleet_memory import MemoryBus, MemoryLease
from relay_trio.hub import KEEPALIVE_EVENT, Hub
from support.hub import FakeSource

# -- members --------------------------------------------------------------------------


class MemberLease:
    """One process's way to the shared lease: counts its calls; dead, it reaches nothing."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.dead = False
        self.calls = 0

    async def acquire(self, ttl: float) -> int | None:
        self.calls += 1
        return None if self.dead else await self.lease.acquire(ttl)

    async def renew(self, epoch: int, ttl: float) -> bool:
        self.calls += 1
        return False if self.dead else await self.lease.renew(epoch, ttl)

    async def release(self, epoch: int) -> None:
        self.calls += 1
        if not self.dead:
            await self.lease.release(epoch)


class MemberBus:
    """One process's way to the shared bus; dead, it publishes nothing."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.dead = False
        self.subscribed = 0

    async def publish(self, message: bytes) -> None:
        if not self.dead:
            await self.bus.publish(message)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        async with self.bus.subscribe() as messages:
            self.subscribed += 1
            try:
                yield messages
            finally:
                self.subscribed -= 1


@dataclass
class Member:
    name: str
    lease: MemberLease
    bus: MemberBus
    fleet: Fleet
    source: FakeSource
    hub: Hub
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            await self.hub.serve(task_status=task_status)

    def kill(self) -> None:
        self.lease.dead = self.bus.dead = True
        self.scope.cancel()


@asynccontextmanager
async def fleet_of(
    n: int,
    *,
    interval: float = 1.0,
    lease_time: float | None = None,
    keepalive: float | None = None,
) -> AsyncIterator[tuple[list[Member], MemoryLease, MemoryBus]]:
    """``n`` members serving on one in-memory lease and bus."""
    lease, bus = MemoryLease(), MemoryBus()
    members: list[Member] = []
    async with trio.open_nursery() as nursery:
        for i in range(n):
            member_lease, member_bus = MemberLease(lease), MemberBus(bus)
            fleet = Fleet(member_lease, member_bus, lease_time=lease_time)
            source = FakeSource([f"q{i}"])
            hub = Hub(source, interval=interval, relay=fleet, keepalive=keepalive)
            member = Member(f"m{i}", member_lease, member_bus, fleet, source, hub)
            await nursery.start(member.serve)
            members.append(member)
        yield members, lease, bus
        nursery.cancel_scope.cancel()


Seen = list[tuple[float, int]]


async def listen(
    member: Member, into: Seen, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Subscribe to ``member``'s hub and note (time, id) of every snapshot."""
    async with member.hub.subscribe() as subscription:
        task_status.started()
        async for snapshot in subscription:
            if snapshot.event != KEEPALIVE_EVENT:
                into.append((trio.current_time(), snapshot.seq))


def ids(seen: Seen) -> list[int]:
    return [seq for _, seq in seen]


def epoch_of(seq: int) -> int:
    return seq >> ID_BITS


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def leader_of(members: list[Member]) -> Member:
    leaders = [m for m in members if m.fleet.leading]
    assert len(leaders) == 1, [m.name for m in leaders]
    return leaders[0]
