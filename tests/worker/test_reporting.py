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


class CountingDatabase:
    """session_scope that counts the transactions the writer opens."""

    def __init__(self):
        self.calls = 0

    @contextmanager
    def __call__(self):
        self.calls += 1
        with session_scope() as session:
            yield session


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_with_nothing_new_the_writer_only_heartbeats(settings_env, data_dir):
    """Every write holds the interpreter lock the training loop needs: an idle reporter
    writes once per idle_seconds, and anything reported goes out at the next flush."""
    job_id = new_job()
    counting = CountingDatabase()
    reporter = DbReporter(job_id, counting, data_dir, flush_seconds=0.01,
                          idle_seconds=0.4).start()
    time.sleep(1.0)  # 100 flush ticks with nothing to write
    assert 1 <= counting.calls <= 4
    before = counting.calls
    reporter.progress(7, 10, 0.7, 12.5, 1.0)
    wait_for(lambda: counting.calls > before)
    with session_scope() as session:
        wait_for(lambda: session.get(Job, job_id, populate_existing=True).global_step == 7)
        heartbeat = session.get(Job, job_id).heartbeat_at
    time.sleep(0.6)
    with session_scope() as session:
        assert session.get(Job, job_id).heartbeat_at > heartbeat  # the idle heartbeat
    assert reporter.close(timeout=5)


def test_latest_metrics_keep_what_the_job_had(settings_env, data_dir):
    """A resumed job starts with its earlier latest metrics; new values are merged in."""
    job_id = new_job()
    with session_scope() as session:
        session.get(Job, job_id).latest_metrics = {"eval/accuracy": 0.7, "train/loss": 0.9}
    reporter = DbReporter(job_id, session_scope, data_dir)
    reporter.metrics(3, 0.3, {"train/loss": 0.5})
    reporter.flush()
    reporter.metrics(4, 0.4, {"train/learning_rate": 1e-5})
    reporter.flush()
    with session_scope() as session:
        assert session.get(Job, job_id).latest_metrics == {
            "eval/accuracy": 0.7, "train/loss": 0.5, "train/learning_rate": 1e-5}


def test_the_cancel_flag_comes_back_with_the_write(settings_env, data_dir):
    job_id = new_job()
    reporter = DbReporter(job_id, session_scope, data_dir)
    reporter.flush()
    assert not reporter.cancel_requested
    with session_scope() as session:
        session.get(Job, job_id).cancel_requested = True
    reporter.flush()
    assert reporter.cancel_requested
    with session_scope() as session:
        session.delete(session.get(Job, job_id))
    reporter = DbReporter(job_id, session_scope, data_dir)
    reporter.flush()
    assert reporter.cancel_requested  # a deleted job stops its run too
