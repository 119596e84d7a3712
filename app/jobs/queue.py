"""The web's Celery client: send tasks by name, only after the row that names them is committed.

app/ owns the task names and the Celery settings; worker/celery_app.py builds the consuming app
from them, so neither side imports the other's internals.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import get_settings
from app.jobs.models import Job

log = logging.getLogger(__name__)
TRAIN_TASK = "tunedeck.train"
QUEUE = "tunedeck"
# A job that asks for N GPUs waits in tunedeck.gpusN, which only workers with at least N GPUs
# consume, so in a mixed fleet it reaches a box that can run it (docs/deploy.md, Multi-GPU).
GPU_QUEUE_PREFIX = "tunedeck.gpus"
# A TUNEDECK_DDP_CPU worker runs a job asking for N GPUs as N CPU processes, up to this many.
DDP_CPU_MAX_PROCESSES = 8
# Short requests (try a checkpoint, check data, push a model) have a queue and a worker of their
# own, so they are answered while a training job holds the training worker for hours.
INFER_TASK = "tunedeck.infer"
INFERENCE_QUEUE = "tunedeck.inference"
_PENDING = "tunedeck_pending_jobs"


def celery_config(broker_url: str) -> dict[str, Any]:
    """Settings for hours-long GPU tasks; docs/deploy.md (Celery settings) says why each is so."""
    config: dict[str, Any] = {
        "broker_url": broker_url,
        "task_ignore_result": True,
        "result_backend": None,
        # Ack when the task starts: a healthy job that runs for hours is never re-delivered
        # by Redis' visibility timeout. A worker that dies mid-run is recovered from the
        # database lease instead (the job row, not the broker, is the record).
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # Trainer prints its log dicts to stdout: progress, not warnings.
        "worker_redirect_stdouts_level": "INFO",
        "task_default_queue": QUEUE,
        "task_routes": {INFER_TASK: {"queue": INFERENCE_QUEUE}},
    }
    if broker_url.startswith(("redis://", "rediss://")):
        # Fetch a message only when the worker process is free, so no job sits reserved
        # behind a long one.
        config["worker_disable_prefetch"] = True
        config["broker_transport_options"] = {"visibility_timeout": 12 * 3600}
    if broker_url.startswith("sqla+"):
        # kombu hands these to create_engine; the worker polls the table once a second.
        config["broker_transport_options"] = {"connect_args": {"timeout": 30}}
    return config


@lru_cache
def get_producer() -> Celery:
    """The Celery app used to publish, bound to the current settings' broker; built on first use."""
    producer = Celery("tunedeck")
    producer.conf.update(celery_config(get_settings().broker))
    return producer


def gpus_asked(spec: dict[str, Any] | None) -> int:
    """The job spec's `resources.gpus` as a number: 0 for `gpus: 0` and for unset alike."""
    return int(((spec or {}).get("resources") or {}).get("gpus") or 0)


def queue_for(spec: dict[str, Any] | None) -> str:
    """The queue of a job's train task: tunedeck.gpusN for `resources.gpus: N` (N >= 1); the
    queue every training worker consumes for `gpus: 0` (the CPU) and unset (a GPU where the
    worker has one, else the CPU)."""
    gpus = gpus_asked(spec)
    return f"{GPU_QUEUE_PREFIX}{gpus}" if gpus else QUEUE


def most_gpus(gpu_count: int, ddp_cpu: bool) -> int:
    """The most GPUs one job may ask of a worker with `gpu_count` GPUs: those, or up to
    DDP_CPU_MAX_PROCESSES CPU processes on a TUNEDECK_DDP_CPU worker."""
    return max(gpu_count, DDP_CPU_MAX_PROCESSES if ddp_cpu else 0)


def worker_queues(gpu_count: int, ddp_cpu: bool = False) -> list[str]:
    """The queues a training worker with `gpu_count` GPUs consumes: tunedeck, and
    tunedeck.gpus1 .. tunedeck.gpusN for every N it could run (most_gpus)."""
    most = most_gpus(gpu_count, ddp_cpu)
    return [QUEUE, *(f"{GPU_QUEUE_PREFIX}{n}" for n in range(1, most + 1))]


def enqueue_after_commit(session: Session, job: Job) -> None:
    """Send the job's train task once the session commits (never for a rolled-back row)."""
    session.info.setdefault(_PENDING, []).append((job.id, queue_for(job.spec)))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for job_id, queue in session.info.pop(_PENDING, []):
        send(job_id, queue)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def send(job_id: int, queue: str = QUEUE) -> bool:
    """Publish one train task to `queue` (queue_for); a broker outage leaves the job queued
    for the requeue sweep."""
    try:
        get_producer().send_task(TRAIN_TASK, args=[job_id], queue=queue, retry=True,
                                 retry_policy={"max_retries": 2, "interval_start": 0.2,
                                               "interval_step": 0.5})
    except Exception:  # the database row is the record; the sweep re-sends it
        log.exception("could not publish job %s; it stays queued and is re-sent later", job_id)
        return False
    return True


def send_request(request_id: int) -> None:
    """Publish one inference request (app/inference/service.py); raises if the broker is down."""
    get_producer().send_task(INFER_TASK, args=[request_id], retry=True,
                             retry_policy={"max_retries": 2, "interval_start": 0.2,
                                           "interval_step": 0.5})
