"""Fuzz the JSON API from its own OpenAPI document with Schemathesis.

Schemathesis generates valid and invalid requests for every operation of
``GET /api/openapi.json`` and runs its checks on every response: no 5xx, the
status code and content type are documented, the body matches the response
schema, valid data is accepted and invalid data rejected.

The app runs in a real Hypercorn server (trio worker) in a background thread on
127.0.0.1, port 0, against the test Redis under a key prefix of its own: the
in-process ASGI transport of Schemathesis runs the app on an asyncio loop, which
a quart-trio app cannot use. ``/api/stream`` is left out (an endless response).

A schedule's cron expression and time zone are formats of the document's
own (``cron``, ``iana-time-zone``): no schema states a cron grammar or the tz
database, so the strategies below generate valid ones (without them a valid
request could be refused, and Schemathesis would call that a defect).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from support import RedisServer, delete_prefix
from support.servers import server_thread

from relay_trio.server import ServerConfig, create_app
from relay_trio.server.openapi import build_openapi
from relay_trio.server.openapi_schemas import CRON_FORMAT, TIME_ZONE_FORMAT

MAX_EXAMPLES = 40


def _cron_field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high).map(str)
    step = st.integers(1, high - low + 1).map(lambda n: f"*/{n}")
    span = st.tuples(st.integers(low, high), st.integers(low, high)).map(
        lambda ab: f"{min(ab)}-{max(ab)}"
    )
    return st.one_of(st.just("*"), number, step, span)


# Day of month 1-28: every month has it, so every expression matches some date.
_CRON_5 = st.tuples(
    _cron_field(0, 59),
    _cron_field(0, 23),
    _cron_field(1, 28),
    _cron_field(1, 12),
    _cron_field(0, 6) | st.sampled_from(["MON-FRI", "SUN", "MON#1", "5L"]),
)
CRONS = st.one_of(
    _CRON_5.map(" ".join),
    st.tuples(_cron_field(0, 59), _CRON_5).map(lambda t: " ".join((t[0], *t[1]))),
)
TIME_ZONES = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
)
schemathesis.openapi.format(CRON_FORMAT, CRONS)
schemathesis.openapi.format(TIME_ZONE_FORMAT, TIME_ZONES)


@pytest.fixture(scope="module")
def live_server(redis_server: RedisServer) -> Iterator[str]:
    """The base URL of a real server on the test Redis, under a prefix of its own."""
    prefix = "relaytest-fuzz-" + secrets.token_hex(6)
    app = create_app(ServerConfig(redis_url=redis_server.url, prefix=prefix))
    try:
        with server_thread(app) as url:
            yield url
    finally:
        delete_prefix(redis_server.url, prefix)


schema = schemathesis.openapi.from_dict(build_openapi()).exclude(path="/api/stream")
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


@schema.parametrize()
def test_api_matches_its_openapi_document(case: Any, live_server: str) -> None:
    case.call_and_validate(base_url=live_server)
