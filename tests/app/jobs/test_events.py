"""GET /api/v1/jobs/{id}/events: text/event-stream with ids, resumable, ends with the job."""
from __future__ import annotations

import json
import threading
import time

import pytest

from app.client import parse_sse
from app.db import session_scope, utcnow
from app.jobs.models import Job, JobStatus, MetricPoint
from tests.app.factories import make_job


def read_events(client, url: str, **kwargs) -> tuple[list, object]:
    with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        return list(parse_sse(response.iter_lines())), response


def test_a_finished_job_replays_its_metrics_then_ends(auth_client, finished_job):
    events, response = read_events(auth_client, f"/api/v1/jobs/{finished_job}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    kinds = [e.event for e in events]
    assert kinds == ["metric"] * 5 + ["status", "end"]
    ids = [e.id for e in events]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids)
    assert events[0].data["name"] == "train/loss" and events[0].data["step"] == 1
    status = events[5].data
    assert status["status"] == "succeeded" and status["progress"]["step"] == 4
    assert events[-1].data == {"status": "succeeded"}


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_after_an_event_id(auth_client, finished_job, how):
    events, _ = read_events(auth_client, f"/api/v1/jobs/{finished_job}/events")
    cursor = events[2].id
    if how == "header":
        resumed, _ = read_events(auth_client, f"/api/v1/jobs/{finished_job}/events",
                                 headers={"Last-Event-ID": str(cursor)})
    else:
        resumed, _ = read_events(auth_client, f"/api/v1/jobs/{finished_job}/events",
                                 params={"after": cursor})
    metrics = [e for e in resumed if e.event == "metric"]
    assert [e.data["step"] for e in metrics] == [4, 5]
    assert resumed[-1].event == "end"


def test_a_garbled_last_event_id_replays_from_the_start(auth_client, finished_job):
    events, _ = read_events(auth_client, f"/api/v1/jobs/{finished_job}/events",
                            headers={"Last-Event-ID": "abc"})
    assert sum(e.event == "metric" for e in events) == 5


def test_unknown_job_is_404(auth_client):
    assert auth_client.get("/api/v1/jobs/424242/events").status_code == 404


def simulate_training(job_id: int, steps: int = 3) -> None:
    """What the worker does, slowly: running, progress + metrics, then succeeded."""
    time.sleep(0.3)
    for step in range(1, steps + 1):
        with session_scope() as session:
            job = session.get(Job, job_id)
            job.status, job.global_step, job.max_steps = JobStatus.running, step, steps
            job.started_at = job.started_at or utcnow()
            session.add(MetricPoint(job_id=job_id, name="train/loss", step=step,
                                    value=1.0 / step))
        time.sleep(0.3)
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status, job.finished_at = JobStatus.succeeded, utcnow()


def test_a_live_job_streams_status_progress_and_metrics_until_it_ends(auth_client):
    job_id = make_job()
    worker = threading.Thread(target=simulate_training, args=(job_id,))
    worker.start()
    started = time.monotonic()
    events, _ = read_events(auth_client, f"/api/v1/jobs/{job_id}/events")
    worker.join()
    assert time.monotonic() - started < 20
    statuses = [e.data["status"] for e in events if e.event == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    assert [e.data["step"] for e in events if e.event == "metric"] == [1, 2, 3]
    assert events[-1].event == "end"
    steps = [e.data["progress"]["step"] for e in events if e.event in ("status", "progress")]
    assert steps == sorted(steps) and steps[-1] == 3


def test_the_stream_of_a_cancelled_queued_job_ends(auth_client):
    job_id = make_job()
    assert auth_client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    events, _ = read_events(auth_client, f"/api/v1/jobs/{job_id}/events")
    assert events[-1].event == "end" and events[-1].data == {"status": "cancelled"}


def test_non_finite_values_are_sent_as_json_null():
    from app.jobs.events import format_event

    text = format_event("metric", {"name": "train/loss", "value": float("nan"),
                                   "extra": [float("inf"), 1.5]}, 7)
    payload = text.split("data: ", 1)[1].strip()
    assert json.loads(payload) == {"name": "train/loss", "value": None, "extra": [None, 1.5]}
