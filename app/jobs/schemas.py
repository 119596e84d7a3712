"""The job spec (DESIGN.md) and the API's response models."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.jobs.training_args import (
    REFUSED_TRAINING_KEYS,
    RESERVED_TRAINING_KEYS,
    TRAINING_ARGUMENT_NAMES,
)

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
    "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr",
    "cosine_warmup_with_min_lr", "warmup_stable_decay",
)
Strategy = Literal["no", "steps", "epoch"]
MetricName = Literal["accuracy", "f1", "precision", "recall", "matthews_correlation"]
DEFAULT_METRICS: tuple[MetricName, ...] = ("accuracy", "f1")


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["hub", "upload", "local"] = "hub"
    path: str = Field(min_length=1, max_length=1000)
    config: str | None = Field(default=None, max_length=200)
    train_split: str = Field(default="train", min_length=1, max_length=100)
    eval_split: str | None = Field(default=None, max_length=100)
    test_split: str | None = Field(default=None, max_length=100)
    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_field: str = Field(default="label", min_length=1, max_length=200)

    @field_validator("text_fields")
    @classmethod
    def _distinct_text_fields(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("text field names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("text fields must be two different columns")
        return value


class TrainingSpec(BaseModel):
    """The common TrainingArguments, typed; any other TrainingArguments key passes through."""

    model_config = ConfigDict(extra="allow")

    num_train_epochs: float = Field(default=3, gt=0, le=1000)
    learning_rate: float = Field(default=2e-5, gt=0, le=1)
    per_device_train_batch_size: int = Field(default=8, ge=1, le=4096)
    per_device_eval_batch_size: int = Field(default=8, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    lr_scheduler_type: Literal[SCHEDULERS] = "linear"  # type: ignore[valid-type]
    warmup_steps: float = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    eval_strategy: Strategy = "epoch"
    save_strategy: Strategy = "epoch"
    logging_steps: float = Field(default=10, gt=0)
    fp16: bool = False
    bf16: bool = False
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    max_steps: int = Field(default=-1, ge=-1)
    # Batches of rows of similar length (shuffled in megabatches of 50 batches): with dynamic
    # padding a random batch is padded to 1.4x its mean length on MRPC, a grouped one to
    # within 2% (benchmarks P2). "random" restores transformers' own default.
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] = (
        "group_by_length"
    )

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("warmup_steps is an int (steps) or a float in [0, 1) (ratio)")
        return int(value) if value >= 1 else value

    @model_validator(mode="after")
    def _known_extras(self) -> TrainingSpec:
        for key, value in (self.model_extra or {}).items():
            if key in REFUSED_TRAINING_KEYS:
                raise ValueError(f"training.{key} is refused: {REFUSED_TRAINING_KEYS[key]}")
            if key == "accelerator_config" and not isinstance(value, dict | None):
                raise ValueError("training.accelerator_config must be a mapping (a file path "
                                 "would be read on the worker)")
            if key in RESERVED_TRAINING_KEYS:
                raise ValueError(f"training.{key} is set by tunedeck and cannot be given")
            if key not in TRAINING_ARGUMENT_NAMES:
                raise ValueError(f"training.{key} is not a TrainingArguments field")
        if self.fp16 and self.bf16:
            raise ValueError("fp16 and bf16 cannot both be true")
        return self


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    task: Literal["text-classification"] = "text-classification"
    model: str = Field(min_length=1, max_length=1000)
    dataset: DatasetSpec
    max_length: int = Field(default=128, ge=8, le=8192)
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    # Start from a checkpoint whose head (or other weights) has other shapes, e.g. a classifier
    # trained with another label count: those weights are re-initialised, with a job notice.
    ignore_mismatched_sizes: bool = False

    def display_name(self) -> str:
        if self.name:
            return self.name
        data = self.dataset.path.rstrip("/").rsplit("/", 1)[-1]
        if self.dataset.config:
            data = f"{data}-{self.dataset.config}"
        return f"{self.model.rstrip('/').rsplit('/', 1)[-1]}-{data}"[:200]


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
    attempts: int


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
    model_config = ConfigDict(from_attributes=True)

    row: int
    split: str
    inputs: dict[str, Any]
    label: str | None
    prediction: str
    confidence: float
    probabilities: dict[str, float]
    correct: bool | None


class PredictionPage(BaseModel):
    items: list[PredictionOut]
    total: int
    page: int
    per_page: int
    metrics: dict[str, float] | None
    label_names: list[str] | None
    confusion: list[list[int]] | None
