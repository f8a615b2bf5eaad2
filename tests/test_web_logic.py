"""The dashboard's pure logic (web/logic.js), tested by Node's built-in test runner.

The page needs no Node.js; only these unit tests do. Without ``node`` on PATH the
test is skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not on PATH (needed only for these unit tests)")
def test_logic_js_unit_tests_pass() -> None:
    assert NODE is not None
    tests = sorted(str(p) for p in (WEB / "tests").glob("*.test.mjs"))
    assert tests, "no web/tests/*.test.mjs"
    result = subprocess.run(
        [NODE, "--test", *tests],
        cwd=WEB.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "# fail 0" in output, output
    passed = [line for line in output.splitlines() if line.startswith("# pass ")]
    assert passed and int(passed[-1].split()[-1]) > 0, output
