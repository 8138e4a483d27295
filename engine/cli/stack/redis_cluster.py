"""A local Redis Cluster of three primaries, from Debian's ``redis-server`` and ``redis-cli``.

What a province's timer index would run on (the sixteen timer shards spread over the
primaries by their hash tags), on one machine: the tests prove claim, fencing and rebuild on
it, the benchmarks can measure it. No replicas: failover is Redis's own business and the
index is rebuilt from Kafka when a primary's data is lost.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis

from engine.cli.stack import process, redis_server

NODES = 3


@dataclass
class LocalRedisCluster:
    """Three primaries under ``home`` (``node-1`` …), on free ports chosen at construction."""

    home: Path
    ports: list[int] = field(default_factory=list)
    bus_ports: list[int] = field(default_factory=list)  # node to node (default: port + 10000)

    def __post_init__(self) -> None:
        if not self.ports or not self.bus_ports:
            free = process.free_ports(2 * NODES)
            self.ports = self.ports or free[:NODES]
            self.bus_ports = self.bus_ports or free[NODES:]

    @property
    def url(self) -> str:
        """``REDIS_URL`` for it: any node, the client learns the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def layout(self, node: int) -> process.ServerFiles:
        return process.ServerFiles(self.home / f"node-{node}", "redis", data_dir="redis")

    def start(self, timeout: float = 60.0) -> None:
        """Every node, the slots shared among them, then wait until the cluster is ``ok``."""
        binary = redis_server.ensure_binary()
        procs = []
        for node, port in enumerate(self.ports, start=1):
            files = self.layout(node)
            files.data.mkdir(parents=True, exist_ok=True)
            procs.append(process.spawn(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(files.data),
                 "--daemonize", "no", "--save", "", "--appendonly", "no",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--cluster-port", str(self.bus_ports[node - 1]),
                 "--cluster-node-timeout", "2000"], files.log, files.pid_file))
        for node, (port, proc) in enumerate(zip(self.ports, procs, strict=True), start=1):
            process.wait_until(partial(redis_server.answers, port),
                               partial(_alive, proc), timeout,
                               f"Redis node {node} on port {port}", self.layout(node).log)
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False)
        if created.returncode != 0:
            raise process.StackError(f"redis-cli --cluster create failed: {created.stdout}"
                                     f"{created.stderr}")
        process.wait_until(self._ok, lambda: all(p.poll() is None for p in procs), timeout,
                           f"the Redis cluster on ports {self.ports}", self.layout(1).log)

    def _ok(self) -> bool:
        for port in self.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    def stop(self) -> None:
        for node in range(1, NODES + 1):
            process.stop(self.layout(node).pid_file)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None
