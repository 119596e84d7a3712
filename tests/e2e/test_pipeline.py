"""The end-to-end path: REST submit -> a real Celery worker process -> database -> API.

Runs once on the embedded default (SQLite + SQLite broker) and once on Redis + PostgreSQL.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest
import redis
from transformers import AutoModelForSequenceClassification

from tests.fixtures import (
    REDIS_URL,
    LiveServer,
    drop_postgres_database,
    fresh_postgres_database,
    postgres_available,
    redis_available,
    service_missing,
    tiny_spec,
    wait_for_job,
)


def check_full_run(url: str, spec: dict, tmp_path: Path) -> None:
    created = httpx.post(f"{url}/api/v1/jobs", json=spec, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "queued"
    job_id = created.json()["id"]
    job = wait_for_job(url, job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["step"] == job["progress"]["max_steps"] == 8

    series = httpx.get(f"{url}/api/v1/jobs/{job_id}/metrics").json()["series"]
    assert series["train/loss"]["steps"] == list(range(1, 9))
    assert series["eval/accuracy"]["steps"] == [4, 8]
    assert len(series["eval/f1"]["values"]) == 2
    assert {"train/learning_rate", "train/train_runtime",
            "train/train_samples_per_second"} <= set(series)

    checkpoints = httpx.get(f"{url}/api/v1/jobs/{job_id}/checkpoints").json()
    assert [c["name"] for c in checkpoints] == ["checkpoint-4", "checkpoint-8", "final"]
    assert checkpoints[0]["metrics"]["eval/accuracy"] == series["eval/accuracy"]["values"][0]

    predictions = httpx.get(f"{url}/api/v1/jobs/{job_id}/predictions").json()
    assert predictions["total"] == 16
    assert predictions["metrics"]["eval/accuracy"] == series["eval/accuracy"]["values"][-1]

    archive = httpx.get(f"{url}/api/v1/jobs/{job_id}/checkpoints/final/download", timeout=60)
    assert archive.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        tar.extractall(tmp_path / "download", filter="data")
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "download" / f"job-{job_id}-final")
    assert model.config.num_labels == 2


def test_embedded_broker_and_sqlite(live_server, tiny_model, make_dataset, tmp_path):
    check_full_run(live_server.url, tiny_spec(tiny_model, make_dataset()), tmp_path)


def test_missing_column_fails_with_its_name(live_server, tiny_model, make_dataset):
    spec = tiny_spec(tiny_model, make_dataset())
    spec["dataset"]["label_field"] = "sentiment"
    job_id = httpx.post(f"{live_server.url}/api/v1/jobs", json=spec).json()["id"]
    job = wait_for_job(live_server.url, job_id)
    assert job["status"] == "failed"
    assert "'sentiment' not found in the train split" in job["error"]["message"]


@pytest.fixture
def redis_postgres_env(data_dir: Path):
    if not postgres_available():
        service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
    if not redis_available():
        service_missing("Redis is not reachable at 127.0.0.1:6379")
    database = fresh_postgres_database()
    broker = REDIS_URL.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(broker).flushdb()
    yield {"TUNEDECK_DATA_DIR": str(data_dir), "TUNEDECK_DATABASE_URL": database,
           "TUNEDECK_BROKER_URL": broker}
    redis.Redis.from_url(broker).flushdb()
    drop_postgres_database(database)


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_and_postgres(redis_postgres_env, tiny_model, make_dataset, tmp_path):
    server = LiveServer(redis_postgres_env, tmp_path / "serve.log")
    try:
        check_full_run(server.url, tiny_spec(tiny_model, make_dataset()), tmp_path)
    finally:
        server.stop()
