"""Several jobs at once on one box: before claiming its job, each Celery pool process (one per
GPU, worker/__main__.py) waits here until worker/scheduler.py gives the job GPUs.

The processes of one worker agree through a lock file and a waiting list in the data dir
(TUNEDECK_DATA_DIR/workers/<node>.*), and through the database: the GPUs running jobs hold are
their `devices`, written by the claim under the same lock, so no GPU is given twice. The queue
the scheduler orders is the jobs this worker's processes hold (FIFO by job id; the broker hands
them out in that order); a job that waits keeps its message and is held (lifecycle.hold) so
the sweep does not send it again.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import session_scope, utcnow
from app.jobs import lifecycle
from app.jobs.models import Job, JobStatus
from worker.inventory import Gpu
from worker.scheduler import Box, GpuState, Request, schedule


def _files(settings: Settings, worker_id: str) -> tuple[Path, Path]:
    folder = settings.data_dir / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "@.-_" else "_" for c in worker_id)
    return folder / f"{safe}.lock", folder / f"{safe}.waiting.json"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def request_of(job: Job) -> Request:
    resources = (job.spec or {}).get("resources") or {}
    gpus = resources.get("gpus")
    return Request(job.id, 1 if gpus is None else int(gpus), resources.get("gpu_memory_gb"))


def box_now(worker_id: str, gpus: list[Gpu], running: list[Job], sharing: bool) -> Box:
    """The worker's GPUs with the running jobs on them."""
    states = {g.index: GpuState(g.index, (g.memory_total_mb or 0) / 1024) for g in gpus}
    for job in running:
        request = request_of(job)
        for index in job.gpu_indices:
            if index in states:
                states[index].jobs.append(job.id)
                if sharing and request.memory_gb is not None and request.gpus == 1:
                    states[index].claimed_gb += request.memory_gb
                else:
                    states[index].whole = True
    return Box(worker_id, list(states.values()), cpu_slots=len(gpus) + 1)


def label(indices: tuple[int, ...]) -> str:
    return "cuda:" + ",".join(map(str, indices)) if indices else "cpu"


def acquire(job_id: int, worker_id: str, settings: Settings, gpus: list[Gpu],
            poll: float = 1.0) -> tuple[int, tuple[int, ...]] | None:
    """Wait until the job may start here, then claim it: (attempt, GPU indices), or None
    when it is not claimable (taken, cancelled, gone)."""
    lock, waiting = _files(settings, worker_id)
    held_at = time.monotonic()
    while True:
        with locked(lock):
            outcome = _try(job_id, worker_id, settings, gpus, waiting)
        if outcome != "wait":
            return outcome  # type: ignore[return-value]
        if time.monotonic() - held_at > settings.heartbeat_seconds:
            with session_scope() as session:
                lifecycle.hold(session, job_id, utcnow())
            held_at = time.monotonic()
        time.sleep(poll)


def _try(job_id: int, worker_id: str, settings: Settings, gpus: list[Gpu],
         waiting: Path) -> tuple[int, tuple[int, ...]] | str | None:
    with session_scope() as session:
        seen = _read(waiting)
        seen[job_id] = time.time()
        queued = _waiting_jobs(session, seen)
        seen = {j.id: seen[j.id] for j in queued}
        if job_id not in seen:
            _write(waiting, seen)
            return None
        running = list(session.scalars(select(Job).where(Job.status == JobStatus.running,
                                                         Job.worker_id == worker_id)))
        box = box_now(worker_id, gpus, running, settings.gpu_sharing)
        plan = schedule([request_of(j) for j in queued], [box], settings.gpu_sharing)
        mine = next((a for a in plan.assignments if a.job_id == job_id), None)
        if mine is None:
            _write(waiting, seen)
            return "wait"
        attempt = lifecycle.claim(session, job_id, worker_id, utcnow(), label(mine.gpus))
        _write(waiting, {k: v for k, v in seen.items() if k != job_id})
    return None if attempt is None else (attempt, mine.gpus)


STALE_SECONDS = 30.0  # a waiting process renews its entry every poll; a dead one's goes


def _read(waiting: Path) -> dict[int, float]:
    try:
        entries = json.loads(waiting.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cutoff = time.time() - STALE_SECONDS
    return {int(k): float(v) for k, v in entries.items() if float(v) >= cutoff}


def _waiting_jobs(session: Session, seen: dict[int, float]) -> list[Job]:
    """The still-queued jobs this worker's processes hold, by id."""
    return list(session.scalars(select(Job).where(Job.id.in_(seen),
                                                  Job.status == JobStatus.queued,
                                                  Job.cancel_requested.is_(False))
                                .order_by(Job.id)))


def _write(waiting: Path, seen: dict[int, float]) -> None:
    partial = waiting.with_suffix(".part")
    partial.write_text(json.dumps(seen), encoding="utf-8")
    partial.replace(waiting)
