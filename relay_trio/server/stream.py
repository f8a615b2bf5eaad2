"""``GET /api/stream``: Server-Sent Events fed by the hub (spec section 6).

The stream opens with a ``retry:`` hint, then sends each hub snapshot as it
comes — the event bytes were encoded once by the hub for every subscriber —
and a ``: keep-alive`` comment whenever nothing was sent for
``keepalive_interval`` seconds. The response has no timeout (Quart's
``RESPONSE_TIMEOUT`` would cut it). When the client goes away the generator is
closed and the subscription leaves the hub; when the hub closes (shutdown) or
drops this subscriber, the stream ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Blueprint, Response

from ..hub import Hub, HubClosed
from .errors import json_error
from .state import relay_state

stream = Blueprint("stream", __name__)


async def sse_events(hub: Hub, retry_ms: int) -> AsyncIterator[bytes]:
    """The body of one stream: the retry hint, then what the hub hands over —
    snapshots, and keep-alive comments when there was nothing to send (the hub
    times those, so a stream costs no timer of its own per event)."""
    async with hub.subscribe() as subscription:
        yield b"retry: %d\n\n" % retry_ms
        async for snapshot in subscription:
            yield snapshot.event


@stream.get("/api/stream")
async def get_stream() -> Response | tuple[Response, int]:
    state = relay_state()
    hub = state.serving_hub
    if hub.closing:
        return json_error("the server is shutting down", 503)
    body = sse_events(hub, state.config.stream_retry_ms)
    response = Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # no RESPONSE_TIMEOUT for a stream
    return response


__all__ = ["HubClosed", "sse_events", "stream"]
