"""docs/grafana-dashboard.json is a Grafana dashboard on metrics relay-trio exports:
every query names only metrics the server or a worker has, and every panel queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from relay_trio import Broker, QueueHandler, Worker
from relay_trio.fleet import Fleet
from relay_trio.fleet_memory import MemoryBus, MemoryLease
from relay_trio.metrics import Metrics
from relay_trio.worker_metrics import WorkerCollector

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def exported() -> set[str]:
    """Every sample name the server's and a worker's /metrics can show."""
    names = set()
    server = Metrics()
    server.watch_fleet(Fleet(MemoryLease(), MemoryBus()))  # a server with --fleet
    for family in text_string_to_metric_families(server.render().decode()):
        names |= {family.name, *(s.name for s in family.samples)}
    worker = Worker(Broker.from_url("redis://127.0.0.1:1/0"), [QueueHandler("q", print)])
    for metric in WorkerCollector(worker).collect():
        names |= {metric.name, *(s.name for s in metric.samples)}
    return names


def queries(dashboard: dict[str, object]) -> list[str]:
    panels = dashboard["panels"]
    assert isinstance(panels, list) and panels
    out = []
    for panel in panels:
        targets = panel["targets"]
        assert targets, panel["title"]
        out += [t["expr"] for t in targets]
    return out


def test_every_query_names_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    used = set()
    for expr in queries(dashboard):
        assert expr.count("(") == expr.count(")"), expr
        used |= set(re.findall(r"\brelay_[a-z_]+", expr))
    assert used, "no relay_ metric in any query"
    unknown = {
        name
        for name in used
        if name not in names and not any(name.removesuffix(s) in names for s in SUFFIXES)
    }
    assert unknown == set()
    # what the issue asks the dashboard to show
    for wanted in ("relay_queue_depth", "relay_jobs_processed_total", "relay_jobs_retried_total"):
        assert wanted in used
    assert {"relay_job_latency_seconds_bucket", "relay_jobs_dead_total"} <= used
    assert any(name.startswith("relay_worker_") for name in used)
    assert {"relay_fleet_leader", "relay_fleet_relayed_total"} <= used


def test_the_queue_variable_comes_from_the_depth_gauge() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["queue"]["definition"] == "label_values(relay_queue_depth, queue)"
    assert variables["datasource"]["query"] == "prometheus"
