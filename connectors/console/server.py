"""``griddispatch console``: the command-centre web app (aiohttp, Jinja2, htmx), thin glue.

The page handlers (``pages``) read the ``ConsoleView`` the feed builds from Kafka; the form
handlers (``forms``) build records with ``engine.console.actions`` and publish them with the
acknowledging producer, so an action the page confirms is on the broker. Sign-in checks the
users file (Argon2 hashes); the session is a signed cookie (HttpOnly, SameSite=Lax) and every
form carries a CSRF token bound to the session. Everything is served from the package:
templates, CSS and the vendored htmx and Leaflet; nothing is fetched from the internet.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from connectors.console import forms, pages
from connectors.console.accounts import UsersFile, authenticate, users_path
from connectors.console.context import (
    CONSOLE,
    HERE,
    OPERATOR,
    SESSION,
    Console,
    console_of,
    operator_for,
    render,
    templates,
)
from connectors.console.feed import ConsoleFeed
from connectors.console.senders import Senders
from connectors.console.sessions import Sessions, load_or_create_secret, secret_path
from engine.rules.load import load_rules
from engine.runtime import department_credentials, metrics
from engine.runtime.producer import AckedProducer
from engine.runtime.settings import Settings

COOKIE = "griddispatch_console"

log = logging.getLogger("griddispatch.console")


OPEN_PATHS = ("/login", "/static/", "/healthz", "/metrics")


@web.middleware
async def signed_in(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """Every page but sign-in needs a session; every POST needs the session's CSRF token."""
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    console = console_of(request)
    session = console.sessions.read(request.cookies.get(COOKIE, ""))
    # Read per request: a changed password or a removed user takes effect at once (the file
    # is small and in the page cache).
    user = UsersFile.load(console.users).get(session.username) if session is not None else None
    if session is None or user is None:
        if request.method == "GET" and "HX-Request" not in request.headers:
            raise web.HTTPFound("/login")
        raise web.HTTPUnauthorized(text="请先登录 (sign in first)")
    if request.method == "POST":
        form = await request.post()
        token = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
        if not console.sessions.check_csrf(session, token):
            raise web.HTTPForbidden(text="表单已过期或来源不明，请刷新页面后重试 (CSRF token "
                                         "missing or wrong)")
    request[SESSION] = session
    request[OPERATOR] = operator_for(user)
    return await handler(request)


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None, username="")


async def login(request: web.Request) -> web.Response:
    console = console_of(request)
    form = await request.post()
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    loop = asyncio.get_running_loop()
    user = await loop.run_in_executor(None, authenticate, console.users, username, password)
    if user is None:
        metrics.CONSOLE_LOGINS.labels("refused").inc()
        return render(request, "login.html", status=401, error="用户名或密码不正确",
                      username=username)
    metrics.CONSOLE_LOGINS.labels("ok").inc()
    response = web.HTTPFound("/")
    response.set_cookie(COOKIE, console.sessions.issue(user.username), httponly=True,
                        samesite="Lax", secure=request.secure, path="/")
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPFound("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics_page(_request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition("console"),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[signed_in], client_max_size=256 * 1024)
    app[CONSOLE] = console
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False)
    pages.register(app.router)
    forms.register(app.router)
    return app


def build(settings: Settings, users: Path, *, publish: bool = True,
          department_passwords: Mapping[str, str] | None = None) -> Console:
    """The console for these settings, its feed not yet started."""
    ruleset = load_rules(settings.rules_dir, with_model=False)
    sessions = Sessions(load_or_create_secret(secret_path(users)))
    senders = Senders(settings, AckedProducer(settings), department_passwords or {}) \
        if publish else None
    return Console(settings, ruleset, ConsoleFeed(settings), senders, users, sessions,
                   templates())


async def start(console: Console, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(console), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    console.feed.start()
    return runner


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the console until SIGINT/SIGTERM."""
    if getattr(args, "rules_dir", None):
        settings = settings.with_(rules_dir=args.rules_dir)
    users = users_path(getattr(args, "users", None))
    credentials = department_credentials.credentials_path(
        getattr(args, "department_credentials", None))
    passwords = department_credentials.load(credentials) if credentials else {}
    console = build(settings, users, department_passwords=passwords)
    host, port = args.host, args.port

    async def main() -> None:
        runner = await start(console, host, port)
        print(f"griddispatch console on http://{host}:{port}/ (users: {users})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        console.feed.stop()
        if console.senders is not None:
            console.senders.close()

    asyncio.run(main())
    return 0
