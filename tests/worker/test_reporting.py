"""DbReporter: database hiccups never crash, block or lose what the run reported."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.db import session_scope
from app.jobs import service
from app.jobs.models import Job, MetricPoint
from app.jobs.schemas import JobSpec
from worker.reporting import DbReporter


def new_job() -> int:
    spec = {"model": "m", "dataset": {"path": "d", "text_fields": ["text"]}}
    with session_scope() as session:
        job = service.create_job(session, JobSpec.model_validate(spec))
        session.info.pop("tunedeck_pending_jobs", None)
        return job.id


class FlakyDatabase:
    """session_scope that fails the first `failures` times, then works."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    @contextmanager
    def __call__(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("SELECT 1", {}, Exception("database is restarting"))
        with session_scope() as session:
            yield session


def test_points_survive_failed_flushes(settings_env, data_dir):
    job_id = new_job()
    flaky = FlakyDatabase(failures=3)
    reporter = DbReporter(job_id, flaky, data_dir, flush_seconds=0.05).start()
    for step in range(1, 51):
        reporter.metrics(step, step / 50, {"train/loss": 1.0 / step})
        reporter.progress(step, 50, step / 50, 10.0, 0.0)
    assert reporter.close(timeout=10)
    assert reporter.failures >= 3
    with session_scope() as session:
        steps = session.scalars(select(MetricPoint.step).where(
            MetricPoint.job_id == job_id).order_by(MetricPoint.step)).all()
        job = session.get(Job, job_id)
    assert steps == list(range(1, 51))
    assert job.global_step == 50 and job.latest_metrics == {"train/loss": 1.0 / 50}


def test_a_hung_database_never_blocks_training(settings_env, data_dir):
    job_id = new_job()
    release = threading.Event()

    @contextmanager
    def hung():
        release.wait(30)
        with session_scope() as session:
            yield session

    reporter = DbReporter(job_id, hung, data_dir, flush_seconds=0.01).start()
    time.sleep(0.1)  # the writer thread is now stuck inside the database call
    started = time.monotonic()
    for step in range(1, 10_001):
        reporter.metrics(step, None, {"train/loss": 0.5})
        reporter.progress(step, 10_000, None, None, None)
    assert time.monotonic() - started < 2.0  # 20,000 calls, none waited on the database
    assert not reporter.cancel_requested
    started = time.monotonic()
    assert reporter.close(timeout=0.5) is False  # gives up instead of hanging the job
    assert time.monotonic() - started < 5
    release.set()
