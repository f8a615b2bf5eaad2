"""Every way redis-py can fail is one of relay-trio's errors, and no message shows a secret.

Against real failures: a port nobody listens on, servers that are not Redis
(:class:`FakeServer`: an HTTP server, garbage, an echo, one that hangs up, one
that never answers), a private Redis with a password (wrong or missing), and a
private Redis frozen with SIGSTOP after a command was sent (its outcome is
unknown). The mapping of each redis-py exception is also checked on its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import trio
from support.fake_redis import PASSWORD, REFUSED_URL, FakeServer, frozen

from relay_trio import Broker, InvalidInput, RedisCommandError, RedisUnavailable, RelayError, calls
from relay_trio._errors import RedisOutcomeUnknown
from relay_trio._redact import redact_text, redact_url
from relay_trio.broker import open_broker
from relay_trio.embedded import EmbeddedRedis
from relay_trio.redis_io import RedisIO
from relay_trio.redis_wire import relay_error
from relay_trio.server import ServerConfig, create_app


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """A relay-trio error, chained to redis-py's, that shows no secret."""
    assert isinstance(exc, RelayError)
    assert not isinstance(exc, redis.exceptions.RedisError)
    assert isinstance(exc.__cause__, redis.exceptions.RedisError)
    for secret in (PASSWORD, *secrets):
        assert secret not in str(exc)
        assert secret not in repr(exc.args)


Call = Callable[[Broker], Awaitable[object]]
CALLS: dict[str, Call] = {
    "ping": lambda b: b.io.ping(),
    "enqueue": lambda b: b.enqueue("q", "x"),  # a script
    "enqueue_many": lambda b: b.enqueue_many("q", [b.spec("x")]),  # a pipeline
    "stats": lambda b: b.stats("q"),
    "snapshot": lambda b: b.snapshot(),
    "claim": lambda b: b.claim("q"),
    "wait_for_work": lambda b: b.wait_for_work("q", 0.1),  # the blocking pool
}


# -- redact_url / redact_text ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://alice:pw@h:6379/0", "redis://alice:***@h:6379/0"),
        ("rediss://alice:p%40ss@h:6380/1", "rediss://alice:***@h:6380/1"),
        ("redis://:pa/ss@word@h/0", "redis://:***@h/0"),  # "/" and "@" in a password
        ("redis://alice@h/0", "redis://alice@h/0"),  # a user name alone is no secret
        ("redis://h:6379/0?password=pw&db=2", "redis://h:6379/0?password=***&db=2"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
        ("unix:///run/redis.sock?Password=pw", "unix:///run/redis.sock?Password=***"),
        ("rediss://h/0?ssl_password=pw&x=1#f", "rediss://h/0?ssl_password=***&x=1#f"),
        ("redis://:pw@h/0?password=pw2", "redis://:***@h/0?password=***"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user:@h/0", "redis://user:@h/0"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_every_url_and_each_known_secret() -> None:
    text = "connecting to redis://:pw1@a/0 then 'rediss://b:pw2@c/1', token tok-9 and pw1 again"
    assert redact_text(text, ["tok-9", None, ""]) == (
        "connecting to redis://:***@a/0 then 'rediss://b:***@c/1', token *** and pw1 again"
    )


# -- the mapping, exception by exception -----------------------------------------------


E = redis.exceptions


@pytest.mark.parametrize(
    ("exc", "sent", "expected", "words"),
    [
        (E.ConnectionError("Error 111 connecting to h:1. Connection refused."), False,
         RedisUnavailable, "Connection refused"),
        (E.ConnectionError("Connection closed by server."), True,
         RedisOutcomeUnknown, "outcome of the command is unknown"),
        (E.TimeoutError("Timeout connecting to server"), False,
         RedisUnavailable, "while connecting"),
        (E.TimeoutError("Timeout reading from socket"), True,
         RedisOutcomeUnknown, "idempotency key"),
        (E.AuthenticationError("invalid username-password pair or user is disabled."), False,
         RedisUnavailable, "refused the credentials"),
        (E.AuthenticationError("Authentication required."), True,
         RedisUnavailable, "refused the credentials"),
        (E.AuthorizationError("NOPERM"), True, RedisUnavailable, "refused the credentials"),
        (E.InvalidResponse('Protocol error, got "H" as reply type byte'), False,
         RedisUnavailable, "not a Redis server"),
        (E.InvalidResponse('Protocol error, got "H" as reply type byte'), True,
         RedisUnavailable, "not a Redis server"),
        (E.BusyLoadingError("Redis is loading the dataset in memory"), True,
         RedisUnavailable, "cannot take commands now"),
        (E.ReadOnlyError("You can't write against a read only replica."), True,
         RedisUnavailable, "cannot take commands now"),
        (E.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True,
         RedisUnavailable, "cannot take commands now"),
        (E.ResponseError("BUSY Redis is busy running a script."), True,
         RedisUnavailable, "cannot take commands now"),
        (E.ResponseError("unknown command 'HELLO'"), False,
         RedisUnavailable, "refused the connection handshake"),
        (E.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
         True, RedisCommandError, "WRONGTYPE"),
        (E.NoScriptError("No matching script."), True, RedisCommandError, "No matching script"),
        (E.NoPermissionError("this user has no permissions to run the 'eval' command"), True,
         RedisCommandError, "no permissions"),
        (E.DataError("Invalid input of type: 'dict'."), True, RedisCommandError, "Invalid input"),
        (E.RedisError("something new"), True, RedisCommandError, "something new"),
    ],
)  # fmt: skip
def test_each_redis_py_error_maps_to_a_relay_error(
    exc: redis.exceptions.RedisError, sent: bool, expected: type[RelayError], words: str
) -> None:
    mapped = relay_error(exc, sent=sent, where="h:1", secret=None)
    assert type(mapped) is expected
    assert words in str(mapped)
    if sent and expected is RedisUnavailable:  # refused: the command did not run
        assert "unknown" not in str(mapped)


def test_a_password_in_a_redis_py_message_is_masked() -> None:
    exc = redis.exceptions.ResponseError(f"ERR bad argument '{PASSWORD}' near redis://:x@h/0")
    mapped = relay_error(exc, sent=True, where="h:1", secret=PASSWORD)
    assert PASSWORD not in str(mapped)
    assert "redis://:***@h/0" in str(mapped)


# -- servers that are not Redis ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["http", "garbage", "binary", "echo", "close"])
@pytest.mark.parametrize("query", ["", "?protocol=2"], ids=["resp3", "resp2"])
async def test_a_server_that_is_not_redis_is_redis_unavailable(mode: str, query: str) -> None:
    with FakeServer(mode) as fake, trio.fail_after(20):
        async with open_broker(fake.url(query=query), connect_timeout=2, socket_timeout=2) as b:
            for name, call in CALLS.items():
                with pytest.raises(RedisUnavailable) as caught:
                    await call(b)
                assert not isinstance(caught.value, RedisOutcomeUnknown), name
                assert_clean(caught.value)
                if mode != "close":
                    assert "not a Redis server" in str(caught.value), (name, caught.value)
                    assert f"127.0.0.1:{fake.port}" in str(caught.value)


async def test_a_server_that_never_answers_is_unavailable_not_unknown() -> None:
    """No answer to the connection handshake: no command was sent yet."""
    with FakeServer("silent") as fake, trio.fail_after(20):
        async with open_broker(fake.url(), connect_timeout=0.3, socket_timeout=0.3) as b:
            for name in ("enqueue", "enqueue_many", "wait_for_work"):
                with pytest.raises(RedisUnavailable) as caught:
                    await CALLS[name](b)
                assert not isinstance(caught.value, RedisOutcomeUnknown), name
                assert "while connecting" in str(caught.value)
                assert_clean(caught.value)


async def test_a_refused_port_is_unavailable_without_the_password() -> None:
    async with open_broker(REFUSED_URL, connect_timeout=1) as b:
        for call in CALLS.values():
            with pytest.raises(RedisUnavailable) as caught:
                await call(b)
            assert not isinstance(caught.value, RedisOutcomeUnknown)
            assert "Connection refused" in str(caught.value)
            assert_clean(caught.value)


# -- a Redis with a password ----------------------------------------------------------


@pytest.fixture
def locked_redis() -> Iterator[EmbeddedRedis]:
    """A private redis-server that requires ``PASSWORD`` (never the suite's own)."""
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


def test_an_embedded_redis_with_a_password(locked_redis: EmbeddedRedis) -> None:
    assert locked_redis.url is not None and locked_redis.pid is not None
    assert f":{PASSWORD}@" in locked_redis.url
    assert redis.Redis.from_url(locked_redis.url).ping()
    bare = locked_redis.url.replace(f":{PASSWORD}@", "")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(bare).ping()
    # not on the command line, where `ps` would show it to every user
    assert PASSWORD.encode() not in Path(f"/proc/{locked_redis.pid}/cmdline").read_bytes()


def test_an_embedded_redis_takes_any_password() -> None:
    """Quotes, spaces, a newline, non-ASCII: the config file line stays one line."""
    odd = 'a "b" c\\d\nrequirepass x ü'
    with EmbeddedRedis(password=odd) as server:
        assert server.url is not None
        assert redis.Redis.from_url(server.url).ping()
        client = redis.Redis(host="127.0.0.1", port=int(server.url.split(":")[-1][:-2]))
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        (":wrong-pw@", "refused the credentials"),
        ("alice:wrong-pw@", "refused the credentials"),
        ("", "requires a password"),
    ],
    ids=["wrong-password", "wrong-user", "no-password"],
)
@pytest.mark.parametrize("query", ["", "?protocol=2"], ids=["resp3", "resp2"])
async def test_wrong_credentials_are_redis_unavailable(
    locked_redis: EmbeddedRedis, auth: str, words: str, query: str
) -> None:
    assert locked_redis.url is not None
    url = locked_redis.url.replace(f":{PASSWORD}@", auth) + query
    async with open_broker(url, connect_timeout=2, socket_timeout=2) as b:
        for name, call in CALLS.items():
            with pytest.raises(RedisUnavailable) as caught:
                await call(b)
            assert not isinstance(caught.value, RedisOutcomeUnknown), name
            assert words in str(caught.value), (name, caught.value)
            assert_clean(caught.value, "wrong-pw")


async def test_the_right_password_works(locked_redis: EmbeddedRedis, prefix: str) -> None:
    assert locked_redis.url is not None
    async with open_broker(locked_redis.url, prefix=prefix) as b:
        job_id = (await b.enqueue("q", "x")).id
        assert (await b.claim("q")).jobs[0].id == job_id


# -- no answer after the command was sent: the outcome is unknown ------------------------


async def test_a_command_without_an_answer_has_an_unknown_outcome(
    own_redis: EmbeddedRedis, prefix: str
) -> None:
    assert own_redis.url is not None
    async with open_broker(own_redis.url, prefix=prefix, socket_timeout=0.3) as b:
        await b.enqueue("q", "warm")  # an open connection (the next command is sent on
        # it), and the script loaded (else it would meet NOSCRIPT, and not run)
        with frozen(own_redis), pytest.raises(RedisOutcomeUnknown) as caught:
            await b.enqueue("q", "x", idempotency_key="k1")
        text = str(caught.value)
        assert isinstance(caught.value, RedisUnavailable)
        assert "outcome of the command is unknown" in text
        assert "idempotency key" in text
        assert_clean(caught.value)
        # the enqueue ran once Redis woke: a retry with the same key adds nothing
        with trio.fail_after(5):
            while True:
                with contextlib.suppress(RedisUnavailable):
                    again = await b.enqueue("q", "x", idempotency_key="k1")
                    break
                await trio.sleep(0.05)
        assert again.duplicate
        assert (await b.stats("q")).ready == 2

        await b.io.ping()
        with frozen(own_redis), pytest.raises(RedisOutcomeUnknown):
            await b.enqueue_many("q", [b.spec("y")])  # the pipeline path


async def test_a_new_connection_to_a_frozen_redis_is_unavailable_not_unknown(
    own_redis: EmbeddedRedis, prefix: str
) -> None:
    assert own_redis.url is not None
    async with open_broker(
        own_redis.url, prefix=prefix, socket_timeout=0.3, connect_timeout=0.3
    ) as b:
        with frozen(own_redis), pytest.raises(RedisUnavailable) as caught:
            await b.enqueue("q", "x")
    assert not isinstance(caught.value, RedisOutcomeUnknown)
    assert "while connecting" in str(caught.value)


async def test_the_api_says_an_enqueue_that_timed_out_has_an_unknown_outcome(
    own_redis: EmbeddedRedis, prefix: str
) -> None:
    assert own_redis.url is not None
    app = create_app(ServerConfig(redis_url=own_redis.url, prefix=prefix, socket_timeout=0.3))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.get("/readyz")).status_code == 200  # opens a connection
        with frozen(own_redis):
            response = await client.post(
                "/api/queues/q/jobs", json={"payload": "x", "idempotency_key": "k"}
            )
        assert response.status_code == 503
        error = (await response.get_json())["error"]
        assert "outcome of the command is unknown" in error
        assert "idempotency key" in error


# -- error replies, and bad URLs -------------------------------------------------------


async def test_an_error_reply_is_a_redis_command_error(broker: Broker, prefix: str) -> None:
    key = f"{prefix}:plain"
    await broker.io.run(lambda c: c.set(key, "x"))
    with pytest.raises(RedisCommandError, match="WRONGTYPE") as caught:
        await broker.io.run(lambda c: c.lpush(key, "y"))
    assert_clean(caught.value)
    pushes = (calls.Command(("LPUSH", key, "y")), calls.Command(("LPUSH", key, "z")))
    with pytest.raises(RedisCommandError, match="WRONGTYPE"):
        await broker.io.execute(calls.Call(pushes))
    results = await broker.io.execute(calls.Call(pushes, inline_errors=True))
    assert all(isinstance(r, RedisCommandError) for r in results)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?foo=bar", "unknown option 'foo'"),
        ("?protocol=5", "protocol must be either 2 or 3"),
        ("?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
    ],
)
def test_a_url_with_bad_options_is_invalid_input(query: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RedisIO.from_url(f"redis://:{PASSWORD}@127.0.0.1:6379/0{query}")
    assert caught.value.field == "redis_url"
    assert words in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_url_without_its_at_sign_does_not_show_the_password() -> None:
    with pytest.raises(InvalidInput) as caught:
        RedisIO.from_url(f"redis://:{PASSWORD}:6379/0")  # the "@" forgotten
    assert "Port could not be cast to integer" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_redis_io_knows_where_it_connects(tmp_path: Path) -> None:
    assert RedisIO.from_url(f"redis://:{PASSWORD}@10.1.2.3:6380/2").where == "10.1.2.3:6380"
    sock = tmp_path / "r.sock"
    assert RedisIO.from_url(f"unix://{sock}?password={PASSWORD}").where == str(sock)


def test_the_errors_are_exported() -> None:
    import relay_trio

    assert relay_trio.RedisOutcomeUnknown is RedisOutcomeUnknown
    assert issubclass(RedisOutcomeUnknown, RedisUnavailable)
