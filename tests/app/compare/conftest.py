"""The compare tests run on both databases."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app import db
from app.main import create_app
from app.migrate import upgrade
from tests.fixtures import (
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    reset_caches,
    service_missing,
)


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


@pytest.fixture
def client(database) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c
