"""The worker's writes of its own row (worker/inventory.py), apart from the web's reads."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

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
