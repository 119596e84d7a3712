"""Server-sent events for one job: status, progress and metric events, resumable by id."""
from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread

from app.db import session_scope
from app.jobs import repository
from app.jobs.models import JobStatus
from app.jobs.service import progress_of

BATCH = 2000
KEEPALIVE_SECONDS = 15.0


def json_safe(value: Any) -> Any:
    """NaN and infinities (a diverged loss) become null: bare NaN is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def format_event(event: str, data: Any, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {json.dumps(json_safe(data), separators=(',', ':'), default=str, allow_nan=False)}")
    return "\n".join(lines) + "\n\n"


def _poll(job_id: int, cursor: int) -> tuple[dict | None, list[dict]]:
    """One read: the job's snapshot and the metric points after the cursor."""
    with session_scope() as session:
        job = repository.get_job(session, job_id)
        if job is None:
            return None, []
        points = repository.metric_points_after_id(session, job_id, cursor, BATCH)
        snapshot = {
            "status": job.status,
            "progress": progress_of(job).model_dump(mode="json"),
            "latest_metrics": job.latest_metrics or {},
            "error": job.error_message,
            "gpu_peak_memory_mb": job.gpu_peak_memory_mb,
            "gpu_utilization": job.gpu_utilization,
        }
        rows = [{"id": p.id, "name": p.name, "step": p.step, "value": p.value,
                 "epoch": p.epoch} for p in points]
        return snapshot, rows


async def job_events(job_id: int, cursor: int, poll_seconds: float) -> AsyncIterator[str]:
    """Replays metric points after `cursor`, then follows the job until it ends."""
    last_status = last_progress = None
    idle = 0.0
    yield "retry: 2000\n\n"
    while True:
        snapshot, points = await to_thread.run_sync(_poll, job_id, cursor)
        if snapshot is None:
            yield format_event("end", {"reason": "job deleted"}, cursor)
            return
        for point in points:
            cursor = point["id"]
            yield format_event("metric", point, cursor)
        if snapshot["status"] != last_status:
            last_status = snapshot["status"]
            yield format_event("status", snapshot, cursor)
        elif snapshot["progress"] != last_progress:
            yield format_event("progress", snapshot, cursor)
        last_progress = snapshot["progress"]
        if len(points) == BATCH:
            continue
        if JobStatus(last_status).finished:
            yield format_event("end", {"status": last_status}, cursor)
            return
        await asyncio.sleep(poll_seconds)
        idle = 0.0 if points else idle + poll_seconds
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield ": keepalive\n\n"
