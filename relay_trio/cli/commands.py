"""What the ``relay-trio`` verbs do: worker, enqueue, stats, dlq, pause, resume.

Each ``run_*`` takes the parsed arguments, does its work under ``trio.run``
and returns the exit status; messages for people go to stdout, errors to
stderr. Errors of relay-trio itself (bad input, Redis unreachable) are turned
into a message and exit 1 by the caller.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from .._errors import InvalidInput
from ..broker import Broker, open_broker
from ..demo_handler import make_demo_handler
from ..worker import Handler, QueueHandler, Worker, WorkerConfig
from . import types


def load_handler(spec: str, args: argparse.Namespace) -> Handler:
    """``demo`` (the built-in demo handler) or ``package.module:function``."""
    if spec == "demo":
        return make_demo_handler(args.demo_fail_rate, args.demo_sleep_ms)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidInput("handler", f"{spec!r} is not module:function (or 'demo')")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput("handler", f"cannot import {module_name!r}: {exc}") from None
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise InvalidInput("handler", f"{module_name!r} has no callable {attr!r}")
    return handler  # type: ignore[no-any-return]


def _broker_run(args: argparse.Namespace, fn: Callable[[Broker], Awaitable[int]]) -> int:
    async def go() -> int:
        async with open_broker(args.redis_url, prefix=args.prefix) as broker:
            return await fn(broker)

    return trio.run(go)


def run_worker(args: argparse.Namespace) -> int:
    handler = load_handler(args.handler, args)
    handlers = [QueueHandler(q, handler, args.concurrency) for q in dict.fromkeys(args.queue)]
    config = WorkerConfig(visibility_ms=args.visibility_ms, grace_period=args.grace_period)

    async def work(broker: Broker) -> int:
        worker = Worker(broker, handlers, config)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, worker, nursery.cancel_scope)
            await worker.serve()
            print(
                f"worker stopped: {worker.stats.succeeded} succeeded, "
                f"{worker.stats.failed} failed, {worker.stats.cancelled} cancelled",
                flush=True,
            )
            nursery.cancel_scope.cancel()
        return 0

    print(
        f"worker on {', '.join(h.queue for h in handlers)} "
        f"(concurrency {args.concurrency}, handler {args.handler}); Ctrl-C stops",
        flush=True,
    )
    return _broker_run(args, work)


async def _stop_on_signal(worker: Worker, scope: trio.CancelScope) -> None:
    """First SIGINT/SIGTERM: graceful stop. A second one: stop waiting."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if worker.stopping:
                scope.cancel()
                return
            print("stopping: finishing running jobs (signal again to hurry)", flush=True)
            worker.stop()


def run_enqueue(args: argparse.Namespace) -> int:
    async def enqueue(broker: Broker) -> int:
        options: dict[str, Any] = {
            "priority": args.priority,
            "delay_ms": args.delay_ms,
            "max_retries": args.max_retries,
        }
        if args.count == 1:
            result = await broker.enqueue(
                args.queue, args.payload, idempotency_key=args.idempotency_key, **options
            )
            results = [result]
        else:
            if args.idempotency_key:
                raise InvalidInput("idempotency_key", "applies to a single job, not --count")
            specs = [broker.spec(args.payload, **options) for _ in range(args.count)]
            results = await broker.enqueue_many(args.queue, specs)
        for result in results:
            state = result.state.value if result.state else "gone"
            note = " (duplicate: the key already names this job)" if result.duplicate else ""
            print(f"{result.id} {state}{note}")
        return 3 if len(results) == 1 and results[0].duplicate else 0

    return _broker_run(args, enqueue)


def run_stats(args: argparse.Namespace) -> int:
    async def stats(broker: Broker) -> int:
        rows = await broker.stats_many(args.queue) if args.queue else await broker.snapshot()
        if args.json:
            print(json.dumps([row.to_dict() for row in rows]))
            return 0
        if not rows:
            print("no queues")
            return 0
        header = f"{'queue':24} {'ready':>9} {'inflight':>9} {'delayed':>9} {'dlq':>9}"
        print(header + f" {'processed':>11} {'dead':>9}  paused")
        for r in rows:
            print(
                f"{r.queue:24} {r.ready:>9} {r.inflight:>9} {r.delayed:>9} {r.dlq:>9}"
                f" {r.processed_total:>11} {r.dead_total:>9}  {'yes' if r.paused else 'no'}"
            )
        return 0

    return _broker_run(args, stats)


def run_dlq(args: argparse.Namespace) -> int:
    async def dlq(broker: Broker) -> int:
        if args.dlq_command == "list":
            jobs = await broker.dlq_list(args.queue, args.limit, args.offset)
            if args.json:
                print(json.dumps([job.to_dict() for job in jobs]))
                return 0
            now = datetime.now(UTC)
            for job in jobs:
                age = (now - job.created_at).total_seconds()
                error = job.last_error.splitlines()[0] if job.last_error else ""
                payload = job.payload[:40].decode(errors="replace")
                print(
                    f"{job.id} {job.attempts}/{job.max_retries} {age:8.0f}s  {payload!r}  {error}"
                )
            print(f"{len(jobs)} dead job(s) shown")
        elif args.dlq_command == "requeue":
            if args.all == bool(args.ids):
                raise InvalidInput("ids", "give job ids, or --all, but not both")
            if args.all:
                print(f"requeued {await broker.dlq_requeue_all(args.queue)}")
            else:
                for job_id in args.ids:
                    await broker.dlq_requeue(args.queue, job_id)
                    print(f"requeued {job_id}")
        elif args.dlq_command == "delete":
            for job_id in args.ids:
                await broker.dlq_delete(args.queue, job_id)
                print(f"deleted {job_id}")
        else:  # purge
            print(f"purged {await broker.dlq_purge(args.queue)}")
        return 0

    return _broker_run(args, dlq)


def run_pause(args: argparse.Namespace, paused: bool) -> int:
    async def toggle(broker: Broker) -> int:
        for queue in args.queue:
            await (broker.pause(queue) if paused else broker.resume(queue))
            print(f"{queue} {'paused' if paused else 'resumed'}")
        return 0

    return _broker_run(args, toggle)


def add_parsers(sub: Any) -> None:
    """The worker and admin verbs' arguments."""
    env = types.env
    worker = sub.add_parser(
        "worker",
        help="run a worker: claim jobs from queues and run a handler on each",
        description="Runs HANDLER for the jobs of each --queue. SIGINT/SIGTERM stop "
        "claiming, let running jobs finish within --grace-period, then nack the rest.",
    )
    worker.add_argument(
        "--queue", action="append", required=True, type=types.queue, help="repeatable"
    )
    worker.add_argument(
        "--concurrency",
        type=types.positive_int,
        default=env("RELAY_CONCURRENCY", "10"),
        help="jobs run at once per queue (env RELAY_CONCURRENCY, default %(default)s)",
    )
    worker.add_argument(
        "--handler",
        default=env("RELAY_HANDLER", "demo"),
        help="module:function, or 'demo' (env RELAY_HANDLER, default %(default)s)",
    )
    worker.add_argument(
        "--visibility-ms",
        type=types.positive_int,
        default=env("RELAY_VISIBILITY_MS", "30000"),
        help="lease length; heartbeats extend it every third (default %(default)s)",
    )
    worker.add_argument(
        "--grace-period",
        type=types.non_negative_float,
        default=env("RELAY_GRACE_PERIOD", "10"),
        help="seconds running jobs get at shutdown (default %(default)s)",
    )
    worker.add_argument(
        "--demo-fail-rate",
        type=types.fraction,
        default=env("RELAY_DEMO_FAIL_RATE", "0.05"),
        help="share of jobs the demo handler fails (default %(default)s)",
    )
    worker.add_argument(
        "--demo-sleep-ms",
        type=types.non_negative_float,
        default=env("RELAY_DEMO_SLEEP_MS", "20"),
        help="how long the demo handler works on a job (default %(default)s)",
    )

    enqueue = sub.add_parser("enqueue", help="add a job (or --count jobs) to a queue")
    enqueue.add_argument("queue", type=types.queue)
    enqueue.add_argument("payload", help="the job's payload (text)")
    enqueue.add_argument("--count", type=types.positive_int, default=1)
    enqueue.add_argument("--priority", type=types.int_between(0, 255), default=0)
    enqueue.add_argument("--delay-ms", type=types.int_between(0, 366 * 86_400_000), default=0)
    enqueue.add_argument("--max-retries", type=types.int_between(0, 1000), default=5)
    enqueue.add_argument("--idempotency-key", default=None)

    stats = sub.add_parser("stats", help="queue sizes and counters")
    stats.add_argument("queue", nargs="*", type=types.queue, help="default: every queue")
    stats.add_argument("--json", action="store_true")

    dlq = sub.add_parser("dlq", help="the dead-letter queue: list, requeue, delete, purge")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    dlq_list = dlq_sub.add_parser("list", help="dead jobs, oldest first")
    dlq_list.add_argument("queue", type=types.queue)
    dlq_list.add_argument("--limit", type=types.int_between(1, 1000), default=50)
    dlq_list.add_argument("--offset", type=types.int_between(0, 2**62), default=0)
    dlq_list.add_argument("--json", action="store_true")
    requeue = dlq_sub.add_parser("requeue", help="back to ready, attempts reset")
    requeue.add_argument("queue", type=types.queue)
    requeue.add_argument("ids", nargs="*", type=types.job_id)
    requeue.add_argument("--all", action="store_true", help="the whole DLQ")
    delete = dlq_sub.add_parser("delete", help="delete dead jobs for good")
    delete.add_argument("queue", type=types.queue)
    delete.add_argument("ids", nargs="+", type=types.job_id)
    purge = dlq_sub.add_parser("purge", help="delete the whole DLQ")
    purge.add_argument("queue", type=types.queue)

    for verb, text in (("pause", "stop claims from queues"), ("resume", "allow claims again")):
        parser = sub.add_parser(verb, help=text)
        parser.add_argument("queue", nargs="+", type=types.queue)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": run_worker,
    "enqueue": run_enqueue,
    "stats": run_stats,
    "dlq": run_dlq,
    "pause": partial(run_pause, paused=True),
    "resume": partial(run_pause, paused=False),
}

__all__ = ["COMMANDS", "load_handler"]
