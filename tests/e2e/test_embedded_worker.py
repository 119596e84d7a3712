"""The worker with the embedded SQLite broker runs many short jobs while its lease sweep runs
every 0.05 s, and none hangs.

Each job runs in a pool process Celery forks from the worker's main process. A fork copies
only the forking thread: a lock another thread holds at that moment (SQLite's allocator mutex,
taken by the sweep's queries) stays locked forever in the child, which then blocks on its first
SQLite call, `claim()`. So the sweep runs in a process of its own (started with spawn), and the
main process runs no thread that touches SQLite when it forks.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job
from app.main import create_app
from tests.e2e.test_faults import short_spec, use_env
from tests.e2e.workers import WorkerProcess

JOBS = 20
SWEEP_EVERY = "0.05"


@pytest.fixture
def busy_sweep_env(settings_env, monkeypatch) -> dict[str, str]:
    env = {**settings_env, "TUNEDECK_HEARTBEAT_SECONDS": SWEEP_EVERY,
           "TUNEDECK_LEASE_TIMEOUT_SECONDS": "30", "TUNEDECK_FLUSH_SECONDS": "0.1"}
    use_env(env, monkeypatch)
    return env


@pytest.fixture
def api() -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def statuses() -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {str(status): count for status, count in rows}


@pytest.mark.slow
def test_many_short_jobs_while_the_sweep_runs_all_end(busy_sweep_env, api, tiny_model,
                                                      make_dataset, tmp_path):
    dataset = make_dataset(train=16, validation=0)
    spec = short_spec(tiny_model, dataset)
    spec["dataset"]["label_field"] = "no_such_column"  # fails fast, after a real claim
    ids = [api.post("/api/v1/jobs", json=spec).json()["id"] for _ in range(JOBS)]
    worker = WorkerProcess(busy_sweep_env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and statuses().get("failed", 0) < JOBS:
            time.sleep(0.5)
        log = worker.output()
    finally:
        worker.stop()
    assert statuses() == {"failed": JOBS}, f"{statuses()}\n{log[-3000:]}"
    with session_scope() as session:
        messages = session.scalars(select(Job.error_message).where(Job.id.in_(ids))).all()
    assert all("no_such_column" in m for m in messages)
    assert get_settings().heartbeat_seconds == float(SWEEP_EVERY)
