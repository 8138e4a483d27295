"""``griddispatch console`` (serve the command-centre console) and ``console user
add|passwd|list`` (its accounts): thin glue to ``connectors.console``.

``--users`` and ``--rules-dir`` are accepted before ``user`` and after its verb alike
(``console user add ana --users F`` reads as typed); the verb's copies default to nothing,
so they never overwrite what was given before ``user``.

Passwords never come from arguments, which other local users can read in the process list:
they are typed twice at a terminal, or read as one line from a pipe (for scripts).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from connectors.console.accounts import (
    AccountError,
    UsersFile,
    hash_password,
    name_problem,
    password_problem,
    scope_problem,
    username_problem,
    users_path,
)
from connectors.console.accounts import User as ConsoleUser
from engine.cli.long_running import start_logging
from engine.cli.options import Commands, add_rules_dir, command, group
from engine.console.access import ROLES
from engine.reference.departments import DepartmentRegistry
from engine.report.table import grid
from engine.runtime.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090
USERS_HELP = "the users file (default: $GRIDDISPATCH_CONSOLE_USERS or .stack/console-users.yaml)"


def register(commands: Commands) -> None:
    console = command(commands, "console", run_console)
    console.add_argument("--host", default=DEFAULT_HOST,
                         help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for all)")
    console.add_argument("--port", type=_port, default=DEFAULT_PORT,
                         help=f"port to listen on (default {DEFAULT_PORT})")
    console.add_argument("--users", type=Path, metavar="FILE", help=USERS_HELP)
    console.add_argument("--department-credentials", type=Path, metavar="FILE",
                         help="the departments' broker passwords ('acl password --departments "
                              "FILE'; default $GRIDDISPATCH_DEPARTMENT_CREDENTIALS): on a secure "
                              "broker a department's answer goes out as the department's own "
                              "principal, and is refused without its password")
    add_rules_dir(console)
    verbs = console.add_subparsers(dest="console_verb", metavar="VERB", required=False)
    user = group(verbs, "console user", dest="user_verb")

    add = command(user, "console user add", user_add)
    add.add_argument("username", metavar="USERNAME", help="e.g. wangfang (a-z, 0-9, . _ -)")
    add.add_argument("--role", required=True, choices=ROLES, metavar="ROLE",
                     help="county, township, department or viewer (read-only)")
    add.add_argument("--scope", metavar="CODE",
                     help="township: 9-digit code (330110005); department: its code "
                          "(330110005.zhzf); county: optional 6-digit code; viewer: none")
    add.add_argument("--name", metavar="NAME", help="display name, e.g. 王芳 (default: USERNAME)")
    _file_options(add)

    passwd = command(user, "console user passwd", user_passwd)
    passwd.add_argument("username", metavar="USERNAME")
    _file_options(passwd)

    _file_options(command(user, "console user list", user_list))


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help=USERS_HELP)
    parser.add_argument("--rules-dir", type=Path, default=argparse.SUPPRESS,
                        help="rules folder (default: $GRIDDISPATCH_RULES or rules)")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got '{text}'")
    return value


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


# --- serve ------------------------------------------------------------------------------------

def run_console(args: argparse.Namespace, settings: Settings) -> int:
    """The server is imported here, not at the top: it pulls in aiohttp and Jinja2, which the
    account verbs do not need. It gets ``args.users`` resolved to a path and the settings
    with ``--rules-dir`` applied."""
    from connectors.console.server import serve

    start_logging()
    args.users = users_path(args.users)
    return serve(args, settings.with_(rules_dir=args.rules_dir))


# --- accounts ---------------------------------------------------------------------------------

def place_problem(role: str, scope: str | None, rules_dir: Path) -> str | None:
    """Why a well-formed scope names no place or department of the registry (None when it
    does): a user scoped to a mistyped code would sign in and see an empty console."""
    if scope is None or role not in ("township", "department", "county"):
        return None
    path = rules_dir / "reference" / "departments.yaml"
    codes = DepartmentRegistry.load(path).by_code  # FileProblems → printed by main, exit 1
    places = {code.split(".")[0] for code in codes}
    if role == "department" and scope not in codes:
        return f"unknown department '{scope}': not in {path}"
    if role == "township" and scope not in places:
        return f"unknown township '{scope}': no department of {path} is at it"
    if role == "county" and not any(place.startswith(scope) for place in places):
        return f"unknown county '{scope}': no department of {path} is in it"
    return None


def read_password(prompt: str) -> str:
    """One line from a pipe, or typed twice unseen at a terminal (a typo would lock the
    user out); too short is refused before the second prompt."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        if not line.strip():
            raise AccountError("no password on standard input (expected one line)", "password")
        password = line.rstrip("\r\n")
        problem = password_problem(password)
        if problem:
            raise AccountError(problem, "password")
        return password
    password = getpass.getpass(f"{prompt}: ")
    problem = password_problem(password)
    if problem:
        raise AccountError(problem, "password")
    if getpass.getpass(f"{prompt} (again): ") != password:
        raise AccountError("the two passwords differ; nothing was changed", "password")
    return password


def user_add(args: argparse.Namespace, settings: Settings) -> int:
    path = users_path(args.users)
    name = args.name if args.name is not None else args.username
    for problem in (username_problem(args.username), scope_problem(args.role, args.scope),
                    name_problem(name)):
        if problem:
            return _fail(problem)
    accounts = UsersFile.load(path)  # FileProblems → printed by main, exit 1
    if args.username in accounts:
        return _fail(f"user '{args.username}' already exists in {path}; change the password "
                     f"with 'griddispatch console user passwd {args.username}'")
    rules_dir = args.rules_dir if args.rules_dir is not None else settings.rules_dir
    problem = place_problem(args.role, args.scope, rules_dir)
    if problem:
        return _fail(problem)
    try:
        password = read_password(f"password for {args.username}")
        accounts.add(ConsoleUser(username=args.username, name=name, role=args.role,
                                 scope=args.scope, password_hash=hash_password(password)))
    except AccountError as exc:
        return _fail(str(exc))
    accounts.save()
    print(f"added {args.username} ({args.role}{f' {args.scope}' if args.scope else ''}) "
          f"to {path}")
    return 0


def user_passwd(args: argparse.Namespace, settings: Settings) -> int:
    path = users_path(args.users)
    accounts = UsersFile.load(path)
    if args.username not in accounts:
        return _fail(f"no user '{args.username}' in {path}; add one with "
                     "'griddispatch console user add'")
    try:
        accounts.set_password(args.username, read_password(f"new password for {args.username}"))
    except AccountError as exc:
        return _fail(str(exc))
    accounts.save()
    print(f"changed the password of {args.username} in {path} (cookies already issued stay "
          "valid until they expire)")
    return 0


def scope_text(user: ConsoleUser) -> str:
    if user.scope is not None:
        return user.scope
    return "all" if user.role == "county" else "-"


def user_list(args: argparse.Namespace, settings: Settings) -> int:
    path = users_path(args.users)
    accounts = UsersFile.load(path)
    if not accounts.users:
        print(f"no users in {path}; add one with 'griddispatch console user add'",
              file=sys.stderr)
        return 0
    rows = [(u.username, u.role, scope_text(u), u.name) for u in accounts.users]
    print(grid(("username", "role", "scope", "name"), rows, numeric_from=4))
    return 0


__all__ = ["register"]
