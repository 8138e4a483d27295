"""Where griddispatch finds Kafka, Redis, its rules and its topic specs.

Everything comes from the environment so that the same code runs against the local stack,
a test's private stack, or a production cluster without edits. Command-line options override
these per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


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
        env = dict(os.environ if env is None else env)
        extra = tuple(
            sorted(
                (key[len("GRIDDISPATCH_KAFKA_"):].lower().replace("_", "."), value)
                for key, value in env.items()
                if key.startswith("GRIDDISPATCH_KAFKA_")
            )
        )
        return cls(
            kafka_bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA),
            redis_url=env.get("REDIS_URL", DEFAULT_REDIS),
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
