"""Push a checkpoint to the Hugging Face Hub: check the request, record it, hand it to the
inference worker (worker/push.py), and read back its progress and outcome.

The push row is written and committed here, before its id goes on the queue (the inference
transport's own rule, app/inference/service.py), so this module opens its own session.
The Hub token stays in the settings: it is checked for presence here, used by the worker only.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import db
from app.config import Settings
from app.errors import Conflict, Invalid, NotFound, Unavailable
from app.hub.models import FAILED, QUEUED, RUNNING, HubPush
from app.inference import service as inference
from app.inference.models import FAILED as REQUEST_FAILED
from app.inference.models import WorkerRequest
from app.jobs import repository

# huggingface_hub's validate_repo_id, so a bad id is a 422 here rather than a failed push.
REPO_ID = re.compile(r"^([\w\-.]+/)?[\w\-.]{1,96}$", re.ASCII)
NO_TOKEN = ("this server has no Hugging Face token: set TUNEDECK_HF_TOKEN (a write token) in "
            "the environment of the web and inference worker processes, then restart them")


def check_repo_id(repo_id: str) -> str:
    """`name` or `namespace/name`, as the Hub accepts; ValueError says what is wrong."""
    repo_id = repo_id.strip()
    if not REPO_ID.match(repo_id):
        raise ValueError("must be 'name' or 'namespace/name': letters, digits, '-', '_', '.'; "
                         "a name of at most 96 characters")
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git") or any(
            part[0] in "-." or part[-1] in "-." for part in repo_id.split("/")):
        raise ValueError("must not contain '--' or '..', end with '.git', or start or end a "
                         "part with '-' or '.'")
    return repo_id


def start(settings: Settings, job_id: int, checkpoint: str, repo_id: str,
          private: bool) -> HubPush:
    """Record the push and queue it; 409 without a token, 404 for a checkpoint not on disk,
    503 when the broker is down (the push is then marked failed)."""
    try:
        repo_id = check_repo_id(repo_id)
    except ValueError as exc:
        raise Invalid("repo_id", str(exc)) from None
    if settings.hub_token is None:
        raise Conflict(NO_TOKEN)
    push_id = _record(settings, job_id, checkpoint, repo_id, private)
    try:
        request_id = inference.submit("push", {"push_id": push_id})
    except Unavailable as exc:
        _set(push_id, status=FAILED, error=str(exc), finished_at=db.utcnow())
        raise
    _set(push_id, request_id=request_id)
    with db.session_scope() as session:
        return _detached(session, push_id)


def _record(settings: Settings, job_id: int, name: str, repo_id: str, private: bool) -> int:
    with db.session_scope() as session:
        found = repository.checkpoint(session, job_id, name)
        if found is None:
            raise NotFound(f"job {job_id} has no checkpoint named {name!r}")
        directory = (settings.data_dir / found.path).resolve()
        if not directory.is_dir():
            raise NotFound(f"checkpoint {name!r} of job {job_id} is no longer on disk")
        push = HubPush(job_id=job_id, checkpoint=name, repo_id=repo_id, private=private)
        session.add(push)
        session.flush()
        return push.id


def _set(push_id: int, **values: object) -> None:
    with db.session_scope() as session:
        session.execute(update(HubPush).where(HubPush.id == push_id).values(**values))


def _detached(session: Session, push_id: int) -> HubPush:
    push = session.get(HubPush, push_id)
    assert push is not None
    session.expunge(push)
    return push


def pushes(session: Session, job_id: int) -> Sequence[HubPush]:
    """The job's pushes, newest first, each as the user should see it (see `settled`)."""
    rows = session.scalars(select(HubPush).where(HubPush.job_id == job_id)
                           .order_by(HubPush.id.desc())).all()
    return [settled(session, push) for push in rows]


def push(session: Session, job_id: int, push_id: int) -> HubPush:
    found = session.get(HubPush, push_id)
    if found is None or found.job_id != job_id:
        raise NotFound(f"job {job_id} has no push {push_id}")
    return settled(session, found)


def settled(session: Session, push: HubPush) -> HubPush:
    """A push still queued or running whose request the transport failed (the worker gave up
    on it or crashed before it could write here) becomes failed, with the request's error."""
    if push.status in (QUEUED, RUNNING) and push.request_id is not None:
        request = session.get(WorkerRequest, push.request_id)
        if request is not None and request.status == REQUEST_FAILED:
            push.status, push.error = FAILED, push.error or request.error
    return push


def waiting_note(push: HubPush, settings: Settings) -> str | None:
    """What to start when no inference worker has taken a queued push for a while."""
    if push.status != QUEUED:
        return None
    if db.utcnow() - push.created_at < timedelta(seconds=settings.inference_timeout_seconds):
        return None
    return ("no inference worker has taken this push yet; `tunedeck serve` starts one, or run "
            "`tunedeck worker --inference`")


def card(session: Session, settings: Settings, job_id: int) -> dict[str, Any]:
    """What the job page's pushes card shows (templates/hub/_pushes.html)."""
    rows = pushes(session, job_id)
    return {"pushes": rows, "hub_token": settings.hub_token is not None,
            "push_notes": {p.id: waiting_note(p, settings) for p in rows},
            "pushing": any(p.status in (QUEUED, RUNNING) for p in rows)}
