"""The lease sweep and the lease fence, in-process on SQLite and the embedded broker."""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import OperationalError, StatementError

from app.config import get_settings
from app.db import session_scope, utcnow
from app.jobs import lifecycle, repository, service
from app.jobs.models import Job, JobAttempt, JobStatus, MetricPoint
from app.jobs.queue import worker_queues
from app.jobs.schemas import JobSpec
from tests.fixtures import REDIS_URL, redis_available, service_missing
from worker.broker import BrokerView, job_id_of
from worker.celery_app import TRAIN_TASK, make_celery
from worker.reporting import DbReporter
from worker.runner import LOST, claim, store_outcome
from worker.sweep import Sweeper, SweepProcess, sweep_once
from worker.training import Outcome

SPEC = {"model": "m", "dataset": {"path": "d", "text_fields": ["text"]}}


@pytest.fixture
def sweeper(settings_env):
    settings = get_settings().model_copy(update={"lease_timeout_seconds": 4.0,
                                                 "max_restarts": 2})
    sweeper = Sweeper(settings)
    yield sweeper
    sweeper.stop()


def running_job(heartbeat_age: float, attempts: int = 1, **fields) -> int:
    """A job attempt `attempts` runs on w1@gpu-box, last heartbeat `heartbeat_age` seconds ago."""
    now = utcnow()
    with session_scope() as session:
        job = Job(name="j", spec=SPEC, status=JobStatus.running, worker_id="w1@gpu-box",
                  heartbeat_at=now - timedelta(seconds=heartbeat_age), attempts=attempts,
                  started_at=now, latest_metrics={}, info=[], **fields)
        session.add(job)
        session.flush()
        session.add(JobAttempt(job_id=job.id, number=attempts, worker_id="w1@gpu-box",
                               started_at=now))
        return job.id


def submitted() -> int:
    """A queued job whose message is in the embedded broker."""
    with session_scope() as session:
        return service.create_job(session, JobSpec.model_validate(SPEC)).id


def state(job_id: int) -> tuple[Job, list[JobAttempt]]:
    with session_scope() as session:
        return session.get(Job, job_id), list(repository.attempts(session, job_id))


def held(sweeper: Sweeper) -> set[int]:
    return sweeper.broker.job_ids()


def purge_embedded_broker() -> None:
    engine = create_engine(get_settings().broker.removeprefix("sqla+"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM kombu_message"))
    engine.dispose()


def test_an_expired_lease_goes_back_to_the_queue_and_is_sent(sweeper):
    job_id = running_job(heartbeat_age=10)
    report = sweeper.run_once()
    assert report.requeued == [job_id] and not report.failed
    job, attempts = state(job_id)
    assert job.status == "queued" and job.worker_id is None and job.attempts == 1
    assert attempts[0].outcome == "lost" and attempts[0].ended_at is not None
    assert attempts[0].message.startswith("worker w1@gpu-box stopped heartbeating at 20")
    assert held(sweeper) == {job_id}
    assert not sweeper.run_once()  # nothing left to do


def test_a_live_lease_is_left_alone(sweeper):
    job_id = running_job(heartbeat_age=1)
    assert not sweeper.run_once()
    assert state(job_id)[0].status == "running"


def test_a_job_lost_more_than_max_restarts_times_fails_with_the_reason(sweeper):
    job_id = running_job(heartbeat_age=10, attempts=3)
    assert sweeper.run_once().failed == [job_id]
    job, attempts = state(job_id)
    assert job.status == "failed" and job.finished_at is not None
    assert job.error_type == "WorkerLost"
    assert job.error_message.startswith(
        "worker lost 3 times (TUNEDECK_MAX_RESTARTS=2); last seen on w1@gpu-box at 20")
    assert "dmesg" in job.error_hint
    assert attempts[0].outcome == "lost"
    assert held(sweeper) == set()


def test_a_lost_job_with_a_pending_cancel_ends_cancelled(sweeper):
    job_id = running_job(heartbeat_age=10, cancel_requested=True)
    assert sweeper.run_once().cancelled == [job_id]
    assert state(job_id)[0].status == "cancelled"
    assert held(sweeper) == set()


def test_only_the_attempt_that_holds_the_lease_can_change_it(settings_env):
    job_id = running_job(heartbeat_age=10, attempts=2)
    cutoff = utcnow()
    with session_scope() as session:
        assert not lifecycle.heartbeat(session, job_id, 1, utcnow())
        assert not lifecycle.requeue(session, job_id, 1, utcnow(), cutoff, "lost")
        assert lifecycle.heartbeat(session, job_id, 2, utcnow())
        assert not lifecycle.requeue(session, job_id, 2, utcnow(), cutoff, "lost")


def queues_holding() -> dict[str, list[int]]:
    """The embedded broker's train messages by queue name."""
    engine = create_engine(get_settings().broker.removeprefix("sqla+"))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q"
                                 " ON m.queue_id = q.id WHERE m.visible")).all()
    engine.dispose()
    by_queue: dict[str, list[int]] = {}
    for name, payload in rows:
        by_queue.setdefault(name, []).append(job_id_of(payload))
    return by_queue


def test_a_job_asking_for_n_gpus_waits_in_the_queue_only_n_gpu_workers_read(sweeper):
    cpu_or_any = submitted()
    with session_scope() as session:
        two = service.create_job(session, JobSpec.model_validate(
            {**SPEC, "resources": {"gpus": 2}})).id
    assert queues_holding() == {"tunedeck": [cpu_or_any], "tunedeck.gpus2": [two]}
    assert worker_queues(0) == ["tunedeck"]
    assert worker_queues(1) == ["tunedeck", "tunedeck.gpus1"]
    assert worker_queues(2) == ["tunedeck", "tunedeck.gpus1", "tunedeck.gpus2"]
    assert worker_queues(0, ddp_cpu=True)[-1] == "tunedeck.gpus8"
    # The sweep's view of the broker reads every train queue, and re-sends to the same one.
    assert held(sweeper) == {cpu_or_any, two}
    purge_embedded_broker()
    assert sweeper.run_once(startup=True).resent == [cpu_or_any, two]
    assert queues_holding() == {"tunedeck": [cpu_or_any], "tunedeck.gpus2": [two]}


def test_queued_jobs_the_broker_lost_are_sent_again(sweeper):
    job_id = submitted()
    assert held(sweeper) == {job_id}
    assert not sweeper.run_once(startup=True).resent  # the broker has it: no duplicate
    purge_embedded_broker()  # the broker loses its data
    assert held(sweeper) == set()
    assert sweeper.run_once(startup=True).resent == [job_id]
    assert held(sweeper) == {job_id}


def test_later_sweeps_resend_only_jobs_queued_longer_than_the_lease(sweeper):
    job_id = submitted()
    purge_embedded_broker()
    sweeper._last_resend = float("-inf")
    assert not sweeper.run_once().resent  # just enqueued: maybe on its way to the broker
    with session_scope() as session:
        session.get(Job, job_id).enqueued_at = utcnow() - timedelta(seconds=60)
    sweeper._last_resend = float("-inf")
    assert sweeper.run_once().resent == [job_id]
    sweeper._last_resend = float("-inf")
    assert not sweeper.run_once().resent  # enqueued_at was bumped; the message is there


def test_sweep_once_for_serve(settings_env):
    job_id = submitted()
    purge_embedded_broker()
    assert sweep_once(get_settings()).resent == [job_id]


def test_job_id_of_reads_celery_messages_only():
    assert job_id_of("not json") is None
    assert job_id_of({"headers": {"task": "other"}, "body": "W1s1XSwge30sIHt9XQ=="}) is None
    message = {"headers": {"task": "tunedeck.train"}, "body": "W1s0Ml0sIHt9LCB7fV0=",
               "properties": {"body_encoding": "base64"}}
    assert job_id_of(message) == 42


# ---------------------------------------------------------------- the fence on the worker side

def test_a_reporter_whose_lease_was_taken_stops_and_writes_nothing(settings_env, data_dir):
    job_id = running_job(heartbeat_age=0)
    reporter = DbReporter(job_id, session_scope, data_dir, attempt=1, lease_timeout=60)
    reporter.metrics(1, 0.1, {"train/loss": 0.5})
    reporter.flush()
    assert not reporter.lease_lost
    with session_scope() as session:  # the sweep hands the job on, another worker claims it
        job = session.get(Job, job_id)
        job.attempts, job.worker_id = 2, "w2@other"
    reporter.metrics(2, 0.2, {"train/loss": 0.4})
    reporter.flush()
    assert reporter.lease_lost and reporter.cancel_requested
    with session_scope() as session:
        steps = session.scalars(select(MetricPoint.step).where(
            MetricPoint.job_id == job_id)).all()
        assert steps == [1]
        assert session.get(Job, job_id).worker_id == "w2@other"


def test_a_reporter_that_cannot_reach_the_database_gives_the_job_up(settings_env, data_dir):
    job_id = running_job(heartbeat_age=0)

    @contextmanager
    def down():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        yield

    reporter = DbReporter(job_id, down, data_dir, flush_seconds=0.02, attempt=1,
                          lease_timeout=0.3).start()
    assert not reporter.cancel_requested
    time.sleep(0.5)
    assert reporter.lease_lost and reporter.cancel_requested
    reporter.close(timeout=0.1)


def test_a_failing_write_keeps_the_lease(settings_env, data_dir):
    job_id = running_job(heartbeat_age=0)
    reporter = DbReporter(job_id, session_scope, data_dir, attempt=1, lease_timeout=0.3)
    reporter.job_fields(info=object())  # not JSON: every data write fails from now on
    for _ in range(4):
        time.sleep(0.1)
        with pytest.raises(StatementError, match="not JSON serializable"):
            reporter.flush()
    assert not reporter.lease_lost
    assert (utcnow() - state(job_id)[0].heartbeat_at).total_seconds() < 0.3


def test_the_runner_never_ends_a_job_it_no_longer_holds(settings_env, data_dir):
    job_id = submitted()
    assert claim(job_id, "w1@gpu-box") == 1
    with session_scope() as session:  # lost, re-queued and claimed by another worker
        job = session.get(Job, job_id)
        job.attempts, job.worker_id = 2, "w2@other"
    reporter = DbReporter(job_id, session_scope, data_dir, attempt=1, lease_timeout=60)
    assert store_outcome(job_id, 1, Outcome(cancelled=False, global_step=3), reporter) == LOST
    job, attempts = state(job_id)
    assert job.status == "running" and job.worker_id == "w2@other"
    assert attempts[0].outcome is None


@pytest.mark.redis
def test_the_redis_view_counts_waiting_and_freshly_taken_messages():
    if not redis_available():
        service_missing("Redis is not reachable at 127.0.0.1:6379")
    url = f"{REDIS_URL.rsplit('/', 1)[0]}/10"
    client = redis.Redis.from_url(url)
    client.flushdb()
    producer = make_celery(url)
    for job_id in (1, 2, 3):
        producer.send_task(TRAIN_TASK, args=[job_id])
    producer.send_task(TRAIN_TASK, args=[4], queue="tunedeck.gpus2")  # a 2-GPU job
    # Take 1 and 2 as a worker would: 1 just now, 2 by a worker that died two minutes ago.
    for age in (0, 120):
        raw = client.rpop("tunedeck")
        tag = f"tag-{age}"
        client.hset("unacked", tag, json.dumps([json.loads(raw), "", "tunedeck"]))
        client.zadd("unacked_index", {tag: time.time() - age})
    try:
        assert BrokerView(url, fresh_seconds=60).job_ids() == {1, 3, 4}
        assert BrokerView(url, fresh_seconds=300).job_ids() == {1, 2, 3, 4}
    finally:
        client.flushdb()
        producer.close()


def test_the_sweep_process_recovers_leases_and_stops(settings_env):
    """The periodic sweep runs in a spawned process (no thread in the worker's main process,
    which forks the job processes); it stops when asked."""
    settings = get_settings().model_copy(update={"lease_timeout_seconds": 4.0,
                                                 "heartbeat_seconds": 0.05})
    job_id = running_job(heartbeat_age=60)
    process = SweepProcess(settings).start()
    try:
        deadline = time.monotonic() + 60
        while state(job_id)[0].status != JobStatus.queued and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state(job_id)[0].status == JobStatus.queued
        assert process._process.pid != os.getpid() and process._process.is_alive()
    finally:
        process.stop()
    assert not process._process.is_alive() and process._process.exitcode == 0
