"""Every state change of a job and its attempts, each one conditional UPDATE of the job row.

TRANSITIONS below is the whole state machine: an event applies only to a job in one of its
from-states (the UPDATE's WHERE), so two processes racing for the same change (two workers
claiming, a worker finishing while the sweep hands its job on, a cancel during a claim) can
never both win it: the loser's UPDATE matches no row and its function answers False/None.
Attempt events are fenced by the attempt number as well: once the sweep has handed the job
on, the old attempt's writes match nothing.

The web app (cancel, queue), the worker (hold, claim, report, finish, fail, cancel_ack,
retry_after_oom) and the
sweep (requeue, lose, cancel_ack, resend) call these; nothing else writes a job's status
(tests/app/jobs/test_lifecycle.py checks both the table and that no other module writes one).
No commits here: the caller's unit of work commits.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    bindparam,
    case,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobAttempt, JobStatus

Q, R, S, F, C = (JobStatus.queued, JobStatus.running, JobStatus.succeeded, JobStatus.failed,
                 JobStatus.cancelled)

# (from-state, event) -> to-state. Any pair not listed leaves the job as it is.
TRANSITIONS: dict[tuple[JobStatus, str], JobStatus] = {
    (Q, "claim"): R,        # a worker takes the job (attempt n+1 starts)
    (Q, "resend"): Q,       # the sweep sends a job the broker lost again
    (Q, "hold"): Q,         # a worker holds its message, waiting for GPUs (worker/allocation.py)
    (Q, "cancel"): C,       # a queued job is cancelled at once: it never starts
    (R, "cancel"): R,       # a running one gets the flag; its worker stops at the next step
    (R, "heartbeat"): R,    # the attempt that holds the lease renews it
    (R, "report"): R,       # progress write, fenced like the heartbeat (and renewing it)
    (R, "finish"): S,       # the attempt trained to the end
    (R, "cancel_ack"): C,   # the attempt stopped for a cancel (or was lost with one pending)
    (R, "fail"): F,         # the attempt raised
    (R, "retry_after_oom"): R,  # CUDA OOM: attempt n+1 with half the batch (worker/runner.py)
    (R, "requeue"): Q,      # the sweep: the attempt's worker is gone, restarts are left
    (R, "lose"): F,         # the sweep: the worker is gone and no restarts are left
}
EVENTS = tuple(dict.fromkeys(event for _, event in TRANSITIONS))
LOST = "lost"  # a lost attempt's outcome
OOM = "oom"  # an attempt that ran out of GPU memory and handed on to a smaller batch

_JOBS = cast(Table, Job.__table__)


def sources(event: str) -> list[JobStatus]:
    """The states `event` applies to."""
    return [state for state, name in TRANSITIONS if name == event]


def _status_after(event: str) -> ColumnElement[Any]:
    """The status column's new value: the table's to-state for the row's from-state."""
    targets = {state: TRANSITIONS[state, event] for state in sources(event)}
    if len(set(targets.values())) == 1:
        return literal(next(iter(targets.values())).value)
    return case({state.value: target.value for state, target in targets.items()},
                value=Job.status, else_=Job.status)


def _transition(event: str, *where: ColumnElement[bool]) -> Update:
    """UPDATE jobs SET status=<to-state> WHERE status IN <from-states of event> AND where."""
    return (update(Job).where(Job.status.in_([s.value for s in sources(event)]), *where)
            .values(status=_status_after(event)))


def _held(job_id: int, attempt: int, expired_before: datetime | None = None) -> list[Any]:
    """The attempt still holds the job (and, for the sweep, has not renewed since the cutoff)."""
    where: list[Any] = [Job.id == job_id, Job.attempts == attempt]
    if expired_before is not None:
        where.append(or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < expired_before))
    return where


def _changed(session: Session, stmt: Update) -> bool:
    return session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]


# ---------------------------------------------------------------- queue and claim

def queue(session: Session, name: str, spec: dict[str, Any], now: datetime, *,
          sweep_id: int | None = None, sweep_values: dict[str, Any] | None = None) -> Job:
    """A new job, queued (the only way a job row comes to be); a sweep's names its point."""
    job = Job(name=name, spec=spec, status=Q, enqueued_at=now, latest_metrics={}, info=[],
              sweep_id=sweep_id, sweep_values=sweep_values)
    session.add(job)
    session.flush()
    return job


def claim(session: Session, job_id: int, worker_id: str, now: datetime,
          devices: str | None = None) -> int | None:
    """Queued -> running for a new attempt (on `devices`, when the worker chose them already);
    its number, or None when the job is not claimable."""
    stmt = (_transition("claim", Job.id == job_id, Job.cancel_requested.is_(False))
            .values(worker_id=worker_id, heartbeat_at=now, attempts=Job.attempts + 1,
                    devices=devices,
                    started_at=now, error_type=None, error_message=None,
                    error_traceback=None, error_hint=None)
            .returning(Job.attempts))
    number = session.execute(stmt).scalar()
    if number is not None:
        session.execute(insert(JobAttempt).values(job_id=job_id, number=number,
                                                  worker_id=worker_id, started_at=now))
    return number


def resend(session: Session, job_id: int, seen: datetime | None, now: datetime) -> bool:
    """Bump enqueued_at if no other sweeper did since `seen`: only one of them re-sends."""
    same = Job.enqueued_at.is_(None) if seen is None else Job.enqueued_at == seen
    return _changed(session, _transition("resend", Job.id == job_id, same)
                    .values(enqueued_at=now))


def hold(session: Session, job_id: int, now: datetime) -> bool:
    """A worker that took the job's message waits for GPUs: enqueued_at moves on, so the
    sweep does not send the job again while it waits (lifecycle.waiting)."""
    return _changed(session, _transition("hold", Job.id == job_id).values(enqueued_at=now))


# ---------------------------------------------------------------- cancel

def cancel(session: Session, job_id: int, now: datetime) -> bool:
    """Queued: cancelled now. Running: the flag its worker reads. False once finished.

    One statement for both, so a claim or a requeue at the same moment cannot slip between a
    status check and the write.
    """
    was_queued = Job.status == Q.value
    stmt = _transition("cancel", Job.id == job_id).values(
        cancel_requested=True,
        finished_at=case((was_queued, now), else_=Job.finished_at))
    return _changed(session, stmt)


# ---------------------------------------------------------------- the running attempt

def heartbeat(session: Session, job_id: int, attempt: int, now: datetime) -> bool:
    """Renew attempt `attempt`'s lease; False when the job no longer runs under it."""
    running = Job.status.in_([s.value for s in sources("heartbeat")])
    return _changed(session, update(Job).where(running, *_held(job_id, attempt))
                    .values(heartbeat_at=now))


@lru_cache(maxsize=64)
def _report_statement(columns: tuple[str, ...], fenced: bool) -> Update:
    """UPDATE jobs SET <columns> WHERE id [AND running under the attempt] RETURNING the cancel
    flag, built once per set of columns: the worker's writer runs it every flush, on the
    interpreter lock training needs (benchmark P1)."""
    where = [_JOBS.c.id == bindparam("job_id")]
    if fenced:
        where += [_JOBS.c.status.in_([s.value for s in sources("report")]),
                  _JOBS.c.attempts == bindparam("attempt")]
    values = {_JOBS.c[name]: bindparam(f"v_{name}", type_=_JOBS.c[name].type)
              for name in columns}
    return update(_JOBS).where(*where).values(values).returning(_JOBS.c.cancel_requested)


def report(session: Session, job_id: int, attempt: int | None,
           values: dict[str, Any]) -> bool | None:
    """Progress columns `values` in one statement, fenced by `attempt` when given; the job's
    cancel flag, or None when the job is gone or the attempt no longer holds it."""
    stmt = _report_statement(tuple(sorted(values)), attempt is not None)
    params = {f"v_{name}": value for name, value in values.items()}
    return session.execute(stmt, {"job_id": job_id, "attempt": attempt, **params}).scalar()


def note_resume(session: Session, job_id: int, attempt: int, checkpoint: str) -> None:
    """Record which checkpoint attempt `attempt` resumes from."""
    session.execute(update(JobAttempt)
                    .where(JobAttempt.job_id == job_id, JobAttempt.number == attempt)
                    .values(resumed_from=checkpoint))


def _end(event: str, session: Session, job_id: int, attempt: int, now: datetime,
         values: dict[str, Any], *, outcome: str, message: str | None = None,
         expired_before: datetime | None = None) -> bool:
    """The job's `event` under attempt `attempt` and that attempt's end, or False (not ours)."""
    stmt = _transition(event, *_held(job_id, attempt, expired_before)).values(
        eta_seconds=None, **values)
    if not _changed(session, stmt):
        return False
    session.execute(update(JobAttempt)
                    .where(JobAttempt.job_id == job_id, JobAttempt.number == attempt,
                           JobAttempt.ended_at.is_(None))
                    .values(ended_at=now, outcome=outcome, message=_after_note(message)))
    return True


def _after_note(message: str | None) -> ColumnElement[Any]:
    """The attempt's end message after the note it started with (an OOM retry's change)."""
    if message is None:
        return JobAttempt.message  # type: ignore[return-value]
    return case((JobAttempt.message.is_(None), literal(message)),
                else_=JobAttempt.message + literal(f"; then {message}"))


def finish(session: Session, job_id: int, attempt: int, now: datetime, global_step: int,
           final_metrics: dict[str, float] | None = None, *,
           stopped_early: dict[str, Any] | None = None) -> bool:
    """Running -> succeeded, if attempt `attempt` still holds the job (`stopped_early`: where
    early stopping ended it, worker/training.py)."""
    extra: dict[str, Any] = {} if final_metrics is None else {"final_metrics": final_metrics}
    if stopped_early is not None:
        extra["stopped_early"] = stopped_early
    return _end("finish", session, job_id, attempt, now,
                {"finished_at": now, "global_step": global_step, **extra}, outcome=S)


def cancel_ack(session: Session, job_id: int, attempt: int, now: datetime,
               global_step: int | None = None, final_metrics: dict[str, float] | None = None,
               *, expired_before: datetime | None = None, message: str | None = None) -> bool:
    """Running -> cancelled: the attempt stopped for a cancel, or (expired_before, the sweep)
    its worker was lost with a cancel pending."""
    values: dict[str, Any] = {"finished_at": now}
    if global_step is not None:
        values["global_step"] = global_step
    if final_metrics is not None:
        values["final_metrics"] = final_metrics
    lost = expired_before is not None
    return _end("cancel_ack", session, job_id, attempt, now, values,
                outcome=LOST if lost else C, message=message, expired_before=expired_before)


def fail(session: Session, job_id: int, attempt: int, now: datetime, error_type: str,
         message: str, traceback: str | None, hint: str | None) -> bool:
    """Running -> failed with the error, if attempt `attempt` still holds the job."""
    values = {"finished_at": now, "error_type": error_type, "error_message": message,
              "error_traceback": traceback, "error_hint": hint}
    return _end("fail", session, job_id, attempt, now, values, outcome=F,
                message=f"{error_type}: {message}"[:2000])


def retry_after_oom(session: Session, job_id: int, attempt: int, now: datetime,
                    spec: dict[str, Any], error: str, note: str) -> int | None:
    """Running -> running under attempt n+1 with `spec` (the halved batch), if attempt `attempt`
    still holds the job and no cancel is pending; attempt n ends as "oom" with `error`, attempt
    n+1 starts with `note`. The new attempt's number, or None."""
    stmt = (_transition("retry_after_oom", *_held(job_id, attempt),
                        Job.cancel_requested.is_(False))
            .values(attempts=Job.attempts + 1, spec=spec, heartbeat_at=now, eta_seconds=None)
            .returning(Job.attempts, Job.worker_id))
    row = session.execute(stmt).first()
    if row is None:
        return None
    session.execute(update(JobAttempt)
                    .where(JobAttempt.job_id == job_id, JobAttempt.number == attempt)
                    .values(ended_at=now, outcome=OOM, message=_after_note(error[:2000])))
    session.execute(insert(JobAttempt).values(job_id=job_id, number=row.attempts,
                                              worker_id=row.worker_id, started_at=now,
                                              message=note))
    return int(row.attempts)


# ---------------------------------------------------------------- the sweep (lost workers)

def requeue(session: Session, job_id: int, attempt: int, now: datetime,
            expired_before: datetime, message: str) -> bool:
    """Running -> queued: attempt `attempt` stopped heartbeating before `expired_before`."""
    values = {"worker_id": None, "heartbeat_at": None, "enqueued_at": now}
    return _end("requeue", session, job_id, attempt, now, values, outcome=LOST,
                message=message, expired_before=expired_before)


def lose(session: Session, job_id: int, attempt: int, now: datetime, expired_before: datetime,
         message: str, error_message: str, hint: str) -> bool:
    """Running -> failed (WorkerLost): the worker is gone and no restarts are left."""
    values = {"finished_at": now, "error_type": "WorkerLost", "error_message": error_message,
              "error_traceback": None, "error_hint": hint}
    return _end("lose", session, job_id, attempt, now, values, outcome=LOST, message=message,
                expired_before=expired_before)


def expired(session: Session, cutoff: datetime) -> list[Job]:
    """Running jobs whose last heartbeat is older than `cutoff` (candidates for the sweep)."""
    query = select(Job).where(Job.status == R.value,
                              or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff))
    return list(session.scalars(query.order_by(Job.id)).all())


def waiting(session: Session, enqueued_before: datetime) -> list[Job]:
    """Queued jobs sent to the broker before `enqueued_before` (candidates for a re-send)."""
    query = select(Job).where(
        Job.status == Q.value, Job.cancel_requested.is_(False),
        or_(Job.enqueued_at.is_(None), Job.enqueued_at < enqueued_before))
    return list(session.scalars(query.order_by(Job.id)).all())

