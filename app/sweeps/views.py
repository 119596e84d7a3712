"""The sweep page: a live leaderboard (htmx polling while any job runs), cancel all."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.deps import SessionDep, SweepDep
from app.jobs.views import render
from app.sweeps import repository, service
from app.sweeps.models import Sweep

router = APIRouter(include_in_schema=False)


@router.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep: SweepDep, session: SessionDep) -> HTMLResponse:
    return render(request, "sweeps/detail.html", **_board(session, sweep))


@router.get("/sweeps/{sweep_id}/leaderboard")
def sweep_leaderboard(request: Request, sweep: SweepDep, session: SessionDep) -> HTMLResponse:
    return render(request, "sweeps/_leaderboard.html", **_board(session, sweep))


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(request: Request, sweep: SweepDep, session: SessionDep) -> HTMLResponse:
    service.cancel_sweep(session, sweep)
    return render(request, "sweeps/_leaderboard.html", **_board(session, sweep))


def _board(session: Session, sweep: Sweep) -> dict[str, Any]:
    out = service.sweep_out(session, sweep)
    queued_order = [job.id for job in repository.sweep_jobs(session, sweep.id)]
    keys = list(sweep.grid) + list(sweep.ranges or {})
    return {"sweep": sweep, "board": out, "keys": keys,
            "compare": ",".join(str(i) for i in queued_order)}
