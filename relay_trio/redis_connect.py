"""Blocking redis-py clients as every relay-trio runtime but asyncio builds them.

One server, a Redis Cluster (:func:`cluster_client`, detected by
:func:`cluster_enabled`) or a Sentinel-managed master (built by
:mod:`~relay_trio.redis_sentinel` on the pools here): explicit timeouts, no
automatic retries (retrying a command that may have run is the caller's
decision), and each new connection checks that it speaks to a Redis server
(its answer to ``HELLO``, or to ``PING`` on RESP2) before any command is sent
on it. Errors raised while handing out a connection are marked as raised
before the command was sent (:data:`~relay_trio.redis_wire.UNSENT`).
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection
from redis.retry import Retry

from ._errors import InvalidInput
from .calls import Script, Step
from .redis_sentinel import is_sentinel_client, sentinel_blocking_twin, sentinel_where
from .redis_wire import (
    BLOCKING_SOCKET_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    FLAGGED,
    SENTINEL_SCHEME,
    UNSENT,
    E,
    cluster_client_failed,
    cluster_info_enabled,
    flags_scripts,
    redis_url_problem,
)

Client: TypeAlias = redis.Redis | RedisCluster
"""A client of one Redis server (or a Sentinel-managed master), or of a Redis Cluster."""


class _Pool(redis.BlockingConnectionPool):
    """Marks every error raised while handing out a connection (connecting, the
    handshake, the wait for a free one) as raised before the command was sent."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, UNSENT, True)
            raise


class _RedisHandshake(AbstractConnection):
    """Mixed into the pool's connection class: a new connection must have met a
    Redis server (a map in answer to ``HELLO`` on RESP3, ``PONG`` to ``PING`` on
    RESP2) before a command is sent on it; anything else is ``InvalidResponse``.
    (An echo server, say, answers ``HELLO`` with a list, on which redis-py itself
    would fail with an ``AttributeError`` and keep the connection.)"""

    def on_connect_check_health(self, check_health: bool = True) -> None:
        self.handshake_metadata = None  # type: ignore[assignment]
        sock = self._sock
        try:
            if sock is not None:  # the handshake is part of connecting: its timeout
                sock.settimeout(self.socket_connect_timeout or self.socket_timeout)
            super().on_connect_check_health(check_health=check_health)
            hello = self.handshake_metadata
            if hello is None:  # RESP2: no HELLO was sent
                self.send_command("PING", check_health=False)
                reply = self.read_response()
                if reply not in (b"PONG", "PONG", True):
                    raise E.InvalidResponse("the answer to PING is not PONG")
            elif not isinstance(hello, dict):
                raise E.InvalidResponse("the answer to HELLO is not a map")
        except E.AuthenticationError as exc:
            # redis-py's own words for an answer to AUTH that is neither OK nor an
            # error reply (Redis answers a wrong password with WRONGPASS)
            if str(exc) == "Invalid Username or Password":
                raise E.InvalidResponse("the answer to AUTH is neither OK nor an error") from exc
            raise
        except redis.RedisError:
            raise
        except Exception as exc:  # redis-py choking on an answer no Redis gives
            raise E.InvalidResponse(f"unexpected answer ({type(exc).__name__})") from exc
        finally:
            if sock is not None and sock is self._sock:
                sock.settimeout(self.socket_timeout)


_HANDSHAKE_CLASSES: dict[type[Any], type[Any]] = {}


def with_handshake(cls: type[Any]) -> type[Any]:
    if issubclass(cls, _RedisHandshake):
        return cls
    if cls not in _HANDSHAKE_CLASSES:
        _HANDSHAKE_CLASSES[cls] = type(f"Checked{cls.__name__}", (_RedisHandshake, cls), {})
    return _HANDSHAKE_CLASSES[cls]


def pool_options(
    *, socket_timeout: float, connect_timeout: float, max_connections: int
) -> dict[str, Any]:
    return {
        "max_connections": max_connections,
        "timeout": connect_timeout,  # the wait for a free pooled connection
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        "retry_on_timeout": False,
    }


def single_client(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> redis.Redis:
    """A client of the one server ``url`` names (no cluster detection, no I/O)."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise InvalidInput("redis_url", f"not a Redis URL ({problem})")
    pool = _Pool.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        **pool_options(
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        ),
    )
    pool.connection_class = with_handshake(pool.connection_class)
    return redis.Redis(connection_pool=pool)


class _CheckedPool(_Pool):
    """The pool of each Redis Cluster node: :class:`_Pool`, with the handshake check."""

    def __init__(self, connection_class: type[Any] = redis.Connection, **kwargs: Any) -> None:
        super().__init__(connection_class=with_handshake(connection_class), **kwargs)  # type: ignore[no-untyped-call]


def cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server of ``client`` is a Redis Cluster node (one ``INFO cluster``).
    A server that refuses ``INFO`` (an ACL, a proxy) counts as a single server."""
    try:
        info = client.execute_command("INFO", "cluster")  # type: ignore[no-untyped-call]
    except E.ResponseError:
        return False
    return cluster_info_enabled(info)


def cluster_flags_scripts(client: redis.Redis) -> bool:
    """Whether the cluster node of ``client`` takes flagged scripts (Redis 7.0+:
    one ``INFO server``; refused: no)."""
    try:
        info = client.execute_command("INFO", "server")  # type: ignore[no-untyped-call]
    except E.ResponseError:
        return False
    return flags_scripts(info)


def cluster_client(
    url: str,
    *,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> RedisCluster:
    """A Redis Cluster client from the URL of any of its nodes; it connects (it reads
    the slot map and the command table). Explicit timeouts, no retries: redis-py
    only follows redirections (``MOVED``, ``ASK``, ``TRYAGAIN``), which answer a
    command that did not run. ``max_connections`` bounds each node's pool."""
    try:
        return RedisCluster.from_url(
            url,
            connection_pool_class=_CheckedPool,
            retry=Retry(NoBackoff(), 0),
            require_full_coverage=True,
            **pool_options(
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
            ),
        )
    except E.RedisClusterException as exc:
        cluster_client_failed(exc)


def close_client(client: Client) -> None:
    if isinstance(client, RedisCluster):
        cluster: Any = client
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
    else:
        client.connection_pool.disconnect()


def password_of(client: Client) -> str | None:
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
    else:
        kwargs = client.connection_pool.connection_kwargs
    password = kwargs.get("password")
    return password if isinstance(password, str) else None


def url_where(url: str, client: Client) -> str:
    if url.startswith(SENTINEL_SCHEME):  # the sentinels' addresses, never the password
        return "Sentinel " + urlsplit(url).netloc.rpartition("@")[2]
    return where(client)


def blocking_twin(client: redis.Redis, max_connections: int) -> redis.Redis:
    """A client on the same server for blocking pops: a pool of its own whose
    socket timeout (``BLOCKING_SOCKET_TIMEOUT``) exceeds the longest block."""
    if is_sentinel_client(client):
        return sentinel_blocking_twin(client, max_connections)
    kwargs = client.connection_pool.connection_kwargs
    pool = _Pool(  # type: ignore[no-untyped-call]
        connection_class=client.connection_pool.connection_class,
        max_connections=max_connections,
        **{**kwargs, "socket_timeout": BLOCKING_SOCKET_TIMEOUT},
    )
    return redis.Redis(connection_pool=pool)


def where(client: Client) -> str:
    """The server, as messages name it: ``host:port`` or the socket's path (for a
    cluster: the node the client was built from)."""
    if isinstance(client, RedisCluster):
        cluster: Any = client
        nodes = list(cluster.startup_nodes.values()) if cluster.startup_nodes else []
        return f"Redis Cluster {nodes[0].name}" if nodes else "Redis Cluster"
    sentinel = sentinel_where(client)
    if sentinel is not None:
        return sentinel
    kwargs = client.connection_pool.connection_kwargs
    return str(
        kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    )


def run_script(client: Any, step: Script, *, flagged: bool | None = None) -> Any:
    """EVALSHA, loading the script on NOSCRIPT (on a cluster: on every primary).
    ``flagged``: send the flagged variant (None: as the client's mark says)."""
    if flagged is None:
        flagged = bool(getattr(client, FLAGGED, False))
    sha, source = step.script.variant(flagged=flagged)
    try:
        return client.evalsha(sha, len(step.keys), *step.keys, *step.args)
    except redis.exceptions.NoScriptError:
        client.script_load(source)
        return client.evalsha(sha, len(step.keys), *step.keys, *step.args)


def run_step(client: Client, step: Step, *, flagged: bool | None = None) -> Any:
    """Send one step on its own (blocking)."""
    if isinstance(step, Script):
        return run_script(client, step, flagged=flagged)
    return client.execute_command(*step.args)  # type: ignore[no-untyped-call]
