"""RQ driver for bench_peers.py (runs in .bench-venvs/rq).

Worker: ``rq.SimpleWorker`` - RQ's documented way to run jobs in the worker's
own process instead of forking a work horse per job (the default ``Worker``),
its fastest setup - with ``worker.work(max_jobs=N)``: it blocks on BLPOP
while idle and returns after N jobs, each finished (result stored, registries
updated). RQ runs one job at a time: it has no concurrency setting. Logging
at WARNING (RQ logs two INFO lines per job otherwise). Modes: see _common.py.

RQ imports a job's function by its dotted name, so the module must be
importable as ``rq_driver``, not ``__main__``: the entry point re-imports it.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import QUEUE, Clock, Tally, emit, emit_result, emit_versions, parse_args, ready
from redis import Redis
from rq import Queue, SimpleWorker

ENQUEUE_BATCH = 1000
TALLY = Tally()


def noop(t0: float) -> None:
    TALLY.record(t0)


def enqueue(args: argparse.Namespace) -> None:
    connection = Redis.from_url(args.url)
    queue = Queue(QUEUE, connection=connection)
    for start in range(0, args.jobs, ENQUEUE_BATCH):
        count = min(ENQUEUE_BATCH, args.jobs - start)
        with connection.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data(noop, (0.0,)) for _ in range(count)], pipe)
            pipe.execute()
    emit(enqueued=args.jobs)


def work(args: argparse.Namespace) -> None:
    clock = Clock()
    connection = Redis.from_url(args.url)
    clock.start()
    worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
    ready(args)
    worker.work(max_jobs=args.jobs, max_idle_time=int(args.timeout), logging_level="WARNING")
    clock.stop()
    if TALLY.handled < args.jobs:
        raise SystemExit(f"work: {TALLY.handled}/{args.jobs} done in {args.timeout} s")
    emit_result(clock, TALLY)


def produce(args: argparse.Namespace) -> None:
    queue = Queue(QUEUE, connection=Redis.from_url(args.url))
    for i in range(args.warmup + args.jobs):
        t0 = time.time() if i >= args.warmup else -1.0
        queue.enqueue(noop, t0)
        time.sleep(args.interval)
    emit(sent=args.warmup + args.jobs)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.mode == "versions":
        emit_versions("rq", "redis", "hiredis")
        return 0
    {"enqueue": enqueue, "work": work, "produce": produce}[args.mode](args)
    return 0


if __name__ == "__main__":
    import rq_driver  # this very file, under its importable name

    sys.exit(rq_driver.main())
