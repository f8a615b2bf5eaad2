"""Running the ``relay-trio`` command as a user runs it: a subprocess each."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import trio

TESTS_DIR = Path(__file__).resolve().parents[1]
Q = "clitest"
HEX32 = re.compile(r"[0-9a-f]{32}")
DEAD_URL = "redis://127.0.0.1:1/0"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any RELAY_* setting, tests/ on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    url: str
    prefix: str

    async def raw(self, *args: str, env: dict[str, str] | None = None) -> Result:
        with trio.fail_after(30):
            done = await trio.run_process(
                [sys.executable, "-m", "relay_trio.cli", *args],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env or clean_env(),
                cwd=TESTS_DIR.parent,
            )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    async def __call__(self, *args: str) -> Result:
        return await self.raw("--redis-url", self.url, "--prefix", self.prefix, *args)

    def argv(self, *args: str) -> list[str]:
        base = [sys.executable, "-m", "relay_trio.cli", "--redis-url", self.url]
        return [*base, "--prefix", self.prefix, *args]
