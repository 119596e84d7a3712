"""JSON API for sweeps under /api/v1/sweeps."""
from __future__ import annotations

from fastapi import APIRouter

from app.deps import SessionDep, SettingsDep, SweepDep
from app.openapi_docs import Responses, error
from app.sweeps import service
from app.sweeps.schemas import SweepCreated, SweepIn, SweepOut

router = APIRouter(prefix="/api/v1/sweeps", tags=["sweeps"])

ERRORS: Responses = {404: error("No such sweep")}


@router.post("", status_code=201, response_model=SweepCreated, responses={
    400: error("The body could not be decoded (not UTF-8 JSON)"),
    422: {"description": "A bad point (named with its values and field), or too many points "
                         "(TUNEDECK_MAX_SWEEP_JOBS); nothing is queued"}})
def create_sweep(body: SweepIn, session: SessionDep, settings: SettingsDep) -> SweepCreated:
    """One job per grid point (or random sample), each validated before any is queued."""
    sweep, jobs = service.create_sweep(session, body, settings)
    return SweepCreated(id=sweep.id, jobs=[job.id for job in jobs])


@router.get("/{sweep_id}", response_model=SweepOut, responses=ERRORS)
def get_sweep(sweep: SweepDep, session: SessionDep) -> SweepOut:
    """The sweep's jobs with their grid values, status, progress and metric, best first."""
    return service.sweep_out(session, sweep)


@router.post("/{sweep_id}/cancel", response_model=SweepOut, responses=ERRORS)
def cancel_sweep(sweep: SweepDep, session: SessionDep) -> SweepOut:
    """Cancel every job that has not finished: queued ones at once, running ones at their next
    step; finished ones stay as they are."""
    service.cancel_sweep(session, sweep)
    return service.sweep_out(session, sweep)
