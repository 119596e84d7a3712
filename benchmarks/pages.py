"""Dashboard pages: server times with 10,000 jobs and a 1,000,000-point run, and the delay from
a metric written to the database (as the worker's reporter does) to it being drawn on the page.

    .venv/bin/python -m benchmarks.pages
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import make_engine
from app.jobs import store
from app.jobs.models import Job, MetricPoint
from app.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
JOBS = 10_000
TRAIN_STEPS = 333_000          # x3 train series + 3 eval series every 1000 steps = 999,999 points
TRAIN_SERIES = ("train/loss", "train/learning_rate", "train/grad_norm")
EVAL_SERIES = ("eval/loss", "eval/accuracy", "eval/f1")
REQUESTS = 30
LATENCY_POINTS = 100
WRITE_EVERY_S = 0.1
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SPEC = {"name": None, "task": "text-classification", "model": "bert-base-uncased",
        "dataset": {"source": "hub", "path": "glue", "config": "mrpc", "train_split": "train",
                    "eval_split": "validation", "test_split": None,
                    "text_fields": ["sentence1", "sentence2"], "label_field": "label"},
        "max_length": 128, "metrics": ["accuracy", "f1"], "training": {"num_train_epochs": 3}}


# ---------------------------------------------------------------- data

def seed_jobs(engine: Engine, count: int) -> int:
    """`count` jobs in every state; returns the id of the last one (kept running)."""
    statuses = ["succeeded"] * 6 + ["failed", "cancelled", "queued", "running"]
    spec = json.dumps(SPEC)
    rows = [(f"bert-mrpc-{i}", statuses[i % len(statuses)], spec, i * 37 % 1000, 1000,
             i % 3 + 0.5, 123.4, 600.0, json.dumps({"train/loss": 0.3, "eval/accuracy": 0.84}),
             "[]", 0, 0) for i in range(count)]
    rows[-1] = (*rows[-1][:1], "running", *rows[-1][2:])
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO jobs (name, status, spec, global_step, max_steps, epoch, "
            "samples_per_second, eta_seconds, latest_metrics, info, cancel_requested, attempts, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)", rows)
        return conn.exec_driver_sql("SELECT max(id) FROM jobs").scalar_one()


def seed_points(engine: Engine, job_id: int) -> int:
    def rows() -> Iterator[tuple]:
        for step in range(1, TRAIN_STEPS + 1):
            loss = 0.7 * 0.99999 ** step + 0.05 * ((step * 7919) % 97) / 97
            lr = 2e-5 * (1 - step / TRAIN_STEPS)
            yield from ((job_id, TRAIN_SERIES[0], step, loss), (job_id, TRAIN_SERIES[1], step, lr),
                        (job_id, TRAIN_SERIES[2], step, 1 + (step % 13) / 13))
            if step % 1000 == 0:
                yield from ((job_id, name, step, 0.5 + step / TRAIN_STEPS / 3)
                            for name in EVAL_SERIES)

    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO metric_points (job_id, name, step, value, created_at) "
            "VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP)", list(rows()))
    with Session(engine) as session:  # the summaries the worker's writes keep up to date
        store.refresh_metric_tiles(session, job_id, 0, TRAIN_STEPS)
        session.commit()
        return session.scalar(select(func.count()).where(MetricPoint.job_id == job_id))


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def web_server(settings: Settings) -> Iterator[str]:
    """`tunedeck serve --no-worker`: this process plays the worker by writing rows."""
    port = free_port()
    data_dir = settings.data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEDECK_")}
    # Explicit values win over a .env file in the working directory.
    env.update(TUNEDECK_DATA_DIR=str(data_dir), TUNEDECK_DATABASE_URL=settings.db_url,
               TUNEDECK_API_TOKENS="")
    log = open(data_dir / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-worker", "--port", str(port),
         "--log-level", "warning"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("tunedeck serve exited during start-up")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("tunedeck serve did not become ready")


# ---------------------------------------------------------------- measures

def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def time_get(client: httpx.Client, path: str, check: Callable[[httpx.Response], bool]) -> list:
    client.get(path)  # warm caches
    samples = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200 or not check(response):
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
    return samples


def server_times(url: str, job_id: int) -> list[dict]:
    pages = -(-JOBS // 25)
    cases = [
        ("job list page 1 (HTML), ms p95", "/jobs", 200, lambda r: "bert-mrpc" in r.text),
        (f"job list page {pages} (HTML), ms p95", f"/jobs?page={pages}", 200,
         lambda r: "bert-mrpc-0<" in r.text),
        ("job list rows partial (2 s poll), ms p95", "/jobs/table", 200,
         lambda r: "<html" not in r.text),
        ("job page with 1M points (HTML), ms p95", f"/jobs/{job_id}", 200,
         lambda r: "sse-connect" in r.text),
        ("job chart history, 1M points -> M4 (JSON), ms p95",
         f"/api/v1/jobs/{job_id}/metrics?max_points=2000", 300,
         lambda r: all(len(s["steps"]) <= 2000 for s in r.json()["series"].values())),
    ]
    results = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for measure, path, target, check in cases:
            value = p95(time_get(client, path, check))
            results.append(result(measure, value, target))
    return results


def result(measure: str, value: float, target: float) -> dict:
    return {"measure": measure, "value": round(value, 1), "target": f"< {target}",
            "passed": value < target}


def draw_latency(url: str, engine: Engine, job_id: int) -> list[dict]:
    """Write points one by one like the worker and read when the page drew each one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/jobs/{job_id}")
            page.wait_for_function("document.getElementById('chart').dataset.loaded === 'true'",
                                   timeout=30_000)
            page.wait_for_timeout(500)  # the stream is open and has replayed nothing new
            written = write_points(engine, job_id)
            page.wait_for_function(
                f"window.tunedeck.drawLog.filter(p => p.step > {TRAIN_STEPS}).length >= "
                f"{len(written)}", timeout=30_000)
            drawn = page.evaluate(f"window.tunedeck.drawLog.filter(p => p.step > {TRAIN_STEPS})")
        finally:
            browser.close()
    delays = [d["drawnAt"] - written[d["step"]] for d in drawn if d["step"] in written]
    return [result("metric written -> drawn in the page, ms p95", p95(delays), 1000),
            result("metric written -> drawn in the page, ms p50", statistics.median(delays),
                   1000)]


def write_points(engine: Engine, job_id: int) -> dict[int, float]:
    """One committed point every WRITE_EVERY_S; returns step -> commit time (epoch ms)."""
    written = {}
    for i in range(1, LATENCY_POINTS + 1):
        step = TRAIN_STEPS + i
        with Session(engine) as session:  # as the worker's reporter writes a flush
            store.upsert_metric_points(session, [
                {"job_id": job_id, "name": "train/loss", "step": step, "value": 0.1,
                 "epoch": None}])
            session.get(Job, job_id).global_step = step
            session.commit()
        written[step] = time.time() * 1000
        time.sleep(WRITE_EVERY_S)
    return written


# ---------------------------------------------------------------- entry points

def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="tunedeck-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url=None)
        upgrade(settings.db_url)
        engine = make_engine(settings.db_url)
        job_id = seed_jobs(engine, JOBS)
        points = seed_points(engine, job_id)
        with web_server(settings) as url:
            results = server_times(url, job_id) + draw_latency(url, engine, job_id)
        engine.dispose()
    for row in results:
        row["measure"] = row["measure"].replace("1M", f"{points / 1e6:.1f}M")
    return results


def print_table(results: list[dict]) -> None:
    width = max(len(r["measure"]) for r in results)
    print(f"{'measure':<{width}}  {'value':>9}  {'target':>8}  passed")
    for r in results:
        print(f"{r['measure']:<{width}}  {r['value']:>9}  {r['target']:>8}  {r['passed']}")


if __name__ == "__main__":
    rows = run()
    print_table(rows)
    sys.exit(0 if all(r["passed"] for r in rows) else 1)
