"""SAQ driver for bench_peers.py (runs in .bench-venvs/saq).

Worker: ``saq.Worker(queue, functions=[noop], concurrency=C)``, started with
``await worker.start()`` in this process (what ``saq`` the CLI does); SAQ runs
C dequeue loops, each a blocking BLMOVE. A job is done when SAQ's
``after_process`` hook runs (after ``job.finish`` wrote its result). Defaults
otherwise. Modes: see _common.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

from _common import QUEUE, Clock, Tally, emit, emit_result, emit_versions, parse_args, ready
from saq import Queue, Worker

ENQUEUE_CONCURRENCY = 200
TALLY = Tally()


async def noop(ctx: Any, *, t0: float) -> None:
    TALLY.record(t0)


async def enqueue(args: argparse.Namespace) -> None:
    queue = Queue.from_url(args.url, name=QUEUE)
    await queue.connect()
    for start in range(0, args.jobs, ENQUEUE_CONCURRENCY):
        count = min(ENQUEUE_CONCURRENCY, args.jobs - start)
        await asyncio.gather(*(queue.enqueue("noop", t0=0.0) for _ in range(count)))
    await queue.disconnect()
    emit(enqueued=args.jobs)


async def work(args: argparse.Namespace) -> None:
    clock = Clock()
    done = asyncio.Event()

    async def after_process(ctx: Any) -> None:
        TALLY.done += 1
        if TALLY.done >= args.jobs:
            done.set()

    queue = Queue.from_url(args.url, name=QUEUE)
    await queue.connect()
    worker = Worker(
        queue, functions=[noop], concurrency=args.concurrency, after_process=after_process
    )
    clock.start()
    task = asyncio.create_task(worker.start())
    ready(args)
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        raise SystemExit(f"work: {TALLY.done}/{args.jobs} done in {args.timeout} s") from None
    clock.stop()
    await worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    await queue.disconnect()
    emit_result(clock, TALLY)


async def produce(args: argparse.Namespace) -> None:
    queue = Queue.from_url(args.url, name=QUEUE)
    await queue.connect()
    for i in range(args.warmup + args.jobs):
        t0 = time.time() if i >= args.warmup else -1.0
        await queue.enqueue("noop", t0=t0)
        await asyncio.sleep(args.interval)
    await queue.disconnect()
    emit(sent=args.warmup + args.jobs)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.mode == "versions":
        emit_versions("saq", "redis", "hiredis")
        return 0
    asyncio.run({"enqueue": enqueue, "work": work, "produce": produce}[args.mode](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
