"""Every query of the workers table."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.jobs.models import Job, JobStatus
from app.workers.models import Worker


def advertise(session: Session, worker_id: str, gpus: list[dict[str, Any]], ddp_cpu: bool,
              gpu_sharing: bool, now: datetime) -> None:
    """Insert or renew the worker's row."""
    row = session.get(Worker, worker_id)
    if row is None:
        row = Worker(id=worker_id)
        session.add(row)
    row.gpus, row.ddp_cpu, row.gpu_sharing, row.heartbeat_at = gpus, ddp_cpu, gpu_sharing, now


def forget(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


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
