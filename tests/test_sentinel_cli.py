"""Redis Sentinel (spec 13), the command line: every ``relay-trio`` command takes a
``redis+sentinel://`` URL, as the user types it, against a real master, replica and
sentinel (password-protected: the password never shows in what the commands
print). A worker process started on the URL drains what ``enqueue`` put in;
a wrong service name is one clear line and a non-zero exit."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from support.cli import Cli, running
from support.sentinel import SentinelSetup, sentinel_setup

SECRET = "Cli-s3cret_7"
Q = "sentinelcli"


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelSetup]:
    with sentinel_setup(password=SECRET) as setup:
        yield setup


@pytest.fixture
def cli(sentinel: SentinelSetup) -> Cli:
    return Cli(sentinel.url(), "relaytest-" + secrets.token_hex(6))


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


async def test_enqueue_stats_and_a_worker_over_the_sentinel_url(
    cli: Cli, sentinel: SentinelSetup, tmp_path: Path
) -> None:
    enqueued = await cli("enqueue", "--count", "20", Q, "hello")
    assert enqueued.code == 0, enqueued.err
    assert len(enqueued.out.split()) >= 20
    stats = await cli("stats", "--json", Q)
    assert stats.code == 0, stats.err
    assert json.loads(stats.out)[0]["ready"] == 20
    argv = cli.argv(
        "worker", "--queue", Q, "--handler", "demo", "--demo-fail-rate", "0",
        "--demo-sleep-ms", "5",
    )  # fmt: skip
    async with running(argv, tmp_path) as worker:
        with trio.fail_after(20):
            while True:
                now = await cli("stats", "--json", Q)
                assert now.code == 0, now.err
                if json.loads(now.out)[0]["processed_total"] == 20:
                    break
                assert worker.proc.poll() is None, worker.err()
                await trio.sleep(0.2)
    assert worker.proc.returncode == 0, worker.err()
    listed = await cli("stats")  # every queue
    assert listed.code == 0 and Q in listed.out, listed.err
    no_secret(
        enqueued.out, enqueued.err, stats.out, stats.err, listed.out, listed.err,
        worker.out(), worker.err(),
    )  # fmt: skip
    with sentinel.client("master") as master:  # it all went to the master
        assert master.get(f"{cli.prefix}:{{{Q}}}:processed") == b"20"


async def test_a_wrong_service_or_password_is_one_clear_line(sentinel: SentinelSetup) -> None:
    unknown = Cli(sentinel.url(service="nosuchservice"), "relaytest-x")
    result = await unknown("stats")
    assert result.code != 0
    assert "nosuchservice" in result.err and "Traceback" not in result.err
    wrong = Cli(sentinel.url().replace(SECRET, "not-it"), "relaytest-x")
    result = await wrong("stats")
    assert result.code != 0
    assert "credentials" in result.err and "Traceback" not in result.err
    no_secret(result.out, result.err)
