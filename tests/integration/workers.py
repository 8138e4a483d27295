"""Helpers the integration tests share: topics, worker subprocesses, metrics scraping."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from engine.cli.stack.process import free_port
from engine.runtime import kafka
from engine.runtime.settings import Settings
from engine.runtime.topic_admin import apply, pending_changes

REPO = Path(__file__).resolve().parents[2]


def apply_topics(settings: Settings) -> None:
    """The real topic specs, expanded for the real department registry, under the prefix."""
    settings = settings.with_(rules_dir=REPO / "rules", topics_dir=REPO / "topics")
    admin = kafka.admin_client(settings)
    _, changes = pending_changes(settings, admin)
    apply(admin, changes)


def start_worker(settings: Settings, kind: str, log: Path, *extra: str,
                 rules_dir: Path = REPO / "rules") -> tuple[subprocess.Popen[bytes], int]:
    """``griddispatch worker KIND`` as its own process, with /metrics on a free port."""
    return start_command(settings, log, "worker", kind, "--rules-dir", str(rules_dir), *extra)


def start_command(settings: Settings, log: Path, *argv: str,
                  redis_url: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``griddispatch ARGV --metrics-port P`` as its own process, P a free port."""
    port = free_port()
    command = [sys.executable, "-m", "engine", "--bootstrap", settings.kafka_bootstrap,
               *(("--redis", redis_url) if redis_url else ()),
               "--topic-prefix", settings.topic_prefix, *argv, "--metrics-port", str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    return proc, port


def stop(proc: subprocess.Popen[bytes], log: Path) -> int:
    """SIGTERM (a clean stop commits), SIGKILL after 30 s; prints the log's tail."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"--- {log.name} (tail) ---\n{tail(log)}")
    return proc.returncode


@contextmanager
def running(settings: Settings, kind: str, log: Path, *extra: str,
            rules_dir: Path = REPO / "rules") -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A worker that serves /metrics (so it is up), stopped however the test ends."""
    with serving(start_worker(settings, kind, log, *extra, rules_dir=rules_dir), log,
                 f"the {kind} worker") as proc_port:
        yield proc_port


@contextmanager
def serving(started: tuple[subprocess.Popen[bytes], int], log: Path,
            what: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Wait for a started command's /metrics; stop it however the block ends."""
    proc, port = started
    try:
        wait_for(lambda: scrape(port) is not None or proc.poll() is not None, 60,
                 f"{what}'s /metrics")
        assert proc.poll() is None, f"{what} exited {proc.returncode}:\n{tail(log)}"
        yield proc, port
    finally:
        stop(proc, log)


def tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def sample(port: int, name: str, **labels: str) -> float | None:
    text = scrape(port)
    for family in text_string_to_metric_families(text or ""):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None
