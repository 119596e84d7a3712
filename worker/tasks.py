"""Celery tasks: thin wrappers that pass ids to the runner."""
from __future__ import annotations

from celery import Task

from worker.celery_app import TRAIN_TASK, celery_app
from worker.runner import run_job


@celery_app.task(name=TRAIN_TASK, bind=True, ignore_result=True)
def train(self: Task, job_id: int) -> str:
    """Run a job by id; a second delivery of a job already taken is dropped by the claim."""
    return run_job(int(job_id), worker_id=self.request.hostname)
