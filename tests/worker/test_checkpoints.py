"""Checkpoint rows follow the disk: rows for checkpoints the database missed, none for
directories that are gone (after a database outage, after save_total_limit)."""
from __future__ import annotations

from pathlib import Path

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.models import Checkpoint
from tests.fixtures import tiny_spec
from tests.worker.test_resume import lost_job, save
from tests.worker.test_runner import submit
from worker import checkpoints
from worker.reporting import DbReporter
from worker.runner import _begin_attempt, run_job


def rows(job_id: int) -> dict[str, tuple[int, dict]]:
    with session_scope() as session:
        return {c.name: (c.step, c.metrics) for c in repository.checkpoints(session, job_id)}


def test_reconcile_adds_missed_checkpoints_and_drops_vanished_ones(settings_env):
    data_dir = get_settings().data_dir
    job_id = lost_job(global_step=6, steps=[1, 2], value=1.0)
    output = data_dir / "jobs" / str(job_id) / "output"
    save(output, 4, history=[{"step": 4, "eval_accuracy": 0.75, "epoch": 1.0},
                             {"step": 4, "loss": 0.5}])
    save(output, 6, state='{"global_step": 6, "log_hi')  # cut short: not a checkpoint
    (data_dir / "jobs" / str(job_id) / "final").mkdir(parents=True)
    with session_scope() as session:
        session.add_all([
            Checkpoint(job_id=job_id, name="checkpoint-2", step=2,
                       path=f"jobs/{job_id}/output/checkpoint-2"),  # rotated away
            Checkpoint(job_id=job_id, name="final", step=6, path=f"jobs/{job_id}/final")])
    with session_scope() as session:
        checkpoints.reconcile(session, job_id, output, data_dir)
    assert rows(job_id) == {"checkpoint-4": (4, {"eval/accuracy": 0.75}),
                            "final": (6, {})}
    with session_scope() as session:
        size = repository.checkpoint(session, job_id, "checkpoint-4").size_bytes
    assert size == sum(f.stat().st_size for f in (output / "checkpoint-4").iterdir())


def test_a_resumed_attempt_records_every_checkpoint_on_disk(settings_env):
    data_dir = get_settings().data_dir
    job_id = lost_job(global_step=8, steps=[1, 2, 3, 4], value=1.0)
    output = data_dir / "jobs" / str(job_id) / "output"
    for step in (2, 4, 6):
        save(output, step, history=[{"step": s, "loss": 1.0} for s in range(1, step + 1)])
    _begin_attempt(job_id, 2, output / "checkpoint-6", data_dir)
    assert sorted(rows(job_id)) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_checkpoints_the_reporter_never_recorded_are_listed_when_the_job_ends(
        settings_env, tiny_model, make_dataset, monkeypatch):
    """The reporter's checkpoint records are lost, as they were in a database outage."""
    monkeypatch.setattr(DbReporter, "checkpoint", lambda self, *args: None)
    job_id = submit(tiny_spec(tiny_model, make_dataset(train=32, validation=8)))
    assert run_job(job_id) == "succeeded"
    found = rows(job_id)
    assert sorted(found) == ["checkpoint-4", "checkpoint-8", "final"]
    assert found["checkpoint-8"][0] == 8 and "eval/accuracy" in found["checkpoint-8"][1]
    output = Path(get_settings().data_dir) / "jobs" / str(job_id) / "output"
    assert sorted(p.name for p in output.iterdir()) == ["checkpoint-4", "checkpoint-8"]
