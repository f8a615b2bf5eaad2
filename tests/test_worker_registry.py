"""The registry of live workers (spec section 12): beats, expiry, leaving, bad input."""

from __future__ import annotations

import pytest
import redis
import trio

from relay_trio import Broker, InvalidInput


async def test_a_worker_is_listed_while_it_beats_and_gone_after_its_ttl(
    broker: Broker, rdb: redis.Redis
) -> None:
    now = await broker.beat_worker("w1", {"host": "h1", "queues": ["a"]}, 300)
    await broker.beat_worker("w2", {"host": "h2", "queues": ["b"]}, 5000)
    (w1, w2) = await broker.workers()
    assert (w1.id, w1.info, w2.id) == ("w1", {"host": "h1", "queues": ["a"]}, "w2")
    assert abs(w1.last_seen_ms - now) < 50
    seen = w1.last_seen_ms
    assert w1.to_dict() == {"host": "h1", "queues": ["a"], "id": "w1", "last_seen_ms": seen}
    await trio.sleep(0.4)  # w1 stopped beating (SIGKILL): gone once its own TTL passed
    assert [w.id for w in await broker.workers()] == ["w2"]  # w2's TTL is its own: 5 s
    assert not rdb.exists(broker.keys.worker_info_prefix + "w1")
    assert rdb.zrange(broker.keys.workers_seen, 0, -1) == [b"w2"]  # the listing pruned w1
    await broker.leave_worker("w2")
    assert await broker.workers() == []
    assert rdb.zcard(broker.keys.workers_seen) == 0


async def test_a_foreign_entry_is_left_out(broker: Broker, rdb: redis.Redis) -> None:
    await broker.beat_worker("ok", {"host": "h"}, 5000)
    await broker.beat_worker("junk", {"host": "h"}, 5000)
    rdb.set(broker.keys.worker_info_prefix + "junk", b"{not json")
    assert [w.id for w in await broker.workers()] == ["ok"]


@pytest.mark.parametrize(
    ("worker_id", "info", "ttl", "field"),
    [
        ("", {}, 1000, "worker_id"),
        ("a{b}", {}, 1000, "worker_id"),
        ("w", {"x": object()}, 1000, "info"),
        ("w", {}, 10, "ttl_ms"),
        ("w", {}, 10**9, "ttl_ms"),
    ],
)
async def test_bad_registrations_are_refused(
    broker: Broker, rdb: redis.Redis, worker_id: str, info: dict[str, object], ttl: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await broker.beat_worker(worker_id, info, ttl)
    assert refused.value.field == field
    assert rdb.zcard(broker.keys.workers_seen) == 0
