"""What the worker writes besides the job's state: metric points and their tiles,
checkpoints, predictions. The job row's state and progress go through app/jobs/lifecycle.py.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, TextClause, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.jobs.models import Checkpoint, Job, MetricPoint, Prediction

_POINTS = cast(Table, MetricPoint.__table__)
_CHECKPOINTS = cast(Table, Checkpoint.__table__)
_PREDICTIONS = cast(Table, Prediction.__table__)
UPSERT_CHUNK = 1000


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def job_spec(session: Session, job_id: int) -> dict[str, Any]:
    return session.scalar(select(Job.spec).where(Job.id == job_id)) or {}


def latest_metrics(session: Session, job_id: int) -> dict[str, float]:
    return session.scalar(select(Job.latest_metrics).where(Job.id == job_id)) or {}


@lru_cache
def _upsert_points(insert: Any) -> Any:
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
    session.execute(_POINTS.delete().where(MetricPoint.job_id == job_id,
                                           MetricPoint.step > step))
    refresh_metric_tiles(session, job_id, step + 1, last)


# ---------------------------------------------------------------- metric tiles
# Level L summarises TILE_FANOUT ** (L + 1) steps: tile t of level 0 holds steps 16t..16t+15,
# tile t of level 1 holds tiles 16t..16t+15 of level 0, and so on. A write recomputes the
# tiles over its steps from the level below (at most 16 rows each), so inserted, overwritten
# and deleted points all leave exact tiles. app/jobs/series.py reads them for the charts.

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


# ---------------------------------------------------------------- checkpoints, predictions

def checkpoint_paths(session: Session, job_id: int) -> list[tuple[str, str]]:
    """(name, path) of the job's checkpoints, to drop those Trainer deleted from disk."""
    query = select(Checkpoint.name, Checkpoint.path).where(Checkpoint.job_id == job_id)
    return [(row[0], row[1]) for row in session.execute(query)]


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
            _CHECKPOINTS.delete().where(Checkpoint.job_id == job_id,
                                                Checkpoint.name.in_(names))
        )


def replace_predictions(session: Session, job_id: int, rows: list[dict]) -> None:
    session.execute(_PREDICTIONS.delete().where(Prediction.job_id == job_id))
    for start in range(0, len(rows), UPSERT_CHUNK):
        session.execute(_PREDICTIONS.insert(), rows[start:start + UPSERT_CHUNK])
