"""The ``relay-trio`` verbs of single jobs and schedules: cancel, result, schedule.

Each ``run_*`` takes the parsed arguments (see :mod:`.options`) and returns the
exit status. Besides 0 (done), 1 (an error of relay-trio: Redis unreachable ...)
and 2 (bad input, nothing done), which :func:`relay_trio.cli.main` gives, these
verbs say what they found with their own statuses, as HTTP says 404 and 409:

* :data:`EXIT_NOT_FOUND` (3): ``cancel``/``result``, no such job (for
  ``result``: or it ended and its result was not kept, or has expired);
  ``schedule rm``, no such schedule;
* :data:`EXIT_ENDED` (4): ``cancel``, the job has already ended (done, dead or
  cancelled); ``result``, the job ended without a result (dead or cancelled:
  its state and last error are printed);
* :data:`EXIT_NOT_YET` (5): ``result``, the job did not end within ``--wait``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import trio

from .._errors import InvalidInput, JobFinished, JobNotFound
from ..broker import Broker, open_broker
from ..broker_jobs import MAX_WAIT_S
from ..job import Job, JobState
from ..results import BrokerEvents
from ..schedules import Schedule

EXIT_NOT_FOUND = 3
EXIT_ENDED = 4
EXIT_NOT_YET = 5
EXIT_INTERRUPTED = 130


async def with_broker(
    args: argparse.Namespace,
    fn: Callable[[Broker], Awaitable[int]],
    events: BrokerEvents | None = None,
) -> int:
    """``fn`` with a broker on the command's Redis and prefix (and, for a verb
    that has the flag, its ``--result-ttl``), telling ``events`` (metrics)."""
    options: dict[str, Any] = {"prefix": args.prefix, "events": events}
    if getattr(args, "result_ttl", None) is not None:
        options["result_ttl_s"] = args.result_ttl
    async with open_broker(args.redis_url, **options) as broker:
        return await fn(broker)


def broker_run(
    args: argparse.Namespace,
    fn: Callable[[Broker], Awaitable[int]],
    *,
    events: BrokerEvents | None = None,
) -> int:
    """:func:`with_broker` under ``trio.run``."""
    return trio.run(with_broker, args, fn, events)


def _fail(verb: str, message: str, code: int) -> int:
    print(f"relay-trio {verb}: {message}", file=sys.stderr)
    return code


def _no_job(args: argparse.Namespace) -> str:
    return f"no job {args.id} in queue {args.queue!r}"


# -- cancel -------------------------------------------------------------------------


def run_cancel(args: argparse.Namespace) -> int:
    async def cancel(broker: Broker) -> int:
        try:
            state = await broker.cancel(args.queue, args.id)
        except JobNotFound:
            return _fail("cancel", _no_job(args), EXIT_NOT_FOUND)
        except JobFinished as exc:
            return _fail("cancel", f"{exc}; nothing to cancel", EXIT_ENDED)
        if state is JobState.CANCELLED:
            print("cancelled")
        else:  # in flight: the worker running it cancels its handler within a second
            print(f"abort requested ({state.value})")
        return 0

    return broker_run(args, cancel)


# -- result -------------------------------------------------------------------------


def run_result(args: argparse.Namespace) -> int:
    """Wait up to ``--wait`` seconds for the job's end (blocking waits of up to a
    minute each, woken by the end itself; no polling), then print its result."""

    async def result(broker: Broker) -> int:
        deadline = time.monotonic() + args.wait
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                job = await broker.wait_job(args.queue, args.id, min(left, MAX_WAIT_S))
                if job.state.finished or left <= 0:
                    break
        except JobNotFound:
            note = " (or it ended and its result was not kept, or has expired)"
            return _fail("result", _no_job(args) + note, EXIT_NOT_FOUND)
        return _show_end(args, job)

    try:
        return broker_run(args, result)
    except KeyboardInterrupt:
        return _fail("result", "interrupted (the job is unchanged)", EXIT_INTERRUPTED)


def _show_end(args: argparse.Namespace, job: Job) -> int:
    if job.state is JobState.DONE:
        if job.result_type == "bytes" and job.result is not None:
            sys.stdout.buffer.write(job.result)  # as it is: an image, an archive ...
            sys.stdout.flush()
        else:
            print("null" if job.result is None else job.result.decode(errors="replace"))
        return 0
    where = f"job {job.id} in queue {args.queue!r}"
    if job.state.finished:  # dead or cancelled: no result
        print(f"{job.state.value}: {job.last_error}" if job.last_error else job.state.value)
        return EXIT_ENDED
    within = f"within {args.wait:g} s " if args.wait else ""
    return _fail("result", f"{where} has not ended {within}(it is {job.state.value})", EXIT_NOT_YET)


# -- schedule -----------------------------------------------------------------------


def run_schedule(args: argparse.Namespace) -> int:
    action = {"add": _add_schedule, "list": _list_schedules, "rm": _remove_schedule}
    return action[args.schedule_command](args)


def _add_schedule(args: argparse.Namespace) -> int:
    schedule = Schedule.create(  # every field checked before connecting: exit 2
        args.name,
        args.cron,
        args.queue,
        args.payload,
        timezone=args.timezone,
        priority=args.priority,
    )

    async def add(broker: Broker) -> int:
        new = await broker.put_schedule(schedule)
        upcoming = _next_fire(schedule, await broker.server_time_ms()) or "never"
        print(f"{'added' if new else 'replaced'} schedule {schedule.name!r} (next fire {upcoming})")
        return 0

    return broker_run(args, add)


def _remove_schedule(args: argparse.Namespace) -> int:
    async def remove(broker: Broker) -> int:
        if not await broker.remove_schedule(args.name):
            return _fail("schedule", f"no schedule named {args.name!r}", EXIT_NOT_FOUND)
        print(f"removed schedule {args.name!r}")
        return 0

    return broker_run(args, remove)


def _list_schedules(args: argparse.Namespace) -> int:
    async def show(broker: Broker) -> int:
        listed = await broker.list_schedules()
        now = await broker.server_time_ms()
        rows = [
            {
                **schedule.to_dict(),
                "next_fire": _next_fire(schedule, now),
                "last_fire": None if last is None else _iso(last, schedule),
                "created_at": _iso(created, schedule) if created else None,
            }
            for schedule, last, created in listed
        ]
        if args.json:
            print(json.dumps(rows))
        elif not rows:
            print("no schedules")
        else:
            _print_table(rows)
        return 0

    return broker_run(args, show)


def _print_table(rows: list[dict[str, object]]) -> None:
    columns = ("name", "cron", "timezone", "queue", "next_fire", "last_fire")
    table = [[name.replace("_", " ") for name in columns]]
    table += [[str(row[c] or "never") for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _next_fire(schedule: Schedule, now_ms: int) -> str | None:
    """The first fire time after ``now_ms`` (ISO 8601, in the schedule's time zone),
    or None when there is none within cronsim's horizon."""
    try:
        return _iso(schedule.next_fire_ms(now_ms), schedule)
    except InvalidInput:
        return None


def _iso(ms: int, schedule: Schedule) -> str:
    """``2025-03-01T09:00:00+01:00``: the time on the schedule's wall clock
    (``...Z`` for UTC)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    if schedule.timezone == "UTC":
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    return moment.astimezone(ZoneInfo(schedule.timezone)).isoformat(timespec="seconds")


JOB_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "cancel": run_cancel,
    "result": run_result,
    "schedule": run_schedule,
}

__all__ = ["EXIT_ENDED", "EXIT_NOT_FOUND", "EXIT_NOT_YET", "JOB_COMMANDS", "broker_run"]
