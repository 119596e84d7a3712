"""A full disk while saving a checkpoint: a clear hint, no half-written checkpoint, the last good
one kept; and a warning up front when free space is short.

The fault is injected at the one place a full disk shows: the file torch.save writes the
optimizer states into raises OSError(ENOSPC) once a byte budget is spent. torch's own zip
writer then fails as it does on a real full disk ("unexpected pos N vs M"); Trainer, the
runner and the database are real.
"""
from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest
import torch

from app.db import session_scope
from app.jobs import repository
from tests.fixtures import tiny_spec
from tests.worker.test_runner import job_row, submit
from worker import checkpoints
from worker.failures import DISK_FULL_HINT, OOM_HINT, describe_failure
from worker.runner import run_job

REAL_SAVE = torch.save


class FullDisk(io.RawIOBase):
    """A file that takes `budget` bytes, then fails each write like a full filesystem."""

    def __init__(self, target: io.BufferedWriter, budget: int):
        self.target, self.left = target, budget

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= len(data)
        return self.target.write(data)


def save_into_full_disk(obj, path) -> None:
    with open(path, "wb") as target:
        REAL_SAVE(obj, FullDisk(target, budget=5000))


def real_enospc_error() -> BaseException:
    try:
        save_into_full_disk({"w": torch.zeros(10_000)}, "/dev/null")
    except RuntimeError as exc:
        return exc
    raise AssertionError("the save did not fail")


def test_torchs_error_on_a_full_disk_gets_the_disk_full_hint():
    exc = real_enospc_error()
    assert "unexpected pos" in str(exc)  # what the job used to show, and nothing else
    kind, message, _tail, hint = describe_failure(exc)
    assert (kind, hint) == ("RuntimeError", DISK_FULL_HINT)
    assert "unexpected pos" in message


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9664 vs 9556"),
    RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"),
], ids=["ENOSPC", "EDQUOT", "unexpected pos", "file write failed"])
def test_disk_full_errors_are_recognised(exc):
    assert describe_failure(exc)[3] == DISK_FULL_HINT


def test_other_errors_keep_their_hints():
    assert describe_failure(KeyError("label"))[3] is None
    assert describe_failure(OSError(errno.ENOENT, "No such file"))[3] is None
    assert describe_failure(RuntimeError("CUDA error: out of memory"))[3] == OOM_HINT


def test_a_checkpoint_save_on_a_full_disk_fails_the_job_and_keeps_the_last_good_one(
        settings_env, tiny_model, make_dataset, monkeypatch):
    def save(obj, path, *args, **kwargs):
        if str(path).endswith("checkpoint-8/optimizer.pt"):
            return save_into_full_disk(obj, path)
        return REAL_SAVE(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    job_id = submit(tiny_spec(tiny_model, make_dataset(train=32, validation=8)))
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert job.error_hint == DISK_FULL_HINT and "unexpected pos" in job.error_message
    output = Path(settings_env["TUNEDECK_DATA_DIR"]) / "jobs" / str(job_id) / "output"
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-4"]  # the partial went
    with session_scope() as session:
        rows = repository.checkpoints(session, job_id)
    assert [(c.name, c.step) for c in rows] == [("checkpoint-4", 4)]
    assert (output / "checkpoint-4" / "model.safetensors").is_file()


def test_short_free_space_is_a_notice_on_the_job(settings_env, tiny_model, make_dataset,
                                                 monkeypatch):
    """The disk's free space is the environment's; here it reads as 1 KB."""
    monkeypatch.setattr(checkpoints, "free_bytes", lambda path: 1024)
    job_id = submit(tiny_spec(tiny_model, make_dataset(train=16, validation=8),
                              num_train_epochs=1))
    assert run_job(job_id) == "succeeded"
    notes = [n for n in job_row(job_id).info if n.startswith("Low disk space")]
    assert len(notes) == 1 and "1.0 KB free" in notes[0] and "TUNEDECK_DATA_DIR" in notes[0]
    assert any("newly initialized" in n for n in job_row(job_id).info)  # kept beside it


def test_enough_free_space_adds_no_notice(settings_env, tiny_model, make_dataset):
    job_id = submit(tiny_spec(tiny_model, make_dataset(train=16, validation=8),
                              num_train_epochs=1))
    assert run_job(job_id) == "succeeded"
    assert not [n for n in job_row(job_id).info if "disk space" in n]
