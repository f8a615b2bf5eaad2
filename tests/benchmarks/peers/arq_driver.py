"""arq driver for bench_peers.py (runs in .bench-venvs/arq).

Worker: ``arq.worker.Worker(functions=[noop], max_jobs=C)`` run in this process
with ``await worker.async_run()`` (what ``arq`` the CLI does, minus its signal
handlers); arq polls the queue every ``poll_delay`` (default 0.5 s) and reads
up to ``queue_read_limit`` (default 5 x max_jobs) job ids per poll. A job is
done when the ``after_job_end`` hook runs (after its result was recorded).
Defaults otherwise. Modes: see _common.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any

from _common import QUEUE, Clock, Tally, emit, emit_result, emit_versions, parse_args, ready
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

ENQUEUE_CONCURRENCY = 200
TALLY = Tally()


async def noop(ctx: Any, t0: float) -> None:
    TALLY.record(t0)


async def enqueue(args: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(args.url), default_queue_name=QUEUE)
    for start in range(0, args.jobs, ENQUEUE_CONCURRENCY):
        count = min(ENQUEUE_CONCURRENCY, args.jobs - start)
        await asyncio.gather(*(pool.enqueue_job("noop", 0.0) for _ in range(count)))
    await pool.aclose()
    emit(enqueued=args.jobs)


async def work(args: argparse.Namespace) -> None:
    clock = Clock()
    done = asyncio.Event()

    async def after_job_end(ctx: Any) -> None:
        TALLY.done += 1
        if TALLY.done >= args.jobs:
            done.set()

    clock.start()
    worker = Worker(
        functions=[noop],
        queue_name=QUEUE,
        redis_settings=RedisSettings.from_dsn(args.url),
        max_jobs=args.concurrency,
        after_job_end=after_job_end,
        handle_signals=False,
    )
    task = asyncio.create_task(worker.async_run())
    ready(args)
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        raise SystemExit(f"work: {TALLY.done}/{args.jobs} done in {args.timeout} s") from None
    clock.stop()
    await worker.close()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    emit_result(clock, TALLY)


async def produce(args: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(args.url), default_queue_name=QUEUE)
    for i in range(args.warmup + args.jobs):
        t0 = time.time() if i >= args.warmup else -1.0
        await pool.enqueue_job("noop", t0)
        await asyncio.sleep(args.interval)
    await pool.aclose()
    emit(sent=args.warmup + args.jobs)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.mode == "versions":
        emit_versions("arq", "redis", "hiredis")
        return 0
    asyncio.run({"enqueue": enqueue, "work": work, "produce": produce}[args.mode](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
