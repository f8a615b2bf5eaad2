"""The ``relay-trio`` command. It wires the package together; nothing imports it.

Every flag that names a connection or a default also reads a ``RELAY_*``
environment variable. Bad input exits non-zero with a one-line message.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .._errors import RelayError
from ..broker import Broker, open_broker
from ..embedded import redis_url
from . import types
from .commands import COMMANDS, add_parsers

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay-trio",
        description="A distributed task queue on Redis for Trio, with a live dashboard.",
    )
    parser.add_argument(
        "--redis-url",
        default=types.env("RELAY_REDIS_URL"),
        help="Redis to use (env RELAY_REDIS_URL, default "
        f"{DEFAULT_REDIS_URL}); demo starts a private one when unset",
    )
    parser.add_argument(
        "--prefix",
        default=types.env("RELAY_PREFIX", "relay"),
        help="key prefix (env RELAY_PREFIX, default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    server = sub.add_parser(
        "server",
        help="run the HTTP API, the stream and the dashboard (Hypercorn, trio worker)",
        description="Serves the API, /api/stream and the dashboard. SIGINT/SIGTERM end "
        "open streams at once and stop the process within a hard deadline.",
    )
    server.add_argument("--host", default=types.env("RELAY_HOST", "127.0.0.1"), help="bind address")
    server.add_argument(
        "--port",
        type=types.port,
        default=types.env("RELAY_PORT", "8000"),
        help="port (0 picks one)",
    )
    server.add_argument(
        "--api-token",
        default=types.env("RELAY_API_TOKEN"),
        help="require this bearer token for /api/* (env RELAY_API_TOKEN)",
    )
    server.add_argument(
        "--read-only",
        action="store_true",
        default=(types.env("RELAY_READ_ONLY") or "").lower() in ("1", "true", "yes", "on"),
        help="refuse every mutating API call with 403 (env RELAY_READ_ONLY)",
    )
    server.add_argument(
        "--poll-interval",
        type=types.positive_float,
        default=types.env("RELAY_POLL_INTERVAL", "1.0"),
        help="seconds between hub polls of Redis (default %(default)s)",
    )
    server.add_argument(
        "--keep-alive-timeout",
        type=types.positive_float,
        default=types.env("RELAY_KEEP_ALIVE_TIMEOUT", "5"),
        help="seconds an idle HTTP keep-alive connection stays open",
    )
    server.add_argument(
        "--graceful-timeout",
        type=types.positive_float,
        default=types.env("RELAY_GRACEFUL_TIMEOUT", "2"),
        help="seconds in-flight requests get at shutdown",
    )

    add_parsers(sub)

    demo = sub.add_parser(
        "demo",
        help="run a demo: private Redis, a producer and consumers, live stats",
        description="Starts a private redis-server unless --redis-url is given, then a "
        "producer and consumers on the broker, printing queue stats every second. "
        "Ctrl-C stops everything.",
    )
    demo.add_argument("--queue", default="demo", help="queue name (default %(default)s)")
    demo.add_argument(
        "--rate", type=types.positive_int, default=500, help="jobs enqueued per second"
    )
    demo.add_argument(
        "--consumers", type=types.positive_int, default=4, help="concurrent consumers"
    )
    demo.add_argument(
        "--fail-rate", type=types.fraction, default=0.05, help="share of jobs that fail (0-1)"
    )
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return parser


async def _demo_producer(broker: Broker, queue: str, rate: int) -> None:
    batch = max(1, rate // 10)
    n = 0
    while True:
        specs = [
            broker.spec(f"job {n + i}", priority=random.choice((0, 0, 0, 5)), max_retries=2)
            for i in range(batch)
        ]
        await broker.enqueue_many(queue, specs)
        n += batch
        await trio.sleep(batch / rate)


async def _demo_consumer(broker: Broker, queue: str, fail_rate: float) -> None:
    while True:
        claim = await broker.claim(queue, 20, visibility_ms=10_000)
        if not claim.jobs:
            await trio.sleep(0.05)
            continue
        await trio.sleep(random.uniform(0.001, 0.02))
        ok = [job for job in claim.jobs if random.random() >= fail_rate]
        for job in claim.jobs:
            if job not in ok:
                await broker.nack(job, "demo handler failed on purpose")
        await broker.ack_many(ok)


async def _demo_maintenance(broker: Broker, queue: str) -> None:
    while True:
        await broker.promote(queue)
        await broker.reap(queue)
        await trio.sleep(0.5)


async def _demo(args: argparse.Namespace, url: str) -> None:
    async with open_broker(url, prefix=args.prefix) as broker, trio.open_nursery() as nursery:
        nursery.start_soon(_demo_producer, broker, args.queue, args.rate)
        for _ in range(args.consumers):
            nursery.start_soon(_demo_consumer, broker, args.queue, args.fail_rate)
        nursery.start_soon(_demo_maintenance, broker, args.queue)
        deadline = trio.current_time() + args.duration if args.duration else float("inf")
        while trio.current_time() < deadline:
            await trio.sleep(1)
            s = await broker.stats(args.queue)
            print(
                f"{args.queue}: ready={s.ready} inflight={s.inflight} delayed={s.delayed} "
                f"dlq={s.dlq} processed={s.processed_total} dead={s.dead_total}",
                flush=True,
            )
        nursery.cancel_scope.cancel()


def _run_demo(args: argparse.Namespace) -> int:
    given = contextlib.nullcontext((args.redis_url, False)) if args.redis_url else None
    with given or redis_url() as (url, owned):
        print(f"Redis: {url}{' (private, stops with the demo)' if owned else ''}", flush=True)
        print("Ctrl-C to stop.", flush=True)
        try:
            trio.run(_demo, args, url)
        except KeyboardInterrupt:
            print("\nstopped", flush=True)
    return 0


def _run_server(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from ..server.serve import serve_relay

    config = ServerConfig.from_env(
        redis_url=args.redis_url,
        prefix=args.prefix,
        api_token=args.api_token,
        read_only=args.read_only,
        poll_interval=args.poll_interval,
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(
                    serve_relay,
                    config,
                    host=args.host,
                    port=args.port,
                    handle_signals=True,
                    graceful_timeout=args.graceful_timeout,
                    keep_alive_timeout=args.keep_alive_timeout,
                    hard_deadline=args.graceful_timeout + 0.5,
                    exit_process_after=args.graceful_timeout + 1.0,
                )
            )
            print(f"relay-trio server on {binds[0]} (Redis {config.redis_url})", flush=True)

    trio.run(run)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "demo" and not args.redis_url:
        args.redis_url = DEFAULT_REDIS_URL
    try:
        if args.command == "server":
            return _run_server(args)
        if args.command == "demo":
            return _run_demo(args)
        return COMMANDS[args.command](args)
    except RelayError as exc:
        print(f"relay-trio: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces choices


if __name__ == "__main__":
    sys.exit(main())
