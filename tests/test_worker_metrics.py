"""A worker's ``/metrics`` (spec sections 8 and 12, issue 12 item 1).

A real ``relay-trio worker --metrics-port 0`` process runs N jobs and is scraped over
HTTP: exactly N processed and N latencies, its own metrics, 404 for another path;
a busy port is one line and exit status 1. In process: the latency is measured on
Redis's clock (a local clock an hour off changes nothing), and the responder's
answers to odd requests.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from support import eventually, running_worker
from support.cli import TESTS_DIR, Cli, clean_env, running

from relay_trio import Broker, Job, QueueHandler
from relay_trio.metrics import JobMetrics
from relay_trio.worker_metrics import (
    WorkerCollector,
    answer,
    metrics_url,
    open_listeners,
    serve_metrics,
)

Q = "metered"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def queue_label(queue: str = Q) -> tuple[tuple[str, str], ...]:
    return (("queue", queue),)


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


@asynccontextmanager
async def worker_process(cli: Cli, tmp_path: Path, *args: str) -> AsyncIterator[tuple[Any, str]]:
    """A ``relay-trio worker --metrics-port 0`` process and its metrics URL; SIGTERM
    at the end, which must exit 0."""
    argv = cli.argv("worker", "--queue", Q, "--metrics-port", "0", *args)
    async with running(argv, tmp_path, merged=True) as process:

        def url() -> str | None:
            assert process.proc.poll() is None, process.out()
            found = re.search(r"metrics on (http://\S+/metrics)", process.out())
            return found[1] if found else None

        yield process.proc, await eventually(url, within=15)
    assert process.proc.returncode == 0, process.out()


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def test_a_worker_process_exports_exactly_what_it_did(
    cli: Cli, broker: Broker, tmp_path: Path
) -> None:
    n = 37
    args = ("--handler", "demo", "--demo-fail-rate", "0", "--demo-sleep-ms", "1")
    async with worker_process(cli, tmp_path, *args) as (_, url):
        assert url.startswith("http://127.0.0.1:")
        await broker.enqueue_many(Q, [broker.spec(f"j{i}") for i in range(n)])

        async def processed() -> bool:
            return (await broker.stats(Q)).processed_total == n

        await eventually(processed, within=20)

        async def all_counted() -> Samples | None:  # the finisher's ack batch has returned
            got = await scrape(url)
            return got if got.get(("relay_jobs_processed_total", queue_label())) == n else None

        got = await eventually(all_counted)
        assert got[("relay_jobs_claimed_total", queue_label())] == n
        assert got[("relay_job_latency_seconds_count", queue_label())] == n
        assert 0 < got[("relay_job_latency_seconds_sum", queue_label())] < 60 * n
        assert ("relay_jobs_retried_total", queue_label()) not in got  # nothing failed
        assert got[("relay_worker_running_jobs", queue_label())] == 0
        assert got[("relay_worker_concurrency", queue_label())] == 10
        assert got[("relay_worker_claims_total", queue_label())] >= 1
        assert got[("relay_worker_attempts_total", (("outcome", "succeeded"),))] == n
        assert got[("relay_worker_heartbeat_failures_total", (("kind", "lease"),))] == 0
        assert got[("relay_worker_heartbeat_failures_total", (("kind", "presence"),))] == 0
        (info,) = [key for key in got if key[0] == "relay_worker_info"]
        labels = dict(info[1])
        assert labels["id"] in {w.id for w in await broker.workers()}
        assert labels["host"] == socket.gethostname() and labels["version"]
        assert "relay_hub_polls_total" not in {key[0] for key in got}  # the server's only

        async with httpx.AsyncClient(timeout=10) as http:
            base = url.removesuffix("/metrics")
            missing = await http.get(base + "/")
            assert missing.status_code == 404
            assert (await http.get(base + "/metrics/x")).status_code == 404
            posted = await http.post(url, content=b"x")
            assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
            head = await http.head(url)
            assert head.status_code == 200 and head.content == b""
            with_query = await http.get(url + "?name[]=relay_jobs_processed_total")
            assert with_query.status_code == 200

        garbage = await raw_request(url, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        # the worker is unharmed and still serves
        assert (await scrape(url))[("relay_jobs_processed_total", queue_label())] == n


async def raw_request(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(data)
        reply = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                reply += chunk
    return reply


async def test_a_busy_metrics_port_exits_1_with_one_line(cli: Cli) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = await cli("worker", "--queue", Q, "--metrics-port", str(port))
    assert result.code == 1, result.err
    (line,) = result.err.splitlines()
    assert line.startswith(f"relay-trio: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in line.lower()
    assert "worker stopped" not in result.out  # it never ran


async def test_metrics_are_off_unless_asked_and_a_bad_port_is_refused(
    cli: Cli, tmp_path: Path
) -> None:
    off = await cli.raw(
        "--redis-url", cli.url, "worker", "--queue", Q, "--metrics-port", "nope",
    )  # fmt: skip
    assert off.code == 2
    assert "argument --metrics-port: not a whole number" in off.err
    env = clean_env(RELAY_METRICS_PORT="off", RELAY_REDIS_URL=cli.url, RELAY_PREFIX=cli.prefix)
    argv = [sys.executable, "-m", "relay_trio.cli", "worker", "--queue", Q]
    with (tmp_path / "out").open("wb") as out_f, (tmp_path / "err").open("wb") as err_f:
        with trio.move_on_after(3):  # then SIGTERM: a worker with metrics off runs, no URL
            await trio.run_process(
                argv, env=env, cwd=TESTS_DIR.parent, stdout=out_f, stderr=err_f, check=False
            )
    out = (tmp_path / "out").read_text()
    assert "worker on metered" in out, (tmp_path / "err").read_text()
    assert "metrics on" not in out


# -- in process -------------------------------------------------------------------------


async def test_latency_is_measured_on_redis_s_clock(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """created_at is Redis's time at enqueue and the ack script returns Redis's time:
    this host's clock an hour ahead changes nothing."""
    metrics = JobMetrics()
    b = Broker(broker.io, prefix=broker.keys.prefix, events=metrics)
    await b.enqueue_many("lat", [b.spec("x") for _ in range(3)])
    await b.enqueue("other", "y")
    jobs = (await b.claim("lat", 3)).jobs + (await b.claim("other", 1)).jobs
    await trio.sleep(0.05)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert await b.ack_many([*jobs, jobs[0]]) == [True, True, True, True, False]
    got = parse(metrics.render().decode())
    assert got[("relay_job_latency_seconds_count", queue_label("lat"))] == 3
    assert got[("relay_job_latency_seconds_count", queue_label("other"))] == 1
    total = got[("relay_job_latency_seconds_sum", queue_label("lat"))]
    assert 3 * 0.05 <= total < 3 * 5, total  # about 50 ms each, not an hour
    assert got[("relay_job_latency_seconds_bucket", (("le", "0.027"), ("queue", "lat")))] == 0
    assert got[("relay_job_latency_seconds_bucket", (("le", "2.187"), ("queue", "lat")))] == 3


async def test_an_in_process_worker_serves_its_metrics(broker: Broker) -> None:
    """The library's way (what the command does): a JobMetrics as the broker's
    events, the worker's collector, serve_metrics on listeners of one's own."""
    metrics = JobMetrics()
    b = Broker(broker.io, prefix=broker.keys.prefix, events=metrics)
    release = trio.Event()

    async def handler(job: Job) -> None:
        await release.wait()

    listeners = await open_listeners("127.0.0.1", 0)
    async with running_worker(b, [QueueHandler(Q, handler, concurrency=3)]) as worker:
        metrics.registry.register(WorkerCollector(worker))
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_metrics, listeners, metrics.render)
            url = metrics_url(listeners)
            await b.enqueue_many(Q, [b.spec(str(i)) for i in range(5)])

            async def three_running() -> Samples | None:
                got = await scrape(url)
                return got if got[("relay_worker_running_jobs", queue_label())] == 3 else None

            got = await eventually(three_running)
            assert got[("relay_jobs_claimed_total", queue_label())] == 3
            release.set()

            async def all_done() -> bool:
                got = await scrape(url)
                return got.get(("relay_jobs_processed_total", queue_label())) == 5

            await eventually(all_done)
            nursery.cancel_scope.cancel()


def test_the_responder_answers_odd_requests() -> None:
    def render() -> bytes:
        return b"# metrics\n"

    ok = answer(b"GET /metrics HTTP/1.1\r\nHost: x", render)
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b"\r\n\r\n# metrics\n")
    assert b"Content-Length: 10\r\n" in ok and b"Connection: close\r\n" in ok
    assert answer(b"HEAD /metrics HTTP/1.0", render).endswith(b"\r\n\r\n")
    assert answer(b"GET /other HTTP/1.1", render).startswith(b"HTTP/1.1 404 ")
    assert answer(b"DELETE /metrics HTTP/1.1", render).startswith(b"HTTP/1.1 405 ")
    for bad in (b"", b"GET", b"GET /metrics", b"GET /metrics SPDY/3", b"G\x00T /metrics HTTP/1.1"):
        assert answer(bad, render).startswith(b"HTTP/1.1 400 "), bad


async def test_a_slow_or_silent_client_does_not_block_others(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners = await open_listeners("127.0.0.1", 0)
    url = metrics_url(listeners)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_metrics, listeners, JobMetrics().render)
        silent = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        half = await trio.open_tcp_stream("127.0.0.1", listeners[0].socket.getsockname()[1])
        await half.send_all(b"GET /metr")
        huge = await raw_request(url, b"GET /" + b"x" * 20_000 + b" HTTP/1.1\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 400 ")
        assert "relay_jobs_processed_total" not in {k[0] for k in await scrape(url)}
        await silent.aclose()
        await half.aclose()
        nursery.cancel_scope.cancel()
