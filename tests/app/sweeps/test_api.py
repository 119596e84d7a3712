"""POST/GET /api/v1/sweeps and cancel, on SQLite and PostgreSQL: every point validated before
anything is queued, the cap, ranking by the sweep's metric, cancel all."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job, JobStatus
from app.main import create_app
from app.sweeps.models import Sweep
from tests.app.factories import SPEC

GRID = {"training.learning_rate": [1e-5, 3e-5],
        "training.per_device_train_batch_size": [16, 32]}


@pytest.fixture
def api(database) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def counts() -> tuple[int, int]:
    with session_scope() as session:
        return (session.scalar(select(func.count(Job.id))) or 0,
                session.scalar(select(func.count(Sweep.id))) or 0)


def test_a_grid_becomes_one_queued_job_per_point(api):
    r = api.post("/api/v1/sweeps", json={"name": "lr-bs", "base": SPEC, "grid": GRID,
                                         "metric": "eval/accuracy", "mode": "max"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["jobs"]) == 4 and counts() == (4, 1)
    sweep = api.get(f"/api/v1/sweeps/{created['id']}").json()
    assert sweep["name"] == "lr-bs" and sweep["metric"] == "eval/accuracy"
    assert sweep["counts"]["queued"] == 4 and not sweep["finished"]
    assert [j["values"] for j in sweep["jobs"]] == [  # no metric yet: queue order
        {"training.learning_rate": lr, "training.per_device_train_batch_size": bs}
        for lr in (1e-5, 3e-5) for bs in (16, 32)]
    first = api.get(f"/api/v1/jobs/{created['jobs'][0]}").json()
    assert first["spec"]["training"]["learning_rate"] == 1e-5
    assert first["spec"]["training"]["per_device_train_batch_size"] == 16
    assert first["name"] == "lr-bs · learning_rate=1e-05, per_device_train_batch_size=16"
    assert first["sweep_id"] == created["id"]
    tag = f"sweep:{created['id']}"  # sweeps tag their jobs; the job list filters by the tag
    assert first["tags"] == [tag]
    tagged = api.get("/api/v1/jobs", params={"tag": tag}).json()
    assert sorted(job["id"] for job in tagged["items"]) == sorted(created["jobs"])


def test_one_bad_point_is_named_and_nothing_is_queued(api):
    grid = {"training.learning_rate": [1e-5, 2.0], "training.seed": [1, 2]}
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": grid})
    assert r.status_code == 422
    detail = r.json()["detail"]
    # learning_rate 2.0 is refused in both points that have it (3 and 4 of 4)
    assert [d["loc"] for d in detail] == [["body", "grid", "training.learning_rate"]] * 2
    assert detail[0]["msg"].startswith(
        "point 3 of 4 (learning_rate=2, seed=1): training.learning_rate: Input should be less "
        "than or equal to 1")
    assert counts() == (0, 0)


def test_a_bad_base_is_named_at_its_field(api):
    base = {**SPEC, "training": {"eval_strategy": "steps", "save_strategy": "epoch"},
            "early_stopping": {"patience": 2}, "dataset": {**SPEC["dataset"],
                                                          "eval_split": "validation"}}
    r = api.post("/api/v1/sweeps", json={"base": base, "grid": {"training.seed": [1]}})
    assert r.status_code == 422
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "base", "training", "save_strategy"]
    assert "must match training.eval_strategy" in problem["msg"]
    assert counts() == (0, 0)


def test_a_grid_over_the_cap_is_refused(api, monkeypatch):
    grid = {"training.seed": list(range(8)), "training.learning_rate": [1e-5, 2e-5, 3e-5]}
    monkeypatch.setattr(get_settings(), "max_sweep_jobs", 20)  # TUNEDECK_MAX_SWEEP_JOBS=20
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": grid})
    assert r.status_code == 422
    assert r.json()["detail"] == [{
        "loc": ["body", "grid"], "type": "value_error",
        "msg": "8 x 3 = 24 jobs; this server queues at most 20 per sweep "
               "(TUNEDECK_MAX_SWEEP_JOBS): drop values or use random"}]
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": grid, "random": 21})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "random"]
    assert counts() == (0, 0)


def test_random_draws_come_from_the_grid_and_the_ranges(api):
    body = {"base": SPEC, "grid": {"training.seed": [1, 2]}, "random": 5, "seed": 3,
            "ranges": {"training.learning_rate": {"min": 1e-5, "max": 1e-3, "log": True},
                       "training.per_device_train_batch_size": {"min": 4, "max": 64,
                                                                "integer": True}}}
    created = api.post("/api/v1/sweeps", json=body).json()
    values = [j["values"] for j in api.get(f"/api/v1/sweeps/{created['id']}").json()["jobs"]]
    assert len(values) == 5
    for v in values:
        assert v["training.seed"] in (1, 2)
        assert 1e-5 <= v["training.learning_rate"] <= 1e-3
        assert isinstance(v["training.per_device_train_batch_size"], int)
    again = api.post("/api/v1/sweeps", json=body).json()
    assert [j["values"] for j in api.get(f"/api/v1/sweeps/{again['id']}").json()["jobs"]] \
        == values  # the same seed draws the same points


def test_the_sweep_ranks_its_jobs_by_its_metric(api):
    created = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": GRID,
                                               "metric": "accuracy"}).json()
    a, b, c, d = created["jobs"]
    with session_scope() as session:  # as the worker leaves them
        session.get(Job, a).latest_metrics = {"eval/accuracy": 0.6}
        session.get(Job, a).status = JobStatus.running
        session.get(Job, b).final_metrics = {"eval/accuracy": 0.9}
        session.get(Job, b).status = JobStatus.succeeded
        session.get(Job, c).final_metrics = {"eval/accuracy": 0.7}
        session.get(Job, c).status = JobStatus.succeeded
    sweep = api.get(f"/api/v1/sweeps/{created['id']}").json()
    assert sweep["metric"] == "eval/accuracy" and sweep["mode"] == "max"
    assert [j["id"] for j in sweep["jobs"]] == [b, c, a, d]
    assert [j["metric"] for j in sweep["jobs"]] == [0.9, 0.7, 0.6, None]
    assert sweep["best_job_id"] == b
    loss = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": GRID}).json()
    assert api.get(f"/api/v1/sweeps/{loss['id']}").json()["mode"] == "min"


def test_cancel_cancels_every_job_that_has_not_finished(api):
    created = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": GRID}).json()
    a, b, c, _ = created["jobs"]
    with session_scope() as session:
        session.get(Job, a).status = JobStatus.succeeded
        session.get(Job, b).status = JobStatus.running
    sweep = api.post(f"/api/v1/sweeps/{created['id']}/cancel").json()
    status = {j["id"]: j["status"] for j in sweep["jobs"]}
    assert status == {a: "succeeded", b: "running", c: "cancelled", created["jobs"][3]: "cancelled"}
    assert api.get(f"/api/v1/jobs/{b}").json()["cancel_requested"] is True
    assert sweep["counts"] == {"queued": 0, "running": 1, "succeeded": 1, "failed": 0,
                               "cancelled": 2}
    again = api.post(f"/api/v1/sweeps/{created['id']}/cancel")
    assert again.status_code == 200 and again.json()["counts"] == sweep["counts"]


def test_unknown_sweeps_and_empty_grids(api):
    assert api.get("/api/v1/sweeps/999").status_code == 404
    assert api.post("/api/v1/sweeps/999/cancel").status_code == 404
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": {"training.seed": []}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "grid"]
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": {}})
    assert r.status_code == 422 and "nothing to sweep" in r.json()["detail"][0]["msg"]
    r = api.post("/api/v1/sweeps", json={"base": SPEC, "grid": {"training..x": [1]}})
    assert r.status_code == 422 and "dotted spec key" in r.json()["detail"][0]["msg"]
