"""``relay-trio`` for tasks, results, schedules and cancellation (spec section 11, issue 11).

``worker --tasks module:registry`` (imported from the current directory, as
``python -m`` does), ``--result-ttl``, ``--no-schedules``, ``cancel``, ``result``
and ``schedule add|list|rm``: each run as a user runs it (a subprocess) against
the suite's real Redis, under the test's own prefix.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from support import eventually
from support.cli import DEAD_URL, Cli, Q, Result, Running, clean_env, running

from relay_trio import Broker, JobNotFound, JobState, RelayClient

RELAY_TRIO = Path(sys.executable).with_name("relay-trio")
"""The console script: unlike ``python -m``, it does not put the current
directory on ``sys.path`` by itself."""
Q2 = "clitest-text"
UNKNOWN_ID = "0" * 32

REGISTRY = f"""
    import trio

    from relay_trio import TaskRegistry, current_job

    tasks = TaskRegistry()
    empty = TaskRegistry()
    not_a_registry = 42


    @tasks.task(queue={Q!r})
    async def add(a: int, b: int) -> dict[str, object]:
        return {{"sum": a + b, "queue": current_job().queue}}


    @tasks.task(queue={Q2!r})
    def shout(text: str) -> str:
        return text.upper()


    @tasks.task(queue={Q!r})
    async def nap(seconds: float) -> str:
        await trio.sleep(seconds)
        return "rested"
"""


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    """A project directory holding a task module of a name of its own: (dir, module)."""
    name = f"proj_tasks_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(REGISTRY))
    (tmp_path / "broken_tasks.py").write_text("raise RuntimeError('no config here')\n")
    return tmp_path, name


def load(directory: Path, name: str) -> ModuleType:
    """The project's task module, imported in this process (to enqueue its tasks)."""
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def run_in(cwd: Path, *args: str) -> Result:
    """The console script ``relay-trio`` run in ``cwd``."""
    with trio.fail_after(30):
        done = await trio.run_process(
            [str(RELAY_TRIO), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=clean_env(),
            cwd=cwd,
        )
    return Result(done.returncode, done.stdout.decode(), done.stderr.decode())


def one_line(result: Result, code: int) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


@asynccontextmanager
async def worker(cli: Cli, cwd: Path, *args: str) -> AsyncIterator[Running]:
    """``relay-trio worker ARGS --redis-url URL --prefix P`` (the connection flags
    after the verb) running in ``cwd``; stopped with SIGTERM at the end, which
    must exit 0."""
    if not RELAY_TRIO.exists():
        pytest.skip("the relay-trio console script is not installed")
    argv = [str(RELAY_TRIO), "worker", *args, "--redis-url", cli.url, "--prefix", cli.prefix]
    async with running(argv, cwd, merged=True, cwd=cwd) as process:
        await eventually(lambda: "Ctrl-C stops" in process.out() or process.proc.poll() is not None)
        assert process.proc.poll() is None, process.out()
        yield process
    assert process.proc.returncode == 0, process.out()
    assert "worker stopped" in process.out()
    assert "Traceback" not in process.out()


# -- worker --tasks -------------------------------------------------------------------


async def test_worker_tasks_serves_every_queue_of_the_registry(
    cli: Cli, broker: Broker, project: tuple[Path, str]
) -> None:
    """From the project's directory, with the console script: the registry's module
    is found there; each queue runs its tasks and keeps their results."""
    directory, name = project
    tasks = load(directory, name)
    client = RelayClient(broker)
    every_second = await cli("schedule", "add", "tick", "* * * * * *", Q, "{}")
    assert every_second.code == 0, every_second.err
    async with worker(cli, directory, "--tasks", f"{name}:tasks", "--no-schedules") as running:
        assert f"worker on {Q}, {Q2} " in running.out()
        assert f"tasks {name}:tasks: 3 task(s)" in running.out()
        assert "scheduler off" in running.out()
        added = await tasks.add.enqueue(client, 2, 3)
        shouted = await tasks.shout.enqueue(client, "hi")
        job = await broker.wait_job(Q, added, 10)
        assert job.state is JobState.DONE, job.last_error
        assert job.result_value == {"sum": 5, "queue": Q}
        other = await broker.wait_job(Q2, shouted, 10)
        assert (other.state, other.result_value) == (JobState.DONE, "HI")

        printed = await cli("result", Q, added)
        assert printed.code == 0, printed.err
        assert json.loads(printed.out) == {"sum": 5, "queue": Q}
    # the scheduler was off: the per-second schedule never fired
    ((schedule, last_fire, _),) = await broker.list_schedules()
    assert (schedule.name, last_fire) == ("tick", None)
    assert (await broker.stats(Q)).processed_total == 1


async def test_worker_tasks_with_queue_serves_only_those_and_result_ttl_0(
    cli: Cli, broker: Broker, project: tuple[Path, str]
) -> None:
    directory, name = project
    tasks = load(directory, name)
    client = RelayClient(broker)
    args = ("--tasks", f"{name}:tasks", "--queue", Q, "--result-ttl", "0")
    async with worker(cli, directory, *args) as running:
        assert f"worker on {Q} (" in running.out()
        assert "no results kept" in running.out()
        shouted = await tasks.shout.enqueue(client, "not served")
        added = await tasks.add.enqueue(client, 1, 1)
        await eventually(lambda: _processed(broker, Q), within=10)
        with pytest.raises(JobNotFound):  # deleted at ack: no result kept
            await broker.get_job(Q, added)
        gone = await cli("result", Q, added)
        assert "not kept" in one_line(gone, 3)
        assert (await broker.get_job(Q2, shouted)).state is JobState.READY


async def _processed(broker: Broker, queue: str) -> bool:
    return (await broker.stats(queue)).processed_total >= 1


async def test_worker_tasks_runs_the_schedules(
    cli: Cli, broker: Broker, project: tuple[Path, str]
) -> None:
    directory, name = project
    call = json.dumps({"task": "add", "args": [20, 22]})
    added = await cli("schedule", "add", "answer", "* * * * * *", Q, call, "--priority", "7")
    assert added.code == 0, added.err
    async with worker(cli, directory, "--tasks", f"{name}:tasks", "--grace-period", "1"):
        await eventually(lambda: _processed(broker, Q), within=10)
    listed = await cli("schedule", "list", "--json")
    (row,) = json.loads(listed.out)
    assert row["last_fire"] is not None


async def test_cancel_aborts_a_running_task_on_the_worker(
    cli: Cli, broker: Broker, project: tuple[Path, str]
) -> None:
    directory, name = project
    tasks = load(directory, name)
    async with worker(cli, directory, "--tasks", f"{name}:tasks", "--grace-period", "1") as w:
        job_id = await tasks.nap.enqueue(RelayClient(broker), 60)
        await eventually(lambda: _state_is(broker, job_id, JobState.INFLIGHT), within=10)
        cancel = await cli("cancel", Q, job_id)
        assert (cancel.code, cancel.out) == (0, "abort requested (inflight)\n"), cancel.err
        ended = await cli("result", Q, job_id, "--wait", "10")
        assert ended.code == 4, ended.err
        assert ended.out.startswith("cancelled")
    assert "aborted: cancelling its handler" in w.out()


async def _state_is(broker: Broker, job_id: str, state: JobState) -> bool:
    return (await broker.get_job(Q, job_id)).state is state


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--tasks", "nocolon"), "tasks: 'nocolon' is not module:attribute"),
        (("--tasks", "no_such_module_xyz:tasks"), "tasks: no module named 'no_such_module_xyz'"),
        (("--tasks", "{module}:nope"), "tasks: '{module}' has no attribute 'nope'"),
        (("--tasks", "{module}:not_a_registry"), "is a int, not a TaskRegistry"),
        (("--tasks", "{module}:empty"), "tasks: {module}:empty has no tasks"),
        (("--tasks", "broken_tasks:tasks"),
         "tasks: importing 'broken_tasks' failed: RuntimeError: no config here"),
        (("--tasks", ""), "argument --tasks: empty: give module:registry"),
        (("--tasks", "{module}:tasks", "--queue", "other"),
         "queue: no task of {module}:tasks runs on queue 'other' (its queues: "),
        (("--tasks", "{module}:tasks", "--handler", "handlers_for_tests:slow"),
         "handler: give --handler (or RELAY_HANDLER) or --tasks, not both"),
        ((), "queue: give --queue (repeatable) with --handler, or --tasks"),
    ],
    ids=["form", "no-module", "no-attribute", "not-a-registry", "empty", "import-fails",
         "empty-spec", "queue-not-served", "with-handler", "nothing"],
)  # fmt: skip
async def test_a_bad_tasks_spec_exits_2_with_one_line(
    project: tuple[Path, str], args: tuple[str, ...], words: str
) -> None:
    """Checked before Redis is used: a Redis that is not there does not matter."""
    directory, name = project
    if not RELAY_TRIO.exists():
        pytest.skip("the relay-trio console script is not installed")
    argv = [arg.replace("{module}", name) for arg in args]
    result = await run_in(directory, "--redis-url", DEAD_URL, "worker", *argv)
    line = one_line(result, 2)
    assert line.startswith("relay-trio worker: error: "), line
    assert words.replace("{module}", name) in line


async def test_the_worker_settings_come_from_their_variables_too(
    cli: Cli, project: tuple[Path, str]
) -> None:
    _, name = project
    env = clean_env(RELAY_RESULT_TTL="-1")
    result = await cli.raw("--redis-url", DEAD_URL, "worker", "--tasks", f"{name}:tasks", env=env)
    line = one_line(result, 2)
    assert "RELAY_RESULT_TTL: must be at least 0 and at most 31,622,400, got -1" in line
    flag = await cli.raw("--redis-url", DEAD_URL, "worker", "--queue", Q, "--result-ttl", "1e3")
    assert "argument --result-ttl: not a whole number" in one_line(flag, 2)
    switch = await cli.raw(
        "--redis-url", DEAD_URL, "worker", "--queue", Q, env=clean_env(RELAY_NO_SCHEDULES="maybe")
    )
    assert "RELAY_NO_SCHEDULES: not yes or no" in one_line(switch, 2)


# -- cancel ---------------------------------------------------------------------------


async def test_cancel_a_ready_or_delayed_job(cli: Cli, broker: Broker) -> None:
    ready = (await broker.enqueue(Q, "x")).id
    result = await cli("cancel", Q, ready)
    assert (result.code, result.out) == (0, "cancelled\n"), result.err
    assert (await broker.get_job(Q, ready)).state is JobState.CANCELLED
    delayed = (await broker.enqueue(Q, "later", delay_ms=60_000)).id
    after = await cli.raw(  # the connection flags after the verb
        "cancel", Q, delayed, "--redis-url", cli.url, "--prefix", cli.prefix, env=clean_env()
    )
    assert (after.code, after.out) == (0, "cancelled\n"), after.err
    s = await broker.stats(Q)
    assert (s.ready, s.delayed) == (0, 0)


async def test_cancel_a_running_job_requests_its_abort(cli: Cli, broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "running")).id
    assert [j.id for j in (await broker.claim(Q, 1)).jobs] == [job_id]
    result = await cli("cancel", Q, job_id)
    assert (result.code, result.out) == (0, "abort requested (inflight)\n"), result.err
    assert await broker.aborts([Q]) == {Q: {job_id}}


async def test_cancel_an_unknown_or_finished_job(cli: Cli, broker: Broker) -> None:
    unknown = await cli("cancel", Q, UNKNOWN_ID)
    assert one_line(unknown, 3) == f"relay-trio cancel: no job {UNKNOWN_ID} in queue '{Q}'"
    job_id = (await broker.enqueue(Q, "x")).id
    assert (await cli("cancel", Q, job_id)).code == 0
    again = one_line(await cli("cancel", Q, job_id), 4)
    assert "has already ended: cancelled; nothing to cancel" in again
    await broker.enqueue(Q, "done")
    (claimed,) = (await broker.claim(Q, 1)).jobs
    assert await broker.ack(claimed, 1)
    done = one_line(await cli("cancel", Q, claimed.id), 4)
    assert "has already ended: done" in done
    bad = one_line(await cli("cancel", Q, "not-an-id"), 2)
    assert "argument ID: 'not-an-id' is not a job id" in bad


# -- result ---------------------------------------------------------------------------


async def test_result_of_a_done_job_is_its_json(cli: Cli, broker: Broker) -> None:
    await broker.enqueue(Q, "x")
    (job,) = (await broker.claim(Q, 1)).jobs
    assert await broker.ack(job, {"rows": [1, 2], "note": "ünïcode"})
    result = await cli("result", Q, job.id)
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"rows": [1, 2], "note": "ünïcode"}
    await broker.enqueue(Q, "y")
    (nothing,) = (await broker.claim(Q, 1)).jobs
    assert await broker.ack(nothing, None)
    none = await cli.raw(  # the flags before and after the verb
        "--redis-url", DEAD_URL, "result", Q, nothing.id, "--prefix", cli.prefix,
        "--redis-url", cli.url, env=clean_env(),
    )  # fmt: skip
    assert (none.code, none.out) == (0, "null\n"), none.err
    await broker.enqueue(Q, "z")
    (raw,) = (await broker.claim(Q, 1)).jobs
    assert await broker.ack(raw, b"raw bytes, as they are")
    as_is = await cli("result", Q, raw.id)
    assert (as_is.code, as_is.out) == (0, "raw bytes, as they are"), as_is.err


async def test_result_of_a_dead_or_cancelled_job_exits_4_with_its_error(
    cli: Cli, broker: Broker
) -> None:
    await broker.enqueue(Q, "x", max_retries=0)
    (job,) = (await broker.claim(Q, 1)).jobs
    await broker.nack(job, "ValueError: boom")
    dead = await cli("result", Q, job.id)
    assert (dead.code, dead.out) == (4, "dead: ValueError: boom\n"), dead.err
    cancelled = (await broker.enqueue(Q, "y")).id
    await broker.cancel(Q, cancelled)
    result = await cli("result", Q, cancelled, "--wait", "5")
    assert result.code == 4, result.err
    assert result.out.startswith("cancelled")


async def test_result_waits_for_the_end_and_times_out(cli: Cli, broker: Broker) -> None:
    job_id = (await broker.enqueue(Q, "x")).id
    started = time.monotonic()
    late = await cli("result", Q, job_id, "--wait", "0.5")
    line = one_line(late, 5)
    expected = f"job {job_id} in queue '{Q}' has not ended within 0.5 s (it is ready)"
    assert line == f"relay-trio result: {expected}"
    assert time.monotonic() - started < 10
    now = one_line(await cli("result", Q, job_id), 5)
    assert now.endswith("has not ended (it is ready)")

    waited: list[Result] = []

    async def wait_for_it() -> None:
        waited.append(await cli("result", Q, job_id, "--wait", "30"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_it)
        await trio.sleep(1.0)  # the command is waiting by now (or soon: it sees the end)
        (job,) = (await broker.claim(Q, 1)).jobs
        acked_at = time.monotonic()
        assert await broker.ack(job, [42])
    assert time.monotonic() - acked_at < 10
    (result,) = waited
    assert (result.code, json.loads(result.out)) == (0, [42]), result.err


async def test_result_of_an_unknown_job_and_bad_waits(cli: Cli) -> None:
    unknown = one_line(await cli("result", Q, UNKNOWN_ID, "--wait", "1"), 3)
    assert f"no job {UNKNOWN_ID} in queue '{Q}'" in unknown
    for bad in ("-1", "86401", "soon", "nan"):
        line = one_line(await cli("result", Q, UNKNOWN_ID, "--wait", bad), 2)
        assert "argument --wait: " in line, bad


# -- schedule -------------------------------------------------------------------------


async def test_schedule_add_list_rm(cli: Cli, broker: Broker) -> None:
    empty = await cli("schedule", "list")
    assert (empty.code, empty.out) == (0, "no schedules\n"), empty.err
    added = await cli(
        "schedule", "add", "nightly", "30  2 * * MON-FRI", Q, '{"task": "add"}',
        "--timezone", "Europe/Berlin", "--priority", "9",
    )  # fmt: skip
    assert added.code == 0, added.err
    assert added.out.startswith("added schedule 'nightly' (next fire 20")
    stored = await broker.get_schedule("nightly")
    assert stored is not None
    assert (stored.cron, stored.queue, stored.payload) == (
        "30 2 * * MON-FRI",
        Q,
        b'{"task": "add"}',
    )
    assert (stored.timezone, stored.priority) == ("Europe/Berlin", 9)
    # the connection flags after the verb, and after the action
    second = await cli.raw(
        "schedule", "--redis-url", cli.url, "add", "tick", "*/15 * * * * *", Q2, "x",
        "--prefix", cli.prefix, env=clean_env(),
    )  # fmt: skip
    assert second.code == 0, second.err
    assert second.out.endswith("Z)\n")  # UTC by default

    table = await cli("schedule", "list")
    assert table.code == 0, table.err
    header, *rows = [line.split() for line in table.out.splitlines()]
    assert header == ["name", "cron", "timezone", "queue", "next", "fire", "last", "fire"]
    assert [row[0] for row in rows] == ["nightly", "tick"]
    nightly = rows[0]
    assert nightly[1:6] == ["30", "2", "*", "*", "MON-FRI"]
    assert nightly[6:8] == ["Europe/Berlin", Q]
    assert nightly[8].endswith(("T02:30:00+01:00", "T02:30:00+02:00"))
    assert nightly[9] == "never"
    as_json = json.loads((await cli("schedule", "list", "--json")).out)
    assert [row["name"] for row in as_json] == ["nightly", "tick"]
    assert as_json[1]["payload"] == "x" and as_json[1]["last_fire"] is None
    assert as_json[1]["next_fire"].endswith("Z")

    replaced = await cli("schedule", "add", "tick", "0 * * * *", Q2, "y")
    assert replaced.out.startswith("replaced schedule 'tick'"), replaced.err

    removed = await cli("schedule", "rm", "tick")
    assert (removed.code, removed.out) == (0, "removed schedule 'tick'\n"), removed.err
    assert await broker.get_schedule("tick") is None
    missing = one_line(await cli("schedule", "rm", "tick"), 3)
    assert missing == "relay-trio schedule: no schedule named 'tick'"
    assert [s.name for s, _, _ in await broker.list_schedules()] == ["nightly"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("add", "n", "61 * * * *", Q, "x"),
         "argument CRON: '61 * * * *' is not a cron expression: invalid minute field '61'"),
        (("add", "n", "* * *", Q, "x"), "argument CRON: '* * *' has 3 field(s); use 5 fields"),
        (("add", "n", "@daily", Q, "x"), "macros such as @daily are not supported"),
        (("add", "n", "0 0 30 2 *", Q, "x"), "invalid day-of-month field '30'"),
        (("add", "bad name", "* * * * *", Q, "x"),
         "argument NAME: 'bad name' is not a schedule name"),
        (("add", "n", "* * * * *", Q, "x", "--timezone", "Mars/Base"),
         "argument --timezone: 'Mars/Base' is not an IANA time zone name"),
        (("add", "n", "* * * * *", "bad queue!", "x"),
         "argument QUEUE: 'bad queue!' is not a queue name"),
        (("add", "n", "* * * * *", Q, "x", "--priority", "256"),
         "argument --priority: must be at least 0 and at most 255"),
        (("add", "n", "* * * * *", Q), "the following arguments are required: PAYLOAD"),
        (("rm", "../x"), "argument NAME: '../x' is not a schedule name"),
        ((), "the following arguments are required: ACTION"),
    ],
    ids=["cron-field", "cron-fields", "cron-macro", "cron-no-date", "name", "timezone", "queue",
         "priority", "no-payload", "rm-name", "no-action"],
)  # fmt: skip
async def test_a_bad_schedule_exits_2_with_one_line(
    cli: Cli, broker: Broker, args: tuple[str, ...], words: str
) -> None:
    line = one_line(await cli("schedule", *args), 2)
    assert line.startswith("relay-trio schedule"), line
    assert words in line
    assert await broker.list_schedules() == []


async def test_help_documents_the_new_verbs_and_exit_statuses(cli: Cli) -> None:
    top = await cli.raw("--help")
    text = " ".join(top.out.split())
    for verb in ("cancel", "result", "schedule"):
        assert f" {verb} " in text
    assert "3 enqueue: the idempotency key already names a job; cancel, result: no such job" in text
    assert "5 result: the job has not ended within --wait" in text
    worker_help = " ".join((await cli.raw("worker", "--help")).out.split())
    assert "--tasks MODULE:REGISTRY" in worker_help
    assert "0 = delete the job at ack (no result kept)" in worker_help
    assert "(env RELAY_RESULT_TTL, default 86,400)" in worker_help
    assert "--no-schedules" in worker_help
    for action in ("add", "list", "rm"):
        assert action in (await cli.raw("schedule", "--help")).out
