"""Every query on jobs and what they produce."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.jobs.models import Checkpoint, Job, MetricPoint, Prediction


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, status: str | None, offset: int, limit: int
) -> tuple[Sequence[Job], int]:
    query: Select = select(Job)
    count = select(func.count(Job.id))
    if status:
        query = query.where(Job.status == status)
        count = count.where(Job.status == status)
    rows = session.scalars(query.order_by(Job.id.desc()).offset(offset).limit(limit)).all()
    return rows, session.scalar(count) or 0


def jobs_with_status(session: Session, status: str) -> Sequence[Job]:
    return session.scalars(select(Job).where(Job.status == status).order_by(Job.id)).all()


def metric_names(session: Session, job_id: int) -> list[str]:
    query = select(MetricPoint.name).where(MetricPoint.job_id == job_id).distinct()
    return sorted(session.scalars(query).all())


def metric_count(session: Session, job_id: int, name: str, after_step: int) -> tuple[int, int, int]:
    """(count, first step, last step) of one series after a step."""
    row = session.execute(
        select(func.count(), func.min(MetricPoint.step), func.max(MetricPoint.step)).where(
            MetricPoint.job_id == job_id, MetricPoint.name == name, MetricPoint.step > after_step
        )
    ).one()
    return row[0], row[1] or 0, row[2] or 0


def metric_points(
    session: Session, job_id: int, name: str, after_step: int
) -> list[tuple[int, float]]:
    query = (
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.name == name, MetricPoint.step > after_step)
        .order_by(MetricPoint.step)
    )
    return [(row[0], row[1]) for row in session.execute(query)]


# M4 downsampling in SQL: per bucket keep the first, last, min and max point.
_M4 = text(
    """
    WITH p AS (
        SELECT step, value, (CAST(step - :lo AS BIGINT) * :buckets) / :span AS b
        FROM metric_points WHERE job_id = :job_id AND name = :name AND step > :after
    ), agg AS (
        SELECT b, MIN(step) AS first_step, MAX(step) AS last_step,
               MIN(value) AS min_value, MAX(value) AS max_value
        FROM p GROUP BY b
    )
    SELECT p.step, p.value FROM p JOIN agg ON p.b = agg.b
    WHERE p.step = agg.first_step OR p.step = agg.last_step
       OR p.value = agg.min_value OR p.value = agg.max_value
    ORDER BY p.step
    """
)


def metric_points_downsampled(
    session: Session, job_id: int, name: str, after_step: int, lo: int, hi: int, buckets: int
) -> list[tuple[int, float]]:
    params = {"job_id": job_id, "name": name, "after": after_step, "lo": lo,
              "span": hi - lo + 1, "buckets": buckets}
    return [(row[0], row[1]) for row in session.execute(_M4, params)]


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
    session: Session, job_id: int, *, errors_only: bool, offset: int, limit: int
) -> tuple[Sequence[Prediction], int]:
    where = [Prediction.job_id == job_id]
    if errors_only:
        where.append(Prediction.correct.is_(False))
    rows = session.scalars(
        select(Prediction).where(*where).order_by(Prediction.row).offset(offset).limit(limit)
    ).all()
    total = session.scalar(select(func.count(Prediction.id)).where(*where)) or 0
    return rows, total


def confusion_counts(session: Session, job_id: int) -> list[tuple[str, str, int]]:
    query = (
        select(Prediction.label, Prediction.prediction, func.count())
        .where(Prediction.job_id == job_id, Prediction.label.is_not(None))
        .group_by(Prediction.label, Prediction.prediction)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(query)]


# ---------------------------------------------------------------- writes (used by the worker)

def _insert_for(session: Session):
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


UPSERT_CHUNK = 1000


def upsert_metric_points(session: Session, rows: list[dict]) -> None:
    """Insert points; a point that exists for (job, name, step) takes the new value."""
    insert = _insert_for(session)
    for start in range(0, len(rows), UPSERT_CHUNK):
        stmt = insert(MetricPoint).values(rows[start:start + UPSERT_CHUNK])
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_id", "name", "step"],
            set_={"value": stmt.excluded.value, "epoch": stmt.excluded.epoch},
        )
        session.execute(stmt)


def upsert_checkpoint(session: Session, row: dict) -> None:
    insert = _insert_for(session)
    stmt = insert(Checkpoint).values(row)
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "name"],
        set_={k: stmt.excluded[k] for k in ("step", "path", "metrics", "size_bytes")},
    )
    session.execute(stmt)


def delete_checkpoints(session: Session, job_id: int, names: list[str]) -> None:
    if names:
        session.execute(
            Checkpoint.__table__.delete().where(Checkpoint.job_id == job_id,
                                                Checkpoint.name.in_(names))
        )


def replace_predictions(session: Session, job_id: int, rows: list[dict]) -> None:
    session.execute(Prediction.__table__.delete().where(Prediction.job_id == job_id))
    for start in range(0, len(rows), UPSERT_CHUNK):
        session.execute(Prediction.__table__.insert(), rows[start:start + UPSERT_CHUNK])
