"""A single-node Apache Kafka (KRaft) broker, run from the official jars on Maven Central.

There is no Docker engine on the machines this project runs on, and a mock broker proves
nothing, so the local stack fetches ``org.apache.kafka:kafka_2.13`` with Maven once into a
cache folder and runs ``kafka.Kafka`` with plain ``java``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from engine.cli.stack import process
from engine.runtime.settings import Settings, scram_security

# Kafka 3.9.x is the last line that serves every old protocol version. Kafka 4.x removed
# the pre-2.1 request versions (KIP-896); aiokafka (under faust-streaming) is tested in its
# own CI only up to 2.8, so 4.x support is not something we may assume. 3.9.2 is the last
# 3.9 release on Maven Central; confluent-kafka >= 2.12 speaks to it and to 4.x alike.
KAFKA_VERSION = "3.9.2"
SCALA_VERSION = "2.13"
# The broker logs through slf4j; without a binding it would log nothing at all.
SLF4J_BINDING = ("org.slf4j", "slf4j-reload4j", "1.7.36")

DEFAULT_PORT = 9092
# 1 GiB is ample for a development broker and leaves the 2-core / 24 GiB machine room for
# workers; the log cleaner's dedupe buffer is shrunk below to fit the smaller heap.
HEAP = ("-Xms256m", "-Xmx1g")
# The JVM options of Kafka's own start script (bin/kafka-run-class.sh,
# KAFKA_JVM_PERFORMANCE_OPTS). G1's default pause goal is 200 ms: every request waits out a
# pause, so without these a broker pause landed straight in the dispatch p99.
JVM_PERFORMANCE = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                   "-XX:MaxInlineLevel=15")


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "griddispatch" / f"kafka-{KAFKA_VERSION}"


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>griddispatch.local</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>{bg}</groupId>
      <artifactId>{ba}</artifactId>
      <version>{bv}</version>
    </dependency>
  </dependencies>
</project>
"""


def ensure_jars(log: bool = True) -> Path:
    """The folder of broker jars, fetched with Maven on first use and reused afterwards."""
    target = cache_dir()
    libs = target / "libs"
    marker = target / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise process.StackError("Maven ('mvn') is needed once to fetch the Kafka broker jars; "
                                 "install it (Debian: apt-get install maven)")
    if shutil.which("java") is None:
        raise process.StackError("Java 17+ is needed to run the Kafka broker; "
                                 "install it (Debian: apt-get install openjdk-17-jre-headless)")
    target.mkdir(parents=True, exist_ok=True)
    pom = target / "pom.xml"
    group, artifact, version = SLF4J_BINDING
    pom.write_text(_POM.format(scala=SCALA_VERSION, kafka=KAFKA_VERSION, bg=group, ba=artifact,
                               bv=version))
    if log:
        print(f"fetching Apache Kafka {KAFKA_VERSION} broker jars with Maven into {libs} "
              "(first run only)", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise process.StackError("Maven could not fetch the Kafka jars:\n"
                                 + (result.stdout + result.stderr)[-3000:])
    marker.write_text(f"fetched in {time.monotonic() - started:.1f}s\n")
    if log:
        print(f"fetched Kafka jars in {time.monotonic() - started:.1f}s", flush=True)
    return libs


def layout(home: Path) -> process.ServerFiles:
    """One broker's files; its log4j configuration sits beside them (``log4j_file``)."""
    return process.ServerFiles(home, "kafka", data_dir="data", config_file="server.properties")


def log4j_file(files: process.ServerFiles) -> Path:
    return files.home / "log4j.properties"


@dataclass(frozen=True)
class Secrets:
    """The secure profile's two passwords: the operator's ``admin`` (SCRAM, the super user
    that applies topics and ACLs) and the controller's (PLAIN, on the controller listener
    only: KRaft keeps SCRAM credentials in its metadata, which the controller listener must
    reach first)."""

    admin: str
    controller: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(secrets.token_urlsafe(18), secrets.token_urlsafe(18))

    def admin_settings(self, bootstrap: str) -> Settings:
        """Client settings of the admin principal."""
        return Settings(kafka_bootstrap=bootstrap, kafka_extra=scram_security("admin",
                                                                              self.admin))


def secrets_file(layout: process.ServerFiles) -> Path:
    return layout.home / "secrets.json"


def saved_secrets(layout: process.ServerFiles) -> Secrets | None:
    """The secure profile's passwords, if this broker was formatted in it."""
    try:
        data = json.loads(secrets_file(layout).read_text(encoding="utf-8"))
        return Secrets(admin=str(data["admin"]), controller=str(data["controller"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def profile_secrets(layout: process.ServerFiles, secure: bool) -> Secrets | None:
    """The passwords to start with: the saved ones (the profile sticks to the storage it was
    formatted with), new ones for a new secure broker, or None for the plain profile."""
    saved = saved_secrets(layout)
    if saved is not None:
        return saved
    if not secure:
        return None
    if (layout.data / "meta.properties").exists():
        raise process.StackError(
            f"the broker in {layout.home} was formatted without the secure profile; stop the "
            f"stack and remove {layout.home} to start it secure (its topics are lost)")
    created = Secrets.generate()
    layout.home.mkdir(parents=True, exist_ok=True)
    path = secrets_file(layout)
    path.touch(mode=0o600)
    path.write_text(json.dumps({"admin": created.admin, "controller": created.controller}),
                    encoding="utf-8")
    return created


def _listeners(port: int, controller_port: int, secure: Secrets | None) -> str:
    if secure is None:
        return f"""listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"""
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    return f"""# The secure profile: SCRAM-SHA-512 for every client, ACLs enforced.
listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=CLIENT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config={scram} required username="admin" \
  password="{secure.admin}";
listener.name.controller.plain.sasl.jaas.config={plain} required username="controller" \
  password="{secure.controller}" user_controller="{secure.controller}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:controller
allow.everyone.if.no.acl.found=false"""


@dataclass(frozen=True)
class Quorum:
    """Where a node stands in its cluster: alone (the local stack), or one of the voters of
    a local multi-broker cluster (``kafka_cluster``), all formatted with one cluster id."""

    node_id: int = 1
    voters: str = ""  # "1@127.0.0.1:<port>,2@…"; empty: this node alone
    replicas: int = 1  # of the internal topics, and the ISR they need (replicas - 1, min 1)
    cluster: str = ""  # the cluster id to format with; empty: a new one


def server_properties(data_dir: Path, port: int, controller_port: int,
                      secure: Secrets | None = None, quorum: Quorum = Quorum()) -> str:
    voters = quorum.voters or f"{quorum.node_id}@127.0.0.1:{controller_port}"
    isr = max(1, quorum.replicas - 1)
    return f"""# Written by griddispatch stack: a KRaft broker + controller, node {quorum.node_id}.
process.roles=broker,controller
node.id={quorum.node_id}
{_listeners(port, controller_port, secure)}
controller.quorum.voters={voters}
log.dirs={data_dir}
# Internal topics: replicated across the cluster (one broker: they cannot be).
offsets.topic.replication.factor={quorum.replicas}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={quorum.replicas}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
# Topics are code (topics/*.yaml): a typo in a topic name must fail, not create a topic.
auto.create.topics.enable=false
num.partitions=3
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
"""


LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=INFO
"""


def _java(libs: Path, layout: process.ServerFiles, main: str, *args: str) -> list[str]:
    return ["java", *HEAP, *JVM_PERFORMANCE, "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j_file(layout)}",
            "-cp", f"{libs}/*", main, *args]


def cluster_id() -> str:
    """A random Kafka cluster id: a UUID as 22 characters of url-safe base64.

    Never one that starts with '-': the storage tool would read it as an option (1 start in
    64 failed so); Kafka's own ``Uuid.randomUuid`` draws again for the same reason.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def start(layout: process.ServerFiles, port: int, controller_port: int,
          timeout: float = 90.0, secure: Secrets | None = None) -> int:
    """Format storage (first time only), start the broker and wait until it answers.

    ``secure``: the secure profile (SASL/SCRAM, ACLs); the admin's credentials are written
    into the metadata when the storage is formatted, so it must be formatted with them."""
    proc = spawn(layout, port, controller_port, secure)
    settings = secure.admin_settings(f"127.0.0.1:{port}") if secure \
        else Settings(kafka_bootstrap=f"127.0.0.1:{port}")

    from engine.runtime.kafka import wait_for_broker

    process.wait_until(lambda: wait_for_broker(settings, 1.0), lambda: proc.poll() is None,
                       timeout, f"Kafka broker on port {port}", layout.log)
    return proc.pid


def spawn(layout: process.ServerFiles, port: int, controller_port: int,
          secure: Secrets | None = None, quorum: Quorum = Quorum()) -> subprocess.Popen[bytes]:
    """Format storage (first time only) and start the node, without waiting: the nodes of a
    cluster answer only once a majority of its controllers runs."""
    process.require_free(port, "the Kafka broker", "--kafka-port")
    process.require_free(controller_port, "the Kafka controller", "--kafka-port")
    libs = ensure_jars()
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(server_properties(layout.data, port, controller_port, secure,
                                               quorum))
    layout.config.chmod(0o600)  # it holds the secure profile's passwords
    log4j_file(layout).write_text(LOG4J)
    if not (layout.data / "meta.properties").exists():
        result = subprocess.run(
            _java(libs, layout, "kafka.tools.StorageTool", "format", "-t",
                  quorum.cluster or cluster_id(), "-c", str(layout.config),
                  *(("--add-scram", f"SCRAM-SHA-512=[name=admin,password={secure.admin}]")
                    if secure else ())),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise process.StackError("formatting KRaft storage failed:\n"
                                     + (result.stdout + result.stderr)[-3000:])
    return process.spawn(_java(libs, layout, "kafka.Kafka", str(layout.config)),
                         layout.log, layout.pid_file)


def answers(port: int, secure: Secrets | None = None) -> bool:
    from engine.runtime.kafka import wait_for_broker

    bootstrap = f"127.0.0.1:{port}"
    settings = secure.admin_settings(bootstrap) if secure else Settings(kafka_bootstrap=bootstrap)
    return wait_for_broker(settings, 2.0)
