"""relay-trio: a distributed task queue on Redis for Trio.

Layers, bottom up: ``job`` and ``keys`` (the model and its Redis layout, no
I/O) → ``redis_io`` (the one place Redis calls cross into threads) → ``broker``
(every queue operation, one Lua script per state change; reading, the DLQ and
the admin verbs in ``broker_admin``). The worker runtime, the hub and the server
stand on the broker; ``cli`` wires them and nothing imports it. Every error is
a :class:`RelayError` (``_errors`` draws the tree).
"""

from ._errors import (
    ConfigError,
    DuplicateJob,
    EmbeddedRedisError,
    InvalidInput,
    JobNotFound,
    ListenError,
    QueueNotEmpty,
    QueueNotFound,
    RedisCommandError,
    RedisOutcomeUnknown,
    RedisUnavailable,
    RelayError,
)
from .broker import (
    Broker,
    Claim,
    EnqueueResult,
    NackResult,
    QueueStats,
    RateLimit,
    ReapResult,
    open_broker,
)
from .client import RelayClient, open_client
from .job import Job, JobSpec, JobState
from .redis_io import RedisIO
from .worker import QueueHandler, Worker, WorkerConfig

__all__ = [
    "Broker",
    "Claim",
    "ConfigError",
    "DuplicateJob",
    "EmbeddedRedisError",
    "EnqueueResult",
    "InvalidInput",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "ListenError",
    "NackResult",
    "QueueHandler",
    "QueueNotEmpty",
    "QueueNotFound",
    "QueueStats",
    "RateLimit",
    "ReapResult",
    "RedisCommandError",
    "RedisIO",
    "RedisOutcomeUnknown",
    "RedisUnavailable",
    "RelayClient",
    "RelayError",
    "Worker",
    "WorkerConfig",
    "open_broker",
    "open_client",
]
