"""The submit's check of a job's resources against the workers alive now."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.errors import Invalid
from app.jobs.queue import gpus_asked, most_gpus
from app.workers import repository
from app.workers.models import Worker


def alive(session: Session, settings: Settings) -> list[Worker]:
    """Workers whose heartbeat is younger than the lease timeout."""
    since = utcnow() - timedelta(seconds=settings.lease_timeout_seconds)
    return repository.alive(session, since)


def capacity(worker: Worker) -> int:
    """The most GPUs one job may ask of this worker, as the tunedeck.gpusN queues it consumes
    (app/jobs/queue.py worker_queues) say."""
    return most_gpus(len(worker.gpus), worker.ddp_cpu)


def check_resources(session: Session, resources: dict[str, Any], settings: Settings) -> None:
    """Invalid (422) when no worker alive now could ever run the job; with no worker alive,
    nothing can be said and the job waits in the queue."""
    workers = alive(session, settings)
    gpus, memory = resources.get("gpus"), resources.get("gpu_memory_gb")
    if not workers:
        return
    if gpus:
        most = max(capacity(w) for w in workers)
        if gpus > most:
            raise Invalid("resources.gpus", f"asks for {gpus} GPUs on one worker; the "
                                            f"largest has {most} ({_counts(workers)})")
    if any(w.ddp_cpu for w in workers):
        return  # CPU processes stand in for GPUs there: no memory to compare
    largest = max((g.get("memory_total_mb") or 0 for w in workers for g in w.gpus), default=0)
    if memory and largest and memory * 1024 > largest:
        raise Invalid("resources.gpu_memory_gb", f"asks for {memory:g} GB; the largest GPU "
                                                 f"of the workers alive has {largest / 1024:.1f} GB")


def waiting_for(session: Session, spec: dict[str, Any] | None,
                settings: Settings) -> str | None:
    """Why a queued job asking for N GPUs does not start: no live worker has N (it waits in
    tunedeck.gpusN for one that has, app/jobs/queue.py); None when one has, or none is alive
    (submitted before any worker advertised, the job could not be refused then)."""
    gpus = gpus_asked(spec)
    workers = alive(session, settings) if gpus else []
    most = max((capacity(w) for w in workers), default=0)
    if not workers or gpus <= most:
        return None
    return (f"Waits for a worker with {gpus} GPUs: the live workers have at most {most} "
            f"({_counts(workers)}).")


def _counts(workers: list[Worker]) -> str:
    return ", ".join(f"{w.id}: {capacity(w)}" for w in workers)


def gpu_rows(session: Session, settings: Settings) -> list[dict[str, Any]]:
    """The GPUs page: per live worker, each GPU with the running jobs that hold it."""
    workers = alive(session, settings)
    running = repository.running_on(session, [w.id for w in workers])
    rows = []
    for worker in workers:
        jobs = [j for j in running if j.worker_id == worker.id]
        gpus = [{**gpu, "jobs": [j for j in jobs if gpu["index"] in j.gpu_indices]}
                for gpu in worker.gpus]
        cpu_jobs = [j for j in jobs if not j.gpu_indices]
        rows.append({"worker": worker, "gpus": gpus, "cpu_jobs": cpu_jobs})
    return rows

