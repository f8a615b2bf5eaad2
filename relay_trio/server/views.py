"""How the API shows jobs and workers as JSON (no I/O, no Quart).

A job is :meth:`Job.to_dict <relay_trio.job.Job.to_dict>` and the times that
order its state's list: ``ready_at`` (delayed), ``deadline`` (in flight),
``dead_at`` (dead), each ISO 8601 UTC or null. In a list its payload is cut to
:data:`~.limits.LIST_PAYLOAD_BYTES` (at a character boundary), with
``payload_bytes`` (its whole size) and ``payload_truncated``; the single-job
endpoint shows it whole.

A worker is what it said of itself in its heartbeat (passed through), with
``id``, ``last_seen`` (its last heartbeat, ISO 8601 UTC, Redis's clock) and
``last_seen_ms``; the fields every worker describes are there even when one
left them out (null, or an empty list for ``queues`` and ``running``).
"""

from __future__ import annotations

from typing import Any

from ..broker_workers import WorkerInfo
from ..job import Job, ms_to_datetime
from .limits import LIST_PAYLOAD_BYTES

WORKER_DEFAULTS: dict[str, Any] = {
    "host": None,
    "pid": None,
    "queues": [],
    "concurrency": None,
    "running": [],
    "started_at": None,
    "version": None,
}
"""The fields of every worker in ``GET /api/workers``, as shown when a worker's
own description lacks them."""


def iso_ms(ms: int | None) -> str | None:
    """``ms`` (since the epoch) as ISO 8601 UTC with a ``Z``, or None."""
    if ms is None:
        return None
    return ms_to_datetime(ms).isoformat().replace("+00:00", "Z")


def job_view(job: Job, *, preview: int | None = None) -> dict[str, Any]:
    """``job`` as JSON; with ``preview`` (bytes), its payload cut for a list."""
    out: dict[str, Any] = dict(job.to_dict())
    out["ready_at"] = iso_ms(job.ready_at_ms)
    out["deadline"] = iso_ms(job.deadline_ms)
    out["dead_at"] = iso_ms(job.dead_at_ms)
    if preview is not None:
        size = len(job.payload)
        out["payload_bytes"] = size
        out["payload_truncated"] = size > preview
        if size > preview:
            out["payload"] = cut_text(job.payload, preview)
    return out


def list_view(job: Job) -> dict[str, Any]:
    """A job as a list shows it: its payload cut to :data:`LIST_PAYLOAD_BYTES`."""
    return job_view(job, preview=LIST_PAYLOAD_BYTES)


def cut_text(data: bytes, limit: int) -> str:
    """The first ``limit`` bytes of ``data`` as text, never ending inside a UTF-8
    character (a cut one is left out; other bad bytes read as U+FFFD)."""
    end = limit
    if end < len(data):
        # a continuation byte (10xxxxxx) at the cut: back off to its lead byte
        while end > 0 and limit - end < 3 and data[end] & 0xC0 == 0x80:
            end -= 1
    return data[:end].decode(errors="replace")


def worker_view(worker: WorkerInfo) -> dict[str, Any]:
    """A live worker as ``GET /api/workers`` shows it."""
    return {
        **WORKER_DEFAULTS,
        **worker.info,
        "id": worker.id,
        "last_seen": iso_ms(worker.last_seen_ms),
        "last_seen_ms": worker.last_seen_ms,
    }
