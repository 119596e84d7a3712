"""Rules and state transitions for jobs; no commits here (the boundary commits)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

import orjson
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app import paths
from app.config import Settings, get_settings
from app.datasets.models import Dataset
from app.db import loads_json, utcnow
from app.errors import Conflict, Invalid
from app.jobs import repository
from app.jobs.models import Job, JobStatus
from app.jobs.queue import enqueue_after_commit
from app.jobs.schemas import (
    DEFAULT_TASK,
    PREDICTION_MODELS,
    JobOut,
    JobSpec,
    MetricSeries,
    MetricsOut,
    PredictionOut,
    PredictionPage,
    Progress,
)


def create_job(session: Session, spec: JobSpec, settings: Settings | None = None) -> Job:
    if spec.dataset.source == "upload" and session.get(Dataset, spec.dataset.path) is None:
        raise Invalid("dataset.path", f"no uploaded dataset with id {spec.dataset.path!r}")
    paths.confine(spec.model_dump(), paths.allowed_roots(session, settings or get_settings()))
    job = Job(
        name=spec.display_name(),
        spec=spec.model_dump(mode="json"),
        status=JobStatus.queued,
        enqueued_at=utcnow(),
        latest_metrics={},
        info=[],
    )
    session.add(job)
    session.flush()
    enqueue_after_commit(session, job.id)
    return job


def cancel_job(session: Session, job: Job) -> Job:
    """A queued job is cancelled at once (it never starts); a running one stops at its next step.

    Conditional updates, so a worker claiming the job (or the sweep re-queueing it) at the same
    moment cannot slip between the status check and the write.
    """
    if not (repository.cancel_if_queued(session, job.id, utcnow())
            or repository.request_cancel_if_running(session, job.id)
            or repository.cancel_if_queued(session, job.id, utcnow())):
        session.refresh(job)
        raise Conflict(f"job {job.id} already {job.status}")
    session.refresh(job)
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


def job_dict(values: Sequence[Any]) -> dict[str, Any]:
    """A job as the API shows it (the fields of JobOut), from its repository.JOB_OUT_COLUMNS.

    Plain dicts, so the hot read endpoints serialize with orjson, skipping pydantic
    validation of every row; to_out() validates the same dict into a JobOut.
    """
    (job_id, name, status, spec, created_at, started_at, finished_at, cancel_requested, step,
     max_steps, epoch, samples_per_second, eta_seconds, progress_at, latest_metrics,
     final_metrics, label_names, info, gpu_peak_memory_mb, gpu_utilization, attempts,
     error_type, error_message, error_traceback, error_hint) = values
    error = None
    if error_type or error_message:
        error = {"type": error_type, "message": error_message, "traceback": error_traceback,
                 "hint": error_hint}
    return {
        "id": job_id, "name": name, "status": status, "spec": spec, "created_at": created_at,
        "started_at": started_at, "finished_at": finished_at,
        "cancel_requested": cancel_requested,
        "progress": _progress(status, step, max_steps, epoch, samples_per_second, eta_seconds,
                              progress_at),
        "latest_metrics": latest_metrics or {}, "final_metrics": final_metrics,
        "label_names": label_names, "info": info or [], "error": error,
        "gpu_peak_memory_mb": gpu_peak_memory_mb, "gpu_utilization": gpu_utilization,
        "attempts": attempts,
    }


def to_out(job: Job) -> JobOut:
    return JobOut.model_validate(job_dict([getattr(job, c) for c in repository.JOB_OUT_COLUMNS]))


# The hot read endpoints (scripts poll them): one autocommit connection, one SELECT, the
# bytes made by orjson. tests/app/test_job_json.py holds them equal to the JobOut models.

def job_json(connection: Connection, job_id: int) -> bytes | None:
    row = repository.job_row(connection, job_id)
    return None if row is None else orjson.dumps(_text_row_dict(row))


def job_page_json(connection: Connection, *, status: str | None, page: int,
                  per_page: int) -> bytes:
    rows, total = repository.list_job_rows(
        connection, status=status, offset=(page - 1) * per_page, limit=per_page
    )
    return orjson.dumps({"items": [_text_row_dict(row) for row in rows], "total": total,
                         "page": page, "per_page": per_page})


def _text_row_dict(row: Sequence[Any]) -> dict[str, Any]:
    """job_dict of a row whose JSON columns (repository.JSON_AT) are their stored text."""
    values = list(row)
    for i in repository.JSON_AT:
        values[i] = raw_json(values[i])
    return job_dict(values)


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


def metric_series(
    session: Session, job_id: int, *, after_step: int = -1, max_points: int = 2000,
    names: list[str] | None = None,
) -> MetricsOut:
    """Each series whole, or M4-downsampled to at most max_points when longer."""
    # The cursor is read first: a point written meanwhile is then replayed by the event
    # stream (a duplicate the page drops) instead of being missed (a gap).
    last_id = repository.last_metric_id(session, job_id)
    series = {}
    names = names or repository.metric_names(session, job_id)
    summaries = repository.metric_tile_summaries(session, job_id, names)
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
        points = repository.metric_points(session, job_id, name, after_step)
        return points if len(points) <= max_points else m4(points, buckets)
    return m4_tiles(repository.metric_tiles(session, job_id, name, level), buckets)


def _tile_level(span: int, buckets: int) -> int | None:
    """The coarsest tile level that still puts at least one tile in every bucket."""
    fits = [level for level, width in enumerate(repository.TILE_WIDTHS)
            if width * buckets <= span]
    return fits[-1] if fits else None


def m4_tiles(tiles: list[tuple], buckets: int) -> list[tuple[int, float]]:
    """m4 over tile summaries (first, last, min and max point of each, in step order).

    Reads at most 16 tiles per bucket however long the run: 1,000,000 points chart in
    milliseconds instead of the seconds a scan of every point takes.
    """
    lo, span = tiles[0][0], tiles[-1][2] - tiles[0][0] + 1
    kept: list[tuple[int, float]] = []
    # One pass, no per-bucket lists: this loop is most of the chart request's CPU time.
    # Strict comparisons keep the first of equal minima/maxima, as min()/max() would.
    bucket = first = last = low = high = None
    for tile in tiles:
        at = (tile[0] - lo) * buckets // span
        if at != bucket:
            if bucket is not None:
                kept.extend(sorted({first[0:2], last[2:4], low[4:6], high[6:8]}))
            bucket, first, low, high = at, tile, tile, tile
        else:
            if tile[5] < low[5]:
                low = tile
            if tile[7] > high[7]:
                high = tile
        last = tile
    kept.extend(sorted({first[0:2], last[2:4], low[4:6], high[6:8]}))
    return kept


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
