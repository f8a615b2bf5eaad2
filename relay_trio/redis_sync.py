"""Redis I/O for plain Python (no event loop): :class:`SyncIO` and :func:`execute`.

This module is the synchronous runtime's one place for Redis I/O, and the Trio
runtime (:mod:`relay_trio.redis_io`) runs the same :func:`execute` in worker
threads. A :class:`Target` resolves a URL to a client on first use (one
server, a Sentinel-managed master, or a Redis Cluster, detected by asking the
server); :func:`execute` runs a :class:`~relay_trio.calls.Call` on it: one
command or script directly, several in one pipeline (on a cluster, one per
node: :mod:`~relay_trio.redis_cluster`). A script that meets NOSCRIPT (Redis
restarted or flushed its scripts) is loaded and run again, as it had no
effect the first time. Clients are built by :mod:`~relay_trio.redis_connect`;
errors become relay-trio's through :func:`~relay_trio.redis_wire.relay_error`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster

from ._errors import RelayError
from .calls import Call, Op, drive_sync
from .redis_cluster import execute_cluster
from .redis_connect import (
    Client,
    blocking_twin,
    close_client,
    cluster_client,
    cluster_enabled,
    cluster_flags_scripts,
    password_of,
    run_step,
    single_client,
    url_where,
    where,
)
from .redis_wire import (
    BLOCKING_SOCKET_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    FLAGGED,
    SENTINEL_SCHEME,
    relay_error,
    settle,
    settled,
    was_sent,
    wire_args,
)

T = TypeVar("T")


def connect(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Client:
    """A redis-py client for ``url`` with explicit timeouts, no automatic retries
    and the handshake check. It connects once, to ask the server whether it is a
    Redis Cluster node (then the client is a :class:`~redis.cluster.RedisCluster`
    that found every node from that one). A URL redis-py cannot use is
    :class:`InvalidInput` (field ``redis_url``), checked without connecting.
    (:class:`Target` does the same lazily, on first use: the runtimes use it.)"""
    return Target(
        url,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
    ).client()


class Target:
    """The Redis a URL names, resolved on first use (:meth:`client`, blocking):
    one server, a Sentinel-managed master (``redis+sentinel://``), or a Redis
    Cluster, detected by asking the URL's server (``INFO cluster``). Building
    it does no I/O; a URL redis-py cannot use is :class:`InvalidInput`.
    Thread-safe; ``where`` and ``password`` name the URL's server in messages."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Client | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._resolved: Client | None = client
        self._blocking: Client | None = None
        self._blocking_size = 0
        self._flagged = False  # a cluster of Redis 7.0+: its scripts go flagged
        if client is not None:
            first = client
        elif url is not None and url.startswith(SENTINEL_SCHEME):
            first = self._sentinel(socket_timeout)
            self._resolved = first  # a Sentinel-managed master is never a cluster node
        elif url is not None:
            first = single_client(
                url,
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
            )
        else:
            raise TypeError("Target needs a url or a client")
        self.first: Client = first
        self.where = where(first) if url is None else url_where(url, first)
        self.password: str | None = password_of(first)

    def _sentinel(self, socket_timeout: float, max_connections: int | None = None) -> Client:
        from .redis_sentinel import sentinel_client  # the Sentinel hook

        assert self.url is not None
        return sentinel_client(
            self.url,
            socket_timeout=socket_timeout,
            connect_timeout=self._connect_timeout,
            max_connections=max_connections or self._max_connections,
        )

    @property
    def current(self) -> Client:
        """The client as known so far (no I/O): the cluster client once detected."""
        return self._resolved if self._resolved is not None else self.first

    @property
    def is_cluster(self) -> bool:
        return isinstance(self._resolved, RedisCluster)

    def client(self) -> Client:
        """The client, found out on first use (blocking: one ``INFO cluster``, and
        for a cluster the discovery of its nodes). A failure leaves it unresolved:
        the next use asks again."""
        resolved = self._resolved
        if resolved is not None:
            return resolved
        with self._lock:
            if self._resolved is None:
                first = self.first
                assert isinstance(first, redis.Redis) and self.url is not None
                if cluster_enabled(first):
                    self._flagged = cluster_flags_scripts(first)
                    cluster = cluster_client(
                        self.url,
                        socket_timeout=self._socket_timeout,
                        connect_timeout=self._connect_timeout,
                        max_connections=self._max_connections,
                    )
                    setattr(cluster, FLAGGED, self._flagged)  # scripts go with #!lua
                    self._resolved = cluster
                    first.connection_pool.disconnect()
                else:
                    self._resolved = first
            return self._resolved

    def blocking(self, max_connections: int) -> Client:
        """A client of the same Redis for blocking pops, its socket timeout
        (``BLOCKING_SOCKET_TIMEOUT``) beyond the longest block, ``max_connections``
        in its pool (per node); rebuilt when asked for a bigger pool. Blocking."""
        client = self.client()
        with self._lock:
            if self._blocking is None or max_connections > self._blocking_size:
                if isinstance(client, RedisCluster):
                    assert self.url is not None
                    twin: Client = cluster_client(
                        self.url,
                        socket_timeout=BLOCKING_SOCKET_TIMEOUT,
                        connect_timeout=self._connect_timeout,
                        max_connections=max_connections,
                    )
                    setattr(twin, FLAGGED, self._flagged)
                elif self.url is not None and self.url.startswith(SENTINEL_SCHEME):
                    twin = self._sentinel(BLOCKING_SOCKET_TIMEOUT, max_connections)
                else:
                    twin = blocking_twin(client, max_connections)
                self._blocking, self._blocking_size = twin, max_connections
            return self._blocking

    def close(self) -> None:
        """Close every pooled connection (the Target stays usable: they reopen)."""
        for client in (self.first, self._resolved, self._blocking):
            if client is not None:
                close_client(client)


def execute(
    client: Client, call: Call, errors: Callable[[redis.RedisError], RelayError]
) -> list[Any]:
    """Send ``call`` on ``client`` (blocking) and return its replies, in order.

    With ``call.inline_errors`` an error reply stands in the list as
    ``errors(reply)`` (one that says Redis cannot take commands now is raised
    instead); otherwise the first error reply is raised (as redis-py's).
    On a Redis Cluster see :func:`execute_cluster`."""
    if isinstance(client, RedisCluster):
        return execute_cluster(client, call, errors)
    steps = call.steps
    if len(steps) == 1 and not call.transaction:
        step = steps[0]
        try:
            return [run_step(client, step)]
        except redis.exceptions.ResponseError as exc:
            return [settled(exc, call, errors)]
    pipe = client.pipeline(transaction=call.transaction)
    for step in steps:
        pipe.execute_command(*wire_args(step))  # type: ignore[no-untyped-call]
    results: list[Any] = pipe.execute(raise_on_error=False)
    return settle(results, steps, call, errors, lambda step: run_step(client, step))


# --- Redis Cluster ------------------------------------------------------------


class SyncIO:
    """The synchronous runtime's Redis I/O: :meth:`from_url`, then :meth:`close`.

    Thread-safe as redis-py's client is (a pool of connections). Blocking pops
    (waiting for a job's end) run on a pool of their own. A Redis Cluster is
    detected on first use (see :class:`Target`)."""

    def __init__(self, client: Client | Target, *, max_connections: int) -> None:
        self.target = client if isinstance(client, Target) else Target(client=client)
        self.where = self.target.where
        self._password = self.target.password
        self._max_connections = max_connections

    @property
    def client(self) -> Client:
        return self.target.current

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> SyncIO:
        target = Target(
            url,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        return cls(target, max_connections=max_connections)

    def execute(self, call: Call) -> list[Any]:
        """Send ``call`` and return its replies; redis-py errors become relay-trio's."""
        try:
            if call.block_s is not None:
                client = self.target.blocking(self._max_connections)
            else:
                client = self.target.client()
            return execute(client, call, self.error)
        except redis.RedisError as exc:
            raise self.error(exc) from exc

    def drive(self, op: Op[T]) -> T:
        """Run operation ``op`` to its end."""
        return drive_sync(op, self.execute)

    def error(self, exc: redis.RedisError) -> RelayError:
        return relay_error(exc, sent=was_sent(exc), where=self.where, secret=self._password)

    def close(self) -> None:
        """Close every pooled connection."""
        self.target.close()
