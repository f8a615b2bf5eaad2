"""relay-trio against peer Python task queues on one Redis: a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_peers.py [--quick] [--write] [--peers a,b,...]

Peers: SAQ, arq, RQ and streaq. Each lives in a virtualenv of its own under
``.bench-venvs/<peer>`` (created here with ``python3 -m venv`` + pip on first
use, skipped when present: together they would pin redis-py back to 5.x);
nothing is installed into the project's .venv. Each library runs in its own
venv's Python through a small driver, ``tests/benchmarks/peers/<peer>_driver.py``
(see ``peers/_common.py`` for the modes), relay-trio's driver in .venv.

One private redis-server (TCP on 127.0.0.1), FLUSHALL before every run.
For every queue, each measured ``--repeat`` times (the order of the queues
rotates between repeats) and reported as the median:

* **throughput**: N no-op jobs are enqueued by one process (not timed), then
  ONE worker process runs them: jobs/s = N / (worker start -> last job done,
  as the driver measures it in the worker process). Also the worker's CPU
  time per job, and Redis's (``INFO cpu``) and its commands per job (``INFO
  stats``, commands run inside Lua scripts included) over the worker's life;
* **pickup latency**: a worker idles, then a producer process enqueues one job
  every ``--interval`` s; the handler stores its start time minus the
  ``time.time()`` the producer took just before the enqueue call (same
  host, same clock). ``--warmup`` jobs go first and are not timed. p50/p99
  per run; the medians of the runs are reported.

The handler is the same no-op for all. ``--write`` replaces this benchmark's
section of docs/benchmarks.md; ``--profile`` adds a py-spy profile of
relay-trio's worker (``.venv/bin/pip install py-spy``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from benchdoc import DOC, write_section  # a sibling script, not a package

from relay_trio.embedded import embedded_redis

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- bench-peers:begin -->", "<!-- bench-peers:end -->"
DRIVERS = Path(__file__).resolve().parent / "peers"
VENVS = ROOT / ".bench-venvs"
MARKER = ".bench-requirements"


@dataclass(frozen=True)
class Peer:
    name: str
    driver: str
    requirements: tuple[str, ...] | None
    """pip requirements of its own venv; None: the project's .venv."""
    setup: str
    """How the worker is run, for the report."""
    optional: bool = False
    """Left out (with a note) when its venv cannot be installed."""

    @property
    def python(self) -> Path:
        if self.requirements is None:
            return Path(sys.executable)
        return VENVS / self.name / "bin" / "python"


PEERS = [
    Peer(
        "relay-trio",
        "relay_trio_driver.py",
        None,
        "`Worker` + `QueueHandler(concurrency=C)`, `WorkerConfig(max_claim=C)`",
    ),
    Peer(
        "saq",
        "saq_driver.py",
        # saq 0.26 imports typing_extensions without declaring it
        ("saq[redis,hiredis]", "typing_extensions"),
        "`saq.Worker(queue, functions, concurrency=C)`, `await worker.start()`",
    ),
    Peer(
        "arq",
        "arq_driver.py",
        ("arq",),
        "`arq.worker.Worker(functions, max_jobs=C)`, `await worker.async_run()`; "
        "polls every `poll_delay` = 0.5 s (default)",
    ),
    Peer(
        "rq",
        "rq_driver.py",
        ("rq", "hiredis"),
        "`rq.SimpleWorker` (no fork per job), `worker.work(max_jobs=N)`; "
        "one job at a time (RQ has no concurrency setting)",
    ),
    Peer(
        "streaq",
        "streaq_driver.py",
        ("streaq",),
        "`streaq.Worker(concurrency=C)` + `@worker.task()`, `await worker.run_async()` "
        "(asyncio backend)",
        optional=True,
    ),
]


class PeerFailed(Exception):
    pass


# -- virtualenvs -------------------------------------------------------------------


def ensure_venv(peer: Peer) -> None:
    """Create ``.bench-venvs/<peer>`` and install its requirements, unless done before."""
    if peer.requirements is None:
        return
    venv = VENVS / peer.name
    wanted = "\n".join(peer.requirements)
    marker = venv / MARKER
    if peer.python.exists() and marker.exists() and marker.read_text() == wanted:
        return
    python3 = shutil.which("python3") or sys.executable
    print(f"[{peer.name}] creating {venv}: pip install {' '.join(peer.requirements)}")
    steps = [[str(peer.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]]
    steps[0] += peer.requirements
    if not peer.python.exists():
        VENVS.mkdir(exist_ok=True)
        steps.insert(0, [python3, "-m", "venv", str(venv)])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        except subprocess.TimeoutExpired as exc:
            raise PeerFailed(f"{shlex.join(step)}: timed out") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise PeerFailed(f"{shlex.join(step)} exited with {done.returncode}:\n{tail}")
    marker.write_text(wanted)


# -- running drivers ---------------------------------------------------------------


def driver_command(peer: Peer, mode: str, url: str, *options: object) -> list[str]:
    return [str(peer.python), str(DRIVERS / peer.driver), mode, "--url", url] + [
        str(o) for o in options
    ]


def run_driver(peer: Peer, mode: str, url: str, *options: object, timeout: float) -> Any:
    """Run one driver to its end; return its last stdout line as JSON."""
    with tempfile.TemporaryFile("w+") as err:
        try:
            done = subprocess.run(
                driver_command(peer, mode, url, *options),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerFailed(f"{mode}: no result within {timeout:.0f} s") from exc
        err.seek(0)
        stderr = err.read()
    return parse_output(peer, mode, done.returncode, done.stdout, stderr)


def parse_output(peer: Peer, mode: str, code: int, stdout: str, stderr: str) -> Any:
    lines = stdout.strip().splitlines()
    if code != 0 or not lines:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise PeerFailed(f"{mode} exited with {code}:\n{tail}")
    return json.loads(lines[-1])


@dataclass
class Usage:
    commands: float
    """Redis commands processed (those run inside Lua scripts included)."""
    redis_cpu: float
    """CPU seconds Redis used."""
    other_load: float
    """CPU the rest of the machine used meanwhile, in cores: the machine is shared."""


class Meter:
    """Redis's commands and CPU, and everyone else's CPU, between start and stop.

    Everyone else = all CPU time of the machine (/proc/stat) minus Redis's minus
    that of our finished child processes (the drivers); this script itself
    idles while a driver runs.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._start = (0.0, 0.0, 0.0, 0.0, 0.0)

    def _read(self) -> tuple[float, float, float, float, float]:
        info = self.client.info()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            float(info["total_commands_processed"]),
            float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            machine_busy(),
            children.ru_utime + children.ru_stime,
            time.monotonic(),
        )

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> Usage:
        end = self._read()
        commands, redis_cpu, busy, children, wall = (
            b - a for a, b in zip(self._start, end, strict=True)
        )
        other = max(0.0, busy - redis_cpu - children) / wall if wall > 0 else 0.0
        return Usage(commands - 1, redis_cpu, other)  # minus our second INFO


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (0 where /proc/stat is missing)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


@dataclass
class Throughput:
    rate: float
    worker_cpu: float
    redis_cpu: float
    commands: float
    extra_runs: int
    other_load: float


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    max_ms: float
    other_load: float


@dataclass
class Results:
    throughput: dict[str, list[Throughput]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    latency: dict[str, list[Latency]] = field(default_factory=lambda: collections.defaultdict(list))
    failed: dict[str, str] = field(default_factory=dict)
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: list[str] = field(default_factory=list)


def concurrency_of(peer: Peer, args: argparse.Namespace) -> int:
    return args.concurrency if peer.name == "relay-trio" else args.peer_concurrency


def measure_throughput(
    peer: Peer, url: str, client: redis.Redis, args: argparse.Namespace
) -> Throughput:
    client.flushall()
    run_driver(peer, "enqueue", url, "--jobs", args.jobs, timeout=args.timeout)
    meter = Meter(client)
    meter.start()
    out = run_driver(
        peer,
        "work",
        url,
        "--jobs",
        args.jobs,
        "--concurrency",
        concurrency_of(peer, args),
        "--timeout",
        args.timeout,
        timeout=args.timeout + 60,
    )
    usage = meter.stop()
    if out["handled"] < args.jobs:
        raise PeerFailed(f"work: handled {out['handled']} of {args.jobs} jobs")
    return Throughput(
        rate=args.jobs / out["elapsed"],
        worker_cpu=out["cpu"] / args.jobs,
        redis_cpu=usage.redis_cpu / args.jobs,
        commands=usage.commands / args.jobs,
        extra_runs=out["handled"] - args.jobs,
        other_load=usage.other_load,
    )


def wait_ready(proc: subprocess.Popen[str], ready: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise PeerFailed(f"latency worker exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise PeerFailed(f"latency worker not ready within {timeout:.0f} s")
        time.sleep(0.01)


def measure_latency(peer: Peer, url: str, client: redis.Redis, args: argparse.Namespace) -> Latency:
    client.flushall()
    total = args.warmup + args.samples
    meter = Meter(client)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        ready, err_path = Path(tmp) / "ready", Path(tmp) / "worker.err"
        with open(err_path, "w+") as err:
            meter.start()
            proc = subprocess.Popen(
                driver_command(
                    peer,
                    "work",
                    url,
                    "--jobs",
                    total,
                    "--concurrency",
                    concurrency_of(peer, args),
                    "--ready-file",
                    ready,
                    "--timeout",
                    args.timeout,
                ),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
            )
            try:
                wait_ready(proc, ready, 60)
                time.sleep(args.settle)  # let the worker go idle
                run_driver(
                    peer,
                    "produce",
                    url,
                    "--jobs",
                    args.samples,
                    "--warmup",
                    args.warmup,
                    "--interval",
                    args.interval,
                    timeout=args.timeout,
                )
                stdout, _ = proc.communicate(timeout=60)
            except (PeerFailed, subprocess.TimeoutExpired) as exc:
                proc.kill()
                proc.wait()
                raise PeerFailed(str(exc)) from exc
            usage = meter.stop()
            err.seek(0)
            out = parse_output(peer, "latency work", proc.returncode, stdout, err.read())
    samples = sorted(out["latencies"])
    if len(samples) != args.samples:
        raise PeerFailed(f"latency: {len(samples)} samples, expected {args.samples}")
    p99 = statistics.quantiles(samples, n=100, method="inclusive")[98]
    return Latency(
        p50_ms=statistics.median(samples) * 1000,
        p99_ms=p99 * 1000,
        max_ms=samples[-1] * 1000,
        other_load=usage.other_load,
    )


def profile_relay(url: str, client: redis.Redis, args: argparse.Namespace) -> list[str]:
    """py-spy (GIL samples) of relay-trio's worker over a throughput run; a summary."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return ["py-spy is not installed in .venv: `.venv/bin/pip install py-spy`"]
    peer = PEERS[0]
    jobs = max(args.jobs, 100_000) if not args.quick else args.jobs
    client.flushall()
    run_driver(peer, "enqueue", url, "--jobs", jobs, timeout=args.timeout)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        raw = Path(tmp) / "profile.txt"
        command = [str(py_spy), "record", "--gil", "--threads", "--rate", "500", "--format", "raw"]
        command += ["--output", str(raw), "--"]
        command += driver_command(
            peer, "work", url, "--jobs", jobs, "--concurrency", args.concurrency
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT
        )
        if done.returncode != 0 or not raw.exists():
            return [f"py-spy failed ({done.returncode}): {done.stderr.strip()[-300:]}"]
        outputs = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not outputs:
            return [f"no result from the profiled worker: {done.stdout.strip()[-300:]}"]
        work = json.loads(outputs[-1])
        return summarize_profile(raw.read_text(), work, jobs)


def summarize_profile(raw: str, work: dict[str, Any], jobs: int) -> list[str]:
    """GIL-holding samples: share by thread, by cost centre and by leaf function."""
    frame_re = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
    total = 0
    threads: collections.Counter[str] = collections.Counter()
    centres: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    # first match on the stack (innermost first) names the cost centre
    rules = [
        ("Job.from_fields", "decode claimed jobs (`Job.from_fields`)"),
        ("Job.from_hash", "decode jobs from a hash (`Job.from_hash`)"),
        ("_HiredisParser", "parse Redis replies (redis-py + hiredis)"),
        ("Connection.send_packed_command", "send to Redis (redis-py)"),
        ("pack_command", "encode commands (redis-py)"),
        ("Nursery.start_soon", "spawn one Trio task per job (`start_soon`)"),
        ("Tally.record", "the no-op handler itself"),
        ("Worker._run", "run a handler, queue its ack (`Worker._run`)"),
        ("Worker._runner", "runner tasks take claimed jobs (`Worker._runner`)"),
        ("Worker._claim_loop", "claim loop's own code (`Worker._claim_loop`)"),
        ("to_thread_run_sync", "hand Redis calls to threads (`trio.to_thread`)"),
        ("WorkerThread", "hand Redis calls to threads (`trio.to_thread`)"),
        ("Broker.ack_many", "build ack batches (`Broker.ack_many`)"),
        ("Broker.claim", "claim (`Broker.claim`, other)"),
        ("_find_and_load", "imports and start-up"),
        ("unrolled_run", "Trio scheduler (run loop, wake-ups)"),
    ]
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        thread = re.sub(r"^thread \(\w+\):?\s*", "", frames[0]).strip()
        # Trio's cached threads keep the name of their first job: group them
        threads["Trio main thread" if thread == "MainThread" else "threads (Redis calls)"] += count
        names = [m.group(1) if (m := frame_re.match(f)) else f for f in frames[1:]]
        centre = "other"
        for name in reversed(names):
            hit = next((label for key, label in rules if key in name), None)
            if hit:
                centre = hit
                break
        centres[centre] += count
        if names:
            leaves[names[-1]] += count
    if not total:
        return ["py-spy recorded no samples"]
    gil_seconds = total / 500
    lines = [
        f"py-spy `record --gil --rate 500` of one relay-trio worker running {jobs:,} jobs: "
        f"{jobs / work['elapsed']:,.0f} jobs/s under the profiler, {work['elapsed']:.2f} s wall, "
        f"process CPU {work['cpu']:.2f} s; {total:,} samples with the GIL held "
        f"(~{gil_seconds:.2f} s, {gil_seconds / work['elapsed']:.0%} of the wall time, "
        "imports included).",
        "",
        "| where the GIL time goes | share |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {n / total:.0%} |" for name, n in centres.most_common()]
    lines += ["", "| thread holding the GIL | share |", "|---|---:|"]
    lines += [f"| {name or '?'} | {n / total:.0%} |" for name, n in threads.most_common(4)]
    lines += ["", "Top functions by own time (GIL samples):", ""]
    lines += [f"- {n / total:.1%} `{name}`" for name, n in leaves.most_common(8)]
    return lines


# -- the run -----------------------------------------------------------------------


def run_all(url: str, args: argparse.Namespace, peers: list[Peer]) -> Results:
    results = Results()
    client = redis.Redis.from_url(url)
    for peer in peers:
        try:
            results.versions[peer.name] = run_driver(peer, "versions", url, timeout=120)
        except PeerFailed as exc:
            results.failed[peer.name] = str(exc)
    live = [p for p in peers if p.name not in results.failed]
    for kind, measure in (("throughput", measure_throughput), ("latency", measure_latency)):
        for r in range(args.repeat):
            order = live[r % len(live) :] + live[: r % len(live)] if live else []
            for peer in order:
                if peer.name in results.failed:
                    continue
                began = time.monotonic()
                try:
                    value = measure(peer, url, client, args)
                except PeerFailed as exc:
                    results.failed[peer.name] = f"{kind}: {exc}"
                    print(f"[{peer.name}] {kind} FAILED: {exc}", file=sys.stderr)
                    continue
                getattr(results, kind)[peer.name].append(value)
                print(
                    f"[{peer.name}] {kind} run {r + 1}/{args.repeat}: {show(value)} "
                    f"({time.monotonic() - began:.1f} s)",
                    flush=True,
                )
    if args.profile:
        results.profile = profile_relay(url, client, args)
        print("\n".join(results.profile))
    client.flushall()
    client.close()
    return results


def show(value: Throughput | Latency) -> str:
    if isinstance(value, Throughput):
        return (
            f"{value.rate:,.0f} jobs/s, worker CPU {value.worker_cpu * 1e6:,.0f} µs/job, "
            f"Redis CPU {value.redis_cpu * 1e6:,.0f} µs/job, {value.commands:.1f} commands/job, "
            f"other load {value.other_load:.2f} cores"
        )
    return (
        f"p50 {value.p50_ms:.2f} ms, p99 {value.p99_ms:.2f} ms, max {value.max_ms:.2f} ms, "
        f"other load {value.other_load:.2f} cores"
    )


def med(values: list[float]) -> float:
    return statistics.median(values)


def report(results: Results, url: str, args: argparse.Namespace, peers: list[Peer]) -> str:
    client = redis.Redis.from_url(url)
    try:
        server = client.info("server")
    finally:
        client.close()
    command = "`.venv/bin/python tests/benchmarks/bench_peers.py"
    command += " --quick" if args.quick else ""
    for name in ("jobs", "repeat", "samples", "interval"):
        if getattr(args, name) != DEFAULTS[args.quick][name]:
            command += f" --{name} {getattr(args, name)}"
    command += " --profile" if args.profile else ""
    command += " --write`"
    lines = [
        BEGIN,
        "## relay-trio and peer queues on the same Redis (issue: peer benchmark)",
        "",
        f"Command: {command}",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({platform.machine()}), Python {platform.python_version()}, one private Redis "
        f"{server['redis_version']} (`{server.get('executable', 'redis-server')}`, the same "
        "for all) "
        "on the same host over TCP loopback, FLUSHALL before every run. "
        f"Each figure is the median of {args.repeat} run{'s' if args.repeat != 1 else ''}; "
        "the order of the queues rotates "
        "between repeats. Each library runs in its own virtualenv, its worker in a process of "
        "its own, with its own defaults except the concurrency "
        f"(relay-trio C = {args.concurrency}, async peers C = {args.peer_concurrency}). "
        "The handler is the same no-op (it takes t0 and stores now - t0 when t0 > 0).",
        "",
        f"**Throughput**: {args.jobs:,} no-op jobs enqueued first (not timed), then ONE worker "
        'process; jobs/s = N / (worker start → last job done, the library\'s own "done": '
        "acked / result stored). CPU per job: the worker process's (all threads) and "
        "Redis's (`INFO cpu`, over the worker's life); commands per job from "
        "`INFO stats` (those run inside Lua scripts included). *Other load*: the CPU the "
        "rest of the machine used meanwhile, in cores, per run (the machine is shared: "
        "other people's test runs land here; runs with a high one are slower and noisier).",
        "",
        "| queue | jobs/s (median) | runs | worker CPU µs/job | Redis CPU µs/job "
        "| Redis commands/job | other load, cores |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    notes: list[str] = []
    for peer in peers:
        runs = results.throughput.get(peer.name, [])
        if not runs:
            lines.append(f"| {peer.name} | failed | | | | | |")
            continue
        rates = [t.rate for t in runs]
        lines.append(
            f"| {peer.name} | {med(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} "
            f"| {med([t.worker_cpu for t in runs]) * 1e6:,.0f} "
            f"| {med([t.redis_cpu for t in runs]) * 1e6:,.0f} "
            f"| {med([t.commands for t in runs]):.1f} "
            f"| {', '.join(f'{t.other_load:.2f}' for t in runs)} |"
        )
        extra = [t.extra_runs for t in runs]
        if any(extra):
            notes.append(
                f"{peer.name} ran some jobs twice: {', '.join(map(str, extra))} extra handler "
                "calls in the runs (each run still had every job done once)."
            )
    lines += [
        "",
        f"**Pickup latency on an idle queue**: the worker idles for {args.settle:g} s, then a "
        f"producer process enqueues {args.samples} jobs one at a time, {args.interval * 1000:g} ms "
        f"apart (after {args.warmup} untimed warm-up jobs); latency = handler start - "
        "`time.time()` taken just before the enqueue call. p50/p99 per run; the medians of "
        "the runs.",
        "",
        "| queue | p50 ms | p99 ms | runs: p50 / p99 / max ms | other load, cores |",
        "|---|---:|---:|---|---|",
    ]
    for peer in peers:
        lat = results.latency.get(peer.name, [])
        if not lat:
            lines.append(f"| {peer.name} | failed | | | |")
            continue
        runs_text = "; ".join(f"{x.p50_ms:.2f} / {x.p99_ms:.2f} / {x.max_ms:.1f}" for x in lat)
        lines.append(
            f"| {peer.name} | {med([x.p50_ms for x in lat]):.2f} "
            f"| {med([x.p99_ms for x in lat]):.2f} | {runs_text} "
            f"| {', '.join(f'{x.other_load:.2f}' for x in lat)} |"
        )
    lines += ["", "Goals for relay-trio:", ""]
    lines += goals(results, peers)
    lines += ["", "| queue | version | Redis client | worker setup |", "|---|---|---|---|"]
    for peer in peers:
        v = results.versions.get(peer.name)
        if v is None:
            lines.append(f"| {peer.name} | not installed | | |")
            continue
        deps = ", ".join(f"{k} {ver}" for k, ver in v["deps"].items() if ver != "-")
        lines.append(f"| {peer.name} | {v['library'].split()[-1]} | {deps} | {peer.setup} |")
    for name, why in results.failed.items():
        notes.append(f"{name} failed: {why.splitlines()[0]}")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    if results.profile:
        lines += ["", "### What limits relay-trio's worker (measured)", ""]
        lines += utilization(results.throughput.get("relay-trio", []))
        lines += results.profile
    lines.append(END)
    return "\n".join(lines)


def utilization(runs: list[Throughput]) -> list[str]:
    """How busy the worker process and Redis were in relay-trio's throughput runs."""
    if not runs:
        return []
    worker = med([t.worker_cpu * t.rate for t in runs])
    server = med([t.redis_cpu * t.rate for t in runs])
    verdict = (
        "the worker process is CPU-bound"
        if worker >= 0.9
        else "neither is saturated: the rest of the worker's time is spent waiting for "
        "Redis round trips that nothing else overlaps"
    )
    return [
        f"In the throughput runs above (medians), relay-trio's worker process used "
        f"{worker:.0%} of one core (all threads; its Python code runs under one GIL) and "
        f"Redis {server:.0%} of one core: {verdict}.",
        "",
    ]


def goals(results: Results, peers: list[Peer]) -> list[str]:
    def mark(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = []
    ours = results.throughput.get("relay-trio")
    others = {
        p.name: med([t.rate for t in results.throughput[p.name]])
        for p in peers
        if p.name != "relay-trio" and results.throughput.get(p.name)
    }
    if ours:
        rate = med([t.rate for t in ours])
        rows.append(
            f"- ≥ 10 000 jobs/s from one worker process: {rate:,.0f} — {mark(rate >= 10_000)}"
        )
        if others:
            best, best_rate = max(others.items(), key=lambda kv: kv[1])
            ratio = rate / best_rate
            rows.append(
                f"- ≥ 2x the fastest peer ({best}, {best_rate:,.0f} jobs/s): "
                f"{ratio:.1f}x — {mark(ratio >= 2)}"
            )
    lat = results.latency.get("relay-trio")
    if lat:
        p50, p99 = med([x.p50_ms for x in lat]), med([x.p99_ms for x in lat])
        rows.append(f"- pickup p50 ≤ 5 ms: {p50:.2f} ms — {mark(p50 <= 5)}")
        rows.append(f"- pickup p99 ≤ 20 ms: {p99:.2f} ms — {mark(p99 <= 20)}")
    return rows or ["- relay-trio did not run"]


DEFAULTS = {
    False: {"jobs": 20_000, "repeat": 3, "samples": 200, "interval": 0.02},
    True: {"jobs": 2_000, "repeat": 1, "samples": 30, "interval": 0.02},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 000 jobs, 1 repeat")
    parser.add_argument("--jobs", type=int, help="jobs per throughput run (20 000)")
    parser.add_argument("--repeat", type=int, help="runs per measurement (3)")
    parser.add_argument("--samples", type=int, help="timed jobs per latency run (200)")
    parser.add_argument("--interval", type=float, help="seconds between latency jobs (0.02)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed latency jobs first")
    parser.add_argument("--settle", type=float, default=1.0, help="idle seconds before producing")
    parser.add_argument("--concurrency", type=int, default=200, help="relay-trio's C")
    parser.add_argument("--peer-concurrency", type=int, default=100, help="async peers' C")
    parser.add_argument("--peers", help="comma-separated subset, e.g. relay-trio,saq")
    parser.add_argument("--timeout", type=float, default=600, help="per driver run, seconds")
    parser.add_argument("--profile", action="store_true", help="py-spy relay-trio's worker")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    for name, value in DEFAULTS[args.quick].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.settle = min(args.settle, 0.5)
    peers = PEERS
    if args.peers:
        wanted = args.peers.split(",")
        unknown = set(wanted) - {p.name for p in PEERS}
        if unknown:
            parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
        peers = [p for p in PEERS if p.name in wanted]
    began = time.monotonic()
    usable: list[Peer] = []
    skipped: dict[str, str] = {}
    for peer in peers:
        try:
            ensure_venv(peer)
            usable.append(peer)
        except PeerFailed as exc:
            if not peer.optional:
                raise SystemExit(f"{peer.name}: {exc}") from exc
            skipped[peer.name] = str(exc)
            print(f"[{peer.name}] skipped: {exc}", file=sys.stderr)
    with embedded_redis() as url:
        results = run_all(url, args, usable)
        results.failed.update(skipped)
        section = report(results, url, args, peers)
    print()
    print(section)
    print(f"\ntotal {time.monotonic() - began:.0f} s; command: {shlex.join(sys.argv)}")
    if args.write:
        write_section(BEGIN, END, section)
        print(f"wrote {DOC}")
    required = {p.name for p in peers if not p.optional}
    return 1 if required & set(results.failed) else 0


if __name__ == "__main__":
    sys.exit(main())
