"""``make run`` (``griddispatch up --demo --prometheus --secure``) from start to a clean stop.

The whole engine on its own free ports and stack folder, under the secure broker profile
(each process as its own principal, only what the ACLs allow): within three minutes the demo must
have produced assignments and escalations that the workers' own metrics show, every
``/metrics`` must answer, and SIGTERM must stop every process it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.stack import LocalStack
from engine.cli.stack.process import free_port, port_is_free
from tests.integration.workers import REPO, sample, scrape, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.skipif(
    bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")),
    reason="make run starts its own stack; this run points at an external Kafka")]


def free_block(size: int) -> int:
    """A base port with ``size`` free ports after it."""
    for _ in range(50):
        base = free_port()
        if base + size < 65000 and all(port_is_free(base + i) for i in range(size)):
            return base
    raise AssertionError("no block of free ports")


def test_up_demo_shows_assignments_and_escalations_then_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    metrics_base, intake, kafka = free_block(5), free_port(), free_block(2)
    prometheus, console = free_port(), free_port()
    argv = [sys.executable, "-m", "engine", "up", "--demo", "--prometheus", "--secure",
            "--dir", str(home),
            "--kafka-port", str(kafka), "--redis-port", str(free_port()),
            "--mqtt-port", str(free_port()), "--prometheus-port", str(prometheus),
            "--metrics-base", str(metrics_base), "--intake-port", str(intake),
            "--console-port", str(console), "--demo-rate", "3"]
    out = tmp_path / "up.out"
    with out.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    route, timers = metrics_base + 1, metrics_base + 2
    try:
        wait_for(lambda: proc.poll() is not None or "griddispatch is up" in out.read_text(),
                 120, "griddispatch up")
        assert proc.poll() is None, out.read_text()[-3000:]
        wait_for(lambda: (sample(route, "griddispatch_route_records_total",
                                 outcome="assigned") or 0) > 0, 90, "assignments")
        wait_for(lambda: _escalations(timers) > 0 or proc.poll() is not None, 150,
                 "escalations")
        assert proc.poll() is None, out.read_text()[-3000:]
        for port in (metrics_base, route, timers, metrics_base + 4):
            assert scrape(port), f"/metrics on {port} does not answer"
        assert "griddispatch_intake_requests_total" in (
            scrape_path(intake, "/metrics") or "")
        wait_for(lambda: scrape_path(console, "/login") is not None, 60, "the console")
        assert "基层治理指挥平台" in (scrape_path(console, "/login") or "")
        # Prometheus scrapes exactly the six processes up started, all of them up (a scrape
        # every 15 s; on this shared machine's slow hours a first scrape can time out).
        try:
            wait_for(lambda: _up_targets(prometheus) == {1.0: 6}, 150,
                     "Prometheus scraping the six processes, all up")
        except AssertionError:
            print(scrape_path(prometheus, "/api/v1/query?query=up"))
            raise
        # the summary refreshes every 15 s when not on a terminal: wait for one that shows both
        wait_for(lambda: _summary_shows_work(out.read_text()), 60, "the summary with work")
        screen = out.read_text()
        assert "each process runs as its own principal" in screen
        logs = "".join(p.read_text(errors="replace") for p in (home / "logs").glob("*.log"))
        assert "AUTHORIZATION" not in logs.upper(), "a process was refused by the ACLs"
        # the console and its demo users, one per role, with the passwords to sign in
        assert f"http://127.0.0.1:{console}/" in screen
        for user in ("county", "wuchang", "zhzf", "viewer"):
            assert f"console user {user}" in screen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    text = out.read_text()
    assert code == 0, text[-3000:]
    assert "stopped: " in text
    servers = LocalStack(home).status()
    assert not any(server.running for server in servers), servers
    leftovers = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes left running: {leftovers.stdout}"


def _summary_shows_work(screen: str) -> bool:
    """The latest summary counts assignments and escalations (its titles alone are not enough)."""
    import re

    last = screen.rsplit("griddispatch demo", 1)[-1]
    return bool(re.search(r"^route\s+.*assigned \d+", last, re.M)
                and re.search(r"^escalations\s+\w+ \d+", last, re.M))


def _escalations(port: int) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(scrape(port) or "")
               for s in f.samples if s.name == "griddispatch_escalations_total")


def scrape_path(port: int, path: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def _up_targets(port: int) -> dict[float, int]:
    import json
    from collections import Counter

    text = scrape_path(port, "/api/v1/query?query=up")
    if not text:
        return {}
    return dict(Counter(float(r["value"][1]) for r in json.loads(text)["data"]["result"]))
