"""The server's security rules (issue 9, part A) against a real Redis.

Where the network path matters (Host headers, raw header bytes, the stream) the
app runs in a real Hypercorn server on port 0, driven with httpx; app-level rules
use Quart's test client. Covered: the Host allow-list (DNS rebinding), the Origin
check, credentials of any bytes, /metrics and /readyz, the stream ticket, and
JSON redirects.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import redis
import trio
from support import keys_under
from support.servers import running_server, server_process
from support.sse import Events

from relay_trio import ConfigError
from relay_trio.server import ServerConfig
from relay_trio.server.auth import AllowedHosts, StreamTickets

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
REBIND = "rebind.attacker.example:8000"


class Client(httpx.AsyncClient):
    """Reads every body but a stream's: a stream that should have been refused
    fails the test at once instead of hanging it (``stream()`` reads streams)."""

    async def request(self, method: str, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        follow = kwargs.pop("follow_redirects", False)
        kwargs.pop("auth", None)
        response = await self.send(
            self.build_request(method, url, **kwargs), stream=True, follow_redirects=follow
        )
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            await response.aread()
        await response.aclose()
        return response


@asynccontextmanager
async def http() -> AsyncIterator[Client]:
    async with Client(timeout=10) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message
    return message


async def first_event(client: httpx.AsyncClient, url: str, **kwargs: Any) -> str:
    """Open the stream at ``url``, expect a 200 and return its first event (``retry:``)."""
    async with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        (event,) = await Events(response).take(1)
        return event


async def ticket_of(client: httpx.AsyncClient, base: str, token: str = TOKEN) -> str:
    response = await client.post(
        base + "/api/stream/ticket", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]
    assert isinstance(ticket, str)
    return ticket


# -- 1. the Host allow-list (DNS rebinding) ----------------------------------------------------


async def test_dns_rebinding_post_is_421_and_writes_nothing(
    redis_server: Any, prefix: str, rdb: redis.Redis
) -> None:
    async with running_server(redis_server.url, prefix) as server, http() as client:
        r = await client.post(
            server.url + "/api/queues/q/jobs",
            headers={"Host": REBIND, "Origin": f"http://{REBIND}"},
            json={"payload": "x"},
        )
        error_of(r, 421)
        assert keys_under(rdb, prefix) == []
        same = await client.post(server.url + "/api/queues/q/jobs", json={"payload": "x"})
        assert same.status_code == 201


async def test_a_foreign_host_is_421_on_every_route_but_the_probes(
    redis_server: Any, prefix: str
) -> None:
    async with running_server(redis_server.url, prefix) as server, http() as client:
        foreign = {"Host": REBIND}
        for path in (
            "/api/queues",
            "/api/info",
            "/api/openapi.json",
            "/api/queues/q/stats",
            "/api/stream",
            "/",
            "/assets/app.js",
            "/metrics",
            "/nope",
            "//",
        ):
            error_of(await client.get(server.url + path, headers=foreign), 421)
        error_of(await client.post(server.url + "/api/stream/ticket", headers=foreign), 421)
        for bad in ("", "a b", "x@evil.example", "[::1", "localhost:port"):
            error_of(await client.get(server.url + "/api/queues", headers={"Host": bad}), 421)
        # the probes answer load balancers that probe by IP; they tell nothing
        assert (await client.get(server.url + "/healthz", headers=foreign)).json() == {
            "status": "ok"
        }
        ready = await client.get(server.url + "/readyz", headers=foreign)
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_the_default_hosts_and_the_bind_address_are_allowed(
    redis_server: Any, prefix: str
) -> None:
    # all of 127.0.0.0/8 is loopback on Linux: 127.0.0.2 is a bind address of its own
    async with (
        running_server(redis_server.url, prefix, host="127.0.0.2") as server,
        http() as client,
    ):
        port = server.port
        for host in (
            f"127.0.0.2:{port}",
            "localhost",
            f"LocalHost:{port}",
            "localhost.:80",
            "127.0.0.1:8000",
            "[::1]:8000",
            "[0:0::1]",
        ):
            r = await client.get(server.url + "/api/queues", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        error_of(await client.get(server.url + "/api/queues", headers={"Host": "127.0.0.3"}), 421)


def test_a_wildcard_bind_address_allows_itself_and_no_other_name() -> None:
    hosts = AllowedHosts(())
    for bind in ("0.0.0.0", "::", "relay.local", "[fd00::2]"):
        hosts.add_bind_address(bind)
    for name in ("0.0.0.0", "::", "relay.local", "fd00::2", "localhost", "127.0.0.1", "::1"):
        assert hosts.allows(name), name
    for name in ("10.0.0.5", "relay.example", "192.168.1.2"):
        assert not hosts.allows(name), name


async def test_allowed_hosts_from_config_and_environment(
    redis_server: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_ALLOWED_HOSTS", " Relay.Example , 10.0.0.5,[fd00::1]")
    config = ServerConfig.from_env()
    assert config.allowed_hosts == ("relay.example", "10.0.0.5", "fd00::1")
    assert ServerConfig.from_env(allowed_hosts=["other.example"]).allowed_hosts == (
        "other.example",
    )
    async with (
        running_server(
            redis_server.url, prefix, allowed_hosts=("relay.example", "fd00::1")
        ) as server,
        http() as client,
    ):
        for host in ("relay.example", "relay.example:443", "RELAY.example:8000", "[fd00::1]:80"):
            r = await client.get(server.url + "/api/queues", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        for host in ("sub.relay.example", "relay.example.evil", "10.0.0.5"):
            error_of(await client.get(server.url + "/api/queues", headers={"Host": host}), 421)


async def test_star_allows_any_host_but_origin_must_still_match(
    redis_server: Any, prefix: str, rdb: redis.Redis
) -> None:
    async with (
        running_server(redis_server.url, prefix, allowed_hosts=("*",)) as server,
        http() as client,
    ):
        r = await client.get(server.url + "/api/queues", headers={"Host": "anything.example"})
        assert r.status_code == 200
        cross = {"Host": "relay.example", "Origin": "http://evil.example"}
        error_of(await client.post(server.url + "/api/queues/q/jobs", headers=cross, json={}), 403)
        assert keys_under(rdb, prefix) == []
        same = {"Host": "relay.example:8000", "Origin": "http://relay.example:8000"}
        r = await client.post(
            server.url + "/api/queues/q/jobs", headers=same, json={"payload": "x"}
        )
        assert r.status_code == 201


async def test_origin_must_be_an_allowed_host_and_match_host_and_port(
    redis_server: Any, prefix: str, rdb: redis.Redis
) -> None:
    async with (
        running_server(redis_server.url, prefix, allowed_hosts=("relay.example",)) as server,
        http() as client,
    ):
        port = server.port
        refused = [
            (f"localhost:{port}", "http://evil.example"),
            (f"localhost:{port}", f"http://evil.example:{port}"),
            (f"localhost:{port}", "http://localhost:9999"),  # another service on this machine
            (f"localhost:{port}", "null"),
            (f"localhost:{port}", "file://"),
            (f"localhost:{port}", f"ftp://localhost:{port}"),
            (f"localhost:{port}", f"http://127.0.0.1:{port}"),  # not the Host it sent
            ("relay.example", "http://localhost"),
            ("relay.example", "https://relay.example:8443"),
        ]
        for host, origin in refused:
            r = await client.post(
                server.url + "/api/queues/q/jobs",
                headers={"Host": host, "Origin": origin},
                json={"payload": "x"},
            )
            error_of(r, 403)
        assert keys_under(rdb, prefix) == []
        accepted = [
            (f"localhost:{port}", f"http://localhost:{port}"),
            (f"127.0.0.1:{port}", f"http://127.0.0.1:{port}/"),
            ("relay.example", "https://relay.example"),
            ("relay.example:8443", "https://relay.example:8443"),
            ("relay.example", "http://Relay.Example:80"),
        ]
        for host, origin in accepted:
            r = await client.post(
                server.url + "/api/queues/q/jobs",
                headers={"Host": host, "Origin": origin},
                json={"payload": "x"},
            )
            assert r.status_code == 201, (host, origin, r.text)


@pytest.mark.parametrize(
    "hosts",
    [("a b",), ("http://relay.example",), ("relay.example:443",), ("",), ("[::1",), ("x/y",)],
)
def test_bad_allowed_hosts_are_config_errors(hosts: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="allowed_hosts: allowed host"):
        ServerConfig(allowed_hosts=hosts)


def test_server_help_and_command_line(redis_server: Any, prefix: str) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "relay_trio.cli", "server", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flat = " ".join(help_text.split())
    assert "--allowed-host" in flat and "RELAY_ALLOWED_HOSTS" in flat
    assert "0.0.0.0" in flat and "--metrics-token" in flat and "RELAY_METRICS_TOKEN" in flat
    bad = subprocess.run(
        [
            *(sys.executable, "-m", "relay_trio.cli", "--redis-url", "redis://127.0.0.1:1/0"),
            *("server", "--port", "0", "--allowed-host", "http://x"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "allowed host" in bad.stderr and "Traceback" not in bad.stderr
    extra = ("--allowed-host", "relay.example", "--api-token", TOKEN, "--metrics-token", "m3t")
    with server_process(redis_server.url, prefix, *extra) as server, httpx.Client() as client:
        r = client.get(server.url + "/api/queues", headers={"Host": "relay.example", **BEARER})
        assert r.status_code == 200
        error_of(
            client.get(server.url + "/api/queues", headers={"Host": "other.example", **BEARER}), 421
        )
        assert client.get(
            server.url + "/metrics", headers={"Authorization": "Bearer m3t"}
        ).is_success
        error_of(client.get(server.url + "/metrics", headers=BEARER), 401)


# -- 2. credentials of any bytes ---------------------------------------------------------------


async def test_non_ascii_credentials_are_401_never_500(redis_server: Any, prefix: str) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        for value in (b"Bearer \xc3\xa9", b"Bearer \xff\xfe", b"Bearer s3cret\xc3\xa9", b"\xe9"):
            for path in ("/api/queues", "/api/stream", "/metrics"):
                r = await client.get(server.url + path, headers={"Authorization": value})
                error_of(r, 401)
        for query in ("access_token=%C3%A9", "access_token=%FF", "ticket=%C3%A9", "ticket=%FF"):
            error_of(await client.get(server.url + "/api/stream?" + query), 401)


async def test_a_non_ascii_configured_token_works(redis_server: Any, prefix: str) -> None:
    token = "é-ünï-tökén-à"  # ends in U+00E0: UTF-8 C3 A0, and A0 is a space in latin-1
    async with (
        running_server(redis_server.url, prefix, api_token=token) as server,
        http() as client,
    ):
        utf8 = {"Authorization": b"Bearer " + token.encode()}
        assert (await client.get(server.url + "/api/queues", headers=utf8)).status_code == 200
        assert (await client.get(server.url + "/metrics", headers=utf8)).status_code == 200
        latin1 = {"Authorization": b"Bearer " + token.encode("latin-1")}
        error_of(await client.get(server.url + "/api/queues", headers=latin1), 401)
        r = await client.post(server.url + "/api/stream/ticket", headers=utf8)
        assert r.status_code == 200
        event = await first_event(
            client, server.url + "/api/stream", params={"ticket": r.json()["ticket"]}
        )
        assert event.startswith("retry:")


@pytest.mark.parametrize("token", ["", " lead", "trail\t", "new\nline", "nul\x00", "lone\ud800"])
def test_unusable_tokens_are_config_errors(token: str) -> None:
    with pytest.raises(ConfigError, match="api_token: "):
        ServerConfig(api_token=token)
    with pytest.raises(ConfigError, match="metrics_token: "):
        ServerConfig(metrics_token=token)


# -- 3. /metrics and /readyz -------------------------------------------------------------------


async def test_metrics_need_the_api_token_or_the_metrics_token(
    redis_server: Any, prefix: str
) -> None:
    async with running_server(redis_server.url, prefix) as server, http() as client:
        assert (await client.get(server.url + "/metrics")).status_code == 200  # no token: open
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = await client.get(server.url + "/metrics", headers=headers)
            assert "relay_" not in error_of(r, 401)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = await client.get(server.url + "/metrics", headers=BEARER)
        assert r.status_code == 200 and "relay_hub_polls_total" in r.text
    metrics = {"Authorization": "Bearer m3trics"}
    async with (
        running_server(
            redis_server.url, prefix, api_token=TOKEN, metrics_token="m3trics"
        ) as server,
        http() as client,
    ):
        error_of(await client.get(server.url + "/metrics", headers=BEARER), 401)
        assert (await client.get(server.url + "/metrics", headers=metrics)).status_code == 200
        error_of(await client.get(server.url + "/api/queues", headers=metrics), 401)  # metrics only
    async with (
        running_server(redis_server.url, prefix, metrics_token="m3trics") as server,
        http() as client,
    ):
        error_of(await client.get(server.url + "/metrics"), 401)
        assert (await client.get(server.url + "/metrics", headers=metrics)).status_code == 200


async def test_readyz_tells_redis_errors_only_to_the_authenticated(
    redis_server: Any, prefix: str
) -> None:
    port = redis_server.url.rsplit(":", 1)[1].split("/")[0]
    wrong = f"redis://nobody:wrong-password@127.0.0.1:{port}/0"
    async with running_server(wrong, prefix, api_token=TOKEN) as server, http() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Host": REBIND, **BEARER}):
            r = await client.get(server.url + "/readyz", headers=headers)
            message = error_of(r, 503)
            assert r.json()["status"] == "not ready"
            assert "password" not in r.text.lower() and "wrong" not in message
        r = await client.get(server.url + "/readyz", headers=BEARER)
        assert "invalid username-password pair" in error_of(r, 503)
    async with running_server(wrong, prefix) as server, http() as client:
        # no token: whoever may use the API may see why (not a foreign Host)
        assert "username-password" in error_of(await client.get(server.url + "/readyz"), 503)
        r = await client.get(server.url + "/readyz", headers={"Host": REBIND})
        assert "password" not in error_of(r, 503)


# -- 4. the stream ticket ----------------------------------------------------------------------


async def test_a_ticket_needs_the_token_and_opens_the_stream_once(
    redis_server: Any, prefix: str
) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            error_of(await client.post(server.url + "/api/stream/ticket", headers=headers), 401)
        r = await client.post(server.url + "/api/stream/ticket", headers=BEARER)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        body = r.json()
        assert set(body) == {"ticket", "expires_in"} and body["expires_in"] == 60
        assert TOKEN not in body["ticket"]
        stream = server.url + "/api/stream"
        assert await first_event(client, stream, params={"ticket": body["ticket"]}) == "retry: 2000"
        error_of(await client.get(stream, params={"ticket": body["ticket"]}), 401)  # spent
        # two tickets are two connections
        one, two = await ticket_of(client, server.url), await ticket_of(client, server.url)
        assert one != two
        for ticket in (one, two):
            event = await first_event(client, stream, params={"ticket": ticket})
            assert event.startswith("retry")
        error_of(await client.get(stream, params={"ticket": ticket[:-2] + "xx"}), 401)


async def test_an_expired_ticket_is_refused(redis_server: Any, prefix: str) -> None:
    options = {"api_token": TOKEN, "stream_ticket_ttl": 0.3}
    async with running_server(redis_server.url, prefix, **options) as server, http() as client:
        r = await client.post(server.url + "/api/stream/ticket", headers=BEARER)
        assert r.json()["expires_in"] == 0.3
        await trio.sleep(0.5)
        error_of(
            await client.get(server.url + "/api/stream", params={"ticket": r.json()["ticket"]}), 401
        )


async def test_a_ticket_is_good_for_the_stream_only(
    redis_server: Any, prefix: str, rdb: redis.Redis
) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        ticket = await ticket_of(client, server.url)
        as_bearer = {"Authorization": f"Bearer {ticket}"}
        for method, path in (
            ("GET", "/api/queues"),
            ("GET", "/api/info"),
            ("POST", "/api/queues/q/pause"),
            ("POST", "/api/stream/ticket"),  # a ticket cannot mint tickets
            ("GET", "/metrics"),
        ):
            error_of(
                await client.request(method, server.url + path, params={"ticket": ticket}), 401
            )
            error_of(await client.request(method, server.url + path, headers=as_bearer), 401)
        r = await client.post(server.url + "/api/queues/q/jobs", params={"ticket": ticket}, json={})
        error_of(r, 401)
        error_of(await client.get(server.url + "/api/stream", headers=as_bearer), 401)
        assert keys_under(rdb, prefix) == []
        # none of the refusals spent it
        assert await first_event(client, server.url + "/api/stream", params={"ticket": ticket})


async def test_the_token_in_the_url_is_refused(redis_server: Any, prefix: str) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        r = await client.get(server.url + "/api/stream", params={"access_token": TOKEN})
        assert "ticket" in error_of(r, 401)
        r = await client.get(
            server.url + "/api/stream", params={"access_token": TOKEN}, headers=BEARER
        )
        error_of(r, 401)
        # non-browser clients may still send the token as a header
        assert (
            await first_event(client, server.url + "/api/stream", headers=BEARER) == "retry: 2000"
        )


async def test_without_a_token_the_stream_needs_no_ticket(redis_server: Any, prefix: str) -> None:
    async with running_server(redis_server.url, prefix) as server, http() as client:
        assert await first_event(client, server.url + "/api/stream") == "retry: 2000"
        r = await client.post(server.url + "/api/stream/ticket")
        assert r.status_code == 200 and r.json()["expires_in"] == 60


async def test_read_only_servers_issue_tickets_and_cross_origin_pages_get_none(
    redis_server: Any, prefix: str
) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN, read_only=True) as server,
        http() as client,
    ):
        ticket = await ticket_of(client, server.url)
        assert await first_event(client, server.url + "/api/stream", params={"ticket": ticket})
        evil = {**BEARER, "Origin": "http://evil.example"}
        error_of(await client.post(server.url + "/api/stream/ticket", headers=evil), 403)


def test_tickets_are_shared_by_servers_with_the_same_token() -> None:
    now = [1_000_000.0]
    a = StreamTickets(TOKEN, ttl=60, clock=lambda: now[0])
    b = StreamTickets(TOKEN, ttl=60, clock=lambda: now[0])
    other = StreamTickets("another", ttl=60, clock=lambda: now[0])
    ticket = a.issue()
    assert not other.redeem(ticket)
    assert b.redeem(ticket) and not b.redeem(ticket)  # once per process
    assert a.redeem(ticket) and not a.redeem(ticket)
    expiry, rest = ticket.split(".", 1)
    assert not a.redeem(f"{int(expiry) + 60_000}.{rest}")  # a longer life breaks the MAC
    for junk in ("", ".", "..", "a.b.c", "1.2.3.4", "é.é.é", ticket + "x"):
        assert not a.redeem(junk)
    late = a.issue()
    now[0] += 61
    assert not a.redeem(late)
    fresh = a.issue()
    assert a.redeem(fresh)
    assert len(a._spent) == 1  # spent tickets are forgotten once they expire


# -- 5. redirects and errors are JSON ----------------------------------------------------------


async def test_redirects_are_json_and_keep_their_location(redis_server: Any, prefix: str) -> None:
    async with (
        running_server(redis_server.url, prefix, api_token=TOKEN) as server,
        http() as client,
    ):
        for path, target in (
            ("/api//info", "/api/info"),
            ("/api/queues//q/stats", "/api/queues/q/stats"),
            ("/assets//app.js", "/assets/app.js"),
        ):
            r = await client.get(server.url + path, headers=BEARER)
            assert r.status_code == 308, (path, r.status_code, r.text)
            assert r.headers["location"] == target  # relative: right behind a TLS proxy too
            assert r.headers["content-type"].startswith("application/json")
            assert "<" not in r.text and r.json()["error"]
            head = await client.head(server.url + path, headers=BEARER)
            assert head.status_code == 308 and head.headers["location"] == target
        r = await client.get(server.url + "/api//info?x=1", headers=BEARER)
        assert r.status_code == 308 and r.headers["location"] == "/api/info?x=1"
