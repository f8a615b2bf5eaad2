"""Redis I/O for plain Python (no event loop), and what every runtime shares.

This module is the synchronous runtime's one place for Redis I/O, and the Trio
runtime (:mod:`relay_trio.redis_io`) runs the same :func:`execute` in worker
threads. It builds redis-py clients with explicit timeouts and no automatic
retries (retrying a command that may have run is the caller's decision), checks
each new connection's handshake, and runs a :class:`~relay_trio.calls.Call`:
one command or script directly, several in one pipeline; a script that meets
NOSCRIPT (Redis restarted or flushed its scripts) is loaded and run again, as
it had no effect the first time.

Errors: every redis-py exception becomes one of relay-trio's (see
:func:`relay_error`), chained, its message free of the password. Failures
before a command was sent (refused, no answer while connecting, credentials
refused, a server that is not Redis) are :class:`RedisUnavailable`; a timeout
or a lost connection after it was sent is :class:`RedisOutcomeUnknown`; error
replies are :class:`RedisCommandError`. Each new connection checks that it
speaks to a Redis server (its answer to ``HELLO``, or to ``PING`` on RESP2)
before any command is sent on it.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import NodeCommands, PipelineCommand, RedisCluster
from redis.connection import AbstractConnection
from redis.retry import Retry

from ._errors import (
    InvalidInput,
    RedisCommandError,
    RedisOutcomeUnknown,
    RedisUnavailable,
    RelayError,
)
from ._redact import redact_text
from .calls import Call, Op, Script, Step, drive_sync
from .redis_sentinel import (
    is_sentinel_client,
    is_sentinel_url,
    sentinel_blocking_twin,
    sentinel_url_problem,
    sentinel_where,
)

T = TypeVar("T")
Client: TypeAlias = redis.Redis | RedisCluster
"""A client of one Redis server (or a Sentinel-managed master), or of a Redis Cluster."""
SENTINEL_SCHEME = "redis+sentinel://"

DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 16
MAX_BLOCK_SECONDS = 60.0  # the longest blocking pop: a wait for a job's end
BLOCKING_SOCKET_TIMEOUT = MAX_BLOCK_SECONDS + 10.0

E = redis.exceptions
UNKNOWN_OUTCOME = (
    "the outcome of the command is unknown: it may have taken effect (an enqueue "
    "retried with the same idempotency key cannot add the job twice)"
)
_BUSY = (
    E.BusyLoadingError,
    E.ReadOnlyError,
    E.OutOfMemoryError,
    E.TryAgainError,
    E.ClusterDownError,
    E.AskError,  # and MovedError: redirections redis-py could not follow to the end
    E.ClusterError,  # "TTL exhausted": too many redirections
    E.RedisClusterException,  # no node reachable, a slot no node serves
)
"""Redis refused the command for now (it did not run): loading, a read-only
replica, out of memory, a resharding; also ``BUSY`` (a script runs too long),
``CLUSTERDOWN`` (a cluster without a quorum or with slots no node serves),
redirections that did not settle and ``max number of clients reached``."""


def relay_error(
    exc: redis.RedisError, *, sent: bool, where: str = "Redis", secret: str | None = None
) -> RelayError:
    """The relay-trio error for redis-py's ``exc``; ``sent``: whether the command
    had been sent (False: it failed while getting a connection). ``where`` names
    the server in messages; ``secret`` (the password) is masked in them."""
    detail = redact_text(str(exc) or type(exc).__name__, [secret])
    if isinstance(exc, E.AuthenticationError | E.AuthorizationError):
        hint = "" if secret else ": it requires a password, and the URL gives none"
        return RedisUnavailable(
            f"Redis is unavailable: {where} refused the credentials{hint} ({detail})"
        )
    if isinstance(exc, E.ClusterCrossSlotError):  # ours: refused before anything was sent
        return RedisCommandError(detail)
    busy = isinstance(exc, _BUSY) or (
        isinstance(exc, E.ResponseError) and detail.startswith("BUSY ")
    )
    if busy or "max number of clients reached" in detail:
        return RedisUnavailable(
            f"Redis is unavailable: {where} cannot take commands now ({detail})"
        )
    if isinstance(exc, E.InvalidResponse):
        return RedisUnavailable(
            f"Redis is unavailable: {where} is not a Redis server, or not one this client "
            f"understands ({detail})"
        )
    if isinstance(exc, E.TimeoutError):
        if not sent:
            return RedisUnavailable(
                f"Redis is unavailable: no answer from {where} while connecting"
            )
        return RedisOutcomeUnknown(
            f"Redis is unavailable: no answer from {where} in time after the command was "
            f"sent; {UNKNOWN_OUTCOME}"
        )
    if isinstance(exc, E.ConnectionError):
        if not sent:
            return RedisUnavailable(f"Redis is unavailable: {detail}")
        return RedisOutcomeUnknown(
            f"Redis is unavailable: the connection to {where} was lost after the command was "
            f"sent ({detail}); {UNKNOWN_OUTCOME}"
        )
    if isinstance(exc, E.ResponseError):
        if not sent:  # HELLO unknown (Redis < 6), SELECT of a database that does not exist
            return RedisUnavailable(
                f"Redis is unavailable: {where} refused the connection handshake ({detail})"
            )
        return RedisCommandError(detail)
    return RedisCommandError(f"redis-py refused the command: {detail}")


_UNSENT = "_relay_unsent"


def was_sent(exc: BaseException) -> bool:
    return not getattr(exc, _UNSENT, False)


class _Pool(redis.BlockingConnectionPool):
    """Marks every error raised while handing out a connection (connecting, the
    handshake, the wait for a free one) as raised before the command was sent."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, _UNSENT, True)
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


def _with_handshake(cls: type[Any]) -> type[Any]:
    if issubclass(cls, _RedisHandshake):
        return cls
    if cls not in _HANDSHAKE_CLASSES:
        _HANDSHAKE_CLASSES[cls] = type(f"Checked{cls.__name__}", (_RedisHandshake, cls), {})
    return _HANDSHAKE_CLASSES[cls]


def redis_url_problem(url: str) -> str | None:
    """Why redis-py could not use ``url`` (checked without connecting), or None.
    The reason never repeats the URL: it may hold a password."""
    if is_sentinel_url(url):
        return sentinel_url_problem(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        pool = redis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except (ValueError, E.RedisError) as exc:  # parse_url, protocol=5, ssl_cert_reqs=x ...
        reason = str(exc) or type(exc).__name__
        # not the value: with the "@" left out, a password reads as the port
        return reason.partition(" value as ")[0] if reason.startswith("Port ") else reason
    except TypeError as exc:  # a query parameter redis-py has no option for
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(exc))
        return f"unknown option {unknown[1]!r}" if unknown else str(exc)
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if port == 0:
        return "port 0 is not a port Redis listens on"
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        return "the path of a redis:// URL is a database number (/0, /1 ...)"
    return None


def _options(
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
        **_options(
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        ),
    )
    pool.connection_class = _with_handshake(pool.connection_class)
    return redis.Redis(connection_pool=pool)


class _CheckedPool(_Pool):
    """The pool of each Redis Cluster node: :class:`_Pool`, with the handshake check."""

    def __init__(self, connection_class: type[Any] = redis.Connection, **kwargs: Any) -> None:
        super().__init__(connection_class=_with_handshake(connection_class), **kwargs)  # type: ignore[no-untyped-call]


def cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server of ``client`` is a Redis Cluster node (one ``INFO cluster``).
    A server that refuses ``INFO`` (an ACL, a proxy) counts as a single server."""
    try:
        info = client.execute_command("INFO", "cluster")  # type: ignore[no-untyped-call]
    except E.ResponseError:
        return False
    return isinstance(info, dict) and str(info.get("cluster_enabled", 0)) == "1"


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
            **_options(
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
            ),
        )
    except E.RedisClusterException as exc:
        if "db" in str(exc):
            raise InvalidInput(
                "redis_url", "a Redis Cluster has only database 0: drop the /N of the URL"
            ) from exc
        setattr(exc, _UNSENT, True)  # nothing of ours was sent: no node answered
        raise


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
        self.where = where(first) if url is None else _url_where(url, first)
        self.password: str | None = _password(first)

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
                    self._resolved = cluster_client(
                        self.url,
                        socket_timeout=self._socket_timeout,
                        connect_timeout=self._connect_timeout,
                        max_connections=self._max_connections,
                    )
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


def close_client(client: Client) -> None:
    if isinstance(client, RedisCluster):
        cluster: Any = client
        for node in cluster.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()
    else:
        client.connection_pool.disconnect()


def _password(client: Client) -> str | None:
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
    else:
        kwargs = client.connection_pool.connection_kwargs
    password = kwargs.get("password")
    return password if isinstance(password, str) else None


def _url_where(url: str, client: Client) -> str:
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


def _run_script(client: Any, step: Script) -> Any:
    """EVALSHA, loading the script on NOSCRIPT (on a cluster: on every primary)."""
    script = step.script
    try:
        return client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        return client.evalsha(script.sha, len(step.keys), *step.keys, *step.args)


def _run_step(client: Client, step: Step) -> Any:
    if isinstance(step, Script):
        return _run_script(client, step)
    return client.execute_command(*step.args)  # type: ignore[no-untyped-call]


def _wire_args(step: Step) -> tuple[Any, ...]:
    if isinstance(step, Script):
        return ("EVALSHA", step.script.sha, len(step.keys), *step.keys, *step.args)
    return tuple(step.args)


def _settle(
    results: list[Any],
    steps: Sequence[Step],
    call: Call,
    errors: Callable[[redis.RedisError], RelayError],
    rerun: Callable[[Step], Any],
    *,
    redirections: bool = False,
) -> list[Any]:
    """Replace each error reply in ``results``: NOSCRIPT (and, on a cluster, a
    redirection: neither ran the command) by running the step again on its own;
    others stand in the list as relay-trio errors (``call.inline_errors``) or
    are raised."""
    for index, value in enumerate(results):
        if not isinstance(value, redis.exceptions.ResponseError):
            continue
        step = steps[index]
        again_ok = (
            E.NoScriptError | E.AskError | E.TryAgainError if redirections else E.NoScriptError
        )
        if isinstance(value, again_ok):
            try:  # a script not loaded, or (cluster) a slot that moved: it did not run
                results[index] = rerun(step)
                continue
            except redis.exceptions.ResponseError as again:
                value = again
        if not call.inline_errors:
            raise value
        error = errors(value)
        if isinstance(error, RedisUnavailable):  # busy, loading, read-only ...
            raise value
        results[index] = error
    return results


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
            return [_run_step(client, step)]
        except redis.exceptions.ResponseError as exc:
            if not call.inline_errors or isinstance(errors(exc), RedisUnavailable):
                raise
            return [errors(exc)]
    pipe = client.pipeline(transaction=call.transaction)
    for step in steps:
        pipe.execute_command(*_wire_args(step))  # type: ignore[no-untyped-call]
    results: list[Any] = pipe.execute(raise_on_error=False)
    return _settle(results, steps, call, errors, lambda step: _run_step(client, step))


# --- Redis Cluster ------------------------------------------------------------


def step_slot(client: Any, step: Step) -> int | None:
    """The hash slot of every key ``step`` touches (None: it touches none, as
    ``TIME``). A step whose keys span two slots is refused before anything is
    sent (:class:`redis.exceptions.ClusterCrossSlotError`): on a cluster, a
    script runs on one node, against one slot."""
    if isinstance(step, Script):
        keys: Sequence[Any] = step.keys
    else:
        node = client.get_default_node()
        found = client.commands_parser.get_keys(node.redis_connection, *step.args)
        keys = found or ()
    slots = {client.keyslot(key) for key in keys}
    if len(slots) > 1:
        name = step.name if isinstance(step, Script) else str(step.args[0])
        raise E.ClusterCrossSlotError(
            f"{name} would touch {len(slots)} Redis Cluster slots at once "
            f"({_slot_list(client, keys)}): a script or transaction must keep to one "
            "slot (keys sharing one {hash tag})"
        )
    return slots.pop() if slots else None


def _slot_list(client: Any, keys: Sequence[Any]) -> str:
    return ", ".join(f"{_text(key)} in slot {client.keyslot(key)}" for key in keys)


def _text(key: Any) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


def _node_of(client: Any, slot: int | None) -> Any:
    if slot is None:
        node = client.get_default_node()
        assert node is not None
        return node
    return client.nodes_manager.get_node_from_slot(slot)


def execute_cluster(
    client: RedisCluster, call: Call, errors: Callable[[redis.RedisError], RelayError]
) -> list[Any]:
    """:func:`execute` on a Redis Cluster.

    Each step goes to the primary of its keys' slot. The steps for one node go
    in one pipeline, the pipelines of all nodes are written before any reply is
    read: one round trip per node the call touches. A step that meets a
    redirection (``MOVED``/``ASK``: the slot moved, ``TRYAGAIN``) or NOSCRIPT did
    not run, and is sent again on its own through redis-py's cluster client,
    which follows the redirection and updates its slot map. No step is ever
    sent twice otherwise: a lost connection or a timeout is raised.

    A transaction (``call.transaction``) needs all its keys in one slot, and a
    script all of its own; otherwise :class:`~redis.exceptions.ClusterCrossSlotError`
    is raised before anything is sent."""
    steps = call.steps
    slots = [step_slot(client, step) for step in steps]
    if call.transaction:
        return _cluster_transaction(client, call, [s for s in slots if s is not None], errors)
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, slot in enumerate(slots):
        node = _node_of(client, slot)
        groups.setdefault(node.name, (node, []))[1].append(index)
    results = _send_grouped(client, [_wire_args(step) for step in steps], groups.values())
    failed = next((r for r in results if isinstance(r, E.ConnectionError | E.TimeoutError)), None)
    if failed is not None:
        _refresh(client)  # the node may have failed over: learn the new map
        raise failed
    return _settle(
        results, steps, call, errors, lambda step: _run_step(client, step), redirections=True
    )


def _send_grouped(
    client: Any,
    commands: list[tuple[Any, ...]],
    groups: Any,
) -> list[Any]:
    """Write each node's pipeline, then read them all (redis-py's NodeCommands)."""
    results: list[Any] = [None] * len(commands)
    batches: list[NodeCommands] = []
    written = read = 0
    try:
        for node, indexes in groups:
            redis_node = client.get_redis_connection(node)
            pool = redis_node.connection_pool
            try:
                connection = pool.get_connection()
            except redis.RedisError as exc:
                setattr(exc, _UNSENT, True)
                raise
            batch = NodeCommands(redis_node.parse_response, pool, connection)
            batches.append(batch)
            for index in indexes:
                batch.append(PipelineCommand(commands[index], {}, index))  # type: ignore[no-untyped-call]
        for batch in batches:
            written += 1
            batch.write()  # type: ignore[no-untyped-call]
        for batch in batches:
            batch.read()  # type: ignore[no-untyped-call]
            read += 1
    finally:
        for position, batch in enumerate(batches):
            if read <= position < written:  # written, replies unread: never reuse it
                batch.connection.disconnect()  # type: ignore[no-untyped-call]
            batch.connection_pool.release(batch.connection)
    for batch in batches:
        for command in batch.commands:
            results[command.position] = command.result
    return results


def _refresh(client: RedisCluster) -> None:
    with contextlib.suppress(redis.RedisError):  # no node answers now: the next call asks
        client.nodes_manager.initialize()


def _cluster_transaction(
    client: RedisCluster,
    call: Call,
    slots: list[int],
    errors: Callable[[redis.RedisError], RelayError],
) -> list[Any]:
    if len(set(slots)) > 1:
        keys = [k for step in call.steps for k in _step_keys(client, step)]
        raise E.ClusterCrossSlotError(
            f"a transaction (MULTI/EXEC) would touch {len(set(slots))} Redis Cluster slots "
            f"({_slot_list(client, keys)}): on a cluster its keys must share one slot "
            "(one {hash tag})"
        )
    slot = slots[0] if slots else None
    for attempt in (1, 2):
        redis_node = client.get_redis_connection(_node_of(client, slot))
        pipe = redis_node.pipeline(transaction=True)
        for step in call.steps:
            pipe.execute_command(*_wire_args(step))  # type: ignore[no-untyped-call]
        try:
            results: list[Any] = pipe.execute(raise_on_error=False)
        except (E.AskError, E.TryAgainError):  # EXECABORT: the slot moved, nothing ran
            if attempt == 2:
                raise
            _refresh(client)
            continue
        return _settle(results, call.steps, call, errors, functools.partial(_run_step, redis_node))
    raise AssertionError("unreachable")  # pragma: no cover


def _step_keys(client: Any, step: Step) -> Sequence[Any]:
    if isinstance(step, Script):
        return step.keys
    node = client.get_default_node()
    return client.commands_parser.get_keys(node.redis_connection, *step.args) or ()


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
