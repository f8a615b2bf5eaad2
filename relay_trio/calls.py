"""Round trips to Redis, described without doing them: the broker's sans-I/O seam.

The broker's logic (validating, building each script's KEYS and ARGV, decoding
the replies, raising typed errors) is written once, in
:class:`~relay_trio.broker_core.BrokerCore`, as *operations*: generators that
yield a :class:`Call` (one round trip: one command, one script, or a pipeline
of them), receive its replies, and finally return the operation's result. They
do no I/O. Each runtime drives them with its own Redis client: Trio through
threads (:mod:`relay_trio.redis_io`), plain Python (:mod:`relay_trio.redis_sync`),
asyncio (:mod:`relay_trio.redis_aio`). Same scripts, same keys, same errors.

A driver sends each yielded call and sends its replies back in; when a call
fails, it throws the relay-trio error into the operation, which may yield a
call to undo what it started (delete_queue puts its registry entry back) and
then re-raises. Drivers run such clean-up calls even when their task was
cancelled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

T = TypeVar("T")


class LuaScript:
    """A script from ``relay_trio/lua/<name>.lua`` behind ``_lib.lua``, run by SHA.

    Each script's header names its KEYS and ARGV. Loading reads package files
    once per name (:func:`lua`); nothing here talks to Redis.

    On a Redis Cluster of Redis 7.0 or later a script goes *flagged*, with a
    ``#!lua`` first line (:meth:`variant`): with it, Redis refuses any key the
    script touches outside the slot of its declared KEYS ("Script attempted to
    access keys that do not hash to the same slot"), so the rule that every key
    a script builds shares its KEYS' slot is enforced by the server, not only
    kept by the scripts. (Redis 6.2 knows no such line; on a single Redis there
    is no slot to keep to.)"""

    __slots__ = ("flagged_sha", "flagged_source", "name", "sha", "source")

    def __init__(self, name: str, source: str | None = None) -> None:
        self.name = name
        if source is None:
            lua_dir = resources.files("relay_trio").joinpath("lua")
            # every script runs behind the shared helpers of _lib.lua (Redis has no includes)
            source = (
                lua_dir.joinpath("_lib.lua").read_text()
                + lua_dir.joinpath(f"{name}.lua").read_text()
            )
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.flagged_source = "#!lua\n" + source
        self.flagged_sha = hashlib.sha1(self.flagged_source.encode()).hexdigest()

    def variant(self, *, flagged: bool) -> tuple[str, str]:
        """``(sha, source)`` to send: the flagged variant or the plain one."""
        return (self.flagged_sha, self.flagged_source) if flagged else (self.sha, self.source)


_SCRIPTS: dict[str, LuaScript] = {}


def lua(name: str) -> LuaScript:
    """The script ``name`` (loaded from the package once)."""
    script = _SCRIPTS.get(name)
    if script is None:
        script = _SCRIPTS[name] = LuaScript(name)
    return script


@dataclass(frozen=True, slots=True)
class Script:
    """Run script ``name`` with ``keys`` and ``args`` (EVALSHA; loaded on NOSCRIPT)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]

    @property
    def script(self) -> LuaScript:
        return lua(self.name)


@dataclass(frozen=True, slots=True)
class Command:
    """One plain Redis command, e.g. ``Command(("SMEMBERS", key))``."""

    args: tuple[Any, ...]


Step = Script | Command


@dataclass(frozen=True, slots=True)
class Call:
    """One round trip: its ``steps`` in one pipeline (not a transaction: each
    step is atomic on its own), replies in order.

    ``inline_errors``: an error reply stands in the reply list as the
    relay-trio error for it instead of failing the call (one that says Redis
    cannot take commands now still fails it). ``block_s``: the call is one
    blocking pop of wake-up hints (``BLPOP``) waiting up to that long; a
    runtime may abandon it on cancel, as it can take a hint but never a job.
    ``transaction``: the steps run as one MULTI/EXEC (they must share a slot)."""

    steps: Sequence[Step]
    inline_errors: bool = False
    block_s: float | None = None
    transaction: bool = False


Op = Generator[Call, list[Any], T]
"""An operation: yields calls, receives each one's replies, returns its result."""


def script(name: str, keys: Sequence[str], args: Sequence[Any]) -> Call:
    """A call of one script: its reply is ``replies[0]``."""
    return Call((Script(name, keys, args),))


def command(*args: Any) -> Call:
    """A call of one plain command: its reply is ``replies[0]``."""
    return Call((Command(args),))


def returning(value: T) -> Op[T]:
    """An operation that needs no round trip and returns ``value``."""
    return value
    yield  # pragma: no cover - makes this function a generator


def drive_sync(op: Op[T], execute: Callable[[Call], list[Any]]) -> T:
    """Run ``op`` to its end with the blocking ``execute`` (one call, its replies)."""
    try:
        call = next(op)
        while True:
            try:
                replies = execute(call)
            except BaseException as exc:
                call = op.throw(exc)
            else:
                call = op.send(replies)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
