"""Doubles for the hub's tests: an in-memory snapshot source, recording metrics,
and helpers to run a hub and read subscriptions under a MockClock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from relay_trio.hub import Hub, Subscription


class FakeSource:
    """An in-memory snapshot source: one entry per queue, ``ready`` = call number."""

    def __init__(self, names: Sequence[str] = ("emails",)) -> None:
        self.names = list(names)
        self.calls = 0
        self.error: Exception | None = None
        self.delay = 0.0

    async def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        await trio.lowlevel.checkpoint()  # a real source does I/O
        if self.delay:
            await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [
            {"queue": name, "ready": self.calls, "inflight": 0, "delayed": 0, "dlq": 0}
            for name in self.names
        ]


class FakeMetrics:
    """Implements the hub's metrics protocol by recording every call."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []

    def hub_event(self, event: str, value: float = 1.0) -> None:
        self.events.append((event, value))

    def count(self, event: str) -> int:
        return sum(1 for name, _ in self.events if name == event)

    def last(self, event: str) -> float:
        return [value for name, value in self.events if name == event][-1]


@asynccontextmanager
async def serving_hub(hub: Hub) -> AsyncIterator[trio.Nursery]:
    """Run ``hub.serve`` in a nursery of the test's; cancel it at the end."""
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve)
        try:
            yield nursery
        finally:
            nursery.cancel_scope.cancel()


async def at(t0: float, offset: float) -> None:
    """Sleep (mock time) until ``t0 + offset``."""
    await trio.sleep_until(t0 + offset)


async def collect(subscription: Subscription, into: list[int], done: trio.Event) -> None:
    """Read every snapshot of a subscription until it ends."""
    async for snapshot in subscription:
        into.append(snapshot.seq)
    done.set()
