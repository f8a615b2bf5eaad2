"""Fan-out capacity of one server process at 1 Hz: a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_fanout.py [--quick] [--profile] [--write]

For each client count C a fresh server runs as a subprocess (``relay-trio
server --poll-interval 1``, private redis-server, ~10 queues) and this process
opens C ``GET /api/stream`` connections, in batches (200 every 50 ms by
default), with :class:`sse_clients.EpollSSEClients`: one OS thread running a
plain ``select.epoll`` loop over non-blocking sockets, so the load client's own
CPU and scheduling add little to the delays measured. Once every client has had
an event and two more ticks have passed, a window of ``--window`` seconds is
measured:

* delivery delay: for every event a client receives, ``now_ms - ts`` (``ts`` is
  the server's ``time.time()`` of that poll; same host, same clock), counting
  only the snapshots polled inside the window; p50 / p99 / max;
* events received versus expected (every client should get every snapshot of
  the window; late ones get ``--grace`` seconds after it);
* the server's RSS (``VmRSS``) with no client, with one, and with C → KiB per
  client; the server's CPU (all threads) and this load client's CPU;
* the server's garbage-collector time: the server runs as
  ``python -c <wrapper> <same arguments>``, a wrapper that installs a
  ``gc.callbacks`` timer and then calls :func:`relay_trio.cli.main` with the
  arguments ``python -m relay_trio.cli`` would get (``--no-gc-stats`` runs the
  plain module).

``--profile`` then samples the server with py-spy (``--gil``: only samples that
hold the GIL, i.e. Python at work, GC included) for another window at the
largest C of the first (tick) series and prints where its time goes.
The main series runs the server as shipped (``--stream-writes tick``: the
hub's tick writes each event to every socket). ``--task-clients C ...``
(default 3 000 and 10 000) adds a series with ``--stream-writes task`` (every
snapshot through the client's channel, its task writes to the socket) and
``--asgi-clients C ...`` (default 1 000 and 3 000) one with ``--stream-writes
asgi`` (every event through Quart, Hypercorn and h11): the same server
otherwise, in the same run, to show what each step is worth.
``--write`` replaces this benchmark's section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hub_load import (  # a sibling script, not a package
    PREFIX,
    ServerProcess,
    machine_facts,
    raise_nofile,
    server_metrics,
    write_section,
)
from sse_clients import EpollSSEClients  # likewise

from relay_trio.embedded import embedded_redis

BEGIN, END = "<!-- bench-fanout:begin -->", "<!-- bench-fanout:end -->"
GOAL_CLIENTS, GOAL_P99_MS, GOAL_KIB = 10_000, 500.0, 40.0

GC_WRAPPER = """\
import gc, json, os, sys, threading, time
path = os.environ["RELAY_BENCH_GC_STATS"]
stats = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "max": 0.0}
began = [0.0]
def timer(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
        return
    spent = time.perf_counter() - began[0]
    stats["collections"][info["generation"]] += 1
    stats["seconds"][info["generation"]] += spent
    stats["max"] = max(stats["max"], spent)
gc.callbacks.append(timer)
def dump():
    while True:
        time.sleep(0.25)
        with open(path + ".tmp", "w") as out:
            json.dump(stats, out)
        os.replace(path + ".tmp", path)
threading.Thread(target=dump, daemon=True).start()
from relay_trio.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Result:
    path: str
    """The server's ``--stream-writes``: tick (the default), task or asgi."""
    clients: int
    connected: int
    """Clients live (had an event) when the window began: the ones counted."""
    live_end: int
    failed: int
    connect_seconds: float
    window: float
    ticks: int
    received: int
    delays: list[float]
    rss_idle: int
    rss_one: int
    rss_all: int
    server_cpu: float
    client_cpu: float
    gc: dict[str, list[float]] | None
    snapshots_dropped: float | None
    """Snapshots replaced unread in a slow subscriber's channel (None: /metrics
    did not answer)."""
    clients_dropped: float | None
    silent_clients: int
    retries: int
    """Connections restarted for want of a first event within 20 s."""
    listen_overflows: int
    """TcpExt ListenOverflows while connecting: handshakes the kernel dropped
    because the server's accept queue was full."""
    redis_cpu: float
    other_cpu: float
    """CPU (cores) the rest of the machine used in the window: not the server, the
    load client or Redis — another workload would skew the delays."""
    profile: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return self.ticks * self.connected

    @property
    def kib_per_client(self) -> float:
        return (self.rss_all - self.rss_one) / max(1, self.live_end - 1)

    def pct(self, q: float) -> float:
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def read_gc(path: Path) -> dict[str, list[float]] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def gc_delta(
    before: dict[str, list[float]] | None, after: dict[str, list[float]] | None
) -> dict[str, list[float]] | None:
    if before is None or after is None:
        return None
    return {
        "collections": [
            a - b for a, b in zip(after["collections"], before["collections"], strict=True)
        ],
        "seconds": [a - b for a, b in zip(after["seconds"], before["seconds"], strict=True)],
        "max": [float(after["max"])],
    }


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


async def profile_server(pid: int, seconds: float) -> list[str]:
    """Sample the server with py-spy; a summary of where its time went."""
    spy = py_spy()
    if spy is None:
        return ["py-spy not found: .venv/bin/pip install py-spy"]
    out = Path(tempfile.mkdtemp(prefix="relay-bench-spy-")) / "raw.txt"
    try:
        await trio.run_process(
            [
                *(spy, "record", "--pid", str(pid), "--duration", f"{seconds:.0f}"),
                *("--rate", "100", "--gil", "--format", "raw", "--output", str(out)),
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
        return summarise_profile(out.read_text())
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Where a sample's stack says the server was, first match wins (py-spy shows the
# coroutine being stepped on top of trio's run loop).
PROFILE_AREAS = (
    ("hub: poll tick and offer to every subscriber", ("Hub._tick", "Hub._poll")),
    ("Redis I/O (worker threads)", ("redis/",)),
    (
        "one event out: quart -> hypercorn -> h11 -> trio socket send",
        ("send_final_shielded", "HTTPStream.app_send", "protocol_send", "h11/"),
    ),
    ("a stream's own task (EventStreamResponse.send_to, SocketWriter)", ("send_to",)),
    ("quart / quart-trio request handling", ("quart/", "quart_trio/")),
    ("hypercorn: accept, read, connection tasks", ("hypercorn/",)),
    ("trio run loop: scheduling, epoll, checkpoints", ("trio/",)),
)


def _frame(text: str) -> tuple[str, str]:
    match = FRAME_RE.match(text)
    return (match["func"], match["file"]) if match else (text, "")


def summarise_profile(raw: str, top: int = 10) -> list[str]:
    """Share of samples per area of the server, and the top functions by self time.

    GC has no frame of its own: a collection is charged to whatever line
    allocated when it ran (see the GC column for its measured share)."""
    areas: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for name, marks in PROFILE_AREAS:
            if any(mark in stack for mark in marks):
                areas[name] += count
                break
        else:
            areas["other"] += count
        func, file = _frame(stack.rsplit(";", 1)[-1])
        self_time[f"{func} ({file})"] += count
    if not total:
        return ["py-spy recorded no samples"]
    lines = [f"{total} samples holding the GIL (100 Hz); by area:"]
    lines += [f"  {n / total:5.1%}  {name}" for name, n in areas.most_common()]
    lines.append("top self time:")
    lines += [f"  {n / total:5.1%}  {name}" for name, n in self_time.most_common(top)]
    return lines


async def measure(
    server: ServerProcess,
    redis_pid: int,
    clients: int,
    path: str,
    profile_it: bool,
    args: argparse.Namespace,
) -> Result:
    gc_path = Path(server.env.get("RELAY_BENCH_GC_STATS", "/nonexistent"))
    window: tuple[int, int] | None = None  # seqs counted: window[0] < seq <= window[1]
    delays: list[float] = []
    max_seq = 0

    def on_event(index: int, seq: int, ts: int, now_ms: float) -> None:
        nonlocal max_seq
        max_seq = max(max_seq, seq)
        if (
            window is not None
            and window[0] < seq <= window[1]
            and pool.clients[index].first_seq <= window[0]  # live when the window began
        ):
            delays.append(now_ms - ts)

    rss_idle = server.rss_kib()
    async with trio.open_nursery() as nursery:
        pool = EpollSSEClients(server.host, server.port, nursery, on_event=on_event)
        await pool.grow_to(1)
        await pool.wait_seq(pool.seq + 2)
        rss_one = server.rss_kib()
        began, overflows0 = trio.current_time(), _listen_overflows()
        with trio.move_on_after(args.connect_limit) as connecting:
            await pool.grow_to(clients, batch=args.batch, pause=args.batch_pause, may_fail=True)
        connect_seconds = trio.current_time() - began
        if connecting.cancelled_caught:
            print(
                f"C={clients}: only {pool.live:,} clients live after {args.connect_limit:g} s "
                f"({pool.pending:,} still connecting); measuring with those",
                flush=True,
            )
        overflows = _listen_overflows() - overflows0
        await pool.wait_seq(pool.seq + 2)  # everyone is in; let it settle

        for attempt in range(1, args.attempts + 1):
            delays.clear()
            m0 = await _metrics(server)
            gc0 = read_gc(gc_path)
            cpu0, own0, t0 = server.cpu_seconds(), _own_cpu(), trio.current_time()
            redis0, busy0 = _pid_cpu(redis_pid), _machine_busy()
            first = max_seq
            window = (first, 1 << 62)
            live = sum(1 for c in pool.clients if c.events and c.first_seq <= first)
            await trio.sleep(args.window)
            last = max_seq
            window = (first, last)
            cpu1, own1, t1 = server.cpu_seconds(), _own_cpu(), trio.current_time()
            redis1, busy1 = _pid_cpu(redis_pid), _machine_busy()
            rss_all = server.rss_kib()
            gc1 = read_gc(gc_path)
            m1 = await _metrics(server)
            await trio.sleep(args.grace)  # late deliveries of the window's snapshots
            window = (first, first)  # nothing more counts
            heard = sum(1 for c in pool.clients if c.events and c.first_seq <= first < c.last_seq)
            live_end = pool.live
            elapsed = t1 - t0
            ours = (cpu1 - cpu0) + (own1 - own0) + (redis1 - redis0)
            other = ((busy1 - busy0) - ours) / elapsed
            if other <= args.max_other or attempt == args.attempts:
                break
            print(
                f"C={clients}: the rest of the machine used {other:.0%} of a core in the "
                f"window (> {args.max_other:.0%}); measuring again",
                flush=True,
            )

        profile = []
        if profile_it:
            print(f"profiling the server for {args.window:g} s ...", flush=True)
            profile = await profile_server(server.pid, args.window)
        nursery.cancel_scope.cancel()
    return Result(
        path=path,
        clients=clients,
        connected=live,
        live_end=live_end,
        failed=pool.failed,
        connect_seconds=connect_seconds,
        window=elapsed,
        ticks=last - first,
        received=len(delays),
        delays=delays,
        rss_idle=rss_idle,
        rss_one=rss_one,
        rss_all=rss_all,
        server_cpu=(cpu1 - cpu0) / elapsed,
        client_cpu=(own1 - own0) / elapsed,
        gc=gc_delta(gc0, gc1),
        snapshots_dropped=_delta(m0, m1, "relay_hub_snapshots_dropped_total"),
        clients_dropped=_delta(m0, m1, "relay_hub_clients_dropped_total"),
        silent_clients=live - heard,
        retries=pool.retries,
        listen_overflows=overflows,
        redis_cpu=(redis1 - redis0) / elapsed,
        other_cpu=other,
        profile=profile,
    )


async def _metrics(server: ServerProcess) -> dict[str, float]:
    """The server's /metrics, or {} when a saturated server does not answer in 10 s."""
    try:
        return await server_metrics(server.host, server.port)
    except (trio.TooSlowError, OSError, RuntimeError) as exc:
        print(f"/metrics did not answer: {exc!r}", flush=True)
        return {}


def _delta(m0: dict[str, float], m1: dict[str, float], name: str) -> float | None:
    return m1[name] - m0[name] if name in m0 and name in m1 else None


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _pid_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _listen_overflows() -> int:
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names[0] == "TcpExt:":
            return int(dict(zip(names[1:], values[1:], strict=True))["ListenOverflows"])
    return 0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def seed_queues(url: str, count: int) -> None:
    """``count`` registered queues, a few jobs in each, written straight to Redis."""
    client = redis.Redis.from_url(url)
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            name = f"q{i:03d}"
            pipe.sadd(f"{PREFIX}:queues", name)
            pipe.zadd(f"{PREFIX}:{{{name}}}:ready", {f"job{j}": j for j in range(i + 1)})
            pipe.set(f"{PREFIX}:{{{name}}}:processed", 1000 * i)
        pipe.execute()
    finally:
        client.close()


def show(r: Result) -> str:
    gc_text = ""
    if r.gc is not None:
        gc_text = (
            f", GC {sum(r.gc['seconds']) / r.window:.1%} of wall time "
            f"({'/'.join(str(int(n)) for n in r.gc['collections'])} collections of "
            f"generation 0/1/2 taking {'/'.join(f'{x:.2f}' for x in r.gc['seconds'])} s, "
            f"longest {r.gc['max'][0] * 1000:.0f} ms)"
        )
    return (
        f"C={r.clients:<6} {r.path}: {r.connected:,} live "
        f"({r.failed} failed) after "
        f"{r.connect_seconds:.1f} s "
        f"({r.retries} retried, {r.listen_overflows} accept-queue overflows); "
        f"delay p50 {r.pct(0.5):.0f} ms, p99 {r.pct(0.99):.0f} ms, "
        f"max {max(r.delays, default=0):.0f} ms; "
        f"events {r.received:,}/{r.expected:,} ({r.expected - r.received:,} missing, "
        f"{r.silent_clients} silent clients; hub: {_count(r.snapshots_dropped)} snapshots "
        f"replaced unread, {_count(r.clients_dropped)} clients dropped); "
        f"RSS {r.rss_idle:,} → {r.rss_one:,} → {r.rss_all:,} KiB "
        f"= {r.kib_per_client:.1f} KiB/client; "
        f"server CPU {r.server_cpu:.0%}, load client CPU {r.client_cpu:.0%}, "
        f"Redis {r.redis_cpu:.0%}, rest of the machine {r.other_cpu:.0%}{gc_text}"
    )


def report(results: list[Result], facts: str, args: argparse.Namespace) -> str:
    command = shlex.join(["tests/benchmarks/bench_fanout.py", *sys.argv[1:]])
    lines = [
        BEGIN,
        "## Stream fan-out capacity of one server process (issue: Stream hub)",
        "",
        f"Command: `.venv/bin/python {command}`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {facts}. One server subprocess "
        f"(`relay-trio server --poll-interval {args.interval:g}`, {args.queues} queues, a fresh "
        "process per row) and one load-client process (this script: one thread running an "
        "epoll loop over non-blocking sockets for all the clients, "
        f"connecting {args.batch} clients every {args.batch_pause * 1000:.0f} ms while fewer "
        f"than {args.batch} wait for their first event) share the "
        f"machine. Window {args.window:g} s after every client had an event; delay = "
        "receive time - the snapshot's `ts` (the server's clock at the poll), one sample per "
        "client per event; expected = clients x snapshots polled in the window. RSS per client "
        "= (RSS with C clients - RSS with 1) / (C - 1). CPU is % of one core (server: all "
        "threads); *rest of machine* = CPU used by anything but the server, the load client and "
        "Redis (other work on the host would skew delays). GC = time inside the server's "
        "collections (a `gc.callbacks` timer in a wrapper that then runs `relay_trio.cli.main`; "
        "max = the longest collection since the process started). *Stream writes* is the "
        "server's `--stream-writes`: `tick` (the default) = the hub's tick writes each event "
        "straight to every client's socket; `task` = every snapshot goes through the client's "
        "memory channel and its task writes it to the socket (one task wake per client per "
        "tick); `asgi` = every event through Quart, Hypercorn and h11.",
        "",
        "| stream writes | clients | connect s (retries, accept overflows) | "
        "delay p50 ms | p99 ms | max ms | "
        "events got / expected | missing | hub: replaced unread / clients dropped | "
        "server RSS idle → 1 → C, MiB | KiB / client | server CPU | client CPU | "
        "rest of machine | server GC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        gc_text = "-"
        if r.gc is not None:
            gc_text = (
                f"{sum(r.gc['seconds']) / r.window:.1%} "
                f"({int(sum(r.gc['collections']))} runs, max {r.gc['max'][0] * 1000:.0f} ms)"
            )
        live = "" if r.connected == r.clients else f" ({r.connected:,} live)"
        lines.append(
            f"| {r.path} | {r.clients:,}{live} | "
            f"{r.connect_seconds:.1f} ({r.retries}, {r.listen_overflows:,}) | "
            f"{r.pct(0.5):.0f} | {r.pct(0.99):.0f} | "
            f"{max(r.delays, default=0):.0f} | {r.received:,} / {r.expected:,} | "
            f"{r.expected - r.received:,} | {_count(r.snapshots_dropped)} / "
            f"{_count(r.clients_dropped)} | {r.rss_idle / 1024:.0f} → {r.rss_one / 1024:.0f} → "
            f"{r.rss_all / 1024:.0f} | {r.kib_per_client:.1f} | {r.server_cpu:.0%} | "
            f"{r.client_cpu:.0%} | {r.other_cpu:.0%} | {gc_text} |"
        )
    busy = [r.other_cpu for r in results if r.other_cpu > args.max_other]
    if busy:
        lines += [
            "",
            f"**Caution:** {len(busy)} of {len(results)} rows were measured while other work "
            f"on the host used {min(busy):.0%}-{max(busy):.0%} of a core (*rest of machine*, "
            f"after up to {args.attempts} windows per row): the server, this load client and "
            "that work shared 2 cores, so these delays and connect times are upper bounds.",
        ]
    for r in results:
        if r.clients != GOAL_CLIENTS or r.path != "tick":
            continue  # the goal is the shipped server's; other series are for comparison
        p99_ok = r.pct(0.99) <= GOAL_P99_MS and r.connected == r.clients
        mem_ok = r.kib_per_client <= GOAL_KIB
        lines += [
            "",
            f"Goal at {GOAL_CLIENTS:,} clients (the default, `--stream-writes {r.path}`): "
            f"all connected and p99 ≤ {GOAL_P99_MS:.0f} ms — {'met' if p99_ok else 'MISSED'} "
            f"({r.connected:,} live, p99 {r.pct(0.99):.0f} ms); ≤ {GOAL_KIB:.0f} KiB per "
            f"client — {'met' if mem_ok else 'MISSED'} ({r.kib_per_client:.1f} KiB).",
        ]
    for r in results:
        if r.profile:
            lines += [
                "",
                f"py-spy on the server at {r.clients:,} clients, {r.path} "
                f"({args.window:g} s, 100 Hz, `--gil`):",
                "",
                "```",
                *r.profile,
                "```",
            ]
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 3000, 10_000])
    parser.add_argument("--queues", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="hub poll interval, s")
    parser.add_argument("--window", type=float, default=15.0, help="measured window, s")
    parser.add_argument("--grace", type=float, default=3.0, help="wait for late events, s")
    parser.add_argument("--batch", type=int, default=200, help="connections per batch")
    parser.add_argument("--batch-pause", type=float, default=0.05, help="s between batches")
    parser.add_argument(
        "--connect-limit", type=float, default=90.0, help="s to connect; then measure those in"
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.25,
        help="re-measure a window in which other processes used more than this many cores",
    )
    parser.add_argument("--attempts", type=int, default=3, help="windows per row at most")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server at the tick series' max C"
    )
    parser.add_argument("--no-gc-stats", dest="gc_stats", action="store_false")
    parser.add_argument(
        "--task-clients",
        type=int,
        nargs="*",
        default=[3000, 10_000],
        metavar="C",
        help="a series with --stream-writes task at these client counts; none to skip",
    )
    parser.add_argument(
        "--asgi-clients",
        type=int,
        nargs="*",
        default=[1000, 3000],
        metavar="C",
        help="a series with --stream-writes asgi at these client counts; none to skip",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke test in < 60 s")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.window, args.grace, args.attempts = [100, 500], 4.0, 2.0, 1
        args.task_clients = args.asgi_clients = [100]
    series: list[tuple[str, list[int]]] = [("tick", args.clients)]
    if args.task_clients:
        series.append(("task", args.task_clients))
    if args.asgi_clients:
        series.append(("asgi", args.asgi_clients))
    limit = raise_nofile()
    most = max(c for _, cs in series for c in cs)
    if most + 100 > limit:
        parser.error(f"RLIMIT_NOFILE is {limit}: too low for {most} clients")
    results = []
    with embedded_redis() as url, tempfile.TemporaryDirectory() as tmp:
        seed_queues(url, args.queues)
        with redis.Redis.from_url(url) as client:
            redis_pid = int(client.info("server")["process_id"])
        for number, (path, counts) in enumerate(series, 1):
            for clients in counts:
                gc_path = Path(tmp) / f"gc-{number}-{clients}.json"
                env = {"RELAY_STREAM_WRITES": path}
                if args.gc_stats:
                    env["RELAY_BENCH_GC_STATS"] = str(gc_path)
                profile_it = args.profile and number == 1 and clients == max(counts)
                with ServerProcess(
                    url,
                    poll_interval=args.interval,
                    python_args=["-c", GC_WRAPPER] if args.gc_stats else None,
                    env=env,
                ) as server:
                    time.sleep(1)  # let the fresh process settle before its idle RSS
                    result = trio.run(measure, server, redis_pid, clients, path, profile_it, args)
                print(show(result), flush=True)
                for line in result.profile:
                    print(line)
                results.append(result)
        section = report(results, machine_facts(url), args)
    print(section)
    if args.write:
        write_section(BEGIN, END, section)
        print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
