"""The ``relay-trio`` command. It wires the package together; nothing imports it.

Every flag that names a connection or a default also reads a ``RELAY_*``
environment variable. Bad input exits non-zero with a one-line message: 2 for a
bad command line or variable (every setting is defined, with its range, in
:mod:`relay_trio.settings`; also :class:`InvalidInput` or :class:`ConfigError`
found later, before anything was done), 1 for an
error at run time (Redis unavailable, queue not found, an address in use ...).
No message shows a Redis password.

Some verbs tell what they found by a status of their own (the epilog of
``relay-trio --help`` lists them): 3 ``enqueue``, the idempotency key already
names a job; ``cancel`` and ``result``, no such job; ``schedule rm``, no such
schedule. 4 ``queue delete``, the queue still holds jobs; ``cancel``, the job
has already ended; ``result``, the job ended dead or cancelled. 5 ``result``,
the job has not ended within ``--wait``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

import trio

from .. import logs, settings
from .._errors import ConfigError, InvalidInput, ListenError, RelayError
from .._redact import redact_url
from .commands import COMMANDS
from .demo import run_demo
from .options import build_parser


def _run_server(args: argparse.Namespace) -> int:
    from ..server.config import ServerConfig
    from ..server.serve import serve_relay, tune_gc_for_streams

    # the flags (checked by the parser), and the settings without one from their
    # variables: a bad one is a ConfigError naming it (exit status 2, see main)
    given = {s.name: getattr(args, s.name) for s in settings.SERVER if s.flag is not None}
    config = ServerConfig.from_env(**given)

    async def run() -> ListenError | None:
        async with trio.open_nursery() as nursery:
            try:
                binds = await nursery.start(
                    partial(
                        serve_relay,
                        config=config,
                        host=args.host,
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
    # relay-trio's log lines (--log-format): INFO on stdout with the command's other
    # messages for people, WARNING and up (a worker's retries) on stderr
    logs.setup(args.log_format)
    if args.command != "demo" and not args.redis_url:
        args.redis_url = settings.REDIS_URL.default
    try:
        if args.command == "server":
            return _run_server(args)
        if args.command == "demo":
            return run_demo(args)
        return COMMANDS[args.command](args)
    except (InvalidInput, ConfigError) as exc:  # bad input found after parsing: nothing done
        print(f"relay-trio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RelayError as exc:
        print(f"relay-trio: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces choices


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
