"""The HTTP server: the Quart-Trio app, the stream, and its launch."""

from .app import create_app
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
