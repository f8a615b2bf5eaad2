"""One poller per fleet (spec section 13) on a real Redis: the lease and the bus,
a fleet of hubs, and three real server processes: a SIGKILLed leader is replaced
after its lease expires, a SIGTERMed one hands over at once."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
from contextlib import AsyncExitStack
from typing import Any

import httpx
import trio
import trio.testing
from support.fleet import (
    Member,
    MemberLease,
    Seen,
    epoch_of,
    ids,
    leader_of,
    listen,
    strictly_increasing,
)
from support.hub import FakeSource
from support.sse import Events, data_of, is_data

from relay_trio.broker import open_broker
from relay_trio.fleet import (
    Fleet,
    default_lease_time,
)
from relay_trio.fleet_redis import RedisBus, RedisLease
from relay_trio.hub import Hub

# -- on Redis ----------------------------------------------------------------------------


async def test_redis_lease_is_exclusive_fenced_and_expires(redis_server: Any, prefix: str) -> None:
    async with open_broker(redis_server.url, prefix=prefix) as broker:
        one, two = RedisLease(broker.io, prefix), RedisLease(broker.io, prefix)
        first = await one.acquire(5.0)
        assert first is not None
        assert await two.acquire(5.0) is None
        assert await two.renew(first + 1, 5.0) is False
        assert await one.renew(first, 5.0) is True
        await two.release(first + 1)  # not its epoch: nothing happens
        assert await two.acquire(5.0) is None
        await one.release(first)
        second = await two.acquire(0.2)
        assert second is not None and second > first
        await trio.sleep(0.3)  # expired, never renewed
        assert await one.renew(second, 5.0) is False
        third = await one.acquire(5.0)
        assert third is not None and third > second


async def test_redis_bus_relays_to_every_subscription(redis_server: Any, prefix: str) -> None:
    async with open_broker(redis_server.url, prefix=prefix) as broker:
        bus = RedisBus(broker.io, prefix)
        other = RedisBus(broker.io, prefix + "-other")
        async with bus.subscribe() as a, bus.subscribe() as b, other.subscribe() as c:
            await bus.publish(b"1\nid: 1\ndata: []\n\n")
            with trio.fail_after(5):
                assert await a.receive() == b"1\nid: 1\ndata: []\n\n"
                assert await b.receive() == b"1\nid: 1\ndata: []\n\n"
            with trio.move_on_after(0.3):
                await c.receive()
                raise AssertionError("another prefix's fleet heard it")


async def test_a_fleet_on_redis_replaces_its_dead_leader(redis_server: Any, prefix: str) -> None:
    """Three hubs (in this process, real time) on one Redis: one polls; kill it, and
    the others' subscribers get a newer epoch within two intervals plus the lease."""
    interval, lease_time = 0.1, 0.4
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        members: list[Member] = []
        for i in range(3):
            broker = await stack.enter_async_context(open_broker(redis_server.url, prefix=prefix))
            lease = MemberLease(RedisLease(broker.io, prefix))
            bus = RedisBus(broker.io, prefix)
            fleet = Fleet(lease, bus, lease_time=lease_time)
            source = FakeSource([f"q{i}"])
            hub = Hub(source, interval=interval, relay=fleet)
            member = Member(f"m{i}", lease, bus, fleet, source, hub)  # type: ignore[arg-type]
            await nursery.start(member.serve)
            members.append(member)
        seen: dict[str, Seen] = {m.name: [] for m in members}
        for member in members:
            await nursery.start(listen, member, seen[member.name])
        await trio.sleep(1.0)
        old = leader_of(members)
        for member in members:
            assert len(seen[member.name]) >= 5
            assert ids(seen[member.name])[-2:] == ids(seen[old.name])[-2:]
        assert sum(m.source.calls for m in members) == old.source.calls
        old_epoch = old.fleet.epoch or 0
        killed_at = trio.current_time()
        old.lease.dead = True  # it sends nothing more (a RedisBus cannot be cut: cancel at once)
        old.scope.cancel()
        await trio.sleep(2 * interval + lease_time + 0.5)
        survivors = [m for m in members if m is not old]
        for member in survivors:
            got = seen[member.name]
            assert strictly_increasing(ids(got))
            first_new = next(t for t, seq in got if epoch_of(seq) > old_epoch)
            assert first_new - killed_at <= 2 * interval + lease_time
        nursery.cancel_scope.cancel()


# -- real processes ------------------------------------------------------------------------

LAUNCH = """
import sys
from functools import partial

import trio

from relay_trio.server import ServerConfig
from relay_trio.server.serve import serve_relay


async def main() -> None:
    url, prefix, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
    config = ServerConfig(redis_url=url, prefix=prefix, poll_interval=interval, fleet=True)
    async with trio.open_nursery() as nursery:
        serving = partial(
            serve_relay, config=config, host="127.0.0.1", port=0, handle_signals=True
        )
        binds = await nursery.start(serving)
        print("relay-trio server on", binds[0], flush=True)


trio.run(main)
"""
# a server process of its own with ``fleet`` on; SIGTERM stops it gracefully (as the CLI's)


def start_fleet_server(url: str, prefix: str, interval: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, url, prefix, str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("relay-trio server on "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, line.split()[-1]
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(output))


async def read_stream(client: httpx.AsyncClient, url: str, into: Seen) -> None:
    """Note (time, id) of every snapshot until the stream ends (its server killed, or
    stopped: a shutdown ends every stream)."""
    with contextlib.suppress(httpx.TransportError):
        async with client.stream("GET", url + "/api/stream") as response:
            assert response.status_code == 200
            events = Events(response)
            while True:
                try:
                    event = await events.next(is_data)
                except AssertionError as exc:
                    if str(exc) == "the stream ended":
                        return
                    raise
                seq, _ = data_of(event)
                into.append((trio.current_time(), seq))


def polls_of(client: httpx.Client, url: str) -> float:
    text = client.get(url + "/metrics", timeout=5).text
    match = re.search(r"^relay_hub_polls_total (\S+)$", text, re.MULTILINE)
    assert match
    return float(match.group(1))


async def leader_lost(redis_url: str, prefix: str, how: signal.Signals) -> list[float]:
    """Three ``--fleet`` server processes, a stream client on each: one polls for all.
    Send its leader ``how``; returns, for each other process's client, the seconds
    from the signal to its first event of a newer epoch (checked: ids keep
    increasing, the stream goes on, every survivor sees the same new epoch)."""
    interval = 0.2
    lease_time = default_lease_time(interval)
    procs = [start_fleet_server(redis_url, prefix, interval) for _ in range(3)]
    try:
        async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
            seen: list[Seen] = [[] for _ in procs]
            for (_, url), into in zip(procs, seen, strict=True):
                nursery.start_soon(read_stream, client, url, into)
            await trio.sleep(2.0)
            with httpx.Client() as sync_client:
                before = [polls_of(sync_client, url) for _, url in procs]
                await trio.sleep(1.0)
                after = [polls_of(sync_client, url) for _, url in procs]
            polling = [i for i in range(3) if after[i] > before[i]]
            assert len(polling) == 1, (before, after)  # one poller for the fleet
            leader = polling[0]
            assert after[leader] - before[leader] <= 1.0 / interval + 2
            for into in seen:
                assert len(into) >= 5
                assert strictly_increasing(ids(into))
            old_epoch = epoch_of(seen[leader][-1][1])
            assert all(epoch_of(i[-1][1]) == old_epoch for i in seen)

            procs[leader][0].send_signal(how)
            signalled_at = trio.current_time()
            await trio.sleep(2 * interval + lease_time + 1.0)
            delays, new_epochs = [], set()
            for i, into in enumerate(seen):
                if i == leader:
                    continue
                assert strictly_increasing(ids(into))
                first_new, seq = next((t, seq) for t, seq in into if epoch_of(seq) > old_epoch)
                delays.append(first_new - signalled_at)
                new_epochs.add(epoch_of(seq))
                assert len([t for t, _ in into if t > first_new]) >= 3  # and it goes on
            assert new_epochs == {old_epoch + 1}, new_epochs  # one takeover, no flapping
            print(f"{how.name}: first event of the new leader after {delays} s")
            nursery.cancel_scope.cancel()
        assert procs[leader][0].wait(10) == (0 if how == signal.SIGTERM else -how)
        return delays
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


async def test_three_server_processes_share_one_poll_and_survive_a_sigkill(
    redis_server: Any, prefix: str
) -> None:
    interval = 0.2
    delays = await leader_lost(redis_server.url, prefix, signal.SIGKILL)
    for delay in delays:  # the lease of the dead leader had to expire
        assert delay <= 2 * interval + default_lease_time(interval), delay


async def test_a_leader_stopped_gracefully_hands_over_within_an_interval(
    redis_server: Any, prefix: str
) -> None:
    """SIGTERM: the leader's shutdown releases the lease and says so; a follower
    takes over at once instead of after ``lease_time + interval`` (1.6 s here)."""
    interval = 0.2
    delays = await leader_lost(redis_server.url, prefix, signal.SIGTERM)
    for delay in delays:
        assert delay <= interval + 0.1, delay
        assert delay < (interval + default_lease_time(interval)) / 4
