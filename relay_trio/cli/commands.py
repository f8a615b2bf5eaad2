"""What the ``relay-trio`` verbs do: worker, enqueue, stats, dlq, pause, resume, queue
(cancel, result and schedule are in :mod:`.commands_jobs`).

Each ``run_*`` takes the parsed arguments (see :mod:`.options`), does its work
under ``trio.run`` and returns the exit status; messages for people go to
stdout, errors to stderr. Errors of relay-trio itself (bad input, Redis
unreachable, a queue or job not found) are turned into a message and exit 1 by
the caller.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from .. import settings
from .._errors import ConfigError, InvalidInput, QueueNotEmpty, QueueNotFound
from .._redact import redact_url
from ..broker import Broker
from ..demo_handler import make_demo_handler
from ..metrics import JobMetrics
from ..tasks import load_registry
from ..worker import Handler, QueueHandler, Worker, WorkerConfig
from ..worker_metrics import WorkerCollector, metrics_url, open_listeners, serve_metrics
from .commands_jobs import JOB_COMMANDS
from .commands_jobs import broker_run as _broker_run

EXIT_QUEUE_NOT_EMPTY = 4


def import_from_cwd() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` and
    uvicorn do, so that ``--tasks myapp.tasks:tasks`` (or ``--handler``) works
    from a project's directory however relay-trio was started."""
    cwd = os.getcwd()
    if not sys.path or sys.path[0] not in ("", cwd):
        sys.path.insert(0, cwd)


def load_handler(spec: str, args: argparse.Namespace) -> Handler:
    """``demo`` (the built-in demo handler) or ``package.module:function``."""
    if spec == "demo":
        return make_demo_handler(args.demo_fail_rate, args.demo_sleep_ms)
    import_from_cwd()
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


def worker_handlers(
    args: argparse.Namespace,
) -> tuple[dict[str, Handler], str, dict[str, Any]]:
    """Each queue the worker serves with its handler, what serves them in words,
    and what the worker tells the registry of workers about them (a registry's
    task names): ``--queue``s with ``--handler``, or ``--tasks``' queues (all, or
    the ``--queue``s among them). A bad combination is a :class:`ConfigError`."""
    queues = list(dict.fromkeys(args.queue or ()))
    if args.tasks is None:
        if not queues:
            raise ConfigError("queue", "give --queue (repeatable) with --handler, or --tasks")
        handler = load_handler(args.handler, args)
        return dict.fromkeys(queues, handler), f"handler {args.handler}", {}
    if args.handler != settings.HANDLER.default:
        raise ConfigError(
            "handler",
            "give --handler (or RELAY_HANDLER) or --tasks, not both: --tasks serves each "
            "queue with its registry's tasks",
        )
    import_from_cwd()
    registry = load_registry(args.tasks)
    handlers = registry.handlers()
    if not handlers:
        raise ConfigError("tasks", f"{args.tasks} has no tasks: no queue to serve")
    unknown = [q for q in queues if q not in handlers]
    if unknown:
        raise ConfigError(
            "queue",
            f"no task of {args.tasks} runs on queue {unknown[0]!r} "
            f"(its queues: {', '.join(handlers)})",
        )
    if queues:
        handlers = {q: handlers[q] for q in queues}
    names = sorted(t.name for t in registry if t.queue in handlers)
    return handlers, f"tasks {args.tasks}: {len(registry)} task(s)", {"tasks": names}


def run_worker(args: argparse.Namespace) -> int:
    by_queue, serving, info = worker_handlers(args)
    try:  # the parser keeps every number in range; this is a last line of defence
        handlers = [
            QueueHandler(q, handler, args.concurrency, timeout=args.job_timeout)
            for q, handler in by_queue.items()
        ]
        config = WorkerConfig(
            visibility_ms=args.visibility_ms,
            grace_period=args.grace_period,
            schedules=not args.no_schedules,
            presence_interval=args.presence_interval,
        )
    except ValueError as exc:
        print(f"relay-trio worker: error: {exc}", file=sys.stderr)
        return 2
    metrics = None if args.metrics_port is None else JobMetrics()

    async def work(broker: Broker) -> int:
        listeners: list[trio.SocketListener] = []
        if metrics is not None:  # a busy port: one line and exit 1, before any job ran
            listeners = await open_listeners(args.metrics_host, args.metrics_port)
            print(f"metrics on {metrics_url(listeners)}", flush=True)
        worker = Worker(broker, handlers, config, info=info)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, worker, nursery.cancel_scope)
            if metrics is not None:
                metrics.registry.register(WorkerCollector(worker))
                await nursery.start(serve_metrics, listeners, metrics.render)
            await worker.serve()
            stats = worker.stats
            aborted = f", {stats.aborted} aborted" if stats.aborted else ""
            print(
                f"worker stopped: {stats.succeeded} succeeded, {stats.failed} failed, "
                f"{stats.cancelled} cancelled{aborted}",
                flush=True,
            )
            nursery.cancel_scope.cancel()
        return 0

    results = f"results kept {args.result_ttl:,} s" if args.result_ttl else "no results kept"
    scheduler = "scheduler off" if args.no_schedules else "scheduler on"
    print(
        f"worker on {', '.join(h.queue for h in handlers)} "
        f"(concurrency {args.concurrency}, {serving}, {results}, {scheduler}, "
        f"Redis {redact_url(args.redis_url)}); Ctrl-C stops",
        flush=True,
    )
    return _broker_run(args, work, events=metrics)


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
            "timeout_ms": args.timeout_ms,
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
        known = set(await broker.queues())
        for queue in args.queue:  # change nothing when one is unknown
            if queue not in known:
                raise QueueNotFound(queue)
        for queue in args.queue:
            await (broker.pause(queue) if paused else broker.resume(queue))
            print(f"{queue} {'paused' if paused else 'resumed'}")
        return 0

    return _broker_run(args, toggle)


def run_queue(args: argparse.Namespace) -> int:
    async def manage(broker: Broker) -> int:
        # queue_command == "delete", the only action so far
        name = args.name
        try:
            deleted = await broker.delete_queue(name, force=args.force)
        except QueueNotEmpty as exc:
            print(
                f"relay-trio: queue {name!r} still holds {exc.jobs} job(s); nothing was "
                "deleted (--force deletes the jobs too)",
                file=sys.stderr,
            )
            return EXIT_QUEUE_NOT_EMPTY
        print(f"deleted queue {name!r} ({deleted} job{'' if deleted == 1 else 's'})")
        return 0

    return _broker_run(args, manage)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": run_worker,
    "enqueue": run_enqueue,
    "stats": run_stats,
    "dlq": run_dlq,
    "pause": partial(run_pause, paused=True),
    "resume": partial(run_pause, paused=False),
    "queue": run_queue,
    **JOB_COMMANDS,
}

__all__ = ["COMMANDS", "EXIT_QUEUE_NOT_EMPTY", "import_from_cwd", "load_handler"]
