"""The broker's logic, once, for every runtime: :class:`BrokerCore`.

The core holds the broker's settings and builds every operation (see
:mod:`relay_trio.calls`): validation, each script's KEYS and ARGV, decoding,
typed errors. It does no I/O and holds no connection; the Trio
:class:`~relay_trio.broker.Broker`, :class:`relay_trio.sync.Client` and
:class:`relay_trio.aio.Client` each drive its operations with their own Redis
client. Any number of cores, in any number of processes, may share one Redis.
"""

from __future__ import annotations

from . import job as jobmod
from ._errors import ConfigError
from ._validate import check_int
from .broker_jobs import MAX_VISIBILITY_MS
from .broker_workers import WorkerOps
from .keys import DEFAULT_PREFIX, Keyspace
from .results import BrokerEvents, NoEvents

DEFAULT_VISIBILITY_MS = 30_000
DEFAULT_DEDUP_TTL_S = 24 * 3600
DEFAULT_BACKOFF_BASE_MS = 1000
DEFAULT_BACKOFF_CAP_MS = 10 * 60 * 1000
DEFAULT_DLQ_MAX = 10_000
DLQ_MAX_LIMIT = 10_000_000
DEFAULT_DLQ_TTL_S = 30 * 24 * 3600
DLQ_TTL_MIN_S, DLQ_TTL_MAX_S = 60, 10 * 366 * 24 * 3600
DEFAULT_RESULT_TTL_S = 24 * 3600
RESULT_TTL_MAX_S = 366 * 24 * 3600
PAYLOAD_MAX = 512 * 1024 * 1024  # Redis's own limit for a string
MAX_BACKOFF_MS = 24 * 3600 * 1000


def _setting(name: str, value: int, low: int, high: int) -> int:
    return check_int(name, value, low, high, error=ConfigError)


class BrokerCore(WorkerOps):
    """The settings and operations of a broker, without I/O: the job lifecycle
    (:class:`~relay_trio.broker_jobs.JobOps`), reading and admin
    (:class:`~relay_trio.broker_admin.QueueAdmin`), schedules
    (:class:`~relay_trio.broker_schedules.ScheduleOps`) and the worker registry
    (:class:`~relay_trio.broker_workers.WorkerOps`), each extending the last."""

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
        max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
        visibility_ms: int = DEFAULT_VISIBILITY_MS,
        dlq_max: int = DEFAULT_DLQ_MAX,
        dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
        result_ttl_s: int = DEFAULT_RESULT_TTL_S,
        events: BrokerEvents | None = None,
    ) -> None:
        """Every setting has a range, checked here (:class:`ConfigError` naming it):
        ``prefix`` 1-64 characters of ``A-Z a-z 0-9 . _ : -`` (an
        :class:`InvalidInput`, as the command line takes it as input);
        ``dedup_ttl_s`` (how long an idempotency key is kept) 1 s to ten years;
        ``max_payload_bytes`` 1 to 512 MiB; ``backoff_base_ms`` and
        ``backoff_cap_ms`` 1 ms to a day; ``visibility_ms`` (the default lease)
        1 ms to a day; ``dlq_max`` (1 to 10 million) and ``dlq_ttl_s`` (a minute
        to ten years) bound each queue's DLQ: beyond them the oldest dead jobs
        are dropped; ``result_ttl_s`` (0 to a year) how long a done job is kept
        with its result (0: deleted at ack). ``events`` is told of every
        operation (metrics)."""
        self.events: BrokerEvents = events or NoEvents()
        self.keys = Keyspace(prefix)
        self.dedup_ttl_s = _setting("dedup_ttl_s", dedup_ttl_s, 1, DLQ_TTL_MAX_S)
        self.max_payload_bytes = _setting("max_payload_bytes", max_payload_bytes, 1, PAYLOAD_MAX)
        self.backoff_base_ms = _setting("backoff_base_ms", backoff_base_ms, 1, MAX_BACKOFF_MS)
        self.backoff_cap_ms = _setting("backoff_cap_ms", backoff_cap_ms, 1, MAX_BACKOFF_MS)
        self.visibility_ms = _setting("visibility_ms", visibility_ms, 1, MAX_VISIBILITY_MS)
        self.dlq_max = _setting("dlq_max", dlq_max, 1, DLQ_MAX_LIMIT)
        self.dlq_ttl_s = _setting("dlq_ttl_s", dlq_ttl_s, DLQ_TTL_MIN_S, DLQ_TTL_MAX_S)
        self.result_ttl_s = _setting("result_ttl_s", result_ttl_s, 0, RESULT_TTL_MAX_S)
