"""A local Mosquitto MQTT broker from Debian's package, for the sensor channel.

Sensors (smoke, gas, water level, manhole covers) publish alarms over MQTT, not Kafka: they
are small devices on flaky links, and MQTT's QoS 1 with persistent sessions is what their
firmware speaks. The stack runs Mosquitto on loopback with anonymous access, which is safe
only because nothing off this machine can reach it; production brokers need TLS and accounts.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from engine.cli.stack import process

DEFAULT_PORT = 1883
# Debian installs the broker in /usr/sbin, which is not on a normal user's PATH.


def layout(home: Path) -> process.ServerFiles:
    return process.ServerFiles(home, "mosquitto", data_dir="mosquitto",
                               config_file="mosquitto.conf")


def ensure_binary() -> str:
    """The path of ``mosquitto``, installing Debian's package when we are root."""
    return process.debian_binary("mosquitto", "mosquitto",
                                 "or set MQTT_URL to an existing broker")


def config_text(data_dir: Path, port: int, persistent: bool) -> str:
    """Loopback only and anonymous: the listener line is what keeps this safe."""
    lines = [
        "# Written by griddispatch stack: a loopback-only development MQTT broker.",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        # Persistence keeps QoS 1 messages queued for the bridge's persistent session
        # across a restart of the stack; the tests run without it.
        f"persistence {'true' if persistent else 'false'}",
        f"persistence_location {data_dir}/",
        "log_dest stdout",
        "log_type error", "log_type warning", "log_type notice", "log_type information",
        "connection_messages true",
    ]
    if os.geteuid() == 0:
        # Started as root, Mosquitto switches to the 'mosquitto' user, which cannot write
        # our data folder; a loopback development broker keeps the user that started it.
        lines.append(f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


# MQTT 3.1.1 CONNECT with clean session, keep-alive 10 s and an empty client id (the
# broker assigns one), then DISCONNECT: enough to prove the broker speaks MQTT.
_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 0])
_DISCONNECT = bytes([0xE0, 0])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when an MQTT broker on the port accepts a connection (CONNACK return code 0)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(_CONNECT)
            reply = sock.recv(4)
            sock.sendall(_DISCONNECT)
    except OSError:
        return False
    return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0


def start(layout: process.ServerFiles, port: int, persistent: bool = True,
          timeout: float = 20.0) -> int:
    process.require_free(port, "the MQTT broker (mosquitto)", "--mqtt-port")
    binary = ensure_binary()
    layout.data.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(config_text(layout.data, port, persistent))
    proc = process.spawn([binary, "-c", str(layout.config)], layout.log, layout.pid_file)
    process.wait_until(lambda: answers(port), lambda: proc.poll() is None, timeout,
                       f"Mosquitto on port {port}", layout.log)
    return proc.pid
