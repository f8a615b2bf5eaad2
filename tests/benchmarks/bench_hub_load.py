"""Redis load of the hub versus per-connection polling: a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_hub_load.py [--quick] [--write]

Starts a private redis-server (TCP on 127.0.0.1) and the real server as a
subprocess (``python -m relay_trio.cli ... server --port 0 --poll-interval 1``),
registers Q queues (one job each) and then, for each Q and each client count C:

* **hub**: C SSE clients (``sse_clients.EpollSSEClients``: one thread, epoll,
  non-blocking sockets, in this process) stream
  ``/api/stream``; once every client has had an event, Redis commands are
  counted (``INFO stats`` ``total_commands_processed``; the INFO calls
  themselves subtracted) over a window of whole hub ticks;
* **naive**: no client on the server (its hub is idle); instead C pollers in
  this process each take one full ``Broker.snapshot()`` per interval, the
  way a dashboard tab polling on its own would. "demand" is what they would
  send if nothing saturated: ``C x (1 + 7 Q)`` commands per interval.

Then a tick's cost with 0 and 1 000 000 unrelated keys in Redis (``DEBUG
POPULATE`` when allowed, else pipelined MSETs): commands per tick, the server's
mean poll duration (``relay_hub_poll_duration_seconds`` sum/count) and
``Broker.snapshot()`` timed directly from this process.

``--write`` replaces this benchmark's section of docs/benchmarks.md.
The helpers here (server subprocess, SSE client, /metrics) are shared with
``bench_fanout.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import DOC, write_section  # a sibling script, not a package
from sse_clients import EpollSSEClients  # a sibling script, not a package

from relay_trio.broker import Broker, open_broker
from relay_trio.embedded import _pdeathsig_preexec, embedded_redis

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- bench-hub-load:begin -->", "<!-- bench-hub-load:end -->"
PREFIX = "benchhub"
READY_RE = re.compile(r"relay-trio server on http://([0-9.]+):(\d+)")
JUNK_KEYS = 1_000_000


# -- shared helpers (also used by bench_fanout.py) ------------------------------------


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


class ServerProcess:
    """``python -m relay_trio.cli ... server --port 0`` as a child process.

    ``python_args`` replaces ``["-m", "relay_trio.cli"]`` (a wrapper that calls
    :func:`relay_trio.cli.main` with the same arguments, say). Output goes to a
    temporary log; :meth:`stop` sends SIGTERM, then SIGKILL, and always reaps.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = PREFIX,
        poll_interval: float = 1.0,
        python_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.args = [sys.executable, *(python_args or ["-m", "relay_trio.cli"])]
        self.args += ["--redis-url", redis_url, "--prefix", prefix, "server"]
        self.args += ["--host", "127.0.0.1", "--port", "0", "--poll-interval", f"{poll_interval:g}"]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.host, self.port = "127.0.0.1", 0
        self._dir = Path(tempfile.mkdtemp(prefix="relay-bench-server-"))
        self.log = self._dir / "server.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def start(self) -> ServerProcess:
        with open(self.log, "wb") as log:  # the child keeps its own copy of the fd
            self.process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            found = READY_RE.search(self.log.read_text(errors="replace"))
            if found:
                self.host, self.port = found[1], int(found[2])
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the server did not come up; its log:\n{tail}")

    def stop(self) -> None:
        proc = self.process
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole server process (all threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def http_get(host: str, port: int, path: str) -> bytes:
    """The body of a small ``GET`` (``Connection: close``), within 10 s."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode())
            chunks = []
            while data := await stream.receive_some(65536):
                chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"GET {path}: {head.splitlines()[0]!r}")
    return body


async def server_metrics(host: str, port: int) -> dict[str, float]:
    """The samples of the server's ``/metrics``: name -> value; a labelled sample
    is keyed as exported, labels included (``relay_streams_opened_total{path="fast"}``)."""
    values = {}
    for line in (await http_get(host, port, "/metrics")).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def machine_facts(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        version = client.info("server")["redis_version"]
    finally:
        client.close()
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, Redis {version} "
        "on the same host over TCP loopback"
    )


# -- this benchmark --------------------------------------------------------------------


class Commands:
    """``total_commands_processed`` of one Redis, minus this counter's own INFO calls."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.overhead = 0
        first, second = self._raw(), self._raw()
        self.overhead = second - first  # what one INFO adds to the next reading

    def _raw(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    async def read(self) -> tuple[int, float]:
        """(counter, trio time) — the reading of the previous INFO call already
        includes that call, so callers subtract :attr:`overhead` per interval."""
        value = await trio.to_thread.run_sync(self._raw)
        return value, trio.current_time()

    def close(self) -> None:
        self.client.close()


def queue_name(i: int) -> str:
    return f"q{i:03d}"


async def set_queues(broker: Broker, client: redis.Redis, count: int, created: set[int]) -> None:
    """Exactly ``count`` queues in the registry, each created with one job."""
    for i in range(count):
        if i not in created:
            await broker.enqueue(queue_name(i), f"job {i}")
            created.add(i)
    registry = broker.keys.registry
    wanted = [queue_name(i) for i in range(count)]
    extra = [queue_name(i) for i in created if i >= count]
    await trio.to_thread.run_sync(lambda: client.sadd(registry, *wanted))
    if extra:
        await trio.to_thread.run_sync(lambda: client.srem(registry, *extra))
    members = await trio.to_thread.run_sync(lambda: client.scard(registry))
    assert members == count, (members, count)


@dataclass
class HubRow:
    queues: int
    clients: int
    ticks: int
    commands: int
    seconds: float
    server_cpu: float
    naive_commands: int = 0
    naive_seconds: float = 0.0
    naive_polls: int = 0

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    @property
    def per_tick(self) -> float:
        return self.commands / self.ticks

    @property
    def naive_rate(self) -> float:
        return self.naive_commands / self.naive_seconds

    def demand(self, interval: float) -> float:
        return self.clients * (1 + 7 * self.queues) / interval


async def measure_hub(
    pool: EpollSSEClients, counter: Commands, server: ServerProcess, ticks: int, interval: float
) -> tuple[int, int, float, float]:
    """Commands, hub polls, seconds and server CPU share over ``ticks`` whole ticks.

    Both readings are taken half an interval after a snapshot arrived, when no
    poll is in flight, so the window holds exactly the polls in between. The
    seconds are the server's own: from the ``ts`` of the snapshot before the
    window to that of its last one (this process's wall time if a snapshot
    was missed), so a late wake-up here does not skew the rate."""
    first = await pool.next_tick()
    await trio.sleep(interval / 2)
    polls0 = (await server_metrics(server.host, server.port))["relay_hub_polls_total"]
    c0, t0 = await counter.read()
    cpu0 = server.cpu_seconds()
    await pool.wait_seq(pool.seq + ticks)
    await trio.sleep(interval / 2)
    c1, t1 = await counter.read()
    cpu1 = server.cpu_seconds()
    last = pool.seq
    polls1 = (await server_metrics(server.host, server.port))["relay_hub_polls_total"]
    polls = round(polls1 - polls0)
    seconds = t1 - t0
    if first in pool.ts_of and last in pool.ts_of and last - first == polls:
        seconds = (pool.ts_of[last] - pool.ts_of[first]) / 1000
    return c1 - c0 - counter.overhead, polls, seconds, (cpu1 - cpu0) / (t1 - t0)


async def measure_naive(
    url: str, clients: int, interval: float, intervals: int, counter: Commands
) -> tuple[int, float, int]:
    """Commands, seconds and snapshots taken by ``clients`` independent pollers.

    Poller i polls at ``start + i/clients + k`` intervals (late ones catch up back
    to back); the window spans ``intervals`` whole intervals and its edges fall
    half-way between two pollers' turns."""
    polls = 0

    async def poller(broker: Broker, first: float) -> None:
        nonlocal polls
        due = first
        while True:
            await trio.sleep_until(due)
            await broker.snapshot()
            polls += 1
            due += interval

    async with (
        open_broker(url, prefix=PREFIX, max_connections=min(clients, 32)) as broker,
        trio.open_nursery() as nursery,
    ):
        start = trio.current_time() + 0.1
        for i in range(clients):
            nursery.start_soon(poller, broker, start + interval * i / clients)
        edge = start + 2 * interval + interval / (2 * clients)  # after a settling spell
        await trio.sleep_until(edge)
        c0, t0 = await counter.read()
        p0 = polls
        await trio.sleep_until(edge + intervals * interval)
        c1, t1 = await counter.read()
        p1 = polls
        nursery.cancel_scope.cancel()
    return c1 - c0 - counter.overhead, t1 - t0, p1 - p0


async def wait_idle(counter: Commands, server: ServerProcess) -> float:
    """Wait (up to 15 s) until the server has no subscriber; return Redis commands/s
    over the next 1.5 s."""
    for _ in range(150):
        if (await server_metrics(server.host, server.port))["relay_hub_subscribers"] == 0:
            break
        await trio.sleep(0.1)
    else:
        raise RuntimeError("the server still has subscribers 15 s after they left")
    await trio.sleep(0.5)
    c0, t0 = await counter.read()
    await trio.sleep(1.5)
    c1, t1 = await counter.read()
    return (c1 - c0 - counter.overhead) / (t1 - t0)


@dataclass
class TickCost:
    queues: int
    junk: int
    per_tick: float
    poll_ms: float
    direct_median_ms: float
    direct_p90_ms: float


async def measure_tick_cost(
    broker: Broker,
    server: ServerProcess,
    counter: Commands,
    queues: int,
    junk: int,
    args: argparse.Namespace,
) -> TickCost:
    async with trio.open_nursery() as nursery:
        pool = EpollSSEClients(server.host, server.port, nursery)
        await pool.grow_to(1)
        await pool.next_tick()  # skip the seeded snapshot
        m0 = await server_metrics(server.host, server.port)
        commands, polls, _, _ = await measure_hub(
            pool, counter, server, args.tick_window, args.interval
        )
        m1 = await server_metrics(server.host, server.port)
        nursery.cancel_scope.cancel()
    name = "relay_hub_poll_duration_seconds"
    poll_s = (m1[name + "_sum"] - m0[name + "_sum"]) / (m1[name + "_count"] - m0[name + "_count"])
    times = []
    for _ in range(args.direct_samples):
        began = time.perf_counter()
        entries = await broker.snapshot()
        times.append((time.perf_counter() - began) * 1000)
        assert len(entries) == queues
    times.sort()
    return TickCost(
        queues,
        junk,
        commands / polls,
        poll_s * 1000,
        statistics.median(times),
        times[int(0.9 * (len(times) - 1))],
    )


def fill_junk(client: redis.Redis, count: int) -> str:
    """``count`` unrelated keys; returns how they were made."""
    try:
        client.execute_command("DEBUG", "POPULATE", count, "junk")
        return "DEBUG POPULATE"
    except redis.ResponseError:
        pass
    per_mset, per_pipe = 1000, 100
    for start in range(0, count, per_mset * per_pipe):
        pipe = client.pipeline(transaction=False)
        for base in range(start, min(count, start + per_mset * per_pipe), per_mset):
            top = min(count, base + per_mset)
            pipe.mset({f"junk:{i}": b"x" * 16 for i in range(base, top)})
        pipe.execute()
    return "pipelined MSET of 16-byte values (DEBUG is disabled)"


async def run(url: str, server: ServerProcess, args: argparse.Namespace) -> dict[str, object]:
    counter = Commands(url)
    client = redis.Redis.from_url(url)
    rows: list[HubRow] = []
    idle: list[float] = []
    costs: list[TickCost] = []
    created: set[int] = set()
    try:
        async with open_broker(url, prefix=PREFIX) as broker:
            for q in args.queues:
                await set_queues(broker, client, q, created)
                q_rows = []
                async with trio.open_nursery() as nursery:
                    pool = EpollSSEClients(server.host, server.port, nursery)
                    for c in args.clients:
                        await pool.grow_to(c)
                        await pool.next_tick()  # every client has been seeded and is live
                        commands, polls, seconds, cpu = await measure_hub(
                            pool, counter, server, args.window_ticks, args.interval
                        )
                        row = HubRow(q, c, polls, commands, seconds, cpu)
                        q_rows.append(row)
                        print(
                            f"hub   Q={q:<4} C={c:<5} {row.rate:>9,.1f} commands/s "
                            f"({row.per_tick:,.1f}/tick over {polls} ticks, "
                            f"server CPU {cpu:.0%})",
                            flush=True,
                        )
                    nursery.cancel_scope.cancel()
                idle.append(await wait_idle(counter, server))
                print(f"idle  Q={q:<4} server with no client: {idle[-1]:.1f} commands/s")
                for row in q_rows:
                    commands, seconds, polls = await measure_naive(
                        url, row.clients, args.interval, args.naive_intervals, counter
                    )
                    row.naive_commands, row.naive_seconds, row.naive_polls = (
                        commands,
                        seconds,
                        polls,
                    )
                    print(
                        f"naive Q={q:<4} C={row.clients:<5} {row.naive_rate:>9,.1f} commands/s "
                        f"(demand {row.demand(args.interval):,.0f}/s, "
                        f"{polls / seconds:,.1f} snapshots/s)",
                        flush=True,
                    )
                rows.extend(q_rows)
            method = ""
            if args.junk:
                cost_queues = [q for q in (10, 100) if q in args.queues] or [max(args.queues)]
                for junk in (0, args.junk):
                    if junk:
                        began = time.perf_counter()
                        method = await trio.to_thread.run_sync(fill_junk, client, junk)
                        print(f"filled {junk:,} keys in {time.perf_counter() - began:.1f} s")
                    for q in cost_queues:
                        await set_queues(broker, client, q, created)
                        cost = await measure_tick_cost(broker, server, counter, q, junk, args)
                        costs.append(cost)
                        print(
                            f"tick  Q={q:<4} junk={junk:<8,} {cost.per_tick:,.1f} commands/tick, "
                            f"poll {cost.poll_ms:.2f} ms (server), snapshot "
                            f"{cost.direct_median_ms:.2f} ms median / "
                            f"{cost.direct_p90_ms:.2f} ms p90 (direct)",
                            flush=True,
                        )
                dbsize = await trio.to_thread.run_sync(client.dbsize)
                print(f"dbsize {dbsize:,}")
    finally:
        counter.close()
        client.close()
    return {"rows": rows, "idle": idle, "costs": costs, "junk_method": method}


def report(result: dict[str, object], facts: str, args: argparse.Namespace) -> str:
    rows: list[HubRow] = result["rows"]  # type: ignore[assignment]
    costs: list[TickCost] = result["costs"]  # type: ignore[assignment]
    idle: list[float] = result["idle"]  # type: ignore[assignment]
    command = shlex.join(["tests/benchmarks/bench_hub_load.py", *sys.argv[1:]])
    lines = [
        BEGIN,
        "## Hub: Redis load versus connected clients (issue: Stream hub)",
        "",
        f"Command: `.venv/bin/python {command}`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {facts}. The server is a subprocess "
        f"(`relay-trio server --poll-interval {args.interval:g}`); the SSE clients (one thread "
        "running an epoll loop over non-blocking sockets) and the naive pollers run in the "
        "benchmark process. Redis commands come from "
        "`INFO stats` `total_commands_processed` (the INFO calls subtracted); hub windows span "
        f"{args.window_ticks} whole ticks, timed by the server's own snapshot `ts`; naive "
        f"windows {args.naive_intervals} intervals. A naive poller takes one `Broker.snapshot()` "
        "(SMEMBERS + 7 commands per queue) per interval per client; *demand* is what C of them "
        "would send if nothing saturated — where naive falls short of it, the one Python process "
        "running all the pollers was CPU-bound, not Redis. "
        f"Idle server (no client): {', '.join(f'{v:.1f}' for v in idle)} commands/s.",
        "",
        "| queues | clients | hub commands/s | hub commands/tick | server CPU | "
        "naive commands/s | naive demand/s | naive / hub |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.queues} | {r.clients:,} | {r.rate:,.1f} | {r.per_tick:,.1f} | "
            f"{r.server_cpu:.0%} | {r.naive_rate:,.0f} | {r.demand(args.interval):,.0f} | "
            f"{r.naive_rate / r.rate:,.1f}x |"
        )
    lines += ["", "| queues | hub(C=max) / hub(C=1), commands/s | commands/tick | goal ≤ 1.05 |"]
    lines += ["|---:|---:|---:|---|"]
    for q in args.queues:
        mine = [r for r in rows if r.queues == q]
        first, last = mine[0], mine[-1]
        ratio = last.rate / first.rate
        lines.append(
            f"| {q} | {ratio:.3f} (C={last.clients:,} vs {first.clients}) | "
            f"{last.per_tick / first.per_tick:.3f} | {'met' if ratio <= 1.05 else 'MISSED'} |"
        )
    if costs:
        lines += [
            "",
            f"A tick's cost with unrelated keys in Redis ({result['junk_method']}); poll = the "
            "server's mean `relay_hub_poll_duration_seconds` over the window; direct = "
            f"`Broker.snapshot()` timed {args.direct_samples} times from the benchmark process.",
            "",
            "| queues | unrelated keys | commands/tick | poll (server), ms | "
            "direct median, ms | direct p90, ms |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for c in costs:
            lines.append(
                f"| {c.queues} | {c.junk:,} | {c.per_tick:,.1f} | {c.poll_ms:.2f} | "
                f"{c.direct_median_ms:.2f} | {c.direct_p90_ms:.2f} |"
            )
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--interval", type=float, default=1.0, help="hub poll interval, s")
    parser.add_argument("--window-ticks", type=int, default=10, help="hub window, in ticks")
    parser.add_argument(
        "--naive-intervals", type=int, default=10, help="naive window, in poll intervals"
    )
    parser.add_argument("--tick-window", type=int, default=10, help="tick-cost window, ticks")
    parser.add_argument("--direct-samples", type=int, default=50)
    parser.add_argument("--junk", type=int, default=JUNK_KEYS, help="unrelated keys (0: skip)")
    parser.add_argument("--quick", action="store_true", help="a smoke test in < 60 s")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.queues, args.clients = [1, 10], [1, 20]
        args.window_ticks, args.naive_intervals, args.tick_window = 2, 2, 2
        args.direct_samples, args.junk = 10, 20_000
    raise_nofile()
    with embedded_redis() as url, ServerProcess(url, poll_interval=args.interval) as server:
        result = trio.run(run, url, server, args)
        section = report(result, machine_facts(url), args)
    print(section)
    if args.write:
        write_section(BEGIN, END, section)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
