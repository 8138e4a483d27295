"""A real browser for the console's tests: Debian's chromium driven by Playwright.

Test modules import the fixtures by name (there is no conftest entry for them, so only the
browser tests pay for a browser)::

    from tests.integration.browser import browser, page, screenshot  # noqa: F401

The browser is the system's (``engine.cli.stack.browser.chromium_binary`` installs it with
apt when missing): ``playwright install`` is never run, nothing is downloaded. One browser
serves the whole session (starting chromium costs about a second); each test gets a fresh
context, so cookies and storage never leak from one test into the next.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from engine.cli.stack.browser import chromium_binary
from engine.cli.stack.process import free_port

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"

# What this machine needs: no setuid sandbox as root in a container (--no-sandbox), no GPU
# (--disable-gpu), and no traffic of the browser's own (QUIC, component updates, sync,
# background requests): the tests reach only the local server they start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The console's users: a desk in Hangzhou, Chinese UI, a laptop-sized screen.
VIEWPORT: ViewportSize = {"width": 1366, "height": 900}
LOCALE = "zh-CN"
TIMEZONE = "Asia/Shanghai"

# Where screenshot() puts a test's pictures when they are not for docs/: its own tmp_path.
_scratch: dict[int, Path] = {}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium for one test module; Playwright gives it a fresh user-data folder.

    Not for the session: Playwright's sync API keeps an asyncio loop running on the test
    thread while it is started, and later modules that run their own loop there (the intake
    tests) would fail with "Cannot run the event loop while another loop is running"."""
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=chromium_binary(), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    """A page in a new context of its own (zh-CN, Asia/Shanghai, 1366×900), closed after."""
    context = browser.new_context(viewport=VIEWPORT, locale=LOCALE, timezone_id=TIMEZONE)
    opened = context.new_page()
    _scratch[id(opened)] = tmp_path
    try:
        yield opened
    finally:
        _scratch.pop(id(opened), None)
        context.close()


def screenshot(page: Page, name: str, scratch: Path | None = None) -> Path:
    """Save ``page`` as ``<name>.png`` and return the path.

    With ``GRIDDISPATCH_SCREENSHOTS=1`` the picture goes to ``docs/screenshots/`` (to refresh
    the documentation's pictures); otherwise to the test's tmp_path, so that an ordinary test
    run still exercises the capture but leaves the work tree clean.
    """
    if os.environ.get("GRIDDISPATCH_SCREENSHOTS") == "1":
        folder = SCREENSHOTS
    else:
        base = _scratch.get(id(page), scratch)
        if base is None:
            raise ValueError("screenshot() takes a page made by the `page` fixture, or a "
                             "scratch folder")
        folder = base / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def serving(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port while the block runs; yields the root URL (no slash).

    The server's event loop is made, run and closed in a thread of its own: Playwright's sync
    API keeps an asyncio loop running on the test's thread, where a second loop cannot run
    (``run_until_complete`` there fails with "another loop is running").
    """
    port = free_port(host)
    started = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except BaseException as error:  # handed to the test's thread below
            failure.append(error)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name=f"aiohttp:{port}", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
