"""Fixtures for the JSON API tests: auth on, and committed rows to call routes against."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import db
from app.config import get_settings
from app.main import create_app
from app.migrate import upgrade
from tests.app.factories import make_finished_job
from tests.fixtures import (
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    reset_caches,
    service_missing,
)

TOKEN = "td_test-token-0123456789"


@pytest.fixture
def auth_on(settings_env, monkeypatch: pytest.MonkeyPatch) -> str:
    """TUNEDECK_API_TOKENS holds TOKEN: auth is on."""
    monkeypatch.setenv("TUNEDECK_API_TOKENS", TOKEN)
    reset_caches()
    return TOKEN


@pytest.fixture
def auth_client(auth_on) -> Iterator[TestClient]:
    """A client that sends the right bearer token on every request."""
    with TestClient(create_app(), headers={"Authorization": f"Bearer {auth_on}"}) as c:
        yield c


@pytest.fixture
def anon_client(auth_on) -> Iterator[TestClient]:
    """A client without a token, against a server with auth on."""
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def finished_job(settings_env) -> int:
    """A succeeded job with metrics, predictions and checkpoints checkpoint-2 and final."""
    return make_finished_job(get_settings().data_dir)


@pytest.fixture
def data_dir_path(settings_env) -> Path:
    return get_settings().data_dir


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, settings_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app's settings pointed at a freshly migrated database of each dialect."""
    url = None
    if request.param == "postgresql":
        if not postgres_available():
            service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
        url = fresh_postgres_database()
        monkeypatch.setenv("TUNEDECK_DATABASE_URL", url)
        reset_caches()
        upgrade(url)
    yield request.param
    db.get_engine().dispose()
    db.get_read_engine().dispose()
    reset_caches()
    if url:
        drop_postgres_database(url)
