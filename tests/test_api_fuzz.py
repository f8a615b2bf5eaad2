"""Fuzz the JSON API from its own OpenAPI document with Schemathesis.

Schemathesis generates valid and invalid requests for every operation of
``GET /api/openapi.json`` and runs its checks on every response: no 5xx, the
status code and content type are documented, the body matches the response
schema, valid data is accepted and invalid data rejected.

The app runs in a real Hypercorn server (trio worker) in a background thread on
127.0.0.1, port 0, against the test Redis under a key prefix of its own: the
in-process ASGI transport of Schemathesis runs the app on an asyncio loop, which
a quart-trio app cannot use. ``/api/stream`` is left out (an endless response).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from support import RedisServer, delete_prefix
from support.servers import server_thread

from relay_trio.server import ServerConfig, create_app
from relay_trio.server.openapi import build_openapi

MAX_EXAMPLES = 40


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
