"""Every query on uploaded datasets."""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.datasets.models import Dataset
from app.jobs.models import FINISHED, Job


def get(session: Session, dataset_id: str) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def list_datasets(session: Session, *, offset: int, limit: int) -> tuple[Sequence[Dataset], int]:
    query = select(Dataset).order_by(Dataset.created_at.desc(), Dataset.id)
    rows = session.scalars(query.offset(offset).limit(limit)).all()
    return rows, session.scalar(select(func.count(Dataset.id))) or 0


def unfinished_jobs_using(session: Session, dataset_id: str) -> list[int]:
    """Ids of queued or running jobs whose spec names this upload."""
    query = select(Job.id, Job.spec).where(Job.status.not_in([s.value for s in FINISHED]))
    return [job_id for job_id, spec in session.execute(query)
            if (spec.get("dataset") or {}).get("source") == "upload"
            and spec["dataset"].get("path") == dataset_id]
