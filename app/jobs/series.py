"""A job's metric series for the charts: points, the tiles over them, and M4 downsampling.

One algorithm, M4: buckets = max_points // 4 equal step ranges from the first step to the
last, bucket = (step - first) * buckets // span, and of each bucket the first, last, min and
max point. The server sends history through m4/m4_tiles; app/static/chart.js's thin() runs the
same M4 only on a page left open while live points pile up past twice its MAX_POINTS (the
server cannot thin points it already streamed). The tiles are written with the points by
app/jobs/store.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

from sqlalchemy import Row, func, select, text
from sqlalchemy.orm import Session

from app.jobs import repository
from app.jobs.models import MetricPoint, MetricTile
from app.jobs.outputs import MetricSeries, MetricsOut
from app.jobs.store import TILE_WIDTHS

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


def metric_series(
    session: Session, job_id: int, *, after_step: int = -1, max_points: int = 2000,
    names: list[str] | None = None,
) -> MetricsOut:
    """Each series whole, or M4-downsampled to at most max_points when longer."""
    # The cursor is read first: a point written meanwhile is then replayed by the event
    # stream (a duplicate the page drops) instead of being missed (a gap).
    last_id = repository.last_metric_id(session, job_id)
    series = {}
    names = names or metric_names(session, job_id)
    summaries = metric_tile_summaries(session, job_id, names)
    for name in names:
        summary = summaries.get(name, (0, 0, 0))
        points = _series_points(session, job_id, name, summary, after_step, max_points)
        series[name] = MetricSeries(steps=[p[0] for p in points], values=[p[1] for p in points])
    return MetricsOut(job_id=job_id, series=series, last_id=last_id)


def _series_points(session: Session, job_id: int, name: str, summary: tuple[int, int, int],
                   after_step: int, max_points: int):
    """Short series and tails (after_step) from the points; long ones from the tiles."""
    buckets = max(1, max_points // 4)
    count, lo, hi = summary
    level = _tile_level(hi - lo + 1, buckets)
    if count <= max_points or after_step >= lo or level is None:
        points = metric_points(session, job_id, name, after_step)
        return points if len(points) <= max_points else m4(points, buckets)
    return m4_tiles(metric_tiles(session, job_id, name, level), buckets)


def _tile_level(span: int, buckets: int) -> int | None:
    """The coarsest tile level that still puts at least one tile in every bucket."""
    fits = [level for level, width in enumerate(TILE_WIDTHS)
            if width * buckets <= span]
    return fits[-1] if fits else None


def m4_tiles(tiles: Sequence[Sequence[Any]], buckets: int) -> list[tuple[int, float]]:
    """m4 over tile summaries (first, last, min and max point of each, in step order).

    Reads at most 16 tiles per bucket however long the run: 1,000,000 points chart in
    milliseconds instead of the seconds a scan of every point takes.
    """
    lo, span = tiles[0][0], tiles[-1][2] - tiles[0][0] + 1
    kept: list[tuple[int, float]] = []
    # One pass, no per-bucket lists: this loop is most of the chart request's CPU time.
    # Strict comparisons keep the first of equal minima/maxima, as min()/max() would.
    bucket, first, last, low, high = 0, tiles[0], tiles[0], tiles[0], tiles[0]
    for tile in tiles:
        at = (tile[0] - lo) * buckets // span
        if at != bucket:
            kept.extend(_corners(first, last, low, high))
            bucket, first, low, high = at, tile, tile, tile
        else:
            if tile[5] < low[5]:
                low = tile
            if tile[7] > high[7]:
                high = tile
        last = tile
    kept.extend(_corners(first, last, low, high))
    return kept


def _corners(first: Sequence[Any], last: Sequence[Any], low: Sequence[Any],
             high: Sequence[Any]) -> list[tuple[int, float]]:
    """A bucket's first, last, min and max point, in step order, each once."""
    return sorted({(first[0], first[1]), (last[2], last[3]), (low[4], low[5]),
                   (high[6], high[7])})


def m4(points: list[tuple[int, float]], buckets: int) -> list[tuple[int, float]]:
    """Per bucket of steps keep the first, last, min and max point, in step order.

    One ordered index scan plus this pass: on SQLite the same in SQL (a join on the computed
    bucket) took minutes for a 333,000-point series; this takes well under a second.
    """
    lo, span = points[0][0], points[-1][0] - points[0][0] + 1
    kept: list[tuple[int, float]] = []
    for _, group in groupby(points, key=lambda p: (p[0] - lo) * buckets // span):
        rows = list(group)
        chosen = {rows[0], min(rows, key=_value), max(rows, key=_value), rows[-1]}
        kept.extend(sorted(chosen))
    return kept


def _value(point: tuple[int, float]) -> float:
    return point[1]
