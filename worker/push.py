"""Push a checkpoint folder to the Hugging Face Hub: the inference worker's `push` request
(app/hub/service.py queues it; worker/inference.py runs it on one of its threads).

huggingface_hub's own API does the work: `HfApi.create_repo(private=..., exist_ok=True)`, then
`upload_folder`, against huggingface_hub's endpoint (HF_ENDPOINT, else huggingface.co) with
TUNEDECK_HF_TOKEN. upload_folder has no progress hook, so the push row moves through coarse
stages: creating repo, uploading (with the files and bytes it sends), done (all of them sent).
The token never leaves this module: error messages are scrubbed of it, and the exception the
inference worker logs is a new one, not chained to the client's.
"""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from sqlalchemy import select, update

from app import db
from app.config import get_settings
from app.hub.models import (
    CREATING_REPO,
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    UPLOADING,
    HubPush,
)
from app.jobs.models import Checkpoint

log = logging.getLogger(__name__)
# What Trainer keeps in a checkpoint only to resume training: not part of the model.
RESUME_STATE = ["optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth"]
NO_TOKEN = ("the inference worker has no TUNEDECK_HF_TOKEN: set it (a Hub write token) in its "
            "environment and restart it")


class PushFailed(Exception):
    """The push failed; the message is the one stored on the push row (no token in it)."""


@dataclass(frozen=True)
class Target:
    job_id: int
    checkpoint: str
    repo_id: str
    private: bool
    directory: Path


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """Run push `payload["push_id"]` if it is still queued; its row holds the outcome."""
    push_id = int(payload["push_id"])
    target = _claim(push_id)
    if target is None:
        return {"push_id": push_id, "skipped": True}
    token = get_settings().hub_token
    try:
        if token is None:
            raise PushFailed(NO_TOKEN)
        result = upload(push_id, target, token)
    except Exception as exc:  # noqa: BLE001 - every failure ends on the push row, in words
        message = describe(exc, token, target)
        _write(push_id, status=FAILED, error=message, finished_at=db.utcnow())
        log.warning("push %s of job %s %s to %s failed: %s", push_id, target.job_id,
                    target.checkpoint, target.repo_id, message)
        raise PushFailed(message) from None
    _write(push_id, status=SUCCEEDED, stage=DONE, finished_at=db.utcnow(), **result)
    return {"push_id": push_id, **result}


def upload(push_id: int, target: Target, token: str) -> dict[str, Any]:
    """create_repo, then upload_folder; the row's stage follows."""
    if not target.directory.is_dir():
        raise FileNotFoundError(target.directory)
    api = HfApi(token=token, library_name="tunedeck")
    _write(push_id, stage=CREATING_REPO)
    repo = api.create_repo(target.repo_id, private=target.private, exist_ok=True)
    files = files_to_send(target.directory)
    total = sum(path.stat().st_size for path in files)
    _write(push_id, stage=UPLOADING, files_total=len(files), bytes_total=total)
    commit = api.upload_folder(
        repo_id=repo.repo_id, folder_path=target.directory, ignore_patterns=RESUME_STATE,
        commit_message=f"tunedeck job {target.job_id}: {target.checkpoint}")
    return {"url": str(repo), "commit": commit.oid, "files_done": len(files),
            "bytes_done": total}


def files_to_send(directory: Path) -> list[Path]:
    """The folder's files less the resume state (upload_folder's ignore_patterns, and its
    own rule of skipping .git/)."""
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if not path.is_file() or ".git" in relative.split("/"):
            continue
        if not any(fnmatch.fnmatch(relative, pattern) for pattern in RESUME_STATE):
            found.append(path)
    return found


def describe(exc: BaseException, token: str | None, target: Target) -> str:
    """The push's error for the user, with the token (if any) blotted out."""
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) else None
    if status == 401:
        text = ("the Hub refused the token (HTTP 401): TUNEDECK_HF_TOKEN is missing, "
                "expired or revoked")
    elif status == 403:
        text = (f"the Hub refused the token's access to {target.repo_id!r} (HTTP 403): it "
                "needs write access to that namespace")
    elif isinstance(exc, OfflineModeIsEnabled):
        text = "HF_HUB_OFFLINE is set on the inference worker: a push needs the Hub"
    elif isinstance(exc, PushFailed):
        text = str(exc)
    elif isinstance(exc, FileNotFoundError):
        text = (f"checkpoint {target.checkpoint!r} is no longer on disk (save_total_limit "
                "removes old checkpoints, during a push too); push a later one")
    elif status is not None:
        text = f"the Hub answered HTTP {status}: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text.replace(token, "[token]") if token else text


def _claim(push_id: int) -> Target | None:
    """Mark the push running (only a queued one: a second delivery does nothing)."""
    with db.session_scope() as session:
        claimed = session.execute(
            update(HubPush).where(HubPush.id == push_id, HubPush.status == QUEUED)
            .values(status=RUNNING, started_at=db.utcnow()))
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return None
        push = session.get(HubPush, push_id)
        assert push is not None
        path = session.scalar(select(Checkpoint.path).where(
            Checkpoint.job_id == push.job_id, Checkpoint.name == push.checkpoint))
        directory = get_settings().data_dir / (path or f"jobs/{push.job_id}/{push.checkpoint}")
        return Target(push.job_id, push.checkpoint, push.repo_id, push.private, directory)


def _write(push_id: int, **values: Any) -> None:
    with db.session_scope() as session:
        session.execute(update(HubPush).where(HubPush.id == push_id).values(**values))
