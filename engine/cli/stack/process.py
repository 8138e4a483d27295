"""Start, find and stop the stack's server processes without leaving any behind.

Each server runs in its own session (process group) so that ``down`` can signal the whole
group, and its pid is kept in a file beside its data so that a later command, in another
process, can find it again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerFiles:
    """Where one local server keeps its files under a stack's home: ``<name>.log`` and
    ``<name>.pid`` beside each other (``stack status`` and ``down`` find every server the same
    way), and its own data folder and config file."""

    home: Path
    name: str
    data_dir: str
    config_file: str = ""

    @property
    def log(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def data(self) -> Path:
        return self.home / self.data_dir

    @property
    def config(self) -> Path:
        return self.home / self.config_file


class StackError(RuntimeError):
    """A stack operation failed; the message says what and what to do."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (a cluster's nodes and their second ports)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def require_free(port: int, what: str, option: str) -> None:
    if not port_is_free(port):
        raise StackError(
            f"port {port} on 127.0.0.1 is already in use, so {what} cannot start there; "
            f"stop whatever holds it (e.g. 'ss -ltnp | grep :{port}') or choose another "
            f"port with {option}"
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def spawn(argv: Sequence[str], log_file: Path, pid_file: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def wait_until(ready: Callable[[], bool], proc_alive: Callable[[], bool], timeout: float,
               what: str, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not proc_alive():
            raise StackError(f"{what} exited during start-up; see its log: {log_file}\n"
                             + tail(log_file))
        time.sleep(0.2)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s; see {log_file}\n"
                     + tail(log_file))


def tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def stop(pid_file: Path, timeout: float = 30.0) -> bool:
    """Stop the process group in ``pid_file``: SIGTERM, then SIGKILL after ``timeout``.

    Returns True when something was running. The group is signalled, not only the pid, so
    that children (the JVM's, say) go too.
    """
    pid = read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if pid_alive(pid):
        _kill_group(pid)
    pid_file.unlink(missing_ok=True)
    return True


def kill(pid_file: Path) -> None:
    """kill -9 the process group in ``pid_file``, as a crash would: no shutdown at all."""
    pid = read_pid(pid_file)
    if pid is not None:
        _kill_group(pid)
    pid_file.unlink(missing_ok=True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while pid_alive(pid):
        _reap(pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


SYSTEM_PATH = os.pathsep.join((os.environ.get("PATH", ""), "/usr/bin", "/usr/sbin",
                               "/usr/local/sbin"))


def debian_binary(binary: str, package: str, instead: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` when it is missing and we are
    root (the project's own scripts install what they need; nothing outside apt).

    ``instead`` tells a user who is not root what else will do (e.g. an existing server).
    Daemons' own paths (``/usr/sbin``) are searched too: a login shell's PATH may lack them.
    """
    found = shutil.which(binary, path=SYSTEM_PATH)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(f"{binary} is not installed; install Debian's package with "
                         f"'sudo apt-get install --no-install-recommends {package}'"
                         + (f" ({instead})" if instead else ""))
    print(f"installing Debian's {package} package (first run only)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StackError(f"'{' '.join(argv)}' failed:\n{result.stderr[-2000:]}")
    found = shutil.which(binary, path=SYSTEM_PATH)
    if not found:
        raise StackError(f"{binary} is still missing after installing {package}")
    return found
