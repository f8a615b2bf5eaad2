"""Queue administration on the ``api`` blueprint: pause, resume, rate limit, delete.

These verbs act on a queue that exists: one that is not in the registry (no job
ever created it, or it was deleted) is a 404 (:class:`QueueNotFound`), and
nothing is written. Only creating a job registers a queue. Input is checked
before the queue is looked up, so a bad request is a 400 whichever queue it
names. Imported by :mod:`.api` once its helpers exist.
"""

from __future__ import annotations

from quart.typing import ResponseReturnValue

from .._errors import InvalidInput
from ..job import validate_queue_name
from .api import QUEUE, _broker, _check_fields, _integer, _json_object, _json_type, _query_bool, api

RATE_LIMIT_FIELDS = frozenset({"rate", "burst"})


@api.post(QUEUE + "/pause")
async def pause_queue(q: str) -> ResponseReturnValue:
    """Stop claims from the queue (enqueues go on); 404 if there is no such queue."""
    queue = validate_queue_name(q)
    await _broker().pause(queue)
    return {"queue": queue, "paused": True}


@api.post(QUEUE + "/resume")
async def resume_queue(q: str) -> ResponseReturnValue:
    """Let claims go on; 404 if there is no such queue."""
    queue = validate_queue_name(q)
    await _broker().resume(queue)
    return {"queue": queue, "paused": False}


@api.get(QUEUE + "/rate-limit")
async def get_rate_limit(q: str) -> ResponseReturnValue:
    """``{rate, burst}``; both null when the queue has no limit; 404 if no such queue."""
    limit = await _broker().get_rate_limit(validate_queue_name(q))
    if limit is None:
        return {"rate": None, "burst": None}
    return {"rate": limit.rate, "burst": limit.burst}


@api.put(QUEUE + "/rate-limit")
async def put_rate_limit(q: str) -> ResponseReturnValue:
    """Body ``{rate, burst}``: ``rate`` in jobs per second, from
    :data:`~relay_trio.broker.RATE_MIN` (1e-5, about one a day) to
    :data:`~relay_trio.broker.RATE_MAX` (1e6); ``burst`` an integer from 1 to
    :data:`~relay_trio.broker.BURST_MAX` (1e6). Outside them: 400, nothing changed;
    404 if no such queue."""
    queue = validate_queue_name(q)
    body = await _json_object()
    _check_fields(body, RATE_LIMIT_FIELDS, RATE_LIMIT_FIELDS)
    rate, burst = body["rate"], _integer("burst", body["burst"])
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise InvalidInput("rate", f"must be a number, got {_json_type(rate)}")
    await _broker().set_rate_limit(queue, rate, burst)  # ranges checked before the lookup
    return {"rate": float(rate), "burst": burst}


@api.delete(QUEUE + "/rate-limit")
async def delete_rate_limit(q: str) -> ResponseReturnValue:
    """Remove the queue's limit (none is fine); 404 if no such queue."""
    await _broker().clear_rate_limit(validate_queue_name(q))
    return {"rate": None, "burst": None}


@api.delete(QUEUE)
async def delete_queue(q: str) -> ResponseReturnValue:
    """Delete the queue: its jobs (ready, in flight, delayed, dead), keys and
    registry entry. ``?force=true`` is needed while it holds jobs (else 409 with
    ``jobs``, nothing deleted); 404 if no such queue. 200 ``{queue, deleted, jobs}``
    with how many jobs went."""
    queue = validate_queue_name(q)
    force = _query_bool("force", default=False)
    jobs = await _broker().delete_queue(queue, force=force)
    return {"queue": queue, "deleted": True, "jobs": jobs}
