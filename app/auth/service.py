"""Bearer tokens (env or hashed rows), signed session cookies for the pages, CSRF tokens."""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.auth import repository
from app.auth.models import ApiToken
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound

TOKEN_PREFIX = "td_"
SESSION_SECONDS = 7 * 24 * 3600
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def auth_enabled(db: Session | Connection, settings: Settings) -> bool:
    """On as soon as any token exists, in TUNEDECK_API_TOKENS or in the token table."""
    return bool(settings.token_list) or repository.any_token(db)


def is_env_token(settings: Settings, token: str) -> bool:
    """Whether token is one of TUNEDECK_API_TOKENS (no database needed)."""
    return _names_env_token(settings, hash_token(token))


def _names_env_token(settings: Settings, token_hash: str) -> bool:
    return any(hmac.compare_digest(hash_token(known), token_hash)
               for known in settings.token_list)


def check_token(db: Session | Connection, settings: Settings,
                token: str) -> tuple[str, int | None] | None:
    """(the token's hash, the id of its row when last_used_at is due), or None if invalid."""
    token_hash = hash_token(token)
    if _names_env_token(settings, token_hash):
        return token_hash, None
    row = repository.token_use(db, token_hash)
    if row is None:
        return None
    due = row.last_used_at is None or utcnow() - row.last_used_at > LAST_USED_RESOLUTION
    return token_hash, row.id if due else None


def identify(session: Session, settings: Settings, token: str) -> str | None:
    """The token's hash if it is valid, else None; token rows get last_used_at."""
    found = check_token(session, settings, token)
    if found is None:
        return None
    token_hash, due = found
    if due is not None:
        repository.mark_used(session, due, utcnow())
    return token_hash


def is_current(db: Session | Connection, settings: Settings, token_hash: str) -> bool:
    """Whether a token hash still names an env token or a row (revocation ends sessions)."""
    return (_names_env_token(settings, token_hash)
            or repository.token_use(db, token_hash) is not None)


def api_access(db: Session | Connection, settings: Settings, bearer: str | None,
               session_cookie: str | None) -> tuple[str, int | None]:
    """An API request's verdict: ("open" | "ok" | "wrong" | "missing", a token row id whose
    last_used_at is due). session_cookie counts only for reads (the caller passes None else)."""
    if not auth_enabled(db, settings):
        return "open", None
    if bearer is not None:
        found = check_token(db, settings, bearer)
        return ("wrong", None) if found is None else ("ok", found[1])
    if session_user(db, settings, session_cookie) is not None:
        return "ok", None
    return "missing", None


# ---------------------------------------------------------------- token rows


def create_token(session: Session, name: str) -> tuple[ApiToken, str]:
    """A new token row; the plain token is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("name", "a token name is 1 to 100 characters")
    if repository.by_name(session, name) is not None:
        raise Conflict(f"a token named {name!r} exists; revoke it first or pick another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def revoke_token(session: Session, name: str) -> None:
    row = repository.by_name(session, name)
    if row is None:
        raise NotFound(f"no token named {name!r}")
    repository.end_sessions_of(session, row.token_hash)
    session.delete(row)
    session.flush()


# ---------------------------------------------------------------- the signing key

MIN_KEY_BYTES = 32


class WeakSecretKey(RuntimeError):
    """The signing key is empty or short: nothing may be signed with it."""


def secret_key(settings: Settings) -> bytes:
    """TUNEDECK_SECRET_KEY, else a random key kept in data_dir/secret_key (mode 0600).

    An empty TUNEDECK_SECRET_KEY means "use the file" (.env.example ships it empty). A key of
    under MIN_KEY_BYTES raises WeakSecretKey: `serve` refuses to start, and a request that
    would sign with it fails instead of signing with a guessable key.
    """
    if settings.secret_key:
        key = settings.secret_key.get_secret_value().encode()
        if len(key) < MIN_KEY_BYTES:
            raise WeakSecretKey(
                f"TUNEDECK_SECRET_KEY is {len(key)} bytes; it needs at least {MIN_KEY_BYTES}. "
                f"{_MAKE_KEY}, or leave it empty to use a generated key in the data dir.")
        return key
    return _stored_key(str(settings.data_dir.resolve()))


_MAKE_KEY = ("Set TUNEDECK_SECRET_KEY to a random value, e.g. the output of "
             "python -c 'import secrets; print(secrets.token_urlsafe(48))'")


@lru_cache
def _stored_key(data_dir: str) -> bytes:
    path = Path(data_dir) / "secret_key"
    if not path.exists():
        _write_new_key(path)
    key = path.read_bytes().strip()
    if len(key) < MIN_KEY_BYTES:
        raise WeakSecretKey(
            f"{path} holds {len(key)} bytes; a secret key needs at least {MIN_KEY_BYTES} (a disk "
            "that filled up can leave it empty). Delete the file and tunedeck writes a new one "
            f"(browsers then log in again); or: {_MAKE_KEY}.")
    return key


def _write_new_key(path: Path) -> None:
    """A new key, all or nothing: written and fsynced under a temporary name, then linked.

    os.link, not os.replace: it fails when another process (a second web worker starting at
    the same time) linked its key first, and then both use the one on disk.
    """
    tmp = path.with_name(f".secret_key.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(48).encode())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- cookies and CSRF tokens
# A hand-written HMAC-SHA256 rather than itsdangerous: it is not among the web process's
# dependencies, and these ~20 lines (sign, constant-time check, expiry) are all we would use.


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac.new(key, f"{purpose}|{payload}".encode(), hashlib.sha256).digest())


def make_session(session: Session, settings: Settings, token_hash: str) -> str:
    """A new web session row and its signed cookie value, valid SESSION_SECONDS."""
    session_id = secrets.token_urlsafe(32)
    expires = int(time.time()) + SESSION_SECONDS
    repository.add_session(session, session_id, token_hash,
                           utcnow() + timedelta(seconds=SESSION_SECONDS), utcnow())
    body = {"s": session_id, "exp": expires}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret_key(settings), 'session', payload)}"


def read_session(settings: Settings, value: str | None) -> str | None:
    """The session id in a validly signed, unexpired cookie, else None (no database)."""
    payload, _, signature = (value or "").partition(".")
    expected = _sign(secret_key(settings), "session", payload)
    if not payload or not _same(signature, expected):
        return None
    try:
        body = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("s"), str):
        return None
    return body["s"] if body.get("exp", 0) > time.time() else None


def session_user(db: Session | Connection, settings: Settings,
                 value: str | None) -> str | None:
    """The token hash behind a session cookie, while the session is live (not logged out,
    not expired) and its token still exists (revoking a token ends its sessions)."""
    session_id = read_session(settings, value)
    if session_id is None:
        return None
    token_hash = repository.live_session(db, session_id, utcnow())
    if token_hash is None or not is_current(db, settings, token_hash):
        return None
    return token_hash


def end_session(session: Session, settings: Settings, value: str | None) -> None:
    """Logout: the cookie's session row goes, so a copy of the cookie is worthless."""
    session_id = read_session(settings, value)
    if session_id is not None:
        repository.end_session(session, session_id)


def csrf_token(settings: Settings, binding: str) -> str:
    """Bound to the session cookie ("s:<cookie>") or a browser's own random CSRF cookie
    ("a:<value>"), so a token is worth nothing to another browser."""
    return _sign(secret_key(settings), "csrf", binding)


def csrf_ok(settings: Settings, binding: str | None, presented: str | None) -> bool:
    if not binding or not presented:
        return False
    return _same(presented, csrf_token(settings, binding))


def _same(a: str, b: str) -> bool:
    """Constant-time comparison that tolerates any characters a client sends."""
    return hmac.compare_digest(a.encode(), b.encode())


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0 included) reaches the network."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
