"""Broker throughput from one Python process: a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_broker.py [--jobs N] [--repeat R] [--write]

Starts a private redis-server on 127.0.0.1 (TCP, like a real deployment on the
same host) unless ``RELAY_BENCH_REDIS_URL`` is set, then measures, each as the
median of ``--repeat`` runs:

* bulk enqueue: ``enqueue_many`` in batches of 1 000 and 10 000 jobs;
* claim+ack one job per call (``claim(n=1)`` then ``ack``): two round trips a job;
* claim+ack batched: ``claim(n=B)`` then ``ack_many`` for B in 10, 100, 500;
* the same at 500 per call with no result kept (``result_ttl_s=0``: the job is
  deleted at ack, as before issue 11; the other cases keep each done job, with a
  None result, for the default 24 h).

Jobs are no-ops with a 16-byte payload. ``--write`` replaces the broker
section of docs/benchmarks.md with the results and the command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import redis
import trio
from benchdoc import DOC, write_section  # a sibling script, not a package

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support: the cluster
from support.cluster import local_cluster

from relay_trio.broker import Broker, open_broker
from relay_trio.embedded import embedded_redis

BEGIN, END = "<!-- bench-broker:begin -->", "<!-- bench-broker:end -->"
PAYLOAD = b"0123456789abcdef"


async def fill(broker: Broker, queue: str, jobs: int, batch: int = 5000) -> None:
    for start in range(0, jobs, batch):
        count = min(batch, jobs - start)
        await broker.enqueue_many(queue, [broker.spec(PAYLOAD) for _ in range(count)])


async def bench_enqueue(broker: Broker, queue: str, jobs: int, batch: int) -> float:
    specs = [broker.spec(PAYLOAD) for _ in range(jobs)]  # validation is part of the cost
    began = time.perf_counter()
    for start in range(0, jobs, batch):
        await broker.enqueue_many(queue, specs[start : start + batch])
    elapsed = time.perf_counter() - began
    assert (await broker.stats(queue)).ready == jobs
    return jobs / elapsed


async def bench_claim_ack(
    broker: Broker, queue: str, jobs: int, batch: int, *, keep_results: bool = True
) -> float:
    if not keep_results:
        broker = Broker(broker.io, prefix=broker.keys.prefix, result_ttl_s=0)
    await fill(broker, queue, jobs)
    done = 0
    began = time.perf_counter()
    while done < jobs:
        claim = await broker.claim(queue, batch)
        if batch == 1:
            acked = [await broker.ack(claim.jobs[0])]
        else:
            acked = await broker.ack_many(claim.jobs)
        done += sum(acked)
    elapsed = time.perf_counter() - began
    stats = await broker.stats(queue)
    assert stats.processed_total == jobs and stats.ready == stats.inflight == 0, stats
    return jobs / elapsed


async def median_of(
    repeat: int, url: str, run: Callable[[Broker, str], Awaitable[float]]
) -> tuple[float, list[float]]:
    rates = []
    for i in range(repeat):
        prefix = f"bench{i}-{time.time_ns()}"
        async with open_broker(url, prefix=prefix) as broker:
            rates.append(await run(broker, "bench"))
        wipe(url, prefix)
    return statistics.median(rates), rates


def wipe(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=prefix + ":*", count=5000):
        client.unlink(key)
    client.close()


async def run_all(url: str, jobs: int, repeat: int) -> list[tuple[str, float, list[float]]]:
    cases: list[tuple[str, Callable[[Broker, str], Awaitable[float]]]] = [
        ("enqueue_many, batches of 1 000", lambda b, q: bench_enqueue(b, q, jobs, 1000)),
        ("enqueue_many, batches of 10 000", lambda b, q: bench_enqueue(b, q, jobs, 10_000)),
        ("claim+ack, 1 job per call", lambda b, q: bench_claim_ack(b, q, min(jobs, 20_000), 1)),
        ("claim+ack_many, 10 per call", lambda b, q: bench_claim_ack(b, q, jobs, 10)),
        ("claim+ack_many, 100 per call", lambda b, q: bench_claim_ack(b, q, jobs, 100)),
        ("claim+ack_many, 500 per call", lambda b, q: bench_claim_ack(b, q, jobs, 500)),
        (
            "claim+ack_many, 500 per call, result_ttl 0",
            lambda b, q: bench_claim_ack(b, q, jobs, 500, keep_results=False),
        ),
    ]
    results = []
    for name, run in cases:
        median, rates = await median_of(repeat, url, run)
        print(f"{name:36} {median:>10,.0f} jobs/s   runs: {', '.join(f'{r:,.0f}' for r in rates)}")
        results.append((name, median, rates))
    return results


def report(
    results: list[tuple[str, float, list[float]]], url: str, args: argparse.Namespace
) -> str:
    info = redis.Redis.from_url(url).info("server")
    lines = [
        BEGIN,
        "## Broker throughput (issue: Core engine)",
        "",
        "Command: `.venv/bin/python tests/benchmarks/bench_broker.py "
        f"--jobs {args.jobs} --repeat {args.repeat} --write`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Redis {info['redis_version']} on the same host "
        "over TCP loopback, one Python process, no-op jobs with a 16-byte payload. "
        f"Each figure is the median of {args.repeat} runs of {args.jobs:,} jobs "
        "(20 000 for the one-job-per-call case).",
        "",
        "| operation | jobs/s (median) | runs |",
        "|---|---:|---|",
    ]
    for name, median, rates in results:
        lines.append(f"| {name} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |")
    lines += [
        "",
        "Goals: ≥ 10 000 jobs/s claimed+acked with batching, ≥ 30 000 jobs/s bulk enqueue.",
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cluster", action="store_true", help="also on a 3-master cluster")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    given = os.environ.get("RELAY_BENCH_REDIS_URL")
    with contextlib.nullcontext(given) if given else embedded_redis() as url:
        results = trio.run(run_all, url, args.jobs, args.repeat)
        section = report(results, url, args)
    if args.cluster:
        with local_cluster() as cluster:
            print(f"-- on a Redis Cluster of three masters ({cluster.url})")
            on_cluster = trio.run(run_all, cluster.url, args.jobs, args.repeat)
        section = cluster_report(section, results, on_cluster)
    if args.write:
        write_section(BEGIN, END, section)
        print(f"wrote {DOC}")
    return 0


def cluster_report(
    section: str,
    single: list[tuple[str, float, list[float]]],
    cluster: list[tuple[str, float, list[float]]],
) -> str:
    """The section with a table of the same cases on the cluster beside one node."""
    lines = [
        "",
        "The same, in the same run, on a Redis Cluster of three masters on this host",
        "(`--cluster`: started from the test suite's support code, slots split in three; the",
        "benchmark's one queue lives on one node, the registry maybe on another):",
        "",
        "| operation | one node, jobs/s | cluster, jobs/s | cluster / one node |",
        "|---|---:|---:|---:|",
    ]
    for (name, one, _), (_, many, _) in zip(single, cluster, strict=True):
        lines.append(f"| {name} | {one:,.0f} | {many:,.0f} | {many / one:.0%} |")
    head, end = section.rsplit(END, 1)
    return head.rstrip("\n") + "\n" + "\n".join(lines) + "\n" + END + end


if __name__ == "__main__":
    sys.exit(main())
