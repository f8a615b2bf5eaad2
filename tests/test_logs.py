"""Log lines (spec section 12, issue 12 item 5): ``key=value`` by default, JSON lines with
``--log-format json``; every job event carries the job's id, queue and attempt.

The formatters are checked on their own (a value with spaces, quotes, ``=`` or line
breaks stays one parseable line), then on the lines of real ``relay-trio worker``
processes: a job that fails, is retried and is dead-lettered; a job released at
shutdown.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from support import eventually
from support.cli import Cli, running

from relay_trio import Broker, JobState
from relay_trio.cli import build_parser
from relay_trio.logs import (
    DropJobEvents,
    JsonFormatter,
    KeyValueFormatter,
    fields,
    kv_value,
    parse_kv,
    setup,
)

Q = "logged"
NASTY = 'two words, "quotes", a=b,\nline two\r\ttab \x00 nul \u2028 sep \x85 nel \\ back'


def record(msg: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("relay_trio.worker", logging.WARNING, __file__, 1, msg, args, None)
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


class FakeJob:
    queue, id, attempts = "emails", "ab" * 16, 3


# -- the formatters -----------------------------------------------------------------


def test_a_kv_line_keeps_every_value_on_one_parseable_line() -> None:
    rec = record("failed: %s", NASTY, **fields("job.retry", FakeJob(), error=NASTY, n=1.5))
    line = KeyValueFormatter().format(rec)
    assert len(line.splitlines()) == 1  # splitlines breaks on \u2028 and \x85 too
    parsed = parse_kv(line)
    assert list(parsed)[:8] == [
        "ts",
        "level",
        "logger",
        "event",
        "queue",
        "job",
        "attempt",
        "error",
    ]
    assert parsed["level"] == "warning"
    assert parsed["logger"] == "relay_trio.worker"
    assert (parsed["event"], parsed["queue"], parsed["job"]) == ("job.retry", "emails", "ab" * 16)
    assert parsed["attempt"] == "3"
    assert parsed["error"] == NASTY
    assert parsed["msg"] == "failed: " + NASTY
    assert parsed["n"] == "1.5"
    assert parsed["ts"].endswith("Z") and "T" in parsed["ts"]


def test_a_json_line_is_one_object_with_the_same_fields() -> None:
    rec = record("failed: %s", NASTY, **fields("job.dead", FakeJob(), error=NASTY, jobs=["a", "b"]))
    line = JsonFormatter().format(rec)
    assert len(line.splitlines()) == 1
    obj = json.loads(line)
    assert obj["event"] == "job.dead"
    assert (obj["queue"], obj["job"], obj["attempt"]) == ("emails", "ab" * 16, 3)
    assert obj["error"] == NASTY
    assert obj["jobs"] == ["a", "b"]
    assert obj["msg"] == "failed: " + NASTY
    assert obj["level"] == "warning"


def test_values_are_bare_only_when_safe() -> None:
    assert kv_value("emails") == "emails"
    assert kv_value("a-b_c.d:e/f@g+h") == "a-b_c.d:e/f@g+h"
    assert kv_value("") == '""'
    assert kv_value("a b") == '"a b"'
    assert kv_value("a=b") == '"a=b"'
    assert kv_value('say "hi"') == '"say \\"hi\\""'
    assert kv_value(None) == "null"
    assert kv_value(True) == "true"
    assert kv_value(42) == "42"
    assert kv_value(["x", 1]) == '"[\\"x\\",1]"'


def test_a_plain_record_has_msg_and_a_clashing_field_is_renamed() -> None:
    plain = parse_kv(KeyValueFormatter().format(record("just %s", "text")))
    assert list(plain) == ["ts", "level", "logger", "msg"]
    assert plain["msg"] == "just text"
    clash = parse_kv(KeyValueFormatter().format(record(**fields("x.y", msg="mine", ts="t"))))
    assert clash["field_msg"] == "mine" and clash["field_ts"] == "t" and clash["msg"] == "hello %s"


def test_an_exception_stays_on_the_line() -> None:
    try:
        raise ValueError("bad\nworse")
    except ValueError:
        rec = record("oops")
        rec.exc_info = sys.exc_info()
    line = KeyValueFormatter().format(rec)
    assert len(line.splitlines()) == 1
    assert "ValueError: bad\nworse" in parse_kv(line)["exc"]
    assert "ValueError" in json.loads(JsonFormatter().format(rec))["exc"]


def test_the_demo_filter_drops_job_events_only() -> None:
    keep = DropJobEvents()
    assert not keep.filter(record(**fields("job.retry", FakeJob())))
    assert keep.filter(record(**fields("claim.failed", queue="q")))
    assert keep.filter(record())


def test_setup_installs_two_streams_once_and_reformats_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("relay_trio")
    monkeypatch.setattr(logger, "handlers", [])
    out, err = FakeStream(), FakeStream()
    setup("kv", stdout=out, stderr=err)  # type: ignore[arg-type]
    setup("json")  # the same handlers, now JSON
    assert len(logger.handlers) == 2
    logging.getLogger("relay_trio.worker").info("to stdout")
    logging.getLogger("relay_trio.worker").warning("to stderr")
    assert json.loads(out.text)["msg"] == "to stdout"
    assert json.loads(err.text)["msg"] == "to stderr"
    with pytest.raises(ValueError, match="log format"):
        setup("xml")


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["stats"], {}, "kv"),
        (["--log-format", "json", "stats"], {}, "json"),
        (["stats", "--log-format", "json"], {}, "json"),
        (["server"], {"RELAY_LOG_FORMAT": "json"}, "json"),
        (["worker", "--queue", "q", "--log-format", "kv"], {"RELAY_LOG_FORMAT": "json"}, "kv"),
        (["demo"], {"RELAY_LOG_FORMAT": "json"}, "json"),
    ],
)
def test_every_command_takes_the_log_format(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: str
) -> None:
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert build_parser().parse_args(argv).log_format == expected


class FakeStream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


# -- the lines of a real worker ------------------------------------------------------


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


async def run_worker(
    cli: Cli, tmp_path: Path, until: Any, *args: str, signals: int = 1
) -> tuple[str, str]:
    """A ``relay-trio worker`` process with ``args`` until ``until()`` is true, then
    SIGTERM (``signals`` times); its stdout and stderr."""
    async with running(cli.argv("worker", "--queue", Q, *args), tmp_path) as worker:
        await eventually(until, within=20)
        for _ in range(signals - 1):  # the block's end sends the last one
            worker.proc.send_signal(signal.SIGTERM)
            await trio.sleep(0.2)
    out, err = worker.out(), worker.err()
    assert worker.proc.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def log_lines(text: str, log_format: str) -> list[dict[str, Any]]:
    """Every log line of ``text`` parsed (the command's own messages skipped)."""
    if log_format == "json":
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [parse_kv(line) for line in text.splitlines() if line.startswith("ts=")]


@pytest.mark.parametrize("log_format", ["kv", "json"])
async def test_a_retried_and_dead_lettered_job_logs_its_fields(
    cli: Cli, broker: Broker, tmp_path: Path, log_format: str
) -> None:
    job_id = (await broker.enqueue(Q, "doomed", max_retries=2)).id

    async def dead() -> bool:
        return (await broker.get_job(Q, job_id)).state is JobState.DEAD

    argv = ["--handler", "demo", "--demo-fail-rate", "1", "--demo-sleep-ms", "0"]
    if log_format == "json":
        argv += ["--log-format", "json"]  # the default is kv
    out, err = await run_worker(cli, tmp_path, dead, *argv)
    lines = log_lines(err, log_format)
    assert len(lines) == len(err.splitlines()), err  # every stderr line is a log line
    events = [line for line in lines if line.get("job") == job_id]
    assert [e["event"] for e in events] == ["job.retry", "job.dead"], err
    retry, dead_line = events
    for line in events:
        assert line["queue"] == Q
        assert line["logger"] == "relay_trio.worker"
        assert "DemoFailure: demo failure on attempt" in line["error"]
        assert "\n" in line["error"]  # the frames, kept on one log line
        assert str(line["max_retries"]) == "2"
        assert line["cause"] == "error"
    assert str(retry["attempt"]) == "1" and retry["level"] == "warning"
    assert int(retry["delay_ms"]) >= 0
    assert str(dead_line["attempt"]) == "2" and dead_line["level"] == "error"
    assert "worker stopped: 0 succeeded, 2 failed" in out


async def test_a_job_released_at_shutdown_is_logged_on_stdout(
    cli: Cli, broker: Broker, tmp_path: Path
) -> None:
    job_id = (await broker.enqueue(Q, "long")).id

    async def running() -> bool:
        return (await broker.get_job(Q, job_id)).state is JobState.INFLIGHT

    args = ("--handler", "handlers_for_tests:slow", "--grace-period", "0")
    out, _ = await run_worker(cli, tmp_path, running, *args)
    events = {line["event"]: line for line in log_lines(out, "kv") if "event" in line}
    line = events["job.released"]
    assert (line["job"], line["queue"], line["attempt"], line["level"]) == (job_id, Q, "1", "info")
    assert "released at shutdown" in line["msg"]
    job = await broker.get_job(Q, job_id)
    assert (job.state, job.attempts) == (JobState.READY, 0)
