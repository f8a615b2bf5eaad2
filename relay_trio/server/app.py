"""The Quart-Trio application: routes, lifecycle, JSON errors (access rules: :mod:`.auth`).

Lifecycle: ``before_serving`` opens the broker and starts the hub in the app's
own nursery (the lifespan nursery quart-trio keeps in ``app.nursery``); the
hub's poller only runs while someone streams (with ``fleet`` on, it shares one
poll with the other server processes: :mod:`relay_trio.fleet`, and ``/metrics``
has the ``relay_fleet_*`` metrics); its snapshots, and the queue depths of
``/metrics`` at scrape time, come from :mod:`.snapshots`. ``after_serving``
closes the hub, waits (:data:`~relay_trio.fleet.RELEASE_TIMEOUT` and a half
second at most) for a leading fleet member to hand the lead over, and closes
the broker. Requests never spawn work into the app's nursery.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from hypercorn.typing import ASGISendCallable
from quart import Response, jsonify
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from .._errors import NotServing, RedisUnavailable, RelayError
from ..broker import Broker
from ..fleet import RELEASE_TIMEOUT, Fleet
from ..fleet_redis import RedisBus, RedisLease
from ..hub import Hub
from ..metrics import CONTENT_TYPE, Metrics
from .api import api
from .api_jobs import open_job_waits
from .auth import Access
from .broadcast import Broadcaster
from .config import ServerConfig
from .direct import availability as fast_path_availability
from .errors import json_error
from .snapshots import Snapshots
from .state import RelayState, relay_state, relay_state_of
from .stream import EventStreamResponse, stream

log = logging.getLogger(__name__)


class _Connection(TrioASGIHTTPConnection):
    """Sends the final (empty) body message shielded from cancellation, and
    hands the event stream's response to its own sender.

    quart-trio cancels the request nursery as the response ends; if that cancel
    lands on the final send, Hypercorn never learns the response is complete,
    never marks the connection idle, and its keep-alive timeout never fires.
    """

    async def _send_response(self, send: ASGISendCallable, response: Any) -> None:
        if isinstance(response, EventStreamResponse):
            await response.send_to(send)  # shields its own final send
            return

        async def send_final_shielded(message: Any) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super()._send_response(send_final_shielded, response)


class RelayApp(QuartTrio):
    asgi_http_class = _Connection

    @property
    def state(self) -> RelayState:
        """What the app holds: its config, metrics, and while serving its broker,
        hub and broadcaster."""
        return relay_state_of(self)

    def close_streams(self) -> None:
        """End every open stream at once and refuse new ones (the hub closes): the
        first step of a shutdown, so that streams do not hold the server for its
        whole graceful timeout. Nothing to do when not serving."""
        hub = self.state.hub
        if hub is not None:
            hub.close()

    def allow_bind_address(self, host: str) -> None:
        """Answer to ``host`` (the address the server binds) as a Host too."""
        access: Access = self.extensions["relay_access"]
        access.hosts.add_bind_address(host)

    async def handle_http_exception(
        self, error: HTTPException
    ) -> HTTPException | ResponseReturnValue:
        """A redirect of the router (``/api//info`` → ``/api/info``) is JSON too,
        its Location relative (right behind a TLS proxy as well); Quart would send
        Werkzeug's HTML page, as it gives no handler a routing exception."""
        if isinstance(error, RequestRedirect):
            target = urlsplit(error.new_url)
            location = target.path + (f"?{target.query}" if target.query else "")
            response, status = json_error(f"moved permanently to {location}", error.code)
            response.headers["Location"] = location
            return response, status
        return await super().handle_http_exception(error)


WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
"""What ``/assets/`` serves, by file suffix; any other file is a 404."""
DASHBOARD_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""The page runs only its own scripts: no inline script or handler, even if some
text were ever rendered as HTML by mistake."""


def create_app(config: ServerConfig | None = None, *, metrics: Metrics | None = None) -> RelayApp:
    """A new app; nothing connects until it starts serving."""
    config = config or ServerConfig.from_env()
    app = RelayApp(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = config.max_payload_bytes * 2 + 64 * 1024
    app.config["JSON_SORT_KEYS"] = False
    state = RelayState(config=config, metrics=metrics or Metrics())
    access = Access(config)
    app.extensions["relay"] = state
    app.extensions["relay_access"] = access
    app.before_request(access.guard)  # Host, credentials, read-only, CSRF: every request
    app.register_blueprint(api)
    app.register_blueprint(stream)

    @app.before_serving
    async def start() -> None:
        broker = Broker.from_url(
            config.redis_url,
            socket_timeout=config.socket_timeout,
            prefix=config.prefix,
            max_payload_bytes=config.max_payload_bytes,
            events=state.metrics,
        )
        open_job_waits(app, broker)  # ?wait= requests hold blocking connections

        snapshots = Snapshots(broker, state.metrics)
        relay = None
        if config.fleet:  # one poll for every server process on this Redis and prefix
            relay = Fleet(
                RedisLease(broker.io, config.prefix),
                RedisBus(broker.io, config.prefix),
                on_relayed=snapshots.relayed,
            )
        hub = Hub(
            snapshots.tick,
            interval=config.poll_interval,
            drop_after=config.drop_after,
            keepalive=config.keepalive_interval,
            metrics=state.metrics,
            relay=relay,
        )
        state.metrics.watch_fleet(relay)  # relay_fleet_* on /metrics: with --fleet only
        app.extensions["relay_fleet"] = relay  # the stop waits for its leave
        await app.nursery.start(hub.serve)
        broadcaster = Broadcaster(hub, drop_after=config.drop_after, metrics=state.metrics)
        await app.nursery.start(broadcaster.serve)
        available, why = fast_path_availability()
        state.metrics.fast_path_available.set(1 if available else 0)
        log.info("stream fast path %s (%s)", "available" if available else "off", why)
        state.broker, state.hub, state.broadcaster = broker, hub, broadcaster
        state.snapshots = snapshots

    @app.after_serving
    async def stop() -> None:
        state.snapshots = None  # a late scrape renders what it has
        if state.broadcaster is not None:
            state.broadcaster.close()
        if state.hub is not None:
            state.hub.close()
        fleet: Fleet | None = app.extensions.get("relay_fleet")
        if fleet is not None:  # a leader hands the lead over before its Redis closes
            with trio.move_on_after(RELEASE_TIMEOUT + 0.5):
                await fleet.wait_idle()
        if state.broker is not None:
            await state.broker.aclose()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        try:
            await relay_state().serving_broker.ping()
        except RelayError as exc:
            # Redis's own words (an address, "invalid username-password pair") only
            # for those who may use the API
            why = f": {exc}" if access.may_see_details() else ""
            return jsonify({"error": f"Redis is not ready{why}", "status": "not ready"}), 503
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        serving = relay_state()
        if serving.snapshots is not None:  # queue depths as Redis holds them now
            await serving.snapshots.refresh_depths()
        return Response(serving.metrics.render(), content_type=CONTENT_TYPE)

    # The dashboard: the page at ``/`` and its files (plain ES modules, CSS, the
    # vendored chart library) under ``/assets/``. Both rules are the one "index"
    # endpoint: the dashboard, not part of the API or its OpenAPI document.
    @app.get("/", defaults={"asset": None})
    @app.get("/assets/<path:asset>")
    async def index(asset: str | None) -> Response | tuple[Response, int]:
        if asset is None:
            page = WEB_DIR / "index.html"
            if not page.is_file():
                return json_error("the dashboard is not built into this install", 404)
            response = Response(page.read_bytes(), content_type="text/html; charset=utf-8")
            response.headers["Content-Security-Policy"] = DASHBOARD_CSP
        else:
            found = dashboard_asset(asset)
            if found is None:
                return json_error("no such dashboard file", 404)
            path, content_type = found
            response = Response(path.read_bytes(), content_type=content_type)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        response, status = json_error(exc.description or exc.name, exc.code or 500)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(RedisUnavailable)
    async def redis_down(exc: RedisUnavailable) -> tuple[Response, int]:
        return json_error(str(exc), 503)

    @app.errorhandler(NotServing)
    async def not_serving(exc: NotServing) -> tuple[Response, int]:
        return json_error(str(exc), 503)  # a request during startup or shutdown

    @app.errorhandler(Exception)
    async def internal(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("unhandled error", exc_info=exc)
        return json_error("internal server error", 500)

    return app


def dashboard_asset(name: str) -> tuple[Path, str] | None:
    """The file ``name`` names under ``web/`` and its content type, or None.

    Only files of a known type, with no hidden or parent segment, that resolve
    (symlinks too) inside ``web/``: nothing else on the disk can be read."""
    parts = name.split("/")
    if any(not part or part.startswith(".") or "\\" in part for part in parts):
        return None
    content_type = ASSET_TYPES.get(Path(name).suffix.lower())
    if content_type is None:
        return None
    root = WEB_DIR.resolve()
    try:
        path = root.joinpath(*parts).resolve()
    except (OSError, ValueError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path, content_type
