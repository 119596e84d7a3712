"""The reads of jobs and what they produce, for the API and the pages.

State changes are in app/jobs/lifecycle.py, the worker's other writes in app/jobs/store.py,
the metric series for the charts in app/jobs/series.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, Boolean, Select, Text, bindparam, cast, func, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import FunctionElement

from app.jobs.models import (
    Checkpoint,
    Job,
    JobAttempt,
    MetricPoint,
    Prediction,
)


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, status: str | None, offset: int, limit: int, tag: str | None = None
) -> tuple[Sequence[Job], int]:
    """A page of jobs as ORM objects (the HTML pages), newest first, and the total."""
    rows = session.scalars(_page(select(Job), status or None, offset, limit, tag or None)).all()
    return rows, count_jobs(session, status, tag)


class has_tag(FunctionElement):  # lower case: it reads as a SQL function
    """`has_tag(jobs.tags, :tag)`: the job's JSON list of tags holds the tag."""

    type = Boolean()
    inherit_cache = True
    name = "has_tag"


@compiles(has_tag, "sqlite")
def _has_tag_sqlite(element: has_tag, compiler: Any, **kw: Any) -> str:
    tags, tag = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({tags}) WHERE json_each.value = {tag})"


@compiles(has_tag, "postgresql")
def _has_tag_postgresql(element: has_tag, compiler: Any, **kw: Any) -> str:
    tags, tag = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST({tags} AS JSONB) @> jsonb_build_array(CAST({tag} AS TEXT)))"


# What a JobOut is made of (service.job_dict() reads them by name).
JOB_OUT_COLUMNS = (
    "id", "name", "status", "spec", "created_at", "started_at", "finished_at",
    "cancel_requested", "global_step", "max_steps", "epoch", "samples_per_second",
    "eta_seconds", "progress_at", "latest_metrics", "final_metrics", "label_names", "info",
    "gpu_peak_memory_mb", "gpu_utilization", "devices", "processes", "effective_batch_size",
    "attempts", "error_type", "error_message", "error_traceback", "error_hint", "sweep_id",
    "sweep_values", "stopped_early", "tags", "note",
)

# The JSON API reads Core rows on an autocommit connection (db.read_only), no ORM objects,
# with the JSON columns as their stored text (service.raw_json passes it through instead of
# parsing and re-serializing it). The statements are built once: building a 25-column SELECT
# costs more than running it.
_JOBS = Job.__table__
JSON_COLUMNS = tuple(name for name in JOB_OUT_COLUMNS if isinstance(_JOBS.c[name].type, JSON))
_OUT = [cast(column, Text).label(column.name) if isinstance(column.type, JSON) else column
        for column in (_JOBS.c[name] for name in JOB_OUT_COLUMNS)]
_JOB_ROW = select(*_OUT).where(Job.id == bindparam("job_id"))


def _count(by_status: bool, by_tag: bool) -> Select:
    query = select(func.count(Job.id))
    if by_status:
        query = query.where(Job.status == bindparam("status"))
    if by_tag:
        query = query.where(has_tag(Job.tags, bindparam("tag")))
    return query


# (by status, by tag) -> the statement
_COUNTS = {(s, t): _count(s, t) for s in (False, True) for t in (False, True)}


def _rows(by_status: bool, by_tag: bool) -> Select:
    """A page of JOB_OUT_COLUMNS, the total riding along as an uncorrelated scalar subquery
    (computed once; a window count would make the database read every matching row)."""
    count = _COUNTS[by_status, by_tag]
    return _page(select(*_OUT, count.scalar_subquery().correlate(None).label("total")),
                 bindparam("status") if by_status else None, bindparam("offset"),
                 bindparam("limit"), bindparam("tag") if by_tag else None)


def job_row(connection: Connection, job_id: int) -> Row | None:
    """The JOB_OUT_COLUMNS of one job, its JSON_COLUMNS as text."""
    return connection.execute(_JOB_ROW, {"job_id": job_id}).first()


def list_job_rows(
    connection: Connection, *, status: str | None, offset: int, limit: int,
    tag: str | None = None,
) -> tuple[Sequence[Row], int]:
    """list_jobs as rows of JOB_OUT_COLUMNS (JSON columns as text) and `total`; the total."""
    rows = connection.execute(_ROWS[bool(status), bool(tag)],
                              {"status": status, "tag": tag, "offset": offset,
                               "limit": limit}).all()
    if not rows:  # past the last page (or no jobs): the total needs its own query
        return [], count_jobs(connection, status, tag) if offset else 0
    return rows, rows[0].total


def count_jobs(db: Session | Connection, status: str | None, tag: str | None = None) -> int:
    return db.scalar(_COUNTS[bool(status), bool(tag)], {"status": status, "tag": tag}) or 0


def _page(query: Select, status: Any, offset: Any, limit: Any, tag: Any = None) -> Select:
    """Newest first; status, tag, offset and limit are values or bind parameters."""
    if status is not None:
        query = query.where(Job.status == status)
    if tag is not None:
        query = query.where(has_tag(Job.tags, tag))
    return query.order_by(Job.id.desc()).offset(offset).limit(limit)


_ROWS = {(s, t): _rows(s, t) for s in (False, True) for t in (False, True)}


def metric_points_after_id(
    session: Session, job_id: int, after_id: int, limit: int
) -> Sequence[MetricPoint]:
    query = (
        select(MetricPoint)
        .where(MetricPoint.job_id == job_id, MetricPoint.id > after_id)
        .order_by(MetricPoint.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def last_metric_id(session: Session, job_id: int) -> int:
    return session.scalar(select(func.max(MetricPoint.id)).where(MetricPoint.job_id == job_id)) or 0


def checkpoints(session: Session, job_id: int) -> Sequence[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
    return session.scalars(query).all()


def checkpoint(session: Session, job_id: int, name: str) -> Checkpoint | None:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.name == name)
    return session.scalars(query).first()


def predictions(
    session: Session, job_id: int, *, errors_only: bool, offset: int, limit: int,
    by_error: bool = False,
) -> tuple[Sequence[Prediction], int]:
    """A page of a job's predictions. errors_only: the wrong ones (`correct` false); with
    by_error (text-regression, which has no verdict) the labelled rows, largest error first."""
    where = [Prediction.job_id == job_id]
    order: list[Any] = [Prediction.row]
    if errors_only and by_error:
        where.append(Prediction.error.is_not(None))
        order = [func.abs(Prediction.error).desc(), Prediction.row]
    elif errors_only:
        where.append(Prediction.correct.is_(False))
    rows = session.scalars(
        select(Prediction).where(*where).order_by(*order).offset(offset).limit(limit)
    ).all()
    total = session.scalar(select(func.count(Prediction.id)).where(*where)) or 0
    return rows, total


def regression_pairs(session: Session, job_id: int, limit: int) -> list[tuple[float, float]]:
    """(true, predicted) of a text-regression job's labelled rows, the first `limit` by row."""
    query = (select(Prediction.fields)
             .where(Prediction.job_id == job_id, Prediction.error.is_not(None))
             .order_by(Prediction.row).limit(limit))
    return [(float(f["label"]), float(f["prediction"])) for f in session.scalars(query)
            if f and f.get("label") is not None]


def confusion_counts(session: Session, job_id: int) -> list[tuple[str, str, int]]:
    """(true label, predicted label, rows) of the job's labelled predictions."""
    query = (
        select(Prediction.label, Prediction.prediction, func.count())
        .where(Prediction.job_id == job_id, Prediction.label.is_not(None))
        .group_by(Prediction.label, Prediction.prediction)
    )
    return [(row[0] or "", row[1] or "", row[2]) for row in session.execute(query)]


def attempt(session: Session, job_id: int, number: int) -> JobAttempt | None:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.number == number)
    return session.scalars(query).first()


def attempts(session: Session, job_id: int) -> Sequence[JobAttempt]:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id)
    return session.scalars(query.order_by(JobAttempt.number)).all()
