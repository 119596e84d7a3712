"""ORM rows for jobs and everything a run produces."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow
from app.sweeps.models import Sweep  # noqa: F401 - registers jobs.sweep_id's target table

# BIGINT on PostgreSQL, INTEGER (rowid alias, autoincrement) on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued, index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # progress, written by the worker's callback
    global_step: Mapped[int] = mapped_column(Integer, default=0)
    max_steps: Mapped[int | None] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    samples_per_second: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    progress_at: Mapped[datetime | None] = mapped_column(DateTime)
    latest_metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    final_metrics: Mapped[dict[str, float] | None] = mapped_column(JSON)
    label_names: Mapped[list[str] | None] = mapped_column(JSON)
    info: Mapped[list[str]] = mapped_column(JSON, default=list)
    gpu_peak_memory_mb: Mapped[float | None] = mapped_column(Float)
    gpu_utilization: Mapped[float | None] = mapped_column(Float)
    # where the current attempt trains ("cuda:0,1", "cpu x2") and how (worker/distributed.py)
    devices: Mapped[str | None] = mapped_column(String(200))
    processes: Mapped[int | None] = mapped_column(Integer)
    effective_batch_size: Mapped[int | None] = mapped_column(Integer)
    # failure
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    error_hint: Mapped[str | None] = mapped_column(Text)
    # lease: who runs it and when it last said so
    worker_id: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    # a sweep's job: the sweep and this job's point ({dotted key: value})
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", ondelete="SET NULL"), index=True)
    sweep_values: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # early stopping ended training before max_steps: {step, best_step, best_checkpoint,
    # metric, best_metric} (worker/training.py); None otherwise
    stopped_early: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # what a user keeps on the job (app/jobs/service.py annotate / set_tags), any time
    tags: Mapped[list[str] | None] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)

    attempt_rows: Mapped[list[JobAttempt]] = relationship(
        back_populates="job", order_by="JobAttempt.number", cascade="all, delete-orphan"
    )

    @property
    def gpu_indices(self) -> list[int]:
        """The worker's GPU indices its devices label names ("cuda:0,1"); none on the CPU."""
        if not self.devices or not self.devices.startswith("cuda:"):
            return []
        return [int(i) for i in self.devices[5:].split(",") if i.isdigit()]


class JobAttempt(Base):
    __tablename__ = "job_attempts"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str | None] = mapped_column(String(32))
    resumed_from: Mapped[str | None] = mapped_column(String(200))
    message: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="attempt_rows")


class MetricPoint(Base):
    __tablename__ = "metric_points"
    __table_args__ = (
        UniqueConstraint("job_id", "name", "step"),
        Index("ix_metric_points_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    step: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    epoch: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class MetricTile(Base):
    """One series summarised over a range of steps: how many points, and its first, last,
    min and max point. Written with the points (store.refresh_metric_tiles), read by the
    chart's M4 downsampling, so a long run's chart reads tiles instead of every point."""

    __tablename__ = "metric_tiles"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                        primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    tile: Mapped[int] = mapped_column(Integer, primary_key=True)
    points: Mapped[int] = mapped_column(Integer)
    first_step: Mapped[int] = mapped_column(Integer)
    first_value: Mapped[float] = mapped_column(Float)
    last_step: Mapped[int] = mapped_column(Integer)
    last_value: Mapped[float] = mapped_column(Float)
    min_step: Mapped[int] = mapped_column(Integer)
    min_value: Mapped[float] = mapped_column(Float)
    max_step: Mapped[int] = mapped_column(Integer)
    max_value: Mapped[float] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("job_id", "row"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(100))
    row: Mapped[int] = mapped_column(Integer)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # text-classification's row (the confusion matrix groups label x prediction)
    label: Mapped[str | None] = mapped_column(String(200))
    prediction: Mapped[str | None] = mapped_column(String(200))
    confidence: Mapped[float | None] = mapped_column(Float)
    probabilities: Mapped[dict[str, float] | None] = mapped_column(JSON)
    correct: Mapped[bool | None] = mapped_column(Boolean)
    # every other task's row, besides split/row/inputs/correct (DESIGN.md "Tasks")
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[float | None] = mapped_column(Float)  # text-regression: prediction - label

    def as_row(self, task: str) -> dict[str, Any]:
        """The row in its task's shape (DESIGN.md "Tasks"), as the worker wrote it."""
        if self.fields is None:
            return {"row": self.row, "split": self.split, "inputs": self.inputs,
                    "label": self.label, "prediction": self.prediction,
                    "confidence": self.confidence, "probabilities": self.probabilities,
                    "correct": self.correct}
        row: dict[str, Any] = {"row": self.row, "split": self.split}
        if self.inputs is not None:
            row["inputs"] = self.inputs
        row.update(self.fields)
        if task != "text-regression":  # a regression row has an error, not a verdict
            row["correct"] = self.correct
        return row


CLASSIFICATION_COLUMNS = ("inputs", "label", "prediction", "confidence", "probabilities")


def prediction_columns(job_id: int, task: str, row: dict[str, Any]) -> dict[str, Any]:
    """A worker's prediction row (its task's shape) as the predictions table's columns:
    text-classification fills its own columns, every other task `fields` (JSON)."""
    columns = {"job_id": job_id, "split": row["split"], "row": row["row"],
               "correct": row.get("correct"), "inputs": row.get("inputs")}
    if task == "text-classification":
        columns.update({key: row[key] for key in CLASSIFICATION_COLUMNS})
        return columns
    columns["fields"] = {k: v for k, v in row.items()
                         if k not in ("split", "row", "inputs", "correct")}
    error = row.get("error")
    columns["error"] = float(error) if isinstance(error, int | float) else None
    return columns

