"""Prometheus metrics: reference names (spec section 8), fed by a real broker."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families
from support.servers import running_server
from support.sse import Events, is_data

from relay_trio.broker import Broker
from relay_trio.metrics import LATENCY_BUCKETS, Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_reference_name_is_exported() -> None:
    text = Metrics().render().decode()
    for event in ("enqueued", "deduplicated", "claimed", "processed", "retried", "dead"):
        assert f"# TYPE relay_jobs_{event}_total counter" in text
    for event in ("reaped", "promoted"):
        assert f"# TYPE relay_jobs_{event}_total counter" in text
    assert "# TYPE relay_job_latency_seconds histogram" in text
    assert "# TYPE relay_queue_depth gauge" in text
    for name in (
        "relay_hub_subscribers",
        "relay_hub_polls_total",
        "relay_hub_poll_errors_total",
        "relay_hub_poll_duration_seconds",
        "relay_hub_snapshots_dropped_total",
        "relay_hub_clients_dropped_total",
        "relay_streams_opened_total",
        "relay_stream_fast_path_available",
        "relay_stream_fast_path_streams",
        "relay_stream_fast_path_writes_total",
        "relay_stream_fast_path_handovers_total",
    ):
        assert name in text


def test_latency_buckets_are_1ms_times_3_up_to_531s() -> None:
    assert LATENCY_BUCKETS[0] == 0.001
    assert all(abs(b / a - 3) < 1e-9 for a, b in itertools.pairwise(LATENCY_BUCKETS))
    assert 531 < LATENCY_BUCKETS[-1] < 532


async def test_broker_operations_count(broker: Broker) -> None:
    metrics = Metrics()
    b = Broker(broker.io, prefix=broker.keys.prefix, events=metrics, backoff_base_ms=1)
    await b.enqueue("m", "a", idempotency_key="k", max_retries=1)
    await b.enqueue("m", "a", idempotency_key="k")
    await b.enqueue_many("m", [b.spec("x", max_retries=5) for _ in range(3)])
    jobs = (await b.claim("m", 4)).jobs
    assert len(jobs) == 4
    dead_one = next(j for j in jobs if j.max_retries == 1)
    others = [j for j in jobs if j is not dead_one]
    await b.ack_many(others[:2])
    retry_one = others[2]
    await b.nack(retry_one, "boom")
    await b.nack(dead_one, "boom")
    await trio.sleep(0.05)
    await b.promote("m")
    last = (await b.claim("m", 1, visibility_ms=1)).jobs
    await trio.sleep(0.05)
    await b.reap("m")
    got = samples(metrics)
    q = (("queue", "m"),)
    assert got[("relay_jobs_enqueued_total", q)] == 4
    assert got[("relay_jobs_deduplicated_total", q)] == 1
    assert got[("relay_jobs_claimed_total", q)] == 4 + len(last)
    assert got[("relay_jobs_processed_total", q)] == 2
    assert got[("relay_jobs_retried_total", q)] == 1
    assert got[("relay_jobs_dead_total", q)] == 1
    assert got[("relay_jobs_promoted_total", q)] == 1
    assert got[("relay_jobs_reaped_total", q)] == len(last) == 1
    assert got[("relay_job_latency_seconds_count", q)] == 2


def test_queue_depth_follows_snapshots() -> None:
    metrics = Metrics()
    entry = {"queue": "a", "ready": 3, "inflight": 1, "delayed": 0, "dlq": 2}
    metrics.set_depths([entry, {**entry, "queue": "b"}])
    got = samples(metrics)
    assert got[("relay_queue_depth", (("queue", "a"), ("state", "ready")))] == 3
    assert got[("relay_queue_depth", (("queue", "b"), ("state", "dlq")))] == 2
    metrics.set_depths([entry])  # b is gone from the registry: its series go too
    got = samples(metrics)
    assert ("relay_queue_depth", (("queue", "b"), ("state", "dlq"))) not in got
    assert got[("relay_queue_depth", (("queue", "a"), ("state", "inflight")))] == 1


async def test_the_server_sets_queue_depths_from_each_snapshot(
    redis_server: Any, prefix: str, broker: Broker
) -> None:
    """The depth gauge follows the snapshots the server's hub takes (the app's
    snapshot source sets it; the generic hub knows nothing of it)."""
    await broker.enqueue_many("deep", [broker.spec("x") for _ in range(4)])
    await broker.enqueue("deep", "later", delay_ms=60_000)
    async with (
        running_server(redis_server.url, prefix) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url + "/api/stream") as response,
    ):
        await Events(response).take(1, is_data)
        got = samples(server.state.metrics)
        assert got[("relay_queue_depth", (("queue", "deep"), ("state", "ready")))] == 4
        assert got[("relay_queue_depth", (("queue", "deep"), ("state", "delayed")))] == 1


async def test_cancels_and_aborts_are_counted(broker: Broker) -> None:
    metrics = Metrics()
    b = Broker(broker.io, prefix=broker.keys.prefix, events=metrics)
    queued = (await b.enqueue("m", "queued")).id
    running = (await b.enqueue("m", "running")).id
    gone = (await b.enqueue("m", "worker gone")).id
    await b.cancel("m", queued)
    jobs = {j.id: j for j in (await b.claim("m", 2, visibility_ms=1)).jobs}
    await b.cancel("m", running)
    await b.cancel("m", gone)
    assert await b.finish_abort(jobs[running])
    await trio.sleep(0.05)
    await b.reap("m")  # the worker of the other one is gone: the reaper cancels it
    got = samples(metrics)
    q = (("queue", "m"),)
    assert got[("relay_jobs_cancelled_total", q)] == 3
    assert got[("relay_jobs_abort_requested_total", q)] == 2
