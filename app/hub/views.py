"""The job page's Hub pushes: a push form per checkpoint and the card listing the job's pushes
(templates/hub/_pushes.html, polled while a push is under way)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from app.deps import JobDep, SessionDep, SettingsDep
from app.errors import Conflict, Invalid, NotFound, Unavailable
from app.hub import service
from app.jobs.views import render

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}/pushes")
def job_pushes(request: Request, job: JobDep, session: SessionDep,
               settings: SettingsDep) -> HTMLResponse:
    return render(request, "hub/_pushes.html", job=job, **service.card(session, settings, job.id))


@router.post("/jobs/{job_id}/checkpoints/{name}/push")
def push_checkpoint(request: Request, job: JobDep, name: str, session: SessionDep,
                    settings: SettingsDep, repo_id: Annotated[str, Form(max_length=200)] = "",
                    private: Annotated[bool, Form()] = False) -> HTMLResponse:
    """Start a push; a refusal (no token, a bad repo id) shows in the card. Answered 200 either
    way: htmx swaps only 2xx answers in."""
    error = None
    try:
        service.start(settings, job.id, name, repo_id, private)
    except Invalid as exc:
        error = f"{exc.field}: {exc.message}"
    except (Conflict, NotFound, Unavailable) as exc:
        error = str(exc)
    return render(request, "hub/_pushes.html", push_error=error,
                  job=job, **service.card(session, settings, job.id))
