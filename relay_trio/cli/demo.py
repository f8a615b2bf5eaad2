"""``relay-trio demo``: Redis, the server with its dashboard, workers and a load generator.

With no Redis configured it starts a private ``redis-server`` (stopped with the
demo). Everything else runs in one Trio nursery: the server (Hypercorn), one
worker serving the demo queues with the built-in demo handler, a producer that
enqueues a steady mix of jobs (some delayed, some high priority, some doomed
to the DLQ), and a one-line progress display. The worker serves its own
Prometheus metrics on a free port of ``--host`` (the URL is printed); its job
events (the demo's deliberate failures) are not logged, the dashboard shows
them. Ctrl-C (or SIGTERM) stops the producer, lets the worker finish or nack
its running jobs, stops the server, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import random
import signal
import sys
from functools import partial
from typing import Any

import trio

from .. import settings
from .._errors import RelayError, unwrap_group
from .._redact import redact_url
from .._setting import WEEK
from ..broker import Broker, open_broker
from ..demo_handler import make_demo_handler
from ..embedded import redis_url
from ..logs import DropJobEvents
from ..metrics import JobMetrics
from ..server.config import ServerConfig
from ..server.serve import serve_relay
from ..worker import QueueHandler, Worker, WorkerConfig
from ..worker_config import CONCURRENCY
from ..worker_metrics import WorkerCollector, metrics_url, open_listeners, serve_metrics
from .types import add_number, float_between, int_between, setting_type

QUEUES = ("emails", "reports", "thumbnails")


def add_parser(sub: Any, conn: argparse.ArgumentParser) -> None:
    demo = sub.add_parser(
        "demo",
        parents=[conn],
        help="run the demo: Redis, server + dashboard, workers and load, live",
        description="Starts a private redis-server unless --redis-url is given, the "
        "server with its dashboard, a worker and a load generator. Ctrl-C stops all.",
    )
    host, port = settings.HOST, settings.PORT  # the server's, without their variables
    demo.add_argument(
        "--host",
        type=setting_type(host),
        default=host.default,
        help=f"bind address (default {host.default_text})",
    )
    add_number(
        demo, "--port", settings.PORTS, "port (if busy: any; 0 picks one)", default=port.default
    )
    add_number(demo, "--rate", int_between(1, 10_000), "jobs enqueued per second", default=60)
    add_number(demo, "--concurrency", CONCURRENCY, "jobs at once per queue", default=8)
    add_number(demo, "--fail-rate", settings.FRACTION, "share of jobs that fail", default=0.1)
    add_number(
        demo,
        "--duration",
        float_between(0, WEEK, exclude_low=True),
        "stop after this many seconds",
        none="none: until Ctrl-C",
    )


def run_demo(args: argparse.Namespace) -> int:
    given = contextlib.nullcontext((args.redis_url, False)) if args.redis_url else None
    with given or redis_url() as (url, owned):
        note = " (private, stops with the demo)" if owned else ""
        print(f"Redis: {redact_url(url)}{note}", flush=True)
        try:
            trio.run(_demo, args, url)
        except BaseExceptionGroup as group:  # what left the demo's nursery
            error = unwrap_group(group)
            if not isinstance(error, RelayError):
                raise
            raise error from None  # one line, exit status 1
    return 0


async def _demo(args: argparse.Namespace, url: str) -> None:
    quiet = DropJobEvents()
    worker_log = logging.getLogger("relay_trio.worker")
    worker_log.addFilter(quiet)
    try:
        async with open_broker(url, prefix=args.prefix) as broker:
            await broker.io.ping()  # a Redis it cannot use is one line, before anything starts
            await _run_all(args, url, broker)
    finally:
        worker_log.removeFilter(quiet)
    print("demo stopped", flush=True)


async def _run_all(args: argparse.Namespace, url: str, broker: Broker) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, stop)
        if args.duration:
            nursery.start_soon(_stop_after, stop, args.duration)
        server_stop = trio.Event()
        config = ServerConfig(redis_url=url, prefix=args.prefix)
        try:
            binds = await nursery.start(
                partial(
                    serve_relay, config=config, host=args.host, port=args.port, stop=server_stop
                )
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or args.port == 0:
                raise
            binds = await nursery.start(
                partial(serve_relay, config=config, host=args.host, port=0, stop=server_stop)
            )
        print(f"Dashboard: {binds[0]}/   (Ctrl-C stops everything)", flush=True)
        handler = make_demo_handler(args.fail_rate, sleep_ms=40)
        metrics = JobMetrics()  # what the worker did: its broker's events, and its own
        worker = Worker(
            Broker(broker.io, prefix=args.prefix, events=metrics),
            [QueueHandler(q, handler, args.concurrency) for q in QUEUES],
            WorkerConfig(grace_period=2.0, visibility_ms=10_000),
        )
        metrics.registry.register(WorkerCollector(worker))
        listeners = await open_listeners(args.host, 0)
        await nursery.start(serve_metrics, listeners, metrics.render)
        print(f"Worker metrics: {metrics_url(listeners)}", flush=True)
        worker_done = trio.Event()

        async def work() -> None:
            await worker.serve()
            worker_done.set()

        nursery.start_soon(work)
        async with trio.open_nursery() as load:
            load.start_soon(_produce, broker, args.rate)
            load.start_soon(_progress, broker)
            await stop.wait()
            load.cancel_scope.cancel()
        print("\nstopping: finishing running jobs…", flush=True)
        worker.stop()
        await worker_done.wait()
        server_stop.set()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()


async def _stop_after(stop: trio.Event, seconds: float) -> None:
    await trio.sleep(seconds)
    stop.set()


async def _produce(broker: Broker, rate: int) -> None:
    """A steady, varied load: mostly plain jobs, some delayed, some urgent, some
    with a single attempt (they reach the DLQ when they fail)."""
    tick = 0.25
    n = 0
    while True:
        count = max(1, round(rate * tick * random.uniform(0.5, 1.5)))
        for queue in QUEUES:
            share = max(1, count // len(QUEUES) + random.randint(-1, 1))
            specs = []
            for _ in range(share):
                n += 1
                roll = random.random()
                specs.append(
                    broker.spec(
                        f'{{"job": {n}, "queue": "{queue}"}}',
                        priority=9 if roll < 0.1 else 0,
                        delay_ms=random.randint(1000, 5000) if roll > 0.9 else 0,
                        max_retries=1 if 0.4 < roll < 0.5 else 3,
                    )
                )
            await broker.enqueue_many(queue, specs)
        await trio.sleep(tick)


async def _progress(broker: Broker) -> None:
    tty = sys.stdout.isatty()
    while True:
        await trio.sleep(1)
        rows = await broker.stats_many(QUEUES)
        line = "  ".join(
            f"{r.queue}: ready {r.ready} inflight {r.inflight} delayed {r.delayed} "
            f"dlq {r.dlq} done {r.processed_total}"
            for r in rows
        )
        print(("\r" + line[:200]) if tty else line, end="" if tty else "\n", flush=True)
