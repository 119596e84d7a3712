"""The inference worker: short requests from the web (try a checkpoint, check data, push a
model), answered into their `worker_requests` row (app/inference/service.py waits on it).

It is a Celery app of its own on the inference queue (`python -m worker --inference`, which
`tunedeck serve` starts beside the training worker): a thread pool in one long-lived process,
so loaded models stay warm between requests, and a training job never delays an answer. It does
not import worker.tasks, so none of the training worker's signal handlers (lease sweep, gc
freeze) run here.

A handler takes the request's payload and returns a JSON-able dict; it raises BadInput for an
input the user must fix (a 422 naming the field on the web side).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.transport import sqlalchemy as sqla_transport
from sqlalchemy import select, update

from app import db
from app.config import get_settings
from app.inference.models import DONE, FAILED, QUEUED, RUNNING, WorkerRequest
from app.jobs.queue import INFER_TASK, INFERENCE_QUEUE, celery_config
from worker import preflight, push, tryit
from worker.bad_input import BadInput
from worker.preflight import measure

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], dict[str, Any]]
SQLITE_POLL_SECONDS = 0.1
__all__ = ["HANDLERS", "BadInput", "infer", "inference_app", "run_inference_worker"]


def ping(payload: dict[str, Any]) -> dict[str, Any]:
    """Answer with this process id: tells a caller that an inference worker runs."""
    return {"pong": True, "pid": os.getpid(), "echo": payload.get("echo")}


HANDLERS: dict[str, Handler] = {"ping": ping, "predict": tryit.handle, "push": push.handle,
                               "preflight": preflight.handle, "measure": measure.handle}


def make_inference_app(broker_url: str | None = None) -> Celery:
    """The inference worker's Celery app; reads the settings (the broker) on first use."""
    app = Celery("tunedeck-inference")
    app.add_defaults(lambda: {**celery_config(broker_url or get_settings().broker),
                              "task_default_queue": INFERENCE_QUEUE})
    app.task(name=INFER_TASK, ignore_result=True)(infer)
    return app


def infer(request_id: int) -> str:
    """Run one request by id; a request the web already gave up on is skipped."""
    if not _claim(int(request_id)):
        return "skipped"
    kind, payload = _load(request_id)
    handler = HANDLERS.get(kind)
    try:
        if handler is None:
            raise BadInput("kind", f"unknown request kind {kind!r}")
        result = handler(payload)
    except BadInput as exc:
        _answer(request_id, FAILED, result={"field": exc.field}, error=exc.message)
        return "bad input"
    except Exception as exc:  # the web shows it; the worker keeps serving
        log.exception("inference request %s (%s) failed", request_id, kind)
        _answer(request_id, FAILED, result={"field": None}, error=f"{type(exc).__name__}: {exc}")
        return "failed"
    _answer(request_id, DONE, result=result)
    return "done"


def _claim(request_id: int) -> bool:
    with db.session_scope() as session:
        claimed = session.execute(
            update(WorkerRequest)
            .where(WorkerRequest.id == request_id, WorkerRequest.status == QUEUED)
            .values(status=RUNNING, started_at=db.utcnow()))
        return bool(claimed.rowcount)  # type: ignore[attr-defined]


def _load(request_id: int) -> tuple[str, dict[str, Any]]:
    with db.session_scope() as session:
        kind, payload = session.execute(
            select(WorkerRequest.kind, WorkerRequest.payload)
            .where(WorkerRequest.id == request_id)).one()
        return kind, payload


def _answer(request_id: int, status: str, *, result: dict[str, Any] | None = None,
            error: str | None = None) -> None:
    with db.session_scope() as session:
        session.execute(update(WorkerRequest).where(WorkerRequest.id == request_id).values(
            status=status, result=result, error=error, finished_at=db.utcnow()))


def run_inference_worker(hostname: str | None, log_level: str) -> None:
    """One process, `inference_threads` threads, consuming the inference queue only."""
    if get_settings().broker.startswith("sqla+"):
        # The embedded broker is a table the worker polls, once a second by default; answers
        # are short, so poll it often. (kombu's sqla transport hands every transport option to
        # create_engine, so this cannot go through broker_transport_options.)
        sqla_transport.Transport.polling_interval = SQLITE_POLL_SECONDS
    threads = str(get_settings().inference_threads)
    argv = ["worker", "--loglevel", log_level.upper(), "--pool", "threads", "--concurrency",
            threads, "--queues", INFERENCE_QUEUE, "--without-gossip", "--without-mingle",
            "--hostname", hostname or "inference@%h"]
    code: int | str | None = 0
    try:
        inference_app.worker_main(argv)
    except SystemExit as done:
        code = done.code
    # Celery has stopped (a warm stop: requests answered). Skip the interpreter's teardown of
    # torch, transformers and peft, which took 4-6 s of a 7-9 s stop here, so `serve` stops
    # promptly (measured by hand: SIGTERM to exit of an idle inference worker).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


inference_app = make_inference_app()
