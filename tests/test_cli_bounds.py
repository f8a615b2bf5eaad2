"""Bounded numbers (and the other new command-line checks) of ``relay-trio``.

Every numeric option has a range shown in its ``--help``; a value outside it,
from the flag or from its ``RELAY_*`` variable, is a one-line message and exit
status 2, never a traceback. Most checks run :func:`relay_trio.cli.main` in this
process (nothing reaches Redis: the verbs themselves are replaced by a stub that
records the parsed arguments); the rest run ``python -m relay_trio.cli`` against
the suite's Redis through the ``cli`` fixture of ``test_cli``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from support.cli import DEAD_URL, HEX32, Cli, Q, clean_env, running

from relay_trio import Broker, JobState
from relay_trio import cli as climod
from relay_trio.cli import commands
from relay_trio.worker import QueueHandler

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Option:
    """``flag`` of ``command`` (``base`` makes a valid command line without it)."""

    base: tuple[str, ...]
    flag: str | None  # None: a variable read only by the server's config
    var: str | None
    bounds: str
    edges: tuple[str, str]  # the lowest and the highest accepted values
    bad: tuple[str, ...]  # out of range

    @property
    def verb(self) -> tuple[str, ...]:
        return self.base[:2] if self.base[0] == "dlq" else self.base[:1]

    @property
    def name(self) -> str:
        return " ".join((*self.verb, self.flag or str(self.var)))


WORKER = ("worker", "--queue", "q")
ENQUEUE = ("enqueue", "q", "payload")
SERVER = ("server",)
DLQ_LIST = ("dlq", "list", "q")
DEMO = ("demo",)

OPTIONS = [
    Option(WORKER, "--concurrency", "RELAY_CONCURRENCY", "at least 1 and at most 10,000",
           ("1", "10000"), ("0", "10001", "20000", "-5")),
    Option(WORKER, "--visibility-ms", "RELAY_VISIBILITY_MS",
           "at least 100 and at most 86,400,000", ("100", "86400000"), ("50", "86400001")),
    Option(WORKER, "--grace-period", "RELAY_GRACE_PERIOD", "at least 0 and at most 86,400",
           ("0", "86400"), ("-1", "86400.5")),
    Option(WORKER, "--job-timeout", "RELAY_JOB_TIMEOUT", "more than 0 and at most 604,800",
           ("0.001", "604800"), ("0", "-1", "604801")),
    Option(WORKER, "--demo-fail-rate", "RELAY_DEMO_FAIL_RATE", "at least 0 and at most 1",
           ("0", "1"), ("-0.1", "1.5")),
    Option(WORKER, "--demo-sleep-ms", "RELAY_DEMO_SLEEP_MS", "at least 0 and at most 3,600,000",
           ("0", "3600000"), ("-1", "3600001")),
    Option(ENQUEUE, "--count", None, "at least 1 and at most 10,000", ("1", "10000"),
           ("0", "10001", "1000000000")),
    Option(ENQUEUE, "--delay-ms", None, "at least 0 and at most 31,622,400,000",
           ("0", str(366 * DAY_MS)), ("-1", str(366 * DAY_MS + 1))),
    Option(ENQUEUE, "--priority", None, "at least 0 and at most 255", ("0", "255"),
           ("-1", "256")),
    Option(ENQUEUE, "--max-retries", None, "at least 0 and at most 1,000", ("0", "1000"),
           ("-1", "1001")),
    Option(ENQUEUE, "--timeout-ms", None, "at least 1 and at most 604,800,000",
           ("1", "604800000"), ("0", "604800001")),
    Option(SERVER, "--port", "RELAY_PORT", "at least 0 and at most 65,535", ("0", "65535"),
           ("-1", "65536")),
    Option(SERVER, "--poll-interval", "RELAY_POLL_INTERVAL", "at least 0.05 and at most 3,600",
           ("0.05", "3600"), ("0", "0.04", "3601")),
    Option(SERVER, "--keep-alive-timeout", "RELAY_KEEP_ALIVE_TIMEOUT",
           "at least 0.1 and at most 3,600", ("0.1", "3600"), ("0", "3601")),
    Option(SERVER, "--graceful-timeout", "RELAY_GRACEFUL_TIMEOUT", "at least 0 and at most 600",
           ("0", "600"), ("-0.5", "601")),
    Option(SERVER, None, "RELAY_KEEPALIVE_INTERVAL", "at least 0.1 and at most 3,600",
           ("0.1", "3600"), ("0", "-1", "3601")),
    Option(SERVER, None, "RELAY_STREAM_DROP_AFTER", "at least 1 and at most 3,600",
           ("1", "3600"), ("0.5", "3601")),
    Option(SERVER, None, "RELAY_MAX_PAYLOAD_BYTES", "at least 1 and at most 67,108,864",
           ("1", "67108864"), ("0", "67108865")),
    Option(DLQ_LIST, "--limit", None, "at least 1 and at most 1,000", ("1", "1000"),
           ("0", "1001")),
    Option(DLQ_LIST, "--offset", None, "at least 0 and at most 4,611,686,018,427,387,904",
           ("0", str(2**62)), ("-1", str(2**62 + 1))),
    Option(DEMO, "--port", None, "at least 0 and at most 65,535", ("0", "65535"),
           ("-1", "65536")),
    Option(DEMO, "--rate", None, "at least 1 and at most 10,000", ("1", "10000"),
           ("0", "10001")),
    Option(DEMO, "--concurrency", None, "at least 1 and at most 10,000", ("1", "10000"),
           ("0", "10001")),
    Option(DEMO, "--fail-rate", None, "at least 0 and at most 1", ("0", "1"), ("-1", "2")),
    Option(DEMO, "--duration", None, "more than 0 and at most 604,800", ("0.5", "604800"),
           ("0", "604801")),
]  # fmt: skip

FLAGS = [o for o in OPTIONS if o.flag]
VARS = [o for o in OPTIONS if o.var]


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


class Reached(Exception):
    """The command line was accepted: a verb would have started."""


@dataclass
class Run:
    code: int | str | None
    out: str
    err: str
    args: argparse.Namespace | None


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``run(*argv, url=DEAD_URL, **env)``: :func:`relay_trio.cli.main` in this
    process (``--redis-url url`` first unless ``url`` is None), with only the given
    ``RELAY_*`` variables set and every verb replaced by a recorder."""
    import relay_trio.server.serve as serve

    seen: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    def server_reached() -> None:
        raise Reached  # _run_server calls it once its checks passed

    for name in list(commands.COMMANDS):
        monkeypatch.setitem(commands.COMMANDS, name, record)
    monkeypatch.setattr(climod, "run_demo", record)
    monkeypatch.setattr(serve, "tune_gc_for_streams", server_reached)

    def go(*argv: str, url: str | None = DEAD_URL, **env: str) -> Run:
        for var in [v for v in os.environ if v.startswith("RELAY_")]:
            monkeypatch.delenv(var)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        seen.clear()
        try:
            first = [] if url is None else ["--redis-url", url]
            code: int | str | None = climod.main([*first, *argv])
        except SystemExit as exc:
            code = exc.code
        except Reached:
            code = "reached"
        out, err = capsys.readouterr()
        return Run(code, out, err, seen[-1] if seen else None)

    return go


def one_line_failure(result: Run) -> str:
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def accepted(result: Run) -> None:
    assert result.code in (0, "reached"), result.err
    assert result.err == ""


@pytest.mark.parametrize(
    ("option", "value"),
    [pytest.param(o, v, id=f"{o.name}={v}") for o in FLAGS for v in o.bad],
)
def test_an_out_of_range_flag_exits_2_with_the_range(run: Any, option: Option, value: str) -> None:
    assert option.flag is not None
    line = one_line_failure(run(*option.base, f"{option.flag}={value}"))
    assert line.startswith(f"relay-trio {' '.join(option.verb)}: error: ")
    assert f"argument {option.flag}: must be {option.bounds}, got " in line


@pytest.mark.parametrize(
    ("option", "value"),
    [pytest.param(o, v, id=f"{o.var}={v}") for o in VARS for v in o.bad],
)
def test_an_out_of_range_variable_exits_2_naming_it(run: Any, option: Option, value: str) -> None:
    assert option.var is not None
    line = one_line_failure(run(*option.base, **{option.var: value}))
    assert line.startswith(f"relay-trio {option.base[0]}: error: ")
    assert f"{option.var}: must be {option.bounds}, got {value}" in line


@pytest.mark.parametrize(
    ("option", "value"),
    [pytest.param(o, v, id=f"{o.name}={v}") for o in OPTIONS for v in o.edges],
)
def test_the_edges_of_each_range_are_accepted(run: Any, option: Option, value: str) -> None:
    if option.flag:
        accepted(run(*option.base, option.flag, value))
    assert option.var or option.flag
    if option.var:
        accepted(run(*option.base, **{option.var: value}))


@pytest.mark.parametrize("option", FLAGS, ids=[o.name for o in FLAGS])
def test_help_shows_each_range_and_variable(run: Any, option: Option) -> None:
    result = run(*option.verb, "--help")
    assert result.code == 0
    options = " ".join(result.out.split()).split(" options: ", 1)[1]
    entry = options[options.index(f"{option.flag} ") :][:500]
    assert option.bounds in entry
    if option.var:
        assert f"env {option.var}, default " in entry


def test_server_help_documents_the_variables_read_only_by_its_config(run: Any) -> None:
    text = " ".join(run("server", "--help").out.split())
    for option in OPTIONS:
        if option.flag is None:
            assert f"{option.var}: " in text
            assert option.bounds in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "not a whole number"),
        ("1.5", "not a whole number"),
        ("1e3", "not a whole number"),
        ("", "not a whole number"),
    ],
)
def test_a_malformed_whole_number_exits_2(run: Any, text: str, message: str) -> None:
    line = one_line_failure(run(*WORKER, f"--concurrency={text}"))
    assert f"argument --concurrency: {message}, got {text!r}" in line
    if text:  # an empty variable counts as unset
        env_line = one_line_failure(run(*WORKER, RELAY_CONCURRENCY=text))
        assert f"RELAY_CONCURRENCY: {message}, got {text}" in env_line


@pytest.mark.parametrize("text", ["soon", "nan", "inf", "-inf", "1,5"])
def test_a_malformed_or_infinite_number_exits_2(run: Any, text: str) -> None:
    line = one_line_failure(run(*WORKER, f"--grace-period={text}"))
    assert "argument --grace-period: not a" in line
    env_line = one_line_failure(run(*WORKER, RELAY_GRACE_PERIOD=text))
    assert "RELAY_GRACE_PERIOD: not a" in env_line
    assert env_line.endswith(f", got {text} (see relay-trio worker --help)")


def test_a_bad_variable_is_ignored_when_its_flag_is_given(run: Any) -> None:
    result = run(*WORKER, "--concurrency", "7", RELAY_CONCURRENCY="20000")
    accepted(result)
    assert result.args.concurrency == 7
    # and a variable for another verb is never looked at
    accepted(run("stats", RELAY_CONCURRENCY="20000", RELAY_PORT="x"))


def test_variables_in_range_are_used(run: Any) -> None:
    result = run(
        *WORKER,
        RELAY_CONCURRENCY="3",
        RELAY_VISIBILITY_MS="1000",
        RELAY_GRACE_PERIOD="0.5",
        RELAY_JOB_TIMEOUT="2.5",
        RELAY_DEMO_FAIL_RATE="0",
        RELAY_DEMO_SLEEP_MS="1",
    )
    accepted(result)
    args = result.args
    assert (args.concurrency, args.visibility_ms, args.grace_period) == (3, 1000, 0.5)
    assert (args.job_timeout, args.demo_fail_rate, args.demo_sleep_ms) == (2.5, 0.0, 1.0)
    default = run(*WORKER).args
    assert (default.concurrency, default.visibility_ms, default.job_timeout) == (10, 30_000, None)


# -- --prefix and the connection flags -------------------------------------------


@pytest.mark.parametrize("bad", ["a{b}", "{q}", "has space", "x" * 65, "ünï"])
def test_a_bad_prefix_exits_2_with_the_rules(run: Any, bad: str) -> None:
    for argv in (("--prefix", bad, "stats"), ("stats", "--prefix", bad)):
        line = one_line_failure(run(*argv))
        assert "argument --prefix: " in line
        assert "is not a key prefix: use 1-64 characters" in line
        assert "Redis Cluster slot" in line
    env_line = one_line_failure(run("stats", RELAY_PREFIX=bad))
    assert env_line.startswith("relay-trio: error: argument --prefix: RELAY_PREFIX: ")
    assert "is not a key prefix" in env_line


def test_the_connection_flags_work_after_the_verb(run: Any) -> None:
    url = "redis://example.invalid:6379/3"
    for argv in (
        ("worker", "--redis-url", url, "--prefix", "p1", "--queue", "q"),
        ("enqueue", "q", "x", "--prefix", "p1", "--redis-url", url),
        ("dlq", "list", "q", "--redis-url", url, "--prefix", "p1"),
        ("dlq", "--redis-url", url, "--prefix", "p1", "list", "q"),
        ("queue", "delete", "q", "--redis-url", url, "--prefix", "p1"),
        ("stats", "--redis-url", url, "--prefix", "p1"),
    ):
        result = run(*argv)
        accepted(result)
        assert (result.args.redis_url, result.args.prefix) == (url, "p1"), argv
    # before the verb still works; after it wins; neither: the variable, then the default
    assert run("--prefix", "before", "stats").args.prefix == "before"
    assert run("--prefix", "before", "stats", "--prefix", "after").args.prefix == "after"
    assert run("stats", RELAY_PREFIX="fromenv").args.prefix == "fromenv"
    assert run("stats", "--prefix", "flag", RELAY_PREFIX="fromenv").args.prefix == "flag"
    assert run("stats", "--prefix", "ok", RELAY_PREFIX="bad{x}").args.prefix == "ok"
    assert run("stats").args.prefix == "relay"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:6379", "Redis URL must specify one of the following schemes"),
        ("redis://:hunter2@127.0.0.1:99999/0", "Port out of range 0-65535"),
        ("redis://127.0.0.1:port/0", "Port could not be cast to integer"),
    ],
)
def test_a_bad_redis_url_exits_2_without_showing_it(run: Any, url: str, reason: str) -> None:
    for argv, env in (
        (("--redis-url", url, "stats"), {}),
        (("stats", "--redis-url", url), {}),
        (("server",), {"RELAY_REDIS_URL": url}),
    ):
        line = one_line_failure(run(*argv, url=None, **env))
        assert "argument --redis-url: " in line
        assert f"not a Redis URL ({reason}" in line
        assert "hunter2" not in line
        assert ("RELAY_REDIS_URL: " in line) == bool(env)


# -- worker --job-timeout ---------------------------------------------------------


def test_job_timeout_reaches_the_queue_handlers(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[QueueHandler] = []

    def record(*args: Any, **kwargs: Any) -> QueueHandler:
        made.append(QueueHandler(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(commands, "QueueHandler", record)
    monkeypatch.setattr(commands, "_broker_run", lambda args, fn, **_: 0)
    monkeypatch.setitem(commands.COMMANDS, "worker", commands.run_worker)
    for argv, env, timeout in (
        (("--job-timeout", "2.5"), {}, 2.5),
        ((), {"RELAY_JOB_TIMEOUT": "30"}, 30.0),
        ((), {}, None),
    ):
        made.clear()
        result = run("worker", "--queue", "a", "--queue", "b", *argv, **env)
        assert result.code == 0, result.err
        assert [(h.queue, h.timeout) for h in made] == [("a", timeout), ("b", timeout)]


@pytest.mark.parametrize(
    "edge",
    [
        ("1", "100", "0", "0.001", "0", "0"),
        ("10000", "86400000", "86400", "604800", "1", "3600000"),
    ],
    ids=["lowest", "highest"],
)
def test_the_worker_builds_its_handlers_at_the_edges(
    run: Any, monkeypatch: pytest.MonkeyPatch, edge: tuple[str, ...]
) -> None:
    """The command line's ranges are the library's: QueueHandler, WorkerConfig and
    the demo handler take every value the parser lets through."""
    monkeypatch.setattr(commands, "_broker_run", lambda args, fn, **_: 0)
    monkeypatch.setitem(commands.COMMANDS, "worker", commands.run_worker)
    flags = ("--concurrency", "--visibility-ms", "--grace-period", "--job-timeout")
    flags += ("--demo-fail-rate", "--demo-sleep-ms")
    argv = [part for flag, value in zip(flags, edge, strict=True) for part in (flag, value)]
    result = run(*WORKER, *argv)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err


async def test_a_job_past_the_worker_job_timeout_is_nacked(
    cli: Cli, broker: Broker, tmp_path: Path
) -> None:
    job_id = (await broker.enqueue(Q, "stuck", max_retries=1)).id
    argv = cli.argv(
        "worker", "--queue", Q, "--handler", "handlers_for_tests:slow", "--job-timeout", "0.3"
    )
    async with running(argv, tmp_path, merged=True) as worker:
        with trio.fail_after(15):
            while (await broker.stats(Q)).dlq < 1:
                assert worker.proc.poll() is None, worker.out()
                await trio.sleep(0.05)
    job = await broker.get_job(Q, job_id)
    assert job.state is JobState.DEAD
    assert job.last_error is not None and job.last_error.startswith("timed out after 0.3")
    assert worker.proc.returncode == 0, worker.out()
    assert "Traceback" not in worker.out()


# -- enqueue --timeout-ms --------------------------------------------------------


async def test_enqueue_timeout_ms_is_stored_on_the_job(cli: Cli, broker: Broker) -> None:
    one = await cli("enqueue", Q, "x", "--timeout-ms", "1500")
    assert one.code == 0, one.err
    assert (await broker.get_job(Q, one.out.split()[0])).timeout_ms == 1500
    many = await cli("enqueue", Q, "y", "--count", "3", "--timeout-ms", "604800000")
    assert many.code == 0, many.err
    for line in many.out.splitlines():
        assert (await broker.get_job(Q, line.split()[0])).timeout_ms == 604_800_000
    plain = await cli("enqueue", Q, "z")
    assert (await broker.get_job(Q, plain.out.split()[0])).timeout_ms is None


# -- the real process ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["worker", "--queue", Q, "--concurrency", "20000"], {},
         "argument --concurrency: must be at least 1 and at most 10,000, got 20,000"),
        (["worker", "--queue", Q, "--visibility-ms", "50"], {},
         "argument --visibility-ms: must be at least 100 and at most 86,400,000, got 50"),
        (["worker", "--queue", Q], {"RELAY_CONCURRENCY": "20000"},
         "relay-trio worker: error: argument --concurrency: RELAY_CONCURRENCY: "
         "must be at least 1 and at most 10,000, got 20000"),
        (["stats"], {"RELAY_PREFIX": "app{1}"}, "RELAY_PREFIX: 'app{1}' is not a key prefix"),
        (["server", "--port", "0"], {"RELAY_STREAM_DROP_AFTER": "-1"},
         "relay-trio server: error: RELAY_STREAM_DROP_AFTER: must be at least 1 and at most "
         "3,600, got -1"),
    ],
    ids=["concurrency", "visibility", "env-concurrency", "env-prefix", "env-server-only"],
)  # fmt: skip
async def test_the_command_exits_2_with_one_line(
    cli: Cli, args: list[str], env: dict[str, str], message: str
) -> None:
    result = await cli.raw("--redis-url", DEAD_URL, *args, env=clean_env(**env))
    assert result.code == 2
    assert message in result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert "Traceback" not in result.err


async def test_the_connection_flags_after_the_verb_reach_redis(cli: Cli, broker: Broker) -> None:
    result = await cli.raw(
        "enqueue", Q, "after", "--redis-url", cli.url, "--prefix", cli.prefix, env=clean_env()
    )
    assert result.code == 0, result.err
    job_id = result.out.split()[0]
    assert HEX32.fullmatch(job_id)
    assert (await broker.get_job(Q, job_id)).payload == b"after"
    stats = await cli.raw(
        "--redis-url", DEAD_URL, "--prefix", "wrong", "stats", "--redis-url", cli.url,
        "--prefix", cli.prefix, "--json", env=clean_env(),
    )  # fmt: skip
    assert stats.code == 0, stats.err
    assert [(row["queue"], row["ready"]) for row in json.loads(stats.out)] == [(Q, 1)]
