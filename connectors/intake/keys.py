"""API keys of the intake: who may submit on which channel, and how fast.

The key file (``--keys FILE`` or ``$GRIDDISPATCH_INTAKE_KEYS``) stores only SHA-256 hashes::

    keys:
      - name: fixmystreet-yuhang      # who holds it: logs and rate limits use the name
        sha256: 3f0a...e9             # griddispatch intake hash-key prints a key and its hash
        channels: [open311]           # open311, hotline, gridapp, or report channels for
                                      # POST /api/v1/incidents (sensor, dept:<code>, ...); "*"
        rate_per_minute: 120          # optional, reports per minute (default 120)

Why a plain SHA-256 and not a password hash: keys are 256-bit random tokens we generate, so
there is nothing to brute-force; a slow hash would only slow every request. A leaked file
does not leak the keys.

Without a key file the intake accepts the development key ``dev-open311``, for the open311
channel only and only while it listens on a loopback address (the local stack); on any other
address it refuses to start, so a forgotten key file can never open a public intake.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.yamlfile import load_yaml, validate

DEV_KEY = "dev-open311"
ENV = "GRIDDISPATCH_INTAKE_KEYS"
DEFAULT_RATE = 120

log = logging.getLogger("griddispatch.intake")


class KeyRefused(Exception):
    """403: no key, an unknown key, or a key not allowed on this channel."""


class KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    channels: list[str] = Field(min_length=1)
    rate_per_minute: int = Field(default=DEFAULT_RATE, ge=1, le=1_000_000)


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry]


@dataclass(frozen=True)
class Client:
    name: str
    channels: frozenset[str]
    rate_per_minute: int

    def may(self, channel: str) -> bool:
        return "*" in self.channels or channel in self.channels


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "gd_" + secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Keys:
    def __init__(self, clients: dict[str, Client], *, development: bool = False) -> None:
        self.by_hash = clients
        self.development = development

    def check(self, presented: str | None, channel: str | None) -> Client:
        if not presented:
            raise KeyRefused("an api_key is required")
        client = self.by_hash.get(hash_key(presented))
        if client is None:
            raise KeyRefused("the api_key is not valid")
        if channel is not None and not client.may(channel):
            raise KeyRefused(f"this api_key may not submit on channel '{channel}'")
        return client

    @classmethod
    def load(cls, path: Path) -> Keys:
        """Raises ``FileProblems`` naming the file, line and field of a bad entry."""
        parsed = validate(load_yaml(path), KeyFile)
        return cls({entry.sha256: Client(entry.name, frozenset(entry.channels),
                                         entry.rate_per_minute) for entry in parsed.keys})

    @classmethod
    def for_server(cls, path: Path | None, host: str) -> Keys:
        """The key file, else the development key on loopback; ``ValueError`` otherwise."""
        if path is None and os.environ.get(ENV):
            path = Path(os.environ[ENV])
        if path is not None:
            return cls.load(path)
        if not is_loopback(host):
            raise ValueError(f"refusing to serve on {host} without API keys: pass --keys FILE "
                             f"or set {ENV} (see 'griddispatch intake hash-key'); without "
                             "keys the intake only listens on 127.0.0.1")
        log.warning("no API key file: accepting the development key '%s' for channel open311 "
                    "only, because the intake listens on loopback address %s", DEV_KEY, host)
        return cls({hash_key(DEV_KEY): Client("development", frozenset({"open311"}),
                                              DEFAULT_RATE)}, development=True)
