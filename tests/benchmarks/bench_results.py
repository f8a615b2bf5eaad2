"""What keeping results costs the worker: a benchmark, not a test.

    .venv/bin/python tests/benchmarks/bench_results.py [--jobs N] [--repeat R]
        [--baseline REF] [--write]

One relay-trio worker process (the peer benchmark's driver,
``peers/relay_trio_driver.py``: C = 200, no-op handler) drains a backlog of
``--jobs`` jobs, in four variants measured in the same run on the same private
redis-server, interleaved, ``--repeat`` rounds (median reported):

* ``baseline``: the code at git ``--baseline`` (default: the commit before issue
  11), checked out into a temporary worktree and put first on PYTHONPATH;
* ``result_ttl=0``: this code, results not kept (the job deleted at ack, as
  before);
* ``results kept``: this code with the default result TTL (24 h), the handler
  returning None;
* ``results kept, small dict``: the handler returns ``{"ok": true, "n": ...}``.

Goal (issue 11): ``result_ttl=0`` loses at most 5 % against the baseline; the
cost of keeping results is measured and recorded. ``--write`` replaces the
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import redis
from benchdoc import DOC, write_section  # a sibling script, not a package

from relay_trio.embedded import embedded_redis

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "benchmarks" / "peers" / "relay_trio_driver.py"
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
BASELINE = "c14a413"
"""main before issue 11 (tasks, results, schedules, cancel) began."""

VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {},
    "result_ttl=0": {"RELAY_BENCH_RESULT_TTL": "0"},
    "results kept (24 h), None": {"RELAY_BENCH_RESULT_TTL": "86400"},
    "results kept (24 h), small dict": {
        "RELAY_BENCH_RESULT_TTL": "86400",
        "RELAY_BENCH_RESULT": "small",
    },
}


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The code at ``ref`` in a temporary git worktree (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="relay-baseline-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), ref],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False
            )


def driver(mode: str, url: str, jobs: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, str(DRIVER), mode, "--url", url, "--jobs", str(jobs)]
        + (["--concurrency", "200"] if mode == "work" else []),
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def check_baseline(baseline: Path) -> None:
    """The baseline variant really imports the worktree's relay_trio (the driver
    runs as a script: its own folder, then PYTHONPATH, then the editable install)."""
    done = subprocess.run(
        [sys.executable, "-c", "import relay_trio; print(relay_trio.__file__)"],
        capture_output=True,
        text=True,
        cwd=DRIVER.parent,
        env={**os.environ, "PYTHONPATH": str(baseline)},
        check=True,
    )
    if not done.stdout.strip().startswith(str(baseline)):
        raise SystemExit(f"the baseline imports {done.stdout.strip()}, not the worktree")


def run(
    url: str, jobs: int, repeat: int, baseline: Path, names: list[str]
) -> dict[str, list[float]]:
    check_baseline(baseline)
    client = redis.Redis.from_url(url)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names:
            extra = VARIANTS[name]
            env = dict(extra)
            if name == "baseline":
                env["PYTHONPATH"] = str(baseline)
            client.flushall()
            driver("enqueue", url, jobs, {})
            out = driver("work", url, jobs, env)
            rate = jobs / out["elapsed"]
            rates[name].append(rate)
            print(f"round {round_ + 1}: {name:34} {rate:>9,.0f} jobs/s", flush=True)
    client.close()
    return rates


def report(rates: dict[str, list[float]], url: str, args: argparse.Namespace) -> str:
    info = redis.Redis.from_url(url).info("server")
    base = statistics.median(rates["baseline"])
    lines = [
        BEGIN,
        "## Keeping results: the worker's cost (issue 11)",
        "",
        "Command: `.venv/bin/python tests/benchmarks/bench_results.py "
        f"--jobs {args.jobs} --repeat {args.repeat} --baseline {args.baseline} "
        f"--variants {len(rates)} --write`",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Redis {info['redis_version']} on the same host. "
        f"One worker process (C = 200) drains {args.jobs:,} queued no-op jobs; the "
        f"variants alternate, {args.repeat} rounds, medians. `baseline` is the code at "
        f"`{args.baseline}` (before issue 11) run from a git worktree in the same run.",
        "",
        "| variant | jobs/s (median) | vs baseline | runs |",
        "|---|---:|---:|---|",
    ]
    for name, values in rates.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        lines.append(f"| {name} | {median:,.0f} | {median / base:.1%} | {runs} |")
    lines += [
        "",
        "Goal: `result_ttl=0` within 5 % of the baseline. Keeping a result turns the "
        "ack's DEL into HSET + PEXPIRE + ZADD per job in Redis (on the same 2 cores here), "
        "and a returned value is JSON-encoded once by the worker and sent with the ack; "
        "`--result-ttl 0` on the worker keeps the old cost for queues that need no results.",
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE, help="git ref to compare with")
    parser.add_argument(
        "--variants", type=int, default=len(VARIANTS), help="the first N variants only (2-4)"
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    names = list(VARIANTS)[: max(2, args.variants)]
    with worktree(args.baseline) as tree, embedded_redis() as url:
        rates = run(url, args.jobs, args.repeat, tree, names)
        section = report(rates, url, args)
    print(section)
    if args.write:
        write_section(BEGIN, END, section)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
