"""streaq driver for bench_peers.py (runs in .bench-venvs/streaq).

Worker: ``streaq.Worker(concurrency=C)`` with the task registered by
``@worker.task()``, run in this process with ``worker.run_async()`` (what
``streaq run`` does) on its default anyio backend, asyncio; it reads the
Redis stream with a consumer group and prefetches up to C more tasks. A task
is done when ``Worker.finish_task`` returned (result stored, message acked),
counted by a subclass that only adds that count. Defaults otherwise. Modes: see _common.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import anyio
from _common import QUEUE, Clock, Tally, emit, emit_result, emit_versions, parse_args, ready
from streaq import Worker

ENQUEUE_BATCH = 1000
TALLY = Tally()


class CountingWorker(Worker[Any]):
    """streaq's Worker, counting finished tasks (its own counter moves before the write)."""

    target = 0
    all_done: anyio.Event | None = None

    async def finish_task(self, *args: Any, **kwargs: Any) -> None:
        await super().finish_task(*args, **kwargs)
        TALLY.done += 1
        if TALLY.done >= self.target and self.all_done is not None:
            self.all_done.set()


def make_worker(args: argparse.Namespace) -> tuple[CountingWorker, Any]:
    worker = CountingWorker(
        redis_url=args.url,
        queue_name=QUEUE,
        concurrency=args.concurrency,
        handle_signals=False,
    )

    @worker.task()
    async def noop(t0: float) -> None:
        TALLY.record(t0)

    return worker, noop


async def enqueue(args: argparse.Namespace) -> None:
    worker, noop = make_worker(args)
    async with worker:
        for start in range(0, args.jobs, ENQUEUE_BATCH):
            count = min(ENQUEUE_BATCH, args.jobs - start)
            await worker.enqueue_many([noop.enqueue(0.0) for _ in range(count)])
    emit(enqueued=args.jobs)


async def work(args: argparse.Namespace) -> None:
    clock = Clock()
    worker, _ = make_worker(args)
    worker.target, worker.all_done = args.jobs, anyio.Event()
    async with anyio.create_task_group() as tg:
        clock.start()
        await tg.start(worker.run_async)
        ready(args)
        with anyio.move_on_after(args.timeout):
            await worker.all_done.wait()
        clock.stop()
        tg.cancel_scope.cancel()
    if TALLY.done < args.jobs:
        raise SystemExit(f"work: {TALLY.done}/{args.jobs} done in {args.timeout} s")
    emit_result(clock, TALLY)


async def produce(args: argparse.Namespace) -> None:
    worker, noop = make_worker(args)
    async with worker:
        for i in range(args.warmup + args.jobs):
            t0 = time.time() if i >= args.warmup else -1.0
            await noop.enqueue(t0)
            await anyio.sleep(args.interval)
    emit(sent=args.warmup + args.jobs)


def main() -> int:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.mode == "versions":
        emit_versions("streaq", "coredis", "anyio", "hiredis")
        return 0
    anyio.run({"enqueue": enqueue, "work": work, "produce": produce}[args.mode], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
