"""Upload files on disk, kept in step with the database transaction that records them."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.errors import TooLarge

CHUNK = 1024 * 1024
_ON_ROLLBACK = "tunedeck_remove_on_rollback"
_ON_COMMIT = "tunedeck_remove_on_commit"


def safe_name(filename: str, fallback_suffix: str) -> str:
    """A plain file name: no directories, no leading dots, only [A-Za-z0-9._-]."""
    base = re.split(r"[\\/]", filename)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._")[-100:]
    return base or f"data{fallback_suffix}"


def write_stream(stream: BinaryIO, target: Path, max_bytes: int) -> int:
    """Copy a stream to `target` in chunks; TooLarge as soon as it passes max_bytes."""
    size = 0
    with target.open("xb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"the file is larger than the upload limit of "
                               f"{max_bytes // (1024 * 1024)} MB (TUNEDECK_MAX_UPLOAD_MB)")
            out.write(chunk)
    return size


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def remove_on_rollback(session: Session, path: Path) -> None:
    """The files of a row that may never be committed."""
    session.info.setdefault(_ON_ROLLBACK, []).append(path)


def remove_after_commit(session: Session, path: Path) -> None:
    """The files of a row whose deletion is not yet committed."""
    session.info.setdefault(_ON_COMMIT, []).append(path)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    session.info.pop(_ON_ROLLBACK, None)
    for path in session.info.pop(_ON_COMMIT, []):
        remove_tree(path)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_ON_COMMIT, None)
    for path in session.info.pop(_ON_ROLLBACK, []):
        remove_tree(path)
