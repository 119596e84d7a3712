"""P9: many watchers on one job: delivery, /healthz, web CPU, and the training beside them.

Two measures, each against a real `tunedeck serve` in a child process on SQLite:

- 200 watchers: `tunedeck serve --no-worker` (TUNEDECK_MAX_STREAMS=256); a running job; 200
  streams on GET /api/v1/jobs/{id}/events from this process (one asyncio client); this
  process plays the worker and commits 200 points one at a time (every 0.05 s, with progress)
  through store.upsert_metric_points, then ends the job. Every stream must get every
  point once, in id order, and its `end`. /healthz is timed every 0.05 s throughout; the web
  CPU is the serve process's user + system CPU seconds from the first stream opened to the
  last closed, divided by the watchers.
- Training beside watchers: `tunedeck serve` with its embedded worker (torch on one thread,
  OMP_NUM_THREADS=1, so the web process has the other core as on the 2-core box of the issue)
  trains all-MiniLM-L6-v2 on the first MRPC train rows (1 epoch, batch 16, max_length 128,
  logging every step); the run is repeated with 50 watchers on the job and with none, in
  ABBA order; the value is the median ratio of training samples/s (the Trainer's
  train_samples_per_second) with 50 watchers to without, over the adjacent pairs.

    .venv/bin/python -m benchmarks.watchers [--quick]
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy.orm import Session

from benchmarks.common import (
    Row,
    Server,
    database,
    median,
    minilm_dir,
    mrpc_dir,
    ms,
    p95,
    quick_main,
    seed_jobs,
    serving,
    tunedeck_serve,
)

WATCHERS = 200
TRAIN_WATCHERS = 50
HEALTHZ_TARGET_MS = 100
RATIO_TARGET = 0.95


# ---------------------------------------------------------------- watchers

async def watch(client: httpx.AsyncClient, url: str, opened: list) -> dict[str, Any]:
    """One stream: the metric ids it received, in order, and whether its `end` came."""
    ids: list[int] = []
    ended = False
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return {"status": response.status_code, "ids": ids, "ended": False}
        opened.append(time.monotonic())
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "metric":
                    ids.append(json.loads(line[6:])["id"])
                elif event == "end":
                    ended = True
    return {"status": 200, "ids": ids, "ended": ended}


async def drain(client: httpx.AsyncClient, url: str, opened: list) -> None:
    """A watcher that reads its stream as a browser would, without checking it."""
    async with client.stream("GET", url) as response:
        opened.append(time.monotonic())
        async for _ in response.aiter_raw():
            pass


def time_healthz(url: str, stop: threading.Event, samples: list[float]) -> None:
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get(url + "/healthz").raise_for_status()
            samples.append(time.perf_counter() - started)
            time.sleep(0.05)


def write_points(url: str, job_id: int, count: int, every: float) -> list[int]:
    """Commits one point (and the job's progress) every `every` seconds; returns the ids."""
    from sqlalchemy import select, update

    from app.db import make_engine
    from app.jobs import store
    from app.jobs.models import Job, MetricPoint

    engine = make_engine(url)
    for step in range(1, count + 1):
        with Session(engine) as session:
            store.upsert_metric_points(session, [{"job_id": job_id, "name": "train/loss",
                                                       "step": step, "value": 1 / step,
                                                       "epoch": None}])
            session.execute(update(Job).where(Job.id == job_id).values(global_step=step,
                                                                       max_steps=count))
            session.commit()
        time.sleep(every)
    with Session(engine) as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))
        session.commit()
        ids = session.scalars(select(MetricPoint.id).where(MetricPoint.job_id == job_id)
                              .order_by(MetricPoint.id)).all()
    engine.dispose()
    return list(ids)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_watchers(watchers: int, points: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tunedeck-p9-") as tmp, \
            database("sqlite", Path(tmp)) as url:
        from app.db import make_engine

        engine = make_engine(url)
        job_id = seed_jobs(engine, 1)[0]
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE jobs SET status = 'running' WHERE id = {job_id}")
        engine.dispose()
        server = tunedeck_serve(Path(tmp), url, "--no-worker",
                                env_extra={"TUNEDECK_MAX_STREAMS": str(watchers + 56)})
        health: list[float] = []
        stop = threading.Event()
        with serving(server):
            timer = threading.Thread(target=time_healthz, args=(server.url, stop, health))
            timer.start()
            results, cpu, written = asyncio.run(_watch_and_write(
                server, f"{server.url}/api/v1/jobs/{job_id}/events", url, job_id, watchers,
                points))
            time.sleep(1)
            stop.set()
            timer.join()
            log = server.log_path.read_text()
    delivered = sum(r["ids"] == written and r["ended"] for r in results)
    errors = [r["status"] for r in results if r["status"] != 200]
    value = ms(p95(health))
    details = {"watchers": watchers, "points": points, "delivered_exactly": delivered,
               "refused": errors, "healthz_samples": len(health),
               "healthz_p50_ms": ms(median(health)), "healthz_max_ms": ms(max(health)),
               "web_cpu_seconds": round(cpu, 2), "pool_exhausted": "QueuePool" in log}
    return [
        Row("P9", f"{watchers} watchers on one job: streams that got every point once, in order",
            delivered, "", f"= {watchers}", delivered == watchers, details),
        Row("P9", f"{watchers} watchers: /healthz p95", value, "ms",
            f"< {HEALTHZ_TARGET_MS} ms", value < HEALTHZ_TARGET_MS and not details[
                "pool_exhausted"], details),
        Row("P9", f"{watchers} watchers: web CPU per watcher ({points} points, "
            f"{cpu:.1f} s in all)", round(cpu / watchers * 1000, 1), "ms", "reported",
            None, details),
    ]


async def _watch_and_write(server: Server, url: str, db_url: str, job_id: int, watchers: int,
                           points: int) -> tuple[list[dict], float, list[int]]:
    limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=limits) as client:
        opened: list = []
        cpu_before = cpu_seconds(server.process.pid)
        tasks = [asyncio.create_task(watch(client, url, opened)) for _ in range(watchers)]
        deadline = time.monotonic() + 60
        while len(opened) < watchers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        written = await asyncio.to_thread(write_points, db_url, job_id, points, 0.05)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        cpu = cpu_seconds(server.process.pid) - cpu_before
    return results, cpu, written


# ---------------------------------------------------------------- training beside watchers

def train_spec(model: Path, data: Path) -> dict[str, Any]:
    return {"name": "p9-minilm-mrpc", "model": str(model),
            "dataset": {"source": "local", "path": str(data), "train_split": "train",
                        "eval_split": "validation", "text_fields": ["sentence1", "sentence2"],
                        "label_field": "label"},
            "max_length": 128, "metrics": ["accuracy"],
            "training": {"num_train_epochs": 1, "learning_rate": 1e-4,
                         "per_device_train_batch_size": 16, "eval_strategy": "no",
                         "save_strategy": "no", "logging_steps": 1, "seed": 42}}


def train_once(server: Server, spec: dict, watchers: int) -> float:
    """Submits the job, watches it with `watchers` streams until it ends; its samples/s."""
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api:
        job_id = api.post("/jobs", json=spec).raise_for_status().json()["id"]

        async def watch_all() -> None:
            limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
                opened: list = []
                url = f"{server.url}/api/v1/jobs/{job_id}/events"
                await asyncio.gather(*(drain(client, url, opened) for _ in range(watchers)))

        reader = threading.Thread(target=lambda: asyncio.run(watch_all()), daemon=True)
        if watchers:
            reader.start()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            job = api.get(f"/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
        if job["status"] != "succeeded":
            raise RuntimeError(f"training job {job_id} {job['status']}: {job.get('error')}")
        if watchers:
            reader.join(30)
        metrics = api.get(f"/jobs/{job_id}/metrics",
                          params={"name": "train/train_samples_per_second"}).json()
    series = metrics["series"]["train/train_samples_per_second"]
    return float(series["values"][-1])


def measure_training(pairs: int, train_rows: int) -> list[Row]:
    from benchmarks.plain_recipe import subset_files

    model, data = minilm_dir(), mrpc_dir()
    with tempfile.TemporaryDirectory(prefix="tunedeck-p9-train-") as tmp, \
            database("sqlite", Path(tmp)) as url:
        subset_files(data, Path(tmp) / "data", train_rows, 32)
        spec = train_spec(model, Path(tmp) / "data")
        server = tunedeck_serve(Path(tmp), url, env_extra={"OMP_NUM_THREADS": "1"})
        samples: dict[int, list[float]] = {0: [], TRAIN_WATCHERS: []}
        with serving(server):
            train_once(server, spec, 0)  # warm-up: caches, first imports; not counted
            order = [0, TRAIN_WATCHERS, TRAIN_WATCHERS, 0] * ((pairs + 1) // 2)
            for watchers in order[:2 * pairs]:
                samples[watchers].append(train_once(server, spec, watchers))
    ratios = [w / n for n, w in zip(samples[0], samples[TRAIN_WATCHERS], strict=True)]
    value = round(median(ratios), 3)
    details = {"samples_per_second": samples, "ratios": ratios, "train_rows": train_rows,
               "torch_threads": 1}
    return [Row("P9", f"training samples/s with {TRAIN_WATCHERS} watchers / with none "
                f"(MiniLM, MRPC {train_rows} rows)", value, "",
                f">= {RATIO_TARGET}", value >= RATIO_TARGET, details)]


def run(quick: bool = False) -> list[Row]:
    rows = measure_watchers(WATCHERS, 100 if quick else 200)
    rows += measure_training(1 if quick else 2, 128 if quick else 192)
    return rows


def main() -> None:
    quick_main(run, __doc__)


if __name__ == "__main__":
    main()
