"""An app built from ``RELAY_*`` variables, for an outside ASGI server::

    hypercorn --worker-class trio --graceful-timeout 3 relay_trio.server.asgi:app

``relay-trio server`` is the better launch: it ends open streams as soon as a
shutdown signal arrives instead of after Hypercorn's graceful timeout.

The variables are those of :data:`relay_trio.settings.SERVER`, checked as the
command line checks them: a bad one stops the import at once with one line
naming it (``RELAY_POLL_INTERVAL: must be at least 0.05 and at most 3,600,
got 0``), so the server fails at start instead of running misconfigured.
"""

from .app import create_app
from .config import ServerConfig
from .serve import tune_gc_for_streams

try:
    config = ServerConfig.from_env()
except ValueError as exc:
    raise SystemExit(f"relay-trio: bad configuration: {exc}") from None

app = create_app(config)
tune_gc_for_streams()
