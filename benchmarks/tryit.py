"""P13: Try it latency while a job trains: POST /api/v1/jobs/{id}/checkpoints/final/predict on
a finished tiny-encoder job, timed at the client, while the training worker runs another job.

`tunedeck serve` (web, training worker and inference worker; SQLite and the embedded broker)
in a child. The tiny BERT of the tests (tests/fixtures.py build_tiny_bert: 2 layers, hidden
32) is built in another child, so this process stays free of torch. Job A, text-classification
on 32 generated rows, runs to the end; job B, the same spec with max_steps 1,000,000 and no
saves, then keeps the training worker busy. One request loads A's `final` into the inference
worker (reported as the cold request); then `requests` requests one after another, each one
sentence (a different one each time): p95 and median of their wall times (target: p95 < 3 s).
The row fails if job B was not training at the end.

    .venv/bin/python -m benchmarks.tryit [--quick]
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import (
    REPO,
    Row,
    child_env,
    median,
    ms,
    p95,
    quick_main,
    serving,
    tunedeck_serve,
)

TARGET_S = 3.0
WORDS = ["good", "great", "bad", "awful", "fine", "boring", "fun", "poor"]


def build_model(path: Path) -> Path:
    code = ("import sys; from pathlib import Path; from tests.fixtures import build_tiny_bert; "
            "build_tiny_bert(Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, env=child_env(),
                   check=True, timeout=300)
    return path


def write_data(root: Path) -> Path:
    from tests.fixtures import sentiment_rows, write_jsonl

    write_jsonl(root / "train.jsonl", sentiment_rows(32, seed=1))
    write_jsonl(root / "validation.jsonl", sentiment_rows(8, seed=2))
    return root


def spec(model: Path, data: Path, **training: object) -> dict:
    return {"name": "p13", "model": str(model), "max_length": 32,
            "dataset": {"source": "local", "path": str(data), "train_split": "train",
                        "eval_split": "validation", "text_fields": ["text"],
                        "label_field": "label"},
            "training": {"num_train_epochs": 2, "learning_rate": 5e-3, "logging_steps": 5,
                         "per_device_train_batch_size": 8, "seed": 7, **training}}


def wait_for(client: httpx.Client, job_id: int, done: tuple[str, ...],
             timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in done and (job["status"] != "running" or job["progress"]["step"]):
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} not {done} after {timeout}s: {job['status']}")


def timed_predict(client: httpx.Client, job_id: int, text: str) -> float:
    started = time.perf_counter()
    response = client.post(f"/api/v1/jobs/{job_id}/checkpoints/final/predict",
                           json={"inputs": [{"text": text}]})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"predict: {response.status_code} {response.text[:300]}")
    return elapsed


def run(quick: bool) -> list[Row]:
    requests = 20 if quick else 60
    with tempfile.TemporaryDirectory(prefix="tunedeck-p13-") as tmp:
        root = Path(tmp)
        model, data = build_model(root / "tiny-bert"), write_data(root / "data")
        (root / "serve").mkdir()
        server = tunedeck_serve(root / "serve", f"sqlite:///{root / 'serve' / 'tunedeck.db'}")
        with serving(server) as live, httpx.Client(base_url=live.url, timeout=60) as client:
            finished = client.post("/api/v1/jobs", json=spec(model, data)).json()["id"]
            job = wait_for(client, finished, ("succeeded", "failed"))
            if job["status"] != "succeeded":
                raise RuntimeError(f"the tiny job failed: {job['error']}")
            busy = client.post("/api/v1/jobs", json=spec(
                model, data, max_steps=1_000_000, save_strategy="no", eval_strategy="no",
                logging_steps=50)).json()["id"]
            wait_for(client, busy, ("running",))
            cold = timed_predict(client, finished, "the movie was good .")
            samples = [timed_predict(client, finished,
                                     f"the plot was very {WORDS[i % len(WORDS)]} .")
                       for i in range(requests)]
            training = client.get(f"/api/v1/jobs/{busy}").json()
            client.post(f"/api/v1/jobs/{busy}/cancel")
    still = training["status"] == "running"
    return [Row("P13", "Try it p95, tiny encoder, a job training beside it",
                ms(p95(samples)), "ms", f"< {TARGET_S * 1000:.0f} ms",
                passed=p95(samples) < TARGET_S and still,
                details={"median_ms": ms(median(samples)), "cold_ms": ms(cold),
                         "requests": requests, "samples_ms": [ms(s) for s in samples],
                         "training_job_running": still,
                         "training_step_at_end": training["progress"]["step"]})]


if __name__ == "__main__":
    quick_main(run, __doc__ or "")
