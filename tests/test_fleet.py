"""One poller per fleet (spec section 13), deterministic: the election and the relay
over an in-memory lease and bus, every hub with a source of its own, time on
pytest-trio's ``autojump_clock`` (a ``MockClock(autojump_threshold=0)``).

A "process" here is a :class:`Member`: a hub with a :class:`Fleet` as its relay,
served in a cancel scope of its own. Killing one (SIGKILL) cuts it off the lease
and the bus first (a dead process sends nothing, not even a release) and then
cancels it; one leaves cleanly (releases the lease and says so) when its last
subscriber leaves.
(The fleet on Redis and in real server processes: test_fleet_redis.py.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from support.fleet import (
    Member,
    Seen,
    epoch_of,
    fleet_of,
    ids,
    leader_of,
    listen,
    strictly_increasing,
)

from relay_trio.fleet import (
    RELEASE_TIMEOUT,
    Fleet,
    decode_leaving,
    decode_message,
    default_lease_time,
    encode_leaving,
    encode_message,
    event_id,
)
from relay_trio.fleet_memory import MemoryBus, MemoryLease
from relay_trio.hub import KEEPALIVE_EVENT, Snapshot, encode_event

# -- messages ---------------------------------------------------------------------------


def test_messages_round_trip() -> None:
    entries = [{"queue": "a", "ready": 1, "note": "café"}]
    seq = event_id(7, 3)
    snapshot = Snapshot(seq, entries, encode_event(seq, entries), 0.0)
    message = decode_message(encode_message(7, snapshot))
    assert (message.epoch, message.id) == (7, 7 * 2**32 + 3)
    assert message.event == snapshot.event
    assert message.entries == entries
    for bad in (b"", b"7\n", b"7\nid: 1\n", b"x\nid: 1\ndata: []\n\n", b"7\ndata: []\n\n"):
        with pytest.raises(ValueError, match=r"not a fleet|invalid literal"):
            decode_message(bad)


def test_leaving_messages_round_trip_and_are_no_snapshots() -> None:
    leaving = encode_leaving(12)
    assert decode_leaving(leaving) == 12
    with pytest.raises(ValueError, match="not a fleet"):
        decode_message(leaving)
    seq = event_id(12, 1)
    snapshot = encode_message(12, Snapshot(seq, [], encode_event(seq, []), 0.0))
    for other in (snapshot, b"", b"garbage", b"12\nleaving", b"x\nleaving\n", b"-1\nleaving\n"):
        assert decode_leaving(other) is None


# -- election ---------------------------------------------------------------------------


async def test_one_leader_among_three_polls_for_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert autojump_clock.autojump_threshold == 0
    async with fleet_of(3) as (members, lease, bus), trio.open_nursery() as nursery:
        seen: list[Seen] = [[] for _ in members]
        t0 = trio.current_time()
        for member, into in zip(members, seen, strict=True):
            await nursery.start(listen, member, into)
        await trio.sleep_until(t0 + 10.5)
        leader = leader_of(members)
        # one poll per tick for the whole fleet, all by the leader
        assert leader.source.calls == 11
        assert sum(m.source.calls for m in members) == 11
        assert len(bus.published) == 11
        assert lease.epoch == 1
        # every subscriber of every process sees the leader's snapshots, same ids
        expected = ids(seen[members.index(leader)])
        assert len(expected) == 11
        assert all(epoch_of(seq) == 1 for seq in expected)
        assert strictly_increasing(expected)
        for member, into in zip(members, seen, strict=True):
            assert len(into) >= 10
            assert ids(into) == expected[-len(into) :]
            assert member.bus.subscribed == 1  # one subscription per process
            if member is not leader:
                assert member.fleet.relayed == len(into)
                assert member.hub.polls == 0
                got = member.hub.latest
                assert got is not None and got.entries == [
                    {
                        "queue": leader.source.names[0],
                        "ready": 11,
                        "inflight": 0,
                        "delayed": 0,
                        "dlq": 0,
                    }
                ]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("interval", "lease_time", "phase"),
    [(1.0, None, 0.5), (1.0, None, 0.05), (1.0, None, 0.95), (0.2, 0.5, 0.1), (2.0, 4.5, 1.5)],
)
async def test_a_dead_leader_is_replaced_in_time_and_ids_keep_increasing(
    autojump_clock: trio.testing.MockClock,
    interval: float,
    lease_time: float | None,
    phase: float,
) -> None:
    lease_s = lease_time if lease_time is not None else default_lease_time(interval)
    async with (
        fleet_of(3, interval=interval, lease_time=lease_time) as (members, lease, _),
        trio.open_nursery() as nursery,
    ):
        seen: dict[str, Seen] = {m.name: [] for m in members}
        t0 = trio.current_time()
        for member in members:
            await nursery.start(listen, member, seen[member.name])
        await trio.sleep_until(t0 + 5 * interval + phase)
        old = leader_of(members)
        old_epoch = old.fleet.epoch
        killed_at = trio.current_time()
        old.kill()
        survivors = [m for m in members if m is not old]
        await trio.sleep_until(killed_at + 2 * interval + lease_s + 3 * interval)

        new = leader_of(survivors)
        assert new.fleet.epoch is not None and old_epoch is not None
        assert new.fleet.epoch > old_epoch
        for member in survivors:
            got = seen[member.name]
            assert strictly_increasing(ids(got))
            first_new = next(t for t, seq in got if epoch_of(seq) > (old_epoch or 0))
            # the spec's bound, and this design's own (one interval better)
            assert first_new - killed_at <= 2 * interval + lease_s
            assert first_new - killed_at <= interval + lease_s + 1e-9
            # after the change, one poll per tick again, and every tick reaches everyone
            assert len([t for t, _ in got if t > first_new]) >= 4
        assert ids(seen[survivors[0].name])[-3:] == ids(seen[survivors[1].name])[-3:]
        polls_before = sum(m.source.calls for m in survivors)
        await trio.sleep(10 * interval)
        assert sum(m.source.calls for m in survivors) - polls_before == 10
        assert lease.epoch == 2  # exactly one takeover: no flapping
        nursery.cancel_scope.cancel()


async def test_a_stale_leaders_publishes_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fleet_of(3) as (members, _, bus), trio.open_nursery() as nursery:
        seen: dict[str, Seen] = {m.name: [] for m in members}
        t0 = trio.current_time()
        for member in members:
            await nursery.start(listen, member, seen[member.name])
        await trio.sleep_until(t0 + 3.5)
        old = leader_of(members)
        # the leader stalls in a poll far beyond its lease (a frozen process)
        old.source.delay = 30.0
        await trio.sleep_until(t0 + 4.5)
        old.source.delay = 0.0
        await trio.sleep_until(t0 + 12.5)
        assert old.fleet.epoch == 1  # still stalled: it believes it leads
        (new,) = [m for m in members if m.fleet.epoch == 2]
        assert new is not old
        # the old leader woke up after the new one took over: it neither sent nor
        # delivered its stale snapshot, and follows now
        await trio.sleep_until(t0 + 40.5)
        assert leader_of(members) is new
        assert all(epoch_of(seq) != 1 for seq in ids(seen[old.name])[4:])
        for member in members:
            assert strictly_increasing(ids(seen[member.name]))

        # a stale leader that did not hear of the new epoch: its publishes are fenced off
        stale_id = event_id(1, 10**6)
        stale = Snapshot(stale_id, [], encode_event(stale_id, []), 0.0)
        ignored = [m.fleet.ignored for m in members]
        await bus.publish(encode_message(1, stale))
        await bus.publish(b"garbage")
        await trio.sleep(1.0)
        for member, before in zip(members, ignored, strict=True):
            assert stale_id not in ids(seen[member.name])
            assert member.fleet.ignored == before + 1
            assert strictly_increasing(ids(seen[member.name]))
        nursery.cancel_scope.cancel()


# -- taking part only with subscribers; the hub's shape --------------------------------


async def test_only_members_with_subscribers_take_part(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fleet_of(3) as (members, lease, bus):
        a, b, c = members
        await trio.sleep(3600)
        assert [m.lease.calls for m in members] == [0, 0, 0]
        assert not bus.subscribers
        assert not any(m.hub.polling for m in members)

        t0 = trio.current_time()
        async with a.hub.subscribe() as first:
            assert a.hub.polling  # the first subscriber started the child
            got = await first.receive()
            assert trio.current_time() == t0  # a lone member leads and polls at once
            assert epoch_of(got.seq) == 1
            async with a.hub.subscribe() as second:
                await trio.sleep(5.5)
                assert second.pending
            assert a.hub.polling  # one subscriber left: still taking part
            await trio.sleep(5)
            assert a.fleet.leading
            assert a.source.calls == 11
            assert [b.lease.calls, c.lease.calls] == [0, 0]
            assert len(bus.subscribers) == 1
        # the last one left: the child is cancelled, the lease given up at once
        await trio.sleep(0.001)
        assert not a.hub.polling
        assert not a.fleet.leading
        assert not bus.subscribers
        assert lease.holder is None
        calls = a.lease.calls
        await trio.sleep(3600)
        assert a.lease.calls == calls
        assert a.source.calls == 11

        # another member takes over at once (the lease was released), ids go on
        async with b.hub.subscribe() as third:
            got = await third.receive()
            assert epoch_of(got.seq) == 2
            assert b.source.calls == 1


async def test_a_follower_sends_keepalives_while_the_fleet_is_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with fleet_of(2, keepalive=1.5) as (members, _, _bus):
        a, b = members
        async with a.hub.subscribe() as first, b.hub.subscribe() as second:
            await trio.sleep(2.5)
            leader = leader_of(members)
            follower = second if leader is a else first
            await follower.receive()
            leader.kill()
            killed_at = trio.current_time()
            got = await follower.receive()
            assert got.event == KEEPALIVE_EVENT
            assert trio.current_time() - killed_at == pytest.approx(1.5, abs=0.6)
            while (got := await follower.receive()).event == KEEPALIVE_EVENT:
                pass
            assert epoch_of(got.seq) == 2
            assert trio.current_time() - killed_at <= 1.0 + default_lease_time(1.0)


# -- a clean leave -----------------------------------------------------------------------


async def listen_until_cancelled(
    member: Member,
    into: Seen,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`listen` until ``scope`` is cancelled (the subscriber leaves)."""
    with scope:
        await listen(member, into, task_status=task_status)


async def test_a_leader_that_leaves_cleanly_hands_over_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The leader's last subscriber leaves (its child is cancelled): it releases the
    lease and says so; one follower takes the lead at once (not after lease_time +
    interval of silence), the others keep following; a stale leave changes nothing."""
    interval = 1.0
    lease_s = default_lease_time(interval)
    async with fleet_of(3, interval=interval) as (members, lease, bus), trio.open_nursery() as n:
        seen: dict[str, Seen] = {m.name: [] for m in members}
        scopes = {m.name: trio.CancelScope() for m in members}
        t0 = trio.current_time()
        for member in members:
            await n.start(listen_until_cancelled, member, seen[member.name], scopes[member.name])
        await trio.sleep_until(t0 + 5.5)  # mid-interval: the next tick is 0.5 s away
        old = leader_of(members)
        assert old.fleet.epoch == 1
        survivors = [m for m in members if m is not old]
        calls = {m.name: m.lease.calls for m in survivors}

        left_at = trio.current_time()
        scopes[old.name].cancel()  # its last subscriber leaves
        await trio.sleep(0.01)
        assert not old.hub.polling and not old.fleet.leading
        assert old.fleet.left == 1
        said = bus.published.index(encode_leaving(1))  # after the release, before epoch 2
        assert decode_message(bus.published[said + 1]).epoch == 2
        new = leader_of(survivors)
        assert lease.epoch == 2  # exactly one takeover: the lease is fenced
        assert new.fleet.handovers == 1 and new.fleet.leads == 1
        # each follower tried the lease once more, at once; the loser follows
        assert all(m.lease.calls - calls[m.name] >= 1 for m in survivors)
        (loser,) = [m for m in survivors if m is not new]
        assert loser.fleet.handovers == 0 and loser.fleet.leads == 0
        for member in survivors:
            got = seen[member.name]
            first_new = next(t for t, seq in got if epoch_of(seq) == 2)
            assert first_new - left_at <= 0.01  # a few round trips, not lease_s + interval
            assert first_new - left_at < (lease_s + interval) / 100
            assert strictly_increasing(ids(got))

        await trio.sleep(5 * interval)
        assert leader_of(survivors) is new
        assert ids(seen[new.name])[-4:] == ids(seen[loser.name])[-4:]
        assert len([t for t, seq in seen[loser.name] if t > left_at]) >= 5  # every tick
        polls = sum(m.source.calls for m in members)
        await trio.sleep(5 * interval)
        assert sum(m.source.calls for m in members) - polls == 5  # one poller again

        # a stale leave (epoch 1, now 2) and garbage: ignored, no one touches the lease
        calls = {m.name: m.lease.calls for m in members}
        ignored = {m.name: m.fleet.ignored for m in survivors}
        renewals = 5  # the leader's renewals meanwhile, one per tick
        await bus.publish(encode_leaving(1))
        await bus.publish(b"0\nleaving")
        await trio.sleep(5 * interval)
        assert leader_of(survivors) is new and lease.epoch == 2
        assert loser.lease.calls == calls[loser.name]
        assert new.lease.calls - calls[new.name] == renewals
        assert old.lease.calls == calls[old.name]
        for member in survivors:
            assert member.fleet.ignored == ignored[member.name] + 1
            assert strictly_increasing(ids(seen[member.name]))

        # a leave of the current epoch by someone else (the lease still held):
        # the follower tries once, loses, and keeps following; no new epoch
        await bus.publish(encode_leaving(2))
        await trio.sleep(0.01)
        assert loser.lease.calls == calls[loser.name] + 1
        await trio.sleep(3 * interval)
        assert leader_of(survivors) is new and lease.epoch == 2
        assert loser.fleet.handovers == 0
        assert {epoch_of(seq) for t, seq in seen[loser.name] if t > left_at} == {2}
        n.cancel_scope.cancel()


async def test_a_lost_leave_falls_back_on_the_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A leader whose release hangs leaves within RELEASE_TIMEOUT and announces
    nothing: the follower takes over when the lease expires, as after a death."""
    async with fleet_of(2) as (members, lease, bus), trio.open_nursery() as n:
        seen: dict[str, Seen] = {m.name: [] for m in members}
        scopes = {m.name: trio.CancelScope() for m in members}
        for member in members:
            await n.start(listen_until_cancelled, member, seen[member.name], scopes[member.name])
        await trio.sleep(2.5)
        old = leader_of(members)
        (other,) = [m for m in members if m is not old]

        async def hang(epoch: int) -> None:
            await trio.sleep_forever()

        old.lease.release = hang  # type: ignore[method-assign]
        left_at = trio.current_time()
        scopes[old.name].cancel()
        with trio.fail_after(RELEASE_TIMEOUT + 0.01):
            await old.fleet.wait_idle()  # the cancellation waited no longer than that
        assert trio.current_time() - left_at == pytest.approx(RELEASE_TIMEOUT)
        assert old.fleet.left == 0
        assert not any(decode_leaving(m) is not None for m in bus.published)
        await trio.sleep(default_lease_time(1.0) + 2.0)
        assert leader_of(members) is other
        assert lease.epoch == 2 and other.fleet.handovers == 0
        first_new = next(t for t, seq in seen[other.name] if epoch_of(seq) == 2)
        assert first_new - left_at <= 1.0 + default_lease_time(1.0)
        n.cancel_scope.cancel()


async def test_a_member_resubscribed_while_it_leaves_takes_the_lead_again_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A lone member's last subscriber leaves and a new one comes at once (a page
    reload): the new child starts while the old one still leaves; it hears that
    leave and leads again at once, under a new epoch, instead of waiting out the
    silence."""
    async with fleet_of(1) as ([a], lease, _bus):
        release = a.lease.release

        async def slow_release(epoch: int) -> None:  # a round trip that takes a while
            await trio.sleep(0.05)
            await release(epoch)

        a.lease.release = slow_release  # type: ignore[method-assign]
        async with a.hub.subscribe() as first:
            await first.receive()
            await trio.sleep(2.5)
        left_at = trio.current_time()
        async with a.hub.subscribe() as second:
            assert a.fleet.leading  # the old child is still leaving
            got = await second.receive()
            assert trio.current_time() - left_at == pytest.approx(0.05)
            assert epoch_of(got.seq) == 2 and lease.epoch == 2
            assert a.fleet.leading and a.fleet.epoch == 2 and a.fleet.handovers == 1
            got = await second.receive()
            assert epoch_of(got.seq) == 2
            assert trio.current_time() - left_at == pytest.approx(1.05)


# -- a subscription that keeps failing ----------------------------------------------------


class FailingBus:
    """A bus whose subscription fails inside a nursery (as RedisBus's does when
    Redis is down) until ``healed``."""

    def __init__(self) -> None:
        self.healed = False
        self.attempts = 0
        self.inner = MemoryBus()

    async def publish(self, message: bytes) -> None:
        await self.inner.publish(message)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        self.attempts += 1
        if not self.healed:
            async with trio.open_nursery():
                raise ConnectionError("Redis is unavailable: boom")
        async with self.inner.subscribe() as messages:
            yield messages


async def test_a_failing_subscription_is_logged_once_per_30_s_with_its_cause(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    bus = FailingBus()
    fleet = Fleet(MemoryLease(), bus)
    seen: list[Snapshot] = []

    async def take(seq: int) -> Snapshot:
        return Snapshot(seq, [], encode_event(seq, []), trio.current_time())

    caplog.set_level(logging.INFO, logger="relay_trio.fleet")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fleet.run, take, seen.append, 1.0)
        await trio.sleep(65)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert bus.attempts >= 60  # it keeps trying every interval ...
        assert len(warnings) == 3  # ... and says so at 0, 30 and 60 s
        assert all("Redis is unavailable: boom" in w for w in warnings)
        assert not any("Exceptions from Trio nursery" in w for w in warnings)
        assert "(1 attempt(s) failed" in warnings[0] and "(61 attempt(s)" in warnings[2]
        bus.healed = True
        await trio.sleep(3)
        assert seen, "it leads once subscribed"
        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        assert any(m.startswith("fleet: subscribed again after ") for m in infos)
        nursery.cancel_scope.cancel()
