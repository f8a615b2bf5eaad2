"""The OpenAPI 3.1 document of the server, served at ``GET /api/openapi.json``.

Request schemas state exactly what :mod:`.api` accepts (``additionalProperties:
false``, every bound, every required field), so a schema-driven fuzzer finds no
gap between the document and the server. Two rules JSON Schema cannot say are
in the descriptions: a payload's limit counts UTF-8 bytes (``maxLength`` counts
characters), and a bulk request carries at most :data:`MAX_BULK_BYTES` of
payload in all. The queue-name pattern also leaves out ``.`` and ``..``: the
server takes them, but URL clients rewrite such a path segment away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import job as jobmod
from ..broker import BURST_MAX, DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX, MAX_ENQUEUE_MANY, RATE_MAX, RATE_MIN
from ..job import JobState

MAX_BULK_BYTES = 64 * 1024 * 1024
"""A bulk request may carry at most this many payload bytes in all (413 beyond)."""
MAX_DLQ_OFFSET = 2**62

Schema = dict[str, Any]

ERRORS = {
    400: "Bad input: malformed JSON, a wrong type, a missing or unknown field or query "
    "parameter, a value out of range, a bad queue name. Nothing was written.",
    401: "The server wants `Authorization: Bearer <token>` and got none or a wrong one.",
    403: "The server is read-only, or a browser sent a cross-site mutation.",
    404: "No such job (or not in the dead-letter queue), or a malformed job id.",
    409: "The idempotency key already names a job: `id` is that job.",
    413: "The payload (or the whole body) is over the server's limit.",
    415: "The body is not `application/json`.",
    503: "Redis is unavailable.",
}
READ_ERRORS = (400, 401, 503)
WRITE_ERRORS = (400, 401, 403, 503)
BODY_ERRORS = (*WRITE_ERRORS, 413, 415)
NO_QUEUE = (
    "Error",
    "No such queue: none of its jobs was ever created, or it was deleted. Only "
    "creating a job registers a queue; nothing was written.",
)
"""The 404 of the queue-admin operations (pause, resume, rate limit, delete)."""


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _int(low: int, high: int, description: str = "") -> Schema:
    schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
    if description:
        schema["description"] = description
    return schema


def _object(properties: Schema, required: Iterable[str], *, closed: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    op_id: str,
    summary: str,
    ok: tuple[int, Schema, str],
    errors: Iterable[int],
    *,
    params: Iterable[str] = ("Queue",),
    body: str | None = None,
    tag: str = "queues",
    special: Mapping[int, tuple[str, str]] | None = None,
) -> Schema:
    """One operation; ``special`` gives some error codes their own (schema, description)."""
    status, schema, description = ok
    responses: Schema = {str(status): _json(schema, description)}
    own = special or {}
    for code in sorted(set(errors) | set(own)):
        error, text = own.get(code, ("DuplicateError" if code == 409 else "Error", ERRORS[code]))
        responses[str(code)] = _json(_ref(error), text)
    op: Schema = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _schemas(max_payload_bytes: int) -> Schema:
    job_id: Schema = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    payload: Schema = {
        "type": "string",
        "maxLength": max_payload_bytes,
        "description": f"UTF-8 text, at most {max_payload_bytes} bytes once encoded (413 above)",
    }
    priority = _int(jobmod.PRIORITY_MIN, jobmod.PRIORITY_MAX, "higher first")
    delay_ms = _int(0, jobmod.MAX_DELAY_MS, "milliseconds before the job is ready")
    max_retries = _int(0, jobmod.MAX_RETRIES_LIMIT, "a nack at attempts >= this dead-letters")
    idempotency_key: Schema = {
        "type": ["string", "null"],
        "maxLength": jobmod.MAX_IDEMPOTENCY_KEY_LEN,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        "description": "no control characters; empty or null means none",
    }
    count = _int(1, MAX_ENQUEUE_MANY, f"count x payload bytes at most {MAX_BULK_BYTES} (413)")
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
        "Error": _object({"error": {"type": "string"}}, ["error"]),
        "DuplicateError": _object(
            {
                "error": {"type": "string"},
                "id": job_id,
                "state": {"type": ["string", "null"], "description": "null once the job is gone"},
            },
            ["error", "id"],
        ),
        "JobState": {"type": "string", "enum": [s.value for s in JobState]},
        "Job": _object(
            {
                "id": job_id,
                "queue": {"type": "string"},
                "payload": {"type": "string"},
                "state": _ref("JobState"),
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
        "EnqueueRequest": _object(job_fields, ["payload"], closed=True),
        "Enqueued": _object(
            {"id": job_id, "state": {"type": "string", "enum": ["ready", "delayed"]}},
            ["id", "state"],
        ),
        "BulkCountRequest": _object(
            {k: v for k, v in job_fields.items() if k != "idempotency_key"} | {"count": count},
            ["count", "payload"],
            closed=True,
        ),
        "BulkJobsRequest": _object(
            {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_ENQUEUE_MANY,
                    "items": _ref("EnqueueRequest"),
                    "description": f"payloads at most {MAX_BULK_BYTES} bytes in all (413)",
                }
            },
            ["jobs"],
            closed=True,
        ),
        "BulkRequest": {"oneOf": [_ref("BulkCountRequest"), _ref("BulkJobsRequest")]},
        "BulkEnqueued": _object(
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
        "QueueStats": _object(
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
        "RateLimitRequest": _object(
            {
                "rate": {
                    "type": "number",
                    "minimum": RATE_MIN,
                    "maximum": RATE_MAX,
                    "description": f"jobs per second, {RATE_MIN:g} (about one a day) "
                    f"to {RATE_MAX:g}",
                },
                "burst": _int(1, BURST_MAX, "bucket size"),
            },
            ["rate", "burst"],
            closed=True,
        ),
        "RateLimit": _object(
            {"rate": {"type": ["number", "null"]}, "burst": {"type": ["integer", "null"]}},
            ["rate", "burst"],
        ),
        "StreamTicket": _object(
            {"ticket": {"type": "string"}, "expires_in": {"type": "number", "exclusiveMinimum": 0}},
            ["ticket", "expires_in"],
        ),
        "ServerInfo": _object(
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
        "Paused": _object(
            {"queue": {"type": "string"}, "paused": {"type": "boolean"}}, ["queue", "paused"]
        ),
        "QueueDeleted": _object(
            {
                "queue": {"type": "string"},
                "deleted": {"const": True},
                "jobs": counter | {"description": "how many jobs were deleted with it"},
            },
            ["queue", "deleted", "jobs"],
        ),
        "QueueNotEmptyError": _object(
            {
                "error": {"type": "string"},
                "jobs": counter | {"description": "jobs the queue holds (ready to dead)"},
            },
            ["error", "jobs"],
        ),
    }


def _parameters() -> Schema:
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
        "Limit": query("limit", _int(1, DLQ_PAGE_MAX) | {"default": DLQ_PAGE_DEFAULT}),
        "Offset": query("offset", _int(0, MAX_DLQ_OFFSET) | {"default": 0}),
        "Force": query("force", {"type": "boolean", "default": False})
        | {"description": "delete a queue that still holds jobs, and its jobs (true/false)"},
    }


def _paths() -> Schema:
    q, qj = "/api/queues/{q}", ("Queue", "JobId")
    jobs = {"type": "array", "items": _ref("Job")}
    requeued_n = _object({"requeued": {"type": "integer", "minimum": 0}}, ["requeued"])
    purged = _object({"purged": {"type": "integer", "minimum": 0}}, ["purged"])
    rate_limit = (200, _ref("RateLimit"), "the limit; both null when there is none")
    paused = (200, _ref("Paused"), "the queue's paused flag")
    known = {404: NO_QUEUE}
    text: Schema = {"type": "string"}
    return {
        "/api/queues": {
            "get": _op(
                "listQueues",
                "Every queue name, sorted",
                (200, {"type": "array", "items": {"type": "string"}}, "names"),
                READ_ERRORS,
                params=(),
            )
        },
        q: {
            "delete": _op(
                "deleteQueue",
                "Delete the queue: its jobs, keys and registry entry",
                (200, _ref("QueueDeleted"), "deleted, with how many jobs"),
                WRITE_ERRORS,
                params=("Queue", "Force"),
                special={
                    **known,
                    409: (
                        "QueueNotEmptyError",
                        "The queue still holds `jobs` jobs and `force` is not true; "
                        "nothing was deleted.",
                    ),
                },
            )
        },
        f"{q}/stats": {
            "get": _op(
                "queueStats", "Sizes and counters", (200, _ref("QueueStats"), "stats"), READ_ERRORS
            )
        },
        f"{q}/jobs": {
            "post": _op(
                "enqueue",
                "Add one job",
                (201, _ref("Enqueued"), "the new job"),
                (*BODY_ERRORS, 409),
                body="EnqueueRequest",
                tag="jobs",
            )
        },
        f"{q}/jobs/bulk": {
            "post": _op(
                "enqueueBulk",
                "Add up to 10000 jobs in one round trip",
                (201, _ref("BulkEnqueued"), "the jobs"),
                BODY_ERRORS,
                body="BulkRequest",
                tag="jobs",
            )
        },
        f"{q}/jobs/{{id}}": {
            "get": _op(
                "getJob",
                "One job",
                (200, _ref("Job"), "the job"),
                (*READ_ERRORS, 404),
                params=qj,
                tag="jobs",
            )
        },
        f"{q}/dlq": {
            "get": _op(
                "listDeadJobs",
                "A page of the dead-letter queue, oldest first",
                (200, jobs, "dead jobs"),
                READ_ERRORS,
                params=("Queue", "Limit", "Offset"),
                tag="dlq",
            )
        },
        f"{q}/dlq/{{id}}": {
            "delete": _op(
                "deleteDeadJob",
                "Delete one dead job",
                (200, _object({"deleted": {"const": True}}, ["deleted"]), "deleted"),
                (*WRITE_ERRORS, 404),
                params=qj,
                tag="dlq",
            )
        },
        f"{q}/dlq/{{id}}/requeue": {
            "post": _op(
                "requeueDeadJob",
                "Move one dead job back to ready, attempts 0",
                (200, _object({"requeued": {"const": True}}, ["requeued"]), "requeued"),
                (*WRITE_ERRORS, 404),
                params=qj,
                tag="dlq",
            )
        },
        f"{q}/dlq/requeue-all": {
            "post": _op(
                "requeueAllDead",
                "Requeue the whole DLQ",
                (200, requeued_n, "how many"),
                WRITE_ERRORS,
                tag="dlq",
            )
        },
        f"{q}/dlq/purge": {
            "post": _op(
                "purgeDead",
                "Delete the whole DLQ",
                (200, purged, "how many"),
                WRITE_ERRORS,
                tag="dlq",
            )
        },
        f"{q}/pause": {
            "post": _op(
                "pauseQueue", "Stop claims from the queue", paused, WRITE_ERRORS, special=known
            )
        },
        f"{q}/resume": {
            "post": _op("resumeQueue", "Let claims go on", paused, WRITE_ERRORS, special=known)
        },
        f"{q}/rate-limit": {
            "get": _op(
                "getRateLimit", "The queue's token bucket", rate_limit, READ_ERRORS, special=known
            ),
            "put": _op(
                "setRateLimit",
                f"Set the token bucket: rate {RATE_MIN:g} to {RATE_MAX:g} jobs per second, "
                f"burst 1 to {BURST_MAX}",
                rate_limit,
                BODY_ERRORS,
                body="RateLimitRequest",
                special=known,
            ),
            "delete": _op(
                "clearRateLimit", "Remove the limit", rate_limit, WRITE_ERRORS, special=known
            ),
        },
        "/api/info": {
            "get": _op(
                "serverInfo",
                "What a client needs to know about this server",
                (200, _ref("ServerInfo"), "read-only mode, auth, version"),
                READ_ERRORS,
                params=(),
                tag="ops",
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "openapi",
                "This document",
                (200, {"type": "object"}, "OpenAPI 3.1"),
                (400, 401),
                params=(),
                tag="ops",
            )
        },
        "/api/stream": {
            "get": {
                "operationId": "stream",
                "summary": "Server-Sent Events: a snapshot of every queue per poll",
                "tags": ["ops"],
                "description": "With a token set: Authorization: Bearer, or ?ticket= from "
                "POST /api/stream/ticket (good once); ?access_token= is refused.",
                "parameters": [{"name": "ticket", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "the stream",
                        "content": {"text/event-stream": {"schema": text}},
                    },
                    "401": _json(_ref("Error"), ERRORS[401]),
                    "503": _json(_ref("Error"), "Shutting down, or Redis is unavailable."),
                },
            }
        },
        "/api/stream/ticket": {
            "post": _op(
                "streamTicket",
                "A one-time credential for GET /api/stream?ticket= (EventSource sends no headers)",
                (200, _ref("StreamTicket"), "good once, for the stream only, for expires_in s"),
                (401, 403),
                params=(),
                tag="ops",
            )
        },
        "/healthz": {"get": _plain("healthz", "The process is up", {"status": {"const": "ok"}})},
        "/readyz": {"get": _plain("readyz", "Redis answers", {"status": {"const": "ready"}}, 503)},
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "With a metrics token set, it is the only bearer token taken.",
                "tags": ["ops"],
                "responses": {
                    "200": {
                        "description": "text format 0.0.4",
                        "content": {"text/plain": {"schema": text}},
                    },
                    "401": _json(_ref("Error"), ERRORS[401]),
                },
            }
        },
    }


def _plain(op_id: str, summary: str, properties: Schema, *errors: int) -> Schema:
    responses = {"200": _json(_object(properties, list(properties)), summary)}
    responses |= {str(c): _json(_ref("Error"), ERRORS[c]) for c in errors}
    return {
        "operationId": op_id,
        "summary": summary,
        "tags": ["ops"],
        "security": [],
        "responses": responses,
    }


def build_openapi(*, max_payload_bytes: int = jobmod.DEFAULT_MAX_PAYLOAD_BYTES) -> Schema:
    """The whole document, for a server whose payload limit is ``max_payload_bytes``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay-trio",
            "version": "1",
            "description": 'A distributed task queue on Redis. Every error is {"error": "..."}; '
            "a Host the server does not answer to is 421 (but /healthz, /readyz).",
        },
        "security": [{"bearerAuth": []}, {}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(max_payload_bytes),
            "parameters": _parameters(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server has an API token (RELAY_API_TOKEN).",
                }
            },
        },
    }
