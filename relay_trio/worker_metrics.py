"""A worker's ``/metrics`` (spec sections 8 and 12): what this worker did, for Prometheus.

``relay-trio worker --metrics-port N`` gives the worker's broker a
:class:`~relay_trio.metrics.JobMetrics` as its events (the job counters
``relay_jobs_<event>_total{queue}`` of what this worker did — claimed,
processed, retried, dead, reaped, promoted, released, dlq_trimmed, cancelled,
and enqueued by its scheduler — and ``relay_job_latency_seconds{queue}``,
creation to ack on Redis's clock), registers a :class:`WorkerCollector` (the
worker's own, read from its :class:`~relay_trio.WorkerStats` at scrape time, so
a job costs nothing more) and serves them with :func:`serve_metrics`:

==========================================  =========  ===================================
``relay_worker_info{id,host,version}``      gauge      1: who this worker is
``relay_worker_start_time_seconds``         gauge      when it started (Unix time)
``relay_worker_running_jobs{queue}``        gauge      jobs held: running or about to
``relay_worker_concurrency{queue}``         gauge      the most it runs at once
``relay_worker_claims_total{queue}``        counter    claim calls (each up to max_claim)
``relay_worker_attempts_total{outcome}``    counter    handler runs by outcome: succeeded,
                                                       failed (timed_out and rejected
                                                       included), timed_out, rejected,
                                                       aborted, cancelled (at shutdown)
``relay_worker_heartbeat_failures_total``   counter    failed round trips: ``kind`` lease
                                                       (the jobs' heartbeat) or presence
==========================================  =========  ===================================

The HTTP side is a small HTTP/1.1 responder on :func:`trio.serve_listeners`:
``GET`` (or ``HEAD``) ``/metrics`` is the Prometheus text; any other path is
404, another method 405, a request that is not HTTP/1.x (or whose head passes
8 KiB, or that takes longer than 10 s to arrive) 400; one request per
connection. Nothing it meets stops the worker: a connection's error ends that
connection, and an error of the server itself is logged and ends the server.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ._errors import ListenError
from .metrics import CONTENT_TYPE
from .worker_upkeep import version

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("relay_trio.worker.metrics")

MAX_HEAD = 8 * 1024
READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 32
LINGER = 1.0
MAX_DRAIN = 1024 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class WorkerCollector:
    """The worker's own metrics (see the module doc), read at scrape time."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def describe(self) -> list[Metric]:
        return []  # registered without a scrape; the names are the worker's own

    def collect(self) -> Iterator[Metric]:
        w, stats = self.worker, self.worker.stats
        info = GaugeMetricFamily(
            "relay_worker_info", "This worker: id, host, version", labels=["id", "host", "version"]
        )
        info.add_metric([w.id, w.host, version()], 1)
        yield info
        yield GaugeMetricFamily(
            "relay_worker_start_time_seconds", "When the worker started (Unix time)", w.started_at
        )
        running = GaugeMetricFamily(
            "relay_worker_running_jobs", "Jobs held: running or about to", labels=["queue"]
        )
        concurrency = GaugeMetricFamily(
            "relay_worker_concurrency", "Most jobs run at once", labels=["queue"]
        )
        claims = CounterMetricFamily(
            "relay_worker_claims", "Claim calls (each takes up to max_claim jobs)", labels=["queue"]
        )
        for h in w.handlers:
            running.add_metric([h.queue], stats.running.get(h.queue, 0))
            concurrency.add_metric([h.queue], h.concurrency)
            claims.add_metric([h.queue], stats.claims.get(h.queue, 0))
        yield from (running, concurrency, claims)
        attempts = CounterMetricFamily(
            "relay_worker_attempts", "Handler runs by outcome", labels=["outcome"]
        )
        for outcome in ("succeeded", "failed", "timed_out", "rejected", "aborted", "cancelled"):
            attempts.add_metric([outcome], getattr(stats, outcome))
        yield attempts
        failures = CounterMetricFamily(
            "relay_worker_heartbeat_failures",
            "Failed heartbeats: lease (the held jobs') or presence (the registry of workers)",
            labels=["kind"],
        )
        failures.add_metric(["lease"], stats.heartbeat_failures)
        failures.add_metric(["presence"], stats.presence_failures)
        yield failures


def address(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listeners on ``host``:``port`` (0 picks a free port); a :class:`ListenError`
    (one line: in use, not this host's address ...) if it cannot listen."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ListenError(address(host, port), exc) from None


def metrics_url(listeners: Sequence[trio.SocketListener]) -> str:
    """``http://host:port/metrics`` of the first listener (its real port)."""
    bound: Any = listeners[0].socket.getsockname()
    host = bound[0]
    if listeners[0].socket.family == socket.AF_INET6 and host == "::":
        host = "::1"
    elif host == "0.0.0.0":
        host = "127.0.0.1"
    return f"http://{address(host, bound[1])}/metrics"


def response(status: int, body: bytes, *, head_only: bool = False, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}"]
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    fields = {"Content-Type": content_type, "Content-Length": str(len(body)), **headers}
    fields["Connection"] = "close"
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)


def answer(head: bytes, render: Callable[[], bytes]) -> bytes:
    """The response to a request whose head (up to the blank line) is ``head``."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0].isalpha():
        return response(400, b"bad request\n")
    method, target = parts[0], parts[1]
    if target.split(b"?", 1)[0] != b"/metrics":
        return response(404, b"not found: the metrics are at /metrics\n")
    if method not in (b"GET", b"HEAD"):
        return response(405, b"method not allowed: GET or HEAD\n", Allow="GET, HEAD")
    return response(200, render(), head_only=method == b"HEAD")


async def _handle(stream: trio.SocketStream, render: Callable[[], bytes]) -> None:
    head = b""
    with trio.move_on_after(READ_TIMEOUT):
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_HEAD:
                break
            data = await stream.receive_some(4096)
            if not data:
                return  # the client left
            head += data
    if b"\r\n\r\n" in head:
        reply = answer(head.split(b"\r\n\r\n", 1)[0], render)
    else:
        reply = response(400, b"bad request: no complete head\n")
    with trio.move_on_after(READ_TIMEOUT):
        await stream.send_all(reply)
    # closing with unread input would reset the connection, and the client could
    # lose the reply: end our side, then read what it still sends (briefly)
    with trio.move_on_after(LINGER):
        await stream.send_eof()
        drained = 0
        while drained < MAX_DRAIN and (data := await stream.receive_some(65536)):
            drained += len(data)


async def serve_metrics(
    listeners: Sequence[trio.SocketListener],
    render: Callable[[], bytes],
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``render()`` at ``/metrics`` on ``listeners`` until cancelled (see
    the module doc); at most :data:`MAX_CONNECTIONS` at once (more wait). Started
    (``nursery.start``), it gives the listeners."""
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            async with limiter, stream:
                await _handle(stream, render)
        except Exception as exc:  # a client's trouble ends its connection only
            log.debug("metrics connection failed: %r", exc)

    try:
        await trio.serve_listeners(handle, list(listeners), task_status=task_status)
    except Exception as exc:
        log.error("the metrics server stopped (the worker goes on): %r", exc)


__all__ = ["WorkerCollector", "metrics_url", "open_listeners", "serve_metrics"]
