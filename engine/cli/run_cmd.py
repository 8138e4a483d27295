"""``griddispatch up``: the whole engine on this machine, in the foreground, until Ctrl-C.

It starts the local stack, applies the topics, starts each worker and the intake server as
child processes and watches them; Ctrl-C stops them and then the stack, so nothing is left
running. With ``--demo`` (what ``make run`` does) a feed sends realistic reports into every
channel, simulated departments answer (some late, some never), the SLA policies are the
demo's short ones, and a one-screen summary of the workers' metrics refreshes every few
seconds: within about two minutes there are assignments, merges, triage and escalations.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.cli.options import Commands, command
from engine.cli.stack import LocalStack
from engine.cli.stack_cmd import add_stack_options, start_stack
from engine.cli.topics_cmd import apply_topics
from engine.runtime.settings import KAFKA_ENV, Settings, kafka_extra_env, scram_security

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

SUMMARY_EVERY = 5.0


@dataclass(frozen=True)
class WorkerSpec:
    """A child process that ``up`` runs: its name, arguments and metrics port."""

    name: str
    argv: tuple[str, ...]
    metrics_port: int | None = None
    metrics_path: str = "/metrics"
    principal: str = ""  # its broker principal in the secure profile (engine.topics.acls)


def workers(base: int, intake_port: int, mqtt_url: str,
            rules_dir: Path | None, keys: Path | None, console_port: int = 8090,
            users: Path | None = None,
            department_credentials: Path | None = None) -> tuple[WorkerSpec, ...]:
    """Every process of the engine: classify, route, timers, the intake, the MQTT bridge and
    the console."""
    rules = ("--rules-dir", str(rules_dir)) if rules_dir else ()
    return (
        WorkerSpec("classify", ("worker", "classify", *rules, "--metrics-port", str(base)), base,
                   principal="griddispatch-classify"),
        WorkerSpec("route", ("worker", "route", *rules, "--metrics-port", str(base + 1)),
                   base + 1, principal="griddispatch-route"),
        WorkerSpec("timers", ("worker", "timers", *rules, "--metrics-port", str(base + 2)),
                   base + 2, principal="griddispatch-timers"),
        WorkerSpec("intake", ("intake", "--port", str(intake_port), *rules,
                              *(("--keys", str(keys)) if keys else ())), intake_port,
                   principal="griddispatch-intake"),
        WorkerSpec("mqtt", ("connect", "mqtt", "--url", mqtt_url, *rules,
                            "--metrics-port", str(base + 4)), base + 4,
                   principal="griddispatch-bridge"),
        WorkerSpec("console", ("console", "--port", str(console_port), *rules,
                               *(("--users", str(users)) if users else ()),
                               *(("--department-credentials", str(department_credentials))
                                 if department_credentials else ())), console_port,
                   principal="griddispatch-console"),
    )


def register(commands: Commands) -> None:
    up = command(commands, "up", run_up)
    add_stack_options(up)
    up.add_argument("--keep-stack", action="store_true",
                    help="leave the stack's servers running after Ctrl-C")
    up.add_argument("--metrics-base", type=int, default=9101, metavar="PORT",
                    help="/metrics ports: classify PORT, route +1, timers +2, mqtt bridge +4 "
                         "(default 9101, as ops/prometheus/prometheus.yml scrapes)")
    up.add_argument("--intake-port", type=int, default=8080,
                    help="intake server port (Open311, JSON API, /metrics; default 8080)")
    up.add_argument("--console-port", type=int, default=8090,
                    help="command-centre console port (web pages and /metrics; default 8090)")
    up.add_argument("--demo", action="store_true",
                    help="feed demo reports into every channel, let simulated departments "
                         "answer, use short demo time limits, and show a live summary")
    up.add_argument("--demo-rate", type=float, default=1.0, metavar="PER_S",
                    help="demo reports per second (default 1)")


def demo_keys(home: Path) -> tuple[Path, str]:
    """A key file for the demo: a fresh key for every channel, and the dev Open311 key."""
    key = "demo-" + secrets.token_urlsafe(24)
    path = home / "demo-keys.yaml"
    digest = hashlib.sha256(key.encode()).hexdigest()
    dev = hashlib.sha256(b"dev-open311").hexdigest()
    path.write_text("# written by griddispatch up --demo; thrown away with the stack\n"
                    f"keys:\n  - {{name: demo-feed, sha256: {digest}, channels: ['*'], "
                    "rate_per_minute: 100000}\n"
                    f"  - {{name: dev-open311, sha256: {dev}, channels: [open311]}}\n",
                    encoding="utf-8")
    return path, key


# The demo's console users: one per role, as a county would set them up.
DEMO_USERS = (("county", "余杭区社会治理中心", "county", "330110"),
              ("wuchang", "五常街道综合信息指挥室", "township", "330110005"),
              ("zhzf", "五常街道综合行政执法中队", "department", "330110005.zhzf"),
              ("viewer", "只读（领导驾驶舱）", "viewer", None))


def add_demo_users(path: Path) -> list[tuple[str, str, str]]:
    """The demo users with fresh passwords (printed once by ``up``), replacing any earlier
    demo users of this stack; other users in the file are kept."""
    from connectors.console.accounts import User, UsersFile, hash_password

    users = UsersFile.load(path)
    made = []
    for username, name, role, scope in DEMO_USERS:
        password = secrets.token_urlsafe(9)
        if username in users:
            users.remove(username)
        users.add(User(username=username, name=name, role=role,  # type: ignore[arg-type]
                       scope=scope, password_hash=hash_password(password)))
        made.append((username, f"{role} {scope or ''}".strip(), password))
    users.save()
    return made


def child_env(settings: Settings) -> dict[str, str]:
    """The workers' environment: ours, with the Kafka client settings we run with (the
    secure profile's admin credentials), whichever stack folder they were read from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(KAFKA_ENV)}
    env.update(kafka_extra_env(settings.kafka_extra))
    return env


def as_principal(admin: Settings, spec: WorkerSpec, client: AdminClient | None) -> Settings:
    """The settings a child runs with: in the secure profile (``client``, the admin's), its
    own principal with a fresh password (stored hashed on the broker; the child gets it in
    its environment)."""
    if client is None or not spec.principal:
        return admin
    from engine.runtime import acl_admin

    password = acl_admin.set_password(client, spec.principal)
    return admin.with_(kafka_extra=scram_security(spec.principal, password))


def department_passwords(client: AdminClient, rules_dir: Path, home: Path) -> Path:
    """Fresh passwords for every department (as ``acl password --departments``), in the
    stack's folder for the console."""
    from engine.reference.departments import DepartmentRegistry
    from engine.runtime import acl_admin, department_credentials

    registry = DepartmentRegistry.load(rules_dir / "reference" / "departments.yaml")
    path = home / "department-credentials.yaml"
    department_credentials.save(path, acl_admin.set_passwords(client,
                                                              [d.code for d in registry]))
    return path


def apply_acls(settings: Settings) -> None:
    """The secure profile: the ACLs of the department registry (as ``acl apply``)."""
    from engine.runtime import acl_admin

    created, deleted = acl_admin.apply_plan(settings)
    print(f"secure broker: {len(created)} ACL(s) created, {len(deleted)} deleted; each process "
          "runs as its own principal (give departments credentials with 'griddispatch acl "
          "password')", flush=True)


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    stack = start_stack(args, scrape_targets={})  # the processes, once they run: retarget
    # Our own stack: its security, whatever GRIDDISPATCH_KAFKA_* says about another cluster.
    settings = settings.with_(kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url,
                              kafka_extra=stack.kafka_security)
    children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]] = []
    stop = threading.Event()
    try:
        if apply_topics(settings, verbose=False) != 0:
            return 1
        admin_client = None
        if stack.kafka_security:
            apply_acls(settings)
            from engine.runtime import kafka

            admin_client = kafka.admin_client(settings)  # one, for every child's password
        rules_dir = keys = None
        api_key = ""
        if args.demo:
            from engine.cli.demo.behaviour import demo_rules

            rules_dir = demo_rules(settings.rules_dir, stack.home / "demo-rules")
            keys, api_key = demo_keys(stack.home)
        # Load the rules once here, so that the classifier is trained (first run: about a
        # minute) or found in the model cache before the workers start, instead of every
        # worker training the same model at once.
        from engine.rules.load import load_rules

        print("loading the rules (a first run trains the classifier: about a minute)",
              flush=True)
        load_rules(rules_dir or settings.rules_dir)
        users = stack.home / "console-users.yaml"
        demo_users = add_demo_users(users) if args.demo else []
        credentials = None
        if admin_client is not None:  # the console answers as each department's principal
            credentials = department_passwords(admin_client, rules_dir or settings.rules_dir,
                                               stack.home)
        specs = workers(args.metrics_base, args.intake_port, stack.mqtt_url, rules_dir, keys,
                        args.console_port, users, credentials)
        base = [sys.executable, "-m", "engine", "--bootstrap", settings.kafka_bootstrap,
                "--redis", settings.redis_url, "--topic-prefix", settings.topic_prefix]
        logs = stack.home / "logs"
        logs.mkdir(exist_ok=True)
        for spec in specs:
            with (logs / f"{spec.name}.log").open("ab") as log:
                children.append((spec, subprocess.Popen(
                    [*base, *spec.argv], stdout=log, stderr=subprocess.STDOUT,
                    env=child_env(as_principal(settings, spec, admin_client)))))
        if args.prometheus:
            from engine.cli.stack import prometheus

            prometheus.retarget(stack.prometheus, stack.ports.prometheus, {
                f"griddispatch-{spec.name}": f"127.0.0.1:{spec.metrics_port}" for spec in specs})
        _print_urls(args, stack, children, logs, time.monotonic() - started)
        for username, role, password in demo_users:
            print(f"  console user {username:<9} {role:<26} password {password}")
        if args.demo:
            _run_demo(args, settings, stack, children, rules_dir, api_key, stop)
        else:
            _wait_for_interrupt(children)
        return 0
    finally:
        stop.set()
        for _, proc in children:
            proc.send_signal(signal.SIGTERM)
        for _, proc in children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep_stack:
            print("stopped: " + ", ".join(stack.down()), flush=True)


def _print_urls(args: argparse.Namespace, stack: LocalStack,
                children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]], logs: Path,
                seconds: float) -> None:
    intake = f"http://127.0.0.1:{args.intake_port}"
    print(f"griddispatch is up in {seconds:.1f}s")
    print(f"  kafka       {stack.bootstrap}")
    print(f"  redis       {stack.redis_url}")
    print(f"  mqtt        {stack.mqtt_url}   (sensors: griddispatch/sensors/<device>/alarm)")
    print(f"  intake      {intake}/api/v1/incidents")
    print(f"  open311     {intake}/open311/discovery.json   (dev key: dev-open311)")
    print(f"  console     http://127.0.0.1:{args.console_port}/   (users: "
          f"{stack.home / 'console-users.yaml'})")
    if args.prometheus:
        print(f"  prometheus  http://127.0.0.1:{stack.ports.prometheus}")
    for spec, proc in children:
        print(f"  {spec.name:<11} pid {proc.pid:<7} http://127.0.0.1:{spec.metrics_port}"
              f"{spec.metrics_path}")
    print(f"  logs        {logs}/")
    print("Ctrl-C stops everything" + ("" if not args.keep_stack else " but the stack"),
          flush=True)


def _run_demo(args: argparse.Namespace, settings: Settings, stack: LocalStack,
              children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]],
              rules_dir: Path | None, api_key: str, stop: threading.Event) -> None:
    import yaml

    from engine.cli.demo.runner import Departments, Feed
    from engine.cli.demo.scenario import DemoFeed
    from engine.cli.demo.summary import parse, render, scrape
    from engine.rules.load import load_rules

    ruleset = load_rules(rules_dir or settings.rules_dir)
    devices = yaml.safe_load((ruleset.root / "reference" / "devices.yaml").read_text(
        encoding="utf-8"))["devices"]
    _wait_until_ready(f"http://127.0.0.1:{args.intake_port}/readyz", children, 60)
    feed = Feed(DemoFeed(ruleset, devices), f"http://127.0.0.1:{args.intake_port}", api_key,
                stack.mqtt_url, 1.0 / max(args.demo_rate, 0.01), stop)
    departments = Departments(settings, ruleset.departments, stop)
    feed.start()
    departments.start()
    print("demo: reports into every channel; accept limit 60 s, resolve 4 min "
          f"(demo rules in {rules_dir})", flush=True)
    started = time.monotonic()
    tty = sys.stdout.isatty()
    interval = SUMMARY_EVERY if tty else 3 * SUMMARY_EVERY

    def tick() -> None:
        texts = {spec.name: scrape(f"http://127.0.0.1:{spec.metrics_port}{spec.metrics_path}")
                 for spec, _ in children}
        screen = render(parse(texts), {name: text is not None for name, text in texts.items()},
                        feed.sent, departments.answered, time.monotonic() - started)
        print(("\x1b[H\x1b[2J" if tty else "\n") + screen, flush=True)

    _wait_for_interrupt(children, tick, interval)


def _wait_until_ready(url: str, children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]],
                      timeout: float) -> None:
    from engine.cli.demo.summary import scrape

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and scrape(url) is None:
        if any(proc.poll() is not None for _, proc in children):
            return  # _wait_for_interrupt reports which one exited
        time.sleep(0.5)


def _wait_for_interrupt(children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]],
                        tick: Callable[[], None] | None = None,
                        interval: float = SUMMARY_EVERY) -> None:
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    next_tick = time.monotonic()
    try:
        while not stop:
            for worker, proc in children:
                if proc.poll() is not None:
                    print(f"worker {worker.name} exited with code {proc.returncode}; stopping "
                          "(its log is in the stack's logs/ folder)", file=sys.stderr, flush=True)
                    return
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + interval
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)
