"""One job on the ``api`` blueprint: read it (waiting for its end), cancel it.

``GET /api/queues/{q}/jobs/{id}?wait=S`` holds the answer until the job ends
(``done``, ``dead`` or ``cancelled``) or ``S`` seconds (0-60) pass, then answers
200 with the job as it is then. A wait is one blocking pop that the script
ending the job wakes (:meth:`~relay_trio.broker.Broker.wait_job`), no polling,
and it holds a connection of the broker's blocking pool all the while. The app
reserves :data:`MAX_JOB_WAITERS` of them when it starts (:func:`open_job_waits`;
``app.config["RELAY_JOB_WAITERS"]`` says otherwise) and takes that many waits at
once: one more is refused at once with 429, never queued behind the others.
A job that ends without being kept (a result TTL of 0) is gone when the wait
wakes: 404, as for any job that does not exist.

``POST /api/queues/{q}/jobs/{id}/cancel``: a ready or delayed job ends
``cancelled`` at once; for one in flight an abort is requested (state
``inflight``: the worker running it cancels its handler within a second and the
job ends ``cancelled``). 409 with ``state`` for a job that has already ended.
Imported by :mod:`.api` once its helpers exist.
"""

from __future__ import annotations

import re

import trio
from quart import Quart, current_app
from quart.typing import ResponseReturnValue

from .._errors import InvalidInput, NotServing
from ..broker import Broker
from ..broker_jobs import MAX_WAIT_S
from ..job import validate_queue_name
from .api import QUEUE, _broker, _query_value, api
from .errors import json_error
from .views import job_view

MAX_JOB_WAITERS = 64
"""How many ``?wait=`` requests one app serves at once (429 beyond)."""
JOB_WAITERS_CONFIG = "RELAY_JOB_WAITERS"
"""The ``app.config`` key that overrides :data:`MAX_JOB_WAITERS`, read at start."""
RETRY_AFTER_S = 1
_WAITS = "relay_job_waits"
_NUMBER = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?")
"""A decimal number, as JSON writes one (and Python's ``str`` of a float)."""


def open_job_waits(app: Quart, broker: Broker) -> None:
    """At the app's start: reserve the blocking connections of ``broker`` that
    waits for jobs use, and the count of waits taken at once."""
    cap = app.config.get(JOB_WAITERS_CONFIG, MAX_JOB_WAITERS)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"{JOB_WAITERS_CONFIG} must be an integer >= 0, got {cap!r}")
    broker.reserve_waiters(cap)
    app.extensions[_WAITS] = trio.Semaphore(cap, max_value=cap)


def _waits() -> trio.Semaphore:
    waits: trio.Semaphore | None = current_app.extensions.get(_WAITS)
    if waits is None:
        raise NotServing("the server is not serving")
    return waits


def _query_wait() -> float:
    """``?wait=``: seconds from 0 to :data:`MAX_WAIT_S` (0 when absent)."""
    value = _query_value("wait")
    if value is None:
        return 0.0
    why = f"must be a number of seconds from 0 to {MAX_WAIT_S:g}, got {value[:40]!r}"
    if not _NUMBER.fullmatch(value):
        raise InvalidInput("wait", why)
    seconds = float(value)
    if not 0 <= seconds <= MAX_WAIT_S:
        raise InvalidInput("wait", why)
    return seconds


@api.get(QUEUE + "/jobs/<job_id:job_id>")
async def get_job(q: str, job_id: str) -> ResponseReturnValue:
    """The job; with ``?wait=S`` once it has ended or ``S`` seconds passed."""
    queue = validate_queue_name(q)
    wait = _query_wait()
    broker = _broker()
    if not wait:
        return job_view(await broker.get_job(queue, job_id))
    waits = _waits()
    try:
        waits.acquire_nowait()
    except trio.WouldBlock:
        response, status = json_error(
            f"{waits.max_value} requests wait for jobs already, the most this server "
            "takes at once; try again later, or ask without wait",
            429,
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, status
    try:
        job = await broker.wait_job(queue, job_id, wait)
    finally:
        waits.release()
    return job_view(job)


@api.post(QUEUE + "/jobs/<job_id:job_id>/cancel")
async def cancel_job(q: str, job_id: str) -> ResponseReturnValue:
    """``{id, state}``: ``cancelled``, or ``inflight`` while its abort is pending."""
    state = await _broker().cancel(validate_queue_name(q), job_id)
    return {"id": job_id, "state": state.value}
