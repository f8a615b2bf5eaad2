"""The OpenAPI 3.1 document of the server, served at ``GET /api/openapi.json``.

Its operations are here; its components (the schema of every body, the
parameters) in :mod:`.openapi_schemas`. Request schemas state exactly what
:mod:`.api` accepts (``additionalProperties: false``, every bound, every
required field), so a schema-driven fuzzer finds no gap between the document
and the server; every bound comes from :mod:`.limits`, where the API that
enforces it takes it too. Two rules JSON Schema cannot say are in the
descriptions: a payload's limit counts UTF-8 bytes (``maxLength`` counts
characters), and a bulk request carries at most
:data:`~.limits.MAX_BULK_BYTES` of payload in all. The queue-name pattern also
leaves out ``.`` and ``..``: the server takes them, but URL clients rewrite such
a path segment away. A schedule's cron expression and time zone have grammars
(and a tz database) no schema states: each carries a ``format`` of its own,
``cron`` and ``iana-time-zone`` (annotations; the fuzz test generates them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import job as jobmod
from .limits import BURST_MAX, RATE_MAX, RATE_MIN
from .openapi_schemas import (
    Schema,
    json_body,
    obj,
    parameters,
    ref,
    schedule_payload_bytes,
    schemas,
)

ERRORS = {
    400: "Bad input: malformed JSON, a wrong type, a missing or unknown field or query "
    "parameter, a value out of range, a bad queue name. Nothing was written.",
    401: "The server wants `Authorization: Bearer <token>` and got none or a wrong one.",
    403: "The server is read-only, or a browser sent a cross-site mutation.",
    404: "No such job (or not in the dead-letter queue), or a malformed job id.",
    409: "The idempotency key already names a job: `id` is that job.",
    413: "The payload (or the whole body) is over the server's limit.",
    415: "The body is not `application/json`.",
    429: "As many requests wait for jobs as the server takes at once; try again later "
    "(Retry-After), or ask without `wait`.",
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
NO_SCHEDULE = ("Error", "No schedule has that name.")


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
    responses: Schema = {str(status): json_body(schema, description)}
    own = special or {}
    for code in sorted(set(errors) | set(own)):
        error, text = own.get(code, ("DuplicateError" if code == 409 else "Error", ERRORS[code]))
        responses[str(code)] = json_body(ref(error), text)
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
            "content": {"application/json": {"schema": ref(body)}},
        }
    return op


def _paths() -> Schema:
    q, qj = "/api/queues/{q}", ("Queue", "JobId")
    requeued_n = obj({"requeued": {"type": "integer", "minimum": 0}}, ["requeued"])
    purged = obj({"purged": {"type": "integer", "minimum": 0}}, ["purged"])
    rate_limit = (200, ref("RateLimit"), "the limit; both null when there is none")
    paused = (200, ref("Paused"), "the queue's paused flag")
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
                (200, ref("QueueDeleted"), "deleted, with how many jobs"),
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
                "queueStats", "Sizes and counters", (200, ref("QueueStats"), "stats"), READ_ERRORS
            )
        },
        f"{q}/jobs": {
            "get": _op(
                "listJobs",
                "A page of the queue's jobs in one state, in that state's order: ready in "
                "claim order, inflight by deadline, delayed by ready-at, dead oldest first, "
                "done and cancelled most recently finished first (a queue never used: [])",
                (200, {"type": "array", "items": ref("ListedJob")}, "jobs, payloads cut"),
                READ_ERRORS,
                params=("Queue", "State", "Limit", "Offset"),
                tag="jobs",
            ),
            "post": _op(
                "enqueue",
                "Add one job",
                (201, ref("Enqueued"), "the new job"),
                (*BODY_ERRORS, 409),
                body="EnqueueRequest",
                tag="jobs",
            ),
        },
        f"{q}/jobs/bulk": {
            "post": _op(
                "enqueueBulk",
                "Add up to 10000 jobs in one round trip",
                (201, ref("BulkEnqueued"), "the jobs"),
                BODY_ERRORS,
                body="BulkRequest",
                tag="jobs",
            )
        },
        f"{q}/jobs/{{id}}": {
            "get": _op(
                "getJob",
                "One job; with wait, once it has ended or the wait is over",
                (200, ref("Job"), "the job (as it is when the wait is over)"),
                (*READ_ERRORS, 404, 429),
                params=(*qj, "Wait"),
                tag="jobs",
            )
        },
        f"{q}/jobs/{{id}}/cancel": {
            "post": _op(
                "cancelJob",
                "Cancel a ready or delayed job; abort one in flight",
                (200, ref("Cancelled"), "the job's state now"),
                (*WRITE_ERRORS, 404),
                params=qj,
                tag="jobs",
                special={
                    409: (
                        "JobFinishedError",
                        "The job has already ended (`state`: done, dead or cancelled).",
                    )
                },
            )
        },
        **_schedule_paths(),
        f"{q}/dlq": {
            "get": _op(
                "listDeadJobs",
                "A page of the dead-letter queue, oldest first (payloads cut as in every list)",
                (200, {"type": "array", "items": ref("ListedJob")}, "dead jobs, payloads cut"),
                READ_ERRORS,
                params=("Queue", "Limit", "Offset"),
                tag="dlq",
            )
        },
        f"{q}/dlq/{{id}}": {
            "delete": _op(
                "deleteDeadJob",
                "Delete one dead job",
                (200, obj({"deleted": {"const": True}}, ["deleted"]), "deleted"),
                (*WRITE_ERRORS, 404),
                params=qj,
                tag="dlq",
            )
        },
        f"{q}/dlq/{{id}}/requeue": {
            "post": _op(
                "requeueDeadJob",
                "Move one dead job back to ready, attempts 0",
                (200, obj({"requeued": {"const": True}}, ["requeued"]), "requeued"),
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
        "/api/workers": {
            "get": _op(
                "listWorkers",
                "Every live worker (its last heartbeat within its TTL), by id",
                (200, {"type": "array", "items": ref("Worker")}, "workers"),
                READ_ERRORS,
                params=(),
                tag="ops",
            )
        },
        "/api/info": {
            "get": _op(
                "serverInfo",
                "What a client needs to know about this server",
                (200, ref("ServerInfo"), "read-only mode, auth, version"),
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
                "description": "Each data event is a JSON array, one entry per queue in name "
                "order: {queue, ready, inflight, delayed, dlq, processed_total, dead_total, "
                "paused, workers (live workers serving the queue; null when the worker "
                "registry could not be read), ts (when taken, ms)}. With a token set: "
                "Authorization: Bearer, or ?ticket= from POST /api/stream/ticket (good "
                "once); ?access_token= is refused.",
                "parameters": [{"name": "ticket", "in": "query", "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "the stream",
                        "content": {"text/event-stream": {"schema": text}},
                    },
                    "401": json_body(ref("Error"), ERRORS[401]),
                    "503": json_body(ref("Error"), "Shutting down, or Redis is unavailable."),
                },
            }
        },
        "/api/stream/ticket": {
            "post": _op(
                "streamTicket",
                "A one-time credential for GET /api/stream?ticket= (EventSource sends no headers)",
                (200, ref("StreamTicket"), "good once, for the stream only, for expires_in s"),
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
                    "401": json_body(ref("Error"), ERRORS[401]),
                },
            }
        },
    }


def _schedule_paths() -> Schema:
    schedule = ref("Schedule")
    name, missing = ("ScheduleName",), {404: NO_SCHEDULE}
    save = _op(
        "saveSchedule",
        "Store a schedule (replacing one of that name)",
        (201, schedule, "a new schedule"),
        BODY_ERRORS,
        params=(),
        body="ScheduleRequest",
        tag="schedules",
    )
    save["responses"]["200"] = json_body(schedule, "a schedule of that name was replaced")
    return {
        "/api/schedules": {
            "get": _op(
                "listSchedules",
                "Every schedule, by name, with its next and last fire times",
                (200, {"type": "array", "items": schedule}, "schedules"),
                READ_ERRORS,
                params=(),
                tag="schedules",
            ),
            "post": save,
        },
        "/api/schedules/{name}": {
            "get": _op(
                "getSchedule",
                "One schedule",
                (200, schedule, "the schedule"),
                READ_ERRORS,
                params=name,
                tag="schedules",
                special=missing,
            ),
            "delete": _op(
                "deleteSchedule",
                "Remove a schedule (the jobs it enqueued stay)",
                (200, ref("ScheduleDeleted"), "removed"),
                WRITE_ERRORS,
                params=name,
                tag="schedules",
                special=missing,
            ),
        },
    }


def _plain(op_id: str, summary: str, properties: Schema, *errors: int) -> Schema:
    responses = {"200": json_body(obj(properties, list(properties)), summary)}
    responses |= {str(c): json_body(ref("Error"), ERRORS[c]) for c in errors}
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
            "schemas": schemas(max_payload_bytes, schedule_payload_bytes(max_payload_bytes)),
            "parameters": parameters(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server has an API token (RELAY_API_TOKEN).",
                }
            },
        },
    }
