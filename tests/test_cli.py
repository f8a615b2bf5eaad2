"""The ``relay-trio`` command (spec section 9), run as a subprocess against a real Redis.

Every run is ``python -m relay_trio.cli --redis-url URL --prefix P ...`` with the
test's own prefix (or the same two through ``RELAY_*`` environment variables).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from support import make_dead
from support.cli import DEAD_URL, HEX32, Cli, Q, Result, clean_env, running

from relay_trio import Broker, JobNotFound, JobState

COMMANDS = ("server", "worker", "enqueue", "stats", "dlq", "pause", "resume", "queue", "demo")


@pytest.fixture
def cli(redis_server: Any, prefix: str) -> Cli:
    return Cli(redis_server.url, prefix)


def assert_clean_failure(result: Result) -> None:
    assert result.code != 0
    assert "Traceback" not in result.err
    assert result.err.strip(), "a failure explains itself on stderr"


async def test_help_names_every_command(cli: Cli) -> None:
    result = await cli.raw("--help")
    assert result.code == 0, result.err
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.out, re.MULTILINE), command
    for verb in ("list", "requeue", "delete", "purge"):
        assert verb in (await cli.raw("dlq", "--help")).out
    assert "delete" in (await cli.raw("queue", "--help")).out


async def test_enqueue_prints_an_id_and_the_job_exists(cli: Cli, broker: Broker) -> None:
    result = await cli("enqueue", Q, "hello world", "--priority", "9", "--max-retries", "2")
    assert result.code == 0, result.err
    job_id, state = result.out.split()
    assert HEX32.fullmatch(job_id)
    assert state == "ready"
    job = await broker.get_job(Q, job_id)
    assert (job.payload, job.priority, job.max_retries, job.state) == (
        b"hello world",
        9,
        2,
        JobState.READY,
    )
    delayed = await cli("enqueue", Q, "later", "--delay-ms", "60000")
    assert delayed.code == 0, delayed.err
    assert (await broker.get_job(Q, delayed.out.split()[0])).state is JobState.DELAYED


async def test_enqueue_count(cli: Cli, broker: Broker) -> None:
    result = await cli("enqueue", Q, "many", "--count", "5")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 5
    ids = [line.split()[0] for line in lines]
    assert len(set(ids)) == 5
    assert all(HEX32.fullmatch(i) for i in ids)
    assert (await broker.stats(Q)).ready == 5
    for job_id in ids:
        assert (await broker.get_job(Q, job_id)).payload == b"many"


async def test_a_duplicate_idempotency_key_exits_3_with_the_same_id(
    cli: Cli, broker: Broker
) -> None:
    first = await cli("enqueue", Q, "one", "--idempotency-key", "invoice-9")
    assert first.code == 0, first.err
    again = await cli("enqueue", Q, "two", "--idempotency-key", "invoice-9")
    assert again.code == 3, (again.out, again.err)
    assert again.out.split()[0] == first.out.split()[0]
    assert "duplicate" in again.out
    assert (await broker.stats(Q)).ready == 1


async def test_stats_text_and_json(cli: Cli, broker: Broker) -> None:
    empty = await cli("stats")
    assert empty.code == 0, empty.err
    assert "no queues" in empty.out

    await broker.enqueue_many(Q, [broker.spec("x") for _ in range(4)])
    await broker.enqueue("other", "y", delay_ms=60_000)
    await broker.pause("other")
    text = await cli("stats")
    assert text.code == 0, text.err
    rows = {line.split()[0]: line.split() for line in text.out.splitlines()[1:]}
    assert rows[Q][1:5] == ["4", "0", "0", "0"]
    assert rows["other"][1:5] == ["0", "0", "1", "0"]
    assert rows["other"][-1] == "yes"
    assert text.out.splitlines()[0].split()[:5] == ["queue", "ready", "inflight", "delayed", "dlq"]

    as_json = await cli("stats", "--json")
    assert as_json.code == 0, as_json.err
    data = json.loads(as_json.out)
    assert [row["queue"] for row in data] == [Q, "other"]
    assert data[0]["ready"] == 4
    assert data[1]["delayed"] == 1 and data[1]["paused"] is True

    one = json.loads((await cli("stats", Q, "--json")).out)
    assert [row["queue"] for row in one] == [Q]


async def test_dlq_list_requeue_delete_purge(cli: Cli, broker: Broker) -> None:
    ids = await make_dead(broker, Q, 5, error="KeyError: no such thing {id}")

    listed = await cli("dlq", "list", Q)
    assert listed.code == 0, listed.err
    assert [line.split()[0] for line in listed.out.splitlines()[:-1]] == ids
    assert "KeyError: no such thing" in listed.out
    assert "5 dead job(s) shown" in listed.out
    as_json = json.loads(
        (await cli("dlq", "list", Q, "--json", "--limit", "2", "--offset", "1")).out
    )
    assert [job["id"] for job in as_json] == ids[1:3]
    assert as_json[0]["state"] == "dead"

    requeued = await cli("dlq", "requeue", Q, ids[0])
    assert requeued.code == 0, requeued.err
    assert f"requeued {ids[0]}" in requeued.out
    job = await broker.get_job(Q, ids[0])
    assert (job.state, job.attempts) == (JobState.READY, 0)

    deleted = await cli("dlq", "delete", Q, ids[1])
    assert deleted.code == 0, deleted.err
    assert f"deleted {ids[1]}" in deleted.out
    with pytest.raises(JobNotFound):
        await broker.get_job(Q, ids[1])

    missing = await cli("dlq", "requeue", Q, ids[1])  # gone for good
    assert missing.code == 1
    assert "not found" in missing.err
    assert_clean_failure(missing)

    requeue_all = await cli("dlq", "requeue", Q, "--all")
    assert requeue_all.code == 0, requeue_all.err
    assert "requeued 3" in requeue_all.out
    s = await broker.stats(Q)
    assert (s.ready, s.dlq) == (4, 0)

    more = await make_dead(broker, "purge-me", 2)
    purged = await cli("dlq", "purge", "purge-me")
    assert purged.code == 0, purged.err
    assert "purged 2" in purged.out
    assert (await broker.stats("purge-me")).dlq == 0
    for job_id in more:
        with pytest.raises(JobNotFound):
            await broker.get_job("purge-me", job_id)


async def test_pause_and_resume(cli: Cli, broker: Broker) -> None:
    for queue in (Q, "other"):  # only creating a job registers a queue
        await broker.enqueue(queue, "x")
    paused = await cli("pause", Q, "other")
    assert paused.code == 0, paused.err
    assert f"{Q} paused" in paused.out
    assert (await broker.stats(Q)).paused
    assert (await broker.stats("other")).paused
    resumed = await cli("resume", Q)
    assert resumed.code == 0, resumed.err
    assert f"{Q} resumed" in resumed.out
    assert not (await broker.stats(Q)).paused
    assert (await broker.stats("other")).paused


@pytest.mark.parametrize("verb", ["pause", "resume"])
async def test_pause_or_resume_of_an_unknown_queue_exits_1(
    cli: Cli, broker: Broker, verb: str
) -> None:
    result = await cli(verb, "nosuchqueue")
    assert result.code == 1
    assert "queue 'nosuchqueue' not found" in result.err
    assert_clean_failure(result)
    assert await broker.queues() == []  # an admin verb never registers a queue
    await broker.enqueue(Q, "x")
    if verb == "resume":
        await broker.pause(Q)
    mixed = await cli(verb, Q, "nosuchqueue")
    assert mixed.code == 1
    assert "queue 'nosuchqueue' not found" in mixed.err
    assert (await broker.stats(Q)).paused is (verb == "resume")  # nothing was changed


async def test_a_bad_queue_name_exits_2_with_a_message(cli: Cli, broker: Broker) -> None:
    result = await cli("enqueue", "no spaces!", "x")
    assert result.code == 2
    assert "not a queue name" in result.err
    assert "Traceback" not in result.err
    assert await broker.queues() == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--poll-interval", "0"], {}, "must be at least 0.05"),
        ([], {"RELAY_POLL_INTERVAL": "0"}, "RELAY_POLL_INTERVAL: must be at least 0.05"),
        (
            [],
            {"RELAY_KEEPALIVE_INTERVAL": "soon"},
            "RELAY_KEEPALIVE_INTERVAL: not a number, got soon",
        ),
    ],
    ids=["flag", "env", "env-number"],
)
async def test_server_settings_are_checked_before_starting(
    cli: Cli, args: list[str], env: dict[str, str], message: str
) -> None:
    result = await cli.raw(
        "--redis-url", DEAD_URL, "server", "--port", "0", *args, env=clean_env(**env)
    )
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


async def test_an_unreachable_redis_fails_cleanly(prefix: str) -> None:
    result = await Cli(DEAD_URL, prefix)("enqueue", Q, "x")
    assert_clean_failure(result)
    assert "unavailable" in result.err.lower()
    stats = await Cli(DEAD_URL, prefix)("stats")
    assert_clean_failure(stats)
    assert "unavailable" in stats.err.lower()


async def test_a_worker_with_an_unknown_handler_exits_2(cli: Cli) -> None:
    missing = await cli("worker", "--queue", Q, "--handler", "no_such_module_xyz:run")
    assert missing.code == 2
    assert "no_such_module_xyz" in missing.err
    assert "Traceback" not in missing.err
    no_attr = await cli("worker", "--queue", Q, "--handler", "handlers_for_tests:nope")
    assert no_attr.code == 2
    assert "nope" in no_attr.err
    assert "Traceback" not in no_attr.err


async def test_the_demo_worker_processes_jobs_and_stops_on_sigterm(
    cli: Cli, broker: Broker, tmp_path: Path
) -> None:
    await broker.enqueue_many(Q, [broker.spec(f"j{i}") for i in range(10)])
    argv = cli.argv(
        "worker", "--queue", Q, "--handler", "demo", "--demo-fail-rate", "0",
        "--demo-sleep-ms", "5",
    )  # fmt: skip
    async with running(argv, tmp_path) as worker:
        with trio.fail_after(15):
            while (await broker.stats(Q)).processed_total < 10:
                assert worker.proc.poll() is None, worker.err()
                await trio.sleep(0.05)
    out, err = worker.out(), worker.err()
    assert worker.proc.returncode == 0, err
    assert "worker stopped" in out
    assert "10 succeeded, 0 failed" in out
    assert "Traceback" not in err
    s = await broker.stats(Q)
    assert (s.ready, s.inflight, s.delayed, s.dlq, s.processed_total) == (0, 0, 0, 0, 10)


async def test_environment_variables_are_honoured(cli: Cli, broker: Broker) -> None:
    env = clean_env(RELAY_REDIS_URL=cli.url, RELAY_PREFIX=cli.prefix)
    result = await cli.raw("enqueue", Q, "from env", env=env)
    assert result.code == 0, result.err
    job_id = result.out.split()[0]
    assert (await broker.get_job(Q, job_id)).payload == b"from env"  # our prefix, our Redis
    stats = await cli.raw("stats", "--json", env=env)
    assert stats.code == 0, stats.err
    assert json.loads(stats.out)[0]["ready"] == 1
    # a flag beats the environment
    dead = await cli.raw("--redis-url", DEAD_URL, "stats", env=env)
    assert_clean_failure(dead)
    assert "unavailable" in dead.err.lower()


def keys_left(rdb: redis.Redis, prefix: str) -> list[str]:
    names = [k.decode() for k in rdb.scan_iter(match=f"{prefix}:*", count=1000)]
    return sorted(k for k in names if ":dedup:" not in k)


async def test_queue_delete_of_an_empty_queue(
    cli: Cli, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await broker.enqueue(Q, "done soon")
    claim = await broker.claim(Q, 1)
    assert await broker.ack(claim.jobs[0])
    await broker.enqueue("keep", "x")
    result = await cli("queue", "delete", Q)
    assert result.code == 0, result.err
    assert f"deleted queue '{Q}' (1 job)" in result.out  # the done job, kept with its result
    assert await broker.queues() == ["keep"]
    assert not [k for k in keys_left(rdb, prefix) if "{" + Q + "}" in k]


async def test_queue_delete_refuses_a_queue_with_jobs_without_force(
    cli: Cli, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await broker.enqueue_many(Q, [broker.spec(f"j{i}") for i in range(3)])
    before = keys_left(rdb, prefix)
    result = await cli("queue", "delete", Q)
    assert result.code == 4
    assert "still holds 3 job(s)" in result.err
    assert "--force" in result.err
    assert_clean_failure(result)
    assert await broker.queues() == [Q]
    assert (await broker.stats(Q)).ready == 3
    assert keys_left(rdb, prefix) == before


async def test_queue_delete_with_force_removes_every_key(
    cli: Cli, broker: Broker, rdb: redis.Redis, prefix: str
) -> None:
    await make_jobs_everywhere(broker)
    await broker.pause(Q)
    assert any("{" + Q + "}" in k for k in keys_left(rdb, prefix))
    result = await cli("queue", "delete", Q, "--force")
    assert result.code == 0, result.err
    assert f"deleted queue '{Q}' (7 jobs)" in result.out
    assert await broker.queues() == []
    assert keys_left(rdb, prefix) == []


async def make_jobs_everywhere(broker: Broker) -> None:
    """7 jobs of ``Q``: 3 ready (one with an idempotency key), 1 delayed, 1 in
    flight, 2 dead."""
    dead = await broker.enqueue_many(Q, [broker.spec("d1"), broker.spec("d2")])
    claimed = (await broker.claim(Q, 2)).jobs
    assert {j.id for j in claimed} == {r.id for r in dead}
    for job in claimed:
        await broker.nack(job, "boom", dead=True)
    await broker.enqueue(Q, "running")
    assert len((await broker.claim(Q, 1)).jobs) == 1
    await broker.enqueue_many(Q, [broker.spec("r1"), broker.spec("r2")])
    await broker.enqueue(Q, "keyed", idempotency_key="once")
    await broker.enqueue(Q, "later", delay_ms=60_000)
    s = await broker.stats(Q)
    assert (s.ready, s.delayed, s.inflight, s.dlq) == (3, 1, 1, 2)


async def test_queue_delete_of_an_unknown_queue_exits_1(cli: Cli, broker: Broker) -> None:
    result = await cli("queue", "delete", "nosuchqueue")
    assert result.code == 1
    assert "queue 'nosuchqueue' not found" in result.err
    assert_clean_failure(result)
    missing = await cli("queue")
    assert missing.code == 2  # an action is required
    assert "Traceback" not in missing.err
