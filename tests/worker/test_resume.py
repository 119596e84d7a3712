"""What a restarted attempt starts from: the latest readable checkpoint and exactly its curve."""
from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.models import Job, JobAttempt, JobStatus, MetricPoint
from worker.runner import _begin_attempt, latest_checkpoint

SPEC = {"model": "m", "dataset": {"path": "d", "text_fields": ["text"]}}


def save(output: Path, step: int, history: list[dict] | None = None, state: str | None = None):
    path = output / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"0" * 100)
    if state is None:
        state = json.dumps({"global_step": step, "log_history": history or []})
    (path / "trainer_state.json").write_text(state)
    return path


def lost_job(global_step: int, steps: list[int], value: float) -> int:
    """A job whose first attempt died at `global_step` after flushing train/loss at `steps`,
    now on its second attempt."""
    with session_scope() as session:
        job = Job(name="j", spec=SPEC, status=JobStatus.running, attempts=2,
                  global_step=global_step, latest_metrics={}, info=[])
        session.add(job)
        session.flush()
        session.add(JobAttempt(job_id=job.id, number=2))
        session.add_all(MetricPoint(job_id=job.id, name="train/loss", step=s, value=value)
                        for s in steps)
        return job.id


def test_a_checkpoint_cut_short_while_saving_is_skipped(tmp_path):
    save(tmp_path, 5)
    save(tmp_path, 10)
    save(tmp_path, 15, state='{"global_step": 15, "log_hi')  # killed mid-write
    (tmp_path / "checkpoint-20").mkdir()  # killed before the state was written
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"


def test_a_resumed_curve_is_the_checkpoints_history(settings_env):
    """Points 1-6 were flushed, 7-10 were logged but not flushed when the worker died at 13;
    11-13 were flushed (a later flush). The resumed attempt sees exactly 1-10."""
    job_id = lost_job(global_step=13, steps=[*range(1, 7), 11, 12, 13], value=9.0)
    history = [{"loss": 1.0 / s, "epoch": s / 10, "step": s} for s in range(1, 11)]
    history.append({"eval_loss": 0.25, "eval_accuracy": 0.75, "epoch": 1.0, "step": 10})
    output = get_settings().job_dir(job_id) / "output"
    checkpoint = save(output, 10, history)

    assert _begin_attempt(job_id, 2, checkpoint, get_settings().data_dir) == SPEC
    with session_scope() as session:
        points = session.execute(select(MetricPoint.name, MetricPoint.step, MetricPoint.value)
                                 .where(MetricPoint.job_id == job_id)
                                 .order_by(MetricPoint.name, MetricPoint.step)).all()
        job = session.get(Job, job_id)
        row = repository.checkpoint(session, job_id, "checkpoint-10")
        attempt = repository.attempt(session, job_id, 2)
    loss = [(step, value) for name, step, value in points if name == "train/loss"]
    assert [step for step, _ in loss] == list(range(1, 11))
    assert loss[6:] == [(s, 1.0 / s) for s in range(7, 11)]  # restored from the checkpoint
    assert loss[0] == (1, 9.0)  # flushed points are kept as they were
    assert {(n, s) for n, s, _ in points if n.startswith("eval/")} == {
        ("eval/accuracy", 10), ("eval/loss", 10)}
    assert job.global_step == 10 and attempt.resumed_from == "checkpoint-10"
    assert row.step == 10 and row.metrics == {"eval/loss": 0.25, "eval/accuracy": 0.75}
    assert row.path == f"jobs/{job_id}/output/checkpoint-10" and row.size_bytes > 100


def test_a_restart_without_a_checkpoint_starts_the_curve_over(settings_env):
    job_id = lost_job(global_step=3, steps=[1, 2, 3], value=1.0)
    _begin_attempt(job_id, 2, None, get_settings().data_dir)
    with session_scope() as session:
        assert session.scalars(select(MetricPoint).where(MetricPoint.job_id == job_id)).all() == []
        assert session.get(Job, job_id).global_step == 0
