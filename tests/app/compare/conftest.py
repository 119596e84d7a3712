"""The compare tests run on both databases (`database`, tests/app/conftest.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


@pytest.fixture
def client(database) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c
