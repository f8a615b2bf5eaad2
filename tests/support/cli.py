"""Running the ``relay-trio`` command as a user runs it: a subprocess each."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
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


@dataclass
class Running:
    """A process started by :func:`running`; its output so far in files."""

    proc: trio.Process
    out_file: Path
    err_file: Path

    def out(self) -> str:
        return self.out_file.read_text()

    def err(self) -> str:
        return self.err_file.read_text()


@asynccontextmanager
async def running(
    argv: Sequence[str],
    directory: Path,
    *,
    merged: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[Running]:
    """``argv`` running (stdout and stderr in files under ``directory``, one file
    when ``merged``); when the block ends, SIGTERM and a wait of at most 15 s
    (killed if it is still there, also when the block failed)."""
    out_file = directory / f"out-{os.urandom(4).hex()}.txt"
    err_file = out_file if merged else out_file.with_name(out_file.name.replace("out-", "err-"))
    with out_file.open("wb") as out_f, err_file.open("ab") as err_f:
        proc = await trio.lowlevel.open_process(
            list(argv),
            env=env or clean_env(),
            cwd=cwd or TESTS_DIR.parent,
            stdout=out_f,
            stderr=out_f if merged else err_f,
        )
    try:
        yield Running(proc, out_file, err_file)
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            await proc.wait()
