"""Compare jobs: which spec keys differ, whose final metrics are best, their curves, and
their flipped predictions (app/compare/flips.py). No writes."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.compare import flips, repository
from app.compare.schemas import ComparedJob, CompareOut, FlipPage
from app.errors import Invalid, NotFound
from app.jobs import series
from app.jobs.models import Job

MAX_JOBS = 12
NOT_COMPARED = ("name",)  # every job has its own; the header shows it
LOWER_IS_BETTER = re.compile(r"(loss|mse|mae|rmse|perplexity|error)$")
NOT_A_METRIC = re.compile(r"runtime|per_second|flos|epoch$")


def parse_ids(text: str) -> list[int]:
    """`1,2,3` -> [1, 2, 3], duplicates dropped; Invalid("jobs") names what is wrong."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isascii() and part.isdigit() and len(part) < 10 for part in parts):
        raise Invalid("jobs", "job ids separated by commas, e.g. jobs=1,2,3")
    ids = list(dict.fromkeys(int(part) for part in parts))
    if not 2 <= len(ids) <= MAX_JOBS:
        raise Invalid("jobs", f"compare 2 to {MAX_JOBS} jobs (got {len(ids)})")
    return ids


def load_jobs(session: Session, ids: Sequence[int]) -> list[Job]:
    """The jobs in the order asked; NotFound names the first missing one."""
    found = repository.jobs(session, ids)
    for job_id in ids:
        if job_id not in found:
            raise NotFound(f"job {job_id} not found")
    return [found[job_id] for job_id in ids]


def flatten(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"training": {"seed": 1}} -> {"training.seed": 1}."""
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def spec_diff(jobs: Sequence[Job]) -> dict[str, dict[str, Any]]:
    """The flattened keys whose values differ between the jobs, each job's value by its id
    (a job without the key is left out of that key's values)."""
    flat = {job.id: flatten(job.spec) for job in jobs}
    keys = sorted({key for values in flat.values() for key in values} - set(NOT_COMPARED))
    diff = {}
    for key in keys:
        present = [flat[job.id][key] for job in jobs if key in flat[job.id]]
        if len(present) < len(jobs) or any(value != present[0] for value in present):
            diff[key] = {str(job.id): flat[job.id][key] for job in jobs if key in flat[job.id]}
    return diff


def is_metric(name: str) -> bool:
    return not NOT_A_METRIC.search(name)


def best_jobs(jobs: Sequence[Job]) -> dict[str, list[int]]:
    """Per final metric two or more jobs have, the job(s) with the best value."""
    values: dict[str, dict[int, float]] = {}
    for job in jobs:
        for name, value in (job.final_metrics or {}).items():
            if is_metric(name) and isinstance(value, int | float) and value == value:
                values.setdefault(name, {})[job.id] = value
    best = {}
    for name, by_job in sorted(values.items()):
        if len(by_job) < 2:
            continue
        pick = min if LOWER_IS_BETTER.search(name) else max
        top = pick(by_job.values())
        best[name] = [job_id for job_id, value in by_job.items() if value == top]
    return best


def compare(session: Session, ids: Sequence[int], *, max_points: int = 500,
            tolerance: float | None = None) -> CompareOut:
    jobs = load_jobs(session, ids)
    curves = {job.id: series.metric_series(session, job.id, max_points=max_points)
              for job in jobs}
    return CompareOut(
        jobs=[compared(job, curves[job.id].last_id) for job in jobs],
        spec_diff=spec_diff(jobs),
        final_metrics={str(job.id): job.final_metrics for job in jobs},
        best=best_jobs(jobs),
        series={str(job_id): out.series for job_id, out in curves.items()},
        flips=flips.summary(flips.load(session, jobs, tolerance)))


def compared(job: Job, last_id: int) -> ComparedJob:
    return ComparedJob(id=job.id, name=job.name, status=job.status, task=flips.task_of(job),
                       tags=job.tags or [], last_id=last_id)


def flip_page(session: Session, ids: Sequence[int], *, direction: str = "all",
              label: str | None = None, page: int = 1, per_page: int = 20,
              tolerance: float | None = None) -> FlipPage:
    """A page of the flipped rows (one direction, one class), each as every job saw it."""
    state = flips.load(session, load_jobs(session, ids), tolerance)
    rows = flips.flipped_rows(state, direction, label) if state.reason is None else []
    shown = rows[(page - 1) * per_page:page * per_page]
    return FlipPage(summary=flips.summary(state), items=flips.flip_rows(session, state, shown),
                    total=len(rows), page=page, per_page=per_page)
