"""The reads a comparison makes: the jobs, and their predictions side by side."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.jobs.models import Job, Prediction


def jobs(session: Session, ids: Sequence[int]) -> dict[int, Job]:
    return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


def prediction_splits(session: Session,
                      ids: Sequence[int]) -> dict[int, list[tuple[str, int, int, int]]]:
    """Per job, (split, rows, first row, last row) of each split it predicted on."""
    query = (select(Prediction.job_id, Prediction.split, func.count(), func.min(Prediction.row),
                    func.max(Prediction.row))
             .where(Prediction.job_id.in_(ids))
             .group_by(Prediction.job_id, Prediction.split))
    found: dict[int, list[tuple[str, int, int, int]]] = {i: [] for i in ids}
    for job_id, split, count, lo, hi in session.execute(query):
        found[job_id].append((split, count, lo, hi))
    return found


def verdicts(session: Session, job_id: int,
             by_error: bool) -> list[tuple[int, bool | float | None]]:
    """(row, correct) of each of a job's predictions; (row, error) with by_error."""
    column = Prediction.error if by_error else Prediction.correct
    query = select(Prediction.row, column).where(Prediction.job_id == job_id)
    # fetchall: iterating the result fetches row by row (4x slower at 20,000 rows on SQLite)
    return [(r[0], r[1]) for r in session.connection().execute(query).all()]


def truths(session: Session, job_id: int, by_label: bool) -> list[tuple[int, Any]]:
    """(row, true value): the label column (text-classification) or the task's fields."""
    column = Prediction.label if by_label else Prediction.fields
    query = select(Prediction.row, column).where(Prediction.job_id == job_id)
    return [(r[0], r[1]) for r in session.connection().execute(query).all()]


def rows_of(session: Session, ids: Sequence[int], rows: Sequence[int]) -> list[Prediction]:
    """The predictions of these jobs on these rows."""
    if not rows:
        return []
    query = select(Prediction).where(Prediction.job_id.in_(ids), Prediction.row.in_(rows))
    return list(session.scalars(query))
