"""The scheduler loop every worker runs: fire each schedule's due fire times.

:func:`run_scheduler` reads the schedules from a :class:`ScheduleStore` (the
broker implements it) at start and every ``refresh_s`` seconds, fires what is
due, and sleeps until the earliest next fire time or the next read. Many
schedulers on one store are safe: each fire time's job is enqueued under the
schedule's idempotency key, so it is made once fleet-wide whoever gets there
first, and the others' calls come back ``False``.

Time is Redis's clock, which every worker shares: read with the schedules and
carried forward between reads by the local monotonic clock, so that a
per-second schedule does not ask Redis the time every second. Fire times missed
while no scheduler ran coalesce into one run (:meth:`Schedule.due_fire_ms`); a
new schedule fires first at its first fire time after it was stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import trio

from ._errors import ConfigError, DuplicateJob, RelayError
from ._validate import check_number
from .schedules import Schedule

log = logging.getLogger("relay_trio.scheduler")

MIN_REFRESH_S, MAX_REFRESH_S = 0.1, 3600.0
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 10.0
"""After a store error: the first wait, doubled at each error in a row up to the cap."""
MIN_SLEEP_S = 0.001
"""The shortest sleep between passes: the loop never spins."""


class ScheduleStore(Protocol):
    """Where schedules live, and how a fire time becomes a job (the broker).

    Every method raises a :class:`~relay_trio.RelayError` when it cannot do its
    work (Redis down); the scheduler logs it, backs off and goes on.
    """

    async def list_schedules(self) -> list[tuple[Schedule, int | None, int]]:
        """Every schedule with its last fire time (ms; ``None`` if it never fired)
        and when it was stored (``created_at``, ms)."""
        ...

    async def fire_schedule(self, schedule: Schedule, fire_ms: int) -> bool:
        """Enqueue ``schedule``'s job for ``fire_ms`` under
        ``schedule.idempotency_key(fire_ms)`` and record ``fire_ms`` as its last
        fire time (never moving it back). True if this call created the job,
        False if another scheduler had already done it."""
        ...

    async def server_time_ms(self) -> int:
        """Redis's clock (ms since the Unix epoch), which every worker shares."""
        ...


@dataclass(slots=True)
class _Entry:
    """One schedule as this scheduler tracks it between reads."""

    schedule: Schedule
    last_ms: int
    """Fire times up to this one are done (or predate the schedule)."""
    next_ms: int | None
    """The first fire time after ``last_ms``; None: none within cronsim's horizon."""
    failures: int = 0
    retry_at: float = float("-inf")
    """Trio time before which a failed fire is not tried again."""


@dataclass(frozen=True, slots=True)
class _Clock:
    """Redis's time ``server_ms`` as read at Trio time ``read_at``."""

    server_ms: int
    read_at: float

    def now_ms(self) -> int:
        return self.server_ms + round((trio.current_time() - self.read_at) * 1000)

    def trio_time(self, at_ms: int) -> float:
        return self.read_at + (at_ms - self.server_ms) / 1000


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(failures - 1, 16)))


def _entries(
    listed: list[tuple[Schedule, int | None, int]], previous: dict[str, _Entry]
) -> dict[str, _Entry]:
    """The entries for a fresh read, keeping what this scheduler already knows:
    a fire time it did (the store may not show it yet) and a pending backoff."""
    out: dict[str, _Entry] = {}
    for schedule, last_ms, created_ms in listed:
        start = created_ms if last_ms is None else max(last_ms, created_ms)
        old = previous.get(schedule.name)
        if old is not None:
            start = max(start, old.last_ms)
        if old is not None and old.schedule == schedule and old.last_ms == start:
            entry = old
        else:
            entry = _Entry(schedule, start, _next_fire(schedule, start))
            if old is not None:
                entry.failures, entry.retry_at = old.failures, old.retry_at
        out[schedule.name] = entry
    return out


def _next_fire(schedule: Schedule, after_ms: int) -> int | None:
    try:
        return schedule.next_fire_ms(after_ms)
    except RelayError as exc:
        log.warning("schedule %r will not fire: %s", schedule.name, exc)
        return None


async def _fire_if_due(store: ScheduleStore, entry: _Entry, clock: _Clock) -> None:
    """Fire ``entry``'s due fire time, if it has one and is not backing off; on a
    store error, set its backoff."""
    now_ms = clock.now_ms()
    due = entry.next_ms is not None and entry.next_ms <= now_ms
    if not due or trio.current_time() < entry.retry_at:
        return
    schedule = entry.schedule
    fire_ms: int | None = None
    try:
        fire_ms = schedule.due_fire_ms(entry.last_ms, now_ms)
        created = fire_ms is not None and await store.fire_schedule(schedule, fire_ms)
    except DuplicateJob:
        created = False  # its idempotency key names a job: that fire time is done
    except RelayError as exc:
        entry.failures += 1
        wait = _backoff(entry.failures)
        entry.retry_at = trio.current_time() + wait
        log.warning(
            "schedule %r: firing %s failed: %s; retrying in %.1f s",
            schedule.name,
            fire_ms,
            exc,
            wait,
        )
        return
    if fire_ms is None:  # pragma: no cover - next_ms <= now_ms: one is due
        return
    entry.failures, entry.retry_at = 0, float("-inf")
    entry.last_ms = fire_ms
    entry.next_ms = _next_fire(schedule, fire_ms)
    log.debug(
        "schedule %r fired %d: %s",
        schedule.name,
        fire_ms,
        "job made" if created else "done by a peer",
    )


def _wake_for(entry: _Entry, clock: _Clock) -> float:
    """When ``entry`` next needs a pass (Trio time): its next fire time, or the
    end of its backoff if one is due already; +inf if it will not fire."""
    if entry.next_ms is None:
        return float("inf")
    if entry.next_ms <= clock.now_ms():
        return entry.retry_at
    return clock.trio_time(entry.next_ms)


async def run_scheduler(
    store: ScheduleStore,
    *,
    refresh_s: float = 5.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fire ``store``'s schedules until cancelled; never returns otherwise.

    Reads the schedules and Redis's time at start and every ``refresh_s``
    seconds (0.1 to 3,600; else :class:`~relay_trio.ConfigError`), so a schedule
    added or removed is seen within ``refresh_s``. Each pass fires, for every
    schedule with a fire time due, the latest one after
    ``max(last fire time, created_at)`` (missed ones coalesce), then sleeps
    until the earliest next fire time or the next read, whichever comes first.

    A store error (any :class:`~relay_trio.RelayError`) is logged as a warning on
    ``relay_trio.scheduler`` and retried after a backoff (0.5 s doubling to
    10 s): a failed read keeps the schedules last read; a schedule that fails
    to fire is retried alone, the others go on. Other exceptions propagate.

    ``task_status.started()`` is called once the first read was attempted,
    whether it worked or not. Cancellation just stops the loop: a fire in
    progress either made its job or not, and a retry of that fire time by any
    scheduler is safe (its idempotency key).
    """
    refresh_s = check_number(
        "refresh_s", refresh_s, MIN_REFRESH_S, MAX_REFRESH_S, error=ConfigError
    )
    entries: dict[str, _Entry] = {}
    clock: _Clock | None = None
    read_failures = 0
    refresh_at = trio.current_time()
    started = False
    while True:
        if trio.current_time() >= refresh_at:
            try:
                listed = await store.list_schedules()
                server_ms = await store.server_time_ms()
            except RelayError as exc:
                read_failures += 1
                wait = _backoff(read_failures)
                refresh_at = trio.current_time() + wait
                log.warning("cannot read the schedules: %s; retrying in %.1f s", exc, wait)
            else:
                read_failures = 0
                clock = _Clock(server_ms, trio.current_time())
                refresh_at = clock.read_at + refresh_s
                entries = _entries(listed, entries)
            if not started:
                task_status.started()
                started = True
        wake = refresh_at
        if clock is not None:
            for entry in entries.values():
                await _fire_if_due(store, entry, clock)
                wake = min(wake, _wake_for(entry, clock))
        await trio.sleep_until(max(wake, trio.current_time() + MIN_SLEEP_S))
