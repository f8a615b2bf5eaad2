"""Server configuration: flags and ``RELAY_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..job import DEFAULT_MAX_PAYLOAD_BYTES
from ..keys import DEFAULT_PREFIX
from .auth import allowed_host


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; every field has a ``RELAY_*`` variable."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = DEFAULT_PREFIX
    api_token: str | None = None
    """When set, /api/* needs ``Authorization: Bearer <token>``, and so does
    /metrics unless ``metrics_token`` is set; the stream also takes a one-time
    ``?ticket=`` from ``POST /api/stream/ticket`` (EventSource cannot send
    headers). Any text but empty, with no control character and no space or tab
    at either end; compared as UTF-8 bytes."""
    metrics_token: str | None = None
    """When set, /metrics needs ``Authorization: Bearer <metrics token>`` (and no
    other token): for a scraper that should not hold the API token."""
    allowed_hosts: tuple[str, ...] = ()
    """Host names (or IP addresses) the server answers to besides the bind
    address, ``localhost``, ``127.0.0.1`` and ``::1``; any port. ``*`` allows
    any Host: only behind a proxy that checks Host itself. Any other Host is 421
    (DNS rebinding). Kept in canonical form (lowercase, IPv6 without brackets)."""
    stream_ticket_ttl: float = 60.0
    """Seconds a stream ticket stays good (it opens one stream, once)."""
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
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    socket_timeout: float = 5.0

    @classmethod
    def from_env(cls, **overrides: object) -> ServerConfig:
        env = os.environ
        values: dict[str, object] = {
            "redis_url": env.get("RELAY_REDIS_URL") or cls.redis_url,
            "prefix": env.get("RELAY_PREFIX") or cls.prefix,
            "api_token": env.get("RELAY_API_TOKEN") or None,
            "metrics_token": env.get("RELAY_METRICS_TOKEN") or None,
            "allowed_hosts": tuple(
                name.strip()
                for name in env.get("RELAY_ALLOWED_HOSTS", "").split(",")
                if name.strip()
            ),
            "read_only": _env_bool("RELAY_READ_ONLY"),
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
        _check_token("API token", self.api_token)
        _check_token("metrics token", self.metrics_token)
        hosts = (self.allowed_hosts,) if isinstance(self.allowed_hosts, str) else self.allowed_hosts
        canonical = tuple(dict.fromkeys(allowed_host(name) for name in hosts))
        object.__setattr__(self, "allowed_hosts", canonical)  # frozen: set once, here
        if not 0 < self.stream_ticket_ttl <= 3600:
            raise ValueError(
                f"stream ticket TTL {self.stream_ticket_ttl!r}: expected 0 < seconds <= 3600"
            )


def _check_token(what: str, token: str | None) -> None:
    """A token must be sendable as an HTTP header: ValueError if it cannot be."""
    if token is None:
        return
    if not token:
        raise ValueError(f"the {what} is empty")
    if token != token.strip(" \t"):
        raise ValueError(f"the {what} starts or ends with a space or a tab, which HTTP drops")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in token):
        raise ValueError(f"the {what} has a control character, which no HTTP header can carry")
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"the {what} is not valid UTF-8 text") from None
