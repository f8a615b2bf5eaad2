"""What every peer driver shares: the command line, the tally, the output.

Standard library only: each driver runs in its own virtualenv (the peers pin
different redis-py versions), and imports this file from its own folder.

A driver is run by ``bench_peers.py`` as

    <venv>/bin/python <peer>_driver.py MODE --url URL [options]

with MODE one of

* ``enqueue``  - add ``--jobs`` no-op jobs (t0 = 0) to the queue, as fast as
  the library allows, then exit;
* ``work``     - run ONE worker in this process until ``--jobs`` jobs are done
  (the library's own "done": acked / finished / result recorded), then print
  ``{"elapsed": s, "cpu": s, "handled": n, "latencies": [...]}`` as one JSON
  line. ``elapsed`` runs from just before the worker is started to the moment
  the last job is done; ``cpu`` is this process's CPU time (all threads) over
  the same span. ``--ready-file`` is created once the worker is started;
* ``produce``  - the latency producer: ``--warmup`` + ``--jobs`` jobs, one at a
  time, ``--interval`` seconds apart; each carries ``t0 = time.time()`` taken
  just before its enqueue call (warm-up jobs carry t0 = -1 and are not timed);
* ``versions`` - print the versions of the library and its Redis client.

The handler is the same everywhere: it takes ``t0`` and, when t0 > 0, stores
``time.time() - t0`` (its start minus the enqueue time; same host, same clock).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

QUEUE = "bench"


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("mode", choices=["enqueue", "work", "produce", "versions"])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this long")
    return parser.parse_args()


class Tally:
    """What the handler saw: how many jobs it ran, and the latencies of timed ones."""

    def __init__(self) -> None:
        self.handled = 0
        self.done = 0
        self.latencies: list[float] = []

    def record(self, t0: float) -> None:
        now = time.time()
        self.handled += 1
        if t0 > 0:
            self.latencies.append(now - t0)


class Clock:
    """Wall and CPU time from :meth:`start` to :meth:`stop`."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0


def ready(args: argparse.Namespace) -> None:
    if args.ready_file is not None:
        args.ready_file.touch()


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def emit_result(clock: Clock, tally: Tally) -> None:
    emit(elapsed=clock.wall, cpu=clock.cpu, handled=tally.handled, latencies=tally.latencies)


def emit_versions(library: str, *others: str) -> None:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    emit(
        library=f"{library} {version(library)}",
        deps={name: version(name) for name in others},
        python=platform.python_version(),
        executable=sys.executable,
    )


def timed_out(args: argparse.Namespace, what: str) -> SystemExit:
    return SystemExit(f"{what}: not done within {args.timeout} s")
