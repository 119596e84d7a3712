"""The Celery app. No torch import here: the web process imports this to send tasks by name."""
from __future__ import annotations

from celery import Celery

from app.config import get_settings

TRAIN_TASK = "tunedeck.train"


def celery_config(broker_url: str) -> dict:
    """Settings for hours-long GPU tasks; docs/operations.md says why each is so."""
    config = {
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
        "task_default_queue": "tunedeck",
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


def make_celery(broker_url: str | None = None) -> Celery:
    app = Celery("tunedeck", include=["worker.tasks"])
    app.conf.update(celery_config(broker_url or get_settings().broker))
    return app


celery_app = make_celery()
