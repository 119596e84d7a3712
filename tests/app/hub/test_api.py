"""Pushes as the web sees them before a worker runs one: what is refused at submit (no token,
a bad repo id, no such checkpoint), the job page's push forms and card, and a push that no
inference worker takes. The push itself: tests/worker/test_push.py.
Run: pytest tests/app/hub/test_api.py
"""
from __future__ import annotations

import re
import time

import pytest

from app.config import get_settings
from tests.fixtures import reset_caches

TOKEN = "hf_webSideTestToken0123456789"


@pytest.fixture
def hub_token(settings_env, monkeypatch) -> str:
    monkeypatch.setenv("TUNEDECK_HF_TOKEN", TOKEN)
    monkeypatch.setenv("TUNEDECK_INFERENCE_TIMEOUT_SECONDS", "0.5")
    reset_caches()
    return TOKEN


def test_without_a_token_a_push_is_refused_and_says_what_to_set(client, finished_job):
    answer = client.post(f"/api/v1/jobs/{finished_job}/checkpoints/final/push",
                         json={"repo_id": "acme/model"})
    assert answer.status_code == 409
    assert "TUNEDECK_HF_TOKEN" in answer.json()["detail"]
    assert client.get(f"/api/v1/jobs/{finished_job}/pushes").json() == []


@pytest.mark.parametrize("repo_id", ["", "a/b/c", "acme/bad name", "acme/x--y", "acme/x.git",
                                     "-acme/x", "acme/" + "x" * 97])
def test_a_bad_repo_id_is_a_422_naming_it(client, hub_token, finished_job, repo_id):
    answer = client.post(f"/api/v1/jobs/{finished_job}/checkpoints/final/push",
                         json={"repo_id": repo_id, "private": True})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "repo_id"]


def test_an_unknown_checkpoint_is_a_404(client, hub_token, finished_job):
    answer = client.post(f"/api/v1/jobs/{finished_job}/checkpoints/nope/push",
                         json={"repo_id": "acme/model"})
    assert answer.status_code == 404 and "'nope'" in answer.json()["detail"]


def test_a_push_no_worker_takes_waits_and_says_what_to_start(client, hub_token, finished_job):
    answer = client.post(f"/api/v1/jobs/{finished_job}/checkpoints/final/push",
                         json={"repo_id": "model-name"})
    assert answer.status_code == 202
    push = answer.json()
    assert (push["status"], push["stage"], push["private"]) == ("queued", "waiting", True)
    assert push["checkpoint"] == "final" and push["note"] is None
    time.sleep(0.6)  # past the inference timeout
    listed = client.get(f"/api/v1/jobs/{finished_job}/pushes").json()
    assert [p["id"] for p in listed] == [push["id"]]
    assert "tunedeck worker --inference" in listed[0]["note"]
    assert client.get(f"/api/v1/jobs/{finished_job}/pushes/{push['id'] + 1}").status_code == 404
    assert TOKEN not in answer.text + str(listed)


def page_csrf(client, job_id: int) -> dict[str, str]:
    """The X-CSRF-Token header htmx sends from the job page (base.html's hx-headers)."""
    page = client.get(f"/jobs/{job_id}").text
    return {"X-CSRF-Token": re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)}


def test_the_job_page_offers_a_push_per_checkpoint_and_shows_a_refusal(client, finished_job):
    page = client.get(f"/jobs/{finished_job}").text
    assert page.count("Push to Hub") == 2  # checkpoint-2 and final
    assert 'id="no-hub-token"' in page and "TUNEDECK_HF_TOKEN" in page
    card = client.post(f"/jobs/{finished_job}/checkpoints/final/push",
                       data={"repo_id": "acme/model", "private": "true"},
                       headers=page_csrf(client, finished_job))
    assert card.status_code == 200
    assert 'id="push-error"' in card.text and "TUNEDECK_HF_TOKEN" in card.text


def test_the_page_lists_a_push_and_polls_while_it_waits(client, hub_token, finished_job):
    card = client.post(f"/jobs/{finished_job}/checkpoints/checkpoint-2/push",
                       data={"repo_id": "acme/step-2"}, headers=page_csrf(client, finished_job))
    assert 'id="push-error"' not in card.text and 'id="no-hub-token"' not in card.text
    assert 'data-status="queued"' in card.text and "acme/step-2" in card.text
    assert 'hx-trigger="every 1s"' in card.text
    assert "private" not in card.text.split("acme/step-2", 1)[1].split("</td>", 1)[0]
    bad = client.post(f"/jobs/{finished_job}/checkpoints/checkpoint-2/push",
                      data={"repo_id": "acme/bad name"}, headers=page_csrf(client, finished_job))
    assert "repo_id: must be" in bad.text


def test_the_token_is_not_in_the_settings_repr(hub_token):
    assert TOKEN not in repr(get_settings()) and get_settings().hub_token == TOKEN
