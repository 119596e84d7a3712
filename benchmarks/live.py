"""P3: a metric written by the worker -> the event received by an SSE client.

`tunedeck serve --no-worker` runs in a child process with default settings (the event stream
polls the database every 0.2 s). This process plays the worker: it writes points one at a time
through store.upsert_metric_points, the worker's own write (tiles included), and notes
the time of each commit; a thread reads GET /api/v1/jobs/{id}/events as a browser's
EventSource does and notes when each point's event arrives. On SQLite, and on PostgreSQL when
the server is reachable.

    .venv/bin/python -m benchmarks.live [--quick]
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy.orm import Session

from benchmarks.common import (
    Row,
    Skip,
    database,
    median,
    ms,
    p95,
    quick_main,
    seed_jobs,
    serving,
    skipped,
    tunedeck_serve,
)

TARGET_MS = 1000
WRITE_EVERY_S = 0.05


class EventReader(threading.Thread):
    """Reads the job's event stream; step -> arrival time (epoch seconds) of metric events."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.arrived: dict[int, float] = {}
        self.open = threading.Event()
        self.stop = False

    def run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=None)) as client, \
                client.stream("GET", self.url) as response:
            self.open.set()
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "metric":
                    self.arrived[json.loads(line[6:])["step"]] = time.time()
                if self.stop:
                    return


def write_points(url: str, job_id: int, count: int) -> dict[int, float]:
    """One committed point every WRITE_EVERY_S, as the reporter writes; step -> commit time."""
    from app.db import make_engine
    from app.jobs import store

    engine = make_engine(url)
    written = {}
    for step in range(1, count + 1):
        with Session(engine) as session:
            store.upsert_metric_points(session, [{"job_id": job_id, "name": "train/loss",
                                                       "step": step, "value": 1 / step,
                                                       "epoch": None}])
            session.commit()
        written[step] = time.time()
        time.sleep(WRITE_EVERY_S)
    engine.dispose()
    return written


def measure(kind: str, count: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p3-{kind}-") as tmp, \
            database(kind, Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        job_id = seed_jobs(engine, 1)[0]
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE jobs SET status = 'running' WHERE id = {job_id}")
        engine.dispose()
        with serving(tunedeck_serve(Path(tmp), url, "--no-worker")) as server:
            reader = EventReader(f"{server.url}/api/v1/jobs/{job_id}/events")
            reader.start()
            reader.open.wait(30)
            time.sleep(0.5)
            written = write_points(url, job_id, count)
            deadline = time.monotonic() + 10
            while len(reader.arrived) < count and time.monotonic() < deadline:
                time.sleep(0.05)
            reader.stop = True
    delays = [reader.arrived[s] - t for s, t in written.items() if s in reader.arrived]
    missing = count - len(delays)
    if not delays:
        raise RuntimeError("no metric event arrived")
    value = ms(p95(delays))
    details = {"points": count, "received": len(delays), "p50_ms": ms(median(delays)),
               "max_ms": ms(max(delays)), "sse_poll_seconds": 0.2}
    return [Row("P3", f"metric written -> SSE event received, {kind}: p95 "
                f"(p50 {ms(median(delays)):.0f} ms)", value, "ms", f"<= {TARGET_MS} ms",
                value <= TARGET_MS and not missing, details)]


def run(quick: bool = False) -> list[Row]:
    count = 60 if quick else 200
    rows = []
    for kind in ("sqlite", "postgresql"):
        try:
            rows += measure(kind, count)
        except Skip as exc:
            rows.append(skipped("P3", f"metric written -> SSE event, {kind}", str(exc)))
    return rows


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
