"""mypy checks a task's arguments where it is enqueued: ``Task`` carries the
function's parameters (a ParamSpec) to ``enqueue``, ``enqueue_sync``, ``payload``
and ``with_options(...).enqueue``, and ``RelayClient`` is an ``AsyncProducer``.

One strict mypy run over a snippet: every line marked ``# error`` must be
reported, and no other line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = """
from __future__ import annotations

from relay_trio.client import RelayClient
from relay_trio.tasks import AsyncProducer, SyncProducer, Task, TaskRegistry

tasks = TaskRegistry()


@tasks.task("math", timeout=5, max_retries=2)
def add(a: int, b: int) -> int:
    return a + b


@tasks.task("greetings", name="greet")
async def greet(name: str, *, loud: bool = False) -> str:
    return name.upper() if loud else name


def client_is_a_producer(client: RelayClient) -> AsyncProducer:
    return client


async def good(client: AsyncProducer, sync_client: SyncProducer) -> None:
    total: int = add(1, 2)
    text: str = await greet("x", loud=True)
    job_id: str = await add.enqueue(client, 1, 2)
    job_id = add.enqueue_sync(sync_client, 1, b=2)
    bound = greet.with_options(delay_ms=5, idempotency_key="k")
    job_id = await bound.enqueue(client, "x", loud=True)
    job_id = bound.with_options(priority=3).enqueue_sync(sync_client, name="y")
    payload: bytes = add.payload(1, b=2)
    same: Task[[int, int], int] = add
    print(total, text, job_id, payload, same)


async def bad(client: AsyncProducer, sync_client: SyncProducer) -> None:
    await add.enqueue(client, "x", 3)  # error
    add.enqueue_sync(sync_client, 1)  # error
    await greet.with_options(priority=1).enqueue(client, "x", loud="yes")  # error
    greet.with_options(prio=1)  # error
    greet.with_options(delay_ms="soon")  # error
    add.payload(1, 2, 3)  # error
    wrong: str = add(1, 2)  # error
    print(wrong)
"""


@pytest.mark.slow
def test_mypy_checks_task_arguments_at_enqueue(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--config-file",
        str(config),
        "--follow-imports=silent",  # only the snippet's own errors
        "--cache-dir",
        str(tmp_path / "cache"),
        "--show-error-codes",
        "--no-pretty",
        str(snippet),
    ]
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    reported = {
        int(m.group(1)) for m in re.finditer(r"^snippet\.py:(\d+): error:", output, re.MULTILINE)
    }
    expected = {
        number for number, line in enumerate(SNIPPET.splitlines(), 1) if line.endswith("# error")
    }
    assert result.returncode == 1, output
    assert reported == expected, output
    assert 'Argument 2 to "enqueue" of "BoundTask" has incompatible type "str"' in output, output
