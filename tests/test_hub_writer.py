"""The hub's direct-writer path, deterministic (MockClock, in-memory source).

A subscriber with a writer gets each snapshot from the tick itself when the
writer takes it; whenever the writer refuses, the channel takes over with its
usual latest-wins rule, and the writer is not used again until the channel is
drained (a snapshot never overtakes an older one).
"""

from __future__ import annotations

import trio
import trio.testing
from test_hub import FakeMetrics, FakeSource, at, collect, serving

from relay_trio.hub import KEEPALIVE_EVENT, Hub


class FakeWriter:
    """Takes events while ``accept`` is true; records every call."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.calls: list[bytes] = []
        self.taken: list[bytes] = []

    def write_now(self, event: bytes) -> bool:
        self.calls.append(event)
        if self.accept:
            self.taken.append(event)
        return self.accept


def seq_of(event: bytes) -> int:
    assert event.startswith(b"id: "), event
    return int(event.split(b"\n", 1)[0][4:])


async def test_a_writer_takes_every_snapshot_and_wakes_no_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = FakeMetrics()
    hub = Hub(FakeSource(), interval=1.0, drop_after=2.0, metrics=metrics)
    writer = FakeWriter()
    seen: list[int] = []
    async with (
        serving(hub),
        hub.subscribe() as subscription,
        hub.subscribe() as other,
        trio.open_nursery() as nursery,
    ):
        subscription.writer = writer
        nursery.start_soon(collect, other, seen, trio.Event())
        t0 = trio.current_time()
        await at(t0, 9.5)
        assert [seq_of(e) for e in writer.taken] == list(range(1, 11))
        assert not subscription.pending  # nothing went through its channel
        # it never called receive, yet it took data: not dropped after drop_after
        assert not subscription.dropped
        assert subscription.last_taken == t0 + 9
        assert hub.direct_writes == 10
        assert sum(v for name, v in metrics.events if name == "direct_writes") == 10
        # the subscriber without a writer is served by its channel as before
        assert seen == list(range(1, 11))
        nursery.cancel_scope.cancel()


async def test_a_refusing_writer_falls_back_to_the_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(FakeSource(), interval=1.0, drop_after=60.0)
    writer = FakeWriter(accept=False)
    async with serving(hub), hub.subscribe() as subscription:
        subscription.writer = writer
        t0 = trio.current_time()
        await at(t0, 0.5)
        assert [seq_of(e) for e in writer.calls] == [1]
        assert subscription.pending
        await at(t0, 4.5)
        # while a snapshot waits in the channel the writer is not even asked
        assert [seq_of(e) for e in writer.calls] == [1]
        assert hub.direct_writes == 0
        # latest wins in the channel, as for any subscriber
        assert (await subscription.receive()).seq == 5
        assert not subscription.pending
        # drained: the writer is asked again from the next tick, and takes it
        writer.accept = True
        await at(t0, 7.5)
        assert [seq_of(e) for e in writer.taken] == [6, 7, 8]
        assert not subscription.pending


async def test_no_snapshot_overtakes_an_older_one(autojump_clock: trio.testing.MockClock) -> None:
    hub = Hub(FakeSource(), interval=1.0)
    writer = FakeWriter(accept=False)
    delivered: list[int] = []
    async with serving(hub), hub.subscribe() as subscription:
        subscription.writer = writer
        t0 = trio.current_time()
        await at(t0, 0.5)  # snapshot 1 was refused: it waits in the channel
        writer.accept = True
        await at(t0, 1.5)  # snapshot 2 replaced it there; the writer was not used
        assert writer.taken == []
        delivered.append((await subscription.receive()).seq)
        await at(t0, 3.5)
        delivered += [seq_of(e) for e in writer.taken]
        assert delivered == [2, 3, 4]


async def test_keepalives_go_through_the_writer(autojump_clock: trio.testing.MockClock) -> None:
    hub = Hub(FakeSource(), interval=10.0, keepalive=2.0)
    writer = FakeWriter()
    async with serving(hub), hub.subscribe() as subscription:
        subscription.writer = writer
        t0 = trio.current_time()
        await at(t0, 9.5)
        assert seq_of(writer.taken[0]) == 1
        assert writer.taken[1:] == [KEEPALIVE_EVENT] * 4
        assert not subscription.pending


async def test_a_subscriber_whose_writer_refuses_and_who_reads_nothing_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(FakeSource(), interval=1.0, drop_after=5.0)
    async with serving(hub), hub.subscribe() as stuck, hub.subscribe() as fine:
        stuck.writer = FakeWriter(accept=False)
        fine.writer = FakeWriter()
        t0 = trio.current_time()
        await at(t0, 4.5)
        assert not stuck.dropped
        await at(t0, 6.5)
        assert stuck.dropped
        assert stuck.cancel_scope.cancel_called
        assert stuck.writer is None  # ended: the hub forgets the writer
        assert not fine.dropped
        assert hub.subscribers == 1
