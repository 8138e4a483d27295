"""The project's own stack: up, status, down, and what happens when a port is taken."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.cli.stack import LocalStack, StackError, StackPorts, process

pytestmark = pytest.mark.integration


def _ports() -> StackPorts:
    return StackPorts(kafka=process.free_port(), kafka_controller=process.free_port(),
                      redis=process.free_port(), mqtt=process.free_port())


def test_up_status_down_leaves_no_process_behind(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "stack")
    statuses = stack.up(_ports(), persistent_redis=True)
    try:
        assert [(s.name, s.answering) for s in statuses] == [("kafka", True), ("redis", True),
                                                             ("mqtt", True)]
        pids = [s.pid for s in statuses]
        assert all(pids)
        again = stack.up(_ports())  # a second up keeps what runs
        assert [s.pid for s in again] == pids
        assert (stack.home / "redis" / "appendonlydir").exists()
    finally:
        stopped = stack.down()
    assert stopped == ["mqtt", "redis", "kafka"]
    assert not any(process.pid_alive(pid) for pid in pids if pid)
    assert [s.running for s in stack.status()] == [False, False, False]
    assert stack.down() == []


def test_taken_port_gives_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = StackPorts(kafka=taken, kafka_controller=process.free_port(),
                           redis=process.free_port(), mqtt=process.free_port())
        stack = LocalStack(tmp_path / "stack")
        with pytest.raises(StackError, match=f"port {taken} on 127.0.0.1 is already in use"):
            stack.up(ports)
    assert [s.running for s in stack.status()] == [False, False, False]
