"""What every runtime's Redis I/O shares: limits, errors, and the rules of a call.

The three runtimes (Trio through threads, plain Python, asyncio) each keep
their Redis I/O in one module (:mod:`~relay_trio.redis_io`,
:mod:`~relay_trio.redis_sync`, :mod:`~relay_trio.redis_aio`). What they must
agree on lives here, free of I/O:

- the explicit timeouts and pool sizes;
- :func:`relay_error`: every redis-py exception becomes one of relay-trio's,
  its message free of the password. Failures before a command was sent
  (refused, no answer while connecting, credentials refused, a server that is
  not Redis) are :class:`RedisUnavailable`; a timeout or a lost connection
  after it was sent is :class:`RedisOutcomeUnknown`; error replies are
  :class:`RedisCommandError`;
- :func:`redis_url_problem`: a URL checked without connecting;
- how a step goes on the wire, which error replies mean "it did not run, send
  it again" (NOSCRIPT; on a cluster a redirection) and what stands in the
  replies for the others;
- on a Redis Cluster, the slot a step touches: a script or a transaction that
  would span two slots is refused before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import redis

from ._errors import (
    InvalidInput,
    RedisCommandError,
    RedisOutcomeUnknown,
    RedisUnavailable,
    RelayError,
)
from ._redact import redact_text
from .calls import Call, Script, Step
from .redis_sentinel import is_sentinel_url, sentinel_url_problem

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
            hint = ""
            if "SELECT is not allowed in cluster mode" in detail:
                hint = f"; {CLUSTER_DB}"
            return RedisUnavailable(
                f"Redis is unavailable: {where} refused the connection handshake ({detail}){hint}"
            )
        return RedisCommandError(detail)
    return RedisCommandError(f"redis-py refused the command: {detail}")


UNSENT = "_relay_unsent"
"""The attribute that marks a redis-py error raised before the command was sent."""


def was_sent(exc: BaseException) -> bool:
    return not getattr(exc, UNSENT, False)


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


def wire_args(step: Step, *, flagged: bool = False) -> tuple[Any, ...]:
    """The command that sends ``step`` (a script goes by its SHA: ``EVALSHA``;
    ``flagged``: its flagged variant, see :class:`~relay_trio.calls.LuaScript`)."""
    if isinstance(step, Script):
        sha, _ = step.script.variant(flagged=flagged)
        return ("EVALSHA", sha, len(step.keys), *step.keys, *step.args)
    return tuple(step.args)


def step_name(step: Step) -> str:
    return step.name if isinstance(step, Script) else str(step.args[0])


def did_not_run(reply: object, *, cluster: bool = False) -> bool:
    """Whether error reply ``reply`` says its step did not run and may be sent
    again on its own: NOSCRIPT (the script is loaded first), and on a cluster a
    redirection (``MOVED``/``ASK``: the slot moved) or ``TRYAGAIN``."""
    kinds = E.NoScriptError | E.AskError | E.TryAgainError if cluster else E.NoScriptError
    return isinstance(reply, kinds)


def settled(
    reply: redis.exceptions.ResponseError,
    call: Call,
    errors: Callable[[redis.RedisError], RelayError],
) -> RelayError:
    """What stands in the replies for error reply ``reply``: the relay-trio
    error (``call.inline_errors``). Raises ``reply`` when the call wants its
    errors raised, or when it says Redis cannot take commands now (busy,
    loading, read-only ...)."""
    if not call.inline_errors:
        raise reply
    error = errors(reply)
    if isinstance(error, RedisUnavailable):
        raise reply
    return error


def settle(
    replies: list[Any],
    steps: Sequence[Step],
    call: Call,
    errors: Callable[[redis.RedisError], RelayError],
    rerun: Callable[[Step], Any],
    *,
    cluster: bool = False,
) -> list[Any]:
    """Replace each error reply in ``replies`` (blocking ``rerun``): a step that
    did not run (:func:`did_not_run`) is run again on its own; the others are
    :func:`settled`. (:mod:`~relay_trio.redis_aio` has the awaiting twin.)"""
    for index, value in enumerate(replies):
        if not isinstance(value, E.ResponseError):
            continue
        if did_not_run(value, cluster=cluster):
            try:
                replies[index] = rerun(steps[index])
                continue
            except E.ResponseError as again:
                value = again
        replies[index] = settled(value, call, errors)
    return replies


# --- Redis Cluster: one slot per script or transaction ------------------------


def one_slot(name: str, keys: Sequence[Any], keyslot: Callable[[Any], int]) -> int | None:
    """The hash slot of every one of ``keys`` (None: there are none, as for
    ``TIME``). Keys in two slots are refused before anything is sent
    (:class:`redis.exceptions.ClusterCrossSlotError`): on a cluster, a script
    or a transaction runs on one node, against one slot."""
    slots = {keyslot(key) for key in keys}
    if len(slots) > 1:
        raise E.ClusterCrossSlotError(
            f"{name} would touch {len(slots)} Redis Cluster slots at once "
            f"({_slot_list(keys, keyslot)}): a script or transaction must keep to one "
            "slot (keys sharing one {hash tag})"
        )
    return slots.pop() if slots else None


def _slot_list(keys: Sequence[Any], keyslot: Callable[[Any], int]) -> str:
    return ", ".join(f"{_text(key)} in slot {keyslot(key)}" for key in keys)


def _text(key: Any) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


def cluster_info_enabled(info: object) -> bool:
    """Whether ``INFO cluster``'s reply (parsed by redis-py) says cluster mode."""
    return isinstance(info, dict) and str(info.get("cluster_enabled", 0)) == "1"


FLAGGED = "_relay_flagged_scripts"
"""The attribute a cluster client carries: whether its scripts go flagged."""


def flags_scripts(info: object) -> bool:
    """Whether a cluster whose node answered ``INFO server`` with ``info`` takes
    flagged scripts (``#!lua``: Redis 7.0 or later; an unreadable version: no)."""
    version = str(info.get("redis_version", "")) if isinstance(info, dict) else ""
    try:
        major = int(version.split(".")[0])
    except ValueError:
        return False
    return major >= 7


CLUSTER_DB = "a Redis Cluster has only database 0: drop the /N of the URL"


def cluster_client_failed(exc: BaseException) -> NoReturn:
    """Raise what redis-py's failure to build a cluster client means: a URL that
    names a database is :class:`InvalidInput` (a cluster has only database 0);
    anything else is ``exc`` again, marked as raised before anything was sent
    (no node answered)."""
    if "db" in str(exc):
        raise InvalidInput("redis_url", CLUSTER_DB) from exc
    setattr(exc, UNSENT, True)
    raise exc


def group_by_node(slots: Sequence[int | None], node_of: Callable[[int | None], Any]) -> Any:
    """The steps' indexes grouped by the node that serves each one's slot:
    ``[(node, [index, ...]), ...]`` in the order the nodes first appear."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for index, slot in enumerate(slots):
        node = node_of(slot)
        groups.setdefault(node.name, (node, []))[1].append(index)
    return list(groups.values())
