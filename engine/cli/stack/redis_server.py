"""A local ``redis-server`` from Debian's package, started with append-only persistence.

SLA timers live in Redis; the run stack keeps an append-only file so that a restart of the
stack does not drop them (the ``cases`` topic can rebuild them, but that should be rare).
"""

from __future__ import annotations

from pathlib import Path

import redis

from engine.cli.stack import process

DEFAULT_PORT = 6379


def layout(home: Path) -> process.ServerFiles:
    return process.ServerFiles(home, "redis", data_dir="redis")


def ensure_binary() -> str:
    """The path of redis-server, installing Debian's package when we are root."""
    return process.debian_binary("redis-server", "redis-server",
                                 "or set REDIS_URL to an existing Redis")


def answers(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                         socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start(layout: process.ServerFiles, port: int, persistent: bool = True,
          timeout: float = 20.0) -> int:
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
