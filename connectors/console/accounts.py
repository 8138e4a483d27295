"""The console's accounts: who may sign in, what they may see, and their password hashes.

Accounts live in one small YAML file an operator can read and back up (``users:`` list),
not in a database: a console has tens of users, and ``griddispatch console user`` edits it.
The file is written whole to a temporary file and renamed over the old one, mode 0600, so a
crash mid-write never leaves half a file and no other local user can read the hashes.

Passwords are hashed with Argon2id (argon2-cffi's defaults, the RFC 9106 low-memory profile);
when those defaults move on, a successful sign-in re-hashes the password with the new ones.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.console.access import ROLES, Role
from engine.reference.departments import DEPARTMENT_CODE
from engine.runtime.private_file import write_private
from engine.yamlfile import FileProblem, FileProblems, LoadedYaml, load_yaml

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_LENGTH = 10
MAX_NAME_LENGTH = 64
USERS_ENV = "GRIDDISPATCH_CONSOLE_USERS"
DEFAULT_USERS_FILE = Path(".stack/console-users.yaml")
FIELDS = ("username", "name", "role", "scope", "password_hash")

_TOWNSHIP = re.compile(r"^\d{9}$")
_COUNTY = re.compile(r"^\d{6}$")
_DEPARTMENT = re.compile(DEPARTMENT_CODE)
_HASHER = PasswordHasher()


class AccountError(ValueError):
    """A username, role, scope, name or password that cannot be accepted, in a sentence an
    operator can act on; ``field`` says which, so a file problem can point at its line."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def username_problem(username: str) -> str | None:
    if USERNAME.match(username):
        return None
    return (f"username '{username}' is not allowed: 2 to 32 characters of a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit")


def scope_problem(role: str, scope: str | None) -> str | None:
    """Why ``scope`` does not fit ``role`` (None when it does): the scope is what the server
    filters every case list by, so a township user without a township would see nothing
    and a viewer with one would suggest a restriction that is not enforced."""
    if role not in ROLES:
        return f"unknown role '{role}': expected one of {', '.join(ROLES)}"
    if role == "township":
        if scope is None or not _TOWNSHIP.match(scope):
            return (f"a township user needs --scope with a 9-digit township code "
                    f"(e.g. 330110005), got {_shown(scope)}")
    elif role == "department":
        if scope is None or not _DEPARTMENT.match(scope):
            return (f"a department user needs --scope with a department code as in "
                    f"rules/reference/departments.yaml (e.g. 330110005.zhzf), got {_shown(scope)}")
    elif role == "county":
        if scope is not None and not _COUNTY.match(scope):
            return (f"a county user's scope is a 6-digit county code (e.g. 330110), or none for "
                    f"the whole territory; got {_shown(scope)}")
    elif scope is not None:
        return ("a viewer sees the whole territory read-only and takes no scope; "
                f"got {_shown(scope)}")
    return None


def _shown(scope: str | None) -> str:
    return "no scope" if scope is None else f"'{scope}'"


def name_problem(name: str) -> str | None:
    if not name.strip():
        return "the display name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the display name is longer than {MAX_NAME_LENGTH} characters"
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "the display name contains a control character (a newline or tab?)"
    return None


@dataclass(frozen=True)
class User:
    """One account. Checked when built, so no code path (file, CLI, server) can hold a user
    whose scope does not fit its role."""

    username: str
    name: str
    role: Role
    scope: str | None
    password_hash: str

    def __post_init__(self) -> None:
        for field, problem in (("username", username_problem(self.username)),
                               ("name", name_problem(self.name)),
                               ("scope" if self.role in ROLES else "role",
                                scope_problem(self.role, self.scope))):
            if problem:
                raise AccountError(problem, field)
        if not self.password_hash.startswith("$argon2"):
            raise AccountError("password_hash is not an Argon2 hash ($argon2id$...): never put "
                               "a password in the file; set it with 'griddispatch console user "
                               f"passwd {self.username}'", "password_hash")


# --- passwords --------------------------------------------------------------------------------

def _normalized(password: str) -> str:
    """NFKC, as NIST SP 800-63B advises: the same password typed through a Chinese input
    method (full-width letters and digits) or a decomposed accent must hash the same."""
    return unicodedata.normalize("NFKC", password)


def password_problem(password: str) -> str | None:
    if len(_normalized(password)) < MIN_PASSWORD_LENGTH:
        return (f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters "
                "(a passphrase of a few words is easy to remember)")
    return None


def hash_password(password: str) -> str:
    problem = password_problem(password)
    if problem:
        raise AccountError(problem, "password")
    return _HASHER.hash(_normalized(password))


def verify_password(password_hash: str, password: str) -> bool:
    """False for a wrong password and for a hash that cannot be read: a sign-in page must
    answer "no", not fail with an exception."""
    try:
        return _HASHER.verify(password_hash, _normalized(password))
    except (VerificationError, InvalidHashError):  # VerifyMismatchError is a VerificationError
        return False


def verify_and_update(password_hash: str, password: str) -> tuple[bool, bool]:
    """(the password is right, the stored hash should be replaced): the second is true only
    for a right password whose hash was made with parameters older than today's defaults,
    the one moment the plain password is at hand to re-hash it."""
    if not verify_password(password_hash, password):
        return False, False
    return True, _HASHER.check_needs_rehash(password_hash)


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("not a password of anyone")


# --- the users file ---------------------------------------------------------------------------

def users_path(option: Path | None = None, env: dict[str, str] | None = None) -> Path:
    """``--users``, else ``$GRIDDISPATCH_CONSOLE_USERS``, else ``.stack/console-users.yaml``
    (beside the local stack's state, which is not committed)."""
    if option is not None:
        return option
    value = (os.environ if env is None else env).get(USERS_ENV)
    return Path(value) if value else DEFAULT_USERS_FILE


class UsersFile:
    """The accounts of one users file, edited in memory and written back with ``save``."""

    def __init__(self, path: Path, users: list[User] | None = None):
        self.path = path
        self._users: dict[str, User] = {u.username: u for u in users or []}

    @classmethod
    def load(cls, path: Path) -> UsersFile:
        """A missing file is no users yet (the first ``user add`` creates it); anything wrong
        in a present file raises FileProblems naming the file and the line."""
        if not path.exists():
            return cls(path)
        return cls(path, _parse(load_yaml(path)))

    @property
    def users(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.username)

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def get(self, username: str) -> User | None:
        return self._users.get(username)

    def add(self, user: User) -> None:
        if user.username in self._users:
            raise AccountError(f"user '{user.username}' already exists in {self.path}; change "
                               "their password with 'console user passwd'", "username")
        self._users[user.username] = user

    def _existing(self, username: str) -> User:
        user = self._users.get(username)
        if user is None:
            raise AccountError(f"no user '{username}' in {self.path}", "username")
        return user

    def set_password(self, username: str, password: str) -> User:
        user = replace(self._existing(username), password_hash=hash_password(password))
        self._users[username] = user
        return user

    def remove(self, username: str) -> User:
        return self._users.pop(self._existing(username).username)

    def save(self) -> None:
        entries = [{"username": u.username, "name": u.name, "role": u.role, "scope": u.scope,
                    "password_hash": u.password_hash} for u in self.users]
        text = ("# Console accounts: edit with 'griddispatch console user'. Keep this file "
                "private (mode 0600).\n"
                + yaml.safe_dump({"users": entries}, allow_unicode=True, sort_keys=False,
                                 default_flow_style=False))
        write_private(self.path, text.encode("utf-8"))


def authenticate(path: Path, username: str, password: str) -> User | None:
    """The user when the password is right, else None; made for the sign-in form.

    It reads the file afresh, so accounts added or changed with the CLI count at once without
    a server restart, and a re-hash is written into what is on disk now, not into a copy that
    may be older. An unknown username still costs one Argon2 verification, so the response
    time does not tell which usernames exist."""
    accounts = UsersFile.load(path)
    user = accounts.get(username)
    if user is None:
        verify_password(_dummy_hash(), password)
        return None
    ok, rehash = verify_and_update(user.password_hash, password)
    if not ok:
        return None
    if rehash:
        user = accounts.set_password(username, password)
        accounts.save()
    return user


def _parse(doc: LoadedYaml) -> list[User]:
    """Every user of a parsed file, or FileProblems with all that is wrong, each at its line."""
    data: Any = doc.data
    if data is None:
        return []
    if not isinstance(data, dict) or set(data) - {"users"}:
        raise FileProblems([doc.problem((), "expected one key, 'users', holding a list of "
                                            "users (username, name, role, scope, password_hash)")])
    entries = data.get("users") or []
    if not isinstance(entries, list):
        raise FileProblems([doc.problem(("users",), "'users' must be a list")])
    users: list[User] = []
    problems: list[FileProblem] = []
    first: dict[str, int] = {}
    for i, entry in enumerate(entries):
        at = ("users", i)
        if not isinstance(entry, dict):
            problems.append(doc.problem(at, "each user is a mapping of " + ", ".join(FIELDS)))
            continue
        found = [doc.problem((*at, key), f"unknown key '{key}': remove it or check its spelling")
                 for key in entry if key not in FIELDS]
        found += [doc.problem(at, f"missing required key '{key}'")
                  for key in FIELDS if key != "scope" and key not in entry]
        values: dict[str, Any] = {key: entry.get(key) for key in FIELDS}
        if isinstance(values["scope"], int) and not isinstance(values["scope"], bool):
            values["scope"] = str(values["scope"])  # an unquoted code is still the code
        found += [doc.problem((*at, key), f"'{key}' must be text")
                  for key, value in values.items() if key in entry
                  and not isinstance(value, str) and not (key == "scope" and value is None)]
        if found:
            problems += found
            continue
        try:
            user = User(**values)
        except AccountError as exc:
            problems.append(doc.problem((*at, exc.field) if exc.field else at, str(exc)))
            continue
        if user.username in first:
            problems.append(doc.problem((*at, "username"),
                                        f"user '{user.username}' is defined twice (first at "
                                        f"line {doc.line_of(('users', first[user.username]))})"))
            continue
        first[user.username] = i
        users.append(user)
    if problems:
        raise FileProblems(problems)
    return users
