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
from ..job import JobState
from .limits import (
    BURST_MAX,
    DLQ_PAGE_DEFAULT,
    DLQ_PAGE_MAX,
    MAX_BULK_BYTES,
    MAX_DLQ_OFFSET,
    MAX_ENQUEUE_MANY,
    RATE_MAX,
    RATE_MIN,
)

Schema = dict[str, Any]


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


def schemas(max_payload_bytes: int) -> Schema:
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
        "Job": obj(
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
            },
            ["id", "queue", "payload", "state", "attempts", "max_retries", "priority"],
        ),
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


def parameters() -> Schema:
    def query(name: str, schema: Schema) -> Schema:
        return {"name": name, "in": "query", "required": False, "schema": schema}

    return {
        "Queue": {
            "name": "q",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^(?!\\.\\.?$)[A-Za-z0-9._-]{1,64}$"},
            "description": "queue name: 1-64 of A-Z a-z 0-9 . _ - (a bad one is 400)",
        },
        "JobId": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "description": "32 lowercase hex characters (anything else matches no route: 404)",
        },
        "Limit": query("limit", integer(1, DLQ_PAGE_MAX) | {"default": DLQ_PAGE_DEFAULT}),
        "Offset": query("offset", integer(0, MAX_DLQ_OFFSET) | {"default": 0}),
        "Force": query("force", {"type": "boolean", "default": False})
        | {"description": "delete a queue that still holds jobs, and its jobs (true/false)"},
    }
