"""Launch and shutdown: the one place that wires Hypercorn, signals and deadlines.

:func:`serve_relay` runs the app under Hypercorn's Trio worker until ``stop``
is set (or SIGINT/SIGTERM arrives, when ``handle_signals``). Shutdown, in order:

1. the hub is closed at once, so every open stream ends now instead of holding
   Hypercorn for its whole graceful timeout;
2. Hypercorn stops accepting, and finishes in-flight requests within
   ``graceful_timeout``; then ``after_serving`` closes the broker;
3. at ``hard_deadline`` seconds after the stop, whatever still runs is
   cancelled. A write to a client that stopped reading is shielded inside
   Hypercorn and cannot be cancelled; the ``relay-trio server`` command
   therefore also arms a last-resort timer that exits the process. The server
   holds no state of its own, so nothing is lost by that exit.

An address it cannot listen on (in use, not this host's, a name that does not
resolve) is one :class:`~relay_trio.ListenError`, raised before ``started``.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from .. import settings
from .._errors import ListenError, unwrap_group
from .app import RelayApp, create_app
from .config import ServerConfig


def hypercorn_config(
    host: str, port: int, *, graceful_timeout: float, keep_alive_timeout: float
) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.keep_alive_timeout = keep_alive_timeout
    config.accesslog = None
    config.backlog = 2048  # thousands of dashboards may (re)connect at once
    config.errorlog = "-"
    return config


async def serve_relay(
    *,
    config: ServerConfig | None = None,
    app: RelayApp | None = None,
    host: str = settings.HOST.default,
    port: int = settings.PORT.default,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    graceful_timeout: float = settings.GRACEFUL_TIMEOUT.default,
    keep_alive_timeout: float = settings.KEEP_ALIVE_TIMEOUT.default,
    hard_deadline: float = 4.0,
    exit_process_after: float | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app``, or a new app made from ``config`` (one or the other, not
    both: an app has its config), until ``stop`` is set;
    ``task_status.started(binds)`` gives the bound URLs (so port 0 works).
    Returns once the server is down. Raises :class:`ListenError` (an
    ``OSError`` with the system's ``errno``) if it cannot listen on
    ``host``:``port``; a ``ConfigError`` (a ``ValueError``) for a host, port or
    timeout out of its range (:data:`relay_trio.settings.LAUNCH`), and
    ``TypeError`` for both ``config`` and ``app``, or neither.

    ``exit_process_after`` (for the command line only) arms a timer, once the
    stop comes, that ends the whole process if it is still running then."""
    if (config is None) == (app is None):
        raise TypeError(
            "serve_relay() takes config= (it makes the app) or app= (it has its config), "
            f"not {'both' if app is not None else 'neither'}"
        )
    host = settings.HOST.validate(host)
    port = settings.PORT.validate(port)
    graceful_timeout = settings.GRACEFUL_TIMEOUT.validate(graceful_timeout)
    keep_alive_timeout = settings.KEEP_ALIVE_TIMEOUT.validate(keep_alive_timeout)
    app = create_app(config) if app is None else app
    app.allow_bind_address(host)  # a Host the app answers to, besides localhost
    stop = trio.Event() if stop is None else stop
    hc = hypercorn_config(
        host, port, graceful_timeout=graceful_timeout, keep_alive_timeout=keep_alive_timeout
    )

    async def shutdown_trigger() -> None:
        await stop.wait()
        app.close_streams()

    failure: ListenError | None = None
    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(_stop_on_signal, stop)

        async def hard_stop() -> None:
            await stop.wait()
            if exit_process_after is not None:
                timer = threading.Timer(exit_process_after, _force_exit, (exit_process_after,))
                timer.daemon = True
                timer.start()
            await trio.sleep(hard_deadline)
            nursery.cancel_scope.cancel()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(app, hc, shutdown_trigger=shutdown_trigger, task_status=task_status)
            nursery.cancel_scope.cancel()

        nursery.start_soon(hard_stop)
        try:
            binds = await nursery.start(partial(run))
        except (OSError, BaseExceptionGroup) as exc:  # Hypercorn's nurseries wrap it
            reason = unwrap_group(exc)
            if not isinstance(reason, OSError):
                raise
            failure = ListenError(hc.bind[0], reason)
            failure.__cause__ = reason
            nursery.cancel_scope.cancel()
        else:
            task_status.started(binds)
    if failure is not None:
        raise failure


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


def tune_gc_for_streams() -> None:
    """Make the cyclic GC cheap for a server holding thousands of streams.

    Measured (docs/benchmarks.md, fan-out): with the default thresholds the
    collector took 40-55 % of the server's time at 3 000+ streams, with pauses
    of up to 1.6 s. Freezing what start-up allocated and collecting the young
    generation less often cut that to 5-13 %. Call once, before serving.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _force_exit(after: float) -> None:
    print(f"relay-trio: still not down {after:g} s after the stop; exiting", file=sys.stderr)
    sys.stderr.flush()
    os._exit(0)


def port_of(binds: list[str]) -> int:
    """The port of the first bound URL (``http://127.0.0.1:43117`` → 43117)."""
    return int(binds[0].rsplit(":", 1)[1])


__all__ = ["hypercorn_config", "port_of", "serve_relay"]
