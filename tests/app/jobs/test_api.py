"""The hot read endpoints (job detail, job list) build their JSON by hand from plain rows on
an autocommit connection; these tests hold that JSON to the pydantic models (JobOut, JobPage)
on both databases, and check the read path's retry and page totals."""
from __future__ import annotations

import math
from datetime import datetime

import orjson
import pytest
from sqlalchemy import text

from app import db
from app.db import read_only, session_scope
from app.jobs import service
from app.jobs.models import Job, JobStatus
from app.jobs.outputs import JobOut, JobPage
from app.main import create_app
from tests.app.factories import SPEC, make_job


def jobs_in_every_state() -> list[int]:
    """Jobs as the worker leaves them: every status, progress, metrics, errors, odd values."""
    now = datetime(2026, 11, 26, 10, 30, 5, 123456)
    whole_second = datetime(2026, 11, 26, 10, 31, 0)
    return [
        make_job(JobStatus.queued),
        make_job(JobStatus.running, started_at=now, global_step=37, max_steps=120, epoch=0.9,
                 samples_per_second=14.25, eta_seconds=61.5, progress_at=whole_second,
                 latest_metrics={"train/loss": 0.6931, "train/learning_rate": 2e-05},
                 gpu_peak_memory_mb=1234.5, gpu_utilization=87.0, attempts=1),
        make_job(JobStatus.succeeded, started_at=now, finished_at=whole_second,
                 global_step=120, max_steps=120, epoch=3.0,
                 final_metrics={"eval/accuracy": 0.75, "eval/f1": 0.8},
                 label_names=["négatif", "positif"], info=["newly initialized: classifier"],
                 attempts=2, tags=["baseline", "ünï \"q\""], note="lr too high?\nretry"),
        make_job(JobStatus.failed, started_at=now, finished_at=now,
                 error_type="KeyError", error_message="column 'text' not in the dataset",
                 error_traceback="Traceback ...\nKeyError: 'text'", error_hint="pick a column",
                 attempts=1),
        make_job(JobStatus.failed, error_message="worker lost"),
        make_job(JobStatus.cancelled, cancel_requested=True, global_step=5, max_steps=0,
                 spec={**SPEC, "training": {"learning_rate": 3e-5, "seed": 7,
                                            "nested": {"list": [1, 2.5, None, "x"]}}}),
    ]


def pydantic_job(job_id: int) -> dict:
    with session_scope() as session:
        return service.to_out(session.get(Job, job_id)).model_dump(mode="json")


def test_job_json_equals_the_jobout_model(database) -> None:
    for job_id in jobs_in_every_state():
        fast = read_only(lambda c, job_id=job_id: service.job_json(c, job_id))
        assert orjson.loads(fast) == pydantic_job(job_id)
        JobOut.model_validate_json(fast)  # and it parses as the documented schema
    assert read_only(lambda c: service.job_json(c, 999_999)) is None


def test_job_page_json_equals_the_jobpage_model(database) -> None:
    ids = jobs_in_every_state()
    for status, page, per_page in [(None, 1, 20), (None, 2, 4), (None, 3, 4),
                                   (JobStatus.failed, 1, 1), (JobStatus.failed, 2, 1),
                                   (JobStatus.failed, 3, 1), (JobStatus.queued, 1, 50)]:
        fast = read_only(lambda c, s=status, p=page, n=per_page: service.job_page_json(
            c, status=s, page=p, per_page=n))
        matching = [i for i in ids if status is None or pydantic_job(i)["status"] == status]
        newest_first = sorted(matching, reverse=True)[(page - 1) * per_page:page * per_page]
        expected = {"items": [pydantic_job(i) for i in newest_first], "total": len(matching),
                    "page": page, "per_page": per_page}
        assert orjson.loads(fast) == expected, (status, page, per_page)
        JobPage.model_validate_json(fast)


def test_the_api_serves_the_same_bytes_it_documents(database) -> None:
    from fastapi.testclient import TestClient

    ids = jobs_in_every_state()
    with TestClient(create_app()) as client:
        detail = client.get(f"/api/v1/jobs/{ids[1]}")
        assert detail.status_code == 200
        assert detail.headers["content-type"] == "application/json"
        assert detail.json() == pydantic_job(ids[1])
        listed = client.get("/api/v1/jobs", params={"status": "failed", "per_page": 1})
        assert listed.json()["total"] == 2
        assert [item["id"] for item in listed.json()["items"]] == [ids[4]]
        missing = client.get("/api/v1/jobs/424242")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "job 424242 not found"}
        assert client.get("/api/v1/jobs", params={"status": "lost"}).status_code == 422


def test_stored_nan_is_served_as_null(settings_env) -> None:
    """SQLite keeps a NaN the stdlib wrote (PostgreSQL's json type refuses one)."""
    job_id = make_job(JobStatus.running)
    with session_scope() as session:
        session.execute(text("UPDATE jobs SET latest_metrics = '{\"train/loss\": NaN}' "
                             "WHERE id = :id"), {"id": job_id})
    with session_scope() as session:
        assert math.isnan(session.get(Job, job_id).latest_metrics["train/loss"])
    fast = read_only(lambda c: service.job_json(c, job_id))
    assert orjson.loads(fast)["latest_metrics"] == {"train/loss": None}


def test_json_columns_pass_through_as_stored_text(database) -> None:
    """The JSON columns are read as text and written out as they are, except text with a
    NaN/Infinity literal (parsed, so it becomes null) and JSON null (the defaults apply)."""
    odd = {**SPEC, "name": "NaN-Infinity run", "training": {"note": "ünïcode \"quoted\"",
                                                            "values": [1e-300, -0.0, 2**53]}}
    ids = [make_job(JobStatus.running, spec=odd, latest_metrics={"train/loss": 1e308}),
           make_job(JobStatus.queued)]
    with session_scope() as session:
        session.execute(text("UPDATE jobs SET latest_metrics = 'null', info = 'null' "
                             "WHERE id = :id"), {"id": ids[1]})
    for job_id in ids:
        fast = read_only(lambda c, job_id=job_id: service.job_json(c, job_id))
        assert orjson.loads(fast) == pydantic_job(job_id)
    served = orjson.loads(read_only(lambda c: service.job_json(c, ids[1])))
    assert served["latest_metrics"] == {} and served["info"] == []
    assert service.raw_json(None) is None and service.raw_json("null") is None
    assert isinstance(service.raw_json('{"a": 1}'), orjson.Fragment)
    nan = service.raw_json('{"a": NaN, "b": -Infinity}')
    assert orjson.loads(orjson.dumps(nan)) == {"a": None, "b": None}


ON_POSTGRES = pytest.mark.parametrize("database", ["postgresql"], indirect=True)


@pytest.mark.postgres
@ON_POSTGRES
def test_read_only_reconnects_once_after_the_server_dropped_its_connection(
        database) -> None:
    job_id = make_job(JobStatus.queued)
    first = read_only(lambda c: service.job_json(c, job_id))
    backend = read_only(lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar())
    with session_scope() as session:  # another connection kills the pooled one
        session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    assert read_only(lambda c: service.job_json(c, job_id)) == first
    assert read_only(lambda c: c.execute(text("SELECT pg_backend_pid()")).scalar()) != backend


@pytest.mark.postgres
@ON_POSTGRES
def test_reads_are_bounded_by_a_statement_timeout(database) -> None:
    timeout = read_only(lambda c: c.execute(text("SHOW statement_timeout")).scalar())
    assert timeout == f"{db.READ_TIMEOUT_SECONDS}s"
