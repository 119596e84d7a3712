"""P6: submit -> the worker starts the task, with Redis and with the embedded broker.

`tunedeck serve` runs the web app and its embedded Celery worker; jobs are submitted through
POST /api/v1/jobs one after another, each once the previous one has ended and the worker has
its next pool process ready (it runs every job in a fresh one): every submit finds it idle. Each job names a dataset path that does not exist: the worker claims
it (job.started_at) and fails it at once. Latency: started_at - created_at, both written by
tunedeck (UTC, one clock). The embedded broker (kombu's SQLAlchemy transport on SQLite) polls
its table once a second; Redis pushes.

    .venv/bin/python -m benchmarks.submit [--quick]
"""
from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from benchmarks.common import (
    REDIS_URL,
    Row,
    median,
    ms,
    p95,
    quick_main,
    redis_available,
    serving,
    skipped,
    tunedeck_serve,
)

TARGET_S = {"redis": 0.5, "embedded": 2.0}
SPEC = {"name": "p6-fails-fast", "model": "/nonexistent/model",
        "dataset": {"source": "local", "path": "/nonexistent/p6-dataset",
                    "text_fields": ["text"], "label_field": "label"}}


def submit_and_wait(client: httpx.Client, timeout: float = 120) -> float:
    """Seconds from the job's creation to its start by the worker."""
    job_id = client.post("/api/v1/jobs", json=SPEC).raise_for_status().json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("failed", "succeeded", "cancelled"):
            if job["started_at"] is None:
                raise RuntimeError(f"job {job_id} ended without starting: {job['error']}")
            started = datetime.fromisoformat(job["started_at"])
            return (started - datetime.fromisoformat(job["created_at"])).total_seconds()
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not end within {timeout}s")


def pool(serve_pid: int) -> list[psutil.Process]:
    """The worker's pool processes: children of the worker that `tunedeck serve` started,
    forked, so with the worker's own command line (the lease sweep's spawned process and
    multiprocessing's helpers have others)."""
    return [p for worker in psutil.Process(serve_pid).children() for p in worker.children()
            if p.cmdline() == worker.cmdline()]


def wait_idle(serve_pid: int, used: set[int], timeout: float = 10) -> set[int]:
    """Until the worker has replaced the pool processes in `used` (it runs each job in a fresh
    one); returns the pids of the new pool.

    A pool process that ends before Celery has handled its start-up message is only reaped
    by the pool's 5-second maintenance timer; a job submitted in between waits for it. Real
    jobs run long enough not to meet this; a burst of jobs that fail at once does.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = pool(serve_pid)
            if current and all(p.pid not in used and p.status() != psutil.STATUS_ZOMBIE
                               for p in current):
                time.sleep(0.2)  # its start-up message reaches the pool
                return {p.pid for p in current}
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.02)
    raise RuntimeError("the worker did not replace its pool process")


def measure(broker: str, jobs: int) -> Row:
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p6-{broker}-") as tmp:
        data_dir = Path(tmp)
        url = f"sqlite:///{data_dir / 'tunedeck.db'}"
        broker_url = REDIS_URL if broker == "redis" else None
        if broker == "redis":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
        with serving(tunedeck_serve(data_dir, url, broker=broker_url), timeout=120) as server, \
                httpx.Client(base_url=server.url, timeout=30) as client:
            used = wait_idle(server.process.pid, set(), timeout=300)  # the worker is up
            submit_and_wait(client)  # and has run one job
            delays = []
            for _ in range(jobs):
                used = wait_idle(server.process.pid, used)
                delays.append(submit_and_wait(client))
    value = round(p95(delays), 3)
    target = TARGET_S[broker]
    return Row("P6", f"submit -> worker starts the task, {broker} broker: p95 "
               f"(median {median(delays):.2f} s)", value, "s", f"<= {target} s",
               value <= target, {"delays_ms": [ms(d) for d in delays], "jobs": jobs})


def run(quick: bool = False) -> list[Row]:
    jobs = 6 if quick else 12
    rows = []
    if redis_available():
        rows.append(measure("redis", jobs))
    else:
        rows.append(skipped("P6", "submit -> worker starts the task, redis broker",
                            f"Redis not reachable at {REDIS_URL}", "<= 0.5 s"))
    rows.append(measure("embedded", jobs))
    return rows


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
