"""Server configuration: one field per setting of :data:`relay_trio.settings.SERVER`.

Each field's type, range, default, ``RELAY_*`` variable and help are those of
its :class:`~relay_trio.settings.Setting`; nothing about a setting is written
here but its name and type. Every field is checked when a config is made, and
``from_env()`` names the variable a bad value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .. import settings as s


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs; see :data:`relay_trio.settings.SERVER` for
    what each field means, its range and its ``RELAY_*`` variable.

    ``allowed_hosts`` is kept in canonical form (lowercase, IPv6 without
    brackets); a single name may be given as a string. A value out of range is
    a :class:`~relay_trio.ConfigError` (a ``ValueError``) naming the field."""

    redis_url: str = s.REDIS_URL.default
    prefix: str = s.PREFIX.default
    api_token: str | None = s.API_TOKEN.default
    metrics_token: str | None = s.METRICS_TOKEN.default
    allowed_hosts: tuple[str, ...] = s.ALLOWED_HOSTS.default
    stream_ticket_ttl: float = s.STREAM_TICKET_TTL.default
    read_only: bool = s.READ_ONLY.default
    poll_interval: float = s.POLL_INTERVAL.default
    keepalive_interval: float = s.KEEPALIVE_INTERVAL.default
    stream_retry_ms: int = s.STREAM_RETRY_MS.default
    drop_after: float = s.DROP_AFTER.default
    max_payload_bytes: int = s.MAX_PAYLOAD_BYTES.default
    socket_timeout: float = s.SOCKET_TIMEOUT.default
    fleet: bool = s.FLEET.default
    """Share one poll with every server process on this Redis and prefix (spec
    section 13, :mod:`relay_trio.fleet`); off: this process polls on its own."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, /, **overrides: object
    ) -> ServerConfig:
        """A config from the ``RELAY_*`` variables (of ``environ``, by default the
        process's), where ``overrides`` (not None) do not say otherwise. A bad
        variable is a :class:`~relay_trio.ConfigError` naming it
        (``RELAY_POLL_INTERVAL: must be ..., got 0``)."""
        return cls(**s.from_environment(s.SERVER, overrides, environ))  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        for setting in s.SERVER:  # frozen: each value is checked and set once, here
            object.__setattr__(self, setting.name, setting.validate(getattr(self, setting.name)))
