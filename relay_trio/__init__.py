"""relay-trio: a distributed task queue on Redis for Trio.

Layers, bottom up: ``job`` and ``keys`` (the model and its Redis layout, no
I/O) → ``calls`` and ``broker_core`` (every queue operation, written once
without I/O: one Lua script per state change) → one thin runtime over it each:
``broker`` (Trio, through the threads of ``redis_io``), ``sync`` (plain Python,
``redis_sync``) and ``aio`` (asyncio, ``redis_aio``). The worker runtime, the
hub and the server stand on the Trio broker; ``tasks`` and ``schedules`` are
plain Python; ``cli`` wires them and nothing imports it. Every error is a
:class:`RelayError` (``_errors`` draws the tree).

Importing the package imports no event loop: the Trio parts (``Broker``,
``Worker``, ``RelayClient`` ...) load when first used, so a Django or FastAPI
process that produces through :mod:`relay_trio.sync` or :mod:`relay_trio.aio`
never imports Trio.
"""

import importlib as _importlib
import typing as _typing

from ._errors import (
    ConfigError,
    DuplicateJob,
    EmbeddedRedisError,
    InvalidInput,
    JobFailed,
    JobFinished,
    JobNotFound,
    ListenError,
    QueueNotEmpty,
    QueueNotFound,
    RedisCommandError,
    RedisOutcomeUnknown,
    RedisUnavailable,
    Reject,
    RelayError,
    ResultTimeout,
)
from .context import current_job
from .job import EnqueueOptions, Job, JobSpec, JobState
from .results import Claim, EnqueueResult, NackResult, QueueStats, RateLimit, ReapResult
from .schedules import Schedule
from .tasks import TaskRegistry

if _typing.TYPE_CHECKING:
    from .broker import Broker, open_broker
    from .client import RelayClient, open_client
    from .redis_io import RedisIO
    from .worker import QueueHandler, Worker, WorkerConfig

_TRIO_PARTS = {
    "Broker": "broker",
    "open_broker": "broker",
    "RelayClient": "client",
    "open_client": "client",
    "RedisIO": "redis_io",
    "QueueHandler": "worker",
    "Worker": "worker",
    "WorkerConfig": "worker",
}


def __getattr__(name: str) -> object:
    """The Trio parts, imported when first used."""
    module = _TRIO_PARTS.get(name)
    if module is None:
        raise AttributeError(f"module 'relay_trio' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "Broker",
    "Claim",
    "ConfigError",
    "DuplicateJob",
    "EmbeddedRedisError",
    "EnqueueOptions",
    "EnqueueResult",
    "InvalidInput",
    "Job",
    "JobFailed",
    "JobFinished",
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
    "Reject",
    "RelayClient",
    "RelayError",
    "ResultTimeout",
    "Schedule",
    "TaskRegistry",
    "Worker",
    "WorkerConfig",
    "current_job",
    "open_broker",
    "open_client",
]
