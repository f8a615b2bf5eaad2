"""What the app holds while serving: config, broker, hub, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import Quart, current_app

from .._errors import NotServing
from ..broker import Broker
from ..hub import Hub
from ..metrics import Metrics
from .broadcast import Broadcaster
from .config import ServerConfig
from .snapshots import Snapshots


@dataclass
class RelayState:
    config: ServerConfig
    metrics: Metrics = field(default_factory=Metrics)
    broker: Broker | None = None
    """Set while serving (between startup and shutdown)."""
    hub: Hub | None = None
    """Set while serving."""
    broadcaster: Broadcaster | None = None
    """Set while serving: writes the fast-path streams."""
    snapshots: Snapshots | None = None
    """Set while serving: the hub's snapshot source, and the depths of ``/metrics``."""

    @property
    def serving_broker(self) -> Broker:
        if self.broker is None:
            raise NotServing("the server is not serving")
        return self.broker

    @property
    def serving_hub(self) -> Hub:
        if self.hub is None:
            raise NotServing("the server is not serving")
        return self.hub

    @property
    def serving_broadcaster(self) -> Broadcaster:
        if self.broadcaster is None:
            raise NotServing("the server is not serving")
        return self.broadcaster


def relay_state_of(app: Quart) -> RelayState:
    """The state of ``app`` (one :func:`~relay_trio.server.create_app` made)."""
    state: RelayState = app.extensions["relay"]
    return state


def relay_state() -> RelayState:
    """The state of the app handling the current request."""
    return relay_state_of(current_app)
