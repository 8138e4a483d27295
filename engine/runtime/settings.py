"""Where griddispatch finds Kafka, Redis, its rules and its topic specs.

Everything comes from the environment so that the same code runs against the local stack,
a test's private stack, or a production cluster without edits. Command-line options override
these per call.

Without ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` the ports come from the local stack's
``ports.json`` when there is one: ``griddispatch up`` and ``stack up`` may run Kafka and Redis
on other ports than the defaults (``--kafka-port``, a taken 9092), and a command that then
fell back to 127.0.0.1:9092 would silently read and write another broker's topics. Decided
here, once, so that every command (``dept``, ``report``, ``timers``, ``topics``…) agrees.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# The local stack's folder, as ``griddispatch up`` / ``stack up`` choose it (engine/cli/
# stack_cmd.py: $GRIDDISPATCH_STACK_DIR, else .stack in the current directory).
STACK_DIR = ".stack"
# Written by ``LocalStack.up`` (engine/cli/stack/__init__.py): {"kafka": port, "redis": port,
# "mqtt": port, …}. Read here by name rather than through LocalStack: the runtime layer may not
# import the CLI's.
PORTS_FILE = "ports.json"


KAFKA_ENV = "GRIDDISPATCH_KAFKA_"


def kafka_extra_from_env(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``GRIDDISPATCH_KAFKA_SASL_USERNAME=x`` → ``("sasl.username", "x")``, sorted."""
    return tuple(sorted((key[len(KAFKA_ENV):].lower().replace("_", "."), value)
                        for key, value in env.items() if key.startswith(KAFKA_ENV)))


def kafka_extra_env(extra: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The inverse: the variables that give a child process these client settings."""
    return {KAFKA_ENV + key.upper().replace(".", "_"): value for key, value in extra}


def stack_security(stack_dir: Path) -> tuple[tuple[str, str], ...]:
    """The admin's SCRAM settings when the local stack's broker runs the secure profile
    (``stack up --secure``), so that commands run against it need no extra setup."""
    try:
        data = json.loads((stack_dir / "kafka" / "secrets.json").read_text(encoding="utf-8"))
        password = str(data["admin"])
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    return scram_security("admin", password)


def scram_security(user: str, password: str) -> tuple[tuple[str, str], ...]:
    """librdkafka settings of a SCRAM-SHA-512 principal (``Settings.kafka_extra``)."""
    return (("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.password", password),
            ("sasl.username", user), ("security.protocol", "SASL_PLAINTEXT"))


def stack_ports(stack_dir: Path) -> dict[str, int]:
    """The ports the local stack in ``stack_dir`` was started on; empty without a readable
    ``ports.json`` (no stack was ever started there: the plain defaults apply)."""
    try:
        data = json.loads((stack_dir / PORTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: port for name, port in data.items()
            if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536}


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = DEFAULT_KAFKA
    redis_url: str = DEFAULT_REDIS
    # Prepended to every topic name (and consumer group) so that tests and several
    # environments can share one cluster without seeing each other's records.
    topic_prefix: str = ""
    rules_dir: Path = Path("rules")
    topics_dir: Path = Path("topics")
    # Extra librdkafka settings for production clusters (security.protocol, sasl.*),
    # passed as GRIDDISPATCH_KAFKA_<NAME_WITH_UNDERSCORES>.
    kafka_extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default: the process environment).

        Kafka: ``$KAFKA_BOOTSTRAP_SERVERS``, else the port the local stack was started on
        (``$GRIDDISPATCH_STACK_DIR`` or ``.stack``, its ``ports.json``), else 127.0.0.1:9092;
        Redis likewise with ``$REDIS_URL``. An empty variable counts as unset.
        """
        env = dict(os.environ if env is None else env)
        extra = kafka_extra_from_env(env)
        kafka, redis = env.get("KAFKA_BOOTSTRAP_SERVERS"), env.get("REDIS_URL")
        stack_dir = Path(env.get("GRIDDISPATCH_STACK_DIR") or STACK_DIR)
        if not kafka and not any(key == "security.protocol" for key, _ in extra):
            extra = stack_security(stack_dir) or extra
        if not kafka or not redis:
            ports = stack_ports(stack_dir)
            if not kafka:
                kafka = f"127.0.0.1:{ports['kafka']}" if "kafka" in ports else DEFAULT_KAFKA
            if not redis:
                redis = (f"redis://127.0.0.1:{ports['redis']}/0" if "redis" in ports
                         else DEFAULT_REDIS)
        return cls(
            kafka_bootstrap=kafka,
            redis_url=redis,
            topic_prefix=env.get("GRIDDISPATCH_TOPIC_PREFIX", ""),
            rules_dir=Path(env.get("GRIDDISPATCH_RULES", "rules")),
            topics_dir=Path(env.get("GRIDDISPATCH_TOPICS", "topics")),
            kafka_extra=extra,
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with the given fields replaced; None values are ignored (unset CLI options)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
