"""An optional local Prometheus from Debian's package, scraping the workers and running our alerts.

Why in the stack: the alert rules in ``ops/prometheus/alerts.yml`` are code, and the fastest
way to see whether they make sense is a Prometheus evaluating them against the workers of
``griddispatch up``. The stack runs it on loopback with the shipped scrape config
(``ops/prometheus/prometheus.yml``, same job names and ports as production docs), its
``rule_files`` pointed at the shipped alerts by absolute path, so an edit to the alerts
takes effect on ``kill -HUP`` or ``curl -X POST 127.0.0.1:9090/-/reload``. TSDB data stays in
the stack folder.

``promtool`` comes from the same Debian package; ``promtool_binary()`` is what the tests use
to check and unit-test the rules (``promtool check rules``, ``promtool test rules``).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import yaml

from engine.cli.stack import process

DEFAULT_PORT = 9090
OPS_DIR = Path(__file__).resolve().parents[3] / "ops" / "prometheus"
RETENTION = "15d"


def layout(home: Path) -> process.ServerFiles:
    return process.ServerFiles(home, "prometheus", data_dir="prometheus/data",
                               config_file="prometheus/prometheus.yml")


def ensure_binary(name: str = "prometheus") -> str:
    """The path of ``prometheus`` or ``promtool`` (Debian's ``prometheus`` package brings
    both), installing the package when we are root."""
    return process.debian_binary(name, "prometheus", "")


def promtool_binary() -> str:
    """``promtool`` (Debian's ``prometheus`` package), installed when missing and root."""
    return ensure_binary("promtool")


def config_text(source: Path = OPS_DIR / "prometheus.yml",
                targets: dict[str, str] | None = None) -> str:
    """The shipped scrape config with its ``rule_files`` made absolute (relative names are
    resolved against the config's folder, and the stack writes its copy elsewhere), and with
    only the jobs of ``targets`` when it is given."""
    config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["rule_files"] = [str((source.parent / name).resolve())
                            for name in config.get("rule_files") or []]
    if targets is not None:
        config = _only(config, targets)
    header = (f"# Written by griddispatch stack from {source}; edit that file, not this one.\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def answers(port: int, host: str = "127.0.0.1") -> bool:
    """True when Prometheus on the port says it is ready to serve queries."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/-/ready", timeout=1.0) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def start(layout: process.ServerFiles, port: int, timeout: float = 30.0,
          source: Path = OPS_DIR / "prometheus.yml",
          targets: dict[str, str] | None = None) -> int:
    """Run Prometheus with ``source`` (default: the shipped config) until ``stop``.

    ``targets`` (job name → ``host:port``) keeps only those jobs; ``{}`` starts with none, for
    ``griddispatch up``, which names its processes later with ``retarget``. Why not start with
    every shipped job and drop the unused ones then: a job dropped on reload leaves no stale
    marker, so one scrape of a worker that never runs reads ``up == 0`` for five minutes.
    """
    process.require_free(port, "Prometheus", "--prometheus-port")
    binary = ensure_binary()
    layout.data.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(config_text(source, targets), encoding="utf-8")
    argv = [binary, f"--config.file={layout.config}", f"--storage.tsdb.path={layout.data}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"]
    proc = process.spawn(argv, layout.log, layout.pid_file)
    process.wait_until(lambda: answers(port), lambda: proc.poll() is None, timeout,
                       f"Prometheus on port {port}", layout.log)
    return proc.pid


def retarget(layout: process.ServerFiles, port: int, targets: dict[str, str]) -> None:
    """Point the running Prometheus at the processes ``griddispatch up`` really started.

    ``targets``: job name → ``host:port``. Jobs not named are dropped from the stack's copy
    (a worker that is not running must not page as "down"); the shipped file is untouched.
    """
    layout.config.write_text(config_text(targets=targets), encoding="utf-8")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def _only(config: dict[str, Any], targets: dict[str, str]) -> dict[str, Any]:
    """``config`` with the jobs named in ``targets``, each scraping its one target."""
    return {**config, "scrape_configs": [
        {**job, "static_configs": [{"targets": [targets[job["job_name"]]]}]}
        for job in config.get("scrape_configs") or [] if job["job_name"] in targets]}
