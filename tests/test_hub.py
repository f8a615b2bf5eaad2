"""The hub (spec section 6), deterministic: no Redis, no sockets, no real sleeps.

The snapshot source is an in-memory async callable that counts its calls and
can be told to fail; time is pytest-trio's ``autojump_clock`` (a
``MockClock(autojump_threshold=0)``), so an hour of "sleep" costs nothing and
every tick happens at an exact, known time. Checks are made half an interval
after a tick, never at the instant of one, so the order in which trio runs tasks
woken at the same time never matters.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing
from support.hub import FakeMetrics, FakeSource, at, collect, serving_hub

from relay_trio.hub import (
    KEEPALIVE_EVENT,
    Hub,
    HubClosed,
    Snapshot,
    encode_event,
)


def check_clock(clock: trio.testing.MockClock) -> None:
    assert isinstance(clock, trio.testing.MockClock)
    assert clock.autojump_threshold == 0


# -- lazy start, cadence, idle ----------------------------------------------------


async def test_no_poll_before_the_first_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    check_clock(autojump_clock)
    source = FakeSource()
    hub = Hub(source, interval=1.0)
    async with serving_hub(hub):
        assert not hub.closing
        await trio.sleep(3600)
        assert source.calls == 0
        assert hub.polls == 0
        assert not hub.polling
        assert hub.latest is None
        assert hub.subscribers == 0


@pytest.mark.parametrize(("interval", "n"), [(1.0, 10), (0.25, 40), (2.0, 5)])
async def test_first_subscriber_polls_at_once_then_once_per_interval(
    autojump_clock: trio.testing.MockClock, interval: float, n: int
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=interval)
    async with serving_hub(hub):
        await trio.sleep(100)  # idle first: nothing happens
        t0 = trio.current_time()
        async with hub.subscribe() as subscription:
            assert hub.polling
            assert hub.subscribers == 1
            first = await subscription.receive()
            # The poll happened at once: no time has passed.
            assert trio.current_time() == t0
            assert first.seq == 1
            assert first.taken_at == t0
            assert first.entries[0]["ready"] == 1
            assert source.calls == 1
            # Nothing more before the interval is up.
            await at(t0, interval / 2)
            assert source.calls == 1
            assert not subscription.pending
            # After n intervals: exactly n + 1 polls.
            await at(t0, n * interval + interval / 2)
            assert source.calls == n + 1
            assert hub.polls == n + 1
            assert hub.latest is not None
            assert hub.latest.seq == n + 1
            assert hub.latest.taken_at == t0 + n * interval


async def test_a_slow_source_keeps_the_cadence(autojump_clock: trio.testing.MockClock) -> None:
    """The interval runs from the start of one poll to the start of the next."""
    source = FakeSource()
    source.delay = 0.3
    hub = Hub(source, interval=1.0)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as subscription:
            first = await subscription.receive()
            assert first.taken_at == pytest.approx(t0 + 0.3)
            await at(t0, 10.5)
            assert source.calls == 11
            assert hub.latest is not None
            assert hub.latest.seq == 11
            assert hub.latest.taken_at == pytest.approx(t0 + 10.3)


async def test_stops_after_the_last_subscriber_and_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    metrics = FakeMetrics()
    hub = Hub(source, interval=1.0, metrics=metrics)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as a, hub.subscribe() as b:
            assert hub.subscribers == 2
            await at(t0, 2.5)
            assert source.calls == 3
        assert hub.subscribers == 0
        assert not hub.polling
        assert metrics.last("subscribers") == 0
        # Idle: no poll at all, however long.
        await trio.sleep(3600)
        assert source.calls == 3
        assert hub.polls == 3
        assert not hub.polling
        cached = hub.latest
        assert cached is not None
        assert cached.seq == 3
        assert a.cancel_scope.cancel_called
        assert b.cancel_scope.cancel_called

        # A new subscriber restarts the poller: an immediate poll, seq goes on.
        t1 = trio.current_time()
        async with hub.subscribe() as c:
            assert hub.polling
            assert not c.pending  # not seeded with the stale cache from before idling
            await trio.sleep(0.001)
            assert source.calls == 4
            assert hub.latest is not None
            assert hub.latest.seq == 4
            assert hub.latest.taken_at == t1
            got = await c.receive()
            assert got is hub.latest  # the immediate fresh poll
            await at(t1, 3.5)
            assert source.calls == 7
            assert (await c.receive()).seq == 7
        assert not hub.polling
        await trio.sleep(3600)
        assert source.calls == 7


# -- fan-out and encoding ---------------------------------------------------------


async def _fan_out(subscribers: int, ticks: int) -> int:
    source = FakeSource(["a", "b", "c"])
    hub = Hub(source, interval=1.0)
    async with serving_hub(hub), AsyncExitStack() as stack:
        t0 = trio.current_time()
        subscriptions = [
            await stack.enter_async_context(hub.subscribe()) for _ in range(subscribers)
        ]
        assert hub.subscribers == subscribers
        for tick in range(ticks):
            await at(t0, tick + 0.5)
            latest = hub.latest
            assert latest is not None
            assert latest.seq == tick + 1
            assert source.calls == tick + 1
            for subscription in subscriptions:
                assert subscription.pending
                got = await subscription.receive()
                assert got is latest  # the very same object, encoded once
                assert got.event is latest.event
            assert trio.current_time() == t0 + tick + 0.5
        return source.calls


async def test_fan_out_one_poll_per_tick_whatever_the_number_of_subscribers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alone = await _fan_out(1, ticks=6)
    crowd = await _fan_out(1000, ticks=6)
    assert alone == crowd == 6


async def test_event_encoding(autojump_clock: trio.testing.MockClock) -> None:
    entries: list[dict[str, Any]] = [
        {"queue": "zeta", "ready": 3, "inflight": 1, "note": "café"},
        {"queue": "alpha", "ready": 0, "nested": {"x": [1, 2]}},
    ]

    async def source() -> list[dict[str, Any]]:
        return entries

    hub = Hub(source, interval=1.0)
    async with serving_hub(hub), hub.subscribe() as subscription:
        snapshot = await subscription.receive()
        assert isinstance(snapshot, Snapshot)
        assert snapshot.seq == 1
        assert list(snapshot.entries) == entries
        expected = (
            b'id: 1\ndata: [{"queue":"zeta","ready":3,"inflight":1,"note":"caf\xc3\xa9"},'
            b'{"queue":"alpha","ready":0,"nested":{"x":[1,2]}}]\n\n'
        )
        assert snapshot.event == expected
        assert b", " not in snapshot.event
        assert b": " not in snapshot.event.split(b"\n", 2)[1][len(b"data: ") :]
        # One event, in the order the source gave.
        head, data, tail = snapshot.event.split(b"\n", 2)
        assert head == b"id: 1"
        assert tail == b"\n"
        assert json.loads(data.removeprefix(b"data: ")) == entries
        second = await subscription.receive()
        assert second.event.startswith(b"id: 2\ndata: [")
    assert encode_event(7, []) == b"id: 7\ndata: []\n\n"


# -- latest wins, slow subscribers, late joiners ----------------------------------


async def test_latest_wins_for_a_subscriber_that_never_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    metrics = FakeMetrics()
    hub = Hub(source, interval=1.0, drop_after=1000.0, metrics=metrics)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as subscription:
            await at(t0, 9.5)  # ten ticks: seq 1..10
            assert source.calls == 10
            assert subscription.pending
            assert hub.latest is not None
            assert hub.latest.seq == 10
            got = await subscription.receive()
            assert got is hub.latest
            assert got.seq == 10
            assert got.entries[0]["ready"] == 10
            # Only one was held: a second read would block.
            assert not subscription.pending
            with trio.move_on_after(0.25) as scope:
                await subscription.receive()
            assert scope.cancelled_caught
            assert not subscription.dropped
        # Nine of the ten were replaced before being read.
        assert metrics.count("snapshots_dropped") == 9
        assert metrics.count("polls") == 10
        assert metrics.count("poll_duration") == 10
        assert metrics.count("poll_errors") == 0
        assert metrics.count("clients_dropped") == 0
        assert [v for e, v in metrics.events if e == "subscribers"] == [1, 0]


async def test_a_slow_subscriber_blocks_neither_the_poller_nor_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0, drop_after=1000.0)
    seen: list[int] = []
    done = trio.Event()
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as stuck, hub.subscribe() as reader, trio.open_nursery() as n:
            n.start_soon(collect, reader, seen, done)
            await at(t0, 19.5)
            assert source.calls == 20
            assert seen == list(range(1, 21))
            assert stuck.pending
            assert (await stuck.receive()).seq == 20
            n.cancel_scope.cancel()


async def test_a_late_joiner_is_served_from_the_cache_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as first:
            await at(t0, 3.5)
            assert (await first.receive()).seq == 4
            cached = hub.latest
            assert cached is not None
            async with hub.subscribe() as late:
                assert late.pending  # before any further tick
                now = trio.current_time()
                got = await late.receive()
                assert trio.current_time() == now
                assert got is cached
                assert got.seq == 4
                assert source.calls == 4  # joining polls nothing
                await at(t0, 4.5)
                assert (await late.receive()).seq == 5
                assert (await first.receive()).seq == 5


# -- failures ---------------------------------------------------------------------


async def test_a_failing_source_is_survived(autojump_clock: trio.testing.MockClock) -> None:
    source = FakeSource()
    metrics = FakeMetrics()
    hub = Hub(source, interval=1.0, drop_after=1000.0, metrics=metrics)
    seen: list[int] = []
    done = trio.Event()
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as idle, hub.subscribe() as reader, trio.open_nursery() as n:
            n.start_soon(collect, reader, seen, done)
            await at(t0, 2.5)  # seq 1..3
            good = hub.latest
            assert good is not None
            assert good.seq == 3
            source.error = ConnectionError("redis is down")
            await at(t0, 5.5)  # ticks at 3, 4, 5 fail
            assert source.calls == 6
            assert hub.polls == 6
            assert hub.poll_errors == 3
            assert metrics.count("poll_errors") == 3
            assert hub.polling
            assert hub.latest is good
            assert seen == [1, 2, 3]
            assert idle.pending
            assert (await idle.receive()) is good  # the last good one
            # The source recovers: snapshots resume with the next seq.
            source.error = None
            await at(t0, 6.5)
            assert source.calls == 7
            assert hub.poll_errors == 3
            assert hub.latest is not None
            assert hub.latest.seq == 4
            assert hub.latest.entries[0]["ready"] == 7
            assert seen == [1, 2, 3, 4]
            assert (await idle.receive()).seq == 4
            n.cancel_scope.cancel()


async def test_a_subscriber_that_takes_nothing_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    metrics = FakeMetrics()
    hub = Hub(source, interval=1.0, drop_after=5.0, metrics=metrics)
    seen: list[int] = []
    done = trio.Event()
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as stuck, hub.subscribe() as active, trio.open_nursery() as n:
            n.start_soon(collect, active, seen, done)
            await at(t0, 4.5)
            assert not stuck.dropped
            assert hub.subscribers == 2
            await at(t0, 6.5)
            assert stuck.dropped
            assert stuck.cancel_scope.cancel_called
            assert hub.subscribers == 1
            assert metrics.count("clients_dropped") == 1
            assert metrics.last("subscribers") == 1
            # What it held is discarded: the channel ends at once.
            with trio.fail_after(1), pytest.raises(trio.EndOfChannel):
                await stuck.receive()
            # The active one is kept and keeps getting everything.
            assert not active.dropped
            assert not active.cancel_scope.cancel_called
            assert hub.polling
            await at(t0, 20.5)
            assert seen == list(range(1, 22))
            assert not active.dropped
            assert metrics.count("clients_dropped") == 1
            n.cancel_scope.cancel()
        assert hub.subscribers == 0


async def test_dropping_the_last_subscriber_stops_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0, drop_after=5.0)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as stuck:
            await at(t0, 5.5)
            assert stuck.dropped
            assert hub.subscribers == 0
            assert not hub.polling
            calls = source.calls
            assert calls == 6
            await trio.sleep(3600)
            assert source.calls == calls


# -- shutdown ---------------------------------------------------------------------


async def test_close_ends_every_subscription_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0)
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as drained, hub.subscribe() as behind:
            await at(t0, 1.5)
            assert (await drained.receive()).seq == 2
            assert behind.pending
            hub.close()
            assert hub.closing
            assert not hub.polling
            now = trio.current_time()
            with trio.fail_after(1):
                # Nothing waits: the end is seen at once.
                with pytest.raises(trio.EndOfChannel):
                    await drained.receive()
                # One still buffered may be handed over, but nothing more and no wait.
                try:
                    assert (await behind.receive()) is hub.latest
                except trio.EndOfChannel:
                    pass
                else:
                    with pytest.raises(trio.EndOfChannel):
                        await behind.receive()
            assert trio.current_time() == now
            assert drained.cancel_scope.cancel_called
            assert behind.cancel_scope.cancel_called
            with pytest.raises(HubClosed):
                async with hub.subscribe():
                    pass
        assert hub.subscribers == 0
        calls = source.calls
        await trio.sleep(3600)
        assert source.calls == calls == 2


async def test_subscribe_before_serve_raises(autojump_clock: trio.testing.MockClock) -> None:
    source = FakeSource()
    hub = Hub(source)
    assert hub.closing
    with pytest.raises(HubClosed):
        async with hub.subscribe():
            pass
    assert hub.subscribers == 0
    assert source.calls == 0


async def test_cancelling_serve_ends_subscriptions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0)
    serve_scope = trio.CancelScope()

    async def run_hub(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with serve_scope:
            await hub.serve(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(run_hub)
        t0 = trio.current_time()
        async with hub.subscribe() as subscription:
            await at(t0, 2.5)
            assert (await subscription.receive()).seq == 3
            serve_scope.cancel()
            with trio.fail_after(0.5), pytest.raises(trio.EndOfChannel):
                await subscription.receive()
            assert trio.current_time() == t0 + 2.5
            assert subscription.cancel_scope.cancel_called
            assert hub.closing
            assert not hub.polling
            with pytest.raises(HubClosed):
                async with hub.subscribe():
                    pass
            await trio.sleep(3600)
            assert source.calls == 3
        assert hub.subscribers == 0
        nursery.cancel_scope.cancel()


async def test_iteration_ends_cleanly_on_close(autojump_clock: trio.testing.MockClock) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0)
    seen: list[int] = []
    done = trio.Event()
    async with serving_hub(hub):
        t0 = trio.current_time()
        async with hub.subscribe() as subscription, trio.open_nursery() as n:
            n.start_soon(collect, subscription, seen, done)
            await at(t0, 3.5)
            assert not done.is_set()
            hub.close()
            with trio.fail_after(0.5):
                await done.wait()
            assert trio.current_time() == t0 + 3.5
            assert seen == [1, 2, 3, 4]


async def test_close_makes_serve_return(autojump_clock: trio.testing.MockClock) -> None:
    hub = Hub(FakeSource(), interval=1.0)
    returned = trio.Event()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await hub.serve(task_status=task_status)
        returned.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        async with hub.subscribe() as subscription:
            await subscription.receive()
            hub.close()
            with trio.fail_after(0.001):  # no waiting: serve ends at once
                await returned.wait()
    assert hub.closing and not hub.polling


async def test_keepalive_when_polls_fail_never_replacing_a_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    hub = Hub(source, interval=1.0, keepalive=3.0)
    async with serving_hub(hub), hub.subscribe() as reader, hub.subscribe() as idle:
        first = await reader.receive()
        assert first.event.startswith(b"id: 1\n")
        source.error = RuntimeError("redis down")
        t0 = trio.current_time()
        with trio.fail_after(5):
            keepalive = await reader.receive()
        assert keepalive.event == KEEPALIVE_EVENT
        assert 2.9 <= trio.current_time() - t0 <= 3.1  # 3 s after the last snapshot
        # the idle subscriber still holds its unread snapshot 1, not a keep-alive
        assert (await idle.receive()).seq == 1
        assert hub.latest is first  # keep-alives are never cached for late joiners
        source.error = None
        with trio.fail_after(2):
            assert (await reader.receive()).event.startswith(b"id: 2\n")


async def test_keepalive_between_slow_polls(autojump_clock: trio.testing.MockClock) -> None:
    hub = Hub(FakeSource(), interval=10.0, keepalive=2.0)
    async with serving_hub(hub), hub.subscribe() as reader:
        events = [(await reader.receive()).event for _ in range(5)]
        assert events[0].startswith(b"id: 1\n")
        assert events[1:] == [KEEPALIVE_EVENT] * 4
        assert (await reader.receive()).event.startswith(b"id: 2\n")
