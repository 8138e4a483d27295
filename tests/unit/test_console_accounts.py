"""The console's accounts and sessions, and ``griddispatch console user``, without a server.

Passwords are hashed with the real Argon2 defaults (about 50 ms each), so what is tested is
what runs; the few tests that need an outdated hash make one with cheaper parameters.
"""

from __future__ import annotations

import io
import stat
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from connectors.console import accounts
from connectors.console.accounts import (
    AccountError,
    User,
    UsersFile,
    authenticate,
    hash_password,
    scope_problem,
    users_path,
    verify_and_update,
    verify_password,
)
from connectors.console.sessions import Sessions, load_or_create_secret, secret_path
from engine.cli import main
from engine.report.table import width
from engine.yamlfile import FileProblems

REPO = Path(__file__).resolve().parents[2]
RULES = ["--rules-dir", str(REPO / "rules")]
PASSWORD = "correct horse battery"
SECRET = bytes(range(32))


@pytest.fixture(scope="module")
def a_hash() -> str:
    return hash_password(PASSWORD)


def user(username: str, a_hash: str, role: accounts.Role = "viewer", scope: str | None = None,
         name: str = "王芳") -> User:
    return User(username=username, name=name, role=role, scope=scope, password_hash=a_hash)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the users file ---------------------------------------------------------------------------

def test_users_file_round_trip_keeps_chinese_names_as_text(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "deep" / "users.yaml"  # its folder is created
    accounts_ = UsersFile.load(path)
    assert accounts_.users == []  # a missing file is no users yet
    written = [user("wangfang", a_hash, "county", None, "王芳（指挥中心）"),
               user("li.lei", a_hash, "township", "330110005", "李雷"),
               user("zhzf-05", a_hash, "department", "330110005.zhzf", "五常街道综合执法队"),
               user("guest_1", a_hash, "viewer", None, "Visitor")]
    for one in written:
        accounts_.add(one)
    accounts_.save()
    text = path.read_text(encoding="utf-8")
    assert "王芳（指挥中心）" in text and "\\u" not in text  # readable UTF-8, not escapes
    assert "'330110005'" in text  # quoted: read back as text, not a number
    again = UsersFile.load(path)
    assert again.users == sorted(written, key=lambda u: u.username)
    assert again.get("li.lei") == written[1]
    assert again.get("nobody") is None
    assert "wangfang" in again and len(again) == 4


def test_users_file_is_private_and_replaced_whole(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "users.yaml"
    accounts_ = UsersFile(path, [user("wangfang", a_hash)])
    accounts_.save()
    assert mode(path) == 0o600
    path.chmod(0o644)
    accounts_.remove("wangfang")
    accounts_.save()
    assert mode(path) == 0o600  # the new file, not the old one's mode
    assert UsersFile.load(path).users == []
    assert [p.name for p in tmp_path.iterdir()] == ["users.yaml"]  # no temporary file left


def test_add_refuses_a_duplicate_and_unknown_users_are_named(tmp_path: Path,
                                                            a_hash: str) -> None:
    accounts_ = UsersFile(tmp_path / "u.yaml", [user("wangfang", a_hash)])
    with pytest.raises(AccountError, match="already exists"):
        accounts_.add(user("wangfang", a_hash))
    with pytest.raises(AccountError, match="no user 'lilei'"):
        accounts_.set_password("lilei", PASSWORD)
    with pytest.raises(AccountError, match="no user 'lilei'"):
        accounts_.remove("lilei")


def test_a_broken_file_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("users:\n  - username: wangfang\n    name: [王芳\n", encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        UsersFile.load(path)
    assert str(caught.value).startswith(f"{path}:4: YAML syntax error")


def test_a_wrong_entry_is_reported_at_its_line(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(f"""users:
  - username: wangfang
    name: 王芳
    role: township
    scope: 3301100
    password_hash: '{a_hash}'
  - username: lilei
    name: 李雷
    role: viewer
    password: hunter2hunter2
  - username: wangfang
    name: 王芳
    role: county
    scope: null
    password_hash: '{a_hash}'
""", encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        UsersFile.load(path)
    lines = [str(p) for p in caught.value.problems]
    assert lines[0].startswith(f"{path}:5: a township user needs --scope with a 9-digit")
    assert f"{path}:10: unknown key 'password': remove it or check its spelling" in lines
    assert f"{path}:7: missing required key 'password_hash'" in lines
    assert len(lines) == 3  # the second wangfang is fine on its own: the first was refused


def test_a_duplicate_user_and_a_plain_password_are_refused(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(f"""users:
  - {{username: wangfang, name: 王芳, role: township, scope: 330110005, password_hash: '{a_hash}'}}
  - {{username: wangfang, name: 王芳, role: viewer, scope: null, password_hash: '{a_hash}'}}
  - {{username: lilei, name: 李雷, role: viewer, password_hash: hunter2hunter2}}
""", encoding="utf-8")
    with pytest.raises(FileProblems) as caught:
        UsersFile.load(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: user 'wangfang' is defined twice (first at line 2)",
        f"{path}:4: password_hash is not an Argon2 hash ($argon2id$...): never put a password "
        "in the file; set it with 'griddispatch console user passwd lilei'"]


def test_an_unquoted_township_code_still_loads(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(f"users:\n  - {{username: lilei, name: 李雷, role: township, "
                    f"scope: 330110005, password_hash: '{a_hash}'}}\n", encoding="utf-8")
    assert UsersFile.load(path).users[0].scope == "330110005"


@pytest.mark.parametrize("role, scope, wrong", [
    ("county", None, None),
    ("county", "330110", None),
    ("county", "330110005", "6-digit county code"),
    ("township", "330110005", None),
    ("township", None, "needs --scope with a 9-digit township code"),
    ("township", "330110", "9-digit"),
    ("township", "330110005.zhzf", "9-digit"),
    ("department", "330110005.zhzf", None),
    ("department", "330110.scjg", None),
    ("department", "330110005", "department code as in rules/reference/departments.yaml"),
    ("department", "330110005.ZHZF", "department code"),
    ("department", None, "department code"),
    ("viewer", None, None),
    ("viewer", "330110", "takes no scope"),
    ("admin", None, "unknown role 'admin'"),
])
def test_scope_fits_role(role: str, scope: str | None, wrong: str | None, a_hash: str) -> None:
    problem = scope_problem(role, scope)
    if wrong is None:
        assert problem is None
        user("someone", a_hash, role, scope)  # type: ignore[arg-type]
    else:
        assert problem is not None and wrong in problem
        with pytest.raises(AccountError, match=r"scope|role") as caught:
            user("someone", a_hash, role, scope)  # type: ignore[arg-type]
        assert caught.value.field == ("role" if role == "admin" else "scope")


@pytest.mark.parametrize("username, ok", [
    ("wangfang", True), ("li.lei", True), ("zhzf-05", True), ("a_1", True), ("0x", True),
    ("a", False), ("Wangfang", False), ("-lead", False), (".hidden", False), ("王芳", False),
    ("wang fang", False), ("a" * 32, True), ("a" * 33, False),
])
def test_usernames(username: str, ok: bool, a_hash: str) -> None:
    assert (accounts.username_problem(username) is None) is ok
    if not ok:
        with pytest.raises(AccountError, match="username"):
            user(username, a_hash)


@pytest.mark.parametrize("name", ["", "   ", "王芳\n", "x" * 65])
def test_display_names_are_one_short_line(name: str, a_hash: str) -> None:
    with pytest.raises(AccountError, match="display name"):
        user("wangfang", a_hash, name=name)


# --- passwords --------------------------------------------------------------------------------

def test_passwords_verify_and_wrong_ones_are_false_not_errors(a_hash: str) -> None:
    assert a_hash.startswith("$argon2id$") and PASSWORD not in a_hash
    assert verify_password(a_hash, PASSWORD)
    assert not verify_password(a_hash, PASSWORD + "!")
    assert not verify_password(a_hash, "")
    assert not verify_password("$argon2id$garbage", PASSWORD)  # unreadable hash: no, not a crash
    assert not verify_password("not a hash", PASSWORD)


def test_full_width_input_is_the_same_password() -> None:
    """NFKC: what a Chinese input method types in full-width form still signs in."""
    assert verify_password(hash_password("ｇｒｉｄ２０２６ｐａｓｓ"), "grid2026pass")


def test_short_passwords_are_refused_clearly() -> None:
    with pytest.raises(AccountError, match="too short: at least 10 characters"):
        hash_password("123456789")
    assert verify_password(hash_password("1234567890"), "1234567890")


def test_verify_and_update_asks_for_a_rehash_of_outdated_hashes(a_hash: str) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    assert verify_and_update(old, PASSWORD) == (True, True)
    assert verify_and_update(old, "wrong password") == (False, False)
    assert verify_and_update(a_hash, PASSWORD) == (True, False)


def test_authenticate_rehashes_into_the_file(tmp_path: Path, a_hash: str) -> None:
    path = tmp_path / "users.yaml"
    old = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    UsersFile(path, [user("wangfang", old), user("lilei", a_hash)]).save()
    assert authenticate(path, "wangfang", "wrong password") is None
    assert UsersFile.load(path).get("wangfang") == user("wangfang", old)  # untouched
    signed_in = authenticate(path, "wangfang", PASSWORD)
    assert signed_in is not None and signed_in.password_hash != old
    assert UsersFile.load(path).get("wangfang") == signed_in  # the new hash was stored
    assert verify_and_update(signed_in.password_hash, PASSWORD) == (True, False)
    assert authenticate(path, "nobody", PASSWORD) is None


# --- sessions ---------------------------------------------------------------------------------

def test_a_session_cookie_reads_back() -> None:
    keeper = Sessions(SECRET)
    cookie = keeper.issue("wangfang")
    session = keeper.read(cookie)
    assert session is not None and session.username == "wangfang"
    assert len(session.session_id) >= 16 and session.issued_at.tzinfo is not None
    other = keeper.read(keeper.issue("wangfang"))
    assert other is not None and other.session_id != session.session_id


def test_a_tampered_or_foreign_cookie_is_no_session() -> None:
    keeper = Sessions(SECRET)
    cookie = keeper.issue("wangfang")
    payload, _, rest = cookie.partition(".")
    signature = rest.rpartition(".")[2]
    forged = Sessions(bytes(32)).issue("admin")  # signed with another secret

    def other(char: str) -> str:  # the first character of base64 is always significant
        return "B" if char == "A" else "A"

    for bad in (other(payload[0]) + cookie[1:],
                cookie[:-len(signature)] + other(signature[0]) + signature[1:],
                forged, forged.partition(".")[0] + "." + rest, "", "garbage", payload):
        assert keeper.read(bad) is None, bad


def test_a_cookie_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_000.0]
    monkeypatch.setattr("itsdangerous.timed.time", types.SimpleNamespace(time=lambda: now[0]))
    keeper = Sessions(SECRET, max_age_seconds=3600)
    cookie = keeper.issue("wangfang")
    now[0] += 3600
    assert keeper.read(cookie) is not None
    now[0] += 1
    assert keeper.read(cookie) is None
    assert Sessions(SECRET, max_age_seconds=7200).read(cookie) is not None  # same secret, longer


def test_sessions_refuse_weak_settings() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sessions(b"short")
    with pytest.raises(ValueError, match="at least 1"):
        Sessions(SECRET, max_age_seconds=0)


def test_csrf_tokens_are_bound_to_their_session() -> None:
    keeper = Sessions(SECRET)
    mine = keeper.read(keeper.issue("wangfang"))
    theirs = keeper.read(keeper.issue("wangfang"))
    assert mine is not None and theirs is not None
    token = keeper.csrf_token(mine)
    assert keeper.csrf_token(mine) == token  # stable for the whole session
    assert keeper.check_csrf(mine, token)
    assert not keeper.check_csrf(theirs, token)
    assert not keeper.check_csrf(mine, token[:-1])
    assert not keeper.check_csrf(mine, "")
    assert not keeper.check_csrf(mine, "令牌")
    assert not Sessions(bytes(32)).check_csrf(mine, token)
    # a CSRF token is no cookie: different salts
    assert keeper.read(token) is None and keeper.read(f"{mine.session_id}.{token}") is None


def test_the_secret_is_made_once_and_private(tmp_path: Path) -> None:
    path = secret_path(tmp_path / "console-users.yaml")
    assert path == tmp_path / "console-users.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32 and mode(path) == 0o600
    assert load_or_create_secret(path) == secret
    assert [p.name for p in tmp_path.iterdir()] == ["console-users.secret"]
    path.write_bytes(b"short")
    with pytest.raises(FileProblems, match="delete the file"):
        load_or_create_secret(path)


def test_users_path_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert users_path(Path("x.yaml"), {"GRIDDISPATCH_CONSOLE_USERS": "y.yaml"}) == Path("x.yaml")
    assert users_path(None, {"GRIDDISPATCH_CONSOLE_USERS": "y.yaml"}) == Path("y.yaml")
    assert users_path(None, {}) == Path(".stack/console-users.yaml")


# --- the CLI ----------------------------------------------------------------------------------

def cli(monkeypatch: pytest.MonkeyPatch, stdin: str, *argv: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["console", "user", *argv])


def test_cli_add_passwd_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    users = str(tmp_path / "users.yaml")
    assert cli(monkeypatch, f"{PASSWORD}\n", "add", "wangfang", "--role", "county",
               "--name", "王芳", "--users", users, *RULES) == 0
    assert "added wangfang (county) to" in capsys.readouterr().out
    assert mode(Path(users)) == 0o600
    # the file options also work before 'user'
    monkeypatch.setattr(sys, "stdin", io.StringIO("another long password\r\n"))
    assert main(["console", "--users", users, *RULES, "user", "add", "zhzf05", "--role",
                 "department", "--scope", "330110005.zhzf",
                 "--name", "五常街道综合行政执法中队"]) == 0
    assert cli(monkeypatch, "third long password\n", "add", "guest", "--role", "viewer",
               "--users", users) == 0
    accounts_ = UsersFile.load(Path(users))
    stored = accounts_.get("zhzf05")
    assert stored is not None and stored.scope == "330110005.zhzf"
    assert verify_password(stored.password_hash, "another long password")  # no \r kept
    assert accounts_.get("guest") == User("guest", "guest", "viewer", None,
                                          accounts_.get("guest").password_hash)  # type: ignore[union-attr]
    capsys.readouterr()

    assert cli(monkeypatch, "a new password!\n", "passwd", "wangfang", "--users", users) == 0
    assert "changed the password of wangfang" in capsys.readouterr().out
    assert authenticate(Path(users), "wangfang", "a new password!") is not None
    assert authenticate(Path(users), "wangfang", PASSWORD) is None

    assert cli(monkeypatch, "", "list", "--users", users) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["username", "role", "scope", "name"]
    assert [line.split()[:3] for line in out[2:]] == [
        ["guest", "viewer", "-"], ["wangfang", "county", "all"],
        ["zhzf05", "department", "330110005.zhzf"]]
    # aligned by terminal columns: every name starts at the same column, Chinese or not
    starts = {width(line[:line.rindex(line.split()[-1])]) for line in out[2:]}
    assert len(starts) == 1
    assert "五常街道综合行政执法中队" in out[-1] and "$argon2" not in "\n".join(out)


@pytest.mark.parametrize("argv, stdin, message", [
    (["add", "wangfang", "--role", "county"], "short\n", "too short: at least 10 characters"),
    (["add", "wangfang", "--role", "county"], "", "no password on standard input"),
    (["add", "Wang", "--role", "county"], PASSWORD, "username 'Wang' is not allowed"),
    (["add", "lilei", "--role", "township"], PASSWORD, "needs --scope with a 9-digit"),
    (["add", "lilei", "--role", "township", "--scope", "330110999"], PASSWORD,
     "unknown township '330110999'"),
    (["add", "lilei", "--role", "department", "--scope", "330110005.nope"], PASSWORD,
     "unknown department '330110005.nope'"),
    (["add", "lilei", "--role", "county", "--scope", "330111"], PASSWORD,
     "unknown county '330111'"),
    (["add", "lilei", "--role", "viewer", "--name", " "], PASSWORD, "display name is empty"),
    (["add", "existing", "--role", "viewer"], PASSWORD, "user 'existing' already exists"),
    (["passwd", "nobody"], PASSWORD, "no user 'nobody' in"),
    (["passwd", "existing"], "too short\n", "too short"),
])
def test_cli_usage_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str,
                          message: str, a_hash: str) -> None:
    users = tmp_path / "users.yaml"
    UsersFile(users, [user("existing", a_hash)]).save()
    before = users.read_bytes()
    assert cli(monkeypatch, stdin, *argv, "--users", str(users), *RULES) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert users.read_bytes() == before  # nothing written


def test_cli_list_of_no_users_and_of_a_broken_file(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.yaml"
    assert cli(monkeypatch, "", "list", "--users", str(users)) == 0
    assert "no users in" in capsys.readouterr().err
    users.write_text("users: [\n", encoding="utf-8")
    assert cli(monkeypatch, "", "list", "--users", str(users)) == 1
    assert capsys.readouterr().err.startswith(f"error: {users}:2: YAML syntax error")


def test_cli_prompts_twice_at_a_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    users = tmp_path / "users.yaml"
    assert main(["console", "user", "add", "lilei", "--role", "viewer",
                 "--users", str(users)]) == 1
    assert "the two passwords differ" in capsys.readouterr().err and not users.exists()
    answers = iter([PASSWORD, PASSWORD])
    assert main(["console", "user", "add", "lilei", "--role", "viewer",
                 "--users", str(users)]) == 0


def test_console_without_a_verb_serves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def serve(args: object, settings: object) -> int:
        seen.update(args=args, settings=settings)
        return 0

    monkeypatch.setitem(sys.modules, "connectors.console.server",
                        types.SimpleNamespace(serve=serve))
    monkeypatch.setenv("GRIDDISPATCH_CONSOLE_USERS", str(tmp_path / "u.yaml"))
    assert main(["console", "--port", "9001", *RULES]) == 0
    args = seen["args"]
    assert (args.host, args.port, args.users) == ("127.0.0.1", 9001, tmp_path / "u.yaml")
    assert args.console_verb is None
    assert seen["settings"].rules_dir == REPO / "rules"
    with pytest.raises(SystemExit):
        main(["console", "--port", "70000"])

