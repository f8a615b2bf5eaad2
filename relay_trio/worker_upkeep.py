"""The worker's upkeep: the tasks of :meth:`Worker.serve <relay_trio.Worker.serve>`
that run no job — reaper and promoter passes (:func:`maintain`), the abort check
(:func:`check_aborts`) and the worker's presence in the registry of live workers
(:func:`keep_present`, :func:`leave`; spec section 12).

**Presence.** Every ``presence_interval`` (:class:`~relay_trio.WorkerConfig`, 2 s by default)
the worker beats (:meth:`Broker.beat_worker <relay_trio.Broker.beat_worker>`)
with a description of itself and a TTL of three intervals, so a worker killed
without a word drops out of :meth:`Broker.workers` within three beats. A beat
that fails is logged and counted, and the next one tries again. A worker that
stops cleanly leaves (:meth:`Broker.leave_worker`).

The description: ``id`` (``host:pid:random``), ``host``, ``pid``, ``queues``,
``concurrency`` (per queue), ``version``, ``started_at`` (ISO 8601, UTC),
``running`` (``{queue, id, started_at}`` of each job it holds, at most
:data:`MAX_RUNNING_LISTED`; ``started_at`` is when this worker claimed it),
``running_count`` (all of them), and whatever the worker was
given as ``info`` (``tasks``: the task names of a registry it serves).
"""

from __future__ import annotations

import functools
import itertools
import os
import secrets
import socket
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import trio

from ._errors import RelayError
from .broker_admin import SWEEP_LIMIT
from .broker_workers import WORKER_TTL_MAX_MS, WORKER_TTL_MIN_MS
from .worker_parts import worker_event

if TYPE_CHECKING:
    from .broker import Broker
    from .worker import Worker

MAX_RUNNING_LISTED = 1000
"""The most running jobs a worker's description lists (``running_count`` counts all)."""
LEAVE_TIMEOUT = 1.0


@functools.cache
def version() -> str:
    """relay-trio's version, as installed."""
    try:
        return metadata.version("relay-trio")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def new_worker_id() -> str:
    """``host:pid:random``: unique per worker, readable by people."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def iso(seconds: float) -> str:
    """Unix seconds as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def ttl_ms(interval: float) -> int:
    """The registry keeps a worker for three intervals."""
    return min(WORKER_TTL_MAX_MS, max(WORKER_TTL_MIN_MS, round(interval * 3000)))


def describe(worker: Worker) -> dict[str, Any]:
    """What ``worker`` tells the registry of itself now (see the module doc)."""
    running = worker._running  # by (queue, id): every job it holds
    listed = [
        {"queue": queue, "id": job_id, "started_at": iso(run.claimed_at)}
        for (queue, job_id), run in itertools.islice(running.items(), MAX_RUNNING_LISTED)
    ]
    return {
        **worker.info,
        "id": worker.id,
        "host": worker.host,
        "pid": os.getpid(),
        "queues": [h.queue for h in worker.handlers],
        "concurrency": {h.queue: h.concurrency for h in worker.handlers},
        "version": version(),
        "started_at": iso(worker.started_at),
        "running": listed,
        "running_count": len(running),
    }


async def beat(worker: Worker) -> bool:
    """One beat; False (logged, counted) if it failed."""
    interval = worker.config.presence_interval
    try:
        await worker.broker.beat_worker(worker.id, describe(worker), ttl_ms(interval))
    except RelayError as exc:
        worker.stats.presence_failures += 1
        worker_event("worker.beat_failed", worker=worker.id, interval=interval, error=str(exc))
        return False
    return True


async def keep_present(worker: Worker) -> None:
    """Beat every ``presence_interval`` until cancelled."""
    while True:
        await beat(worker)
        await trio.sleep(worker.config.presence_interval)


async def leave(worker: Worker) -> None:
    """Leave the registry (shielded, at most :data:`LEAVE_TIMEOUT`): at the end of
    :meth:`Worker.serve`; if it fails, the entry expires with its TTL."""
    with trio.CancelScope(shield=True), trio.move_on_after(LEAVE_TIMEOUT) as scope:
        try:
            await worker.broker.leave_worker(worker.id)
        except RelayError as exc:
            worker_event("worker.leave_failed", worker=worker.id, error=str(exc))
    if scope.cancelled_caught:
        worker_event("worker.leave_failed", worker=worker.id, error="timed out")


async def maintain(broker: Broker, queue: str, what: str, interval: float) -> None:
    """Reaper (``what`` = ``reap``) or promoter (``promote``) passes on ``queue``
    every ``interval`` seconds, each repeated at once while it moves a full batch."""
    while True:
        try:
            while True:
                if what == "promote":
                    moved = await broker.promote(queue)
                else:
                    reaped = await broker.reap(queue)
                    moved = reaped.requeued + reaped.dead
                if moved < SWEEP_LIMIT:
                    break
        except Exception as exc:  # RelayError, or anything a foreign key causes
            worker_event(f"{what}.failed", queue=queue, error=str(exc))
        await trio.sleep(interval)


async def check_aborts(worker: Worker) -> None:
    """While jobs run, ask which were aborted (one round trip for every queue)
    and cancel their handlers."""
    running = worker._running  # by (queue, id)
    while True:
        await trio.sleep(worker.config.abort_check_interval)
        if not running:
            continue
        queues = sorted({queue for queue, _ in running})
        try:
            aborted = await worker.broker.aborts(queues)
        except RelayError as exc:
            worker_event("abort_check.failed", error=str(exc))
            continue
        for (queue, job_id), run in list(running.items()):
            if job_id in aborted.get(queue, ()) and not run.aborted:
                worker_event("job.aborted", run.job)
                run.abort()
