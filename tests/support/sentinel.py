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
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis

from relay_trio.embedded import _free_port, _pdeathsig_preexec, _tail, find_redis_server

SERVICE = "svc"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


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

    # -- starting and stopping ---------------------------------------------------

    def _start(self, role: str, conf_lines: list[str], extra: list[str]) -> None:
        home = self.tmp / role
        home.mkdir()
        conf = home / "redis.conf"
        conf.touch(mode=0o600)
        conf.write_text("".join(line + "\n" for line in conf_lines))
        port = self.ports[role]
        args = [find_redis_server(), str(conf), *extra]
        args += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(home)]
        args += ["--daemonize", "no", "--loglevel", "notice", "--logfile", str(home / "redis.log")]
        with open(home / "redis.log", "ab") as out:
            self.procs[role] = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=home,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(),
            )

    def start(self) -> None:
        for role in ("master", "replica", "sentinel"):
            self.ports[role] = _free_port()
        data = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]
        if self.password:
            data += [
                f"requirepass {_quoted(self.password)}",
                f"masterauth {_quoted(self.password)}",
            ]
        self._start("master", data, [])
        self._wait(lambda: self.client("master").ping(), "master", 10)
        self._start("replica", data, ["--replicaof", "127.0.0.1", str(self.ports["master"])])
        # in sync before the sentinel starts: its first INFO of the master lists the
        # replica (the next comes 10 s later)
        self._wait(self._in_sync, "replica", 15)
        sentinel = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.ports['master']} 1",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            sentinel.append(f"sentinel auth-pass {SERVICE} {_quoted(self.password)}")
        self._start("sentinel", sentinel, ["--sentinel"])
        self._wait(self._sentinel_ready, "sentinel", 15)

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
                raise RuntimeError(f"{role} exited ({proc.returncode}); log:\n{self.log(role)}")
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


__all__ = ["DOWN_AFTER_MS", "SERVICE", "SentinelSetup", "sentinel_setup"]
