"""The fleet's lease and snapshot channel on Redis (see :mod:`relay_trio.fleet`).

========================  ======  ==============================================
key                       type    content
========================  ======  ==============================================
``P:{fleet}:lease``       string  the leader's epoch; expires (PX) unless renewed
``P:{fleet}:epoch``       int     the last epoch given out (INCR): fencing tokens
``P:{fleet}:snapshots``   pubsub  channel: ``<epoch>\\n`` + the SSE event, or
                                  ``<epoch>\\nleaving\\n`` (a clean leave)
========================  ======  ==============================================

The two keys share the ``{fleet}`` hash tag, so each script touches one slot.
Taking the lease is one script (the INCR only when the lease is free: SET NX
with a fresh token); renewing and releasing are check-and-set scripts on the
epoch. Every call is one round trip in a worker thread (:class:`RedisIO`), not
abandoned on cancel: a leaving leader's release and leaving message run under
:data:`~relay_trio.fleet.RELEASE_TIMEOUT`, and one already sent when it expires
finishes first (within the socket timeout).

The subscription holds one connection of its own (a pool of one) and reads it
in a worker thread, one ``get_message`` (at most :data:`READ_WAIT` s) at a time;
that read **is** abandoned on cancel: it consumes nothing but snapshots, which
the next tick replaces, and leaving messages, whose loss costs only the wait of
the silence rule. A lock keeps the abandoned read and the closing of the
connection apart. A lost connection is reopened after a second; what was
published meanwhile is lost (the follower hears the next one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
import trio

from .redis_connect import blocking_twin
from .redis_io import RedisIO

log = logging.getLogger(__name__)

READ_WAIT = 1.0
"""Seconds one read of the subscription waits for a message."""
RECONNECT_AFTER = 1.0
"""Seconds before a lost subscription is opened again."""

ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch, 'PX', ARGV[1])
return epoch
"""
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fleet_keys(prefix: str) -> tuple[str, str, str]:
    """The lease key, the epoch key and the channel of the fleet under ``prefix``."""
    base = f"{prefix}:{{fleet}}:"
    return base + "lease", base + "epoch", base + "snapshots"


def _nothing() -> None:
    pass


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisLease:
    """:class:`relay_trio.fleet.Lease` on Redis."""

    def __init__(self, io: RedisIO, prefix: str) -> None:
        self._io = io
        self.key, self.epoch_key, _ = fleet_keys(prefix)
        self._acquire = io.client.register_script(ACQUIRE)
        self._renew = io.client.register_script(RENEW)
        self._release = io.client.register_script(RELEASE)

    async def acquire(self, ttl: float) -> int | None:
        keys, args = [self.key, self.epoch_key], [_ms(ttl)]
        reply = await self._io.run(lambda c: self._acquire(keys, args, client=c))
        return None if reply is None else int(reply)

    async def renew(self, epoch: int, ttl: float) -> bool:
        keys, args = [self.key], [epoch, _ms(ttl)]
        return bool(await self._io.run(lambda c: self._renew(keys, args, client=c)))

    async def release(self, epoch: int) -> None:
        keys, args = [self.key], [epoch]
        await self._io.run(lambda c: self._release(keys, args, client=c))


class RedisBus:
    """:class:`relay_trio.fleet.Bus` on Redis pub/sub."""

    def __init__(self, io: RedisIO, prefix: str) -> None:
        self._io = io
        _, _, self.channel = fleet_keys(prefix)
        self.published = 0

    async def publish(self, message: bytes) -> None:
        channel = self.channel
        await self._io.run(lambda c: c.publish(channel, message))
        self.published += 1

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        send, receive = trio.open_memory_channel[bytes](16)
        async with trio.open_nursery() as nursery:
            await nursery.start(self._read, send)
            try:
                yield receive
            finally:
                nursery.cancel_scope.cancel()

    async def _read(
        self,
        send: trio.MemorySendChannel[bytes],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Subscribe (the first time: before ``started``, so a failure is the
        caller's), then hand every message on; reconnect when the connection is lost."""
        started = False
        async with send:
            while True:
                try:
                    await self._subscribed(send, task_status if not started else None)
                except redis.RedisError as exc:
                    if not started:
                        raise
                    log.warning("fleet: subscription lost, reopening: %s", exc)
                started = True
                await trio.sleep(RECONNECT_AFTER)

    async def _subscribed(
        self, send: trio.MemorySendChannel[bytes], task_status: trio.TaskStatus[None] | None
    ) -> None:
        source = self._io.client
        pubsub: Any
        disconnect: Callable[[], None]
        if isinstance(source, redis.Redis):  # a connection of its own, long timeout
            client = blocking_twin(source, 1)
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            disconnect = client.connection_pool.disconnect
        else:  # a cluster: its pub/sub holds a connection to one node of its own
            pubsub = source.pubsub()  # type: ignore[no-untyped-call]
            disconnect = _nothing
        lock = threading.Lock()

        def subscribe() -> None:
            with lock:
                pubsub.subscribe(self.channel)

        def read() -> Any:
            with lock:
                return pubsub.get_message(timeout=READ_WAIT)

        def close() -> None:
            with lock:  # after an abandoned read has returned
                pubsub.close()
                disconnect()

        try:
            await trio.to_thread.run_sync(subscribe, abandon_on_cancel=True)
            if task_status is not None:
                task_status.started()
            while True:
                message = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    if isinstance(data, bytes):
                        await send.send(data)
        finally:
            threading.Thread(target=close, name="relay-fleet-close", daemon=True).start()


__all__ = ["READ_WAIT", "RedisBus", "RedisLease", "fleet_keys"]
