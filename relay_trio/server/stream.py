"""``GET /api/stream``: Server-Sent Events fed by the hub (spec section 6).

The stream opens with a ``retry:`` hint, then sends each hub snapshot as it
comes — the event bytes were encoded once by the hub for every subscriber —
and a ``: keep-alive`` comment whenever nothing was sent for
``keepalive_interval`` seconds. The response has no timeout (Quart's
``RESPONSE_TIMEOUT`` would cut it).

The route answers with an :class:`EventStreamResponse`; the app's connection
class sends it with :meth:`EventStreamResponse.send_to`, which, where it can,
writes events straight to the socket (:mod:`.direct`) — from the hub's tick
(``stream_writes="tick"``, the default) or from this stream's task after it
took the snapshot from its channel (``"task"``) — and otherwise sends them as
ASGI body messages. When the client goes away the subscription
leaves the hub; when the hub closes (shutdown) or drops this subscriber, the
stream ends (a stream whose last chunk was cut part-way is closed instead).

``POST /api/stream/ticket`` gives a browser the credential for one stream: with
an API token set, EventSource (which cannot send headers) opens
``/api/stream?ticket=<ticket>``; the ticket is short-lived, good for one
connection and for the stream only, so a URL that proxies and browser history
keep holds nothing worth stealing. Who may get one is checked by the app's guard
(:mod:`.auth`), like everything under ``/api/``.
"""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, jsonify, request
from quart.utils import encode_headers

from ..hub import Hub, HubClosed
from .auth import relay_access
from .direct import SocketWriter
from .errors import json_error
from .state import relay_state

stream = Blueprint("stream", __name__)


def _body(data: bytes, more: bool = True) -> Any:
    return {"type": "http.response.body", "body": data, "more_body": more}


class EventStreamResponse(Response):
    """The stream's response. It has no body of its own: the app's connection
    class (``app._Connection``) sends it with :meth:`send_to`."""

    def __init__(self, hub: Hub, retry_ms: int, *, writes: str = "tick") -> None:
        super().__init__(
            [],  # an iterable, not bytes: no Content-Length on an endless stream
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.timeout = None  # no RESPONSE_TIMEOUT for a stream
        self.hub = hub
        self.retry_ms = retry_ms
        self.writes = writes
        """``tick``, ``task`` or ``asgi``: see ``ServerConfig.stream_writes``."""

    async def send_to(self, send: Any) -> None:
        """Send the whole response through the ASGI ``send``, until the client
        leaves (cancellation), the hub drops this subscriber or closes.

        The response ends with the final (empty) body message, sent shielded so
        Hypercorn always learns the response is complete; when a direct write
        was cut part-way, or the hub dropped this client for taking nothing, the
        connection is shut down instead."""
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": encode_headers(self.headers),
            }
        )
        writer: SocketWriter | None = None
        try:
            async with self.hub.subscribe() as subscription:
                await send(_body(b"retry: %d\n\n" % self.retry_ms))
                if self.writes != "asgi":
                    writer = SocketWriter.attach(send)
                if self.writes == "tick":
                    subscription.writer = writer  # None: the hub uses the channel
                with subscription.cancel_scope:
                    async for snapshot in subscription:
                        if writer is None:
                            await send(_body(snapshot.event))
                        elif not writer.write_now(snapshot.event):
                            await writer.send(snapshot.event)
        except HubClosed:
            pass  # shut down between the route and here: an empty stream
        except trio.BrokenResourceError:
            pass  # the client is gone
        finally:
            if writer is not None and not writer.clean:
                # cut mid-chunk; a dropped client is always here too: it is dropped
                # only while its task waits in ``writer.send``, which the drop cancels
                writer.abort()
            else:
                with trio.CancelScope(shield=True):
                    await send(_body(b"", more=False))


@stream.get("/api/stream")
async def get_stream() -> Response | tuple[Response, int]:
    state = relay_state()
    hub = state.serving_hub
    if hub.closing:
        return json_error("the server is shutting down", 503)
    if request.method == "HEAD":  # the head only: no subscription, no endless body
        return Response(b"", mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
    return EventStreamResponse(hub, state.config.stream_retry_ms, writes=state.config.stream_writes)


@stream.post("/api/stream/ticket")
async def stream_ticket() -> Response:
    """``{ticket, expires_in}``: a one-time credential for ``GET /api/stream?ticket=``."""
    tickets = relay_access().tickets
    ttl = tickets.ttl
    response = jsonify({"ticket": tickets.issue(), "expires_in": int(ttl) if ttl % 1 == 0 else ttl})
    response.headers["Cache-Control"] = "no-store"
    return response


__all__ = ["EventStreamResponse", "HubClosed", "stream"]
