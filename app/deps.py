"""Annotated dependency aliases shared by routers."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import get_session
from app.errors import NotFound
from app.jobs.models import Job
from app.sweeps.models import Sweep

# scope="function": commit before the response is sent, so a client that follows a redirect
# or reads right after a 201 sees the row (FastAPI's default exits after sending).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def get_job_or_404(session: SessionDep, job_id: JobId) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


JobDep = Annotated[Job, Depends(get_job_or_404)]


SweepId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def get_sweep_or_404(session: SessionDep, sweep_id: SweepId) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} not found")
    return sweep


SweepDep = Annotated[Sweep, Depends(get_sweep_or_404)]
