"""The JSON API (spec section 5): the ``api`` blueprint, mounted under ``/api``.

Every input is checked in full before the broker is called, so a rejected
request writes nothing to Redis. Every error is ``{"error": "<message>"}``:

=====  ======================================================================
400    malformed JSON (also NaN, Infinity and repeated keys), a body that is not
       an object, a wrong type (``true`` is not an integer; ``5.0`` is 5, as in
       JSON Schema), a missing or unknown field, an unknown or repeated query
       parameter, a body sent to an endpoint that takes none, a value out of
       range, a bad queue name, a query flag that is not ``true``/``false``
       (or ``1``/``0``), a bad schedule name, cron expression or time zone
403    read-only mode (the app's guard), or a browser's cross-site mutation
       (``Sec-Fetch-Site: cross-site``: this API serves no CORS, so only a
       forged form post sends one)
404    no such job (or not in the DLQ); also a path job id that is not 32
       lowercase hex characters: it names no resource, and no route matches it;
       no such queue (pause, resume, rate limit, delete: only creating a job
       registers a queue, and these never do); no such schedule
409    the idempotency key already names a job: ``id`` (and ``state``) of it; a
       queue to delete without ``force`` still holds ``jobs`` jobs; a job to
       cancel has already ended (``state``: done, dead or cancelled)
413    a payload over the broker's limit, a bulk request over
       :data:`~.limits.MAX_BULK_BYTES` in all, or a body over the server's limit
415    a body that is not ``application/json`` (keeps browsers from posting
       jobs cross-site with a plain form)
429    ``?wait=`` while the server's waits for jobs are all taken (:mod:`.api_jobs`)
503    Redis unavailable (the app's handler)
=====  ======================================================================

The OpenAPI document (``GET /api/openapi.json``, built in :mod:`.openapi`)
states the same rules as JSON Schema. On this same blueprint: one job (read,
wait for its end, cancel) in :mod:`.api_jobs`, live workers and the job lists
of every state in :mod:`.api_observe`, the queue-admin routes (pause,
resume, rate limit, delete) in :mod:`.api_queues`, schedules in
:mod:`.api_schedules`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, request
from quart.blueprints import BlueprintSetupState
from quart.typing import ResponseReturnValue
from werkzeug.routing import BaseConverter

from .. import job as jobmod
from .._errors import (
    DuplicateJob,
    InvalidInput,
    JobFinished,
    JobNotFound,
    QueueNotEmpty,
    QueueNotFound,
    RelayError,
)
from .._validate import check_int
from ..broker import Broker, EnqueueResult
from ..job import JobSpec, validate_queue_name
from .errors import json_error
from .limits import DLQ_PAGE_DEFAULT, DLQ_PAGE_MAX, MAX_BULK_BYTES, MAX_DLQ_OFFSET, MAX_ENQUEUE_MANY
from .openapi import build_openapi
from .state import relay_state
from .views import list_view

api = Blueprint("api", __name__, url_prefix="/api")


class JobIdConverter(BaseConverter):
    """A path segment that is a job id. Anything else matches no route (404), so
    that ``/dlq/purge`` is never read as ``/dlq/<id>`` with id ``purge``."""

    regex = jobmod.JOB_ID_RE.pattern


@api.record_once
def _add_converter(setup: BlueprintSetupState) -> None:  # before the routes below use it
    setup.app.url_map.converters["job_id"] = JobIdConverter


QUEUE = "/queues/<q>"

JOB_FIELDS = frozenset(
    {"payload", "priority", "delay_ms", "idempotency_key", "max_retries", "timeout_ms"}
)
BULK_COUNT_FIELDS = frozenset(
    {"count", "payload", "priority", "delay_ms", "max_retries", "timeout_ms"}
)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Which endpoints read a JSON body, and which query parameters each accepts (default none).
BODY_ENDPOINTS = frozenset(
    {"api.enqueue", "api.enqueue_bulk", "api.put_rate_limit", "api.save_schedule"}
)
QUERY_PARAMS: Mapping[str, frozenset[str]] = {
    "api.get_job": frozenset({"wait"}),
    "api.list_dlq": frozenset({"limit", "offset"}),
    "api.list_jobs": frozenset({"state", "limit", "offset"}),
    "api.delete_queue": frozenset({"force"}),
}
_DECIMAL = re.compile(r"-?[0-9]{1,30}")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


class ApiError(RelayError):
    """A request refused with ``status``; ``extra`` goes into the JSON error body.
    (It never leaves the app: its handler below makes it the response.)"""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@api.errorhandler(ApiError)
async def _api_error(exc: ApiError) -> tuple[Response, int]:
    return json_error(exc.message, exc.status, **exc.extra)


@api.errorhandler(InvalidInput)
async def _invalid_input(exc: InvalidInput) -> tuple[Response, int]:
    return json_error(str(exc), 400)


@api.errorhandler(JobNotFound)
async def _not_found(exc: JobNotFound) -> tuple[Response, int]:
    return json_error(str(exc), 404)


@api.errorhandler(DuplicateJob)
async def _duplicate(exc: DuplicateJob) -> tuple[Response, int]:
    return json_error(str(exc), 409, id=exc.existing_id)


@api.errorhandler(JobFinished)
async def _finished(exc: JobFinished) -> tuple[Response, int]:
    return json_error(str(exc), 409, state=exc.state)


@api.errorhandler(QueueNotFound)
async def _queue_not_found(exc: QueueNotFound) -> tuple[Response, int]:
    return json_error(f"{exc}; only creating a job registers a queue", 404)


@api.errorhandler(QueueNotEmpty)
async def _queue_not_empty(exc: QueueNotEmpty) -> tuple[Response, int]:
    return json_error(str(exc), 409, jobs=exc.jobs)


# -- request checks ----------------------------------------------------------------


@api.before_request
async def _check_request() -> None:
    """Checks common to every endpoint (after the app's auth and read-only guard)."""
    if request.method in MUTATING and request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, "cross-site requests may not change anything")
    endpoint = request.endpoint or ""
    unknown = sorted(set(request.args) - QUERY_PARAMS.get(endpoint, frozenset()))
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    if endpoint not in BODY_ENDPOINTS and not _is_empty(await _body()):
        raise ApiError(400, "this endpoint takes no request body (nor anything but {})")


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for kind, name in ((int, "integer"), (float, "number"), (str, "string"), (list, "array")):
        if isinstance(value, kind):
            return name
    return "object"


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        repeated = sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"repeated key(s): {', '.join(repeated)}")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_no_repeated_keys, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError and too many digits
        raise ApiError(400, f"malformed JSON: {exc}") from None


def _is_empty(raw: bytes) -> bool:
    try:
        return not raw.strip() or _parse_json(raw) == {}
    except ApiError:
        return False


async def _body() -> bytes:
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)


async def _json_object() -> dict[str, Any]:
    raw = await _body()
    if not raw.strip():
        raise ApiError(400, "the request body must be a JSON object")
    if not request.is_json:
        raise ApiError(415, "send the body as application/json")
    body = _parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _check_fields(
    body: Mapping[str, Any], required: frozenset[str], allowed: frozenset[str], where: str = ""
) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400,
            f"{where}unknown field(s): {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(allowed))})",
        )
    missing = sorted(required - set(body))
    if missing:
        raise ApiError(400, f"{where}missing required field(s): {', '.join(missing)}")


def _integer(name: str, value: object) -> int:
    """A JSON integer (``5.0`` counts, as in JSON Schema; ``true`` does not)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, f"must be an integer, got {_json_type(value)}")
    return value


def _text(name: str, value: str) -> bytes:
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise InvalidInput(name, "must be valid Unicode (no lone surrogates)") from None


def _payload(value: object, limit: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput("payload", f"must be a string, got {_json_type(value)}")
    data = _text("payload", value)
    if len(data) > limit:
        raise ApiError(413, f"payload: is {len(data)} bytes; at most {limit}")
    return data


def _job_spec(broker: Broker, fields: Mapping[str, Any]) -> JobSpec:
    """A validated spec from the fields of one job (payload required)."""
    key = fields.get("idempotency_key")
    if isinstance(key, str):
        _text("idempotency_key", key)
    timeout_ms = fields.get("timeout_ms")  # null or absent: the worker's default
    return broker.spec(
        _payload(fields["payload"], broker.max_payload_bytes),
        priority=_integer("priority", fields.get("priority", jobmod.DEFAULT_PRIORITY)),
        delay_ms=_integer("delay_ms", fields.get("delay_ms", 0)),
        max_retries=_integer("max_retries", fields.get("max_retries", jobmod.DEFAULT_MAX_RETRIES)),
        idempotency_key=key,
        timeout_ms=None if timeout_ms is None else _integer("timeout_ms", timeout_ms),
    )


def _query_value(name: str) -> str | None:
    values = request.args.getlist(name)
    if len(values) > 1:
        raise InvalidInput(name, "give it once")
    return values[0] if values else None


def _query_int(name: str, default: int, low: int, high: int) -> int:
    value = _query_value(name)
    if value is None:
        return default
    if not _DECIMAL.fullmatch(value):
        raise InvalidInput(name, f"must be an integer, got {value!r}")
    return check_int(name, int(value), low, high)


def _query_bool(name: str, default: bool) -> bool:
    """``true``/``1`` or ``false``/``0``; anything else is a 400, never a guess."""
    value = _query_value(name)
    if value is None:
        return default
    if value not in _FLAGS:
        raise InvalidInput(name, f"must be true or false, got {value!r}")
    return _FLAGS[value]


def _broker() -> Broker:
    return relay_state().serving_broker


# -- enqueue -----------------------------------------------------------------------


@api.post(QUEUE + "/jobs")
async def enqueue(q: str) -> ResponseReturnValue:
    """One job: 201 ``{id, state}``; a taken idempotency key is 409 with its ``id``."""
    queue = validate_queue_name(q)
    body = await _json_object()
    _check_fields(body, frozenset({"payload"}), JOB_FIELDS)
    broker = _broker()
    spec = _job_spec(broker, body)
    (result,) = await broker.enqueue_many(queue, [spec])
    state = None if result.state is None else result.state.value
    if result.duplicate:
        message = f"idempotency key {spec.idempotency_key!r} already names job {result.id}"
        raise ApiError(409, message, id=result.id, state=state)
    location = f"/api/queues/{queue}/jobs/{result.id}"
    return {"id": result.id, "state": state}, 201, {"Location": location}


@api.post(QUEUE + "/jobs/bulk")
async def enqueue_bulk(q: str) -> ResponseReturnValue:
    """``{count, payload, ...}`` (one payload, ``count`` jobs) or ``{jobs: [...]}``.

    201 ``{enqueued, duplicates, state, ids}``: ``ids`` has one id per job in
    order (a duplicate's is the existing job's); ``state`` is the state of the
    jobs this request created (``"mixed"`` if they differ, null if none)."""
    queue = validate_queue_name(q)
    body = await _json_object()
    broker = _broker()
    if "jobs" in body:
        _check_fields(body, frozenset({"jobs"}), frozenset({"jobs"}))
        specs = _bulk_list(broker, body["jobs"])
    elif "count" in body or "payload" in body:
        _check_fields(body, frozenset({"count", "payload"}), BULK_COUNT_FIELDS)
        specs = _bulk_count(broker, body)
    else:
        raise ApiError(400, "give either {count, payload, ...} or {jobs: [...]}")
    results = await broker.enqueue_many(queue, specs)
    return _bulk_response(results), 201


def _bulk_count(broker: Broker, body: Mapping[str, Any]) -> list[JobSpec]:
    count = check_int("count", _integer("count", body["count"]), 1, MAX_ENQUEUE_MANY)
    template = _job_spec(broker, body)
    if count * len(template.payload) > MAX_BULK_BYTES:
        raise ApiError(413, f"count x payload size is over {MAX_BULK_BYTES} bytes")
    return [template] + [
        dataclasses.replace(template, id=jobmod.new_job_id()) for _ in range(count - 1)
    ]


def _bulk_list(broker: Broker, jobs: object) -> list[JobSpec]:
    if not isinstance(jobs, list):
        raise InvalidInput("jobs", f"must be an array, got {_json_type(jobs)}")
    if not 1 <= len(jobs) <= MAX_ENQUEUE_MANY:
        raise InvalidInput("jobs", f"give 1 to {MAX_ENQUEUE_MANY} jobs, got {len(jobs)}")
    specs, total = [], 0
    for index, item in enumerate(jobs):
        where = f"jobs[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(where, f"must be an object, got {_json_type(item)}")
        _check_fields(item, frozenset({"payload"}), JOB_FIELDS, where=where + ": ")
        try:
            spec = _job_spec(broker, item)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}.{exc.field}", exc.message) from None
        except ApiError as exc:
            raise ApiError(exc.status, f"{where}.{exc.message}") from None
        total += len(spec.payload)
        specs.append(spec)
    if total > MAX_BULK_BYTES:
        raise ApiError(413, f"the payloads come to {total} bytes; at most {MAX_BULK_BYTES}")
    return specs


def _bulk_response(results: list[EnqueueResult]) -> dict[str, Any]:
    created = {r.state.value for r in results if not r.duplicate and r.state is not None}
    duplicates = sum(r.duplicate for r in results)
    return {
        "enqueued": len(results) - duplicates,
        "duplicates": duplicates,
        "state": created.pop() if len(created) == 1 else ("mixed" if created else None),
        "ids": [r.id for r in results],
    }


# -- reading -----------------------------------------------------------------------


@api.get("/queues")
async def list_queues() -> ResponseReturnValue:
    """Every queue name, sorted."""
    return await _broker().queues()


@api.get(QUEUE + "/stats")
async def queue_stats(q: str) -> ResponseReturnValue:
    """``{queue, ready, inflight, delayed, dlq, processed_total, dead_total, paused}``."""
    return (await _broker().stats(validate_queue_name(q))).to_dict()


# -- dead-letter queue ---------------------------------------------------------------


@api.get(QUEUE + "/dlq")
async def list_dlq(q: str) -> ResponseReturnValue:
    """A page of dead jobs, oldest first (``limit`` 1-1000, default 50; ``offset``);
    payloads cut as in every list (whole in the job endpoint)."""
    queue = validate_queue_name(q)
    limit = _query_int("limit", DLQ_PAGE_DEFAULT, 1, DLQ_PAGE_MAX)
    offset = _query_int("offset", 0, 0, MAX_DLQ_OFFSET)
    return [list_view(j) for j in await _broker().dlq_list(queue, limit, offset)]


@api.post(QUEUE + "/dlq/<job_id:job_id>/requeue")
async def requeue_dead(q: str, job_id: str) -> ResponseReturnValue:
    await _broker().dlq_requeue(validate_queue_name(q), job_id)
    return {"requeued": True}


@api.delete(QUEUE + "/dlq/<job_id:job_id>")
async def delete_dead(q: str, job_id: str) -> ResponseReturnValue:
    await _broker().dlq_delete(validate_queue_name(q), job_id)
    return {"deleted": True}


@api.post(QUEUE + "/dlq/requeue-all")
async def requeue_all_dead(q: str) -> ResponseReturnValue:
    return {"requeued": await _broker().dlq_requeue_all(validate_queue_name(q))}


@api.post(QUEUE + "/dlq/purge")
async def purge_dead(q: str) -> ResponseReturnValue:
    return {"purged": await _broker().dlq_purge(validate_queue_name(q))}


# -- about this server --------------------------------------------------------------


def _version() -> str:
    try:
        return importlib.metadata.version("relay-trio")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@api.get("/info")
async def server_info() -> ResponseReturnValue:
    """What a client (the dashboard) needs to know: ``{read_only, auth_required, version}``."""
    config = relay_state().config
    return {
        "read_only": config.read_only,
        "auth_required": config.api_token is not None,
        "version": _version(),
    }


# -- the document ----------------------------------------------------------------------


@api.get("/openapi.json")
async def openapi_document() -> ResponseReturnValue:
    """The OpenAPI 3.1 description of this API (and of the health, metrics and stream routes)."""
    config = relay_state().config
    return build_openapi(max_payload_bytes=config.max_payload_bytes)


# The routes of one job, of workers and job lists, of queue admin and of schedules
# register on ``api`` too; imported last, as they use the above.
from . import api_jobs, api_observe, api_queues, api_schedules  # noqa: E402, F401
