"""The New job form's "Check data" and "Measure speed and memory" panels (htmx partials)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.errors import Invalid, Unavailable, WorkerFailed
from app.jobs import forms
from app.jobs.schemas import JobSpec
from app.jobs.views import render
from app.preflight import service

router = APIRouter(include_in_schema=False)


@router.post("/jobs/preflight")
async def check_data(request: Request) -> HTMLResponse:
    """The form as it is now -> the data report, rendered inline above Launch."""
    values = forms.values_from(await request.form())
    return await run_in_threadpool(_panel, request, values, service.report,
                                   "jobs/_preflight.html")


@router.post("/jobs/preflight/measure")
async def measure(request: Request) -> HTMLResponse:
    values = forms.values_from(await request.form())
    return await run_in_threadpool(_panel, request, values, service.measure,
                                   "jobs/_measure.html")


def _panel(request: Request, values: forms.Values, ask: Callable[[JobSpec], dict[str, Any]],
           template: str) -> HTMLResponse:
    """The partial with the worker's answer, or with what to fix (status 200: htmx swaps it)."""
    problems: dict[str, str] = {}
    result = None
    try:
        result = ask(forms.build_spec(values))
    except forms.FormInvalid as exc:
        problems = exc.errors
    except Invalid as exc:
        problems = {forms.field_for(exc.field.split("."), exc.message, values): exc.message}
    except (Unavailable, WorkerFailed) as exc:
        problems = {"__all__": str(exc)}
    return render(request, template, result=result, problems=problems,
                  max_length=values.get("max_length"))
