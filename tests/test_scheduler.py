"""The scheduler loop (relay_trio.scheduler), deterministic: trio's MockClock and
an in-memory store whose clock is trio.current_time(), no Redis.

Each fire time makes one job however many schedulers run; missed fire times
coalesce into one run; store errors are survived and backed off; schedules
added and removed are seen within ``refresh_s``; the loop sleeps, never spins.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

import pytest
import trio
import trio.testing

from relay_trio._errors import ConfigError, DuplicateJob, RedisUnavailable
from relay_trio.scheduler import run_scheduler
from relay_trio.schedules import Schedule

EPOCH_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
S = 1000  # ms


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class FakeStore:
    """A ScheduleStore in a dict. Its clock reads EPOCH_MS when it is made and
    follows trio.current_time(); ``fired`` plays the idempotency keys."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()
        self.defs: dict[str, tuple[Schedule, int]] = {}
        self.last: dict[str, int] = {}
        self.fired: set[str] = set()
        self.jobs: list[tuple[str, int, int]] = []  # (schedule, fire_ms, made at ms)
        self.calls: Counter[str] = Counter()
        self.broken_until = float("-inf")  # trio time: before it, every call fails
        self.failing: set[str] = set()  # schedules whose fires fail
        self.duplicates: set[str] = set()  # schedules whose fires raise DuplicateJob

    def now_ms(self) -> int:
        return EPOCH_MS + round((trio.current_time() - self.t0) * 1000)

    def add(self, schedule: Schedule, created_ms: int | None = None) -> None:
        self.defs[schedule.name] = (schedule, self.now_ms() if created_ms is None else created_ms)

    def fires_of(self, name: str) -> list[float]:
        """The fire times of ``name``'s jobs, relative to EPOCH_MS, in seconds."""
        return [(fire - EPOCH_MS) / S for n, fire, _ in self.jobs if n == name]

    async def _call(self, what: str) -> None:
        await trio.lowlevel.checkpoint()
        self.calls[what] += 1
        if trio.current_time() < self.broken_until:
            raise RedisUnavailable("connection refused (test)")

    async def list_schedules(self) -> list[tuple[Schedule, int | None, int]]:
        await self._call("list")
        return [(s, self.last.get(name), c) for name, (s, c) in sorted(self.defs.items())]

    async def fire_schedule(self, schedule: Schedule, fire_ms: int) -> bool:
        await self._call("fire:" + schedule.name)
        await trio.sleep(0.002)  # a round trip: lets the schedulers interleave
        if schedule.name in self.failing:
            raise RedisUnavailable("busy (test)")
        key = schedule.idempotency_key(fire_ms)
        if schedule.name in self.duplicates:
            self.fired.add(key)
            raise DuplicateJob(schedule.queue, key, "0" * 32)
        if key in self.fired:
            return False
        self.fired.add(key)
        self.jobs.append((schedule.name, fire_ms, self.now_ms()))
        self.last[schedule.name] = max(self.last.get(schedule.name, 0), fire_ms)
        return True

    async def server_time_ms(self) -> int:
        await self._call("time")
        return self.now_ms()


@asynccontextmanager
async def schedulers(
    store: FakeStore, count: int = 1, refresh_s: float = 5.0
) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            await nursery.start(partial(run_scheduler, store, refresh_s=refresh_s))
        yield
        nursery.cancel_scope.cancel()


async def until(store: FakeStore, seconds: float) -> None:
    """Sleep until the store's clock reads EPOCH + ``seconds``."""
    await trio.sleep_until(store.t0 + seconds)


def every(cron: str, name: str = "tick") -> Schedule:
    return Schedule.create(name, cron, "jobs", b"{}")


async def test_each_fire_time_fires_once_with_three_schedulers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(every("*/10 * * * * *", "ten"))
    store.add(every("* * * * *", "minute"))
    async with schedulers(store, count=3):
        await until(store, 300.5)
    assert store.fires_of("ten") == [float(t) for t in range(10, 301, 10)]
    assert store.fires_of("minute") == [60.0, 120.0, 180.0, 240.0, 300.0]
    assert all(0 <= made - fire < 20 for _, fire, made in store.jobs)  # on time
    assert 35 <= store.calls["fire:ten"] <= 3 * 30  # at most one call per scheduler and fire time
    assert store.calls["list"] <= 3 * (300 // 5 + 2)  # a read per refresh, not per fire
    assert store.calls["time"] == store.calls["list"]


async def test_missed_fire_times_coalesce_into_one_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(every("* * * * *", "minute"), created_ms=EPOCH_MS - 3_600 * S)
    store.add(every("0 * * * *", "hourly"), created_ms=EPOCH_MS - 30 * 86_400 * S)
    store.last["hourly"] = EPOCH_MS - 7 * 86_400 * S  # last ran a week ago
    store.add(every("*/10 * * * * *", "new"), created_ms=EPOCH_MS + 5 * S)
    async with schedulers(store):
        await until(store, 120.5)
    assert store.fires_of("minute") == [0.0, 60.0, 120.0]  # one run for the hour missed
    assert store.fires_of("hourly") == [0.0]  # one run for the week missed
    assert store.fires_of("new") == [float(t) for t in range(10, 121, 10)]  # none before


async def test_a_store_that_fails_for_a_while_is_survived(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relay_trio.scheduler")
    store = FakeStore()
    store.add(every("*/10 * * * * *"), created_ms=EPOCH_MS)
    store.broken_until = store.t0 + 30
    async with schedulers(store):  # started although its first read failed
        assert store.calls["list"] == 1
        await until(store, 60.5)
    assert store.fires_of("tick") == [30.0, 40.0, 50.0, 60.0]  # 10, 20, 30 coalesced
    assert 4 <= store.calls["list"] <= 20  # backed off, not hammering
    warnings = [r for r in caplog.records if r.name == "relay_trio.scheduler"]
    assert warnings and all(r.levelno == logging.WARNING for r in warnings)
    assert "cannot read the schedules" in warnings[0].getMessage()


async def test_fires_that_fail_are_retried_after_a_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(every("*/10 * * * * *"), created_ms=EPOCH_MS)
    async with schedulers(store, refresh_s=60):
        await until(store, 12)
        store.broken_until = store.t0 + 35  # the read is cached: the fires fail
        await until(store, 60.5)
    assert store.fires_of("tick") == [10.0, 30.0, 40.0, 50.0, 60.0]  # 20 and 30 coalesced


async def test_a_schedule_that_fails_does_not_stop_the_others(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    store.add(every("*/5 * * * * *", "bad"), created_ms=EPOCH_MS)
    store.add(every("*/5 * * * * *", "good"), created_ms=EPOCH_MS)
    store.failing.add("bad")
    async with schedulers(store):
        await until(store, 120.5)
    assert store.fires_of("good") == [float(t) for t in range(5, 121, 5)]
    assert store.fires_of("bad") == []
    assert store.calls["fire:bad"] <= 20  # 0.5 s doubling to 10 s, not every pass
    assert any("'bad': firing" in r.getMessage() for r in caplog.records)


async def test_a_duplicate_job_counts_as_fired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(every("*/10 * * * * *", "dup"), created_ms=EPOCH_MS)
    store.duplicates.add("dup")
    async with schedulers(store):
        await until(store, 60.5)
    assert store.calls["fire:dup"] == 6  # once per fire time, no retries


async def test_schedules_added_and_removed_are_seen_within_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    async with schedulers(store, refresh_s=5.0):
        await until(store, 1)
        store.add(every("* * * * * *", "sec"))  # every second, from t = 1 s
        await until(store, 20.5)
        first = store.fires_of("sec")[0]
        assert 1 < first <= 1 + 5
        assert store.fires_of("sec")[-1] == 20.0
        del store.defs["sec"]
        await until(store, 60)
    assert 20 <= store.fires_of("sec")[-1] <= 20.5 + 5


async def test_the_loop_sleeps_between_fire_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    store.add(every("* * * * *"), created_ms=EPOCH_MS)
    async with schedulers(store, refresh_s=30.0):
        await until(store, 3600.5)
    assert len(store.fires_of("tick")) == 60
    assert store.calls["fire:tick"] == 60
    assert store.calls["list"] == store.calls["time"] == 3600 // 30 + 1


async def test_a_store_with_no_schedules_is_only_read_per_refresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore()
    async with schedulers(store, refresh_s=10.0):
        await until(store, 100.5)
    assert store.calls == Counter({"list": 11, "time": 11})


async def test_cancellation_just_stops(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore()
    store.add(every("* * * * * *"), created_ms=EPOCH_MS)
    with trio.move_on_after(10.0005) as scope:  # inside the fire of t = 10 s
        await run_scheduler(store)
    assert scope.cancelled_caught
    assert store.fires_of("tick") == [float(t) for t in range(1, 10)]


@pytest.mark.parametrize("refresh_s", [0, 0.01, -1, 3601, float("nan"), "5"])
async def test_refresh_s_out_of_range_is_a_config_error(refresh_s: object) -> None:
    with pytest.raises(ConfigError) as info:
        await run_scheduler(FakeStore(), refresh_s=refresh_s)  # type: ignore[arg-type]
    assert info.value.field == "refresh_s"
