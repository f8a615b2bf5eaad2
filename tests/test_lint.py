"""The code stays ruff- and mypy-clean (part of the test command, so CI enforces it),
and the tests keep their helpers in one place."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool_is_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_test_module_imports_another() -> None:
    """What tests share lives in tests/support; a test module imports no other
    test module (nor conftest)."""
    imports = re.compile(r"^(?:from|import) (test_\w+|conftest)\b", re.MULTILINE)
    offenders = {
        path.name: names
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if (names := imports.findall(path.read_text()))
    }
    assert offenders == {}
