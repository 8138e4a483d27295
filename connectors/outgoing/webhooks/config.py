"""Which departments get webhooks, where, with which secret: the YAML file and its checks.

A department whose own system cannot read Kafka gives us an HTTPS endpoint instead; the
webhook worker POSTs each of its assignment and escalation records there. The file is read
once at start and checked completely (unknown departments, bad URLs, missing secrets) before
any connection is made, so a typo fails at once with its line instead of at 3 a.m.

```yaml
defaults:                      # optional; each department may override any of these
  timeout: 10s                 # per POST; a number is seconds (0.5), or 10s / 1m
  attempts: 8                  # POSTs per record before it is parked on webhooks.deadletter
  backoff: {first: 1s, factor: 2, max: 5m, jitter: 0.5}
departments:
  330110005.zhzf:
    url: https://zhzf.example.gov.cn/griddispatch/webhook
    secret_env: ZHZF_WEBHOOK_SECRET     # or secret: <literal>, for tests only
    topics: [assignments, escalations]  # default: both
```
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connectors.outgoing.webhooks.delivery import Backoff, backoff_delay, seconds
from engine.reference.departments import DEPARTMENT_CODE, DepartmentRegistry
from engine.yamlfile import FileProblem, FileProblems, load_yaml, validate

ENV_CONFIG = "GRIDDISPATCH_WEBHOOKS"
TopicKind = Literal["assignments", "escalations"]
ALL_TOPICS: tuple[TopicKind, ...] = ("assignments", "escalations")
MIN_SECRET_CHARS = 16


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(default=10.0, gt=0)
    attempts: int = Field(default=8, ge=1, le=100)
    backoff: Backoff = Backoff()

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: float | str) -> float:
        return seconds(value)


class DepartmentHook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2000)
    secret: str | None = Field(default=None, repr=False)
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout: float | None = Field(default=None, gt=0)
    attempts: int | None = Field(default=None, ge=1, le=100)
    backoff: Backoff | None = None
    topics: list[TopicKind] = Field(default_factory=lambda: list(ALL_TOPICS), min_length=1)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"'{value[:100]}' is not an http:// or https:// URL")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: float | str | None) -> float | None:
        return None if value is None else seconds(value)

    @model_validator(mode="after")
    def _one_secret(self) -> DepartmentHook:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of 'secret' or 'secret_env' (the name of an "
                             "environment variable that holds the secret)")
        return self


class WebhooksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Defaults = Defaults()
    departments: dict[str, DepartmentHook] = Field(min_length=1)


class Target(BaseModel):
    """One department's resolved settings: what the worker actually uses."""

    model_config = ConfigDict(frozen=True)

    department: str
    url: str
    secret: bytes = Field(repr=False)
    timeout: float
    attempts: int
    backoff: Backoff
    topics: tuple[TopicKind, ...]

    def worst_case_seconds(self) -> float:
        """How long one record can take before it is delivered or parked (for the poll limit)."""
        waits = sum(backoff_delay(n, self.backoff, 0.0) for n in range(1, self.attempts))
        return waits + self.attempts * self.timeout


def load_config(path: Path, departments: DepartmentRegistry,
                env: dict[str, str] | None = None) -> dict[str, Target]:
    """The file, checked against the department registry, secrets read from the environment."""
    env = dict(os.environ if env is None else env)
    doc = load_yaml(path)
    parsed = validate(doc, WebhooksFile)
    problems: list[FileProblem] = []
    targets: dict[str, Target] = {}
    for code, hook in parsed.departments.items():
        where = ("departments", code)
        if not _is_code(code):
            problems.append(doc.problem(where, f"'{code}' is not a department code "
                                               "(<county or township code>.<role>)"))
            continue
        if code not in departments:
            problems.append(doc.problem(where, f"unknown department '{code}': it is not in "
                                               "rules/reference/departments.yaml"))
            continue
        secret = hook.secret
        if hook.secret_env is not None:
            secret = env.get(hook.secret_env)
            if not secret:
                problems.append(doc.problem((*where, "secret_env"),
                                            f"department '{code}': environment variable "
                                            f"{hook.secret_env} is not set or empty"))
                continue
        if secret is None or len(secret) < MIN_SECRET_CHARS:
            problems.append(doc.problem(where, f"department '{code}': the secret must have at "
                                               f"least {MIN_SECRET_CHARS} characters (e.g. "
                                               "python -c 'import secrets; "
                                               "print(secrets.token_hex(32))')"))
            continue
        targets[code] = Target(
            department=code, url=hook.url, secret=secret.encode(),
            timeout=hook.timeout or parsed.defaults.timeout,
            attempts=hook.attempts or parsed.defaults.attempts,
            backoff=hook.backoff or parsed.defaults.backoff,
            topics=tuple(dict.fromkeys(hook.topics)))
    if problems:
        raise FileProblems(problems)
    return targets


def config_path(option: Path | None, env: dict[str, str] | None = None) -> Path:
    """``--config``, else $GRIDDISPATCH_WEBHOOKS; a clear error when neither is given."""
    env = dict(os.environ if env is None else env)
    if option is not None:
        return option
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG])
    raise FileProblems([FileProblem("webhooks", 0, f"no webhook configuration: pass --config "
                                                   f"FILE or set {ENV_CONFIG}")])


def _is_code(code: str) -> bool:
    return re.fullmatch(DEPARTMENT_CODE, code) is not None
