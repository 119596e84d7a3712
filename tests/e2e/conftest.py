"""Fixtures for the end-to-end tests: the browser, and Redis + PostgreSQL for several workers."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page; JavaScript errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def fleet_env(settings_env, monkeypatch) -> Iterator[dict[str, str]]:
    """Redis (the database of TUNEDECK_TEST_REDIS_URL: parallel runs each have their own) and a
    fresh PostgreSQL database, for tests that start several real worker processes."""
    from tests.e2e.test_faults import redis_postgres
    from tests.fixtures import REDIS_URL

    yield from redis_postgres(settings_env, monkeypatch, int(REDIS_URL.rsplit("/", 1)[1]))


@pytest.fixture
def fleet_api(fleet_env) -> Iterator:
    """The API in-process (TestClient) on fleet_env."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client
