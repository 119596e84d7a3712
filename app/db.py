"""Engine, sessions and the declarative Base shared by the web app and the worker."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import orjson
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

from app.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# The hot reads run on the event loop (app/jobs/api.py): bounded waits, so a stuck database
# turns into errors there instead of a stalled server.
READ_TIMEOUT_SECONDS = 2


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the web process read while the worker writes; busy_timeout waits out
        # short locks.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
    return on_connect


def loads_json(text: str | bytes) -> Any:
    """JSON columns: orjson (several times faster than json.loads on the API's hot reads)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # NaN/Infinity literals, which only the stdlib reads


def make_engine(url: str, pooled: bool = True, *, read_only: bool = False) -> Engine:
    """pooled=False opens a connection per checkout and keeps none open between them.

    read_only=True: the pool behind db.read_only(): autocommit (no BEGIN/COMMIT around a
    SELECT), no pre-ping (read_only() retries once on a dropped connection instead), and
    waits bounded by READ_TIMEOUT_SECONDS.
    """
    options: dict[str, Any] = {"json_deserializer": loads_json}
    if not pooled:
        options["poolclass"] = NullPool
    if url.startswith("sqlite"):
        timeout = READ_TIMEOUT_SECONDS if read_only else 10
        if read_only:
            options["isolation_level"] = "AUTOCOMMIT"
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": timeout}, **options)
        event.listen(engine, "connect", _sqlite_pragmas(timeout * 1000))
        return engine
    if read_only:
        ms = READ_TIMEOUT_SECONDS * 1000
        options.update(isolation_level="AUTOCOMMIT", pool_size=5, max_overflow=10,
                       connect_args={"connect_timeout": READ_TIMEOUT_SECONDS,
                                     "options": f"-c statement_timeout={ms}"})
    elif pooled:
        options.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
    return create_engine(url, **options)


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().db_url)


@lru_cache
def get_read_engine() -> Engine:
    """Short reads on autocommit connections: one round trip per SELECT (read_only())."""
    return make_engine(get_settings().db_url, read_only=True)


T = TypeVar("T")


def read_only(work: Callable[[Connection], T]) -> T:
    """work(connection) on an autocommit connection; once more if the server dropped it."""
    try:
        with get_read_engine().connect() as connection:
            return work(connection)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    # The pool has discarded its stale connections (e.g. after a database restart).
    with get_read_engine().connect() as connection:
        return work(connection)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def forget_engines(*, dispose: bool = False) -> None:
    """Drop the cached engines (settings changed, or a forked process must open its own).

    dispose=True first drops their pooled connections without closing the sockets, which
    still belong to the parent process after a fork.
    """
    for cached in (get_engine, get_read_engine):
        if dispose and cached.cache_info().currsize:
            cached().dispose(close=False)
        cached.cache_clear()
    get_sessionmaker.cache_clear()


@contextmanager
def session_scope(sessions: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """The unit of work: commit on success, roll back on error."""
    session = (sessions or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def get_session() -> Iterator[Session]:
    """FastAPI dependency: the request boundary commits or rolls back."""
    with session_scope() as session:
        yield session
