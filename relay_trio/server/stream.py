"""``GET /api/stream``: Server-Sent Events fed by the hub (spec section 6).

The stream opens with a ``retry:`` hint, then sends each hub snapshot as it
comes — the event bytes were encoded once by the hub for every subscriber —
and a ``: keep-alive`` comment whenever nothing was sent for
``keepalive_interval`` seconds. The response has no timeout (Quart's
``RESPONSE_TIMEOUT`` would cut it).

The route answers with an :class:`EventStreamResponse`; the app's connection
class sends it with :meth:`EventStreamResponse.send_to`. Where the socket fast
path applies (:mod:`.direct`: Hypercorn's trio worker, HTTP/1.1), the stream
registers with the broadcaster (:mod:`.broadcast`), the one hub subscriber
that writes every such stream, once per snapshot; this task only finishes what
the broadcaster could not write at once. Elsewhere the stream subscribes to the
hub itself and sends each event through ASGI. When the client goes away the
stream leaves; when the server shuts down, or the client took nothing for
``drop_after`` seconds, the stream ends (and a connection whose last chunk was
cut part-way, or that would not take the end of the response, is shut down).

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
from ..metrics import Metrics
from .auth import relay_access
from .broadcast import Broadcaster
from .direct import SocketWriter
from .errors import json_error
from .state import relay_state

stream = Blueprint("stream", __name__)


def _body(data: bytes, more: bool = True) -> Any:
    return {"type": "http.response.body", "body": data, "more_body": more}


class EventStreamResponse(Response):
    """The stream's response. It has no body of its own: the app's connection
    class (``app._Connection``) sends it with :meth:`send_to`."""

    def __init__(
        self, hub: Hub, broadcaster: Broadcaster, retry_ms: int, metrics: Metrics | None = None
    ) -> None:
        super().__init__(
            [],  # an iterable, not bytes: no Content-Length on an endless stream
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.timeout = None  # no RESPONSE_TIMEOUT for a stream
        self.hub = hub
        self.broadcaster = broadcaster
        self.retry_ms = retry_ms
        self.metrics = metrics

    async def send_to(self, send: Any) -> None:
        """Send the whole response through the ASGI ``send``, until the client
        leaves (cancellation), is dropped for taking nothing, or the server
        shuts down.

        On the fast path the broadcaster writes the events and this task only
        finishes what it could not; elsewhere this task subscribes to the hub and
        sends every event through ASGI. The response ends with the final (empty)
        body message, sent shielded so Hypercorn always learns it is complete —
        unless that could block or the framing is broken (a chunk cut part-way,
        a client dropped for not reading): then the connection is shut down."""
        await send(
            {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": encode_headers(self.headers),
            }
        )
        await send(_body(b"retry: %d\n\n" % self.retry_ms))
        writer = SocketWriter.attach(send)
        if self.metrics is not None:
            self.metrics.stream_opened("fast" if writer is not None else "asgi")
        try:
            if writer is not None:
                await self._send_fast(writer)
            else:
                await self._send_asgi(send)
        except HubClosed:
            pass  # shut down between the route and here: an empty stream
        except trio.BrokenResourceError:
            pass  # the client is gone
        finally:
            if writer is not None and not writer.writable_now():
                writer.abort()
            else:
                with trio.CancelScope(shield=True):
                    await send(_body(b"", more=False))

    async def _send_fast(self, writer: SocketWriter) -> None:
        async with self.broadcaster.register(writer) as outlet:
            with outlet.cancel_scope:
                async for event in outlet:
                    await writer.send(event)
            if outlet.dropped:  # it stopped reading: no final chunk it would not read
                writer.abort()

    async def _send_asgi(self, send: Any) -> None:
        async with self.hub.subscribe() as subscription:
            with subscription.cancel_scope:
                async for snapshot in subscription:
                    await send(_body(snapshot.event))


@stream.get("/api/stream")
async def get_stream() -> Response | tuple[Response, int]:
    state = relay_state()
    hub = state.serving_hub
    if hub.closing:
        return json_error("the server is shutting down", 503)
    if request.method == "HEAD":  # the head only: no subscription, no endless body
        return Response(b"", mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
    return EventStreamResponse(
        hub, state.serving_broadcaster, state.config.stream_retry_ms, state.metrics
    )


@stream.post("/api/stream/ticket")
async def stream_ticket() -> Response:
    """``{ticket, expires_in}``: a one-time credential for ``GET /api/stream?ticket=``."""
    tickets = relay_access().tickets
    ttl = tickets.ttl
    response = jsonify({"ticket": tickets.issue(), "expires_in": int(ttl) if ttl % 1 == 0 else ttl})
    response.headers["Cache-Control"] = "no-store"
    return response


__all__ = ["EventStreamResponse", "HubClosed", "stream"]
