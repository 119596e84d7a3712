"""A sweep request (POST /api/v1/sweeps) and what the API shows of a sweep."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.jobs.early_stopping import LOWER_IS_BETTER
from app.jobs.outputs import Progress, StoppedEarly

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # training.seed


class RangeSpec(BaseModel):
    """Values drawn uniformly from [min, max] (log: uniform in log space; integer: whole)."""

    model_config = ConfigDict(extra="forbid")

    min: float
    max: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RangeSpec:
        if self.min >= self.max:
            raise ValueError("min must be below max")
        if self.log and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self


class SweepIn(BaseModel):
    """A base job spec and the keys to vary: every combination of `grid`, or with `random`,
    that many points drawn from `grid` (one value each) and `ranges`."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    base: dict[str, Any] = Field(description="a job spec (POST /api/v1/jobs) every point starts from")
    grid: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="dotted spec key -> the values to try")
    ranges: dict[str, RangeSpec] = Field(default_factory=dict,
                                         description="dotted spec key -> a range (with random)")
    random: int | None = Field(default=None, ge=1, description="points to draw, not the product")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="for the random draws")
    metric: str = Field(default="eval/loss", min_length=1, max_length=100)
    mode: Literal["min", "max"] | None = Field(default=None, description="default: min for "
                                               "loss, mse, mae, perplexity; max otherwise")

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            _check_key(key)
            if not values:
                raise ValueError(f"{key}: give at least one value")
        return grid

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, RangeSpec]) -> dict[str, RangeSpec]:
        for key in ranges:
            _check_key(key)
        return ranges

    @field_validator("metric")
    @classmethod
    def _metric(cls, metric: str) -> str:
        """`accuracy` and `eval_accuracy` mean the series eval/accuracy."""
        if "/" in metric:
            return metric
        return "eval/" + metric.removeprefix("eval_")

    @model_validator(mode="after")
    def _shape(self) -> SweepIn:
        if not self.grid and not self.ranges:
            raise ValueError("give a grid (or ranges with random): nothing to sweep")
        if self.ranges and self.random is None:
            raise ValueError("ranges are sampled: set random to the number of points")
        both = sorted(set(self.grid) & set(self.ranges))
        if both:
            raise ValueError(f"{', '.join(both)}: in both grid and ranges")
        if self.mode is None:
            self.mode = "min" if self.metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"
        return self


def _check_key(key: str) -> None:
    if not KEY.match(key) or len(key) > 200:
        raise ValueError(f"{key!r} is not a dotted spec key like training.learning_rate")


class SweepCreated(BaseModel):
    id: int
    jobs: list[int]


class SweepJobOut(BaseModel):
    id: int
    name: str
    status: str
    values: dict[str, Any]  # this job's point
    metric: float | None  # the sweep's metric: final when finished, else the latest logged
    progress: Progress
    stopped_early: StoppedEarly | None = None


class SweepOut(BaseModel):
    id: int
    name: str
    metric: str
    mode: str
    grid: dict[str, list[Any]]
    ranges: dict[str, Any] | None
    random: int | None
    created_at: datetime
    counts: dict[str, int]  # jobs by status
    finished: bool  # every job has ended
    best_job_id: int | None
    jobs: list[SweepJobOut]  # best first; jobs without the metric yet last, by id
