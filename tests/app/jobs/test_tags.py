"""Tags and a note on a job (app/jobs/service.py annotate, set_tags): PATCH /api/v1/jobs/{id},
the ?tag= filter of the job list (a JSON containment per dialect: SQLite and PostgreSQL), the
job page's form and the job list's tag filter."""
from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.db import session_scope
from app.errors import Invalid
from app.jobs import service
from app.jobs.models import JobStatus
from app.main import create_app
from tests.app.factories import make_job
from tests.app.jobs.test_views import csrf


@pytest.fixture
def api(database) -> TestClient:
    with TestClient(create_app()) as c:
        yield c


def test_patch_sets_tags_and_note_of_a_finished_job_and_the_list_filters_by_tag(api) -> None:
    done = make_job(JobStatus.succeeded)
    other = make_job(JobStatus.running)
    make_job(JobStatus.queued)

    patched = api.patch(f"/api/v1/jobs/{done}", json={"tags": [" lr-sweep ", "best", "best"],
                                                      "note": "  3e-5 wins  "})
    assert patched.status_code == 200
    assert (patched.json()["tags"], patched.json()["note"]) == (["lr-sweep", "best"],
                                                                 "3e-5 wins")
    assert api.patch(f"/api/v1/jobs/{other}", json={"tags": ["lr-sweep"]}).status_code == 200
    # only what is given changes; "note": null clears the note
    assert api.patch(f"/api/v1/jobs/{done}", json={"tags": ["best"]}).json()["note"] == \
        "3e-5 wins"
    assert api.patch(f"/api/v1/jobs/{done}", json={"note": None}).json()["note"] is None
    assert api.get(f"/api/v1/jobs/{done}").json()["tags"] == ["best"]

    def listed(**params) -> list[int]:
        page = api.get("/api/v1/jobs", params=params).json()
        assert page["total"] == len(page["items"])  # every match fits on page 1
        return [job["id"] for job in page["items"]]

    assert listed(tag="lr-sweep") == [other]
    assert listed(tag="best") == [done]
    assert listed(tag="best", status="running") == []
    assert listed(tag="lr-sweep", status="running") == [other]
    assert listed(tag="nobody") == []
    past = api.get("/api/v1/jobs", params={"tag": "lr-sweep", "page": 2}).json()
    assert (past["items"], past["total"]) == ([], 1)  # past the last page: its own count
    assert len(listed()) == 3


@pytest.mark.parametrize(("body", "loc"), [
    ({"tags": ["a,b"]}, ["body", "tags", "0"]),
    ({"tags": ["ok", "   "]}, ["body", "tags", "1"]),
    ({"tags": ["x" * 51]}, ["body", "tags", "0"]),
    ({"tags": [f"t{i}" for i in range(21)]}, ["body", "tags"]),
    ({"note": "n" * 10_001}, ["body", "note"]),
    ({"notes": "typo"}, ["body", "notes"]),
])
def test_bad_tags_and_notes_are_refused_naming_the_field(api, body, loc) -> None:
    job = make_job(JobStatus.succeeded)
    refused = api.patch(f"/api/v1/jobs/{job}", json=body)
    assert refused.status_code == 422
    assert [str(part) for part in refused.json()["detail"][0]["loc"]] == loc
    assert api.get(f"/api/v1/jobs/{job}").json()["tags"] == []


def test_set_tags_is_the_service_call_for_code_that_makes_jobs(settings_env) -> None:
    job = make_job()
    with session_scope() as session:
        assert service.set_tags(session, job, ["sweep:3", " lr=1e-5"]) == ["sweep:3",
                                                                         "lr=1e-5"]
    with session_scope() as session, pytest.raises(Invalid, match=r"^tags\.0: "):
        service.set_tags(session, job, ["a,b"])
    with session_scope() as session:
        assert session.get(service.Job, job).tags == ["sweep:3", "lr=1e-5"]


def test_the_job_page_edits_tags_and_note_and_the_list_filters(client) -> None:
    job = make_job(JobStatus.succeeded, name="tagged-run")
    make_job(JobStatus.succeeded, name="untagged-run")
    page = client.get(f"/jobs/{job}")
    assert 'id="annotations"' in page.text
    token = {"X-CSRF-Token": csrf(client)}
    saved = client.post(f"/jobs/{job}/annotations", headers=token,
                        data={"tags": "baseline, keep", "note": "first try"})
    assert saved.status_code == 200 and 'id="annotations-saved"' in saved.text
    assert re.findall(r'class="tag" href="/jobs\?tag=(\w+)"', saved.text) == ["baseline",
                                                                             "keep"]
    bad = client.post(f"/jobs/{job}/annotations", headers=token,
                      data={"tags": "x" * 60, "note": "kept"})
    assert bad.status_code == 422 and "1 to 50 characters" in bad.text and "kept" in bad.text

    listed = client.get("/jobs", params={"tag": "keep"}).text
    assert "tagged-run" in listed and "untagged-run" not in listed
    assert 'id="pick-' in listed and 'id="compare-button"' in listed
    table = client.get("/jobs/table", params={"tag": "keep"}).text
    assert "tag=keep" in table and "untagged-run" not in table
