"""Every query on jobs and what they produce."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    Select,
    Text,
    TextClause,
    bindparam,
    cast,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session

from app.jobs.models import (
    Checkpoint,
    Job,
    JobAttempt,
    JobStatus,
    MetricPoint,
    MetricTile,
    Prediction,
)


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, status: str | None, offset: int, limit: int
) -> tuple[Sequence[Job], int]:
    """A page of jobs as ORM objects (the HTML pages), newest first, and the total."""
    rows = session.scalars(_page(select(Job), status or None, offset, limit)).all()
    return rows, count_jobs(session, status)


# What a JobOut is made of, in the order service.job_dict() unpacks it.
JOB_OUT_COLUMNS = (
    "id", "name", "status", "spec", "created_at", "started_at", "finished_at",
    "cancel_requested", "global_step", "max_steps", "epoch", "samples_per_second",
    "eta_seconds", "progress_at", "latest_metrics", "final_metrics", "label_names", "info",
    "gpu_peak_memory_mb", "gpu_utilization", "attempts", "error_type", "error_message",
    "error_traceback", "error_hint",
)

# The JSON API reads plain tuples on an autocommit connection (db.read_only), no ORM objects,
# with the JSON columns as their stored text (service.raw_json passes it through instead of
# parsing and re-serializing it). The statements are built once: building a 25-column SELECT
# costs more than running it.
_JOBS, _POINTS = Job.__table__, MetricPoint.__table__
JSON_AT = tuple(i for i, name in enumerate(JOB_OUT_COLUMNS)
                if isinstance(_JOBS.c[name].type, JSON))
_OUT = [cast(column, Text).label(column.name) if isinstance(column.type, JSON) else column
        for column in (_JOBS.c[name] for name in JOB_OUT_COLUMNS)]
_JOB_ROW = select(*_OUT).where(Job.id == bindparam("job_id"))
_COUNT_ALL = select(func.count(Job.id))
_COUNT_BY_STATUS = _COUNT_ALL.where(Job.status == bindparam("status"))


def _rows(by_status: bool) -> Select:
    """A page of JOB_OUT_COLUMNS, the total riding along as an uncorrelated scalar subquery
    (computed once; a window count would make the database read every matching row)."""
    count = _COUNT_BY_STATUS if by_status else _COUNT_ALL
    return _page(select(*_OUT, count.scalar_subquery().correlate(None)),
                 bindparam("status") if by_status else None, bindparam("offset"),
                 bindparam("limit"))


def job_row(connection: Connection, job_id: int) -> Row | None:
    """The JOB_OUT_COLUMNS of one job, its JSON columns (JSON_AT) as text."""
    return connection.execute(_JOB_ROW, {"job_id": job_id}).first()


def list_job_rows(
    connection: Connection, *, status: str | None, offset: int, limit: int
) -> tuple[list[tuple], int]:
    """list_jobs as JOB_OUT_COLUMNS tuples (JSON columns as text), and the total."""
    rows = connection.execute(_ROWS_BY_STATUS if status else _ROWS_ALL,
                              {"status": status, "offset": offset, "limit": limit}).all()
    if not rows:  # past the last page (or no jobs): the total needs its own query
        return [], count_jobs(connection, status) if offset else 0
    return [row[:-1] for row in rows], rows[0][-1]


def count_jobs(db: Session | Connection, status: str | None) -> int:
    return db.scalar(_COUNT_BY_STATUS if status else _COUNT_ALL, {"status": status}) or 0


def _page(query: Select, status: Any, offset: Any, limit: Any) -> Select:
    """Newest first; status, offset and limit are values or bind parameters."""
    if status is not None:
        query = query.where(Job.status == status)
    return query.order_by(Job.id.desc()).offset(offset).limit(limit)


_ROWS_ALL, _ROWS_BY_STATUS = _rows(False), _rows(True)


# A loose index scan: one index seek per name, where DISTINCT reads every point of the job.
_METRIC_NAMES = text(
    """
    WITH RECURSIVE names(name) AS (
        SELECT MIN(name) FROM metric_points WHERE job_id = :job_id
        UNION ALL
        SELECT (SELECT MIN(p.name) FROM metric_points p
                WHERE p.job_id = :job_id AND p.name > names.name)
        FROM names WHERE names.name IS NOT NULL
    )
    SELECT name FROM names WHERE name IS NOT NULL
    """
)


def metric_names(session: Session, job_id: int) -> list[str]:
    return sorted(session.scalars(_METRIC_NAMES, {"job_id": job_id}).all())


def metric_points(
    session: Session, job_id: int, name: str, after_step: int
) -> list[tuple[int, float]]:
    query = (
        select(MetricPoint.step, MetricPoint.value)
        .where(MetricPoint.job_id == job_id, MetricPoint.name == name, MetricPoint.step > after_step)
        .order_by(MetricPoint.step)
    )
    return [(row[0], row[1]) for row in session.connection().execute(query)]


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
    order = [Prediction.row]
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


@lru_cache
def _upsert_points(insert):
    """INSERT ... ON CONFLICT for metric points (`insert` from _insert_for), built once: the
    worker's writer thread runs it with every flush that carries points, on the interpreter
    lock training needs."""
    stmt = insert(_POINTS)
    return stmt.on_conflict_do_update(
        index_elements=["job_id", "name", "step"],
        set_={"value": stmt.excluded.value, "epoch": stmt.excluded.epoch},
    )


def upsert_metric_points(session: Session, rows: list[dict]) -> None:
    """Insert points; a point that exists for (job, name, step) takes the new value."""
    stmt = _upsert_points(_insert_for(session))
    for start in range(0, len(rows), UPSERT_CHUNK):
        session.execute(stmt, rows[start:start + UPSERT_CHUNK])
    for job_id in {row["job_id"] for row in rows}:
        mine = [row for row in rows if row["job_id"] == job_id]
        steps = [row["step"] for row in mine]
        refresh_metric_tiles(session, job_id, min(steps), max(steps),
                             sorted({row["name"] for row in mine}))


# ---------------------------------------------------------------- metric tiles
# Level L summarises TILE_FANOUT ** (L + 1) steps: tile t of level 0 holds steps 16t..16t+15,
# tile t of level 1 holds tiles 16t..16t+15 of level 0, and so on. A write recomputes the
# tiles over its steps from the level below (at most 16 rows each), so inserted, overwritten
# and deleted points all leave exact tiles.

TILE_FANOUT = 16
TILE_WIDTHS = tuple(TILE_FANOUT ** (level + 1) for level in range(5))
_TILE_COLUMNS = ("points, first_step, first_value, last_step, last_value, min_step, min_value, "
                 "max_step, max_value")
_POINT_CHILDREN = (
    "SELECT job_id, name, step / 16 AS parent, 1 AS points, step AS first_step, "
    "value AS first_value, step AS last_step, value AS last_value, step AS min_step, "
    "value AS min_value, step AS max_step, value AS max_value FROM metric_points "
    "WHERE job_id = :job_id AND step >= :lo AND step < :hi"
)
_TILE_CHILDREN = (
    f"SELECT job_id, name, tile / 16 AS parent, {_TILE_COLUMNS} FROM metric_tiles "
    "WHERE job_id = :job_id AND level = :child AND tile >= :lo AND tile < :hi"
)
# FIRST_VALUE over the tile's children in four orders picks its first, last, min and max point.
_MERGE_TILES = (
    f"INSERT INTO metric_tiles (job_id, name, level, tile, {_TILE_COLUMNS}) "
    "SELECT DISTINCT job_id, name, {level}, parent, SUM(points) OVER w, "
    "FIRST_VALUE(first_step) OVER (w ORDER BY first_step), "
    "FIRST_VALUE(first_value) OVER (w ORDER BY first_step), "
    "FIRST_VALUE(last_step) OVER (w ORDER BY last_step DESC), "
    "FIRST_VALUE(last_value) OVER (w ORDER BY last_step DESC), "
    "FIRST_VALUE(min_step) OVER (w ORDER BY min_value, min_step), "
    "FIRST_VALUE(min_value) OVER (w ORDER BY min_value, min_step), "
    "FIRST_VALUE(max_step) OVER (w ORDER BY max_value DESC, max_step), "
    "FIRST_VALUE(max_value) OVER (w ORDER BY max_value DESC, max_step) "
    "FROM ({children}) AS c WINDOW w AS (PARTITION BY job_id, name, parent)"
)
_DROP_TILES = ("DELETE FROM metric_tiles WHERE job_id = :job_id AND level = :level "
               "AND tile >= :first AND tile <= :last")


@lru_cache
def _tile_statements(level: int, by_name: bool) -> tuple[TextClause, TextClause]:
    """(drop, merge) for one level, built once (see _upsert_points)."""
    by_names = " AND name IN :names" if by_name else ""
    children = (_POINT_CHILDREN if level == 0 else _TILE_CHILDREN) + by_names
    drop = text(_DROP_TILES + by_names)
    merge = text(_MERGE_TILES.format(level=level, children=children))
    if by_name:
        drop, merge = (s.bindparams(bindparam("names", expanding=True)) for s in (drop, merge))
    return drop, merge


def refresh_metric_tiles(session: Session, job_id: int, lo_step: int, hi_step: int,
                         names: list[str] | None = None) -> None:
    """Recompute every level's tiles over steps lo_step..hi_step (of `names`, else all)."""
    for level, width in enumerate(TILE_WIDTHS):
        first, last = lo_step // width, hi_step // width
        params = {"job_id": job_id, "level": level, "child": level - 1, "first": first,
                  "last": last, "lo": first * TILE_FANOUT, "hi": (last + 1) * TILE_FANOUT,
                  **({"names": names} if names is not None else {})}
        drop, merge = _tile_statements(level, names is not None)
        session.execute(drop, params)
        session.execute(merge, params)


def metric_tile_summaries(session: Session, job_id: int,
                          names: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per series with tiles: (points, first step, last step), from the top-level tiles.

    The names let both databases seek (job_id, name, level) in the primary key; without them
    the top level is filtered out of every tile of the job (5 ms at 1,000,000 points).
    """
    if not names:
        return {}
    query = (
        select(MetricTile.name, func.sum(MetricTile.points), func.min(MetricTile.first_step),
               func.max(MetricTile.last_step))
        .where(MetricTile.job_id == job_id, MetricTile.name.in_(names),
               MetricTile.level == len(TILE_WIDTHS) - 1)
        .group_by(MetricTile.name)
    )
    return {row[0]: (int(row[1]), row[2], row[3]) for row in session.execute(query)}


def metric_tiles(session: Session, job_id: int, name: str, level: int) -> Sequence[Row]:
    """(first, last, min, max) points of each tile of a level, in step order."""
    query = (
        select(MetricTile.first_step, MetricTile.first_value, MetricTile.last_step,
               MetricTile.last_value, MetricTile.min_step, MetricTile.min_value,
               MetricTile.max_step, MetricTile.max_value)
        .where(MetricTile.job_id == job_id, MetricTile.name == name, MetricTile.level == level)
        .order_by(MetricTile.tile)
    )
    # Core rows straight from the connection: no ORM result machinery for thousands of rows.
    return session.connection().execute(query).all()


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


# ---------------------------------------------------------------- leases (worker and sweep)
# Every lease change is one conditional UPDATE, so two processes can never both win it.

def _held_by(job_id: int, attempt: int):
    return (Job.id == job_id, Job.status == JobStatus.running, Job.attempts == attempt)


def _expired(cutoff: datetime):
    return or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)


def renew_lease(session: Session, job_id: int, attempt: int, now: datetime) -> bool:
    """Heartbeat of attempt `attempt`; False when the job no longer runs under it."""
    stmt = update(Job).where(*_held_by(job_id, attempt)).values(heartbeat_at=now)
    return session.execute(stmt).rowcount == 1


def report(session: Session, job_id: int, attempt: int | None,
           values: dict[str, Any]) -> bool | None:
    """Set column `values` on the job in one statement, fenced by `attempt` when given (the job
    must still run under it); returns its cancel flag, or None when the job is gone or the
    attempt no longer holds it."""
    where = _held_by(job_id, attempt) if attempt is not None else (Job.id == job_id,)
    stmt = update(_JOBS).where(*where).values(values).returning(_JOBS.c.cancel_requested)
    return session.execute(stmt).scalar()


def latest_metrics(session: Session, job_id: int) -> dict[str, float]:
    return session.scalar(select(Job.latest_metrics).where(Job.id == job_id)) or {}


def expired_leases(session: Session, cutoff: datetime) -> Sequence[Job]:
    """Running jobs whose last heartbeat is older than `cutoff`."""
    query = select(Job).where(Job.status == JobStatus.running, _expired(cutoff))
    return session.scalars(query.order_by(Job.id)).all()


def take_expired_lease(session: Session, job_id: int, attempt: int, cutoff: datetime,
                       **values) -> bool:
    """Set `values` on the job if attempt `attempt` still holds it and still has not renewed."""
    stmt = update(Job).where(*_held_by(job_id, attempt), _expired(cutoff)).values(**values)
    return session.execute(stmt).rowcount == 1


def waiting_jobs(session: Session, enqueued_before: datetime) -> Sequence[Job]:
    """Queued jobs sent to the broker before `enqueued_before` (candidates for a re-send)."""
    query = select(Job).where(
        Job.status == JobStatus.queued, Job.cancel_requested.is_(False),
        or_(Job.enqueued_at.is_(None), Job.enqueued_at < enqueued_before))
    return session.scalars(query.order_by(Job.id)).all()


def mark_resent(session: Session, job_id: int, seen: datetime | None, now: datetime) -> bool:
    """Bump enqueued_at if no other sweeper did since `seen`: only one of them re-sends."""
    same = Job.enqueued_at.is_(None) if seen is None else Job.enqueued_at == seen
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.queued, same)
    return session.execute(stmt.values(enqueued_at=now)).rowcount == 1


def cancel_if_queued(session: Session, job_id: int, now: datetime) -> bool:
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.queued).values(
        status=JobStatus.cancelled, cancel_requested=True, finished_at=now)
    return session.execute(stmt).rowcount == 1


def request_cancel_if_running(session: Session, job_id: int) -> bool:
    stmt = update(Job).where(Job.id == job_id, Job.status == JobStatus.running).values(
        cancel_requested=True)
    return session.execute(stmt).rowcount == 1


def attempt(session: Session, job_id: int, number: int) -> JobAttempt | None:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id, JobAttempt.number == number)
    return session.scalars(query).first()


def attempts(session: Session, job_id: int) -> Sequence[JobAttempt]:
    query = select(JobAttempt).where(JobAttempt.job_id == job_id)
    return session.scalars(query.order_by(JobAttempt.number)).all()


def last_metric_step(session: Session, job_id: int, up_to: int) -> int:
    """The highest step at or below `up_to` with a point; 0 when none."""
    query = select(func.max(MetricPoint.step)).where(MetricPoint.job_id == job_id,
                                                     MetricPoint.step <= up_to)
    return session.scalar(query) or 0


def delete_metric_points_after(session: Session, job_id: int, step: int) -> None:
    """Drop points a lost attempt logged past the checkpoint its successor resumes from."""
    last = session.scalar(select(func.max(MetricPoint.step)).where(MetricPoint.job_id == job_id))
    if last is None or last <= step:
        return
    session.execute(MetricPoint.__table__.delete().where(
        MetricPoint.job_id == job_id, MetricPoint.step > step))
    refresh_metric_tiles(session, job_id, step + 1, last)
