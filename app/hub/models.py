"""A push of one checkpoint to the Hugging Face Hub: the record of its progress and outcome.

The web writes the row and asks the inference worker (worker/push.py) to run it; the worker
writes the stage, the sizes and the outcome here. The Hub token is never stored: the worker
reads it from TUNEDECK_HF_TOKEN.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
# What the worker is doing (coarse: huggingface_hub's upload_folder has no progress hook).
WAITING, CREATING_REPO, UPLOADING, DONE = "waiting", "creating repo", "uploading", "done"


class HubPush(Base):
    __tablename__ = "hub_pushes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    checkpoint: Mapped[str] = mapped_column(String(200))
    repo_id: Mapped[str] = mapped_column(String(200))
    private: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    stage: Mapped[str] = mapped_column(String(32), default=WAITING)
    # The worker_requests row that carries it (app/inference/service.py).
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    files_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
