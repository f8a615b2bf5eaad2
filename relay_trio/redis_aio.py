"""The asyncio runtime's one place for Redis I/O: :class:`AsyncIO`.

It runs a :class:`~relay_trio.calls.Call` on ``redis.asyncio``: one command or
script directly, several in one pipeline; a script that meets NOSCRIPT is
loaded and run again. Timeouts are explicit, redis-py's retries are off, and
every redis-py error becomes relay-trio's through the same mapping as the other
runtimes (:func:`relay_trio.redis_wire.relay_error`). Blocking pops (a wait
for a job's end) run on a pool of their own whose socket timeout exceeds the
longest block.

The URL may name one server, a Sentinel-managed master (``redis+sentinel://``)
or any node of a Redis Cluster: cluster mode is detected on first use (one
``INFO cluster``), as in the other runtimes. On a cluster a call follows the
same rules as :mod:`relay_trio.redis_cluster`: its steps are grouped by the
node serving their slot, every node's pipeline is written at once (one round
trip per node), a step that met a redirection or NOSCRIPT did not run and is
sent again on its own, nothing else is ever sent twice, and a script or a
transaction that would span two slots is refused before anything is sent. At
most ``max_connections`` calls run at once on a cluster (each holds at most
one connection per node; redis-py's cluster nodes refuse, rather than wait
for, a connection beyond their limit).

Cancellation: asyncio cancels at any await; a cancelled call may or may not
have run its command. A connection whose replies were not all read is closed,
never reused. A blocking pop consumes only a token, never a job.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, TypeAlias, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from ._errors import InvalidInput, RelayError
from .calls import Call, Op, Script, Step
from .redis_sentinel import async_sentinel_client, is_sentinel_url, sentinel_where
from .redis_wire import (
    BLOCKING_SOCKET_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    UNSENT,
    E,
    cluster_client_failed,
    cluster_info_enabled,
    did_not_run,
    flags_scripts,
    group_by_node,
    one_slot,
    redis_url_problem,
    relay_error,
    settled,
    step_name,
    wire_args,
)

T = TypeVar("T")
AsyncClient: TypeAlias = aioredis.Redis | AsyncCluster


class _Pool(aioredis.BlockingConnectionPool):
    """Marks errors raised while handing out a connection as raised before the
    command was sent (see :func:`relay_trio.redis_wire.was_sent`)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            setattr(exc, UNSENT, True)
            raise


async def _run_script(client: AsyncClient, step: Script, flagged: bool) -> Any:
    """EVALSHA, loading the script on NOSCRIPT (on a cluster: on every primary);
    ``flagged``: its flagged variant (see :class:`~relay_trio.calls.LuaScript`)."""
    sha, source = step.script.variant(flagged=flagged)
    try:
        return await client.evalsha(sha, len(step.keys), *step.keys, *step.args)
    except redis.exceptions.NoScriptError:
        await client.script_load(source)
        return await client.evalsha(sha, len(step.keys), *step.keys, *step.args)


async def _run_step(client: AsyncClient, step: Step, flagged: bool = False) -> Any:
    if isinstance(step, Script):
        return await _run_script(client, step, flagged)
    return await client.execute_command(*step.args)


class AsyncIO:
    """A ``redis.asyncio`` client: :meth:`from_url`, then :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        client: aioredis.Redis,
        blocking: aioredis.Redis,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        detect_cluster: bool = True,
    ) -> None:
        self.url = url
        self.client: AsyncClient = client
        self._blocking: AsyncClient = blocking
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._resolved = not detect_cluster
        self._resolving: asyncio.Lock | None = None
        self._slots: asyncio.Semaphore | None = None  # bounds calls on a cluster
        self._flagged = False  # a cluster of Redis 7.0+: its scripts go flagged
        kwargs = client.connection_pool.connection_kwargs
        self.where = sentinel_where(client) or str(
            kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
        )
        self._password: str | None = kwargs.get("password")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> AsyncIO:
        """Clients for ``url`` (nothing connects yet); a URL redis-py cannot use is
        :class:`InvalidInput` (``redis_url``)."""
        problem = redis_url_problem(url)
        if problem is not None:
            raise InvalidInput("redis_url", f"not a Redis URL ({problem})")
        limits: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "connect_timeout": connect_timeout,
            "max_connections": max_connections,
        }
        if is_sentinel_url(url):  # a Sentinel-managed master is never a cluster node
            return cls(
                url,
                async_sentinel_client(url, **limits),
                async_sentinel_client(url, **{**limits, "socket_timeout": BLOCKING_SOCKET_TIMEOUT}),
                detect_cluster=False,
                **limits,
            )
        options: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": connect_timeout,
            "socket_connect_timeout": connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        pool = _Pool.from_url(url, socket_timeout=socket_timeout, **options)
        blocking = _Pool.from_url(url, socket_timeout=BLOCKING_SOCKET_TIMEOUT, **options)
        return cls(
            url,
            aioredis.Redis(connection_pool=pool),
            aioredis.Redis(connection_pool=blocking),
            **limits,
        )

    @property
    def is_cluster(self) -> bool:
        return isinstance(self.client, AsyncCluster)

    async def execute(self, call: Call) -> list[Any]:
        """Send ``call`` (one round trip per node it touches) and return its replies."""
        try:
            await self._resolve()
            client = self._blocking if call.block_s is not None else self.client
            if isinstance(client, AsyncCluster):
                assert self._slots is not None
                async with self._slots:
                    return await self._execute_cluster(client, call)
            return await self._execute(client, call)
        except redis.RedisError as exc:
            raise self.error(exc) from exc

    async def _resolve(self) -> None:
        """On first use, ask the URL's server whether it is a cluster node (a
        failure leaves it unresolved: the next call asks again)."""
        if self._resolved:
            return
        if self._resolving is None:
            self._resolving = asyncio.Lock()
        async with self._resolving:
            if self._resolved:
                return
            single = self.client
            assert isinstance(single, aioredis.Redis)
            try:
                info = await single.execute_command("INFO", "cluster")  # type: ignore[no-untyped-call]
            except E.ResponseError:  # INFO refused (an ACL, a proxy): a single server
                info = None
            if cluster_info_enabled(info):
                try:  # Redis 7.0+ takes flagged scripts (#!lua); INFO refused: plain ones
                    server = await single.execute_command("INFO", "server")  # type: ignore[no-untyped-call]
                except E.ResponseError:
                    server = None
                self._flagged = flags_scripts(server)
                cluster = await self._cluster(self._socket_timeout)
                try:
                    blocking = await self._cluster(BLOCKING_SOCKET_TIMEOUT)
                except BaseException:
                    await cluster.aclose()
                    raise
                self.client, self._blocking = cluster, blocking
                self._slots = asyncio.Semaphore(self._max_connections)
                await single.aclose()
                await single.connection_pool.disconnect()
            self._resolved = True

    async def _cluster(self, socket_timeout: float) -> AsyncCluster:
        """A cluster client from the URL (it reads the slot map and command table)."""
        try:
            cluster = AsyncCluster.from_url(
                self.url,
                retry=Retry(NoBackoff(), 0),
                require_full_coverage=True,
                max_connections=self._max_connections,
                socket_timeout=socket_timeout,
                socket_connect_timeout=self._connect_timeout,
            )
            await cluster.initialize()
        except E.RedisClusterException as exc:
            cluster_client_failed(exc)
        return cluster

    async def _execute(self, client: AsyncClient, call: Call) -> list[Any]:
        steps = call.steps
        if len(steps) == 1 and not call.transaction:
            try:
                return [await _run_step(client, steps[0])]
            except redis.exceptions.ResponseError as exc:
                return [settled(exc, call, self.error)]
        pipe = client.pipeline(transaction=call.transaction)
        for step in steps:
            pipe.execute_command(*wire_args(step))
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return await self._settle(client, results, call)

    async def _settle(
        self,
        client: AsyncClient,
        results: list[Any],
        call: Call,
        *,
        cluster: bool = False,
        flagged: bool = False,
    ) -> list[Any]:
        """:func:`relay_trio.redis_wire.settle`, awaiting the steps run again."""
        for index, value in enumerate(results):
            if not isinstance(value, E.ResponseError):
                continue
            if did_not_run(value, cluster=cluster):
                try:
                    results[index] = await _run_step(client, call.steps[index], flagged)
                    continue
                except E.ResponseError as again:
                    value = again
            results[index] = settled(value, call, self.error)
        return results

    # -- Redis Cluster ------------------------------------------------------------

    async def _keys(self, client: AsyncCluster, step: Step) -> Sequence[Any]:
        if isinstance(step, Script):
            return step.keys
        return await client.commands_parser.get_keys(*step.args) or ()

    async def _execute_cluster(self, client: AsyncCluster, call: Call) -> list[Any]:
        steps = call.steps
        keys = [await self._keys(client, step) for step in steps]
        if call.transaction:
            slot = one_slot(
                "a transaction (MULTI/EXEC)", [k for ks in keys for k in ks], client.keyslot
            )
            return await self._cluster_transaction(client, call, slot)
        slots = [
            one_slot(step_name(step), ks, client.keyslot)
            for step, ks in zip(steps, keys, strict=True)
        ]
        groups = group_by_node(slots, lambda slot: _node_of(client, slot))
        commands = [wire_args(step, flagged=self._flagged) for step in steps]
        results: list[Any] = [None] * len(steps)
        outcomes = await asyncio.gather(
            *(_send_node(node, commands, indexes, results) for node, indexes in groups),
            return_exceptions=True,
        )
        failed = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failed is not None:
            if isinstance(failed, E.ConnectionError | E.TimeoutError):
                await _refresh(client)  # the node may have failed over: learn the new map
            raise failed
        return await self._settle(client, results, call, cluster=True, flagged=self._flagged)

    async def _cluster_transaction(
        self, client: AsyncCluster, call: Call, slot: int | None
    ) -> list[Any]:
        commands = [
            ("MULTI",),
            *(wire_args(s, flagged=self._flagged) for s in call.steps),
            ("EXEC",),
        ]
        replies: list[Any] = [None] * len(commands)
        for attempt in (1, 2):
            await _send_node(_node_of(client, slot), commands, range(len(commands)), replies)
            executed = replies[-1]
            if isinstance(executed, E.ExecAbortError | E.AskError | E.TryAgainError):
                queued = next((r for r in replies[1:-1] if isinstance(r, E.ResponseError)), None)
                if attempt == 1 and isinstance(queued, E.AskError | E.TryAgainError):
                    await _refresh(client)  # the slot moved before EXEC: nothing ran
                    continue
                raise queued or executed
            if isinstance(executed, BaseException):
                raise executed
            return await self._settle(client, list(executed), call, flagged=self._flagged)
        raise AssertionError("unreachable")  # pragma: no cover

    def error(self, exc: redis.RedisError) -> RelayError:
        sent = not getattr(exc, UNSENT, False)
        return relay_error(exc, sent=sent, where=self.where, secret=self._password)

    async def drive(self, op: Op[T]) -> T:
        """Run operation ``op`` to its end; a clean-up call it yields after an error
        runs even if this task is being cancelled."""
        try:
            call = next(op)
            while True:
                try:
                    replies = await self.execute(call)
                except BaseException as exc:
                    call = op.throw(exc)
                    replies = await asyncio.shield(self.execute(call))
                    call = op.send(replies)
                else:
                    call = op.send(replies)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for client in (self.client, self._blocking):
            await client.aclose()
            if isinstance(client, aioredis.Redis):
                await client.connection_pool.disconnect()


def _node_of(client: AsyncCluster, slot: int | None) -> Any:
    if slot is None:
        return client.get_default_node()
    return client.nodes_manager.get_node_from_slot(slot)


async def _send_node(
    node: Any, commands: Sequence[tuple[Any, ...]], indexes: Sequence[int], results: list[Any]
) -> None:
    """Send ``commands[i]`` for each of ``indexes`` to cluster ``node`` in one
    pipeline; each reply (an error reply as its exception) goes to ``results[i]``.
    A failure to connect is marked as raised before anything was sent; a
    connection whose replies were not all read is closed, never reused."""
    connection = node.acquire_connection()
    complete = False
    try:
        if not connection.is_connected:
            try:
                await connection.connect()
            except redis.RedisError as exc:
                setattr(exc, UNSENT, True)
                raise
        await connection.send_packed_command(
            connection.pack_commands(commands[index] for index in indexes)
        )
        for index in indexes:
            try:
                results[index] = await node.parse_response(connection, commands[index][0])
            except E.ResponseError as reply:
                results[index] = reply
        complete = True
    finally:
        if not complete:
            with contextlib.suppress(Exception):
                await asyncio.shield(connection.disconnect(nowait=True))
        node.release(connection)


async def _refresh(client: AsyncCluster) -> None:
    with contextlib.suppress(redis.RedisError):  # no node answers now: the next call asks
        await client.nodes_manager.initialize()
