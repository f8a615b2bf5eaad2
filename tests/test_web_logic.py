"""The dashboard's pure logic (web/logic.js), tested by Node's built-in test runner.

The page needs no Node.js; only these unit tests do. They use ``node`` from PATH,
else the Node.js that Playwright's wheel (a dev dependency) ships with its driver,
so the README's test command has it on any machine it installs on.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import playwright
import pytest

WEB = Path(__file__).resolve().parents[1] / "web"
BUNDLED = Path(playwright.__file__).parent / "driver" / "node"
NODE = shutil.which("node") or (str(BUNDLED) if BUNDLED.is_file() else None)


@pytest.mark.skipif(NODE is None, reason="no node on PATH, and none in Playwright's wheel")
def test_logic_js_unit_tests_pass() -> None:
    assert NODE is not None
    tests = sorted(str(p) for p in (WEB / "tests").glob("*.test.mjs"))
    assert tests, "no web/tests/*.test.mjs"
    result = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", *tests],
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
