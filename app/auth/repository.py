"""Every query on API tokens."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from app.auth.models import ApiToken

# Checked on every API request when auth uses token rows: built once, and plain rows, so
# they run on a Session or on a read_only() Connection alike.
_ANY_TOKEN = select(ApiToken.id).limit(1)
_TOKEN_USE = select(ApiToken.id, ApiToken.last_used_at).where(
    ApiToken.token_hash == bindparam("token_hash"))


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
