"""The sweep row; its jobs point at it through jobs.sweep_id (app/jobs/models.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)  # the job spec every point starts from
    grid: Mapped[dict[str, list[Any]]] = mapped_column(JSON)  # dotted key -> values
    ranges: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # dotted key -> {min, max, log}
    random: Mapped[int | None] = mapped_column(Integer)  # samples drawn instead of the product
    seed: Mapped[int | None] = mapped_column(BigInteger)  # of the random draws
    metric: Mapped[str] = mapped_column(String(100))  # a series name, e.g. eval/accuracy
    mode: Mapped[str] = mapped_column(String(3))  # max | min
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
