"""Faults with real worker processes: SIGKILL mid-training, a broker that loses its data, cancel.

The API runs in-process (TestClient) against the same database and broker as the worker
subprocesses. Leases are short here (TUNEDECK_LEASE_TIMEOUT_SECONDS=4, sweep every 0.5 s).
Run with -s to see the measured restart numbers.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app import db
from app.config import get_settings
from app.db import session_scope, utcnow
from app.jobs import queue, repository
from app.jobs.models import Job, MetricPoint
from app.main import create_app
from app.migrate import upgrade
from tests.e2e.workers import WorkerProcess
from tests.fixtures import (
    REDIS_URL,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    redis_available,
    reset_caches,
    service_missing,
    tiny_spec,
)
from worker.broker import BrokerView
from worker.runner import checkpoint_step, latest_checkpoint

FAST_LEASE = {"TUNEDECK_LEASE_TIMEOUT_SECONDS": "4", "TUNEDECK_HEARTBEAT_SECONDS": "0.5",
              "TUNEDECK_FLUSH_SECONDS": "0.1"}
MAX_STEPS = 100


def use_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    upgrade(get_settings().db_url)


@pytest.fixture
def sqlite_env(settings_env, monkeypatch) -> dict[str, str]:
    env = {**settings_env, **FAST_LEASE}
    use_env(env, monkeypatch)
    return env


def redis_postgres(settings_env, monkeypatch, redis_db: int) -> Iterator[dict[str, str]]:
    if not postgres_available():
        service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
    if not redis_available():
        service_missing("Redis is not reachable at 127.0.0.1:6379")
    database = fresh_postgres_database()
    broker = f"{REDIS_URL.rsplit('/', 1)[0]}/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    env = {**settings_env, **FAST_LEASE, "TUNEDECK_DATABASE_URL": database,
           "TUNEDECK_BROKER_URL": broker}
    use_env(env, monkeypatch)
    yield env
    db.get_engine().dispose()
    reset_caches()
    redis.Redis.from_url(broker).flushdb()
    drop_postgres_database(database)


@pytest.fixture
def redis_pg_env(settings_env, monkeypatch) -> Iterator[dict[str, str]]:
    yield from redis_postgres(settings_env, monkeypatch, redis_db=8)


@pytest.fixture
def api() -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def wait_until(check: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def finished(api: TestClient, job_id: int, timeout: float = 180) -> dict:
    def done():
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None
    return wait_until(done, timeout, f"job {job_id} to finish", every=0.25)


def long_spec(tiny_model: Path, dataset: Path, **training) -> dict:
    """Checkpoints every 5 steps, a loss point every step, no eval: MAX_STEPS of tiny BERT.

    Four micro-batches a step keep a step around 20 ms even on a fast CPU, so the test can
    act while the job still runs."""
    spec = tiny_spec(tiny_model, dataset, max_steps=MAX_STEPS, save_strategy="steps",
                     save_steps=5, eval_strategy="no", logging_steps=1,
                     gradient_accumulation_steps=4, **training)
    spec["dataset"]["eval_split"] = None
    return spec


def short_spec(tiny_model: Path, dataset: Path) -> dict:
    spec = tiny_spec(tiny_model, dataset, max_steps=4, save_strategy="no", eval_strategy="no")
    spec["dataset"]["eval_split"] = None
    return spec


def loss_points(job_id: int) -> list[tuple[int, datetime]]:
    with session_scope() as session:
        rows = session.execute(select(MetricPoint.step, MetricPoint.created_at).where(
            MetricPoint.job_id == job_id, MetricPoint.name == "train/loss")
            .order_by(MetricPoint.step)).all()
    return [(row[0], row[1]) for row in rows]


def duplicate_points(job_id: int) -> int:
    with session_scope() as session:
        groups = select(MetricPoint.name, MetricPoint.step).where(
            MetricPoint.job_id == job_id).group_by(MetricPoint.name, MetricPoint.step).having(
            func.count() > 1)
        return len(session.execute(groups).all())


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


KILL_CASES = {
    # the worker dies and a new one is started: its start-up sweep hands the job on
    "redis+postgres, new worker after the kill": ("redis_pg_env", False),
    # another worker is already running: its periodic sweep notices the lapsed lease
    "sqlite, standby worker takes over": ("sqlite_env", True),
}


@pytest.mark.parametrize(("backend", "standby"), KILL_CASES.values(), ids=KILL_CASES.keys())
def test_a_killed_worker_is_resumed_from_its_last_checkpoint(
        request, backend, standby, api, tiny_model, make_dataset, tmp_path):
    env = request.getfixturevalue(backend)
    spec = long_spec(tiny_model, make_dataset(train=64, validation=0))
    job_id = api.post("/api/v1/jobs", json=spec).json()["id"]
    output = get_settings().job_dir(job_id) / "output"
    workers = {name: WorkerProcess(env, tmp_path / f"{name}.log", name)
               for name in (("w1", "w2") if standby else ("w1",))}
    try:
        wait_until(lambda: job_row(job_id).global_step >= 12 and latest_checkpoint(output),
                   120, "training past step 12 with a checkpoint")
        victim = job_row(job_id).worker_id.split("@")[0]
        workers.pop(victim).kill()
        killed_at = utcnow()
        flushed = {step for step, _ in loss_points(job_id)}
        # Trainer prints each step's log line; the database may lag it by one flush.
        reached = max((tmp_path / f"{victim}.log").read_text().count("{'loss': "), *flushed)
        resume_step = checkpoint_step(latest_checkpoint(output))
        # Points logged but not yet flushed when the worker died come back from the checkpoint.
        unflushed = len(set(range(1, resume_step + 1)) - flushed)
        assert reached < MAX_STEPS, "the job finished before the kill; make it longer"
        if not standby:
            workers["w2"] = WorkerProcess(env, tmp_path / "w2.log", "w2")
        survivor = next(iter(workers))
        # While the new attempt runs, the step never goes back below the checkpoint's.
        first_seen = wait_until(lambda: second_attempt_step(job_id), 120, "the second attempt",
                                every=0.05)
        job = finished(api, job_id)
    finally:
        for worker in workers.values():
            worker.stop()

    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["step"] == MAX_STEPS and job["attempts"] == 2
    assert first_seen >= resume_step
    attempts = api.get(f"/api/v1/jobs/{job_id}/attempts").json()
    assert [a["outcome"] for a in attempts] == ["lost", "succeeded"]
    assert attempts[0]["worker_id"].startswith(f"{victim}@")
    assert attempts[0]["message"].startswith(f"worker {victim}@")
    assert "stopped heartbeating at" in attempts[0]["message"]
    assert attempts[1]["resumed_from"] == f"checkpoint-{resume_step}"
    assert attempts[1]["worker_id"].startswith(f"{survivor}@")

    points = loss_points(job_id)
    assert [step for step, _ in points] == list(range(1, MAX_STEPS + 1))  # no gap, no repeat
    assert duplicate_points(job_id) == 0
    series = api.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "train/loss"}).json()
    assert series["series"]["train/loss"]["steps"] == list(range(1, MAX_STEPS + 1))
    # Every point after the checkpoint was computed again, after the kill.
    assert all(at > killed_at for step, at in points if step > resume_step)
    resumed_at = min(at for step, at in points if step > resume_step)
    names = [c["name"] for c in api.get(f"/api/v1/jobs/{job_id}/checkpoints").json()]
    assert f"checkpoint-{resume_step}" in names and "final" in names
    print(f"\n[{request.node.callspec.id}] SIGKILL at step {reached}; resumed from "
          f"checkpoint-{resume_step}: {reached - resume_step} steps lost and redone, "
          f"{unflushed} unflushed points restored from the checkpoint; first new step "
          f"{(resumed_at - killed_at).total_seconds():.1f} s after the kill; 1 point per "
          f"(name, step), train/loss steps 1..{MAX_STEPS} without a gap")


def second_attempt_step(job_id: int) -> int | None:
    """The job's step once attempt 2 runs and has noted its checkpoint, else None."""
    with session_scope() as session:
        job, attempt = session.get(Job, job_id), repository.attempt(session, job_id, 2)
        started = job.status == "running" and attempt is not None and attempt.resumed_from
        return job.global_step if started else None


@pytest.fixture
def flushed_redis_env(settings_env, monkeypatch) -> Iterator[dict[str, str]]:
    yield from redis_postgres(settings_env, monkeypatch, redis_db=9)


def test_jobs_queued_when_redis_loses_its_data_each_run_exactly_once(
        flushed_redis_env, api, tiny_model, make_dataset, tmp_path):
    spec = short_spec(tiny_model, make_dataset(train=32, validation=0))
    ids = [api.post("/api/v1/jobs", json=spec).json()["id"] for _ in range(3)]
    broker = redis.Redis.from_url(flushed_redis_env["TUNEDECK_BROKER_URL"])
    assert broker.llen("tunedeck") == 3
    broker.flushdb()  # what a Redis restart without persistence does
    assert BrokerView(flushed_redis_env["TUNEDECK_BROKER_URL"]).job_ids() == set()
    queue.send(ids[0])
    queue.send(ids[0])  # and a duplicate: delivered twice, run once
    worker = WorkerProcess(flushed_redis_env, tmp_path / "worker.log")
    try:
        jobs = [finished(api, job_id) for job_id in ids]
        wait_until(lambda: broker.llen("tunedeck") == 0, 60, "the duplicate to be consumed")
        worker.wait_for_output(f"job {ids[0]} is not queued", timeout=30)
    finally:
        worker.stop()
    for job in jobs:
        assert job["status"] == "succeeded", job["error"]
        assert job["attempts"] == 1
        assert len(api.get(f"/api/v1/jobs/{job['id']}/attempts").json()) == 1
        assert [s for s, _ in loss_points(job["id"])] == [1, 2, 3, 4]
    assert f"re-sent 2 queued job(s) the broker did not hold: {ids[1:]}" in worker.output()


def test_cancel_queued_running_and_finished_jobs(sqlite_env, api, tiny_model, make_dataset,
                                                  tmp_path):
    dataset = make_dataset(train=64, validation=0)
    running_id = api.post("/api/v1/jobs", json=long_spec(tiny_model, dataset)).json()["id"]
    queued_id = api.post("/api/v1/jobs", json=short_spec(tiny_model, dataset)).json()["id"]
    output = get_settings().job_dir(running_id) / "output"
    worker = WorkerProcess(sqlite_env, tmp_path / "worker.log")
    try:
        wait_until(lambda: job_row(running_id).global_step >= 10 and latest_checkpoint(output),
                   120, "training past step 10 with a checkpoint")
        cancelled = api.post(f"/api/v1/jobs/{queued_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        stopping = api.post(f"/api/v1/jobs/{running_id}/cancel").json()
        assert stopping["status"] == "running" and stopping["cancel_requested"]
        job = finished(api, running_id)
        # The queued job's message is delivered after the long one, and dropped.
        view = BrokerView(get_settings().broker)
        wait_until(lambda: queued_id not in view.job_ids(), 60, "the queued job's message")
        worker.wait_for_output(f"job {queued_id} is not queued", timeout=30)
        done_id = api.post("/api/v1/jobs", json=short_spec(tiny_model, dataset)).json()["id"]
        done = finished(api, done_id)
    finally:
        worker.stop()

    assert job["status"] == "cancelled" and job["error"] is None
    assert MAX_STEPS > job["progress"]["step"] >= 10
    steps = [s for s, _ in loss_points(running_id)]
    assert steps == list(range(1, job["progress"]["step"] + 1))  # what was logged is kept
    names = [c["name"] for c in api.get(f"/api/v1/jobs/{running_id}/checkpoints").json()]
    last = latest_checkpoint(output)
    assert last is not None and last.name in names and "final" not in names
    assert [a["outcome"] for a in api.get(f"/api/v1/jobs/{running_id}/attempts").json()] == [
        "cancelled"]

    never = api.get(f"/api/v1/jobs/{queued_id}").json()
    assert never["status"] == "cancelled" and never["attempts"] == 0
    assert never["started_at"] is None
    assert api.get(f"/api/v1/jobs/{queued_id}/attempts").json() == []

    assert done["status"] == "succeeded"
    for job_id, status in ((done_id, "succeeded"), (running_id, "cancelled"),
                           (queued_id, "cancelled")):
        again = api.post(f"/api/v1/jobs/{job_id}/cancel")
        assert again.status_code == 409
        assert again.json()["detail"] == f"job {job_id} already {status}"
