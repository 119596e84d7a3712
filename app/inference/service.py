"""Ask the inference worker for something and wait for its answer (worker/inference.py).

The web never imports torch: a request is a row plus a message on the inference queue, and the
answer comes back in the row. `ask` blocks its thread (routes that call it are plain `def`, run
in FastAPI's thread pool) and gives up after the settings' inference timeout with a message that
says what to start.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from app import db
from app.config import get_settings
from app.errors import Invalid, Unavailable, WorkerFailed
from app.inference.models import DONE, FAILED, QUEUED, RUNNING, WorkerRequest
from app.jobs import queue

# Answered requests are kept this long (for debugging), then pruned by the next submit.
KEEP_ANSWERED = timedelta(hours=1)
POLL_SECONDS = (0.02, 0.05, 0.1)  # first polls quick: a warm model answers in tens of ms


def ask(kind: str, payload: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Submit a request and wait for its result; Invalid (422) for a bad input the worker
    found, Unavailable (503) when no inference worker answered in time."""
    request_id = submit(kind, payload)
    return wait(request_id, get_settings().inference_timeout_seconds if timeout is None
                else timeout)


def submit(kind: str, payload: dict[str, Any]) -> int:
    """Write the request row, commit, then publish its id."""
    with db.session_scope() as session:
        session.execute(delete(WorkerRequest).where(
            WorkerRequest.finished_at < db.utcnow() - KEEP_ANSWERED))
        row = WorkerRequest(kind=kind, payload=payload)
        session.add(row)
        session.flush()
        request_id = row.id
    try:
        queue.send_request(request_id)
    except Exception as exc:
        _give_up(request_id, f"the broker refused the request: {exc}")
        raise Unavailable(f"could not reach the broker ({type(exc).__name__}); "
                          "is it running?") from exc
    return request_id


def wait(request_id: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        row = _read(request_id)
        if row.status == DONE:
            return row.result or {}
        if row.status == FAILED:
            raise _failure(row)
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS[min(polls, len(POLL_SECONDS) - 1)])
        polls += 1
    if _give_up(request_id, f"no answer within {timeout:g} s"):
        raise Unavailable(
            f"no inference worker answered within {timeout:g} s; `tunedeck serve` starts one, "
            "or run `tunedeck worker --inference` beside the training workers")
    row = _read(request_id)  # it finished or started just now
    if row.status == DONE:
        return row.result or {}
    if row.status == FAILED:
        raise _failure(row)
    raise Unavailable(f"the inference worker took this request but did not answer within "
                      f"{timeout:g} s; it may be loading a large model: try again")


def status(request_id: int) -> WorkerRequest:
    """The request row as it is now (for requests the caller does not wait on, e.g. pushes)."""
    return _read(request_id)


def _read(request_id: int) -> WorkerRequest:
    def work(connection) -> WorkerRequest:
        found = connection.execute(
            select(WorkerRequest.__table__).where(WorkerRequest.id == request_id)).one()
        return WorkerRequest(**found._mapping)
    return db.read_only(work)


def _give_up(request_id: int, reason: str) -> bool:
    """Mark a request nobody took as failed, so a worker that starts later skips it."""
    with db.session_scope() as session:
        result = session.execute(
            update(WorkerRequest)
            .where(WorkerRequest.id == request_id, WorkerRequest.status == QUEUED)
            .values(status=FAILED, error=reason, finished_at=db.utcnow()))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _failure(row: WorkerRequest) -> Exception:
    detail = row.result or {}
    if detail.get("field"):
        return Invalid(str(detail["field"]), row.error or "invalid")
    return WorkerFailed(f"the inference worker failed: {row.error}")


__all__ = ["DONE", "FAILED", "QUEUED", "RUNNING", "WorkerFailed", "ask", "status", "submit",
           "wait"]
