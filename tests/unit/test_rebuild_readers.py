"""A timer worker killed with -9 mid-rebuild takes its rebuild readers with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() \
        else "X"
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_rebuild_readers_die_with_a_killed_worker(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing, os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from engine.runtime.timer_restore import die_with_parent\n"
        "def reader(_: int) -> int:\n"
        "    time.sleep(0.5)\n"
        "    return os.getpid()\n"
        "if __name__ == '__main__':\n"
        "    spawn = multiprocessing.get_context('spawn')\n"
        "    with ProcessPoolExecutor(2, mp_context=spawn, initializer=die_with_parent) as pool:\n"
        "        print(' '.join(map(str, set(pool.map(reader, range(2))))), flush=True)\n"
        "        pool.submit(time.sleep, 60)\n"
        "        time.sleep(60)\n", encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert parent.stdout is not None
    readers = [int(pid) for pid in parent.stdout.readline().split()]
    assert readers and all(_alive(pid) for pid in readers)
    parent.send_signal(signal.SIGKILL)  # the worker, killed mid-rebuild
    parent.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in readers), "a rebuild reader outlived its worker"
