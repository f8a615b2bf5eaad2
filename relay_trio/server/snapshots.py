"""The server's snapshots of every queue: what the hub streams, and what ``/metrics``
reads (spec sections 6, 8 and 12).

:class:`Snapshots` is the app's snapshot source. The hub calls :meth:`Snapshots.tick`
once per interval while anyone streams: one snapshot of every queue
(:meth:`~relay_trio.broker.Broker.snapshot`, two round trips) and, beside it, one
read of the worker registry, which gives each entry ``workers``, the number of
live workers serving that queue (``null`` when the registry could not be read: the
snapshot goes out without it). A tick's cost is constant in clients and in keys.

In a fleet (section 13), a follower's snapshots come from the leader: each one
relayed sets the depths too (:meth:`Snapshots.relayed`).

A ``/metrics`` scrape calls :meth:`Snapshots.refresh_depths` first, so that
``relay_queue_depth`` is never left at what the last stream client saw: it reuses
the newest snapshot that began less than ``max_age`` (1 s) ago, the hub's tick or
another scrape's, waits for one that is under way, and else takes one of its own
(without the registry read, which depths do not need): at most one scrape snapshot
per second, whatever the scrape rate. Whichever snapshot is newest sets the gauge;
when one fails (Redis is down), the depths are removed rather than left stale,
and the scrape still answers.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..broker import Broker
from ..broker_workers import WorkerInfo
from ..metrics import Metrics

log = logging.getLogger(__name__)

SCRAPE_MAX_AGE = 1.0
"""Seconds a snapshot serves ``/metrics`` scrapes after it began."""


def workers_per_queue(workers: Sequence[WorkerInfo]) -> Counter[str]:
    """How many of ``workers`` serve each queue, by the ``queues`` each described
    (a list of names; a mapping's keys also count)."""
    counts: Counter[str] = Counter()
    for worker in workers:
        queues = worker.info.get("queues")
        if isinstance(queues, dict | list):
            counts.update({name for name in queues if isinstance(name, str)})
    return counts


class Snapshots:
    """The app's snapshot source for the hub (:meth:`tick`) and for ``/metrics``
    scrapes (:meth:`refresh_depths`); see the module doc."""

    def __init__(self, broker: Broker, metrics: Metrics, *, max_age: float = SCRAPE_MAX_AGE):
        self._broker = broker
        self._metrics = metrics
        self.max_age = max_age
        self.taken = 0
        """Snapshots begun (ticks and scrapes), failed ones included."""
        self._ended_began = -math.inf  # the start of the newest snapshot that has ended
        self._applied_began = -math.inf  # the start of the snapshot the gauge shows
        self._running: trio.Event | None = None  # set when the newest one under way ends

    async def tick(self) -> list[dict[str, Any]]:
        """One snapshot of every queue, each entry with ``workers`` and ``ts`` (when
        it was taken, ms): the hub's source. Raises what the snapshot raised."""
        counts: Counter[str] | None = None

        async def read_workers() -> None:
            nonlocal counts
            try:
                counts = workers_per_queue(await self._broker.workers())
            except Exception as exc:  # the snapshot goes out without the counts
                log.warning("worker registry not read, snapshot sent without it: %s", exc)

        async with self._taking() as began:
            failed: Exception | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_workers)
                try:
                    stats = await self._broker.snapshot()
                except Exception as exc:
                    failed = exc
                    nursery.cancel_scope.cancel()
            if failed is not None:
                self._apply(began, None)
                raise failed
            taken_ms = int(time.time() * 1000)  # lets a client judge staleness and delay
            entries = [
                {
                    **s.to_dict(),
                    "workers": None if counts is None else counts.get(s.queue, 0),
                    "ts": taken_ms,
                }
                for s in stats
            ]
            self._apply(began, entries)
            return entries

    def relayed(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """A snapshot another server process of the fleet took (spec section 13)
        arrived: it sets the depths, and serves scrapes as one of our own would."""
        self._apply(trio.current_time(), [dict(entry) for entry in entries])

    async def refresh_depths(self) -> None:
        """Make the depth gauge current for a scrape (see the module doc). Never
        raises for Redis: a failed snapshot removes the depths."""
        while trio.current_time() - self._ended_began >= self.max_age:
            if self._running is not None:
                await self._running.wait()  # one under way: its result will do
                continue
            async with self._taking() as began:
                try:
                    stats = await self._broker.snapshot()
                except Exception as exc:  # Redis down: no depths rather than stale ones
                    log.warning("queue depths not read for /metrics: %s", exc)
                    self._apply(began, None)
                else:
                    self._apply(began, [s.to_dict() for s in stats])
            return

    @asynccontextmanager
    async def _taking(self) -> AsyncIterator[float]:
        """One snapshot under way, begun at the time yielded: counted, and
        announced to the scrapes that wait for it."""
        done = trio.Event()
        self.taken += 1
        self._running = done
        try:
            yield trio.current_time()
        finally:
            done.set()
            if self._running is done:
                self._running = None

    def _apply(self, began: float, entries: list[dict[str, Any]] | None) -> None:
        """Set the gauge from the snapshot that began at ``began`` (``None``: it
        failed), unless a newer one has set it already."""
        self._ended_began = max(self._ended_began, began)
        if began >= self._applied_began:
            self._applied_began = began
            self._metrics.set_depths(entries or [])
