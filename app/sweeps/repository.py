"""The reads of sweeps; their jobs are rows of `jobs` with a sweep_id."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.sweeps.models import Sweep


def get_sweep(session: Session, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def sweep_jobs(session: Session, sweep_id: int) -> Sequence[Job]:
    """The sweep's jobs in the order they were queued."""
    return session.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)).all()
