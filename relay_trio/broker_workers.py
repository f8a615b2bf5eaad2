"""The registry of live worker processes, sans I/O (spec section 12).

:class:`WorkerOps` extends :class:`~relay_trio.broker_schedules.ScheduleOps` for
:class:`~relay_trio.broker_core.BrokerCore`. Each worker process beats every
few seconds: its description (JSON: id, host, pid, queues, concurrency,
version, started_at, running jobs ...) is stored under a key that expires after
its own TTL, and its id is scored with the Redis time in a zset, so listing
needs no SCAN and a worker killed without a word disappears once its TTL
passes (its info key is the truth; the zset only indexes it). Both keys carry
the ``{workers}`` hash tag (one Cluster slot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInput
from ._validate import check_int
from .broker_schedules import ScheduleOps
from .calls import Op, script

WORKER_TTL_MIN_MS, WORKER_TTL_MAX_MS = 100, 3_600_000
MAX_WORKER_INFO = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker as the registry holds it: ``info`` is what it said of
    itself, ``last_seen_ms`` its last heartbeat (Redis's clock)."""

    id: str
    last_seen_ms: int
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.info, "id": self.id, "last_seen_ms": self.last_seen_ms}


class WorkerOps(ScheduleOps):
    """The worker registry: see the module doc."""

    def beat_worker(self, worker_id: str, info: dict[str, Any], ttl_ms: int) -> Op[int]:
        """Register (or refresh) worker ``worker_id`` with ``info`` (JSON-encodable,
        at most 1 MiB encoded) for ``ttl_ms`` (100 ms to an hour). Returns the
        Redis time (ms)."""
        text = _encode(worker_id, info)
        check_int("ttl_ms", ttl_ms, WORKER_TTL_MIN_MS, WORKER_TTL_MAX_MS)
        k = self.keys
        (now,) = yield script(
            "worker_beat",
            [k.workers_seen, k.worker_info_prefix + worker_id],
            [worker_id, text, ttl_ms, WORKER_TTL_MAX_MS],
        )
        return int(now)

    def leave_worker(self, worker_id: str) -> Op[None]:
        """Remove worker ``worker_id`` from the registry (a clean shutdown)."""
        _check_id(worker_id)
        keys = [self.keys.workers_seen, self.keys.worker_info_prefix + worker_id]
        yield script("worker_beat", keys, [worker_id, "", 0, WORKER_TTL_MAX_MS])

    def workers(self) -> Op[list[WorkerInfo]]:
        """The live workers (their own TTL has not passed since their last beat),
        by id; an entry whose description does not decode (written by something
        else) is left out."""
        k = self.keys
        (flat,) = yield script("workers", [k.workers_seen], [])
        out: list[WorkerInfo] = []
        for worker_id, seen, text in zip(flat[::3], flat[1::3], flat[2::3], strict=True):
            try:
                info = json.loads(text)
            except (ValueError, UnicodeError):
                continue
            if isinstance(info, dict):
                out.append(WorkerInfo(worker_id.decode(), int(float(seen)), info))
        return sorted(out, key=lambda w: w.id)


def _check_id(worker_id: object) -> str:
    if not isinstance(worker_id, str) or not 1 <= len(worker_id) <= 200 or "{" in worker_id:
        raise InvalidInput("worker_id", f"{worker_id!r}: 1-200 characters, no braces")
    return worker_id


def _encode(worker_id: str, info: dict[str, Any]) -> str:
    _check_id(worker_id)
    try:
        text = json.dumps(info, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("info", f"not JSON: {exc}") from exc
    if len(text) > MAX_WORKER_INFO:
        raise InvalidInput("info", f"{len(text)} bytes encoded; at most {MAX_WORKER_INFO}")
    return text
