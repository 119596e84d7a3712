"""Rules for jobs and the JSON the API shows of them; the state changes themselves are
app/jobs/lifecycle.py's. No commits here (the boundary commits)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from app import paths
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import loads_json, utcnow
from app.errors import Conflict, Invalid, NotFound
from app.jobs import lifecycle, repository
from app.jobs.models import Job, JobStatus
from app.jobs.outputs import PREDICTION_MODELS, JobOut, PredictionOut, PredictionPage, Progress
from app.jobs.queue import enqueue_after_commit
from app.jobs.schemas import DEFAULT_TASK, JobSpec
from app.workers import service as workers


def check_spec(session: Session, spec: JobSpec, settings: Settings | None = None) -> None:
    """What the spec's own validation cannot see: the uploaded dataset exists, local paths lie
    under the allowed roots. Invalid (or OutsideLocalRoots) naming the field otherwise."""
    if spec.dataset.source == "upload" and session.get(Dataset, spec.dataset.path) is None:
        raise Invalid("dataset.path", f"no uploaded dataset with id {spec.dataset.path!r}")
    settings = settings or get_settings()
    paths.confine(spec.model_dump(), paths.allowed_roots(session, settings))
    workers.check_resources(session, spec.resources.model_dump(), settings)


def create_job(session: Session, spec: JobSpec, settings: Settings | None = None, *,
               sweep_id: int | None = None, sweep_values: dict[str, Any] | None = None) -> Job:
    check_spec(session, spec, settings)
    job = lifecycle.queue(session, spec.display_name(), spec.model_dump(mode="json"), utcnow(),
                          sweep_id=sweep_id, sweep_values=sweep_values)
    enqueue_after_commit(session, job)
    return job


def cancel_job(session: Session, job: Job) -> Job:
    """A queued job is cancelled at once (it never starts); a running one stops at its next step
    (lifecycle.cancel); Conflict once it has finished."""
    if not lifecycle.cancel(session, job.id, utcnow()):
        session.refresh(job)
        raise Conflict(f"job {job.id} already {job.status}")
    session.refresh(job)
    return job


# ---------------------------------------------------------------- tags and note

MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_NOTE_LENGTH = 10_000


def clean_tags(tags: Sequence[str], field: str = "tags") -> list[str]:
    """Tags stripped, duplicates dropped (first kept, in order); Invalid(field) names a bad one.

    A tag is 1-50 characters with no comma (the form and the CLI split on commas) and no
    control character."""
    kept: list[str] = []
    for i, raw in enumerate(tags):
        tag = raw.strip() if isinstance(raw, str) else ""
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise Invalid(f"{field}.{i}", f"a tag is 1 to {MAX_TAG_LENGTH} characters")
        if "," in tag or any(ord(c) < 32 or ord(c) == 127 for c in tag):
            raise Invalid(f"{field}.{i}", "a tag holds no comma and no control character")
        if tag not in kept:
            kept.append(tag)
    if len(kept) > MAX_TAGS:
        raise Invalid(field, f"at most {MAX_TAGS} tags per job")
    return kept


def set_tags(session: Session, job_id: int, tags: Sequence[str]) -> list[str]:
    """Replace a job's tags (cleaned as clean_tags does); for callers that make jobs, such as
    sweeps tagging theirs. No commit (the caller's unit of work commits)."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    job.tags = clean_tags(tags)
    return job.tags


def annotate(session: Session, job: Job, *, tags: Sequence[str] | None = None,
             note: str | None = None, clear_note: bool = False) -> Job:
    """Set what is given of a job's tags and note, in any state (finished jobs too)."""
    if tags is not None:
        job.tags = clean_tags(tags)
    if note is not None or clear_note:
        text = (note or "").strip()
        if len(text) > MAX_NOTE_LENGTH:
            raise Invalid("note", f"at most {MAX_NOTE_LENGTH:,} characters")
        job.note = text or None
    session.flush()
    return job


def progress_of(job: Job) -> Progress:
    return Progress.model_validate(_progress(
        job.status, job.global_step, job.max_steps, job.epoch, job.samples_per_second,
        job.eta_seconds, job.progress_at))


def _progress(status: str, step: int | None, max_steps: int | None, epoch: float | None,
              samples_per_second: float | None, eta_seconds: float | None,
              updated_at: datetime | None) -> dict[str, Any]:
    fraction = min(1.0, (step or 0) / max_steps) if max_steps else None
    return {
        "step": step or 0, "max_steps": max_steps, "epoch": epoch,
        "fraction": 1.0 if status == JobStatus.succeeded else fraction,
        "samples_per_second": samples_per_second,
        "eta_seconds": eta_seconds if status == JobStatus.running else None,
        "updated_at": updated_at,
    }


# The columns job_dict copies as they are; the others it groups (progress, error).
_AS_IS = ("id", "name", "status", "spec", "created_at", "started_at", "finished_at",
          "cancel_requested", "final_metrics", "label_names", "gpu_peak_memory_mb",
          "gpu_utilization", "devices", "processes", "effective_batch_size", "attempts",
          "sweep_id", "sweep_values", "stopped_early")


def job_dict(c: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it (the fields of JobOut), from its repository.JOB_OUT_COLUMNS
    by name.

    Plain dicts, so the hot read endpoints serialize with orjson, skipping pydantic
    validation of every row; to_out() validates the same dict into a JobOut.
    """
    error = None
    if c["error_type"] or c["error_message"]:
        error = {"type": c["error_type"], "message": c["error_message"],
                 "traceback": c["error_traceback"], "hint": c["error_hint"]}
    out = {name: c[name] for name in _AS_IS}
    out.update(
        progress=_progress(c["status"], c["global_step"], c["max_steps"], c["epoch"],
                           c["samples_per_second"], c["eta_seconds"], c["progress_at"]),
        latest_metrics=c["latest_metrics"] or {}, info=c["info"] or [], error=error,
        tags=c["tags"] or [], note=c["note"])
    return out


def to_out(job: Job) -> JobOut:
    return JobOut.model_validate(job_dict({c: getattr(job, c)
                                           for c in repository.JOB_OUT_COLUMNS}))


# The hot read endpoints (scripts poll them): one autocommit connection, one SELECT, the
# bytes made by orjson. tests/app/jobs/test_api.py holds them equal to the JobOut models.

def job_json(connection: Connection, job_id: int) -> bytes | None:
    row = repository.job_row(connection, job_id)
    return None if row is None else orjson.dumps(_text_row_dict(row))


def job_page_json(connection: Connection, *, status: str | None, page: int,
                  per_page: int, tag: str | None = None) -> bytes:
    rows, total = repository.list_job_rows(
        connection, status=status, offset=(page - 1) * per_page, limit=per_page, tag=tag
    )
    return orjson.dumps({"items": [_text_row_dict(row) for row in rows], "total": total,
                         "page": page, "per_page": per_page})


def _text_row_dict(row: Row) -> dict[str, Any]:
    """job_dict of a row whose repository.JSON_COLUMNS are their stored text."""
    # The statement selects JOB_OUT_COLUMNS in this order; zip takes about a quarter of
    # _asdict()'s time per row (measured: 5 us against 23 us).
    columns = dict(zip(repository.JOB_OUT_COLUMNS, row, strict=False))
    for name in repository.JSON_COLUMNS:
        columns[name] = raw_json(columns[name])
    return job_dict(columns)


def raw_json(stored: str | None) -> Any:
    """A JSON column's stored text, for orjson to write as it is (orjson.Fragment).

    SQL NULL and JSON null both become None (job_dict fills the defaults). Text with a NaN
    or Infinity literal, which SQLite keeps when the stdlib wrote it (PostgreSQL's json type
    refuses them) and which is not JSON, is parsed instead, so orjson writes those as null.
    """
    if stored is None or stored == "null":
        return None
    if "NaN" in stored or "Infinity" in stored:
        return loads_json(stored)
    return orjson.Fragment(stored)


def prediction_page(
    session: Session, job: Job, *, errors_only: bool, page: int, per_page: int
) -> PredictionPage:
    task = job.spec.get("task") or DEFAULT_TASK
    rows, total = repository.predictions(
        session, job.id, errors_only=errors_only, offset=(page - 1) * per_page, limit=per_page,
        by_error=task == "text-regression",
    )
    model = PREDICTION_MODELS.get(task, PredictionOut)
    return PredictionPage(
        task=task, items=[model.model_validate(row.as_row(task)) for row in rows], total=total,
        page=page, per_page=per_page, metrics=job.final_metrics, label_names=job.label_names,
        confusion=confusion_matrix(session, job),
    )


def confusion_matrix(session: Session, job: Job) -> list[list[int]] | None:
    """Rows are true labels, columns predicted labels, in label_names order."""
    names = job.label_names or []
    counts = repository.confusion_counts(session, job.id)
    if not names or not counts:
        return None
    index = {name: i for i, name in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for label, predicted, n in counts:
        if label in index and predicted in index:
            matrix[index[label]][index[predicted]] += n
    return matrix
