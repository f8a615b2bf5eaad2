"""Cron schedules on the ``api`` blueprint (spec section 11).

``GET /api/schedules`` lists them by name, ``POST /api/schedules`` stores one
(201 new, 200 replaced; its last fire time is kept), ``GET`` and ``DELETE
/api/schedules/{name}`` read and remove one (404 if there is none). A schedule
reads ``{name, cron, queue, payload, timezone, priority, next_fire_at,
last_fire_at}``: ``next_fire_at`` is the first fire time after now (Redis's
clock), ``last_fire_at`` the last one a scheduler enqueued (null before the
first); both ISO 8601 UTC. Every field of a request is checked (the cron
expression and the time zone by :class:`~relay_trio.schedules.Schedule`) before
anything is written. Imported by :mod:`.api` once its helpers exist.
"""

from __future__ import annotations

from typing import Any

from quart.typing import ResponseReturnValue

from .. import job as jobmod
from .._errors import InvalidInput
from ..broker import Broker
from ..job import ms_to_datetime
from ..schedules import Schedule, validate_schedule_name
from .api import ApiError, _broker, _check_fields, _integer, _json_object, _json_type, _payload, api
from .openapi_schemas import schedule_payload_bytes

SCHEDULE_FIELDS = frozenset({"name", "cron", "queue", "payload", "timezone", "priority"})
REQUIRED_FIELDS = frozenset({"name", "cron", "queue", "payload"})
_TEXT_FIELDS = ("name", "cron", "queue", "payload", "timezone")


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_datetime(ms).isoformat().replace("+00:00", "Z")


def _view(schedule: Schedule, last_ms: int | None, now_ms: int) -> dict[str, Any]:
    try:
        next_ms: int | None = schedule.next_fire_ms(now_ms)
    except InvalidInput:  # no fire time in cronsim's 50-year horizon
        next_ms = None
    return {**schedule.to_dict(), "next_fire_at": _iso(next_ms), "last_fire_at": _iso(last_ms)}


async def _find(broker: Broker, name: str) -> dict[str, Any] | None:
    now = await broker.server_time_ms()
    for schedule, last_ms, _ in await broker.list_schedules():
        if schedule.name == name:
            return _view(schedule, last_ms, now)
    return None


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"no schedule named {name!r}")


@api.get("/schedules")
async def list_schedules() -> ResponseReturnValue:
    """Every schedule, sorted by name."""
    broker = _broker()
    now = await broker.server_time_ms()
    entries = sorted(await broker.list_schedules(), key=lambda entry: entry[0].name)
    return [_view(schedule, last_ms, now) for schedule, last_ms, _ in entries]


@api.post("/schedules")
async def save_schedule() -> ResponseReturnValue:
    """Store a schedule: 201 if it is new, 200 if it replaced one of that name."""
    body = await _json_object()
    _check_fields(body, REQUIRED_FIELDS, SCHEDULE_FIELDS)
    for field in _TEXT_FIELDS:
        if field in body and not isinstance(body[field], str):
            raise InvalidInput(field, f"must be a string, got {_json_type(body[field])}")
    broker = _broker()
    schedule = Schedule.create(
        body["name"],
        body["cron"],
        body["queue"],
        _payload(body["payload"], schedule_payload_bytes(broker.max_payload_bytes)),
        timezone=body.get("timezone", "UTC"),
        priority=_integer("priority", body.get("priority", jobmod.DEFAULT_PRIORITY)),
    )
    created = await broker.put_schedule(schedule)
    view = await _find(broker, schedule.name)
    if view is None:  # removed again in the meantime: show what was stored
        view = _view(schedule, None, await broker.server_time_ms())
    if not created:
        return view, 200
    return view, 201, {"Location": f"/api/schedules/{schedule.name}"}


@api.get("/schedules/<name>")
async def get_schedule(name: str) -> ResponseReturnValue:
    """One schedule; 404 if there is none of that name."""
    validate_schedule_name(name)
    view = await _find(_broker(), name)
    if view is None:
        raise _not_found(name)
    return view


@api.delete("/schedules/<name>")
async def delete_schedule(name: str) -> ResponseReturnValue:
    """Remove a schedule (the jobs it enqueued stay); 404 if there is none."""
    validate_schedule_name(name)
    if not await _broker().remove_schedule(name):
        raise _not_found(name)
    return {"deleted": True}
