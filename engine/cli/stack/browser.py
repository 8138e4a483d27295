"""The browser that the console's tests drive: Debian's ``chromium``, with Debian's Chinese fonts.

Playwright can download browser builds of its own (``playwright install``), but this project
installs nothing from outside the package registries, so it drives the system's browser
instead, installed with apt like the stack's other servers (see ``process.debian_binary``).

``fonts-noto-cjk`` is required as well: the console's pages are in Chinese, and without a CJK
font chromium draws every character as a box. Requiring that one package (rather than any
Chinese font) makes screenshots look the same on every machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from engine.cli.stack import process

CHROMIUM = "chromium"
FONTS = "fonts-noto-cjk"


def chromium_binary() -> str:
    """The path of Debian's chromium (``/usr/bin/chromium``), with the Chinese fonts beside it.

    What is missing is installed with apt-get when we are root (one transaction, so a first
    run pays for one ``apt-get update``); otherwise ``process.StackError`` names the command
    to run. Nothing is ever downloaded from outside Debian's archive.
    """
    missing = [package for package, present in ((CHROMIUM, _chromium_found()),
                                                (FONTS, _installed(FONTS)))
               if not present]
    if missing:
        _apt_install(missing)
    return process.debian_binary(CHROMIUM, CHROMIUM, "")


def _chromium_found() -> bool:
    return shutil.which(CHROMIUM, path=process.SYSTEM_PATH) is not None


def _installed(package: str) -> bool:
    """Whether dpkg has ``package`` installed (a font package has no binary to look for)."""
    dpkg_query = shutil.which("dpkg-query", path=process.SYSTEM_PATH)
    if dpkg_query is None:
        return False
    result = subprocess.run([dpkg_query, "-W", "-f=${db:Status-Status}", package],
                            capture_output=True, text=True, check=False)
    return result.returncode == 0 and result.stdout.strip() == "installed"


def _apt_install(packages: list[str]) -> None:
    """Install Debian's ``packages`` the way ``process.debian_binary`` installs one server;
    both at once here because a font package has no binary for that function to find."""
    command = f"sudo apt-get install --no-install-recommends {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get", path=process.SYSTEM_PATH) is None:
        raise process.StackError(
            f"the browser tests need Debian's {' and '.join(packages)}, which "
            f"{'is' if len(packages) == 1 else 'are'} not installed; install with "
            f"'{command}' (the project never runs 'playwright install')")
    print(f"installing Debian's {', '.join(packages)} (first run only)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise process.StackError(f"'{' '.join(argv)}' failed:\n{result.stderr[-2000:]}")
