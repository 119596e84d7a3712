"""One row per worker: its GPUs as it last saw them, renewed with its heartbeat."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Worker(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the Celery node name
    # [{index, name, memory_total_mb, memory_used_mb, utilization}], CUDA numbering
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    ddp_cpu: Mapped[bool] = mapped_column(Boolean, default=False)  # TUNEDECK_DDP_CPU
    gpu_sharing: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, index=True)
