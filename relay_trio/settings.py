"""Every setting of relay-trio, defined once: name, type, range, default, variable, help.

Each :class:`Setting` below is the one definition of its value. Everything
else derives from it:

- :class:`~relay_trio.server.ServerConfig` has one field per :data:`SERVER`
  setting, whose default is the setting's; its ``from_env()`` reads each
  setting's ``RELAY_*`` variable through :func:`from_environment`, and its
  ``__post_init__`` checks every field with :meth:`Setting.validate`;
- the ASGI entry point (``relay_trio.server.asgi``) is ``ServerConfig.from_env()``;
- :func:`~relay_trio.server.serve.serve_relay` takes its defaults from
  :data:`LAUNCH` and checks what it is given;
- the command line (:mod:`relay_trio.cli`) makes each setting's flag, with
  its type, its help (range, variable, default) and its variable as default.

A range that belongs to the library (``MAX_CONCURRENCY``, the broker's longest
lease, ``WorkerConfig``'s bounds) is the library's own :class:`~relay_trio._setting.Range`
object, and a default the library already has (``WorkerConfig``'s, the demo
handler's, the key prefix) is read from it: nothing is written twice.

How a value is spelled (a Redis URL, a host, a token, a switch ...) is checked
by the parsers of :mod:`relay_trio._setting_values`.

A bad value is a :class:`~relay_trio.ConfigError` (a ``ValueError``) that names
the field (``poll_interval: must be at least 0.05 and at most 3,600, got 0``)
or the variable (``RELAY_POLL_INTERVAL: ..., got 0``); a secret (a token, a
Redis URL with its password) is never shown.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from . import broker_core, demo_handler, worker_config
from ._setting import (
    HOUR,
    BadValue,
    Range,
    Setting,
    from_environment,
    number,
    optional_number,
    refused,
)
from ._setting_values import (
    PORTS,
    _bind_host,
    _handler,
    _host_list_text,
    _host_names,
    _log_format,
    _metrics_port,
    _metrics_port_text,
    _prefix,
    _redis_url,
    _switch,
    _switch_text,
    _tasks,
    _token,
)
from .demo_handler import make_demo_handler
from .job import DEFAULT_MAX_PAYLOAD_BYTES
from .keys import DEFAULT_PREFIX
from .redis_wire import DEFAULT_SOCKET_TIMEOUT

HOUR_MS = int(HOUR * 1000)


def _default_of(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``: the library's own."""
    (found,) = (f.default for f in dataclasses.fields(cls) if f.name == name)
    return found


def _parameter_default(function: Callable[..., Any], name: str) -> Any:
    return inspect.signature(function).parameters[name].default


_API_TOKEN, _METRICS_TOKEN = _token("API token"), _token("metrics token")


# -- where Redis is: every command, the server, the ASGI app ----------------------

REDIS_URL: Setting[str] = Setting(
    "redis_url",
    "RELAY_REDIS_URL",
    "redis://127.0.0.1:6379/0",
    "Redis to use; demo starts a private one when unset",
    _redis_url,
    _redis_url,
    flag="--redis-url",
    show_value=False,
)
PREFIX: Setting[str] = Setting(
    "prefix",
    "RELAY_PREFIX",
    DEFAULT_PREFIX,
    "key prefix: 1-64 characters of A-Z a-z 0-9 . _ : - (no braces, which would put "
    "every queue into one Redis Cluster slot)",
    _prefix,
    _prefix,
    flag="--prefix",
    show_value=False,
)
LOG_FORMAT: Setting[str] = Setting(
    "log_format",
    "RELAY_LOG_FORMAT",
    "kv",
    "log lines as key=value fields (kv) or JSON objects (json), one per line",
    _log_format,
    _log_format,
    flag="--log-format",
    metavar="{kv,json}",
)
CONNECTION = (REDIS_URL, PREFIX)
COMMON: tuple[Setting[Any], ...] = (*CONNECTION, LOG_FORMAT)
"""The settings of every command, given before or after the verb."""

# -- the server: ServerConfig has a field for each (in this order) ----------------

API_TOKEN: Setting[str | None] = Setting(
    "api_token",
    "RELAY_API_TOKEN",
    None,
    "require this bearer token for /api/* and /metrics (and a one-time ticket from "
    "POST /api/stream/ticket, or the token, for the stream); any text but empty, with no "
    "control character and no space or tab at either end",
    _API_TOKEN,
    _API_TOKEN,
    flag="--api-token",
    show_value=False,
)
METRICS_TOKEN: Setting[str | None] = Setting(
    "metrics_token",
    "RELAY_METRICS_TOKEN",
    None,
    "require this bearer token, and no other, for /metrics (for a scraper that should "
    "not hold the API token)",
    _METRICS_TOKEN,
    _METRICS_TOKEN,
    flag="--metrics-token",
    show_value=False,
)
ALLOWED_HOSTS: Setting[tuple[str, ...]] = Setting(
    "allowed_hosts",
    "RELAY_ALLOWED_HOSTS",
    (),
    "a host name or IP address this server answers to (any port), besides the bind "
    "address, localhost, 127.0.0.1 and [::1]; repeatable, or comma-separated. A request "
    "with any other Host header gets 421 (against DNS rebinding), except /healthz and "
    "/readyz. '*' allows any Host: only behind a proxy that checks Host itself. The "
    "flags replace the variable",
    _host_list_text,
    _host_names,
    flag="--allowed-host",
    show_value=False,  # the reason names the bad entry
    metavar="NAME",
)
STREAM_TICKET_TTL = number(
    "stream_ticket_ttl",
    "RELAY_STREAM_TICKET_TTL",
    Range(float, 0.0, HOUR, exclude_low=True),
    60.0,
    "seconds a stream ticket stays good (it opens one stream, once)",
)
READ_ONLY: Setting[bool] = Setting(
    "read_only",
    "RELAY_READ_ONLY",
    False,
    "refuse every mutating API call with 403",
    _switch_text,
    _switch,
    flag="--read-only",
)
POLL_INTERVAL = number(
    "poll_interval",
    "RELAY_POLL_INTERVAL",
    Range(float, 0.05, HOUR),
    1.0,
    "seconds between hub polls of Redis",
    flag="--poll-interval",
)
KEEPALIVE_INTERVAL = number(
    "keepalive_interval",
    "RELAY_KEEPALIVE_INTERVAL",
    Range(float, 0.1, HOUR),
    15.0,
    "seconds between keep-alive comments on an idle stream",
)
STREAM_RETRY_MS = number(
    "stream_retry_ms",
    "RELAY_STREAM_RETRY_MS",
    Range(int, 100, HOUR_MS),
    2000,
    "the retry: hint (ms) a stream gives the browser for reconnecting",
)
DROP_AFTER = number(
    "drop_after",
    "RELAY_STREAM_DROP_AFTER",
    Range(float, 1.0, HOUR),
    30.0,
    "seconds before a stream client that takes no snapshot is dropped",
)
MAX_PAYLOAD_BYTES = number(
    "max_payload_bytes",
    "RELAY_MAX_PAYLOAD_BYTES",
    Range(int, 1, 64 * 1024 * 1024),
    DEFAULT_MAX_PAYLOAD_BYTES,
    "largest job payload, in bytes",
)
SOCKET_TIMEOUT = number(
    "socket_timeout",
    "RELAY_SOCKET_TIMEOUT",
    Range(float, 0.0, HOUR, exclude_low=True),
    DEFAULT_SOCKET_TIMEOUT,
    "seconds a Redis command may take before it fails",
)
FLEET: Setting[bool] = Setting(
    "fleet",
    "RELAY_FLEET",
    False,
    "share one hub poll with every --fleet server on this Redis and prefix (a leader "
    "elected through a Redis lease polls and publishes; the others relay)",
    _switch_text,
    _switch,
    flag="--fleet",
)
SERVER: tuple[Setting[Any], ...] = (
    REDIS_URL,
    PREFIX,
    API_TOKEN,
    METRICS_TOKEN,
    ALLOWED_HOSTS,
    STREAM_TICKET_TTL,
    READ_ONLY,
    POLL_INTERVAL,
    KEEPALIVE_INTERVAL,
    STREAM_RETRY_MS,
    DROP_AFTER,
    MAX_PAYLOAD_BYTES,
    SOCKET_TIMEOUT,
    FLEET,
)

# -- how the server listens: `relay-trio server`, serve_relay() ---------------------

HOST: Setting[str] = Setting(
    "host",
    "RELAY_HOST",
    "127.0.0.1",
    "bind address; bound to 0.0.0.0 or ::, the server still answers only to the Host "
    "names localhost, 127.0.0.1 and [::1]: give every name and address clients use "
    "with --allowed-host",
    _bind_host,
    _bind_host,
    flag="--host",
)
PORT = number("port", "RELAY_PORT", PORTS, 8000, "port (0 picks one)", flag="--port")
KEEP_ALIVE_TIMEOUT = number(
    "keep_alive_timeout",
    "RELAY_KEEP_ALIVE_TIMEOUT",
    Range(float, 0.1, HOUR),
    5.0,
    "seconds an idle HTTP keep-alive connection stays open",
    flag="--keep-alive-timeout",
)
GRACEFUL_TIMEOUT = number(
    "graceful_timeout",
    "RELAY_GRACEFUL_TIMEOUT",
    Range(float, 0.0, 600.0),
    2.0,
    "seconds in-flight requests get at shutdown",
    flag="--graceful-timeout",
)
LAUNCH: tuple[Setting[Any], ...] = (HOST, PORT, KEEP_ALIVE_TIMEOUT, GRACEFUL_TIMEOUT)

# -- the worker command: ranges and defaults are the library's ------------------------

FRACTION = Range(float, 0.0, 1.0)

CONCURRENCY = number(
    "concurrency",
    "RELAY_CONCURRENCY",
    worker_config.CONCURRENCY,
    _default_of(worker_config.QueueHandler, "concurrency"),
    "jobs run at once per queue",
    flag="--concurrency",
)
HANDLER: Setting[str] = Setting(
    "handler",
    "RELAY_HANDLER",
    "demo",
    "module:function, or 'demo'",
    _handler,
    _handler,
    flag="--handler",
)
VISIBILITY_MS = number(
    "visibility_ms",
    "RELAY_VISIBILITY_MS",
    worker_config.WORKER_CONFIG_RANGES["visibility_ms"],
    _default_of(worker_config.WorkerConfig, "visibility_ms"),
    "lease length in ms; heartbeats extend it every third",
    flag="--visibility-ms",
)
GRACE_PERIOD = number(
    "grace_period",
    "RELAY_GRACE_PERIOD",
    worker_config.WORKER_CONFIG_RANGES["grace_period"],
    _default_of(worker_config.WorkerConfig, "grace_period"),
    "seconds running jobs get at shutdown",
    flag="--grace-period",
)
JOB_TIMEOUT = optional_number(
    "job_timeout",
    "RELAY_JOB_TIMEOUT",
    worker_config.JOB_TIMEOUT,
    "default per-attempt timeout in seconds for jobs enqueued without a timeout_ms of "
    "their own: at the timeout an async handler is cancelled and the job nacked ('timed "
    "out after ...'); a thread handler's job comes back through the reaper",
    flag="--job-timeout",
    none="none: no timeout",
    metavar="SECONDS",
)
TASKS: Setting[str | None] = Setting(
    "tasks",
    "RELAY_TASKS",
    None,
    "serve every queue of this TaskRegistry (module:attribute, imported with the current "
    "directory first on sys.path), each with the registry's handler and this worker's "
    "--concurrency and --job-timeout; --queue, if given, picks some of its queues; not with "
    "--handler",
    _tasks,
    _tasks,
    flag="--tasks",
    metavar="MODULE:REGISTRY",
)
RESULT_TTL = number(
    "result_ttl",
    "RELAY_RESULT_TTL",
    Range(int, 0, broker_core.RESULT_TTL_MAX_S),
    broker_core.DEFAULT_RESULT_TTL_S,
    "seconds a finished job is kept with its result (state done) for result and get_job; "
    "0 = delete the job at ack (no result kept)",
    flag="--result-ttl",
)
NO_SCHEDULES: Setting[bool] = Setting(
    "no_schedules",
    "RELAY_NO_SCHEDULES",
    not _default_of(worker_config.WorkerConfig, "schedules"),
    "do not run the cron scheduler in this worker (any other worker still fires the "
    "schedules, each fire time once)",
    _switch_text,
    _switch,
    flag="--no-schedules",
)
PRESENCE_INTERVAL = number(
    "presence_interval",
    "RELAY_PRESENCE_INTERVAL",
    worker_config.WORKER_CONFIG_RANGES["presence_interval"],
    _default_of(worker_config.WorkerConfig, "presence_interval"),
    "seconds between the worker's beats to the registry of live workers; a worker that "
    "stops beating is dropped after three",
    flag="--presence-interval",
)
METRICS_PORT: Setting[int | None] = Setting(
    "metrics_port",
    "RELAY_METRICS_PORT",
    None,
    "serve this worker's Prometheus metrics at http://HOST:PORT/metrics (0 picks a free "
    "port, printed at start); off: none",
    _metrics_port_text,
    _metrics_port,
    PORTS,
    "--metrics-port",
    shown_default="off",
    metavar="PORT",
)
METRICS_HOST: Setting[str] = Setting(
    "metrics_host",
    "RELAY_METRICS_HOST",
    "127.0.0.1",
    "the address --metrics-port listens on",
    _bind_host,
    _bind_host,
    flag="--metrics-host",
)
DEMO_FAIL_RATE = number(
    "demo_fail_rate",
    "RELAY_DEMO_FAIL_RATE",
    demo_handler.FAIL_RATE,
    _parameter_default(make_demo_handler, "fail_rate"),
    "share of jobs the demo handler fails",
    flag="--demo-fail-rate",
)
DEMO_SLEEP_MS = number(
    "demo_sleep_ms",
    "RELAY_DEMO_SLEEP_MS",
    demo_handler.SLEEP_MS,
    _parameter_default(make_demo_handler, "sleep_ms"),
    "how long the demo handler works on a job, in ms",
    flag="--demo-sleep-ms",
)
WORKER: tuple[Setting[Any], ...] = (
    CONCURRENCY,
    HANDLER,
    TASKS,
    VISIBILITY_MS,
    GRACE_PERIOD,
    JOB_TIMEOUT,
    RESULT_TTL,
    NO_SCHEDULES,
    PRESENCE_INTERVAL,
    METRICS_PORT,
    METRICS_HOST,
    DEMO_FAIL_RATE,
    DEMO_SLEEP_MS,
)

ALL: tuple[Setting[Any], ...] = SERVER + LAUNCH + WORKER + (LOG_FORMAT,)
"""Every setting with a ``RELAY_*`` variable (each variable names one setting)."""

__all__ = [
    "ALL",
    "COMMON",
    "CONNECTION",
    "LAUNCH",
    "PORTS",
    "SERVER",
    "WORKER",
    "BadValue",
    "Range",
    "Setting",
    "from_environment",
    "refused",
]
