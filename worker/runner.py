"""Runs one job: claim the row, train through the recipe, store the outcome, release the lease.

No Celery import: worker/tasks.py calls run_job; tests can call it directly too.
"""
from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path

from sqlalchemy import update

from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import session_scope, utcnow
from app.jobs import repository
from app.jobs.models import Job, JobAttempt, JobStatus
from worker import data as D
from worker import gpu
from worker.reporting import DbReporter, dir_size
from worker.training import Outcome, train

log = logging.getLogger(__name__)
TRACEBACK_LINES = 30
OOM_HINT = ("The GPU ran out of memory. Try a smaller per_device_train_batch_size with "
            "gradient_accumulation_steps to keep the effective batch, fp16 or bf16, or a "
            "shorter max_length.")


def worker_name() -> str:
    return f"{socket.gethostname()}"


def claim(job_id: int, worker_id: str) -> int | None:
    """Atomically move a queued job to running; the attempt number, or None if not ours."""
    now = utcnow()
    with session_scope() as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued,
                   Job.cancel_requested.is_(False))
            .values(status=JobStatus.running, worker_id=worker_id, heartbeat_at=now,
                    attempts=Job.attempts + 1, started_at=now, error_type=None,
                    error_message=None, error_traceback=None, error_hint=None)
        ).rowcount
        if claimed != 1:
            return None
        job = session.get(Job, job_id)
        session.add(JobAttempt(job_id=job_id, number=job.attempts, worker_id=worker_id,
                               started_at=now))
        return job.attempts


def source_for(spec: dict) -> D.Source:
    ds = spec["dataset"]
    if ds["source"] == "local":
        return D.local_source(Path(ds["path"]).expanduser())
    if ds["source"] == "upload":
        with session_scope() as session:
            row = session.get(Dataset, ds["path"])
            if row is None:
                raise D.DataError(f"uploaded dataset {ds['path']!r} no longer exists")
            path = Path(row.path)
            path = path if path.is_absolute() else get_settings().data_dir / path
            return D.upload_source(str(path), row.format)
    return D.Source(ds["path"], ds.get("config"))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint-N directory (its trainer_state.json is written last)."""
    if not output_dir.is_dir():
        return None
    done = [p for p in output_dir.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def run_job(job_id: int, worker_id: str | None = None, settings: Settings | None = None) -> str:
    """Run job `job_id` if it is still queued; returns the final status (or 'skipped')."""
    settings = settings or get_settings()
    worker_id = worker_id or worker_name()
    attempt = claim(job_id, worker_id)
    if attempt is None:
        log.info("job %s is not queued (already taken, finished or cancelled); skipping", job_id)
        return "skipped"
    job_dir = settings.job_dir(job_id)
    stats = gpu.GpuStats()
    reporter = DbReporter(job_id, session_scope, settings.data_dir, settings.flush_seconds,
                          stats=stats.snapshot).start()
    resume = latest_checkpoint(job_dir / "output")
    with session_scope() as session:
        spec = session.get(Job, job_id).spec
        if resume is not None:
            _note_attempt(session, job_id, attempt, resumed_from=resume.name)
    try:
        outcome = train(spec, source_for(spec), job_dir, reporter,
                        resume_from=str(resume) if resume else None)
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded on the job
        reporter.close()
        _fail(job_id, attempt, exc)
        gpu.release()
        if not isinstance(exc, Exception):
            raise
        return JobStatus.failed
    reporter.close()
    status = _finish(job_id, attempt, outcome, reporter)
    gpu.release()
    return status


def _note_attempt(session, job_id: int, number: int, **values) -> None:
    attempt = session.query(JobAttempt).filter_by(job_id=job_id, number=number).one()
    for key, value in values.items():
        setattr(attempt, key, value)


def _finish(job_id: int, attempt: int, outcome: Outcome, reporter: DbReporter) -> str:
    status = JobStatus.cancelled if outcome.cancelled else JobStatus.succeeded
    now = utcnow()
    with session_scope() as session:
        job = session.get(Job, job_id)
        if outcome.final_dir is not None:
            repository.replace_predictions(
                session, job_id, [{"job_id": job_id, **row} for row in outcome.predictions])
            repository.upsert_checkpoint(session, {
                "job_id": job_id, "name": "final", "step": outcome.global_step,
                "path": reporter.relative(outcome.final_dir), "size_bytes":
                dir_size(outcome.final_dir), "metrics": {k: v for k, v in
                outcome.final_metrics.items() if k.startswith("eval/")}, "created_at": now})
            job.final_metrics = outcome.final_metrics
        job.status, job.finished_at, job.global_step = status, now, outcome.global_step
        job.eta_seconds = None
        _note_attempt(session, job_id, attempt, ended_at=now, outcome=status)
    log.info("job %s %s at step %s", job_id, status, outcome.global_step)
    return status


def describe_failure(exc: BaseException) -> tuple[str, str, str, str | None]:
    """(type, message, traceback tail, hint) for the job row."""
    kind = type(exc).__name__
    message = str(exc) or kind
    tail = "".join(traceback.format_exception(exc)).splitlines()[-TRACEBACK_LINES:]
    hint = None
    if kind == "OutOfMemoryError" or "out of memory" in message.lower():
        hint = OOM_HINT
    return kind, message[:10_000], "\n".join(tail), hint


def _fail(job_id: int, attempt: int, exc: BaseException) -> None:
    kind, message, tail, hint = describe_failure(exc)
    log.error("job %s failed: %s: %s", job_id, kind, message)
    now = utcnow()
    with session_scope() as session:
        job = session.get(Job, job_id)
        job.status, job.finished_at, job.eta_seconds = JobStatus.failed, now, None
        job.error_type, job.error_message, job.error_traceback, job.error_hint = (
            kind, message, tail, hint)
        _note_attempt(session, job_id, attempt, ended_at=now, outcome=JobStatus.failed,
                      message=f"{kind}: {message}"[:2000])
