"""What the app holds while serving: config, broker, hub, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import current_app

from ..broker import Broker
from ..hub import Hub
from ..metrics import Metrics
from .broadcast import Broadcaster
from .config import ServerConfig


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

    @property
    def serving_broker(self) -> Broker:
        if self.broker is None:
            raise RuntimeError("the server is not serving")
        return self.broker

    @property
    def serving_hub(self) -> Hub:
        if self.hub is None:
            raise RuntimeError("the server is not serving")
        return self.hub

    @property
    def serving_broadcaster(self) -> Broadcaster:
        if self.broadcaster is None:
            raise RuntimeError("the server is not serving")
        return self.broadcaster


def relay_state() -> RelayState:
    """The state of the app handling the current request."""
    state: RelayState = current_app.extensions["relay"]
    return state
