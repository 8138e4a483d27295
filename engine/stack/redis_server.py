"""A local ``redis-server`` from Debian's package, started with append-only persistence.

SLA timers live in Redis; the run stack keeps an append-only file so that a restart of the
stack does not drop them (the ``cases`` topic can rebuild them, but that should be rare).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from engine.stack import process

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisLayout:
    home: Path

    @property
    def data(self) -> Path:
        return self.home / "redis"

    @property
    def log(self) -> Path:
        return self.home / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"


def ensure_binary() -> str:
    """The path of redis-server, installing Debian's package when we are root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise process.StackError(
            "redis-server is not installed; install Debian's package with "
            "'sudo apt-get install redis-server' (or set REDIS_URL to an existing Redis)")
    print("installing Debian's redis-server package (first run only)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise process.StackError(f"'{' '.join(argv)}' failed:\n{result.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if not found:
        raise process.StackError("redis-server is still missing after installing the package")
    return found


def answers(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                         socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start(layout: RedisLayout, port: int, persistent: bool = True, timeout: float = 20.0) -> int:
    process.require_free(port, "Redis", "--redis-port")
    binary = ensure_binary()
    layout.data.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(layout.data),
            "--daemonize", "no", "--protected-mode", "yes", "--save", ""]
    argv += ["--appendonly", "yes" if persistent else "no"]
    proc = process.spawn(argv, layout.log, layout.pid_file)
    process.wait_until(lambda: answers(port), lambda: proc.poll() is None, timeout,
                       f"Redis on port {port}", layout.log)
    return proc.pid
