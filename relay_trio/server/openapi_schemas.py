"""The components of the OpenAPI document (:mod:`.openapi`): the schema of every
body, the parameters, and the small builders both modules use.

Request schemas state exactly what :mod:`.api` accepts (``additionalProperties:
false``, every bound, every required field); every bound comes from
:mod:`.limits`, where the API that enforces it takes it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import job as jobmod
from ..broker_jobs import MAX_WAIT_S
from ..job import JobState
from ..schedules import MAX_CRON_LEN, MAX_TIMEZONE_LEN
from .limits import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    LIST_PAYLOAD_BYTES,
    LISTED_STATES,
    MAX_BULK_BYTES,
    MAX_DLQ_OFFSET,
    MAX_ENQUEUE_MANY,
    RATE_MAX,
    RATE_MIN,
)
from .views import WORKER_DEFAULTS

Schema = dict[str, Any]

NAME_PATTERN = "^(?!\\.\\.?$)[A-Za-z0-9._-]{1,64}$"
"""A queue's or a schedule's name: 1-64 of ``A-Z a-z 0-9 . _ -``, not ``.`` or ``..``."""
CRON_FORMAT = "cron"
"""The ``format`` of a cron expression (an annotation: JSON Schema cannot say it;
no pattern or length either, which a generator would take over the format)."""
TIME_ZONE_FORMAT = "iana-time-zone"
"""The ``format`` of a time zone name (an annotation: the tz database says which)."""


def schedule_payload_bytes(max_payload_bytes: int) -> int:
    """The largest payload a schedule takes (:mod:`.api_schedules` enforces it) on a
    server whose jobs take ``max_payload_bytes``: a schedule is stored with the
    broker's default limit, whatever the server's."""
    return min(max_payload_bytes, jobmod.DEFAULT_MAX_PAYLOAD_BYTES)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def integer(low: int, high: int, description: str = "") -> Schema:
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    if description:
        schema["description"] = description
    return schema


def obj(properties: Schema, required: Iterable[str], *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def json_body(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def schemas(max_payload_bytes: int, schedule_payload_bytes: int) -> Schema:
    job_id: Schema = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    payload: Schema = {
        "type": "string",
        "maxLength": max_payload_bytes,
        "description": f"UTF-8 text, at most {max_payload_bytes} bytes once encoded (413 above)",
    }
    priority = integer(jobmod.PRIORITY_MIN, jobmod.PRIORITY_MAX, "higher first")
    delay_ms = integer(0, jobmod.MAX_DELAY_MS, "milliseconds before the job is ready")
    max_retries = integer(0, jobmod.MAX_RETRIES_LIMIT, "a nack at attempts >= this dead-letters")
    idempotency_key: Schema = {
        "type": ["string", "null"],
        "maxLength": jobmod.MAX_IDEMPOTENCY_KEY_LEN,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        "description": "no control characters; empty or null means none",
    }
    count = integer(1, MAX_ENQUEUE_MANY, f"count x payload bytes at most {MAX_BULK_BYTES} (413)")
    timeout_ms: Schema = {
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": jobmod.MAX_TIMEOUT_MS,
        "description": "milliseconds one attempt may run before the worker cancels it "
        "(at most a week); null or absent: the worker's default",
    }
    job_fields = {
        "payload": payload,
        "priority": priority,
        "delay_ms": delay_ms,
        "idempotency_key": idempotency_key,
        "max_retries": max_retries,
        "timeout_ms": timeout_ms,
    }
    counter: Schema = {"type": "integer", "minimum": 0}
    when: Schema = {"type": ["string", "null"], "format": "date-time"}
    job = obj(
        {
            "id": job_id,
            "queue": {"type": "string"},
            "payload": {"type": "string"},
            "state": ref("JobState"),
            "attempts": counter,
            "max_retries": counter,
            "priority": priority,
            "created_at": {"type": "string", "format": "date-time"},
            "idempotency_key": {"type": "string"},
            "last_error": {"type": "string"},
            "timeout_ms": {
                "type": ["integer", "null"],
                "description": "per-attempt timeout; null: the worker's default",
            },
            "result": {
                "description": "a done job's return value (JSON; a bytes result as "
                "UTF-8 text); null if none is kept"
            },
            "result_type": {
                "type": ["string", "null"],
                "enum": ["json", "bytes", None],
                "description": "how the handler's return value was kept; null: none",
            },
            "finished_at": when | {"description": "when the job became done or cancelled"},
            "ready_at": when | {"description": "a delayed job: when it becomes ready"},
            "deadline": when
            | {"description": "a job in flight: when its lease ends unless extended"},
            "dead_at": when | {"description": "a dead job: when it was dead-lettered"},
        },
        ["id", "queue", "payload", "state", "attempts", "max_retries", "priority"],
    )
    listed = {
        "payload": {
            "type": "string",
            "description": f"the first {LIST_PAYLOAD_BYTES} bytes of the payload as text "
            "(cut at a character boundary) when it is longer; whole in GET .../jobs/{id}",
        },
        "payload_bytes": counter | {"description": "the whole payload's size"},
        "payload_truncated": {"type": "boolean"},
    }
    return {
        "Error": obj({"error": {"type": "string"}}, ["error"]),
        "DuplicateError": obj(
            {
                "error": {"type": "string"},
                "id": job_id,
                "state": {"type": ["string", "null"], "description": "null once the job is gone"},
            },
            ["error", "id"],
        ),
        "JobState": {"type": "string", "enum": [s.value for s in JobState]},
        "Job": job,
        "ListedJob": job
        | {
            "properties": job["properties"] | listed,
            "required": [*job["required"], "payload_bytes", "payload_truncated"],
        },
        "Worker": _worker_schema(counter, when),
        "Cancelled": obj(
            {
                "id": job_id,
                "state": {
                    "type": "string",
                    "enum": ["cancelled", "inflight"],
                    "description": "cancelled; or inflight: the abort is requested, the "
                    "worker running the job stops it within a second (it ends cancelled)",
                },
            },
            ["id", "state"],
        ),
        "JobFinishedError": obj(
            {
                "error": {"type": "string"},
                "state": {"type": "string", "enum": ["done", "dead", "cancelled"]},
            },
            ["error", "state"],
        ),
        **_schedule_schemas(schedule_payload_bytes, priority),
        "EnqueueRequest": obj(job_fields, ["payload"], closed=True),
        "Enqueued": obj(
            {"id": job_id, "state": {"type": "string", "enum": ["ready", "delayed"]}},
            ["id", "state"],
        ),
        "BulkCountRequest": obj(
            {k: v for k, v in job_fields.items() if k != "idempotency_key"} | {"count": count},
            ["count", "payload"],
            closed=True,
        ),
        "BulkJobsRequest": obj(
            {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_ENQUEUE_MANY,
                    "items": ref("EnqueueRequest"),
                    "description": f"payloads at most {MAX_BULK_BYTES} bytes in all (413)",
                }
            },
            ["jobs"],
            closed=True,
        ),
        "BulkRequest": {"oneOf": [ref("BulkCountRequest"), ref("BulkJobsRequest")]},
        "BulkEnqueued": obj(
            {
                "enqueued": counter | {"description": "new jobs"},
                "duplicates": counter | {"description": "jobs whose idempotency key was taken"},
                "state": {
                    "type": ["string", "null"],
                    "enum": ["ready", "delayed", "mixed", None],
                    "description": "state of the new jobs; null when there are none",
                },
                "ids": {
                    "type": "array",
                    "items": job_id,
                    "description": "every job's id in order; a duplicate's is the existing job",
                },
            },
            ["enqueued", "duplicates", "state", "ids"],
        ),
        "QueueStats": obj(
            {
                "queue": {"type": "string"},
                **{
                    k: counter
                    for k in (
                        "ready",
                        "inflight",
                        "delayed",
                        "dlq",
                        "processed_total",
                        "dead_total",
                    )
                },
                "paused": {"type": "boolean"},
            },
            ["ready", "inflight", "delayed", "dlq"],
        ),
        "RateLimitRequest": obj(
            {
                "rate": {
                    "type": "number",
                    "minimum": RATE_MIN,
                    "maximum": RATE_MAX,
                    "description": f"jobs per second, {RATE_MIN:g} (about one a day) "
                    f"to {RATE_MAX:g}",
                },
                "burst": integer(1, BURST_MAX, "bucket size"),
            },
            ["rate", "burst"],
            closed=True,
        ),
        "RateLimit": obj(
            {"rate": {"type": ["number", "null"]}, "burst": {"type": ["integer", "null"]}},
            ["rate", "burst"],
        ),
        "StreamTicket": obj(
            {"ticket": {"type": "string"}, "expires_in": {"type": "number", "exclusiveMinimum": 0}},
            ["ticket", "expires_in"],
        ),
        "ServerInfo": obj(
            {
                "read_only": {"type": "boolean", "description": "mutating calls are refused (403)"},
                "auth_required": {
                    "type": "boolean",
                    "description": "/api/* and /metrics want a bearer token",
                },
                "version": {"type": "string"},
            },
            ["read_only", "auth_required", "version"],
        ),
        "Paused": obj(
            {"queue": {"type": "string"}, "paused": {"type": "boolean"}}, ["queue", "paused"]
        ),
        "QueueDeleted": obj(
            {
                "queue": {"type": "string"},
                "deleted": {"const": True},
                "jobs": counter | {"description": "how many jobs were deleted with it"},
            },
            ["queue", "deleted", "jobs"],
        ),
        "QueueNotEmptyError": obj(
            {
                "error": {"type": "string"},
                "jobs": counter | {"description": "jobs the queue holds (ready to dead)"},
            },
            ["error", "jobs"],
        ),
    }


def _worker_schema(counter: Schema, when: Schema) -> Schema:
    text: Schema = {"type": ["string", "null"]}
    return obj(
        {
            "id": {"type": "string"},
            "host": text,
            "pid": {"type": ["integer", "null"]},
            "queues": {"type": "array", "items": {"type": "string"}},
            "concurrency": {"description": "as the worker states it (null if it does not)"},
            "running": {
                "type": "array",
                "items": {"type": "object", "properties": {"queue": {}, "id": {}}},
                "description": "the jobs it runs: {queue, id, ...} each",
            },
            "started_at": text,
            "version": text,
            "last_seen": when | {"description": "its last heartbeat (Redis's clock)"},
            "last_seen_ms": counter,
        },
        [*WORKER_DEFAULTS, "id", "last_seen", "last_seen_ms"],
    ) | {"description": "what the worker says of itself (passed through), and last_seen"}


def _schedule_schemas(payload_bytes: int, priority: Schema) -> Schema:
    name: Schema = {"type": "string", "pattern": NAME_PATTERN}
    fields: Schema = {
        "name": name | {"description": "1-64 of A-Z a-z 0-9 . _ - (not . or ..)"},
        "cron": {
            "type": "string",
            "format": CRON_FORMAT,
            "description": "5 fields (minute hour day-of-month month day-of-week) or 6 "
            "with the seconds first; lists, ranges, steps, names (MON, JAN), L, LW, "
            f"MON#1; at most {MAX_CRON_LEN} characters, and it must match some date "
            "(400 otherwise)",
        },
        "queue": name | {"description": "the queue each fire enqueues a job into"},
        "payload": {
            "type": "string",
            "maxLength": payload_bytes,
            "description": f"UTF-8 text, at most {payload_bytes} bytes once encoded (413 above)",
        },
        "timezone": {
            "type": "string",
            "format": TIME_ZONE_FORMAT,
            "default": "UTC",
            "description": "an IANA time zone name (Europe/Berlin), at most "
            f"{MAX_TIMEZONE_LEN} characters, the cron expression is read in (400 for "
            "one the server's tz database lacks)",
        },
        "priority": priority | {"default": jobmod.DEFAULT_PRIORITY},
    }
    when: Schema = {"type": ["string", "null"], "format": "date-time"}
    return {
        "ScheduleRequest": obj(fields, ["name", "cron", "queue", "payload"], closed=True),
        "Schedule": obj(
            {
                **{k: {"type": v["type"]} for k, v in fields.items()},
                "next_fire_at": when
                | {"description": "the first fire time after now; null if none in 50 years"},
                "last_fire_at": when
                | {"description": "the last fire time a scheduler enqueued; null before"},
            },
            [*fields, "next_fire_at", "last_fire_at"],
        ),
        "ScheduleDeleted": obj({"deleted": {"const": True}}, ["deleted"]),
    }


def parameters() -> Schema:
    def query(name: str, schema: Schema) -> Schema:
        return {"name": name, "in": "query", "required": False, "schema": schema}

    return {
        "Queue": {
            "name": "q",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": NAME_PATTERN},
            "description": "queue name: 1-64 of A-Z a-z 0-9 . _ - (a bad one is 400)",
        },
        "ScheduleName": {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": NAME_PATTERN},
            "description": "schedule name: 1-64 of A-Z a-z 0-9 . _ - (a bad one is 400)",
        },
        "JobId": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "description": "32 lowercase hex characters (anything else matches no route: 404)",
        },
        "State": {
            "name": "state",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": [st.value for st in LISTED_STATES]},
            "description": "which jobs to list (400 naming these when missing or another)",
        },
        "Limit": query("limit", integer(1, DLQ_PAGE_MAX) | {"default": DLQ_PAGE_DEFAULT}),
        "Offset": query("offset", integer(0, MAX_DLQ_OFFSET) | {"default": 0}),
        "Wait": query("wait", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S})
        | {
            "description": f"hold the answer until the job has ended (done, dead or "
            f"cancelled) or this many seconds (0-{MAX_WAIT_S:g}) passed, then answer with "
            "the job as it is; 429 at once when the server's waits are all taken"
        },
        "Force": query("force", {"type": "boolean", "default": False})
        | {"description": "delete a queue that still holds jobs, and its jobs (true/false)"},
    }
