"""Who may ask what: the Host allow-list, credentials, and the stream's tickets.

Every request passes :meth:`Access.guard` (the app's ``before_request``), in order:

1. **Host** (DNS rebinding): the ``Host`` header must name this server — the bind
   address, ``localhost``, ``127.0.0.1``, ``[::1]`` or a name of
   ``ServerConfig.allowed_hosts`` (any port; ``*`` allows any Host). Anything
   else is 421 on every route but the probes ``/healthz`` and ``/readyz``, which
   load balancers may call by IP address and which tell nothing.
2. **Credentials**: with an API token, ``/api/*`` wants ``Authorization: Bearer
   <token>``; ``GET /api/stream`` also takes ``?ticket=``, a one-time credential
   from ``POST /api/stream/ticket`` (EventSource cannot send headers, and a token
   in a URL ends up in logs and history, so ``?access_token=`` is refused).
   ``/metrics`` wants the metrics token when one is set, else the API token.
   Credentials are compared as bytes, in constant time: a header's as they came
   (Quart decodes header bytes as latin-1) with the configured token's UTF-8; a
   ticket (ASCII, else refused) with its own HMAC. No input is a 500.
3. **Read-only mode** and the **CSRF guard**: a mutating call is refused (403)
   in read-only mode (a ticket is no mutation), and when a browser's ``Origin``
   is not an allowed host or is not the same host and port as ``Host``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from quart import Response, current_app, request

from .._setting import BadValue
from .errors import json_error

if TYPE_CHECKING:
    from .config import ServerConfig

ANY_HOST = "*"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Allowed whatever the configuration (with the address the server binds)."""
PROBES = frozenset({"/healthz", "/readyz"})
"""Answered for any Host: they tell only whether the process and Redis are up."""
STREAM = "/api/stream"
TICKET = "/api/stream/ticket"
METRICS = "/metrics"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": 80, "https": 443}

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_AUTHORITY = re.compile(r"(?P<host>\[[^\[\]]*\]|[^:\[\]@/\s]*)(?::(?P<port>[0-9]{1,5}))?")
_TICKET_KEY_CONTEXT = b"relay-trio stream ticket v1"


# -- host names ------------------------------------------------------------------------------


def canonical_host(text: str, *, bare_ipv6: bool = False) -> str | None:
    """``text`` as a host name or IP address in canonical form — lowercase, no
    trailing dot, an IPv6 address compressed and without brackets — or None if
    it is neither. Brackets around an IPv6 address are required in a Host header
    and optional (``bare_ipv6``) in the configuration."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return ipaddress.IPv6Address(text[1:-1]).compressed
        except ValueError:
            return None
    if bare_ipv6 and ":" in text:
        try:
            return ipaddress.IPv6Address(text).compressed
        except ValueError:
            return None
    try:
        return ipaddress.IPv4Address(text).compressed
    except ValueError:
        pass
    name = text.lower().removesuffix(".")
    if len(name) > 253 or not name.isascii() or not _NAME.fullmatch(name):
        return None
    return name


def allowed_host(text: str) -> str:
    """One entry of the allow-list (a flag's or a variable's), canonical. A bad
    one is a :class:`~relay_trio._setting.BadValue` that shows it: the caller
    (:mod:`relay_trio.settings`) names the setting, in a ``ConfigError``."""
    name = text.strip()
    if name == ANY_HOST:
        return name
    if not name.isascii():  # an internationalised name: browsers send its IDNA form
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            name = ""
    found = canonical_host(name, bare_ipv6=True)
    if found is None:
        raise BadValue(
            f"allowed host {text!r} is not a host name or an IP address (no scheme, no "
            "port), nor * for any"
        )
    return found


def parse_authority(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` of a Host header (or of an origin) as (canonical name, port)."""
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        return None
    name = canonical_host(match["host"])
    port = int(match["port"]) if match["port"] else None
    if name is None or (port is not None and not 0 < port < 65536):
        return None
    return name, port


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """An ``Origin`` header as (scheme, canonical host, port); None for ``null``,
    a scheme other than http(s), or anything malformed."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    authority = parse_authority(rest.removesuffix("/"))
    if authority is None:
        return None
    name, port = authority
    return scheme, name, DEFAULT_PORTS[scheme] if port is None else port


class AllowedHosts:
    """The host names this server answers to (ports do not matter)."""

    def __init__(self, names: Iterable[str]) -> None:
        names = set(names)
        self.any = ANY_HOST in names
        self.names = set(DEFAULT_HOSTS) | (names - {ANY_HOST})

    def add_bind_address(self, host: str) -> None:
        """The address the server binds is allowed too. A wildcard (0.0.0.0, ::)
        names itself only (a URL such as http://0.0.0.0:8000/ keeps working), not
        the machine's other names and addresses."""
        name = canonical_host(host, bare_ipv6=True)
        if name is not None:
            self.names.add(name)

    def allows(self, name: str) -> bool:
        return self.any or name in self.names


# -- credentials ---------------------------------------------------------------------------------


def bearer_credential(header: str | None) -> bytes | None:
    """The bytes of an ``Authorization: Bearer <credential>`` header, as the client
    sent them (the header text is their latin-1 decoding), or None."""
    scheme, _, credential = (header or "").partition(" ")
    credential = credential.strip(" \t")  # only HTTP's own whitespace: 0xA0 may be a byte of it
    if scheme.lower() != "bearer" or not credential:
        return None
    try:
        return credential.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire: only a test client can hand such text in
        return None


def same_bytes(supplied: bytes | None, expected: bytes | None) -> bool:
    return supplied is not None and expected is not None and hmac.compare_digest(supplied, expected)


def _token_bytes(token: str | None) -> bytes | None:
    return None if token is None else token.encode("utf-8")


class StreamTickets:
    """One-time credentials for one stream connection each.

    A ticket is ``<expiry ms>.<nonce>.<mac>``: an HMAC-SHA256, keyed from the API
    token, over the expiry and a random nonce — so every server process that
    shares the token accepts it, and changing the token voids every ticket. A
    process remembers the nonces it accepted until they expire, so a ticket
    opens one stream per process. Without a token the key is random (the stream
    then needs no ticket anyway)."""

    def __init__(
        self, token: str | None, *, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        secret = _token_bytes(token) or secrets.token_bytes(32)
        self._key = hmac.new(secret, _TICKET_KEY_CONTEXT, hashlib.sha256).digest()
        self.ttl = ttl
        self._clock = clock  # wall clock: processes on several hosts share it
        self._spent: dict[str, int] = {}
        self._expiries: list[tuple[int, str]] = []

    def issue(self) -> str:
        expiry = int((self._clock() + self.ttl) * 1000)
        body = f"{expiry}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def redeem(self, ticket: str) -> bool:
        """True once for a well-formed, unexpired ticket of this key, then never again."""
        if not ticket.isascii():
            return False
        parts = ticket.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 16:
            return False
        expiry_text, nonce, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(f"{expiry_text}.{nonce}").encode()):
            return False
        now = int(self._clock() * 1000)
        self._forget_expired(now)
        expiry = int(expiry_text)
        if expiry <= now or nonce in self._spent:
            return False
        self._spent[nonce] = expiry
        heapq.heappush(self._expiries, (expiry, nonce))
        return True

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, b"stream:" + body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _forget_expired(self, now: int) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, nonce = heapq.heappop(self._expiries)
            del self._spent[nonce]


# -- the guard -----------------------------------------------------------------------------------


class Access:
    """The app's access rules (see the module's docstring); one per app."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.hosts = AllowedHosts(config.allowed_hosts)
        self.tickets = StreamTickets(config.api_token, ttl=config.stream_ticket_ttl)
        self._api_token = _token_bytes(config.api_token)
        self._metrics_token = _token_bytes(config.metrics_token) or self._api_token

    def request_host(self) -> tuple[str, int | None] | None:
        """The request's Host as (name, port) if this server answers to it, else None."""
        authority = parse_authority(request.headers.get("Host", ""))
        if authority is None or not self.hosts.allows(authority[0]):
            return None
        return authority

    async def guard(self) -> tuple[Response, int] | None:
        """The app's ``before_request``: None lets the request through."""
        path = request.path
        host = self.request_host()
        if host is None and path not in PROBES:
            shown = request.headers.get("Host", "")[:100]
            return json_error(
                f"misdirected request: this server does not answer to Host {shown!r} "
                "(see --allowed-host)",
                421,
            )
        metrics_token = self._metrics_token if path == METRICS else None
        if metrics_token is not None and not same_bytes(self._bearer(), metrics_token):
            return _unauthorized("/metrics wants its bearer token")
        if not path.startswith("/api/"):
            return None
        refused = self._api_credentials(path)
        if refused is not None:
            return refused
        if request.method in MUTATING:
            if self.config.read_only and path != TICKET:
                return json_error("the server is read-only", 403)
            if not self._same_origin(host):
                return json_error("cross-origin requests may not change anything", 403)
        return None

    def may_see_details(self) -> bool:
        """Whether this request may read error details (Redis's own error text):
        an allowed Host, and the API token if there is one."""
        if self.request_host() is None:
            return False
        return self._api_token is None or same_bytes(self._bearer(), self._api_token)

    def _bearer(self) -> bytes | None:
        return bearer_credential(request.headers.get("Authorization"))

    def _api_credentials(self, path: str) -> tuple[Response, int] | None:
        if self._api_token is None:
            return None
        if path == STREAM and "access_token" in request.args:
            return _unauthorized(
                "the token is not taken in a URL (logs and history keep URLs): send "
                "Authorization: Bearer, or get a ticket from POST /api/stream/ticket"
            )
        if same_bytes(self._bearer(), self._api_token):
            return None
        ticket = request.args.get("ticket")
        if path == STREAM and ticket is not None and request.method in ("GET", "HEAD"):
            if self.tickets.redeem(ticket):
                return None
            return _unauthorized("the stream ticket is spent, expired or wrong: get a new one")
        return _unauthorized("missing or wrong bearer token")

    def _same_origin(self, host: tuple[str, int | None] | None) -> bool:
        """A browser's Origin, when sent, must be an allowed host, with the same
        host and port as the Host the request was sent to (so a page of another
        service on this machine, another port, is refused too)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser (browsers send Origin with every mutation)
        parsed = parse_origin(origin)
        if parsed is None or host is None:
            return False
        scheme, name, port = parsed
        host_name, host_port = host
        if host_port is None:
            host_port = DEFAULT_PORTS[scheme]
        return self.hosts.allows(name) and (name, port) == (host_name, host_port)


def _unauthorized(message: str) -> tuple[Response, int]:
    response, status = json_error(message, 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="relay-trio"'
    return response, status


def relay_access() -> Access:
    """The access rules of the app handling the current request."""
    access: Access = current_app.extensions["relay_access"]
    return access


__all__ = [
    "Access",
    "AllowedHosts",
    "StreamTickets",
    "allowed_host",
    "bearer_credential",
    "parse_authority",
    "parse_origin",
    "relay_access",
]
