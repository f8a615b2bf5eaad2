"""Looking at what runs, on the ``api`` blueprint: live workers, and the jobs of a
queue in each state (spec section 12). Both only read.

``GET /api/workers``: every live worker (its heartbeat's TTL has not passed), by
id, as :func:`~.views.worker_view` shows it.

``GET /api/queues/{q}/jobs?state=S&limit=N&offset=M``: a page of the queue's jobs
in state ``S``, in that state's order (:data:`~relay_trio.broker.LISTED_STATES`):
ready in claim order, inflight by deadline, delayed by ready-at, dead oldest
first, done and cancelled most recently finished first. ``limit`` 1-1000 (50 by
default) and ``offset`` are the DLQ list's, integers else 400; a state that is
missing or not one of those is a 400 naming them. A queue never used lists
nothing (200 ``[]``), as its DLQ list does. Payloads are cut to
:data:`~.limits.LIST_PAYLOAD_BYTES` (:func:`~.views.list_view`). Imported by
:mod:`.api` once its helpers exist.
"""

from __future__ import annotations

from quart.typing import ResponseReturnValue

from .._errors import InvalidInput
from ..job import validate_queue_name
from .api import QUEUE, _broker, _query_int, _query_value, api
from .limits import JOBS_PAGE_DEFAULT, JOBS_PAGE_MAX, LISTED_STATES, MAX_DLQ_OFFSET
from .views import list_view, worker_view

STATE_NAMES = tuple(state.value for state in LISTED_STATES)


@api.get("/workers")
async def list_workers() -> ResponseReturnValue:
    """Every live worker, by id."""
    return [worker_view(w) for w in await _broker().workers()]


def _query_state() -> str:
    value = _query_value("state")
    if value not in STATE_NAMES:
        got = "none" if value is None else repr(value[:40])
        raise InvalidInput("state", f"give one of {', '.join(STATE_NAMES)} (got {got})")
    return value


@api.get(QUEUE + "/jobs")
async def list_jobs(q: str) -> ResponseReturnValue:
    """A page of the queue's jobs in one state, in that state's order."""
    queue = validate_queue_name(q)
    state = _query_state()
    limit = _query_int("limit", JOBS_PAGE_DEFAULT, 1, JOBS_PAGE_MAX)
    offset = _query_int("offset", 0, 0, MAX_DLQ_OFFSET)
    return [list_view(job) for job in await _broker().jobs_page(queue, state, limit, offset)]
