"""The ``relay-trio`` command line: every verb's arguments and their ranges.

Every number has a range (shown in ``--help``); a value outside it, from a
flag or from its ``RELAY_*`` variable, is a one-line message and exit status 2.
The connection flags (``--redis-url``, ``--prefix``) go before or after the verb.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from .. import broker as brokermod
from .. import job as jobmod
from .. import settings
from .._redact import redact_text
from ..broker_jobs import MAX_RESULT_WAIT_S
from . import types
from .commands import EXIT_QUEUE_NOT_EMPTY
from .commands_jobs import EXIT_ENDED, EXIT_NOT_FOUND, EXIT_NOT_YET
from .demo import add_parser as add_demo_parser
from .types import add_number, add_setting, int_between

EXIT_CODES = (
    "Exit status: 0 done; 1 an error of relay-trio (Redis unreachable, job or queue "
    "not found ...); 2 a bad command line or RELAY_* variable (nothing was done); "
    f"{EXIT_NOT_FOUND} enqueue: the idempotency key already names a job; cancel, result: "
    "no such job; schedule rm: no such schedule; "
    f"{EXIT_QUEUE_NOT_EMPTY} queue delete: the queue still holds jobs and --force was "
    "not given; cancel: the job has already ended; result: the job ended dead or "
    f"cancelled (no result); {EXIT_NOT_YET} result: the job has not ended within --wait."
)


class Parser(argparse.ArgumentParser):
    """Errors are one line: ``relay-trio worker: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        # argparse echoes what was typed: a mistyped Redis URL may hold a password
        self.exit(2, f"{self.prog}: error: {redact_text(message)} (see {self.prog} --help)\n")


def add_connection_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--redis-url``, ``--prefix`` and ``--log-format`` (every command's): with
    their defaults on the top-level parser (the Redis URL's left unset: ``demo``
    then starts its own Redis); without (``SUPPRESS``) on each verb's, so a flag
    after the verb overrides and an absent one leaves the top-level value alone."""
    add_setting(parser, settings.REDIS_URL, fallback=None, suppress=not defaults)
    add_setting(parser, settings.PREFIX, suppress=not defaults)
    add_setting(parser, settings.LOG_FORMAT, suppress=not defaults)


def connection_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    add_connection_flags(parent, defaults=False)
    return parent


def env_only_text(setting: settings.Setting[Any]) -> str:
    """``RELAY_X: what it is, its range (default D)``: a setting without a flag."""
    bounds = "" if setting.range is None else f", {setting.range.bounds}"
    return f"{setting.env}: {setting.help}{bounds} (default {setting.default_text})"


def add_server_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    only = "; ".join(env_only_text(s) for s in settings.SERVER if s.flag is None)
    server = sub.add_parser(
        "server",
        parents=[conn],
        help="run the HTTP API, the stream and the dashboard (Hypercorn, trio worker)",
        description="Serves the API, /api/stream and the dashboard. SIGINT/SIGTERM end "
        "open streams at once and stop the process within a hard deadline. "
        f"Set by environment only: {only}.",
    )
    add_setting(server, settings.HOST)
    add_setting(server, settings.PORT)
    for setting in settings.SERVER:
        if setting.flag is not None and setting not in settings.CONNECTION:
            add_setting(server, setting)
    add_setting(server, settings.KEEP_ALIVE_TIMEOUT)
    add_setting(server, settings.GRACEFUL_TIMEOUT)


def add_worker_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    worker = sub.add_parser(
        "worker",
        parents=[conn],
        help="run a worker: claim jobs from queues and run a handler on each",
        description="Runs HANDLER for the jobs of each --queue, or serves every queue of "
        "a task registry (--tasks myapp.tasks:tasks; --queue then picks some of them). "
        "Every worker also runs the cron scheduler (--no-schedules: not this one). "
        "SIGINT/SIGTERM stop claiming, let running jobs finish within --grace-period, "
        "then release the rest.",
    )
    worker.add_argument(
        "--queue",
        action="append",
        type=types.queue,
        help="repeatable; required unless --tasks is given, with which it picks some "
        "of the registry's queues",
    )
    for setting in settings.WORKER:
        add_setting(worker, setting)


def add_enqueue_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    enqueue = sub.add_parser(
        "enqueue",
        parents=[conn],
        help="add a job (or --count jobs) to a queue",
        description="Prints each new job's id and state. Exit status 3: the "
        "--idempotency-key already names a job (its id is printed).",
    )
    enqueue.add_argument("queue", type=types.queue)
    enqueue.add_argument("payload", help="the job's payload (text)")
    add_number(
        enqueue,
        "--count",
        int_between(1, brokermod.MAX_ENQUEUE_MANY),
        "how many jobs (one round trip)",
        default=1,
    )
    add_number(
        enqueue,
        "--priority",
        int_between(jobmod.PRIORITY_MIN, jobmod.PRIORITY_MAX),
        "higher runs first",
        default=jobmod.DEFAULT_PRIORITY,
    )
    add_number(
        enqueue,
        "--delay-ms",
        int_between(0, jobmod.MAX_DELAY_MS),
        "ms before the job becomes ready (366 days at most)",
        default=0,
    )
    add_number(
        enqueue,
        "--max-retries",
        int_between(0, jobmod.MAX_RETRIES_LIMIT),
        "the job's max_retries: once its attempts reach this, a failure sends it to the DLQ",
        default=jobmod.DEFAULT_MAX_RETRIES,
    )
    add_number(
        enqueue,
        "--timeout-ms",
        int_between(1, jobmod.MAX_TIMEOUT_MS),
        "ms each attempt may run (7 days at most)",
        none="none: the worker's --job-timeout",
    )
    enqueue.add_argument(
        "--idempotency-key",
        default=None,
        help=f"at most {jobmod.MAX_IDEMPOTENCY_KEY_LEN} characters; a second enqueue "
        "with the same key adds nothing (single jobs only)",
    )


def add_admin_parsers(sub: Any, conn: argparse.ArgumentParser) -> None:
    stats = sub.add_parser("stats", parents=[conn], help="queue sizes and counters")
    stats.add_argument("queue", nargs="*", type=types.queue, help="default: every queue")
    stats.add_argument("--json", action="store_true")

    dlq = sub.add_parser(
        "dlq", parents=[conn], help="the dead-letter queue: list, requeue, delete, purge"
    )
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dlq_list = dlq_sub.add_parser("list", parents=[conn], help="dead jobs, oldest first")
    dlq_list.add_argument("queue", type=types.queue)
    add_number(
        dlq_list,
        "--limit",
        int_between(1, brokermod.DLQ_PAGE_MAX),
        "jobs shown",
        default=brokermod.DLQ_PAGE_DEFAULT,
    )
    add_number(dlq_list, "--offset", int_between(0, 2**62), "dead jobs skipped", default=0)
    dlq_list.add_argument("--json", action="store_true")
    requeue = dlq_sub.add_parser("requeue", parents=[conn], help="back to ready, attempts reset")
    requeue.add_argument("queue", type=types.queue)
    requeue.add_argument("ids", nargs="*", type=types.job_id)
    requeue.add_argument("--all", action="store_true", help="the whole DLQ")
    delete = dlq_sub.add_parser("delete", parents=[conn], help="delete dead jobs for good")
    delete.add_argument("queue", type=types.queue)
    delete.add_argument("ids", nargs="+", type=types.job_id)
    purge = dlq_sub.add_parser("purge", parents=[conn], help="delete the whole DLQ")
    purge.add_argument("queue", type=types.queue)

    for verb, text in (("pause", "stop claims from queues"), ("resume", "allow claims again")):
        parser = sub.add_parser(
            verb,
            parents=[conn],
            help=text,
            description=f"{text[0].upper()}{text[1:]}. A queue no job ever created is "
            "not found (exit status 1).",
        )
        parser.add_argument("queue", nargs="+", type=types.queue)

    queue = sub.add_parser("queue", parents=[conn], help="manage queues: delete")
    queue_sub = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    delete_queue = queue_sub.add_parser(
        "delete",
        parents=[conn],
        help="delete a queue: its jobs, counters and settings",
        description="Deletes queue NAME and every key of it. Exit status: 0 deleted; "
        f"{EXIT_QUEUE_NOT_EMPTY} it still holds jobs (ready, in flight, delayed or dead) "
        "and --force was not given: nothing was deleted; 1 no such queue (or Redis failed).",
    )
    delete_queue.add_argument("name", metavar="NAME", type=types.queue)
    delete_queue.add_argument(
        "--force", action="store_true", help="delete the queue's jobs too, running ones included"
    )


def add_job_parsers(sub: Any, conn: argparse.ArgumentParser) -> None:
    cancel = sub.add_parser(
        "cancel",
        parents=[conn],
        help="cancel a job, or abort it while it runs",
        description="A ready or delayed job is cancelled at once (prints 'cancelled'); "
        "for a job in flight an abort is requested (prints 'abort requested (inflight)'): "
        "the worker running it cancels its handler within a second and the job ends "
        f"cancelled, never retried. Exit status {EXIT_NOT_FOUND}: no such job; "
        f"{EXIT_ENDED}: it has already ended (done, dead or cancelled).",
    )
    cancel.add_argument("queue", type=types.queue)
    cancel.add_argument("id", metavar="ID", type=types.job_id)

    result = sub.add_parser(
        "result",
        parents=[conn],
        help="a job's result (its handler's return value), waiting for it if asked",
        description="Prints the result of a done job as JSON (a bytes result as it "
        f"is). Exit status {EXIT_NOT_FOUND}: no such job, or it ended and its result was "
        f"not kept (the worker's --result-ttl) or has expired; {EXIT_ENDED}: it ended dead "
        f"or cancelled (its state and last error are printed); {EXIT_NOT_YET}: it has not "
        "ended within --wait.",
    )
    result.add_argument("queue", type=types.queue)
    result.add_argument("id", metavar="ID", type=types.job_id)
    add_number(
        result,
        "--wait",
        types.float_between(0, MAX_RESULT_WAIT_S),
        "seconds to wait for the job to end (woken by its end, no polling)",
        default=0,
    )

    schedule = sub.add_parser(
        "schedule", parents=[conn], help="cron schedules, run by every worker: add, list, rm"
    )
    schedule_sub = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)
    add = schedule_sub.add_parser(
        "add",
        parents=[conn],
        help="add (or replace) a schedule",
        description="Enqueues PAYLOAD on QUEUE at every time CRON matches on the wall "
        "clock of --timezone; each fire time once, however many workers run. Fire times "
        "missed while no worker ran fire once, at the latest of them. CRON is one "
        "argument (quote it): 5 fields (minute hour day-of-month month day-of-week, e.g. "
        "'*/5 * * * *', '30 2 * * MON-FRI') or 6 with the seconds first.",
    )
    add.add_argument("name", metavar="NAME", type=types.schedule_name)
    add.add_argument("cron", metavar="CRON", type=types.cron)
    add.add_argument("queue", metavar="QUEUE", type=types.queue)
    add.add_argument("payload", metavar="PAYLOAD", help="each job's payload (text)")
    add.add_argument(
        "--timezone",
        type=types.timezone,
        default="UTC",
        help="IANA time zone the cron times are read in (default UTC)",
    )
    add_number(
        add,
        "--priority",
        int_between(jobmod.PRIORITY_MIN, jobmod.PRIORITY_MAX),
        "each job's priority, higher runs first",
        default=jobmod.DEFAULT_PRIORITY,
    )
    listing = schedule_sub.add_parser(
        "list",
        parents=[conn],
        help="every schedule with its next and last fire time",
        description="Times are ISO 8601 on the schedule's time zone's clock.",
    )
    listing.add_argument("--json", action="store_true")
    remove = schedule_sub.add_parser(
        "rm",
        parents=[conn],
        help="remove a schedule (the jobs it made stay)",
        description=f"Exit status {EXIT_NOT_FOUND}: no schedule of that name.",
    )
    remove.add_argument("name", metavar="NAME", type=types.schedule_name)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="relay-trio",
        description="A distributed task queue on Redis for Trio, with a live dashboard.",
        epilog=EXIT_CODES,
    )
    add_connection_flags(parser, defaults=True)
    conn = connection_parent()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_server_parser(sub, conn)
    add_worker_parser(sub, conn)
    add_enqueue_parser(sub, conn)
    add_admin_parsers(sub, conn)
    add_job_parsers(sub, conn)
    add_demo_parser(sub, conn)
    return parser
