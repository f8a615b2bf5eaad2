"""A real Sentinel setup for the tests: one master, one replica, one sentinel.

All three are ``redis-server`` processes from the binary the suite uses
(:func:`relay_trio.embedded.find_redis_server`), on free ports of 127.0.0.1,
each with its working directory and log in one temporary directory; nothing is
persisted. The sentinel watches service :data:`SERVICE` with a quorum of 1,
``down-after-milliseconds`` 1000, ``failover-timeout`` 5000 and
``parallel-syncs`` 1, so a master killed with SIGKILL is replaced by the
replica within a few seconds. :func:`sentinel_setup` yields it once the
sentinel knows the master and the replica, and the replica is in sync; on exit
every process is killed and reaped and the directory removed.

With ``password`` the master and the replica require it (and replicate with
it), written to config files, never on a command line.

:data:`needs_sentinel` is the mark a module whose tests start such a setup may
set as its ``pytestmark``: without a ``redis-server`` binary that runs a
sentinel as used here (Redis 5 or newer: ``replicaof``, ``SENTINEL REPLICAS``)
its tests skip, saying why; in CI (``CI`` set) they run, and fail on what is
missing, rather than skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from relay_trio._errors import EmbeddedRedisError
from relay_trio.embedded import _free_port, _pdeathsig_preexec, _tail, find_redis_server

SERVICE = "svc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
PORT_ATTEMPTS = 5
MIN_VERSION = (5, 0)
"""``replicaof`` and ``SENTINEL REPLICAS`` (the setup uses both) came with Redis 5."""


def sentinel_unsupported() -> str | None:
    """Why this machine cannot start a :class:`SentinelSetup` (no ``redis-server``,
    or one too old for it), or None."""
    try:
        binary = find_redis_server()
    except EmbeddedRedisError as exc:
        return f"no redis-server binary ({exc})"
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary} --version failed ({exc})"
    match = re.search(r"\bv=(\d+)\.(\d+)", out)
    if match is None:
        return f"{binary} --version does not say its version: {out.strip()[:80]!r}"
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_VERSION:
        return f"{binary} is Redis {version[0]}.{version[1]}; the sentinel setup needs 5.0+"
    return None


_UNSUPPORTED = sentinel_unsupported()
needs_sentinel = pytest.mark.skipif(
    _UNSUPPORTED is not None and not os.environ.get("CI"),  # in CI: run, and fail
    reason=f"no Redis Sentinel for these tests: {_UNSUPPORTED}",
)


@dataclass(eq=False)
class SentinelSetup:
    """The running processes (``master``, ``replica``, ``sentinel``) and their ports."""

    tmp: Path
    password: str | None = field(default=None, repr=False)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, db: int = 0, *, service: str = SERVICE) -> str:
        """The ``redis+sentinel://`` URL of the service."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+sentinel://{auth}127.0.0.1:{self.ports['sentinel']}/{service}/{db}"

    def node_url(self, role: str) -> str:
        """A plain ``redis://`` URL of one node (``master``, ``replica``, ``sentinel``)."""
        auth = f":{quote(self.password, safe='')}@" if self.password and role != "sentinel" else ""
        return f"redis://{auth}127.0.0.1:{self.ports[role]}/0"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.node_url(role), socket_timeout=2, socket_connect_timeout=2)

    def master_address(self) -> tuple[str, int] | None:
        """What the sentinel answers for the service's master (None: it has none)."""
        with self.client("sentinel") as sentinel:
            reply = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else host), int(port)

    def kill(self, role: str) -> None:
        """SIGKILL one node (no goodbye, no save) and reap it."""
        proc = self.procs[role]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_for_promotion(self, timeout: float = 20.0) -> float:
        """Wait until the sentinel names the replica as the master and the replica
        says it is one; return how long that took (seconds)."""
        start = time.monotonic()
        want = ("127.0.0.1", self.ports["replica"])
        while time.monotonic() - start < timeout:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.master_address() == want:
                    with self.client("replica") as replica:
                        if replica.info("replication").get("role") == "master":
                            return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(
            f"no promotion within {timeout}s; sentinel log:\n{self.log('sentinel')}"
        )

    def log(self, role: str) -> str:
        return _tail(self.tmp / role / "redis.log", 40)

    def switched_at(self) -> float | None:
        """When the sentinel last switched the service to a new master (its
        ``+switch-master`` log line), as a ``time.time()``; None if it never did.
        From then on it names the new master to clients; before, it names the
        old one or none."""
        lines = (self.tmp / "sentinel" / "redis.log").read_text(errors="replace").splitlines()
        for line in reversed(lines):
            # 18686:X 01 Dec 2026 07:50:56.889 # +switch-master svc 127.0.0.1 1 127.0.0.1 2
            match = _LOG_LINE.match(line)
            if match and match.group(2) == f"+switch-master {SERVICE} ":
                stamp, _, millis = match.group(1).partition(".")
                local = time.strptime(stamp, "%d %b %Y %H:%M:%S")  # Redis logs local time
                return time.mktime(local) + int(millis) / 1000
        return None

    # -- starting and stopping ---------------------------------------------------

    def _start(self, role: str, conf_lines: list[str], extra: list[str]) -> None:
        home = self.tmp / role
        home.mkdir(exist_ok=True)  # again on a retry
        conf = home / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text("".join(line + "\n" for line in conf_lines))
        log = home / "redis.log"
        log.unlink(missing_ok=True)  # a fresh log for each attempt
        port = self.ports[role]
        args = [find_redis_server(), str(conf), *extra]
        args += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(home)]
        args += ["--daemonize", "no", "--loglevel", "notice", "--logfile", str(log)]
        with open(log, "ab") as out:
            self.procs[role] = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )

    def _launch(
        self,
        role: str,
        conf_lines: list[str],
        extra: list[str],
        ready: Callable[[], object],
        timeout: float,
    ) -> None:
        """Start ``role`` on a free port and wait until ``ready``. A port found free
        may be taken before the process binds it (another test's server, another
        suite on the machine): then again on another port, as ``EmbeddedRedis``."""
        for _ in range(PORT_ATTEMPTS):
            self.ports[role] = _free_port()
            self._start(role, conf_lines, extra)
            try:
                self._wait(ready, role, timeout)
                return
            except _PortTaken:
                continue
        raise RuntimeError(f"{role}: no free port in {PORT_ATTEMPTS} attempts")

    def start(self) -> None:
        data = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
        if self.password:
            data += [
                f"requirepass {_quoted(self.password)}",
                f"masterauth {_quoted(self.password)}",
            ]
        self._launch("master", data, [], lambda: self.client("master").ping(), 10)
        # in sync before the sentinel starts: its first INFO of the master lists the
        # replica (the next comes 10 s later)
        replicaof = ["--replicaof", "127.0.0.1", str(self.ports["master"])]
        self._launch("replica", data, replicaof, self._in_sync, 15)
        sentinel = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.ports['master']} 1",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            sentinel.append(f"sentinel auth-pass {SERVICE} {_quoted(self.password)}")
        self._launch("sentinel", sentinel, ["--sentinel"], self._sentinel_ready, 15)

    def _in_sync(self) -> bool:
        with self.client("replica") as replica:
            info = replica.info("replication")
        return bool(
            info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0
        )

    def _sentinel_ready(self) -> bool:
        if self.master_address() != ("127.0.0.1", self.ports["master"]):
            return False
        with self.client("sentinel") as sentinel:
            replicas = sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE)
        for entry in replicas:
            fields = (
                entry
                if isinstance(entry, dict)
                else dict(zip(entry[::2], entry[1::2], strict=True))
            )
            fields = {_text(k): _text(v) for k, v in fields.items()}
            if (
                fields.get("port") == str(self.ports["replica"])
                and "s_down" not in fields.get("flags", "")
                and fields.get("master-link-status") == "ok"
            ):
                return True
        return False

    def _wait(self, check: object, role: str, timeout: float) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[role]
            if proc.poll() is not None:
                log = self.log(role)
                if "already in use" in log:
                    raise _PortTaken(role)
                raise RuntimeError(f"{role} exited ({proc.returncode}); log:\n{log}")
            with contextlib.suppress(redis.RedisError, OSError):
                if check():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{role} not ready within {timeout}s; log:\n{self.log(role)}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


class _PortTaken(Exception):
    """The process exited at once: its port was taken after it was found free."""


_LOG_LINE = re.compile(r"\d+:X (\d\d \w{3} \d{4} [\d:]{8}\.\d{3}) [#*.-] (\+[\w-]+ \S+ )")


def _quoted(value: str) -> str:
    """A config-file string: every byte but letters and digits as \\xHH."""
    return (
        '"'
        + "".join(
            chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}"
            for b in value.encode()
        )
        + '"'
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def sentinel_setup(*, password: str | None = None) -> Iterator[SentinelSetup]:
    """A master, a replica and a sentinel for the block (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="relay-sentinel-") as tmp:
        setup = SentinelSetup(Path(tmp), password=password)
        try:
            setup.start()
            yield setup
        finally:
            setup.stop()


__all__ = [
    "DOWN_AFTER_MS",
    "SERVICE",
    "SentinelSetup",
    "needs_sentinel",
    "sentinel_setup",
    "sentinel_unsupported",
]
