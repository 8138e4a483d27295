"""The intake under load: a loopback asyncio client drives ``POST /api/v1/incidents`` for a
minute at the rate the intake holds (``--only intake`` of ``make bench``).

Closed loop: ``concurrency`` clients each send a new report as soon as the last one was
answered, so the rate is what the intake (and the broker acknowledging every report before
the 202) holds on this machine, not a rate we chose. Beside them, one client sends on a
second key at four times that key's rate limit, so most of its reports must be refused with
429: the intended refusals. Everything else that is not a 202 is an error.

Reported: reports per second, latency p50 / p99 / max, answers by status, and the intake
process's resident memory every second (after a 10 s warm-up it must stay flat: growth under
10 %). A private broker and Redis on free ports in a temporary folder (or
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``), with a topic prefix of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from engine.cli.stack import process
from engine.runtime.settings import Settings
from tests.bench.harness import Log, Processes, broker
from tests.bench.timers_rebuild import make_topics, redis_url

SECONDS, CONCURRENCY, WARM_UP = 60.0, 16, 10.0
LIMITED_RATE = 30  # reports per minute allowed to the second key; it sends four times that
MAX_GROWTH = 0.10


def _key_file(path: Path) -> dict[str, str]:
    import hashlib

    keys = {"load": uuid.uuid4().hex, "limited": uuid.uuid4().hex}
    entries = [{"name": "load", "sha256": hashlib.sha256(keys["load"].encode()).hexdigest(),
                "channels": ["*"], "rate_per_minute": 1_000_000},
               {"name": "limited",
                "sha256": hashlib.sha256(keys["limited"].encode()).hexdigest(),
                "channels": ["*"], "rate_per_minute": LIMITED_RATE}]
    path.write_text(json.dumps({"keys": entries}), encoding="utf-8")
    return keys


def _report(n: int, run: str) -> bytes:
    return json.dumps({"channel": "hotline", "channel_id": f"LOAD-{run}-{n}",
                       "reported_at": "2026-11-24T09:30:00+08:00",
                       "description": f"小区门口垃圾成堆，好几天没人清运（第{n}条）",
                       "address": "余杭区仓前街道太炎社区"}, ensure_ascii=False).encode()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _drive(url: str, keys: dict[str, str], pid: int, seconds: float,
                 concurrency: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limited: Counter[str] = Counter()
    rss: list[tuple[float, int]] = []
    counter = iter(range(10**9))
    start = time.monotonic()
    deadline = start + seconds

    async def post(session: aiohttp.ClientSession, key: str) -> str:
        body = _report(next(counter), run)
        try:
            async with session.post(f"{url}/api/v1/incidents", data=body, headers={
                    "Content-Type": "application/json", "X-API-Key": key}) as response:
                await response.read()
                return str(response.status)
        except aiohttp.ClientError as exc:
            return f"error: {type(exc).__name__}"

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            status = await post(session, keys["load"])
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1

    async def over_the_limit(session: aiohttp.ClientSession) -> None:
        gap = 60.0 / (4 * LIMITED_RATE)
        while time.monotonic() < deadline:
            limited[await post(session, keys["limited"])] += 1
            await asyncio.sleep(gap)

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - start, _rss_kib(pid)))
            await asyncio.sleep(1.0)

    connector = aiohttp.TCPConnector(limit=concurrency + 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)),
                             over_the_limit(session), sample_memory())
    elapsed = time.monotonic() - start
    ordered = sorted(latencies)
    after_warm_up = [kib for at, kib in rss if at >= WARM_UP] or [kib for _, kib in rss]
    errors = sum(n for s, n in statuses.items() if s != "202") + sum(
        n for s, n in limited.items() if s not in ("202", "429"))
    return {
        "seconds": round(elapsed, 1), "concurrency": concurrency,
        "reports_per_s": round(statuses["202"] / elapsed, 1),
        "latency_ms": {"p50": round(1000 * statistics.median(ordered), 2),
                       "p99": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
                       "max": round(1000 * ordered[-1], 2)},
        "answers": dict(statuses), "limited_key_answers": dict(limited), "errors": errors,
        "rss_kib": {"at_warm_up": after_warm_up[0], "end": after_warm_up[-1],
                    "max": max(after_warm_up)},
        "rss_growth": round(after_warm_up[-1] / after_warm_up[0] - 1, 3),
    }


def run(seconds: float = SECONDS, concurrency: int = CONCURRENCY,
        log: Log = print) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="griddispatch-intake-load-"))
    with broker(workdir, log) as (bootstrap, _), redis_url(workdir, log) as redis:
        settings = Settings(kafka_bootstrap=bootstrap, redis_url=redis,
                            topic_prefix=f"il{uuid.uuid4().hex[:6]}.")
        make_topics(settings, ["incidents.reported", "intake.deadletter"])
        keys = _key_file(workdir / "keys.yaml")
        port = process.free_port()
        procs = Processes(workdir)
        os.environ["REDIS_URL"], before = redis, os.environ.get("REDIS_URL")
        intake = procs.start("intake", [
            sys.executable, "-m", "engine", "--bootstrap", bootstrap, "--topic-prefix",
            settings.topic_prefix, "intake", "--port", str(port), "--keys",
            str(workdir / "keys.yaml")])
        if before is None:  # the child has it; ours is as it was
            del os.environ["REDIS_URL"]
        else:
            os.environ["REDIS_URL"] = before
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, redis)
            log(f"intake on {url} (pid {intake.popen.pid}); {concurrency} clients for "
                f"{seconds:.0f} s")
            result = asyncio.run(_drive(url, keys, intake.popen.pid, seconds, concurrency))
        finally:
            procs.stop_all()
    result["targets"] = {"errors": 0, "rss_growth_below": MAX_GROWTH}
    result["met"] = result["errors"] == 0 and result["rss_growth"] < MAX_GROWTH and \
        result["limited_key_answers"].get("429", 0) > 0
    return result


def _wait_ready(url: str, redis: str, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the intake at {url} (Redis {redis}) was not ready in {timeout:.0f} s")


def table(result: dict[str, Any]) -> str:
    latency = result["latency_ms"]
    rss = result["rss_kib"]
    return "\n".join([
        "| what | figure |", "|---|---|",
        f"| reports accepted per second ({result['concurrency']} clients, "
        f"{result['seconds']:.0f} s) | {result['reports_per_s']:,.0f} |",
        f"| latency p50 / p99 / max | {latency['p50']:.1f} / {latency['p99']:.1f} / "
        f"{latency['max']:.1f} ms |",
        f"| answers (load key) | {result['answers']} |",
        f"| answers (key at four times its limit) | {result['limited_key_answers']} |",
        f"| errors (anything but 202, or 429 on the limited key) | {result['errors']} |",
        f"| intake memory after warm-up → end (max) | {rss['at_warm_up'] / 1024:.0f} → "
        f"{rss['end'] / 1024:.0f} MiB ({rss['max'] / 1024:.0f}), growth "
        f"{result['rss_growth']:+.1%} |",
    ])
