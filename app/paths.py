"""Which local paths a job may read: with auth on, only those under TUNEDECK_LOCAL_ROOTS.

A token lets its holder train models, not read the worker's files: a spec whose dataset or
model names a local path (a `local` dataset, or a `hub` name or model that is an existing
file or folder, or that no Hub id can be: see local_path) is refused unless the path, with symlinks and `..` resolved, lies
under one of the roots. With auth off (one person on loopback) every path is allowed.
Uploads are not paths the spec names (the worker finds them by id), so they stay allowed.
The web process checks at submit, the worker again before it opens anything. No torch here.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.auth.service import auth_enabled
from app.config import Settings
from app.errors import Invalid

SETTING = "TUNEDECK_LOCAL_ROOTS"
SHOWN_CHARS = 200  # the most of a user's path echoed back in a message


class OutsideLocalRoots(Invalid):
    """A spec names a local path outside TUNEDECK_LOCAL_ROOTS while auth is on (422)."""


def allowed_roots(db: Session | Connection, settings: Settings) -> list[Path] | None:
    """The folders a spec may read while auth is on; None (any path) while it is off."""
    return settings.local_root_paths if auth_enabled(db, settings) else None


def local_path(name: str) -> Path | None:
    """The file or folder a Hub-or-local name resolves to; None for a Hub id.

    Local: it exists here, or it cannot be a Hub id (`owner/name` is never absolute, never
    starts with `~` or `.`, never holds `..`), so it could only be read from some disk: the
    worker, whose working directory is the job dir, might find `x/../..` where this process
    does not.
    """
    path = Path(name).expanduser()
    not_hub = name.startswith(("/", "~", ".")) or ".." in Path(name).parts
    return path.resolve() if not_hub or path.exists() else None


def spec_paths(spec: dict[str, Any]) -> dict[str, Path]:
    """Each field of the spec that names a local path, with that path resolved."""
    found: dict[str, Path] = {}
    dataset = spec["dataset"]
    if dataset.get("source") == "local":
        found["dataset.path"] = Path(dataset["path"]).expanduser().resolve()
    elif dataset.get("source", "hub") == "hub" and (path := local_path(dataset["path"])):
        found["dataset.path"] = path
    if path := local_path(spec["model"]):
        found["model"] = path
    return found


def confine(spec: dict[str, Any], roots: Sequence[Path] | None) -> dict[str, Any]:
    """The spec with its local paths resolved (absolute), or OutsideLocalRoots.

    roots None means any path is allowed (auth off); an empty list allows none.
    """
    found = spec_paths(spec)
    if roots is not None:
        for field, path in found.items():
            if not any(path.is_relative_to(root) for root in roots):
                raise OutsideLocalRoots(field, _outside(_given(spec, field), roots))
    confined = {**spec, "dataset": dict(spec["dataset"])}
    if "dataset.path" in found:
        confined["dataset"]["path"] = str(found["dataset.path"])
    if "model" in found:
        confined["model"] = str(found["model"])
    return confined


def _given(spec: dict[str, Any], field: str) -> str:
    return str(spec["model"] if field == "model" else spec["dataset"]["path"])


def _outside(given: str, roots: Sequence[Path]) -> str:
    shown = given if len(given) <= SHOWN_CHARS else given[:SHOWN_CHARS] + "..."
    if not roots:
        why = "not set: only uploads and Hub ids are allowed while auth is on"
    else:
        why = "allowed: " + ", ".join(str(root) for root in roots)
    return f"{shown} is outside {SETTING} ({why}; symlinks and .. are resolved first)"
