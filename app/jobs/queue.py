"""Send training tasks by name, only after the row that names them is committed."""
from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import get_settings
from worker.celery_app import TRAIN_TASK, make_celery

log = logging.getLogger(__name__)
_PENDING = "tunedeck_pending_jobs"


@lru_cache
def get_producer() -> Celery:
    """The Celery app used to publish, bound to the current settings' broker."""
    return make_celery(get_settings().broker)


def enqueue_after_commit(session: Session, job_id: int) -> None:
    session.info.setdefault(_PENDING, []).append(job_id)


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for job_id in session.info.pop(_PENDING, []):
        send(job_id)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def send(job_id: int) -> bool:
    """Publish one train task; a broker outage leaves the job queued for the requeue sweep."""
    try:
        get_producer().send_task(TRAIN_TASK, args=[job_id], retry=True,
                             retry_policy={"max_retries": 2, "interval_start": 0.2,
                                           "interval_step": 0.5})
    except Exception:  # the database row is the record; the sweep re-sends it
        log.exception("could not publish job %s; it stays queued and is re-sent later", job_id)
        return False
    return True


