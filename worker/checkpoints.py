"""Checkpoint directories on disk against the job's rows, and the free space they need.

A checkpoint is complete once Trainer has written its trainer_state.json (the last file it
writes). The database follows the disk: a row for every complete checkpoint-N directory, none
for a directory that is gone (save_total_limit, a manual clean-up). Rows go missing when the
database was unreachable while the worker saved (the reporter keeps only so much).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from app.jobs import store
from worker.callbacks import metric_values
from worker.reporting import checkpoint_row, dir_size

log = logging.getLogger(__name__)
PREFIX = "checkpoint-"
STATE = "trainer_state.json"
# Model weights, then the optimizer's two AdamW moments: about 3x the parameters' bytes.
CHECKPOINT_FACTOR = 3


def step_of(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """checkpoint-N directories, oldest first, complete or not."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.glob(PREFIX + "*")
             if p.is_dir() and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=step_of)


def read_state(path: Path) -> dict[str, Any] | None:
    """A checkpoint's trainer_state.json, or None while it is missing or cut short."""
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def discard_incomplete(output_dir: Path) -> list[str]:
    """Remove checkpoint directories without a readable state (a save that failed half-way,
    ENOSPC most often): they hold no usable model and take the space a retry needs."""
    removed = []
    for path in checkpoint_dirs(output_dir):
        if read_state(path) is None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        log.warning("removed incomplete checkpoint(s) %s in %s", removed, output_dir)
    return removed


def reconcile(session: Session, job_id: int, output_dir: Path, data_dir: Path) -> None:
    """Make the job's checkpoint rows match the complete checkpoint directories on disk."""
    on_disk = {p.name: p for p in checkpoint_dirs(output_dir)}
    rows = {name: path for name, path in store.checkpoint_paths(session, job_id)
            if name != "final"}
    gone = [name for name, path in rows.items() if not (data_dir / path).is_dir()]
    store.delete_checkpoints(session, job_id, gone)
    for name, path in on_disk.items():
        if name in rows and name not in gone:
            continue
        state = read_state(path)
        if state is not None:
            store.upsert_checkpoint(session, checkpoint_row(
                job_id, name, step_of(path), path, data_dir, eval_metrics(state, step_of(path))))
    if gone:
        log.info("job %s: dropped rows of checkpoints no longer on disk: %s", job_id, gone)


def eval_metrics(state: dict[str, Any], step: int) -> dict[str, float]:
    """The eval/* values logged at `step` in a trainer_state.json."""
    return {name: value for entry in state.get("log_history", [])
            if isinstance(entry, dict) and entry.get("step") == step
            for name, value in metric_values(entry).items() if name.startswith("eval/")}


# ---------------------------------------------------------------- free space


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds `path` (or its nearest existing parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(".").free


def expected_checkpoint_bytes(model: Any) -> int:
    """Parameter bytes x 3: the weights plus the optimizer's states."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return params * CHECKPOINT_FACTOR


def space_notice(where: Path, needed: int, what: str) -> str | None:
    free = free_bytes(where)
    if free >= needed:
        return None
    return (f"Low disk space: {_size(free)} free on the job's output disk, and {what} needs "
            f"about {_size(needed)}. A save that runs out of space fails the job; free space "
            "on TUNEDECK_DATA_DIR or set save_total_limit.")


def _size(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class DiskSpaceCallback(TrainerCallback):
    """Warns (a job info notice) when the next checkpoint may not fit: at the start from the
    parameter count, after each save from the size of the checkpoint just written."""

    def __init__(self, notice: Callable[[str], None]):
        self.notice = notice
        self.warned = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: Any = None, **kwargs: Any) -> None:
        if model is not None and args.output_dir and args.save_strategy != "no":
            self._check(Path(args.output_dir), expected_checkpoint_bytes(model),
                        "a checkpoint (weights and optimizer states)")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        saved = Path(args.output_dir or ".") / f"{PREFIX}{state.global_step}"
        if args.output_dir and saved.is_dir():
            self._check(saved.parent, dir_size(saved), f"the next checkpoint (as {saved.name})")

    def _check(self, where: Path, needed: int, what: str) -> None:
        if self.warned:
            return
        text = space_notice(where, needed, what)
        if text is not None:
            self.warned = True
            log.warning(text)
            self.notice(text)
