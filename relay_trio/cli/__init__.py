"""The ``relay-trio`` command. It wires the package together; nothing imports it.

Every flag that names a connection or a default also reads a ``RELAY_*``
environment variable. Bad input exits non-zero with a one-line message: 2 for a
bad command line or variable (every number has a range, see :mod:`.options`;
also :class:`InvalidInput` found later, before anything was done), 1 for an
error at run time (Redis unavailable, queue not found, an address in use ...).
No message shows a Redis password.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .._errors import InvalidInput, ListenError, RelayError
from .._redact import redact_url
from . import types
from .commands import COMMANDS
from .demo import run_demo
from .options import DEFAULT_REDIS_URL, SERVER_ENV_ONLY, build_parser


def _run_server(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from ..server.serve import serve_relay, tune_gc_for_streams

    for var, kind, _ in SERVER_ENV_ONLY:  # ServerConfig.from_env reads these unchecked
        value = types.env(var)
        if value is not None:
            try:
                kind(value)
            except argparse.ArgumentTypeError as exc:
                print(f"relay-trio server: error: {exc}", file=sys.stderr)
                return 2
    try:
        host = types.host(args.host)
    except argparse.ArgumentTypeError as exc:
        print(f"relay-trio server: error: argument --host: {exc}", file=sys.stderr)
        return 2
    try:
        config = ServerConfig.from_env(
            redis_url=args.redis_url,
            prefix=args.prefix,
            api_token=args.api_token,
            metrics_token=args.metrics_token,
            allowed_hosts=args.allowed_host,
            read_only=args.read_only,
            poll_interval=args.poll_interval,
        )
    except ValueError as exc:  # a bad RELAY_* variable
        print(f"relay-trio server: error: {exc}", file=sys.stderr)
        return 2

    async def run() -> ListenError | None:
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(
                    partial(
                        serve_relay,
                        config,
                        host=host,
                        port=args.port,
                        handle_signals=True,
                        graceful_timeout=args.graceful_timeout,
                        keep_alive_timeout=args.keep_alive_timeout,
                        hard_deadline=args.graceful_timeout + 0.5,
                        exit_process_after=args.graceful_timeout + 1.0,
                    )
                )
            except ListenError as exc:  # raised here, it would leave as a group
                return exc
            redis = redact_url(config.redis_url)
            print(f"relay-trio server on {binds[0]} (Redis {redis})", flush=True)
        return None

    tune_gc_for_streams()
    failure = trio.run(run)
    if failure is not None:
        raise failure  # one line, exit status 1 (see main)
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
    except InvalidInput as exc:  # bad input found after parsing: nothing was done
        print(f"relay-trio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RelayError as exc:
        print(f"relay-trio: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces choices


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
