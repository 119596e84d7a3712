"""The compare API's response models (GET /api/v1/compare and /api/v1/compare/flips)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.jobs.outputs import MetricSeries


class ComparedJob(BaseModel):
    id: int
    name: str
    status: str
    task: str
    tags: list[str]
    last_id: int = Field(description="the job's metric cursor: /events?after=last_id goes on")


class ClassChange(BaseModel):
    """One class (a true label; a label range for text-regression) across the jobs."""

    name: str
    rows: int = Field(description="shared labelled rows of this class")
    right: dict[str, int] = Field(description="rows right, per job id")
    fixed: int = Field(description="wrong in the first job, right in another")
    broken: int = Field(description="right in the first job, wrong in another")


class FlipSummary(BaseModel):
    """Whether the jobs' predictions can be set side by side, and how many rows flipped.

    `comparable` is false with a `reason` when the jobs are of different tasks, predicted on
    different datasets, splits or rows, or one has no predictions yet.
    """

    comparable: bool
    reason: str | None
    task: str | None
    split: str | None
    baseline: int = Field(description="the first job: fixed and broken are relative to it")
    rows: int = Field(description="rows every job predicted with a verdict")
    flipped: int = Field(description="rows right in one job and wrong in another")
    fixed: int
    broken: int
    tolerance: float | None = Field(
        description="text-regression: a row is right when |prediction - label| <= tolerance")
    classes: list[ClassChange]


class CompareOut(BaseModel):
    jobs: list[ComparedJob]
    spec_diff: dict[str, dict[str, Any]] = Field(
        description="flattened spec keys (training.learning_rate) whose values differ, each "
                    "with its value per job id (a job without the key is left out); the "
                    "name is not compared")
    final_metrics: dict[str, dict[str, float] | None] = Field(
        description="per job id; null while the job has not finished")
    best: dict[str, list[int]] = Field(
        description="per final metric, the job(s) with the best value (lowest for losses, "
                    "errors and perplexity, highest otherwise)")
    series: dict[str, dict[str, MetricSeries]] = Field(
        description="per job id, its series by name, M4-downsampled as /jobs/{id}/metrics")
    flips: FlipSummary


class FlipRun(BaseModel):
    prediction: Any = Field(description="the task's prediction (label, labels, value, "
                                        "entities or generated text)")
    confidence: float | None = Field(description="null where the task stores none")
    correct: bool


class FlipRow(BaseModel):
    row: int
    text: str = Field(description="the row's input, as one line")
    truth: Any
    label: str = Field(description="the row's class(es), as the per-class table names them")
    runs: dict[str, FlipRun] = Field(description="per job id")


class FlipPage(BaseModel):
    summary: FlipSummary
    items: list[FlipRow]
    total: int
    page: int
    per_page: int
