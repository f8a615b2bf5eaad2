"""Every Redis key relay-trio uses, built in one place.

Each key that belongs to a queue carries the queue name as a Redis Cluster hash
tag (``relay:{emails}:ready``), so one queue's keys share a slot and every script
touches one slot. The queue registry (``relay:queues``) is the one key outside
any queue; scripts never touch it, callers add to it beside the script call.

========================  ======  ==========================================
key                       type    content
========================  ======  ==========================================
``P:{q}:job:<id>``        hash    the job (see :mod:`relay_trio.job`)
``P:{q}:ready``           zset    ready ids; score = priority then sequence
``P:{q}:inflight``        zset    claimed ids; score = visibility deadline (ms)
``P:{q}:delayed``         zset    waiting ids; score = ready-at (ms)
``P:{q}:dlq``             list    dead ids, oldest first
``P:{q}:dedup:<key>``     string  id that won the idempotency key (expires)
``P:{q}:processed``       int     lifetime acks
``P:{q}:dead``            int     lifetime dead-letterings
``P:{q}:seq``             int     enqueue sequence (FIFO within a priority)
``P:{q}:ratelimit``       hash    token bucket: rate, burst, tokens, ts
``P:{q}:paused``          string  present while the queue is paused
``P:{q}:wake``            list    wake-up hints for idle workers (at most 16)
``P:{q}:dlq_trimmed``     int     lifetime dead jobs dropped by the DLQ's cap or TTL
``P:{q}:done``            zset    done jobs kept with their result; score = expiry (ms)
``P:{q}:cancelled``       zset    cancelled jobs; score = expiry (ms)
``P:{q}:aborting``        zset    in-flight jobs to abort; score = when asked (ms)
``P:{q}:ended:<id>``      list    one token per waiter for the job's end (expires)
``P:queues``              set     registry of queue names
``P:{schedules}:defs``    hash    cron schedules: name -> JSON
``P:{schedules}:created`` hash    name -> when the schedule was stored (ms)
``P:{schedules}:fired``   hash    name -> its last fire time (ms)
``P:{workers}:seen``      zset    live worker ids; score = last heartbeat (ms)
``P:{workers}:info:<id>`` string  a worker's JSON description (expires with it)
========================  ======  ==========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import InvalidInput
from .job import validate_queue_name

DEFAULT_PREFIX = "relay"
PREFIX_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
"""A prefix: 1-64 characters of ``A-Z a-z 0-9 . _ : -``. Braces are refused: a
``{`` in the prefix would become the Cluster hash tag of every key, putting
every queue into one slot."""


def validate_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not PREFIX_RE.fullmatch(prefix):
        raise InvalidInput(
            "prefix",
            f"{prefix!r} is not a key prefix: use 1-64 characters of A-Z a-z 0-9 . _ : - "
            "(no braces: they would put every queue into one Redis Cluster slot)",
        )
    return prefix


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue. ``base`` ends with a colon and prefixes job and dedup keys."""

    base: str

    @property
    def ready(self) -> str:
        return self.base + "ready"

    @property
    def inflight(self) -> str:
        return self.base + "inflight"

    @property
    def delayed(self) -> str:
        return self.base + "delayed"

    @property
    def dlq(self) -> str:
        return self.base + "dlq"

    @property
    def processed(self) -> str:
        return self.base + "processed"

    @property
    def dead(self) -> str:
        return self.base + "dead"

    @property
    def seq(self) -> str:
        return self.base + "seq"

    @property
    def ratelimit(self) -> str:
        return self.base + "ratelimit"

    @property
    def paused(self) -> str:
        return self.base + "paused"

    @property
    def wake(self) -> str:
        return self.base + "wake"

    @property
    def dlq_trimmed(self) -> str:
        return self.base + "dlq_trimmed"

    @property
    def done(self) -> str:
        return self.base + "done"

    @property
    def cancelled(self) -> str:
        return self.base + "cancelled"

    @property
    def aborting(self) -> str:
        return self.base + "aborting"

    def ended(self, job_id: str) -> str:
        return self.base + "ended:" + job_id

    def all_fixed(self) -> tuple[str, ...]:
        """Every key of the queue except job and dedup keys (for deleting a queue)."""
        return (
            self.ready,
            self.inflight,
            self.delayed,
            self.dlq,
            self.done,
            self.cancelled,
            self.processed,
            self.dead,
            self.seq,
            self.ratelimit,
            self.paused,
            self.wake,
            self.dlq_trimmed,
            self.aborting,
        )

    def job(self, job_id: str) -> str:
        return self.base + "job:" + job_id

    def dedup(self, idempotency_key: str) -> str:
        return self.base + "dedup:" + idempotency_key


@dataclass(frozen=True, slots=True)
class Keyspace:
    """Builds keys under one prefix (default ``relay``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    @property
    def registry(self) -> str:
        return self.prefix + ":queues"

    @property
    def schedules(self) -> str:
        return self.prefix + ":{schedules}:defs"

    @property
    def schedules_created(self) -> str:
        return self.prefix + ":{schedules}:created"

    @property
    def schedules_fired(self) -> str:
        return self.prefix + ":{schedules}:fired"

    @property
    def workers_seen(self) -> str:
        return self.prefix + ":{workers}:seen"

    @property
    def worker_info_prefix(self) -> str:
        return self.prefix + ":{workers}:info:"

    def queue(self, name: str) -> QueueKeys:
        """Keys of queue ``name``; :class:`InvalidInput` (field ``queue``) if it
        is not a queue name: no key is ever built for one."""
        return QueueKeys(f"{self.prefix}:{{{validate_queue_name(name)}}}:")
