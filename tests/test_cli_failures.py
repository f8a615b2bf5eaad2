"""``relay-trio`` when things go wrong, run as a user runs it (a subprocess each).

Bad input is one line on stderr and exit status 2; a failure at run time (Redis
refused, not Redis, a wrong password, a port in use) one line and exit status 1;
never a traceback, and never a password. The long-running commands (server,
worker, demo) stay up against a Redis they cannot use, and say so.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from support.cli import TESTS_DIR, Cli, Result, clean_env
from support.fake_redis import PASSWORD, REFUSED_URL, FakeServer

from relay_trio.embedded import EmbeddedRedis

ADMIN_VERBS: list[tuple[str, ...]] = [
    ("stats",),
    ("enqueue", "q", "x"),
    ("dlq", "list", "q"),
    ("pause", "q"),
    ("queue", "delete", "q"),
]


async def cli(*args: str, **env: str) -> Result:
    return await Cli("", "").raw(*args, env=clean_env(**env))


def one_line(result: Result, code: int) -> str:
    """The only line of stderr of a run that exited with ``code``."""
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    assert PASSWORD not in result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


async def cli_many(argvs: Sequence[Sequence[str]]) -> list[Result]:
    """Run every command line at once (a few at a time); results in order."""
    results: list[Result | None] = [None] * len(argvs)
    limit = trio.CapacityLimiter(8)

    async def one(index: int, argv: Sequence[str]) -> None:
        async with limit:
            results[index] = await cli(*argv)

    async with trio.open_nursery() as nursery:
        for index, argv in enumerate(argvs):
            nursery.start_soon(one, index, argv)
    return [r for r in results if r is not None]


@pytest.fixture
def locked_redis() -> Iterator[EmbeddedRedis]:
    """A private redis-server that requires ``PASSWORD``."""
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


class Process:
    """A long-running ``relay-trio`` whose stdout and stderr go to ``log``."""

    def __init__(self, proc: trio.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, pattern: str, within: float = 20) -> re.Match[str]:
        with trio.fail_after(within):
            while (match := re.search(pattern, self.text())) is None:
                assert self.proc.poll() is None, self.text()
                await trio.sleep(0.05)
        return match

    async def stop(self, within: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(within):
            return await self.proc.wait()


@asynccontextmanager
async def started(tmp_path: Path, *args: str, **env: str) -> AsyncIterator[Process]:
    log = tmp_path / f"{args[2] if len(args) > 2 else 'run'}.log"
    with log.open("wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "relay_trio.cli", *args],
            env=clean_env(**env),
            cwd=TESTS_DIR.parent,
            stdout=out,
            stderr=out,
        )
    try:
        yield Process(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()


def assert_no_secret_nor_traceback(text: str) -> None:
    assert PASSWORD not in text
    assert "Traceback" not in text


# -- bad input: one line, exit status 2 ---------------------------------------------------


BAD_URLS = [
    ("notaurl", "must specify one of the following schemes"),
    ("http://127.0.0.1:6379", "must specify one of the following schemes"),
    (f"redis://:{PASSWORD}@127.0.0.1:99999/0", "Port out of range 0-65535"),
    (f"redis://:{PASSWORD}@127.0.0.1:0/0", "port 0 is not a port Redis listens on"),
    (f"redis://:{PASSWORD}@127.0.0.1:6379/abc", "the path of a redis:// URL is a database"),
    (f"redis://:{PASSWORD}@127.0.0.1/0?foo=bar", "unknown option 'foo'"),
    (f"redis://:{PASSWORD}@127.0.0.1/0?protocol=5", "protocol must be either 2 or 3"),
    (f"unix://?password={PASSWORD}", "a unix:// URL needs the socket's path"),
]


async def test_a_bad_redis_url_exits_2_with_one_line() -> None:
    url = BAD_URLS[-1][0]
    argvs = [("--redis-url", bad, "stats") for bad, _ in BAD_URLS]
    argvs += [  # every verb checks it, wherever the flag goes
        ("server", "--port", "0", "--redis-url", url),
        ("worker", "--queue", "q", "--redis-url", url),
        ("demo", "--redis-url", url),
    ]
    reasons = [reason for _, reason in BAD_URLS] + [BAD_URLS[-1][1]] * 3
    results = await cli_many(argvs)
    for argv, reason, result in zip(argvs, reasons, results, strict=True):
        line = one_line(result, 2)
        assert "argument --redis-url: not a Redis URL (" in line, argv
        assert reason in line, argv
    from_env = one_line(await cli("stats", RELAY_REDIS_URL=url), 2)
    assert "argument --redis-url: RELAY_REDIS_URL: not a Redis URL (" in from_env


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        (("server", "--host", "999.1.1.1"), {},
         "relay-trio server: error: argument --host: not an IP address or a host name, "
         "got '999.1.1.1'"),
        (("server", "--host", "bad host!"), {}, "not an IP address or a host name"),
        (("server", "--host", ""), {}, "not an IP address or a host name"),
        (("server",), {"RELAY_HOST": "999.1.1.1"},
         "argument --host: RELAY_HOST: not an IP address or a host name, got 999.1.1.1"),
        (("demo", "--host", "999.1.1.1"), {}, "argument --host: not an IP address"),
    ],
    ids=["ip", "name", "empty", "env", "demo"],
)  # fmt: skip
async def test_a_bad_host_exits_2_with_one_line(
    argv: tuple[str, ...], env: dict[str, str], words: str
) -> None:
    result = await cli("--redis-url", REFUSED_URL, *argv, "--port", "0", **env)
    assert words in one_line(result, 2)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("enqueue", "q", "x", "--count", "2", "--idempotency-key", "k"),
         "relay-trio enqueue: error: idempotency_key: applies to a single job, not --count"),
        (("enqueue", "q", "x", "--idempotency-key", "k" * 1000), "idempotency_key: "),
        (("dlq", "requeue", "q", "0" * 32, "--all"),
         "relay-trio dlq: error: ids: give job ids, or --all, but not both"),
        (("worker", "--queue", "q", "--handler", "nocolon"),
         "relay-trio worker: error: handler: 'nocolon' is not module:function"),
    ],
    ids=["key-and-count", "long-key", "ids-and-all", "handler"],
)  # fmt: skip
async def test_bad_input_found_after_parsing_exits_2(argv: tuple[str, ...], words: str) -> None:
    """Checked before anything is sent: a Redis that is not there does not matter."""
    assert words in one_line(await cli("--redis-url", REFUSED_URL, *argv), 2)


@pytest.mark.parametrize(
    "argv",
    [
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "stats"),  # the URL where the verb goes
        ("stats", f"redis://:{PASSWORD}@127.0.0.1:6379/0"),  # ... or the queue name
    ],
    ids=["as-verb", "as-queue"],
)
async def test_a_mistyped_url_is_not_echoed_with_its_password(argv: tuple[str, ...]) -> None:
    """argparse repeats what it refuses; the password in it is masked."""
    line = one_line(await cli(*argv), 2)
    assert "redis://:***@127.0.0.1:6379/0" in line


# -- the server cannot listen: one line, exit status 1 ---------------------------------


async def test_the_server_on_a_busy_port_exits_1_with_one_line(busy_port: int) -> None:
    result = await cli("--redis-url", REFUSED_URL, "server", "--port", str(busy_port))
    line = one_line(result, 1)
    assert line == f"relay-trio: cannot listen on 127.0.0.1:{busy_port}: Address already in use"


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("no-such-host.invalid", "cannot listen on no-such-host.invalid:0: "),
        ("192.0.2.1", "cannot listen on 192.0.2.1:0: Cannot assign requested address"),
    ],
)
async def test_a_host_the_server_cannot_listen_on_exits_1(host: str, words: str) -> None:
    result = await cli("--redis-url", REFUSED_URL, "server", "--host", host, "--port", "0")
    assert words in one_line(result, 1)


# -- Redis refused, not Redis, a wrong password: one line, exit status 1 ---------------


@pytest.mark.parametrize("target", ["refused", "not-redis", "wrong-password", "no-password"])
async def test_admin_verbs_fail_with_one_line(target: str, locked_redis: EmbeddedRedis) -> None:
    assert locked_redis.url is not None
    words = {
        "refused": "Connection refused",
        "not-redis": "is not a Redis server",
        "wrong-password": "refused the credentials",
        "no-password": "requires a password, and the URL gives none",
    }[target]
    with FakeServer("http") as fake:
        url = {
            "refused": REFUSED_URL,
            "not-redis": fake.url(),
            "wrong-password": locked_redis.url.replace(PASSWORD, "wrong-pw"),
            "no-password": locked_redis.url.replace(f":{PASSWORD}@", ""),
        }[target]
        results = await cli_many([("--redis-url", url, *verb) for verb in ADMIN_VERBS])
    for verb, result in zip(ADMIN_VERBS, results, strict=True):
        line = one_line(result, 1)
        assert line.startswith("relay-trio: Redis is unavailable: "), (verb, line)
        assert words in line, (verb, line)
        assert "wrong-pw" not in line
        assert "unknown" not in line  # nothing was sent: the outcome is known


async def test_the_server_start_line_hides_the_password(
    locked_redis: EmbeddedRedis, prefix: str, tmp_path: Path
) -> None:
    assert locked_redis.url is not None
    args = ("--redis-url", locked_redis.url, "--prefix", prefix, "server", "--port", "0")
    async with started(tmp_path, *args) as server:
        match = await server.wait_for(r"relay-trio server on (http://\S+) \(Redis (\S+)\)")
        base, shown = match[1], match[2]
        assert shown == locked_redis.url.replace(PASSWORD, "***")
        ready = await trio.to_thread.run_sync(lambda: httpx.get(base + "/readyz", timeout=5))
        assert ready.status_code == 200  # the password itself did reach Redis
        assert await server.stop() == 0
    assert_no_secret_nor_traceback(server.text())


async def test_the_server_answers_503_against_a_server_that_is_not_redis(
    tmp_path: Path,
) -> None:
    with FakeServer("http") as fake:
        args = ("--redis-url", fake.url(), "server", "--port", "0", "--poll-interval", "0.2")
        async with started(tmp_path, *args) as server:
            base = (await server.wait_for(r"relay-trio server on (http://\S+)"))[1]

            def requests() -> list[httpx.Response]:
                with httpx.Client(base_url=base, timeout=10) as http:
                    return [
                        http.get("/healthz"),
                        http.get("/readyz"),
                        http.get("/api/queues"),
                        http.post("/api/queues/q/jobs", json={"payload": "x"}),
                    ]

            healthz, *failing = await trio.to_thread.run_sync(requests)
            assert healthz.status_code == 200
            for response in failing:
                assert response.status_code == 503, (response.request.url, response.text)
                assert "is not a Redis server" in response.json()["error"]
                assert PASSWORD not in response.text
            assert server.proc.poll() is None
            assert await server.stop() == 0
        assert_no_secret_nor_traceback(server.text())


async def test_a_worker_outlives_a_server_that_is_not_redis(tmp_path: Path) -> None:
    with FakeServer("http") as fake:
        args = ("--redis-url", fake.url(), "worker", "--queue", "q", "--queue", "r")
        async with started(tmp_path, *args) as worker:
            start = await worker.wait_for(r"worker on q, r .*")
            assert f"Redis redis://:***@127.0.0.1:{fake.port}/0" in start[0]
            await worker.wait_for("is not a Redis server")  # it says what is wrong
            await trio.sleep(2.5)
            assert worker.proc.poll() is None, worker.text()
            assert await worker.stop() == 0
    assert "worker stopped" in worker.text()
    assert_no_secret_nor_traceback(worker.text())


async def test_the_demo_hides_the_password_and_moves_off_a_busy_port(
    locked_redis: EmbeddedRedis, prefix: str, busy_port: int
) -> None:
    assert locked_redis.url is not None
    argv = ("--redis-url", locked_redis.url, "--prefix", prefix, "demo")
    with trio.fail_after(30):
        result = await cli(*argv, "--port", str(busy_port), "--duration", "1.5", "--rate", "20")
    assert result.code == 0, result.err
    assert_no_secret_nor_traceback(result.out + result.err)
    assert f"Redis: {locked_redis.url.replace(PASSWORD, '***')}\n" in result.out
    dashboard = re.search(r"Dashboard: http://127\.0\.0\.1:(\d+)/", result.out)
    assert dashboard is not None and int(dashboard[1]) != busy_port
    assert "demo stopped" in result.out


async def test_the_demo_with_a_wrong_password_exits_1_with_one_line(
    locked_redis: EmbeddedRedis,
) -> None:
    assert locked_redis.url is not None
    url = locked_redis.url.replace(PASSWORD, "wrong-pw")
    result = await cli("--redis-url", url, "demo", "--port", "0", "--duration", "5")
    line = one_line(result, 1)
    assert "refused the credentials" in line
    assert "wrong-pw" not in result.out + result.err
