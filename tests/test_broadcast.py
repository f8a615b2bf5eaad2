"""The broadcaster (relay_trio.server.broadcast), deterministic: MockClock, an
in-memory snapshot source and fake writers, no sockets.

It is one hub subscriber for every fast-path stream: one wake per snapshot,
whatever the number of streams; a stream whose writer refuses gets the
snapshot in its outlet (latest wins, in order), and one that takes nothing
for ``drop_after`` is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing
from support.hub import FakeSource, at

from relay_trio.hub import KEEPALIVE_EVENT, Hub, HubClosed
from relay_trio.server.broadcast import Broadcaster, Outlet


class FakeWriter:
    """Takes events while ``accept`` is true; records what it took."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.calls = 0
        self.taken: list[bytes] = []

    def write_now(self, event: bytes) -> bool:
        self.calls += 1
        if self.accept:
            self.taken.append(event)
        return self.accept


def seq_of(event: bytes) -> int:
    assert event.startswith(b"id: "), event
    return int(event.split(b"\n", 1)[0][4:])


@asynccontextmanager
async def running(interval: float = 1.0, drop_after: float = 5.0) -> AsyncIterator[Broadcaster]:
    """A hub and its broadcaster, served in a nursery of the test's."""
    hub = Hub(FakeSource(), interval=interval, drop_after=60.0)
    broadcaster = Broadcaster(hub, drop_after=drop_after)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve)
        await nursery.start(broadcaster.serve)
        try:
            yield broadcaster
        finally:
            nursery.cancel_scope.cancel()


async def drain(outlet: Outlet, into: list[bytes], per_event: list[float] | None = None) -> None:
    """The stream's task: finish each handed-over event, taking ``per_event[0]`` s
    for each (a list, so that a test can change the pace)."""
    with outlet.cancel_scope:
        async for event in outlet:
            await trio.sleep(per_event[0] if per_event else 0.0)
            into.append(event)


@asynccontextmanager
async def registered(
    broadcaster: Broadcaster, writers: list[FakeWriter]
) -> AsyncIterator[list[Outlet]]:
    """Register every writer for the block."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(broadcaster.register(w)) for w in writers]


async def test_one_wake_per_snapshot_whatever_the_number_of_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writers = [FakeWriter() for _ in range(50)]
    async with running() as broadcaster, registered(broadcaster, writers):
        t0 = trio.current_time()
        await at(t0, 9.5)
        for writer in writers:
            assert [seq_of(e) for e in writer.taken] == list(range(1, 11))
        assert broadcaster.fan_outs == 10  # one per snapshot, not one per stream
        assert broadcaster.writes == 500
        assert broadcaster.handed_over == 0
        assert broadcaster.hub.subscribers == 1  # the broadcaster alone


async def test_a_full_socket_hands_over_in_order_latest_wins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = FakeWriter(accept=False)
    finished: list[bytes] = []
    pace = [2.5]  # a slow socket: each handed-over event takes 2.5 s to finish
    async with (
        running() as broadcaster,
        broadcaster.register(writer) as outlet,
        trio.open_nursery() as nursery,
    ):
        t0 = trio.current_time()
        nursery.start_soon(drain, outlet, finished, pace)
        await at(t0, 6.5)
        # ticks 1, 3, 5 went through the task; 2 and 4 were replaced unsent
        assert [seq_of(e) for e in finished] == [1, 3]
        assert writer.calls == 1  # while the task works, nothing is written past it
        assert outlet.busy
        writer.accept, pace[0] = True, 0.0  # the client catches up
        await at(t0, 10.5)
        # 5 finishes at 7.5 at the old pace; 6 and 7 were replaced by 8 meanwhile
        assert [seq_of(e) for e in finished] == [1, 3, 5, 8]
        assert [seq_of(e) for e in writer.taken] == [9, 10, 11]  # written directly again
        assert not outlet.busy
        nursery.cancel_scope.cancel()


async def test_a_stream_that_takes_nothing_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stuck, fine = FakeWriter(accept=False), FakeWriter()
    async with (
        running(drop_after=3.0) as broadcaster,
        broadcaster.register(stuck) as dropped,
        broadcaster.register(fine),
    ):
        t0 = trio.current_time()
        await at(t0, 2.5)
        assert not dropped.dropped
        await at(t0, 3.5)  # its first snapshot has waited 3 s
        assert dropped.dropped and dropped.cancel_scope.cancel_called
        assert broadcaster.streams == 1
        events = [e async for e in dropped]  # its iteration ends at once
        assert len(events) <= 1
        await at(t0, 5.5)
        assert len(fine.taken) == 6  # the others go on


async def test_the_broadcaster_subscribes_only_while_streams_are_registered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as broadcaster:
        hub = broadcaster.hub
        await trio.sleep(5)
        assert not broadcaster.subscribed and not hub.polling
        async with broadcaster.register(FakeWriter()):
            await trio.sleep(2.5)
            assert broadcaster.subscribed and hub.polling and hub.subscribers == 1
        await trio.sleep(0.5)
        assert not broadcaster.subscribed and not hub.polling and hub.subscribers == 0
        polls = hub.polls
        await trio.sleep(10)
        assert hub.polls == polls  # an idle server does no Redis work


async def test_a_late_stream_is_seeded_with_the_newest_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = FakeWriter()
    async with running() as broadcaster, broadcaster.register(first):
        t0 = trio.current_time()
        await at(t0, 3.5)
        async with broadcaster.register(FakeWriter()) as late:
            got: list[bytes] = []
            with trio.move_on_after(0.1):
                await drain(late, got)
            assert [seq_of(e) for e in got] == [4]  # the newest, at once


async def test_shutdown_ends_every_stream_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as broadcaster:
        async with broadcaster.register(FakeWriter(accept=False)) as outlet:
            await trio.sleep(1.5)
            broadcaster.hub.close()
            await trio.sleep(0.1)
            assert outlet.cancel_scope.cancel_called
            left = [seq_of(e) async for e in outlet]  # ends at once
            assert left in ([], [2])
        with pytest.raises(HubClosed):
            async with broadcaster.register(FakeWriter()):
                pass


async def test_keepalives_reach_every_stream_when_polls_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = Hub(FakeSource(), interval=1.0, drop_after=60.0, keepalive=3.0)
    broadcaster = Broadcaster(hub, drop_after=60.0)
    writer = FakeWriter()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.serve)
        await nursery.start(broadcaster.serve)
        async with broadcaster.register(writer):
            await trio.sleep(0.5)
            source = hub._source
            assert isinstance(source, FakeSource)
            source.error = RuntimeError("Redis down")
            await trio.sleep(4.0)
            assert KEEPALIVE_EVENT in writer.taken
        nursery.cancel_scope.cancel()


async def test_close_ends_serve(autojump_clock: trio.testing.MockClock) -> None:
    """The app's shutdown closes the broadcaster: its serve returns, so the app's
    nursery can end."""
    hub = Hub(FakeSource(), interval=1.0)
    broadcaster = Broadcaster(hub)
    with trio.fail_after(10):  # mock time: only a hang gets there
        async with trio.open_nursery() as nursery:
            await nursery.start(hub.serve)
            await nursery.start(broadcaster.serve)
            async with broadcaster.register(FakeWriter()):
                await trio.sleep(1.5)
            broadcaster.close()
            hub.close()
