"""The ``relay-trio`` command. It wires the package together; nothing imports it.

Every flag that names a connection or a default also reads a ``RELAY_*``
environment variable. Bad input exits non-zero with a one-line message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .._errors import RelayError
from . import types
from .commands import COMMANDS, add_parsers
from .demo import add_parser as add_demo_parser
from .demo import run_demo

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
        "--stream-writes",
        type=types.one_of("tick", "task", "asgi"),  # ServerConfig.stream_writes
        metavar="{tick,task,asgi}",
        default=types.env("RELAY_STREAM_WRITES", "tick"),
        help="who writes stream events to sockets: the hub's tick (default), each "
        "client's task, or ASGI only (env RELAY_STREAM_WRITES)",
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

    add_demo_parser(sub)
    return parser


def _run_server(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from ..server.serve import serve_relay, tune_gc_for_streams

    try:
        config = ServerConfig.from_env(
            redis_url=args.redis_url,
            prefix=args.prefix,
            api_token=args.api_token,
            read_only=args.read_only,
            poll_interval=args.poll_interval,
            stream_writes=args.stream_writes,
        )
    except ValueError as exc:  # a bad RELAY_* variable
        print(f"relay-trio server: {exc}", file=sys.stderr)
        return 2

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

    tune_gc_for_streams()
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
            return run_demo(args)
        return COMMANDS[args.command](args)
    except RelayError as exc:
        print(f"relay-trio: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces choices


if __name__ == "__main__":
    sys.exit(main())
