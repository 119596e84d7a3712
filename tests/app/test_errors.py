"""The domain errors (app/errors.py) answered in one place: app/main.py's exception handlers."""
from __future__ import annotations

import re

from tests.fixtures import REPO

CSV = b"text,label\ngood movie,1\nbad movie,0\n"


def test_each_domain_error_gets_its_status_and_names_what_is_wrong(client, finished_job):
    missing = client.get("/api/v1/jobs/999999")
    assert (missing.status_code, missing.json()) == (404, {"detail": "job 999999 not found"})
    assert client.get("/api/v1/datasets/nope").json() == {"detail": "dataset nope not found"}
    finished = client.post(f"/api/v1/jobs/{finished_job}/cancel")
    assert (finished.status_code, finished.json()) == (
        409, {"detail": f"job {finished_job} already succeeded"})
    spec = {"model": "m", "dataset": {"source": "upload", "path": "gone",
                                      "text_fields": ["text"]}}
    bad = client.post("/api/v1/jobs", json=spec)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "dataset", "path"]
    dataset = client.post("/api/v1/datasets", files={"file": ("r.csv", CSV)}).json()["id"]
    query = client.get(f"/api/v1/datasets/{dataset}", params={"label_column": "target"})
    assert query.status_code == 422 and query.json()["detail"][0]["loc"] == [
        "query", "label_column"]


def test_api_routes_leave_domain_errors_to_the_handlers():
    caught = re.compile(r"except\b.*\b(NotFound|Conflict|Invalid|TooLarge)\b")
    for router in ("app/jobs/api.py", "app/datasets/api.py"):
        source = (REPO / router).read_text(encoding="utf-8")
        assert not caught.search(source), router
