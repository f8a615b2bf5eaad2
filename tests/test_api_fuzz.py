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

import queue
import secrets
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import hypercorn
import pytest
import redis
import schemathesis
import trio
from conftest import RedisServer
from hypercorn.trio import serve

from relay_trio.server import ServerConfig, create_app
from relay_trio.server.openapi import build_openapi

MAX_EXAMPLES = 40


def _run_server(app: Any, started: queue.Queue[Any]) -> None:
    """Thread body: serve ``app`` until the event handed out through ``started`` is set."""

    async def main() -> None:
        config = hypercorn.Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
            started.put((binds[0], trio.lowlevel.current_trio_token(), stop))

    try:
        trio.run(main)
    except BaseException as exc:
        started.put(exc)
        raise


@pytest.fixture(scope="module")
def live_server(redis_server: RedisServer) -> Iterator[str]:
    """The base URL of a real server on the test Redis, under a prefix of its own."""
    prefix = "relaytest-fuzz-" + secrets.token_hex(6)
    app = create_app(ServerConfig(redis_url=redis_server.url, prefix=prefix))
    started: queue.Queue[Any] = queue.Queue()
    thread = threading.Thread(target=_run_server, args=(app, started), daemon=True)
    thread.start()
    got = started.get(timeout=30)
    if isinstance(got, BaseException):
        raise got
    url, token, stop = got

    def shut_down() -> None:
        stop.set()

    try:
        yield url
    finally:
        trio.from_thread.run_sync(shut_down, trio_token=token)
        thread.join(timeout=10)
        client = redis.Redis.from_url(redis_server.url)
        try:
            keys = list(client.scan_iter(match=prefix + ":*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
        finally:
            client.close()


schema = schemathesis.openapi.from_dict(build_openapi()).exclude(path="/api/stream")
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


@schema.parametrize()
def test_api_matches_its_openapi_document(case: Any, live_server: str) -> None:
    case.call_and_validate(base_url=live_server)
