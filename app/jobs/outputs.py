"""The API's response models: a job, its progress, metrics, checkpoints and predictions."""
from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.schemas import DEFAULT_TASK


class Progress(BaseModel):
    step: int
    max_steps: int | None
    epoch: float | None
    fraction: float | None
    samples_per_second: float | None
    eta_seconds: float | None
    updated_at: datetime | None


class JobError(BaseModel):
    type: str | None
    message: str | None
    traceback: str | None
    hint: str | None


class StoppedEarly(BaseModel):
    """Early stopping ended training before max_steps; `final` holds the best checkpoint's model."""

    step: int  # where training stopped
    best_step: int
    best_checkpoint: str
    metric: str  # the series it watched, e.g. eval/loss
    best_metric: float | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    worker_id: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    resumed_from: str | None
    message: str | None


class JobOut(BaseModel):
    id: int
    name: str
    status: str
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    progress: Progress
    latest_metrics: dict[str, float]
    final_metrics: dict[str, float] | None
    label_names: list[str] | None
    info: list[str]
    error: JobError | None
    gpu_peak_memory_mb: float | None
    gpu_utilization: float | None
    # Where the current (or last) attempt trains: "cuda:0,1", "cpu", "cpu x2" (DDP on CPU).
    devices: str | None
    processes: int | None
    # per_device_train_batch_size x processes x gradient_accumulation_steps
    effective_batch_size: int | None
    attempts: int
    sweep_id: int | None = None
    sweep_values: dict[str, Any] | None = None  # this job's point of its sweep
    stopped_early: StoppedEarly | None = None
    tags: list[str] = Field(description="free-text tags (PATCH the job to change them)")
    note: str | None = Field(description="a free-text note (PATCH the job to change it)")


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    page: int
    per_page: int


class MetricSeries(BaseModel):
    steps: list[int]
    values: list[float]


class MetricsOut(BaseModel):
    job_id: int
    series: dict[str, MetricSeries]
    last_id: int


class CheckpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    step: int
    metrics: dict[str, float]
    size_bytes: int
    created_at: datetime


class PredictionOut(BaseModel):
    """A text-classification prediction."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    row: int
    split: str
    inputs: dict[str, Any]
    label: str | None
    prediction: str
    confidence: float
    probabilities: dict[str, float]
    correct: bool | None


class MultiLabelPredictionOut(BaseModel):
    """A multi-label-classification prediction: the true and predicted label sets."""

    model_config = ConfigDict(extra="forbid")

    row: int
    split: str
    inputs: dict[str, Any]
    labels: list[str] | None
    predictions: list[str]
    probabilities: dict[str, float]
    correct: bool | None = Field(description="the predicted set equals the true set")


class RegressionPredictionOut(BaseModel):
    """A text-regression prediction; `error` is prediction minus label."""

    model_config = ConfigDict(extra="forbid")

    row: int
    split: str
    inputs: dict[str, Any]
    label: float | None
    prediction: float
    error: float | None


class EntityOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    start: int = Field(description="index of the entity's first word")
    end: int = Field(description="index one past its last word")
    text: str


class TokenPredictionOut(BaseModel):
    """A token-classification prediction: one tag per word, and the predicted entities."""

    model_config = ConfigDict(extra="forbid")

    row: int
    split: str
    tokens: list[str]
    tags: list[str] | None
    predicted_tags: list[str]
    entities: list[EntityOut]
    correct: bool | None = Field(description="every word's predicted tag is its true tag")


class GenerationPredictionOut(BaseModel):
    """A causal-lm-sft prediction: the greedy generation next to the reference."""

    model_config = ConfigDict(extra="forbid")

    row: int
    split: str
    prompt: str
    reference: str | None
    generated: str
    correct: bool | None = Field(description="exact match after strip")


AnyPrediction: TypeAlias = (PredictionOut | MultiLabelPredictionOut | RegressionPredictionOut
                 | TokenPredictionOut | GenerationPredictionOut)
PREDICTION_MODELS: dict[str, type[AnyPrediction]] = {
    "text-classification": PredictionOut,
    "multi-label-classification": MultiLabelPredictionOut,
    "text-regression": RegressionPredictionOut,
    "token-classification": TokenPredictionOut,
    "causal-lm-sft": GenerationPredictionOut,
}


class PredictionPage(BaseModel):
    task: str = Field(default=DEFAULT_TASK, description="the job's task: the items' shape")
    items: list[AnyPrediction]
    total: int
    page: int
    per_page: int
    metrics: dict[str, float] | None
    label_names: list[str] | None
    confusion: list[list[int]] | None
