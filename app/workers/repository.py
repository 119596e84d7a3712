"""The web's reads of the workers table (the worker's writes are app/workers/store.py)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobStatus
from app.workers.models import Worker


def alive(session: Session, since: datetime) -> list[Worker]:
    """Workers that heartbeated since `since`, by name."""
    return list(session.scalars(select(Worker).where(Worker.heartbeat_at >= since)
                                .order_by(Worker.id)).all())


def running_on(session: Session, worker_ids: list[str]) -> list[Job]:
    """Running jobs of these workers (for the GPUs page)."""
    if not worker_ids:
        return []
    return list(session.scalars(select(Job).where(Job.status == JobStatus.running,
                                                  Job.worker_id.in_(worker_ids))
                                .order_by(Job.id)).all())
