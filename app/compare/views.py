"""The compare page (/compare?jobs=1,2,3) and its htmx partials: the summary (statuses,
final metrics, spec diff), refreshed while a job runs, and the flipped-examples table."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.compare import flips, service
from app.deps import SessionDep
from app.errors import Invalid
from app.jobs.models import Job, JobStatus
from app.jobs.views import render

router = APIRouter(include_in_schema=False)

# One colour per job, the same in the header, the tables and every chart (app/static/compare.js).
COLORS = ("#2563eb", "#dc2626", "#059669", "#d97706", "#9333ea", "#0891b2", "#db2777",
          "#4f46e5", "#65a30d", "#64748b", "#b45309", "#0f766e")
FLIPS_PER_PAGE = 20
JobIds = Annotated[list[str], Query(max_length=100)]  # parse_ids says "2 to 12"
Direction = Literal["all", "fixed", "broken"]


def job_ids(jobs: list[str]) -> list[int]:
    """`jobs=3,1,2` in that order (the first is the baseline), or the job list's checkboxes
    (`jobs=3&jobs=1`, newest first as the list shows them) oldest first."""
    ids = service.parse_ids(",".join(jobs))
    return sorted(ids) if len(jobs) > 1 else ids


@router.get("/compare")
def compare_page(request: Request, session: SessionDep, jobs: JobIds = []) -> HTMLResponse:  # noqa: B006
    try:
        ids = job_ids(jobs)
    except Invalid as exc:
        return render(request, "compare/index.html", 422, problem=exc.message)
    loaded = service.load_jobs(session, ids)
    summary = _summary(loaded)
    chart_jobs = [{"id": job.id, "name": job.name, "color": summary["colors"][job.id]}
                  for job in loaded]
    return render(request, "compare/index.html", **summary, chart_jobs=chart_jobs,
                  **_flips(session, loaded, "all", None, 1))


@router.get("/compare/summary")
def compare_summary(request: Request, session: SessionDep, jobs: JobIds = []) -> HTMLResponse:  # noqa: B006
    loaded = service.load_jobs(session, job_ids(jobs))
    return render(request, "compare/_summary.html", **_summary(loaded))


@router.get("/compare/flips")
def compare_flips(request: Request, session: SessionDep, jobs: JobIds = [],  # noqa: B006
                  direction: Direction = "all", label: str = "",
                  page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> HTMLResponse:
    loaded = service.load_jobs(session, job_ids(jobs))
    return render(request, "compare/_flips.html", **_summary(loaded),
                  **_flips(session, loaded, direction, label or None, page))


def _summary(jobs: list[Job]) -> dict[str, Any]:
    metrics = sorted({name for job in jobs for name in job.final_metrics or {}
                      if service.is_metric(name)})
    return {"jobs": jobs, "query": ",".join(str(job.id) for job in jobs),
            "colors": {job.id: COLORS[i % len(COLORS)] for i, job in enumerate(jobs)},
            "live": any(not JobStatus(job.status).finished for job in jobs),
            "diff": service.spec_diff(jobs), "metrics": metrics, "best": service.best_jobs(jobs)}


def _flips(session: Session, jobs: list[Job], direction: str, label: str | None,
           page: int) -> dict[str, Any]:
    state = flips.load(session, jobs)
    rows = flips.flipped_rows(state, direction, label) if state.reason is None else []
    shown = rows[(page - 1) * FLIPS_PER_PAGE:page * FLIPS_PER_PAGE]
    return {"flips": flips.summary(state), "flip_rows": flips.flip_rows(session, state, shown),
            "flip_total": len(rows), "direction": direction, "label": label or "",
            "page": page, "pages": max(1, -(-len(rows) // FLIPS_PER_PAGE))}
