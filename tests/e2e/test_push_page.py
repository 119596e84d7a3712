"""The job page's Push to Hub in a real browser (Chromium through Playwright): the form of a
checkpoint row starts a push on `tunedeck serve`'s inference worker, the pushes card follows
it to the stand-in Hub (tests/hub_server.py), and a token the Hub refuses shows as such.
Run: pytest tests/e2e/test_push_page.py (about 18 s: a server and its two workers start).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import get_settings
from tests.app.factories import make_finished_job
from tests.e2e.browser import screenshot
from tests.fixtures import LiveServer
from tests.hub_server import FakeHub

TOKEN = "hf_pageTestToken0123456789"


@pytest.fixture
def hub_server(settings_env, tmp_path) -> Iterator[tuple[LiveServer, FakeHub]]:
    hub = FakeHub(TOKEN)
    server = LiveServer({**settings_env, "TUNEDECK_HF_TOKEN": TOKEN, "HF_ENDPOINT": hub.url,
                         "HF_HUB_OFFLINE": "0"},
                        tmp_path / "serve.log")
    try:
        yield server, hub
    finally:
        server.stop()
        hub.stop()


def push_from_row(page, checkpoint: str, repo_id: str) -> None:
    row = page.locator(f'tr[data-checkpoint="{checkpoint}"]')
    row.locator("summary", has_text="Push to Hub").click()
    row.locator('input[name="repo_id"]').fill(repo_id)
    row.locator("button", has_text="Push").click()


def test_push_to_hub_from_the_job_page_and_a_refused_token(hub_server, page):
    server, hub = hub_server
    job_id = make_finished_job(get_settings().data_dir)
    page.goto(f"{server.url}/jobs/{job_id}")
    assert page.locator("#no-hub-token").count() == 0

    push_from_row(page, "final", "acme/from-the-page")
    done = page.locator('#pushes tr[data-status="succeeded"]')
    done.wait_for(timeout=60_000)  # the card polls until the push ends
    assert "acme/from-the-page" in done.inner_text() and "private" in done.inner_text()
    assert done.locator("a").get_attribute("href") == f"{hub.url}/acme/from-the-page"
    assert set(hub.state.files["acme/from-the-page"]) == {"config.json", "model.safetensors"}
    assert hub.state.repos["acme/from-the-page"]["visibility"] == "private"

    hub.state.token = "hf_aTokenTheServerDoesNotHave"  # as if TUNEDECK_HF_TOKEN were revoked
    push_from_row(page, "checkpoint-2", "acme/refused")
    failed = page.locator('#pushes tr[data-status="failed"]')
    failed.wait_for(timeout=60_000)
    assert "the Hub refused the token (HTTP 401)" in failed.inner_text()
    assert TOKEN not in page.content()
    screenshot(page, "push")
