"""The broker: every queue operation, each one atomic in Redis.

Every state change that touches more than one key is one Lua script from
``relay_trio/lua/`` (each names its KEYS and ARGV in a header). Deadlines and
scores come from the Redis server's clock, read inside the scripts, so clock
skew between hosts cannot reap a live job early. Every key of a queue carries
the ``{queue}`` hash tag; no operation ever SCANs the keyspace.

Delivery is at-least-once: a claimed job is leased for a visibility timeout; if
it is neither acked nor extended by then, :meth:`Broker.reap` gives it back to
``ready``. ``ack``, ``nack`` and ``extend`` act only while the caller's lease is
still the job's lease, so a late answer from a worker whose job was reaped and
claimed again never touches the new claim.

Cancellation: a broker call that is cancelled still finishes its Redis command
(see :mod:`relay_trio.redis_io`). A claim whose result the caller never used
leaves its jobs in flight; they return to ``ready`` at their deadline. Nothing
is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from . import job as jobmod
from ._errors import ConfigError
from ._validate import check_int
from .broker_admin import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    MAX_DLQ_OFFSET,
    RATE_MAX,
    RATE_MIN,
    SWEEP_LIMIT,
    QueueAdmin,
)
from .broker_jobs import (
    ENQUEUE_CHUNK,
    MAX_CLAIM,
    MAX_ENQUEUE_MANY,
    MAX_VISIBILITY_MS,
    RELEASED_TEXT,
    JobLifecycle,
)
from .keys import DEFAULT_PREFIX, Keyspace
from .redis_io import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    RedisIO,
)
from .results import (
    BrokerEvents,
    Claim,
    EnqueueResult,
    NackResult,
    NoEvents,
    QueueStats,
    RateLimit,
    ReapResult,
)

DEFAULT_VISIBILITY_MS = 30_000
DEFAULT_DEDUP_TTL_S = 24 * 3600
DEFAULT_BACKOFF_BASE_MS = 1000
DEFAULT_BACKOFF_CAP_MS = 10 * 60 * 1000
DEFAULT_DLQ_MAX = 10_000
DLQ_MAX_LIMIT = 10_000_000
DEFAULT_DLQ_TTL_S = 30 * 24 * 3600
DLQ_TTL_MIN_S, DLQ_TTL_MAX_S = 60, 10 * 366 * 24 * 3600
PAYLOAD_MAX = 512 * 1024 * 1024  # Redis's own limit for a string
MAX_BACKOFF_MS = 24 * 3600 * 1000


def _setting(name: str, value: int, low: int, high: int) -> int:
    return check_int(name, value, low, high, error=ConfigError)


class Broker(JobLifecycle, QueueAdmin):
    """Queue operations on one Redis: :func:`open_broker`, or :meth:`from_url`, or
    wrap a :class:`RedisIO` of your own.

    The broker holds no state of its own beyond configuration: any number of
    brokers, in any number of processes, may share one Redis. Its operations
    come from :class:`~relay_trio.broker_jobs.JobLifecycle` (enqueue, claim,
    ack, nack, release, extend, waiting for work) and
    :class:`~relay_trio.broker_admin.QueueAdmin` (sweeps, reading, the DLQ,
    pause, rate limits, delete).
    """

    def __init__(
        self,
        io: RedisIO,
        *,
        prefix: str = DEFAULT_PREFIX,
        dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
        max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
        visibility_ms: int = DEFAULT_VISIBILITY_MS,
        dlq_max: int = DEFAULT_DLQ_MAX,
        dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
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
        are dropped. ``events`` is told of every operation (metrics)."""
        self.io = io
        self.events: BrokerEvents = events or NoEvents()
        self.keys = Keyspace(prefix)
        self.dedup_ttl_s = _setting("dedup_ttl_s", dedup_ttl_s, 1, DLQ_TTL_MAX_S)
        self.max_payload_bytes = _setting("max_payload_bytes", max_payload_bytes, 1, PAYLOAD_MAX)
        self.backoff_base_ms = _setting("backoff_base_ms", backoff_base_ms, 1, MAX_BACKOFF_MS)
        self.backoff_cap_ms = _setting("backoff_cap_ms", backoff_cap_ms, 1, MAX_BACKOFF_MS)
        self.visibility_ms = _setting("visibility_ms", visibility_ms, 1, MAX_VISIBILITY_MS)
        self.dlq_max = _setting("dlq_max", dlq_max, 1, DLQ_MAX_LIMIT)
        self.dlq_ttl_s = _setting("dlq_ttl_s", dlq_ttl_s, DLQ_TTL_MIN_S, DLQ_TTL_MAX_S)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        prefix: str = DEFAULT_PREFIX,
        dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
        max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
        backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
        backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
        visibility_ms: int = DEFAULT_VISIBILITY_MS,
        dlq_max: int = DEFAULT_DLQ_MAX,
        dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
        events: BrokerEvents | None = None,
    ) -> Broker:
        """A broker on Redis ``url``; nothing connects until the first call, and
        :meth:`aclose` closes its connections (:func:`open_broker` does both).

        The connection options go to :meth:`RedisIO.from_url` (``socket_timeout``
        bounds every command, ``connect_timeout`` every connect, in seconds;
        ``max_connections`` the pool), the rest to the constructor. A URL
        redis-py cannot use is :class:`InvalidInput` (``redis_url``)."""
        io = RedisIO.from_url(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        return cls(
            io,
            prefix=prefix,
            dedup_ttl_s=dedup_ttl_s,
            max_payload_bytes=max_payload_bytes,
            backoff_base_ms=backoff_base_ms,
            backoff_cap_ms=backoff_cap_ms,
            visibility_ms=visibility_ms,
            dlq_max=dlq_max,
            dlq_ttl_s=dlq_ttl_s,
            events=events,
        )

    async def ping(self) -> None:
        """Check that Redis answers (one ``PING``): :class:`RedisUnavailable` (or
        another :class:`RelayError`) if it does not."""
        await self.io.ping()

    async def aclose(self) -> None:
        """Close every pooled connection; calls still running finish first."""
        await self.io.aclose()


@asynccontextmanager
async def open_broker(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    prefix: str = DEFAULT_PREFIX,
    dedup_ttl_s: int = DEFAULT_DEDUP_TTL_S,
    max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES,
    backoff_base_ms: int = DEFAULT_BACKOFF_BASE_MS,
    backoff_cap_ms: int = DEFAULT_BACKOFF_CAP_MS,
    visibility_ms: int = DEFAULT_VISIBILITY_MS,
    dlq_max: int = DEFAULT_DLQ_MAX,
    dlq_ttl_s: int = DEFAULT_DLQ_TTL_S,
    events: BrokerEvents | None = None,
) -> AsyncIterator[Broker]:
    """A :class:`Broker` on ``url`` for the duration of the block (the options are
    :meth:`Broker.from_url`'s); its connections are closed on exit."""
    broker = Broker.from_url(
        url,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        prefix=prefix,
        dedup_ttl_s=dedup_ttl_s,
        max_payload_bytes=max_payload_bytes,
        backoff_base_ms=backoff_base_ms,
        backoff_cap_ms=backoff_cap_ms,
        visibility_ms=visibility_ms,
        dlq_max=dlq_max,
        dlq_ttl_s=dlq_ttl_s,
        events=events,
    )
    try:
        yield broker
    finally:
        await broker.aclose()


__all__ = [
    "BURST_MAX",
    "DLQ_PAGE_DEFAULT",
    "DLQ_PAGE_MAX",
    "ENQUEUE_CHUNK",
    "MAX_CLAIM",
    "MAX_DLQ_OFFSET",
    "MAX_ENQUEUE_MANY",
    "MAX_VISIBILITY_MS",
    "RATE_MAX",
    "RATE_MIN",
    "RELEASED_TEXT",
    "SWEEP_LIMIT",
    "Broker",
    "BrokerEvents",
    "Claim",
    "EnqueueResult",
    "NackResult",
    "QueueStats",
    "RateLimit",
    "ReapResult",
    "open_broker",
]
