"""app/jobs/lifecycle.py: its transition table, state by event, on SQLite and PostgreSQL, and
that no other product module writes a job's state."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import utcnow
from app.jobs import lifecycle
from app.jobs.lifecycle import EVENTS, TRANSITIONS
from app.jobs.models import Job, JobAttempt, JobStatus
from app.migrate import upgrade
from tests.fixtures import (
    REPO,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    service_missing,
)

SENT = datetime(2026, 1, 1, 12, 0, 0)
SEEN = datetime(2026, 1, 1, 12, 0, 5)

# Each event as its caller makes it, on a job that attempt 1 holds (or held), whose heartbeat
# (SEEN) is older than any cutoff the sweep uses and that was sent to the broker at SENT;
# True when the event took.
APPLY: dict[str, Callable[[Session, int, datetime], Any]] = {
    "claim": lambda s, j, now: lifecycle.claim(s, j, "w2@box", now) is not None,
    "resend": lambda s, j, now: lifecycle.resend(s, j, SENT, now),
    "hold": lambda s, j, now: lifecycle.hold(s, j, now),
    "cancel": lambda s, j, now: lifecycle.cancel(s, j, now),
    "heartbeat": lambda s, j, now: lifecycle.heartbeat(s, j, 1, now),
    "report": lambda s, j, now: lifecycle.report(s, j, 1, {"global_step": 5}) is not None,
    "finish": lambda s, j, now: lifecycle.finish(s, j, 1, now, 7, {"eval/accuracy": 1.0}),
    "cancel_ack": lambda s, j, now: lifecycle.cancel_ack(s, j, 1, now, 7),
    "fail": lambda s, j, now: lifecycle.fail(s, j, 1, now, "ValueError", "bad", "tb", None),
    "requeue": lambda s, j, now: lifecycle.requeue(s, j, 1, now, now, "lost"),
    "lose": lambda s, j, now: lifecycle.lose(s, j, 1, now, now, "lost", "gone", "hint"),
    "retry_after_oom": lambda s, j, now: lifecycle.retry_after_oom(
        s, j, 1, now, {"training": {"per_device_train_batch_size": 4}}, "OutOfMemoryError: x",
        "batch 8 -> 4, accumulation 1 -> 2 after CUDA OOM") is not None,
}
FENCED = ("heartbeat", "report", "finish", "cancel_ack", "fail", "requeue", "lose",
          "retry_after_oom")


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sessions(request, tmp_path_factory) -> Iterator[sessionmaker[Session]]:
    """Sessions on a freshly migrated database of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('lifecycle') / 'jobs.db'}"
    elif not postgres_available():
        service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
    else:
        url = fresh_postgres_database()
    upgrade(url)
    engine = create_engine(url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()
    if request.param == "postgresql":
        drop_postgres_database(url)


def a_job(sessions: sessionmaker[Session], status: JobStatus) -> int:
    """A job in `status` as attempt 1 left it, its attempt row open."""
    with sessions.begin() as session:
        job = Job(name="j", spec={}, status=status, attempts=1, worker_id="w1@box",
                  heartbeat_at=SEEN, enqueued_at=SENT, started_at=SENT, latest_metrics={},
                  info=[], global_step=3)
        session.add(job)
        session.flush()
        session.add(JobAttempt(job_id=job.id, number=1, worker_id="w1@box", started_at=SENT))
        return job.id


def snapshot(sessions: sessionmaker[Session], job_id: int) -> tuple[dict, dict]:
    with sessions() as session:
        job = session.get(Job, job_id)
        attempts = session.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id)).all()
        columns = {c.name: getattr(job, c.name) for c in Job.__table__.columns}
        return columns, {a.number: (a.ended_at, a.outcome) for a in attempts}


def test_every_event_has_a_function_and_every_function_an_entry():
    assert set(APPLY) == set(EVENTS)
    assert {state for state, _ in TRANSITIONS} <= set(JobStatus)


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("state", list(JobStatus))
def test_each_state_by_each_event(sessions, state: JobStatus, event: str):
    job_id = a_job(sessions, state)
    before, _ = snapshot(sessions, job_id)
    with sessions.begin() as session:
        took = APPLY[event](session, job_id, utcnow())
    after, attempts = snapshot(sessions, job_id)
    target = TRANSITIONS.get((state, event))
    if target is None:  # not allowed: nothing changes at all
        assert (took, after, attempts[1]) == (False, before, (None, None))
        return
    assert took is True and after["status"] == target
    ended = attempts[1][0] is not None
    assert ended == (event in ("finish", "cancel_ack", "fail", "requeue", "lose",
                               "retry_after_oom"))
    assert (after["finished_at"] is not None) == JobStatus(target).finished
    if event in ("claim", "retry_after_oom"):
        assert after["attempts"] == 2 and set(attempts) == {1, 2}
    if event == "retry_after_oom":
        assert attempts[1][1] == "oom" and after["spec"]["training"] == {
            "per_device_train_batch_size": 4}
    if event == "cancel":
        assert after["cancel_requested"] is True


@pytest.mark.parametrize("event", FENCED)
def test_an_attempt_that_no_longer_holds_the_job_changes_nothing(sessions, event: str):
    job_id = a_job(sessions, JobStatus.running)
    with sessions.begin() as session:  # the sweep handed it on; attempt 2 holds it now
        session.get(Job, job_id).attempts = 2
    before = snapshot(sessions, job_id)
    with sessions.begin() as session:
        assert not APPLY[event](session, job_id, utcnow())
    assert snapshot(sessions, job_id) == before


@pytest.mark.parametrize("event", ["requeue", "lose"])
def test_the_sweep_leaves_a_renewed_lease_alone(sessions, event: str):
    job_id = a_job(sessions, JobStatus.running)
    with sessions.begin() as session:
        assert lifecycle.heartbeat(session, job_id, 1, utcnow() + timedelta(seconds=1))
    with sessions.begin() as session:
        assert not APPLY[event](session, job_id, utcnow())
    assert snapshot(sessions, job_id)[0]["status"] == JobStatus.running


# Writes of a job's state that only app/jobs/lifecycle.py may make (tests and migrations may).
RAW_STATE_WRITES = [
    r"\bupdate\(\s*(Job|JobAttempt|_JOBS|Job\.__table__|JobAttempt\.__table__)\s*\)",
    r"\b(Job|JobAttempt)\.__table__\.(update|insert)\(",
    r"(?<!class )\b(Job|JobAttempt)\(",
    (r"^\s*(job\.\w+\s*,\s*)*job\.(status|finished_at|cancel_requested|attempts|heartbeat_at|"
     r"worker_id|enqueued_at)(\s*,\s*job\.\w+)*\s*=(?!=)"),
    r"(?i)\bupdate\s+(jobs|job_attempts)\b",
]


def test_no_module_but_lifecycle_writes_a_jobs_state():
    found = []
    for path in sorted([*REPO.glob("app/**/*.py"), *REPO.glob("worker/**/*.py")]):
        if path == REPO / "app/jobs/lifecycle.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(re.search(pattern, line) for pattern in RAW_STATE_WRITES):
                found.append(f"{Path(path).relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
