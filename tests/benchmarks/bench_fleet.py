"""Redis load of N server processes on one Redis, with and without the fleet poll:
a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_fleet.py [--clients C] [--seconds S] [--write]

Starts a private redis-server and registers ``--queues`` queues (one job each),
then for each mode (``--fleet`` on, then off) and N in 1, 3, 6: N real server
processes (``relay-trio server --port 0 --poll-interval 1``, ``RELAY_FLEET``
set accordingly) on one Redis and one prefix, each with C SSE clients streaming
``/api/stream`` (``sse_clients.EpollSSEClients``, one thread in this process per
server's pool); once every client has had an event, Redis commands per second
are counted (``INFO stats``) over ``--seconds``. Goal (issue 13): with the fleet
poll, 6 processes cost at most 1.2x what 1 costs (without it: about 6x).
``--write`` replaces this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

import trio
from bench_hub_load import (  # a sibling script, not a package
    Commands,
    ServerProcess,
    machine_facts,
    queue_name,
    raise_nofile,
)
from benchdoc import write_section
from sse_clients import EpollSSEClients

from relay_trio.broker import open_broker
from relay_trio.embedded import embedded_redis

BEGIN, END = "<!-- bench-fleet:begin -->", "<!-- bench-fleet:end -->"
PREFIX = "bench-fleet"
COUNTS = (1, 3, 6)


async def measure(url: str, processes: int, fleet: bool, args: argparse.Namespace) -> float:
    env = {"RELAY_FLEET": "1" if fleet else "0"}
    servers = [ServerProcess(url, prefix=PREFIX, env=env) for _ in range(processes)]
    try:
        for server in servers:
            server.start()
        counter = Commands(url)
        async with trio.open_nursery() as nursery:
            pools = [EpollSSEClients(s.host, s.port, nursery) for s in servers]
            for pool in pools:
                await pool.grow_to(args.clients)
            for pool in pools:
                await pool.next_tick()  # every client of every process is live
            await trio.sleep(2)  # the fleet settles (one leader)
            c0, t0 = await counter.read()
            await trio.sleep(args.seconds)
            c1, t1 = await counter.read()
            nursery.cancel_scope.cancel()
        counter.close()
        return (c1 - c0 - counter.overhead) / (t1 - t0)
    finally:
        for server in servers:
            server.stop()


async def run_all(url: str, args: argparse.Namespace) -> dict[tuple[bool, int], float]:
    async with open_broker(url, prefix=PREFIX) as broker:
        for i in range(args.queues):
            await broker.enqueue(queue_name(i), f"job {i}")
    rates = {}
    for fleet in (True, False):
        for n in COUNTS:
            rate = await measure(url, n, fleet, args)
            rates[(fleet, n)] = rate
            mode = "fleet" if fleet else "each polls"
            print(f"{mode:10} {n} processes x {args.clients} clients: {rate:8.1f} commands/s")
    return rates


def report(rates: dict[tuple[bool, int], float], facts: str, args: argparse.Namespace) -> str:
    lines = [
        BEGIN,
        "## One poller per fleet (issue 13)",
        "",
        "Command: `.venv/bin/python tests/benchmarks/bench_fleet.py "
        f"--clients {args.clients} --queues {args.queues} --seconds {args.seconds:g} --write`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {facts}. N server processes on one Redis "
        f"and one prefix, poll interval 1 s, {args.queues} queues, {args.clients} stream clients "
        f"per process; Redis commands per second over {args.seconds:g} s once every client "
        "was live (INFO stats; the counter's own INFO calls subtracted).",
        "",
        "| mode | 1 process | 3 processes | 6 processes | 6 / 1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for fleet in (True, False):
        row = [rates[(fleet, n)] for n in COUNTS]
        mode = "fleet poll (`--fleet`)" if fleet else "each process polls"
        cells = " | ".join(f"{r:,.1f}" for r in row)
        lines.append(f"| {mode} | {cells} | {row[2] / row[0]:.2f} |")
    lines += ["", "Goal: 6 processes / 1 process ≤ 1.2 with the fleet poll.", END]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="stream clients per process")
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    raise_nofile()
    with embedded_redis() as url:
        began = time.monotonic()
        rates = trio.run(run_all, url, args)
        section = report(rates, machine_facts(url), args)
        print(f"({time.monotonic() - began:.0f} s)")
    print(section)
    if args.write:
        write_section(BEGIN, END, section)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
