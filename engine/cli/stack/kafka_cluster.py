"""A local Apache Kafka cluster of three KRaft nodes, each a broker and a controller.

The production shape the topic specs assume (replication factor 3, ``min.insync.replicas``
2) on one machine, from the same jars and configuration as the single broker
(``kafka_broker``): what the chaos suite kills a broker of, and what the benchmarks measure
replication on. Plain listeners: the secure profile is a listener setting, tested on the
single broker; this cluster tests replication and leader failover.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.cli.stack import kafka_broker, process
from engine.runtime.settings import Settings

NODES = 3


@dataclass
class LocalCluster:
    """Three nodes under ``home`` (``node-1`` …), on free ports chosen at construction."""

    home: Path
    ports: list[int] = field(default_factory=list)
    controllers: list[int] = field(default_factory=list)
    cluster: str = field(default_factory=kafka_broker.cluster_id)

    def __post_init__(self) -> None:
        if not self.ports or not self.controllers:
            free = process.free_ports(2 * NODES)
            self.ports = self.ports or free[:NODES]
            self.controllers = self.controllers or free[NODES:]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def layout(self, node: int) -> process.ServerFiles:
        return kafka_broker.layout(self.home / f"node-{node}")

    def quorum(self, node: int) -> kafka_broker.Quorum:
        voters = ",".join(f"{n}@127.0.0.1:{port}"
                          for n, port in enumerate(self.controllers, start=1))
        return kafka_broker.Quorum(node_id=node, voters=voters, replicas=NODES,
                                   cluster=self.cluster)

    def start(self, timeout: float = 120.0) -> None:
        """Every node, then wait until all of them are brokers of the cluster."""
        procs = [self._spawn(node) for node in range(1, NODES + 1)]
        self._wait(procs, NODES, timeout)

    def start_node(self, node: int, timeout: float = 120.0) -> None:
        """``node`` again after it was killed, once it answers on its own port.

        Its ports may stay taken for a while: the killed node's accepted connections linger
        in FIN_WAIT2 until their clients close them, and a listener cannot bind meanwhile."""
        ports = (self.ports[node - 1], self.controllers[node - 1])
        deadline = time.monotonic() + 60
        while not all(map(process.port_is_free, ports)) and time.monotonic() < deadline:
            time.sleep(0.5)
        proc = self._spawn(node)
        process.wait_until(lambda: kafka_broker.answers(ports[0]), lambda: proc.poll() is None,
                           timeout, f"Kafka node {node} on port {ports[0]}",
                           self.layout(node).log)

    def kill_node(self, node: int) -> None:
        """kill -9: no controlled shutdown, leadership moves only when the session expires."""
        process.kill(self.layout(node).pid_file)

    def stop(self) -> None:
        for node in range(1, NODES + 1):
            process.stop(self.layout(node).pid_file)

    def _spawn(self, node: int) -> subprocess.Popen[bytes]:
        return kafka_broker.spawn(self.layout(node), self.ports[node - 1],
                                  self.controllers[node - 1], quorum=self.quorum(node))

    def _wait(self, procs: list[subprocess.Popen[bytes]], brokers: int, timeout: float) -> None:
        from engine.runtime import kafka

        def registered() -> bool:
            try:
                return kafka.broker_count(kafka.admin_client(
                    Settings(kafka_bootstrap=self.bootstrap)), Settings(), 2.0) >= brokers
            except kafka.KafkaUnavailable:
                return False

        process.wait_until(registered, lambda: all(p.poll() is None for p in procs), timeout,
                           f"{brokers} Kafka brokers on ports {self.ports}",
                           self.layout(1).log)
