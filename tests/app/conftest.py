"""Fixtures for the JSON API tests: auth on, and committed rows to call routes against."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from app.main import create_app
from tests.app.factories import make_finished_job
from tests.fixtures import reset_caches

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
