"""``griddispatch up``: the whole engine on this machine, in the foreground, until Ctrl-C.

It starts the local stack, applies the topics, starts each worker as a child process and
watches them; Ctrl-C stops the workers and then the stack, so nothing is left running.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from engine.cli.stack_cmd import add_stack_options, start_stack
from engine.cli.topics_cmd import apply_topics
from engine.settings import Settings


@dataclass(frozen=True)
class WorkerSpec:
    """A child process that ``up`` runs: its name, arguments and metrics port."""

    name: str
    argv: tuple[str, ...]
    metrics_port: int | None = None


# Workers join this list as they are written (classify, route, timers, intake).
WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("classify", ("worker", "classify", "--metrics-port", "9101"), 9101),
    WorkerSpec("route", ("worker", "route", "--metrics-port", "9102"), 9102),
    WorkerSpec("timers", ("worker", "timers", "--metrics-port", "9103"), 9103),
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser("up", help="run the local stack, topics and all workers until Ctrl-C",
                             description="Run the local stack, topics and all workers until "
                                         "Ctrl-C.")
    add_stack_options(up)
    up.add_argument("--keep-stack", action="store_true",
                    help="leave Kafka and Redis running after Ctrl-C")
    up.set_defaults(handler=run_up)


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    stack = start_stack(args)
    settings = settings.with_(kafka_bootstrap=stack.bootstrap, redis_url=stack.redis_url)
    children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]] = []
    try:
        if apply_topics(settings, verbose=False) != 0:
            return 1
        base = [sys.executable, "-m", "engine", "--bootstrap", settings.kafka_bootstrap,
                "--redis", settings.redis_url, "--topic-prefix", settings.topic_prefix]
        for worker in WORKERS:
            children.append((worker, subprocess.Popen([*base, *worker.argv])))
        print(f"griddispatch is up in {time.monotonic() - started:.1f}s")
        print(f"  kafka   {settings.kafka_bootstrap}")
        print(f"  redis   {settings.redis_url}")
        for worker, proc in children:
            metrics = (f"  metrics http://127.0.0.1:{worker.metrics_port}/metrics"
                       if worker.metrics_port else "")
            print(f"  {worker.name:<9} pid {proc.pid}{metrics}")
        print("Ctrl-C stops everything" + ("" if not args.keep_stack else " but the stack"),
              flush=True)
        _wait_for_interrupt(children)
        return 0
    finally:
        for _, proc in children:
            proc.send_signal(signal.SIGTERM)
        for _, proc in children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep_stack:
            print("stopped: " + ", ".join(stack.down()), flush=True)


def _wait_for_interrupt(children: list[tuple[WorkerSpec, subprocess.Popen[bytes]]]) -> None:
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop:
            for worker, proc in children:
                if proc.poll() is not None:
                    print(f"worker {worker.name} exited with code {proc.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    return
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nCtrl-C: stopping", flush=True)
