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
* memory per client, = (reading with C clients - reading with 1) / (C - 1):
  the server's RSS (``VmRSS``); the kernel memory of the server's end of the
  connections (``ss -tmn``: skmem r + w + f + o of the sockets on the server's
  port); ``/proc/net/sockstat`` ``TCP: mem`` (pages; every TCP socket of the
  machine, so both ends of each loopback connection); their sum RSS + kernel
  (the server's sockets; sockstat's both ends without ``ss``); and, for the
  detail table, the load client's sockets and the kernel's slab
  (``/proc/meminfo``). *Quiet* readings are taken half a tick after a snapshot
  (every client has read it); *peak* ones while events are in flight: sockstat
  every 20 ms through the window, ``ss`` swept back to back for two ticks after;
* the server's CPU (all threads) and this load client's CPU;
* the server's garbage-collector time: the server runs as
  ``python -c <wrapper> <same arguments>``, a wrapper that installs a
  ``gc.callbacks`` timer and then calls :func:`relay_trio.cli.main` with the
  arguments ``python -m relay_trio.cli`` would get (``--no-gc-stats`` runs the
  plain module).

Two series, in the same run, against the same server:

* **fast** (``--clients``, default 1 000, 3 000 and 10 000): the server as
  shipped and HTTP/1.1 clients, so every stream takes the socket fast path —
  it registers with the broadcaster, the one hub subscriber, which writes each
  snapshot to every such socket without blocking (one task wake per tick);
* **asgi** (``--asgi-clients``, default 1 000 and 3 000; none to skip): the
  same server and HTTP/1.0 clients (``GET /api/stream HTTP/1.0``). Their
  response cannot be chunked, so the fast path does not apply: each stream
  subscribes to the hub itself and sends every event through Quart, Hypercorn
  and h11 (one task wake per client per tick). The body is not framed and ends
  when the server closes the connection.

Each row checks that its streams took the path it claims: the server's
``relay_streams_opened_total{path}`` (from ``/metrics``, with ``Host:
127.0.0.1``) must count them all under that path and none under the other,
``relay_stream_fast_path_available`` must be 1 for the fast series, and the
clients must have got the framing of that path (chunked for fast, none for
asgi). A row that fails the check is marked FAILED in the report and the
script exits with status 1.

``--profile`` then samples the server with py-spy (``--gil``: only samples that
hold the GIL, i.e. Python at work, GC included) for another window at the
largest C of the fast series and prints where its time goes.
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
import subprocess
import sys
import tempfile
import threading
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
)
from benchdoc import write_section  # likewise
from sse_clients import EpollSSEClients  # likewise

from relay_trio.embedded import embedded_redis

BEGIN, END = "<!-- bench-fanout:begin -->", "<!-- bench-fanout:end -->"
GOAL_CLIENTS, GOAL_P99_MS, GOAL_KIB = 10_000, 500.0, 40.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SERIES_REQUEST = {"fast": "1.1", "asgi": "1.0"}
"""Each series' path and the HTTP version its clients request with."""
PATHS = tuple(SERIES_REQUEST)
OPENED = 'relay_streams_opened_total{path="%s"}'
PEAK_TICKS = 2  # ticks of back-to-back ``ss`` sweeps after the window
SAMPLE_EVERY = 0.02  # s between two readings of /proc/net/sockstat in the window

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
class Memory:
    """One reading of what the connections cost, half a tick after a snapshot."""

    rss_kib: int
    """The server's VmRSS."""
    tcp_pages: int
    """``/proc/net/sockstat`` ``TCP: mem``: pages charged to every TCP socket of
    the machine (both ends of each loopback connection, Redis's too)."""
    slab_kib: int
    """``/proc/meminfo`` ``Slab``: the kernel's objects (sockets, files, epoll
    entries...) of the whole machine."""
    server_sockets: int | None
    """Established sockets on the server's port, server side (None: no ``ss``)."""
    server_skmem: int | None
    """Bytes: skmem r + w + f + o summed over those sockets."""
    client_sockets: int | None
    client_skmem: int | None
    """The same for the load client's end of the connections."""


SKMEM_RE = re.compile(
    r"\S+:(?P<local>\d+)\s+\S+:(?P<peer>\d+)\s+skmem:\(r(?P<r>\d+),rb\d+,t\d+,tb\d+,"
    r"f(?P<f>\d+),w(?P<w>\d+),o(?P<o>\d+)"
)


def socket_memory(port: int) -> tuple[int, int, int, int] | None:
    """(server sockets, their bytes, client sockets, their bytes) of the established
    connections to ``port``, from ``ss -tmn``; None without ``ss``."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run(
        [ss, "-tmnH", "state", "established", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = {True: [0, 0], False: [0, 0]}
    for m in SKMEM_RE.finditer(out):
        side = counts[int(m["local"]) == port]  # True: the server's end
        side[0] += 1
        side[1] += int(m["r"]) + int(m["w"]) + int(m["f"]) + int(m["o"])
    return counts[True][0], counts[True][1], counts[False][0], counts[False][1]


def _proc_field(path: str, label: str, index: int) -> int:
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == label:
            return int(fields[index])
    raise RuntimeError(f"no {label} in {path}")


def _tcp_pages_of(sockstat: str) -> int:
    for line in sockstat.splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1])
    raise RuntimeError("no TCP line in /proc/net/sockstat")


def tcp_pages() -> int:
    """``TCP: mem`` of ``/proc/net/sockstat``: pages."""
    return _tcp_pages_of(Path("/proc/net/sockstat").read_text())


def read_memory(server: ServerProcess) -> Memory:
    sockets = socket_memory(server.port)
    return Memory(
        rss_kib=server.rss_kib(),
        tcp_pages=tcp_pages(),
        slab_kib=_proc_field("/proc/meminfo", "Slab:", 1),
        server_sockets=None if sockets is None else sockets[0],
        server_skmem=None if sockets is None else sockets[1],
        client_sockets=None if sockets is None else sockets[2],
        client_skmem=None if sockets is None else sockets[3],
    )


@dataclass
class Peak:
    """The most kernel memory the connections held while events were in flight."""

    tcp_pages: int = 0
    """The highest ``TCP: mem`` sampled every ``SAMPLE_EVERY`` s through the
    measured window."""
    server_skmem: int | None = None
    """Bytes: the highest sum over the server's sockets in back-to-back ``ss``
    sweeps through ``PEAK_TICKS`` ticks after the window (None: no ``ss``)."""
    client_skmem: int | None = None
    sweeps: int = 0


def sweep_sockets(port: int, seconds: float, peak: Peak) -> None:
    """``ss`` sweeps back to back for ``seconds``: the highest sums into ``peak``
    (in a thread: ``ss`` takes ~50 ms for 20 000 sockets)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sockets = socket_memory(port)
        if sockets is None:
            return
        peak.sweeps += 1
        peak.server_skmem = max(peak.server_skmem or 0, sockets[1])
        peak.client_skmem = max(peak.client_skmem or 0, sockets[3])


class TcpPagesSampler:
    """A thread that keeps ``peak.tcp_pages`` at the highest ``TCP: mem`` it reads,
    every ``SAMPLE_EVERY`` s, until :meth:`stop` (a thread re-reading one open
    file costs ~1 % of a core; a trio task waking as often, several times that)."""

    def __init__(self, peak: Peak) -> None:
        self.peak = peak
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sockstat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open("/proc/net/sockstat", "rb", buffering=0) as sockstat:
            while True:
                sockstat.seek(0)
                pages = _tcp_pages_of(sockstat.read(65536).decode())
                self.peak.tcp_pages = max(self.peak.tcp_pages, pages)
                if self._stop.wait(SAMPLE_EVERY):
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def quiet_memory(server: ServerProcess, pool: EpollSSEClients, interval: float) -> Memory:
    """A :class:`Memory` reading half a tick after client 0's next snapshot: the
    snapshot has been read by every client and the next is not polled yet."""
    await pool.wait_seq(pool.seq + 1)
    await trio.sleep(interval / 2)
    return await trio.to_thread.run_sync(read_memory, server)


@dataclass
class Result:
    path: str
    """The series: fast (HTTP/1.1 clients, the socket fast path) or asgi (HTTP/1.0)."""
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
    mem_one: Memory
    mem_all: Memory
    peak: Peak
    server_cpu: float
    client_cpu: float
    gc: dict[str, list[float]] | None
    snapshots_dropped: float | None
    """Snapshots replaced unread, by the hub or the broadcaster (None: /metrics
    did not answer)."""
    clients_dropped: float | None
    fast_writes: float | None
    """Events the broadcaster wrote straight to a socket in the window."""
    fast_handovers: float | None
    """Events it left to a stream's own task in the window."""
    opened: dict[str, float] | None
    """``relay_streams_opened_total`` by path (None: /metrics did not answer)."""
    fast_available: float | None
    chunked_bodies: int
    plain_bodies: int
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
    def request(self) -> str:
        return f"HTTP/{SERIES_REQUEST[self.path]}"

    @property
    def expected(self) -> int:
        return self.ticks * self.connected

    def _per_client(self, one: float, all_: float) -> float:
        return (all_ - one) / max(1, self.live_end - 1)

    @property
    def rss_per_client(self) -> float:
        """KiB."""
        return self._per_client(self.mem_one.rss_kib, self.mem_all.rss_kib)

    @property
    def kernel_server(self) -> float | None:
        """KiB per client: the server's end of the connections (``ss``)."""
        one, all_ = self.mem_one.server_skmem, self.mem_all.server_skmem
        return None if one is None or all_ is None else self._per_client(one, all_) / 1024

    @property
    def kernel_client(self) -> float | None:
        """KiB per client: the load client's end (``ss``)."""
        one, all_ = self.mem_one.client_skmem, self.mem_all.client_skmem
        return None if one is None or all_ is None else self._per_client(one, all_) / 1024

    @property
    def kernel_sockstat(self) -> float:
        """KiB per client: ``TCP: mem``, both ends of each connection."""
        pages = self._per_client(self.mem_one.tcp_pages, self.mem_all.tcp_pages)
        return pages * PAGE_SIZE / 1024

    @property
    def peak_server(self) -> float | None:
        """KiB per client at the peak: the server's end (``ss`` sweeps)."""
        one, peak = self.mem_one.server_skmem, self.peak.server_skmem
        return None if one is None or peak is None else self._per_client(one, peak) / 1024

    @property
    def peak_client(self) -> float | None:
        one, peak = self.mem_one.client_skmem, self.peak.client_skmem
        return None if one is None or peak is None else self._per_client(one, peak) / 1024

    @property
    def peak_sockstat(self) -> float:
        """KiB per client at the peak: ``TCP: mem``, both ends."""
        pages = self._per_client(self.mem_one.tcp_pages, self.peak.tcp_pages)
        return pages * PAGE_SIZE / 1024

    @property
    def slab_per_client(self) -> float:
        """KiB per client: the machine's slab, both ends."""
        return self._per_client(self.mem_one.slab_kib, self.mem_all.slab_kib)

    @property
    def kernel(self) -> float:
        """KiB per client counted with RSS: the server's sockets at their peak (or
        quiet, whichever is higher), else sockstat's both ends (an upper bound)."""
        server = [v for v in (self.kernel_server, self.peak_server) if v is not None]
        return max(server) if server else max(self.kernel_sockstat, self.peak_sockstat)

    @property
    def total_per_client(self) -> float:
        return self.rss_per_client + self.kernel

    @property
    def problem(self) -> str | None:
        """Why the row's streams did not (provably) take the path it claims, or None."""
        if self.opened is None:
            return "/metrics did not answer: the streams' path is unknown"
        other = next(p for p in PATHS if p != self.path)
        mine, theirs = self.opened[self.path], self.opened[other]
        problems = []
        if mine < self.connected or theirs:
            problems.append(
                f"the server opened {mine:,.0f} {self.path} and {theirs:,.0f} {other} streams "
                f"for {self.connected:,} {self.request} clients"
            )
        if self.path == "fast" and self.fast_available != 1:
            problems.append(f"relay_stream_fast_path_available is {self.fast_available}")
        framed, unframed = (
            (self.chunked_bodies, self.plain_bodies)
            if self.path == "fast"
            else (self.plain_bodies, self.chunked_bodies)
        )
        if framed < self.connected or unframed:
            problems.append(
                f"the clients got {self.chunked_bodies:,} chunked and {self.plain_bodies:,} "
                "unframed bodies"
            )
        return "; ".join(problems) or None

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
    (
        "broadcaster: each snapshot written to every fast-path socket",
        ("Broadcaster.fan_out", "Broadcaster._run"),
    ),
    ("hub: poll tick and offer to every subscriber", ("Hub._tick", "Hub._poll")),
    ("Redis I/O (worker threads)", ("redis/",)),
    (
        "one event out through ASGI: quart -> hypercorn -> h11 -> trio socket send",
        ("send_final_shielded", "HTTPStream.app_send", "protocol_send", "h11/"),
    ),
    (
        "a stream's own task (EventStreamResponse.send_to, its outlet, SocketWriter.send)",
        ("send_to", "Outlet.", "SocketWriter."),
    ),
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
        pool = EpollSSEClients(
            server.host,
            server.port,
            nursery,
            on_event=on_event,
            http_version=SERIES_REQUEST[path],
        )
        await pool.grow_to(1)
        await pool.wait_seq(pool.seq + 1)
        mem_one = await quiet_memory(server, pool, args.interval)
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
            peak = Peak()
            sampler = TcpPagesSampler(peak)
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
            gc1 = read_gc(gc_path)
            m1 = await _metrics(server)
            await trio.sleep(args.grace)  # late deliveries of the window's snapshots
            sampler.stop()
            window = (first, first)  # nothing more counts
            heard = sum(1 for c in pool.clients if c.events and c.first_seq <= first < c.last_seq)
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

        await trio.to_thread.run_sync(sweep_sockets, server.port, PEAK_TICKS * args.interval, peak)
        mem_all = await quiet_memory(server, pool, args.interval)
        live_end = pool.live
        m2 = m1 if m1 else await _metrics(server)  # the path check needs one answer
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
        mem_one=mem_one,
        mem_all=mem_all,
        peak=peak,
        server_cpu=(cpu1 - cpu0) / elapsed,
        client_cpu=(own1 - own0) / elapsed,
        gc=gc_delta(gc0, gc1),
        snapshots_dropped=_delta(m0, m1, "relay_hub_snapshots_dropped_total"),
        clients_dropped=_delta(m0, m1, "relay_hub_clients_dropped_total"),
        fast_writes=_delta(m0, m1, "relay_stream_fast_path_writes_total"),
        fast_handovers=_delta(m0, m1, "relay_stream_fast_path_handovers_total"),
        opened={p: m2.get(OPENED % p, 0.0) for p in PATHS} if m2 else None,
        fast_available=m2.get("relay_stream_fast_path_available"),
        chunked_bodies=pool.chunked_bodies,
        plain_bodies=pool.plain_bodies,
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


def _kib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def show(r: Result) -> str:
    gc_text = ""
    if r.gc is not None:
        gc_text = (
            f", GC {sum(r.gc['seconds']) / r.window:.1%} of wall time "
            f"({'/'.join(str(int(n)) for n in r.gc['collections'])} collections of "
            f"generation 0/1/2 taking {'/'.join(f'{x:.2f}' for x in r.gc['seconds'])} s, "
            f"longest {r.gc['max'][0] * 1000:.0f} ms)"
        )
    opened = "n/a" if r.opened is None else " / ".join(f"{r.opened[p]:,.0f} {p}" for p in PATHS)
    problem = (
        "" if r.problem is None else f"\n!!! ROW FAILED ({r.path}, C={r.clients}): {r.problem}"
    )
    return (
        f"C={r.clients:<6} {r.path} ({r.request}): {r.connected:,} live "
        f"({r.failed} failed) after "
        f"{r.connect_seconds:.1f} s "
        f"({r.retries} retried, {r.listen_overflows} accept-queue overflows); "
        f"streams opened {opened}, bodies {r.chunked_bodies:,} chunked / "
        f"{r.plain_bodies:,} unframed; "
        f"delay p50 {r.pct(0.5):.0f} ms, p99 {r.pct(0.99):.0f} ms, "
        f"max {max(r.delays, default=0):.0f} ms; "
        f"events {r.received:,}/{r.expected:,} ({r.expected - r.received:,} missing, "
        f"{r.silent_clients} silent clients; {_count(r.snapshots_dropped)} snapshots "
        f"replaced unread, {_count(r.clients_dropped)} clients dropped; fast path "
        f"{_count(r.fast_writes)} written, {_count(r.fast_handovers)} handed over); "
        f"RSS {r.rss_idle:,} → {r.mem_one.rss_kib:,} → {r.mem_all.rss_kib:,} KiB "
        f"= {r.rss_per_client:.1f} KiB/client; kernel KiB/client quiet / peak: server's "
        f"sockets {_kib(r.kernel_server)} / {_kib(r.peak_server)} ({r.peak.sweeps} ss sweeps), "
        f"load client's {_kib(r.kernel_client)} / {_kib(r.peak_client)}, sockstat both ends "
        f"{r.kernel_sockstat:.1f} / {r.peak_sockstat:.1f}, slab both ends "
        f"{r.slab_per_client:.1f}; RSS + kernel {r.total_per_client:.1f} KiB/client; "
        f"server CPU {r.server_cpu:.0%}, load client CPU {r.client_cpu:.0%}, "
        f"Redis {r.redis_cpu:.0%}, rest of the machine {r.other_cpu:.0%}{gc_text}{problem}"
    )


def _mib(kib: float) -> str:
    return f"{kib / 1024:.0f}"


def report(results: list[Result], facts: str, args: argparse.Namespace) -> str:
    command = shlex.join(["tests/benchmarks/bench_fanout.py", *sys.argv[1:]])
    page = f"{PAGE_SIZE:,}-byte"
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
        f"than {args.batch} wait for their first event) share the machine. Two series in the "
        "same run, the same server: **fast** = the server as shipped with HTTP/1.1 clients — "
        "every stream takes the socket fast path: it registers with the broadcaster, the one "
        "hub subscriber, which writes each snapshot to every such socket without blocking "
        "(one task wake per tick; an event a socket could not take at once is *handed over* "
        "to that stream's own task); **asgi** = the same server with HTTP/1.0 clients "
        "(`GET /api/stream HTTP/1.0`), whose response cannot be chunked, so the fast path "
        "does not apply: each stream subscribes to the hub itself and every event goes "
        "through Quart, Hypercorn and h11 (one task wake per client per tick; the body comes "
        "unframed and ends at the close). Every row checks the path its streams took: "
        "*streams opened* is the server's `relay_streams_opened_total{path}` (`fast / asgi`), "
        "and the clients' bodies must be chunked (fast) or unframed (asgi); a row that fails "
        f"the check is marked FAILED. Window {args.window:g} s after every client had an "
        "event; delay = receive time - the snapshot's `ts` (the server's clock at the poll), "
        "one sample per client per event; expected = clients x snapshots polled in the window; "
        "*written / handed over* = the server's `relay_stream_fast_path_writes_total` / "
        "`relay_stream_fast_path_handovers_total` over the window.",
        "",
        "Memory per client = (reading with C clients - reading with 1) / (C - 1). *Quiet* "
        "readings are taken half a tick after a snapshot, when every client has read it; *peak* "
        "ones while events are in flight (see each). *RSS* = the server's `VmRSS` (quiet). "
        "*Kernel, server's sockets* = the kernel memory charged to the server's end of the "
        "connections: `ss -tmn` skmem r + w + f + o (receive queue, send queue, "
        "forward-allocated, option memory) summed over the established sockets whose local port "
        "is the server's; peak = the highest sum of back-to-back `ss` sweeps through "
        f"{PEAK_TICKS} ticks after the window. *Kernel, sockstat* = `/proc/net/sockstat` `TCP: "
        f"mem` ({page} pages): every TCP socket on the machine, so it counts **both ends** of "
        "each loopback connection — the load client's sockets as well as the server's — and it "
        "lags by up to 1 MiB per CPU (the kernel's per-CPU reserve); peak = the highest value "
        f"sampled every {SAMPLE_EVERY * 1000:.0f} ms through the window. *RSS + kernel* = "
        "RSS + the server's sockets at "
        "the higher of quiet and peak (sockstat's both ends where `ss` is missing). These "
        "clients keep up; one that stops reading holds up to its socket buffers "
        "(`net.ipv4.tcp_wmem` / `tcp_rmem`) until the server drops it. Not in these figures: "
        "the kernel's socket objects themselves (socket, file, epoll entry: slab, in the memory "
        "detail below, both ends). CPU is % of one core (server: all threads); *rest of "
        "machine* = CPU used by anything but the server, the load client and Redis (other work "
        "on the host would skew delays). GC = time inside the server's collections (a "
        "`gc.callbacks` timer in a wrapper that then runs `relay_trio.cli.main`; max = the "
        "longest collection since the process started).",
        "",
        "| path (clients' request) | clients | streams opened fast / asgi | "
        "connect s (retries, accept overflows) | delay p50 ms | p99 ms | max ms | "
        "events got / expected | missing | replaced unread / clients dropped | "
        "fast path: written / handed over | server RSS idle → 1 → C, MiB | "
        "RSS KiB / client | kernel KiB / client, server's sockets, quiet / peak | "
        "kernel KiB / client, sockstat (both ends), quiet / peak | RSS + kernel KiB / client | "
        "server CPU | client CPU | rest of machine | server GC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        "---:|---:|---:|---:|",
    ]
    for r in results:
        gc_text = "-"
        if r.gc is not None:
            gc_text = (
                f"{sum(r.gc['seconds']) / r.window:.1%} "
                f"({int(sum(r.gc['collections']))} runs, max {r.gc['max'][0] * 1000:.0f} ms)"
            )
        live = "" if r.connected == r.clients else f" ({r.connected:,} live)"
        opened = "n/a" if r.opened is None else " / ".join(f"{r.opened[p]:,.0f}" for p in PATHS)
        path = r.path if r.problem is None else f"**FAILED** {r.path}"
        lines.append(
            f"| {path} ({r.request}) | {r.clients:,}{live} | {opened} | "
            f"{r.connect_seconds:.1f} ({r.retries}, {r.listen_overflows:,}) | "
            f"{r.pct(0.5):.0f} | {r.pct(0.99):.0f} | "
            f"{max(r.delays, default=0):.0f} | {r.received:,} / {r.expected:,} | "
            f"{r.expected - r.received:,} | {_count(r.snapshots_dropped)} / "
            f"{_count(r.clients_dropped)} | {_count(r.fast_writes)} / "
            f"{_count(r.fast_handovers)} | {_mib(r.rss_idle)} → {_mib(r.mem_one.rss_kib)} → "
            f"{_mib(r.mem_all.rss_kib)} | {r.rss_per_client:.1f} | "
            f"{_kib(r.kernel_server)} / {_kib(r.peak_server)} | "
            f"{r.kernel_sockstat:.1f} / {r.peak_sockstat:.1f} | "
            f"{r.total_per_client:.1f} | {r.server_cpu:.0%} | "
            f"{r.client_cpu:.0%} | {r.other_cpu:.0%} | {gc_text} |"
        )
    failed = [r for r in results if r.problem is not None]
    if failed:
        lines += ["", "**FAILED rows** — their streams did not take the path they claim:", ""]
        lines += [f"- {r.path}, {r.clients:,} clients: {r.problem}." for r in failed]
    lines += [
        "",
        "Memory detail (same readings): sockets = established sockets on the server's port, "
        "server's end, with 1 client → with C (quiet); skmem = their r + w + f + o, 1 client "
        "→ C clients quiet, peak (and the number of `ss` sweeps); the load client's end per "
        "client likewise; sockstat `TCP: mem` 1 → C quiet, peak; slab = `/proc/meminfo` "
        "`Slab` (the whole machine, both ends) per client, quiet.",
        "",
        "| path | clients | server's sockets 1 → C | server's skmem 1 → C, peak, MiB (sweeps) | "
        "load client's skmem, KiB / client, quiet / peak | sockstat TCP mem 1 → C, peak, MiB | "
        "slab KiB / client (both ends) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        one, all_ = r.mem_one, r.mem_all
        sockets = skmem = "n/a"
        if one.server_sockets is not None and all_.server_sockets is not None:
            sockets = f"{one.server_sockets:,} → {all_.server_sockets:,}"
        if one.server_skmem is not None and all_.server_skmem is not None:
            skmem = f"{one.server_skmem / 2**20:.1f} → {all_.server_skmem / 2**20:.1f}"
            if r.peak.server_skmem is not None:
                skmem += f", {r.peak.server_skmem / 2**20:.1f} ({r.peak.sweeps})"
        pages = (one.tcp_pages, all_.tcp_pages, r.peak.tcp_pages)
        sockstat = "{:.1f} → {:.1f}, {:.1f}".format(*(n * PAGE_SIZE / 2**20 for n in pages))
        lines.append(
            f"| {r.path} | {r.clients:,} | {sockets} | {skmem} | "
            f"{_kib(r.kernel_client)} / {_kib(r.peak_client)} | {sockstat} | "
            f"{r.slab_per_client:.1f} |"
        )
    busy = [r.other_cpu for r in results if r.other_cpu > args.max_other]
    if busy:
        lines += [
            "",
            f"**Caution:** {len(busy)} of {len(results)} rows were measured while other work "
            f"on the host used {min(busy):.0%}-{max(busy):.0%} of a core (*rest of machine*, "
            f"after up to {args.attempts} windows per row): the server, this load client and "
            "that work shared the cores, so these delays and connect times are upper bounds.",
        ]
    for r in results:
        if r.clients != GOAL_CLIENTS or r.path != "fast":
            continue  # the goal is the shipped server's; the asgi series is for comparison
        where = "the server as shipped, fast path, HTTP/1.1 clients"
        if r.problem is not None:
            lines += [
                "",
                f"Goal at {GOAL_CLIENTS:,} clients ({where}): cannot be judged — the row "
                f"FAILED its path check ({r.problem}).",
            ]
            continue
        p99_ok = r.pct(0.99) <= GOAL_P99_MS and r.connected == r.clients
        total_ok = r.total_per_client <= GOAL_KIB
        rss_ok = r.rss_per_client <= GOAL_KIB
        kernel_text = (
            "the server's sockets, peak"
            if r.kernel_server is not None
            else "sockstat, both ends: no `ss` here"
        )
        lines += [
            "",
            f"Goal at {GOAL_CLIENTS:,} clients ({where}):",
            "",
            f"- all connected and p99 ≤ {GOAL_P99_MS:.0f} ms — "
            f"{'met' if p99_ok else 'MISSED'} ({r.connected:,} of {r.clients:,} live, p99 "
            f"{r.pct(0.99):.0f} ms);",
            f"- ≤ {GOAL_KIB:.0f} KiB per client with the kernel's socket memory counted — "
            f"{'met' if total_ok else 'MISSED'} (RSS {r.rss_per_client:.1f} + kernel "
            f"{r.kernel:.1f} ({kernel_text}) = {r.total_per_client:.1f} KiB); RSS alone "
            f"{r.rss_per_client:.1f} KiB — {'met' if rss_ok else 'MISSED'}; sockstat, both "
            f"ends of each loopback connection, {r.kernel_sockstat:.1f} KiB quiet, "
            f"{r.peak_sockstat:.1f} KiB peak (RSS + that peak: "
            f"{r.rss_per_client + max(r.kernel_sockstat, r.peak_sockstat):.1f} KiB).",
        ]
    for r in results:
        if r.profile:
            lines += [
                "",
                f"py-spy on the server at {r.clients:,} clients, {r.path} path "
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
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        default=[1000, 3000, 10_000],
        help="the fast series (HTTP/1.1 clients) at these client counts",
    )
    parser.add_argument(
        "--asgi-clients",
        type=int,
        nargs="*",
        default=[1000, 3000],
        metavar="C",
        help="the asgi series (HTTP/1.0 clients) at these client counts; none to skip",
    )
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
        "--profile", action="store_true", help="py-spy the server at the fast series' max C"
    )
    parser.add_argument("--no-gc-stats", dest="gc_stats", action="store_false")
    parser.add_argument("--quick", action="store_true", help="a smoke test in < 60 s")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.window, args.grace, args.attempts = [100, 500], 4.0, 2.0, 1
        args.asgi_clients = [100]
    series: list[tuple[str, list[int]]] = [("fast", args.clients)]
    if args.asgi_clients:
        series.append(("asgi", args.asgi_clients))
    limit = raise_nofile()
    most = max(c for _, cs in series for c in cs)
    if most + 100 > limit:
        parser.error(f"RLIMIT_NOFILE is {limit}: too low for {most} clients")
    if shutil.which("ss") is None:
        print("no `ss` (iproute2): kernel memory from /proc/net/sockstat only", flush=True)
    results = []
    with embedded_redis() as url, tempfile.TemporaryDirectory() as tmp:
        seed_queues(url, args.queues)
        with redis.Redis.from_url(url) as client:
            redis_pid = int(client.info("server")["process_id"])
        for path, counts in series:
            for clients in counts:
                gc_path = Path(tmp) / f"gc-{path}-{clients}.json"
                env = {"RELAY_BENCH_GC_STATS": str(gc_path)} if args.gc_stats else {}
                profile_it = args.profile and path == "fast" and clients == max(counts)
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
    failed = [r for r in results if r.problem is not None]
    for r in failed:
        print(f"!!! ROW FAILED ({r.path}, C={r.clients}): {r.problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
