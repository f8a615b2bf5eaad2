"""Server configuration: flags and ``RELAY_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..job import DEFAULT_MAX_PAYLOAD_BYTES
from ..keys import DEFAULT_PREFIX


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


STREAM_WRITES = ("tick", "task", "asgi")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; every field has a ``RELAY_*`` variable."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = DEFAULT_PREFIX
    api_token: str | None = None
    """When set, /api/* needs ``Authorization: Bearer <token>`` (the stream also
    takes ``?access_token=``, since EventSource cannot send headers)."""
    read_only: bool = False
    """Refuse every mutating API call with 403."""
    poll_interval: float = 1.0
    """Seconds between two hub polls of Redis."""
    keepalive_interval: float = 15.0
    """Seconds between keep-alive comments on an idle stream."""
    stream_retry_ms: int = 2000
    """The ``retry:`` hint sent at the start of a stream."""
    drop_after: float = 30.0
    """A subscriber that takes no snapshot for this long is dropped."""
    stream_writes: str = "tick"
    """How stream events reach a client's socket where the fast path applies
    (Hypercorn's trio worker, plain HTTP/1.1): ``tick`` — the hub's tick writes
    them, the subscriber's channel takes what cannot be written at once;
    ``task`` — every snapshot goes through the subscriber's channel and its own
    task writes it; ``asgi`` — every event through ASGI (Quart, Hypercorn, h11).
    Elsewhere it is always ``asgi``. See :mod:`relay_trio.server.direct`."""
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    socket_timeout: float = 5.0

    @classmethod
    def from_env(cls, **overrides: object) -> ServerConfig:
        env = os.environ
        values: dict[str, object] = {
            "redis_url": env.get("RELAY_REDIS_URL") or cls.redis_url,
            "prefix": env.get("RELAY_PREFIX") or cls.prefix,
            "api_token": env.get("RELAY_API_TOKEN") or None,
            "read_only": _env_bool("RELAY_READ_ONLY"),
            "stream_writes": env.get("RELAY_STREAM_WRITES") or cls.stream_writes,
        }
        for name, var, kind in (
            ("poll_interval", "RELAY_POLL_INTERVAL", float),
            ("keepalive_interval", "RELAY_KEEPALIVE_INTERVAL", float),
            ("drop_after", "RELAY_STREAM_DROP_AFTER", float),
            ("max_payload_bytes", "RELAY_MAX_PAYLOAD_BYTES", int),
        ):
            if env.get(var):
                try:
                    values[name] = kind(env[var])
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r} is not a valid {kind.__name__}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.stream_writes not in STREAM_WRITES:
            raise ValueError(
                f"stream writes {self.stream_writes!r}: expected one of {', '.join(STREAM_WRITES)}"
            )
