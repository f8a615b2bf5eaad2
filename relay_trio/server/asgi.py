"""An app built from ``RELAY_*`` variables, for an outside ASGI server::

    hypercorn --worker-class trio --graceful-timeout 3 relay_trio.server.asgi:app

``relay-trio server`` is the better launch: it ends open streams as soon as a
shutdown signal arrives instead of after Hypercorn's graceful timeout.
"""

from .app import create_app
from .serve import tune_gc_for_streams

app = create_app()
tune_gc_for_streams()
