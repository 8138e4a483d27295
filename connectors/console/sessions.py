"""Signed session cookies and CSRF tokens, kept by the browser rather than by the server.

A cookie carries the username and a random session id, signed (HMAC-SHA256, itsdangerous)
with a secret only the server knows, and dated: the server needs no session store, and a
cookie that was altered or is older than ``max_age_seconds`` reads as no session at all.
Each purpose signs with its own salt, so a CSRF token can never pass as a cookie or back.

What a cookie cannot do is end early: signing out deletes it in the browser only, and a
password change leaves older cookies valid until they expire. So the server must look the
username up on every request (removing a user then takes effect at once), and a suspected
stolen cookie is revoked for everyone by deleting the secret file and restarting.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from itsdangerous import BadData, Signer, URLSafeTimedSerializer

from engine.runtime.private_file import write_private
from engine.yamlfile import FileProblem, FileProblems

SECRET_BYTES = 32
SESSION_SALT = "griddispatch.console.session"
CSRF_SALT = "griddispatch.console.csrf"
DEFAULT_MAX_AGE = 12 * 3600  # one working day and its overtime: signed in once per shift


@dataclass(frozen=True)
class Session:
    username: str
    session_id: str
    issued_at: datetime  # UTC


class Sessions:
    def __init__(self, secret: bytes, max_age_seconds: int = DEFAULT_MAX_AGE):
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the session secret must be at least {SECRET_BYTES} bytes")
        if max_age_seconds < 1:
            raise ValueError("max_age_seconds must be at least 1")
        self.max_age_seconds = max_age_seconds
        self._cookies = URLSafeTimedSerializer(
            secret, salt=SESSION_SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._csrf = Signer(secret, salt=CSRF_SALT, digest_method=hashlib.sha256)

    def issue(self, username: str) -> str:
        """A new cookie value; the random id makes every sign-in's cookie and CSRF token
        different, even for the same user in the same second."""
        return self._cookies.dumps({"u": username, "s": secrets.token_urlsafe(16)})

    def read(self, cookie: str) -> Session | None:
        try:
            data: Any
            data, issued = self._cookies.loads(cookie, max_age=self.max_age_seconds,
                                               return_timestamp=True)
        except BadData:  # tampered, malformed or expired (SignatureExpired)
            return None
        if not (isinstance(data, dict) and isinstance(data.get("u"), str)
                and isinstance(data.get("s"), str)):
            return None
        return Session(username=data["u"], session_id=data["s"], issued_at=issued)

    def csrf_token(self, session: Session) -> str:
        """An HMAC of the session id: a page of another site cannot read it, and it is worth
        nothing with any other session (a new sign-in changes it)."""
        return self._csrf.get_signature(session.session_id).decode("ascii")

    def check_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session).encode("ascii"),
                                   token.encode("utf-8", "surrogateescape"))


def secret_path(users_file: Path) -> Path:
    """The secret lives beside the users file: whoever may read one may read the other."""
    return users_file.with_name(users_file.stem + ".secret")


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret, made on first use: 32 random bytes, mode 0600.

    Created under a temporary name and linked into place, so two servers starting together
    agree on one secret and neither ever reads a half-written file."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(temp, secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            temp.unlink()
        secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise FileProblems([FileProblem(str(path), 0, (
            f"the session secret is {len(secret)} bytes, expected {SECRET_BYTES}; delete the "
            "file to make a new one (everyone will have to sign in again)"))])
    return secret
