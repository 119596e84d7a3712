"""Every query on API tokens."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from app.auth.models import ApiToken, WebSession

# Checked on every API request when auth uses token rows: built once, and plain rows, so
# they run on a Session or on a read_only() Connection alike.
_ANY_TOKEN = select(ApiToken.id).limit(1)
_TOKEN_USE = select(ApiToken.id, ApiToken.last_used_at).where(
    ApiToken.token_hash == bindparam("token_hash"))
_LIVE_SESSION = select(WebSession.token_hash).where(
    WebSession.id == bindparam("session_id"), WebSession.expires_at > bindparam("now"))


def any_token(db: Session | Connection) -> bool:
    return db.execute(_ANY_TOKEN).first() is not None


def token_use(db: Session | Connection, token_hash: str) -> Row | None:
    """(id, last_used_at) of the token row with this hash."""
    return db.execute(_TOKEN_USE, {"token_hash": token_hash}).first()


def mark_used(session: Session, token_id: int, when: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=when))


def by_name(session: Session, name: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.name == name)).first()


def all_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).order_by(ApiToken.name)).all()


def live_session(db: Session | Connection, session_id: str, now: datetime) -> str | None:
    """The token hash of an unexpired web session, or None (logged out, expired, unknown)."""
    return db.execute(_LIVE_SESSION, {"session_id": session_id, "now": now}).scalar()


def add_session(session: Session, session_id: str, token_hash: str, expires_at: datetime,
                now: datetime) -> None:
    """A new web session; expired ones go at the same time, so the table stays small."""
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
    session.add(WebSession(id=session_id, token_hash=token_hash, expires_at=expires_at))


def end_session(session: Session, session_id: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == session_id))


def end_sessions_of(session: Session, token_hash: str) -> None:
    session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
