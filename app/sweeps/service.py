"""Sweeps: every point validated before any job is queued, one job per point, the jobs ranked
by the sweep's metric, cancel all. No commits here (the boundary commits)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import Invalid, InvalidAll
from app.jobs import lifecycle
from app.jobs import service as jobs
from app.jobs.models import Job, JobStatus
from app.jobs.outputs import StoppedEarly
from app.jobs.schemas import JobSpec
from app.sweeps import points, repository
from app.sweeps.models import Sweep
from app.sweeps.schemas import SweepIn, SweepJobOut, SweepOut

MAX_PROBLEMS = 20  # a 64-point sweep with a bad base would list 64 copies of one error
Point = dict[str, Any]


def create_sweep(session: Session, sweep: SweepIn, settings: Settings) -> tuple[Sweep, list[Job]]:
    """The sweep and its queued jobs; Invalid over the cap, InvalidAll naming every bad point
    (and then nothing is queued)."""
    check_size(sweep, settings)
    specs = validated(session, sweep, settings)
    name = sweep.name or sweep.base.get("name") or f"{specs[0][1].display_name()} sweep"
    row = Sweep(name=str(name)[:200], base=sweep.base, grid=sweep.grid,
                ranges={k: r.model_dump() for k, r in sweep.ranges.items()} or None,
                random=sweep.random, seed=sweep.seed if sweep.random else None,
                metric=sweep.metric, mode=sweep.mode or "max", created_at=utcnow())
    session.add(row)
    session.flush()
    queued = []
    for point, spec in specs:
        if "name" not in point:
            spec.root.name = f"{row.name} · {points.label(point)}"[:200]
        job = jobs.create_job(session, spec, settings, sweep_id=row.id, sweep_values=point)
        jobs.set_tags(session, job.id, [f"sweep:{row.id}"])  # the job list filters by it
        queued.append(job)
    return row, queued


def check_size(sweep: SweepIn, settings: Settings) -> None:
    n, cap = points.count(sweep), settings.max_sweep_jobs
    if n <= cap:
        return
    if sweep.random is not None:
        raise Invalid("random", f"{n} jobs; this server queues at most {cap} per sweep "
                      "(TUNEDECK_MAX_SWEEP_JOBS)")
    sizes = " x ".join(str(len(v)) for v in sweep.grid.values())
    raise Invalid("grid", f"{sizes} = {n} jobs; this server queues at most {cap} per sweep "
                  "(TUNEDECK_MAX_SWEEP_JOBS): drop values or use random")


def validated(session: Session, sweep: SweepIn,
              settings: Settings) -> list[tuple[Point, JobSpec]]:
    """Every point's full JobSpec (and its paths and dataset checked); InvalidAll otherwise."""
    n = points.count(sweep)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    specs = []
    for i, point in enumerate(points.points(sweep)):
        where = f"point {i + 1} of {n} ({points.label(point)})"
        try:
            spec = JobSpec.model_validate(points.apply(sweep.base, point))
            jobs.check_spec(session, spec, settings)
        except ValidationError as exc:
            problems += [_problem(sweep, point, where, e["loc"], e["msg"]) for e in exc.errors()]
        except Invalid as exc:
            problems.append(_problem(sweep, point, where, exc.field.split("."), exc.message))
        except ValueError as exc:  # points.apply: a key below something that is no mapping
            problems.append((("base",), f"{where}: {exc}"))
        else:
            specs.append((point, spec))
    if problems:
        raise InvalidAll(problems[:MAX_PROBLEMS])
    return specs


def _problem(sweep: SweepIn, point: Point, where: str, loc: Sequence[Any],
             message: str) -> tuple[tuple[str | int, ...], str]:
    """The error at grid.<key> (or ranges.<key>) when a swept key is at fault, else base.<loc>."""
    field = ".".join(str(part) for part in loc)
    message = f"{where}: {field}: {message.removeprefix('Value error, ')}"
    for key in point:
        if field == key or field.startswith(key + "."):
            return ("grid" if key in sweep.grid else "ranges", key), message
    return ("base", *(str(part) for part in loc)), message


def metric_of(job: Job, metric: str) -> float | None:
    """The final value when the job has one, else the latest logged."""
    final = job.final_metrics or {}
    return final[metric] if metric in final else (job.latest_metrics or {}).get(metric)


def ranked(sweep: Sweep, rows: Sequence[Job]) -> list[SweepJobOut]:
    """Best first by the sweep's metric; jobs without it yet after, in queue order."""
    sign = -1 if sweep.mode == "max" else 1
    out = [SweepJobOut(id=j.id, name=j.name, status=j.status, values=j.sweep_values or {},
                       metric=metric_of(j, sweep.metric), progress=jobs.progress_of(j),
                       stopped_early=StoppedEarly.model_validate(j.stopped_early)
                       if j.stopped_early else None) for j in rows]
    return sorted(out, key=lambda j: (j.metric is None, sign * (j.metric or 0.0), j.id))


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    rows = repository.sweep_jobs(session, sweep.id)
    board = ranked(sweep, rows)
    counts = {status.value: 0 for status in JobStatus}
    for job in rows:
        counts[job.status] += 1
    return SweepOut(
        id=sweep.id, name=sweep.name, metric=sweep.metric, mode=sweep.mode, grid=sweep.grid,
        ranges=sweep.ranges, random=sweep.random, created_at=sweep.created_at, counts=counts,
        finished=all(JobStatus(j.status).finished for j in rows),
        best_job_id=board[0].id if board and board[0].metric is not None else None, jobs=board)


def cancel_sweep(session: Session, sweep: Sweep) -> list[int]:
    """Cancel every job of the sweep that has not finished (lifecycle.cancel): queued ones at
    once, running ones at their next step. The ids it cancelled."""
    now = utcnow()
    ids = [job.id for job in repository.sweep_jobs(session, sweep.id)
           if lifecycle.cancel(session, job.id, now)]
    session.expire_all()
    return ids
