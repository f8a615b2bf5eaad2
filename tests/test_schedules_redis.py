"""Cron schedules stored in a real Redis and fired by real workers' schedulers."""

from __future__ import annotations

import itertools
import json

import pytest
import redis
import trio
from support import RedisServer, eventually, running_worker

from relay_trio import Broker, InvalidInput, QueueHandler, Schedule, open_broker
from relay_trio.job import Job

pytestmark = pytest.mark.cluster_too  # and on a single Redis (see conftest)

Q = "cron"


async def nothing(job: Job) -> None:
    await trio.sleep_forever()  # keep fired jobs in flight: this test counts them


def fired_times(rdb: redis.Redis, broker: Broker) -> list[int]:
    """The fire time of every job the schedules enqueued (from their idempotency keys)."""
    q = broker.keys.queue(Q)
    times = []
    for key in rdb.scan_iter(match=q.base + "job:*"):
        ikey = rdb.hget(key, "idempotency_key")
        if ikey and ikey.startswith(b"schedule:"):
            times.append(int(ikey.rsplit(b":", 1)[1]))
    return sorted(times)


async def test_schedules_are_stored_listed_and_removed(broker: Broker, rdb: redis.Redis) -> None:
    every_minute = Schedule.create("tick", "* * * * *", Q, "payload", timezone="Europe/Berlin")
    assert await broker.put_schedule(every_minute) is True
    assert await broker.put_schedule(every_minute) is False  # replaced, not new
    assert await broker.get_schedule("tick") == every_minute
    ((stored, last, created),) = await broker.list_schedules()
    assert (stored, last) == (every_minute, None)
    assert abs(created - await broker.server_time_ms()) < 5000
    # an entry written by something else is left out, not fatal
    rdb.hset(broker.keys.schedules, "junk", b"{not json")
    assert [s.name for s, _, _ in await broker.list_schedules()] == ["tick"]
    assert await broker.remove_schedule("tick") is True
    assert await broker.remove_schedule("tick") is False
    assert await broker.get_schedule("tick") is None
    with pytest.raises(InvalidInput, match="cron"):
        Schedule.create("bad", "61 * * * *", Q, "x")


async def test_each_fire_time_is_enqueued_once_by_three_workers(
    redis_server: RedisServer, prefix: str, broker: Broker, rdb: redis.Redis
) -> None:
    await broker.put_schedule(Schedule.create("every-second", "* * * * * *", Q, "tick"))
    async with (
        open_broker(redis_server.url, prefix=prefix) as b1,
        open_broker(redis_server.url, prefix=prefix) as b2,
        open_broker(redis_server.url, prefix=prefix) as b3,
    ):
        handlers = [QueueHandler(Q, nothing)]
        config = {"schedule_refresh": 0.2, "grace_period": 0.1}
        async with (
            running_worker(b1, handlers, **config),
            running_worker(b2, handlers, **config),
            running_worker(b3, handlers, **config),
        ):
            await eventually(lambda: len(fired_times(rdb, broker)) >= 4, within=10)
    times = fired_times(rdb, broker)
    assert len(times) == len(set(times))  # each fire time once, however many workers
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {1000}  # and none skipped
    ((_, last, _),) = await broker.list_schedules()
    assert last == times[-1]


async def test_missed_fire_times_coalesce_into_one_run_at_start(
    broker: Broker, rdb: redis.Redis
) -> None:
    """No worker ran for ten hours: the schedule fires once, for its latest fire time."""
    await broker.put_schedule(Schedule.create("hourly", "0 * * * *", Q, "catch up"))
    now = await broker.server_time_ms()
    rdb.hset(broker.keys.schedules_created, "hourly", now - 10 * 3_600_000)
    async with running_worker(broker, [QueueHandler(Q, nothing)], schedule_refresh=0.2):
        await eventually(lambda: fired_times(rdb, broker), within=5)
        await trio.sleep(0.5)
    fired = fired_times(rdb, broker)
    latest_missed = (now // 3_600_000) * 3_600_000
    assert fired[0] == latest_missed  # the latest hour boundary: one job, not ten
    # (the test may cross the next hour boundary, which then fires on its own)
    assert fired[1:] in ([], [latest_missed + 3_600_000])


async def test_a_fire_enqueues_the_schedules_payload_and_priority(broker: Broker) -> None:
    schedule = Schedule.create("report", "0 9 * * 1", Q, json.dumps({"kind": "weekly"}), priority=9)
    assert await broker.fire_schedule(schedule, 1_700_000_000_000) is True
    assert await broker.fire_schedule(schedule, 1_700_000_000_000) is False  # once
    (job,) = (await broker.claim(Q)).jobs
    assert (json.loads(job.payload), job.priority) == ({"kind": "weekly"}, 9)
    assert job.idempotency_key == schedule.idempotency_key(1_700_000_000_000)
    # a slower worker recording an older fire time never moves the last one back
    await broker.fire_schedule(schedule, 1_600_000_000_000)
    await broker.put_schedule(schedule)
    ((_, last, _),) = await broker.list_schedules()
    assert last == 1_700_000_000_000
