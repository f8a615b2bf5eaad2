"""The README's "Tasks" quick start works as pasted: its task module, served by the
real ``relay-trio worker --tasks`` command, fed by its plain-Python snippet, on a
private Redis (the snippets use the default prefix)."""

from __future__ import annotations

import ast
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from relay_trio.embedded import EmbeddedRedis

README = Path(__file__).resolve().parents[1] / "README.md"
RELAY = Path(sys.executable).with_name("relay-trio")


def snippets() -> dict[str, str]:
    """The Python blocks of the quick start, keyed by what they are."""
    text = README.read_text().split("## Tasks: a quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found: dict[str, str] = {}
    for block in blocks:
        if block.startswith("# myapp/tasks.py"):
            found["tasks"] = block
        elif "FastAPI" in block:
            found["fastapi"] = block
        elif "relay_trio.sync" in block:
            found["sync"] = block
    assert set(found) == {"tasks", "fastapi", "sync"}, found.keys()
    return found


def test_the_fastapi_example_is_python() -> None:
    ast.parse(snippets()["fastapi"])


@pytest.mark.slow
def test_the_quick_start_runs_as_pasted(own_redis: EmbeddedRedis, tmp_path: Path) -> None:
    code = snippets()
    url = own_redis.url
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "tasks.py").write_text(code["tasks"])
    producer = code["sync"].replace("redis://127.0.0.1:6379/0", url)
    worker = subprocess.Popen(
        [str(RELAY), "worker", "--tasks", "myapp.tasks:tasks", "--redis-url", url],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", producer],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    assert done.returncode == 0, done.stderr + err
    assert "{'sent_to': 'a@example.com', 'attempt': 1}" in done.stdout
    assert worker.returncode == 0, err
