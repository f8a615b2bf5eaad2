"""Running a call on a Redis Cluster with blocking redis-py: :func:`execute_cluster`.

Each step goes to the primary of its keys' slot; the steps for one node go in
one pipeline, and the pipelines of all nodes are written before any reply is
read: one round trip per node the call touches. redis-py's own cluster
pipeline is not used because it sends a command again after a lost
connection, which for a claim or an ack is not ours to decide. A step that
meets a redirection (``MOVED``/``ASK``: the slot moved, ``TRYAGAIN``) or
NOSCRIPT did not run, and is sent again on its own through redis-py's cluster
client, which follows the redirection and updates its slot map. No step is
ever sent twice otherwise: a lost connection or a timeout is raised.

A script keeps to one slot (its KEYS share a ``{hash tag}``) and a transaction
too; otherwise :class:`~redis.exceptions.ClusterCrossSlotError` is raised
before anything is sent (:func:`~relay_trio.redis_wire.one_slot`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.cluster import NodeCommands, PipelineCommand, RedisCluster

from ._errors import RelayError
from .calls import Call, Script, Step
from .redis_connect import run_step
from .redis_wire import FLAGGED, UNSENT, E, group_by_node, one_slot, settle, step_name, wire_args


def step_keys(client: Any, step: Step) -> Sequence[Any]:
    """The keys ``step`` touches: a script's KEYS, a command's as redis-py's
    command table reads them."""
    if isinstance(step, Script):
        return step.keys
    node = client.get_default_node()
    return client.commands_parser.get_keys(node.redis_connection, *step.args) or ()


def step_slot(client: Any, step: Step) -> int | None:
    """The one hash slot ``step`` touches (None: no key); two slots are refused."""
    return one_slot(step_name(step), step_keys(client, step), client.keyslot)


def node_of(client: Any, slot: int | None) -> Any:
    """The primary serving ``slot`` (a step without keys: the default node)."""
    if slot is None:
        node = client.get_default_node()
        assert node is not None
        return node
    return client.nodes_manager.get_node_from_slot(slot)


def execute_cluster(
    client: RedisCluster, call: Call, errors: Callable[[redis.RedisError], RelayError]
) -> list[Any]:
    """:func:`relay_trio.redis_sync.execute` on a Redis Cluster (see the module)."""
    steps = call.steps
    if call.transaction:
        return _transaction(client, call, errors)
    slots = [step_slot(client, step) for step in steps]
    groups = group_by_node(slots, functools.partial(node_of, client))
    flagged = bool(getattr(client, FLAGGED, False))
    commands = [wire_args(step, flagged=flagged) for step in steps]
    results = _send_grouped(client, commands, groups)
    failed = next((r for r in results if isinstance(r, E.ConnectionError | E.TimeoutError)), None)
    if failed is not None:
        refresh(client)  # the node may have failed over: learn the new map
        raise failed
    return settle(results, steps, call, errors, functools.partial(run_step, client), cluster=True)


def _send_grouped(client: Any, commands: list[tuple[Any, ...]], groups: Any) -> list[Any]:
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
                setattr(exc, UNSENT, True)
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


def refresh(client: RedisCluster) -> None:
    """Read the slot map again (no node answering now: the next call asks)."""
    with contextlib.suppress(redis.RedisError):
        client.nodes_manager.initialize()


def _transaction(
    client: RedisCluster, call: Call, errors: Callable[[redis.RedisError], RelayError]
) -> list[Any]:
    keys = [key for step in call.steps for key in step_keys(client, step)]
    slot = one_slot("a transaction (MULTI/EXEC)", keys, client.keyslot)
    flagged = bool(getattr(client, FLAGGED, False))
    for attempt in (1, 2):
        redis_node = client.get_redis_connection(node_of(client, slot))
        pipe = redis_node.pipeline(transaction=True)
        for step in call.steps:
            pipe.execute_command(*wire_args(step, flagged=flagged))  # type: ignore[no-untyped-call]
        try:
            results: list[Any] = pipe.execute(raise_on_error=False)
        except (E.AskError, E.TryAgainError):  # EXECABORT: the slot moved, nothing ran
            if attempt == 2:
                raise
            refresh(client)
            continue
        rerun = functools.partial(run_step, redis_node, flagged=flagged)
        return settle(results, call.steps, call, errors, rerun)
    raise AssertionError("unreachable")  # pragma: no cover
