"""Response models for uploaded datasets."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

# The names the worker passes to datasets.load_dataset (tsv is the csv builder with sep="\t").
DatasetFormat = Literal["csv", "tsv", "json", "parquet"]


class LabelSummary(BaseModel):
    column: str
    counts: dict[str, int] = Field(description="value -> rows, most frequent first (top 100)")
    distinct: int = Field(description="number of distinct values, missing included")
    missing: int = Field(description="rows without a value")
    rows_counted: int = Field(description=(
        "rows these counts cover: the first TUNEDECK_MAX_STATS_ROWS rows of a larger file"))


class DatasetOut(BaseModel):
    id: str = Field(description="refer to it in a job spec: dataset.source=upload, path=<id>")
    filename: str
    format: DatasetFormat
    size_bytes: int
    columns: list[str]
    num_rows: int
    preview: list[dict[str, Any]] = Field(description="the first rows, as parsed")
    label: LabelSummary | None = Field(
        default=None, description="value counts of label_column (default: a column named label)"
    )
    created_at: datetime


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total: int
