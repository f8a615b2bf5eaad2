"""Prometheus metrics (spec section 8), in a registry of their own per process.

Broker counters are labelled ``queue`` and count what *this process* did
(a server counts the enqueues it took; a worker its claims and acks):
:class:`JobMetrics` has those and the latency histogram (what a worker
exports, with its own, see :mod:`relay_trio.worker_metrics`); :class:`Metrics`
(the server's) adds the queue depth gauge and the hub and stream metrics, and,
on a server started with ``--fleet`` only (:meth:`Metrics.watch_fleet`), this
process's part in the fleet (spec section 13, :mod:`relay_trio.fleet`), read
from its :class:`~relay_trio.fleet.Fleet` at scrape time (:class:`FleetCollector`):

=================================  =======  ============================================
``relay_fleet_leader``             gauge    1 while this process leads (polls for all)
``relay_fleet_epoch``              gauge    the newest epoch it has seen (its own, leading)
``relay_fleet_leads_total``        counter  times it took the lease
``relay_fleet_handovers_total``    counter  of those, at once on a leaving leader's word
``relay_fleet_leaves_total``       counter  leads it gave up cleanly (released, announced)
``relay_fleet_relayed_total``      counter  snapshots of another process delivered here
``relay_fleet_ignored_total``      counter  messages of an older epoch (a stale leader's)
=================================  =======  ============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LATENCY_BUCKETS = tuple(0.001 * 3**k for k in range(13))  # 1 ms ... ~531 s
POLL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BROKER_EVENTS = (
    "enqueued",
    "deduplicated",
    "claimed",
    "processed",
    "retried",
    "dead",
    "reaped",
    "promoted",
    "released",
    "dlq_trimmed",
    "cancelled",
    "abort_requested",
)
DEPTH_STATES = ("ready", "inflight", "delayed", "dlq")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FleetStats(Protocol):
    """What :class:`FleetCollector` reads: :class:`relay_trio.fleet.Fleet` has it."""

    @property
    def leading(self) -> bool: ...
    @property
    def newest_epoch(self) -> int: ...
    @property
    def leads(self) -> int: ...
    @property
    def handovers(self) -> int: ...
    @property
    def left(self) -> int: ...
    @property
    def relayed(self) -> int: ...
    @property
    def ignored(self) -> int: ...


class FleetCollector:
    """The ``relay_fleet_*`` metrics (see the module doc) of one process's fleet
    member, read at scrape time: counting costs the fleet nothing."""

    def __init__(self, fleet: FleetStats) -> None:
        self.fleet = fleet

    def describe(self) -> list[Metric]:
        return []  # registered without a scrape

    def collect(self) -> Iterator[Metric]:
        f = self.fleet
        yield GaugeMetricFamily(
            "relay_fleet_leader",
            "1 while this process leads the fleet (polls for all)",
            value=1 if f.leading else 0,
        )
        yield GaugeMetricFamily(
            "relay_fleet_epoch",
            "The newest fleet epoch this process has seen",
            value=f.newest_epoch,
        )
        for name, doc, value in (
            ("leads", "Times this process took the fleet's lease", f.leads),
            ("handovers", "Leads taken at once when the leader left cleanly", f.handovers),
            ("leaves", "Leads this process gave up cleanly (lease released)", f.left),
            ("relayed", "Snapshots of another process delivered here", f.relayed),
            ("ignored", "Fleet messages of an older epoch (a stale leader's)", f.ignored),
        ):
            yield CounterMetricFamily(f"relay_fleet_{name}", doc, value=value)


class JobMetrics:
    """The job metrics of what this process did: ``relay_jobs_<event>_total{queue}``
    for each broker event and ``relay_job_latency_seconds{queue}`` (creation to
    ack, both on Redis's clock). Implements the broker's event hook."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = {
            event: Counter(f"relay_jobs_{event}", f"Jobs {event}", ["queue"], registry=r)
            for event in BROKER_EVENTS
        }
        self.latency = Histogram(
            "relay_job_latency_seconds",
            "Time from job creation to ack (the Redis server's clock)",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    # -- the broker's event hook ---------------------------------------------------

    def count(self, event: str, queue: str, n: int = 1) -> None:
        if n > 0:
            self.jobs[event].labels(queue).inc(n)

    def observe_latency(self, queue: str, seconds: Iterable[float]) -> None:
        histogram = self.latency.labels(queue)
        for value in seconds:
            histogram.observe(max(0.0, value))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Metrics(JobMetrics):
    """Every metric the server exports: the job metrics, the queue depths, the
    hub's and the stream's."""

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.depth = Gauge(
            "relay_queue_depth", "Jobs per queue and state", ["queue", "state"], registry=r
        )
        self.hub_subscribers = Gauge("relay_hub_subscribers", "Open stream subscribers", registry=r)
        self.hub_polls = Counter("relay_hub_polls", "Hub polls of Redis", registry=r)
        self.hub_poll_errors = Counter(
            "relay_hub_poll_errors", "Hub polls that failed and were skipped", registry=r
        )
        self.hub_poll_duration = Histogram(
            "relay_hub_poll_duration_seconds",
            "Duration of one hub poll",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.hub_snapshots_dropped = Counter(
            "relay_hub_snapshots_dropped",
            "Snapshots replaced before a slow subscriber took them",
            registry=r,
        )
        self.hub_clients_dropped = Counter(
            "relay_hub_clients_dropped", "Subscribers dropped for taking no data", registry=r
        )
        self.streams_opened = Counter(
            "relay_streams_opened",
            "Streams opened, by how their events are sent: fast (the broadcaster "
            "writes the socket) or asgi",
            ["path"],
            registry=r,
        )
        self.fast_path_available = Gauge(
            "relay_stream_fast_path_available",
            "1 when the socket fast path can serve streams here (supported Hypercorn and h11)",
            registry=r,
        )
        self.fast_path_streams = Gauge(
            "relay_stream_fast_path_streams", "Open streams the broadcaster writes", registry=r
        )
        self.fast_path_writes = Counter(
            "relay_stream_fast_path_writes",
            "Events the broadcaster wrote straight to a socket, with no task woken",
            registry=r,
        )
        self.fast_path_handovers = Counter(
            "relay_stream_fast_path_handovers",
            "Events left to a stream's own task: its socket could not take them at once",
            registry=r,
        )
        self._depth_queues: set[str] = set()
        self._fleet: FleetCollector | None = None

    def watch_fleet(self, fleet: FleetStats | None) -> None:
        """Export ``fleet``'s ``relay_fleet_*`` metrics from now on (a server with
        ``--fleet``), instead of the fleet watched before; ``None``: none."""
        if self._fleet is not None:
            self.registry.unregister(self._fleet)
            self._fleet = None
        if fleet is not None:
            self._fleet = FleetCollector(fleet)
            self.registry.register(self._fleet)

    # -- from the hub ------------------------------------------------------------

    def hub_event(self, event: str, value: float = 1.0) -> None:
        """The hub's own metrics: subscribers (a level), polls, poll_errors,
        poll_duration (seconds), snapshots_dropped, clients_dropped."""
        if event == "subscribers":
            self.hub_subscribers.set(value)
        elif event == "poll_duration":
            self.hub_poll_duration.observe(value)
        else:
            {
                "polls": self.hub_polls,
                "poll_errors": self.hub_poll_errors,
                "snapshots_dropped": self.hub_snapshots_dropped,
                "clients_dropped": self.hub_clients_dropped,
            }[event].inc(value)

    # -- from the stream and its broadcaster -----------------------------------------

    def stream_opened(self, path: str) -> None:
        self.streams_opened.labels(path).inc()

    def stream_event(self, event: str, value: float = 1.0) -> None:
        """The broadcaster's: fast_path_streams (a level), fast_path_writes,
        fast_path_handovers, and the drops it shares with the hub's counters."""
        if event == "fast_path_streams":
            self.fast_path_streams.set(value)
        else:
            {
                "fast_path_writes": self.fast_path_writes,
                "fast_path_handovers": self.fast_path_handovers,
                "snapshots_dropped": self.hub_snapshots_dropped,
                "clients_dropped": self.hub_clients_dropped,
            }[event].inc(value)

    def set_depths(self, queues: Iterable[Mapping[str, Any]]) -> None:
        """Set the depth gauge from one snapshot; queues gone from it are removed."""
        seen = set()
        for entry in queues:
            name = str(entry["queue"])
            seen.add(name)
            for state in DEPTH_STATES:
                value = entry.get(state, 0)
                self.depth.labels(name, state).set(value if isinstance(value, int) else 0)
        for name in self._depth_queues - seen:
            for state in DEPTH_STATES:
                self.depth.remove(name, state)
        self._depth_queues = seen
