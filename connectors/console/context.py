"""What every console handler shares: the ``Console`` of the process, who is signed in, and
how a page is rendered (Jinja2, autoescaped, with the session's CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path

import jinja2
from aiohttp import web

from connectors.console.accounts import User
from connectors.console.feed import ConsoleFeed
from connectors.console.senders import Senders
from connectors.console.sessions import Session, Sessions
from engine.console.access import Operator
from engine.rules import RuleSet
from engine.runtime.settings import Settings

HERE = Path(__file__).parent
CST = timezone(timedelta(hours=8))


@dataclass
class Console:
    """What every handler shares; one per process."""

    settings: Settings
    ruleset: RuleSet
    feed: ConsoleFeed
    senders: Senders | None  # None: started read-only
    users: Path
    sessions: Sessions
    templates: jinja2.Environment


CONSOLE = web.AppKey("console", Console)
OPERATOR = web.RequestKey("operator", Operator)
SESSION = web.RequestKey("session", Session)


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


def operator_of(request: web.Request) -> Operator:
    return request[OPERATOR]


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def operator_for(user: User) -> Operator:
    return Operator(username=user.username, name=user.name, role=user.role, scope=user.scope)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals["cst"] = lambda: CST  # times are shown as the centres read them
    return env


def render(request: web.Request, template: str, status: int = 200,
           **context: object) -> web.Response:
    console = console_of(request)
    session = request.get(SESSION)
    # After a form, the redirect's query carries its outcome to the page it lands on.
    context.setdefault("message", request.query.get("message"))
    context.setdefault("error", request.query.get("error"))
    page = console.templates.get_template(template).render(
        operator=request.get(OPERATOR), csrf=console.sessions.csrf_token(session)
        if session is not None else "", path=request.path, ruleset=console.ruleset,
        version=console.feed.view.version, **context)
    return web.Response(text=page, content_type="text/html", charset="utf-8", status=status)
