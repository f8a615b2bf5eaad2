"""The job model, its validation and its Redis encoding. No I/O happens here.

A job lives in one Redis hash (``P:{queue}:job:<id>``) whose fields are the
names in :data:`HASH_FIELDS`. The broker's scripts read and write the same
fields; this module is the only Python code that knows their encoding.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from ._errors import InvalidInput
from ._validate import check_int

QUEUE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")

PRIORITY_MIN, PRIORITY_MAX = 0, 255
DEFAULT_PRIORITY = 0
DEFAULT_MAX_RETRIES = 5
MAX_RETRIES_LIMIT = 1000
MAX_IDEMPOTENCY_KEY_LEN = 256
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_DELAY_MS = 366 * 24 * 3600 * 1000  # a year and a day
MAX_ERROR_TEXT = 4096
MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000  # a week

# Ready-set scores order by priority (higher first), then by enqueue sequence
# (older first); ZPOPMIN takes the best. Both parts are integers below 2**53,
# so the double that Redis stores is exact.
SEQ_BITS = 45

FIELDS = (
    "id",
    "queue",
    "payload",
    "state",
    "attempts",
    "max_retries",
    "priority",
    "created_at",
    "idempotency_key",
    "lease",
    "last_error",
    "ready_at",
    "deadline",
    "dead_at",
    "timeout_ms",
)
"""The hash fields :meth:`Job.from_fields` decodes, in its order (the claim script's HMGET)."""


class JobState(enum.StrEnum):
    """Where a job is. A job is always in exactly one of these (or acked and gone)."""

    PENDING = "pending"
    """Built but not yet enqueued."""
    READY = "ready"
    """In the ready set, waiting for a claim."""
    INFLIGHT = "inflight"
    """Claimed by a worker under a lease, until ack, nack or the visibility deadline."""
    DELAYED = "delayed"
    """Waiting for its ready-at time (a delayed enqueue or a retry backoff)."""
    DEAD = "dead"
    """In the dead-letter queue: its attempts are spent (or a handler rejected it)."""
    DONE = "done"
    """Finished: its handler returned. Kept with its ``result`` for the result TTL."""
    CANCELLED = "cancelled"
    """Cancelled before it ran, or aborted while it ran; never retried."""

    @property
    def finished(self) -> bool:
        """Whether the job has ended (done, dead or cancelled)."""
        return self in _ENDED


class EnqueueOptions(TypedDict, total=False):
    """The options of one enqueue, as every client takes them (``**options``):
    ``priority`` 0-255 (higher first), ``delay_ms`` (up to a year) or
    ``ready_at`` (a datetime with a time zone), ``idempotency_key``,
    ``max_retries`` 0-1000, ``timeout_ms`` per attempt (1 ms to a week;
    ``None``: the worker's default), ``job_id`` (32 lowercase hex characters)."""

    priority: int
    delay_ms: int
    ready_at: datetime | None
    idempotency_key: str | None
    max_retries: int
    timeout_ms: int | None
    job_id: str | None


_ENDED = frozenset({JobState.DONE, JobState.DEAD, JobState.CANCELLED})


def new_job_id() -> str:
    """32 lowercase hex characters, random."""
    return secrets.token_hex(16)


def validate_queue_name(name: object) -> str:
    if not isinstance(name, str) or not QUEUE_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInput(
            "queue",
            f"{name!r} is not a queue name: use 1-64 characters of A-Z a-z 0-9 . _ - "
            "(not . or .., which URLs cannot carry)",
        )
    return name


def validate_job_id(job_id: object) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise InvalidInput("id", f"{job_id!r} is not a job id (32 lowercase hex characters)")
    return job_id


def validate_priority(priority: object) -> int:
    return check_int("priority", priority, PRIORITY_MIN, PRIORITY_MAX)


def validate_max_retries(max_retries: object) -> int:
    return check_int("max_retries", max_retries, 0, MAX_RETRIES_LIMIT)


def validate_delay_ms(delay_ms: object) -> int:
    return check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)


def validate_timeout_ms(timeout_ms: object) -> int | None:
    """``None`` (the worker's default applies) or 1 ms to a week."""
    if timeout_ms is None:
        return None
    return check_int("timeout_ms", timeout_ms, 1, MAX_TIMEOUT_MS)


def validate_idempotency_key(key: object) -> str:
    """Return the key; ``""`` means none. Control characters are refused."""
    if key is None:
        return ""
    if not isinstance(key, str):
        raise InvalidInput("idempotency_key", f"must be a string, got {type(key).__name__}")
    if len(key) > MAX_IDEMPOTENCY_KEY_LEN:
        raise InvalidInput(
            "idempotency_key", f"is {len(key)} characters; at most {MAX_IDEMPOTENCY_KEY_LEN}"
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in key):
        raise InvalidInput(
            "idempotency_key", "must not contain control characters or lone surrogates"
        )
    return key


def validate_payload(payload: object, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> bytes:
    """Bytes pass as they are; a str is encoded as UTF-8. Oversize payloads are refused."""
    if isinstance(payload, str):
        try:
            payload = payload.encode()
        except UnicodeEncodeError:
            raise InvalidInput("payload", "is not valid UTF-8 text (lone surrogate)") from None
    elif isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise InvalidInput("payload", f"must be bytes or str, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise InvalidInput("payload", f"is {len(payload)} bytes; at most {max_bytes}")
    return payload


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request to enqueue one job. Build it with :meth:`create`.

    Constructing one directly validates every field too (the payload size is
    checked against the broker's limit at enqueue time).
    """

    id: str
    payload: bytes
    priority: int = DEFAULT_PRIORITY
    max_retries: int = DEFAULT_MAX_RETRIES
    delay_ms: int = 0
    ready_at_ms: int | None = None
    idempotency_key: str = ""
    timeout_ms: int | None = None
    """How long one attempt may run before the worker cancels it; ``None``: the
    worker's default for the queue."""

    def __post_init__(self) -> None:
        validate_job_id(self.id)
        validate_timeout_ms(self.timeout_ms)
        if not isinstance(self.payload, bytes):
            raise InvalidInput("payload", f"must be bytes, got {type(self.payload).__name__}")
        validate_priority(self.priority)
        validate_max_retries(self.max_retries)
        validate_delay_ms(self.delay_ms)
        if self.ready_at_ms is not None:
            check_int("ready_at", self.ready_at_ms, 0, 2**53)
        if validate_idempotency_key(self.idempotency_key) != self.idempotency_key:
            raise InvalidInput("idempotency_key", "must be a string")

    @classmethod
    def create(
        cls,
        payload: object,
        *,
        priority: object = DEFAULT_PRIORITY,
        max_retries: object = DEFAULT_MAX_RETRIES,
        delay_ms: object = 0,
        ready_at: datetime | None = None,
        idempotency_key: object = None,
        timeout_ms: object = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        job_id: str | None = None,
    ) -> JobSpec:
        """Validate every field; raises :class:`InvalidInput` naming the first bad one.

        ``delay_ms`` and ``ready_at`` are exclusive. ``ready_at`` must carry a
        time zone; a time in the past means "ready now".
        """
        ready_at_ms: int | None = None
        if ready_at is not None:
            if delay_ms not in (0, None):
                raise InvalidInput("ready_at", "give either delay_ms or ready_at, not both")
            if not isinstance(ready_at, datetime) or ready_at.tzinfo is None:
                raise InvalidInput("ready_at", "must be a datetime with a time zone")
            ready_at_ms = int(ready_at.timestamp() * 1000)
        return cls(
            id=validate_job_id(job_id) if job_id is not None else new_job_id(),
            payload=validate_payload(payload, max_payload_bytes),
            priority=validate_priority(priority),
            max_retries=validate_max_retries(max_retries),
            delay_ms=validate_delay_ms(0 if delay_ms is None else delay_ms),
            ready_at_ms=ready_at_ms,
            idempotency_key=validate_idempotency_key(idempotency_key),
            timeout_ms=validate_timeout_ms(timeout_ms),
        )


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored in Redis at the moment it was read.

    ``lease`` is the token of the current claim (empty when not in flight);
    :meth:`Broker.ack <relay_trio.broker.Broker.ack>` and friends only act
    while it still matches.
    """

    id: str
    queue: str
    payload: bytes
    state: JobState
    attempts: int
    max_retries: int
    priority: int
    created_at_ms: int
    idempotency_key: str = ""
    lease: str = ""
    last_error: str = ""
    ready_at_ms: int | None = None
    deadline_ms: int | None = None
    dead_at_ms: int | None = None
    timeout_ms: int | None = None
    """Set at enqueue: how long one attempt may run (``None``: the worker's default)."""
    result: bytes | None = None
    """A done job's return value, encoded as ``result_type`` says (``None``: none kept)."""
    result_type: str = ""
    """``"json"`` (``result`` is JSON text) or ``"bytes"`` (the handler returned bytes)."""
    finished_at_ms: int | None = None
    """When the job became done or cancelled (Redis's clock, ms)."""

    @property
    def result_value(self) -> object:
        """The return value: the decoded JSON, or the bytes; ``None`` when none is kept."""
        if self.result is None:
            return None
        if self.result_type == "bytes":
            return self.result
        return json.loads(self.result)

    @property
    def created_at(self) -> datetime:
        return ms_to_datetime(self.created_at_ms)

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes] | list[bytes]) -> Job:
        """Decode a job hash as returned by HGETALL (a mapping, or a flat list from Lua)."""
        items = dict(zip(raw[::2], raw[1::2], strict=True)) if isinstance(raw, list) else raw
        f = {k.decode(): v for k, v in items.items()}

        def text(name: str) -> str:
            value = f.pop(name, b"")
            return value.decode(errors="replace")

        def optional_int(name: str) -> int | None:
            value = f.pop(name, b"")
            return int(value) if value else None

        return cls(
            id=text("id"),
            queue=text("queue"),
            payload=f.pop("payload", b""),
            state=JobState(text("state")),
            attempts=int(f.pop("attempts", b"0")),
            max_retries=int(f.pop("max_retries", b"0")),
            priority=int(f.pop("priority", b"0")),
            created_at_ms=int(f.pop("created_at", b"0")),
            idempotency_key=text("idempotency_key"),
            lease=text("lease"),
            last_error=text("last_error"),
            ready_at_ms=optional_int("ready_at"),
            deadline_ms=optional_int("deadline"),
            dead_at_ms=optional_int("dead_at"),
            timeout_ms=optional_int("timeout_ms"),
            result=f.pop("result", None),
            result_type=text("result_type"),
            finished_at_ms=optional_int("finished_at"),
        )

    @classmethod
    def from_fields(cls, values: Sequence[Any]) -> Job:
        """Decode the values of :data:`FIELDS`, in that order, as HMGET returns them:
        bytes, or ``None`` for an unset field (a script may give a number field as
        an integer).

        The same job as :meth:`from_hash` gives for the whole hash, decoded faster:
        the claim path takes this one. It fills the slots directly rather than
        through the dataclass ``__init__`` (a frozen one sets each field with
        ``object.__setattr__``), which is why :class:`Job` has no ``__post_init__``.
        """
        (
            id_,
            queue,
            payload,
            state,
            attempts,
            max_retries,
            priority,
            created_at,
            idempotency_key,
            lease,
            last_error,
            ready_at,
            deadline,
            dead_at,
            timeout_ms,
        ) = values
        job = _new(cls)
        _set_id(job, id_.decode("utf-8", "replace") if id_ else "")
        _set_queue(job, queue.decode("utf-8", "replace") if queue else "")
        _set_payload(job, b"" if payload is None else payload)
        _set_state(job, _STATES.get(state) or JobState(_text(state)))
        _set_attempts(job, 0 if attempts is None else int(attempts))
        _set_max_retries(job, 0 if max_retries is None else int(max_retries))
        _set_priority(job, 0 if priority is None else int(priority))
        _set_created_at_ms(job, 0 if created_at is None else int(created_at))
        _set_idempotency_key(
            job, idempotency_key.decode("utf-8", "replace") if idempotency_key else ""
        )
        _set_lease(job, lease.decode("utf-8", "replace") if lease else "")
        _set_last_error(job, last_error.decode("utf-8", "replace") if last_error else "")
        _set_ready_at_ms(job, int(ready_at) if ready_at or ready_at == 0 else None)
        _set_deadline_ms(job, int(deadline) if deadline or deadline == 0 else None)
        _set_dead_at_ms(job, int(dead_at) if dead_at or dead_at == 0 else None)
        _set_timeout_ms(job, int(timeout_ms) if timeout_ms else None)
        _set_result(job, None)
        _set_result_type(job, "")
        _set_finished_at_ms(job, None)
        return job

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (payload as UTF-8 text, times as ISO 8601 UTC)."""
        return {
            "id": self.id,
            "queue": self.queue,
            "payload": self.payload.decode(errors="replace"),
            "state": self.state.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "idempotency_key": self.idempotency_key,
            "last_error": self.last_error,
            "timeout_ms": self.timeout_ms,
            "result": self._result_view(),
            "result_type": self.result_type or None,
            "finished_at": None
            if self.finished_at_ms is None
            else ms_to_datetime(self.finished_at_ms).isoformat().replace("+00:00", "Z"),
        }

    def _result_view(self) -> object:
        """The result as JSON shows it: the value, or a bytes result as UTF-8 text."""
        if self.result is None:
            return None
        if self.result_type == "bytes":
            return self.result.decode(errors="replace")
        try:
            return json.loads(self.result)
        except ValueError:
            return self.result.decode(errors="replace")


_STATES: dict[object, JobState] = {s.value.encode(): s for s in JobState}


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode(errors="replace")


# Job's slot setters, in field order, for Job.from_fields
_new = object.__new__
(
    _set_id,
    _set_queue,
    _set_payload,
    _set_state,
    _set_attempts,
    _set_max_retries,
    _set_priority,
    _set_created_at_ms,
    _set_idempotency_key,
    _set_lease,
    _set_last_error,
    _set_ready_at_ms,
    _set_deadline_ms,
    _set_dead_at_ms,
    _set_timeout_ms,
    _set_result,
    _set_result_type,
    _set_finished_at_ms,
) = (Job.__dict__[f.name].__set__ for f in dataclasses.fields(Job))
