"""Cron schedules in Redis, sans I/O: store, list, remove, and fire them.

:class:`ScheduleOps` extends :class:`~relay_trio.broker_admin.QueueAdmin` for
:class:`~relay_trio.broker_core.BrokerCore`
and is the :class:`~relay_trio.scheduler.ScheduleStore` every worker's
scheduler runs on. The three schedule keys share one Cluster slot (their
``{schedules}`` tag); a fire is an enqueue into the schedule's queue (its own
slot) with an idempotency key per schedule and fire time, so each fire time
makes one job however many workers run the scheduler, then the fire time is
recorded (never moved back).
"""

from __future__ import annotations

from ._errors import InvalidInput
from .broker_admin import QueueAdmin
from .calls import Call, Command, Op, command, script
from .schedules import Schedule


class ScheduleOps(QueueAdmin):
    """Schedules: see the module doc."""

    def put_schedule(self, schedule: Schedule) -> Op[bool]:
        """Store ``schedule`` (replacing one of that name); True if it is new. A new
        schedule fires first at its first fire time after now."""
        if not isinstance(schedule, Schedule):
            raise InvalidInput("schedule", f"expected Schedule, got {type(schedule).__name__}")
        k = self.keys
        now = yield from self.server_time_ms()
        replies = yield Call(
            (
                Command(("HSET", k.schedules, schedule.name, schedule.to_json())),
                Command(("HSETNX", k.schedules_created, schedule.name, now)),
            ),
            transaction=True,
        )
        return bool(replies[1])

    def get_schedule(self, name: str) -> Op[Schedule | None]:
        """The schedule called ``name``, or None."""
        (raw,) = yield command("HGET", self.keys.schedules, name)
        return None if raw is None else Schedule.from_json(raw.decode())

    def remove_schedule(self, name: str) -> Op[bool]:
        """Delete the schedule called ``name``: True if there was one. Jobs it
        already enqueued stay."""
        k = self.keys
        replies = yield Call(
            (
                Command(("HDEL", k.schedules, name)),
                Command(("HDEL", k.schedules_created, name)),
                Command(("HDEL", k.schedules_fired, name)),
            ),
            transaction=True,
        )
        return bool(replies[0])

    def list_schedules(self) -> Op[list[tuple[Schedule, int | None, int]]]:
        """Every stored schedule (by name) with its last fire time (ms, or None)
        and when it was stored (ms). An entry that does not decode (written by
        something else) is left out."""
        k = self.keys
        defs, created, fired = yield Call(
            (
                Command(("HGETALL", k.schedules)),
                Command(("HGETALL", k.schedules_created)),
                Command(("HGETALL", k.schedules_fired)),
            )
        )
        out: list[tuple[Schedule, int | None, int]] = []
        for name in sorted(defs):
            try:
                schedule = Schedule.from_json(defs[name].decode())
            except (InvalidInput, UnicodeError):
                continue
            last = fired.get(name)
            out.append((schedule, int(last) if last else None, int(created.get(name) or 0)))
        return out

    def fire_schedule(self, schedule: Schedule, fire_ms: int) -> Op[bool]:
        """Enqueue ``schedule``'s job for fire time ``fire_ms`` (once fleet-wide: its
        idempotency key) and record the fire time. True if this call made the job."""
        result = yield from self.enqueue(
            schedule.queue,
            schedule.payload,
            priority=schedule.priority,
            idempotency_key=schedule.idempotency_key(fire_ms),
        )
        yield script("schedule_fired", [self.keys.schedules_fired], [schedule.name, fire_ms])
        return not result.duplicate
