"""`relay-trio demo` as a user runs it: everything up within seconds, Ctrl-C stops all."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import redis


def read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 20) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no {pattern!r} in {seen!r}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_is_live_within_seconds_and_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    monkeypatch.delenv("RELAY_REDIS_URL", raising=False)
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay_trio.cli", "demo", "--port", "0", "--rate", "100"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        redis_url = read_until(proc, r"Redis: (\S+) \(private")[1]
        dashboard = read_until(proc, r"Dashboard: (http://\S+/)")[1]
        with httpx.Client(timeout=5) as http:
            assert http.get(dashboard + "healthz").json() == {"status": "ok"}
            with http.stream("GET", dashboard + "api/stream") as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and '"processed_total":0,' not in line:
                        break  # the workers are processing the generated load
        assert time.monotonic() - began < 20
        proc.send_signal(signum)
        stopped = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - stopped < 6
        assert proc.stdout is not None
        assert "demo stopped" in proc.stdout.read()
        with pytest.raises(redis.exceptions.ConnectionError):  # the private Redis is gone
            redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
