"""The GPUs page: each live worker's GPUs, their memory and utilisation, and the jobs on them."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.deps import SessionDep, SettingsDep
from app.jobs.views import render
from app.workers import service

router = APIRouter(include_in_schema=False)


@router.get("/gpus")
def gpus_page(request: Request, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    return render(request, "workers/gpus.html", rows=service.gpu_rows(session, settings))
