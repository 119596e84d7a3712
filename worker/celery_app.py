"""The consuming Celery app. No torch import here; its task names and settings come from
app/jobs/queue.py, the web's client, so both sides agree on them without importing each other.

The app object exists at import (tasks.py decorates with it) but reads the settings, and so
the broker URL, only on first use.
"""
from __future__ import annotations

from celery import Celery

from app.config import get_settings
from app.jobs.queue import TRAIN_TASK, celery_config

__all__ = ["TRAIN_TASK", "celery_app", "make_celery"]


def make_celery(broker_url: str | None = None) -> Celery:
    """A Celery app for worker.tasks; the broker is the settings' unless given."""
    app = Celery("tunedeck", include=["worker.tasks"])
    app.add_defaults(lambda: celery_config(broker_url or get_settings().broker))
    return app


celery_app = make_celery()
