"""Rows (and checkpoint files) for API tests, committed so the app under test sees them."""
from __future__ import annotations

from pathlib import Path

from app.db import session_scope, utcnow
from app.jobs.models import Checkpoint, Job, JobStatus, MetricPoint, Prediction

SPEC = {
    "model": "tiny", "task": "text-classification", "max_length": 32, "metrics": ["accuracy"],
    "dataset": {"source": "hub", "path": "glue", "train_split": "train",
                "text_fields": ["text"], "label_field": "label"},
    "training": {},
}


def make_job(status: str = JobStatus.queued, spec: dict | None = None, **fields) -> int:
    with session_scope() as session:
        job = Job(**{"name": "test-job", "spec": spec or SPEC, "status": status,
                     "latest_metrics": {}, "info": [], **fields})
        session.add(job)
        session.flush()
        return job.id


def write_checkpoint(data_dir: Path, job_id: int, name: str, step: int) -> Checkpoint:
    directory = data_dir / "jobs" / str(job_id) / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(f'{{"name": "{name}"}}')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return Checkpoint(job_id=job_id, name=name, step=step, path=f"jobs/{job_id}/{name}",
                      metrics={"eval/accuracy": 0.5}, size_bytes=16_400)


def make_finished_job(data_dir: Path, metric_points: int = 5) -> int:
    job_id = make_job(JobStatus.succeeded, global_step=4, max_steps=4, epoch=2.0,
                      started_at=utcnow(), finished_at=utcnow(),
                      final_metrics={"eval/accuracy": 0.75}, label_names=["neg", "pos"])
    with session_scope() as session:
        session.add_all(write_checkpoint(data_dir, job_id, name, step)
                        for name, step in (("checkpoint-2", 2), ("final", 4)))
        session.add_all(MetricPoint(job_id=job_id, name="train/loss", step=i + 1,
                                    value=1.0 / (i + 1), epoch=i / 2)
                        for i in range(metric_points))
        session.add_all(Prediction(job_id=job_id, split="validation", row=i,
                                   inputs={"text": f"row {i}"}, label="pos",
                                   prediction="pos" if i % 2 else "neg", confidence=0.6,
                                   probabilities={"neg": 0.4, "pos": 0.6}, correct=bool(i % 2))
                        for i in range(4))
    return job_id


def add_points(job_id: int, name: str, values: list[float], first_step: int = 1) -> None:
    """One series through the worker's own write (store.upsert_metric_points), tiles too."""
    from app.jobs import store

    rows = [{"job_id": job_id, "name": name, "step": first_step + i, "value": v, "epoch": None}
            for i, v in enumerate(values)]
    with session_scope() as session:
        store.upsert_metric_points(session, rows)


def add_predictions(job_id: int, task: str, rows: list[dict]) -> None:
    """Prediction rows in the task's shape (DESIGN.md "Tasks"), stored as the worker does."""
    from app.jobs import store
    from app.jobs.models import prediction_columns

    with session_scope() as session:
        store.replace_predictions(session, job_id, [prediction_columns(job_id, task, row)
                                                    for row in rows])
