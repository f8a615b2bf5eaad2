"""A fleet's lease and bus in memory (:class:`MemoryLease`, :class:`MemoryBus`):
the :class:`~relay_trio.fleet.Lease` and :class:`~relay_trio.fleet.Bus` of
tests (several hubs in one process, time on a MockClock), with the semantics of
:mod:`relay_trio.fleet_redis`: a fenced lease that expires, a channel that
drops what a slow subscriber cannot take."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import trio


class MemoryLease:
    """A lease in memory, with Redis's semantics (expiry on trio's clock)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.holder: int | None = None
        self.expires = -math.inf
        self.calls = 0

    def _held(self) -> int | None:
        if self.holder is not None and trio.current_time() >= self.expires:
            self.holder = None
        return self.holder

    async def acquire(self, ttl: float) -> int | None:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self._held() is not None:
            return None
        self.epoch += 1
        self.holder, self.expires = self.epoch, trio.current_time() + ttl
        return self.epoch

    async def renew(self, epoch: int, ttl: float) -> bool:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self._held() != epoch:
            return False
        self.expires = trio.current_time() + ttl
        return True

    async def release(self, epoch: int) -> None:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self._held() == epoch:
            self.holder = None


class MemoryBus:
    """A pub/sub channel in memory: each subscriber gets what is published while
    it is subscribed (a full subscriber loses the message, as a slow Redis client
    would its connection)."""

    def __init__(self) -> None:
        self.subscribers: set[trio.MemorySendChannel[bytes]] = set()
        self.published: list[bytes] = []

    async def publish(self, message: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.published.append(message)
        for send in list(self.subscribers):
            with suppress(trio.WouldBlock):
                send.send_nowait(message)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        send, receive = trio.open_memory_channel[bytes](64)
        self.subscribers.add(send)
        try:
            yield receive
        finally:
            self.subscribers.discard(send)
            send.close()
