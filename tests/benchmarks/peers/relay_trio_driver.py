"""relay-trio driver for bench_peers.py (runs in the project's own .venv).

Worker: one :class:`relay_trio.Worker` in this process, one
``QueueHandler(concurrency=C)`` and ``WorkerConfig(max_claim=C)`` (claims up to
C jobs per round trip, acks in batches); the job is done when its ack
returned (``worker.stats.acked``). The payload is t0 as text. Modes: see _common.py.

``RELAY_BENCH_RESULT_TTL`` (seconds) sets the work mode's broker ``result_ttl_s``
(unset: the broker's default; older versions of relay-trio, which keep no
results, are run without it); ``RELAY_BENCH_RESULT=small`` makes the handler
return a small dict instead of None (bench_results.py uses both).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import trio
from _common import QUEUE, Clock, Tally, emit, emit_result, emit_versions, parse_args, ready

from relay_trio.broker import open_broker
from relay_trio.job import Job
from relay_trio.worker import QueueHandler, Worker, WorkerConfig

ENQUEUE_BATCH = 5000
POLL = 0.002  # how often the work mode checks whether all jobs are acked


async def enqueue(args: argparse.Namespace) -> None:
    async with open_broker(args.url) as broker:
        for start in range(0, args.jobs, ENQUEUE_BATCH):
            count = min(ENQUEUE_BATCH, args.jobs - start)
            await broker.enqueue_many(QUEUE, [broker.spec(b"0") for _ in range(count)])
    emit(enqueued=args.jobs)


async def work(args: argparse.Namespace) -> None:
    tally, clock = Tally(), Clock()

    small = os.environ.get("RELAY_BENCH_RESULT") == "small"

    async def noop(job: Job) -> object:
        tally.record(float(job.payload))
        return {"ok": True, "n": tally.handled} if small else None

    options: dict[str, Any] = {}
    if "RELAY_BENCH_RESULT_TTL" in os.environ:
        options["result_ttl_s"] = int(os.environ["RELAY_BENCH_RESULT_TTL"])
    async with open_broker(args.url, **options) as broker:
        worker = Worker(
            broker,
            [QueueHandler(QUEUE, noop, concurrency=args.concurrency)],
            WorkerConfig(max_claim=args.concurrency),
        )
        async with trio.open_nursery() as nursery:
            clock.start()
            await nursery.start(worker.serve)
            ready(args)
            for _ in range(int(args.timeout / POLL)):
                if worker.stats.acked >= args.jobs:
                    break
                await trio.sleep(POLL)
            clock.stop()
            worker.stop()
    if worker.stats.acked < args.jobs:
        raise SystemExit(f"work: {worker.stats.acked}/{args.jobs} acked in {args.timeout} s")
    emit_result(clock, tally)


async def produce(args: argparse.Namespace) -> None:
    async with open_broker(args.url) as broker:
        for i in range(args.warmup + args.jobs):
            t0 = time.time() if i >= args.warmup else -1.0
            await broker.enqueue(QUEUE, repr(t0))
            await trio.sleep(args.interval)
    emit(sent=args.warmup + args.jobs)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.mode == "versions":
        emit_versions("relay-trio", "trio", "redis", "hiredis")
        return 0
    trio.run({"enqueue": enqueue, "work": work, "produce": produce}[args.mode], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
