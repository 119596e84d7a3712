"""POST /api/v1/preflight and /preflight/measure through a real `tunedeck worker --inference`
(app/preflight/, worker/preflight/). Run: pytest tests/app/preflight/test_api.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.e2e.workers import WorkerProcess
from tests.fixtures import reset_caches, tiny_spec


@pytest.fixture
def inference_worker(settings_env, tmp_path: Path):
    worker = WorkerProcess(settings_env, tmp_path / "inference.log", "inference", "--inference")
    worker.wait_for_output("ready", timeout=90)
    yield worker
    worker.stop()


def test_the_report_and_a_bad_column(inference_worker, client, tiny_model, make_dataset):
    spec = tiny_spec(tiny_model, make_dataset(train=40, validation=10))
    answer = client.post("/api/v1/preflight", json=spec)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert [(s["role"], s["rows"]) for s in report["splits"]] == [("train", 40), ("eval", 10)]
    assert report["splits"][0]["labels"]["counts"] == {"0": 20, "1": 20}
    assert report["steps"]["steps_per_epoch"] == 5  # 40 rows, batch 8
    assert report["timing"]["rows"] == 50

    spec["dataset"]["text_fields"] = ["review"]
    bad = client.post("/api/v1/preflight", json=spec)
    assert bad.status_code == 422
    error = bad.json()["detail"][0]
    assert error["loc"] == ["body", "dataset", "text_fields", "0"]
    assert "'review' not found" in error["msg"]


def test_a_spec_the_schema_refuses_is_a_422_before_any_worker(client, tiny_model, tmp_path):
    spec = tiny_spec(tiny_model, tmp_path)
    spec["training"]["per_device_train_batch_size"] = 0
    answer = client.post("/api/v1/preflight", json=spec)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == [
        "body", "training", "per_device_train_batch_size"]
    spec = tiny_spec(tiny_model, tmp_path)
    spec["dataset"].update(source="upload", path="no-such-upload")
    answer = client.post("/api/v1/preflight", json=spec)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "dataset", "path"]


def test_without_an_inference_worker_it_is_a_503(settings_env, monkeypatch, tiny_model,
                                                 make_dataset):
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("TUNEDECK_PREFLIGHT_TIMEOUT_SECONDS", "0.5")
    reset_caches()
    with TestClient(create_app()) as client:
        answer = client.post("/api/v1/preflight",
                             json=tiny_spec(tiny_model, make_dataset(train=8)))
    assert answer.status_code == 503
    assert "tunedeck worker --inference" in answer.json()["detail"]


@pytest.mark.slow
def test_a_measured_run_leaves_nothing_behind(inference_worker, client, tiny_model,
                                              make_dataset):
    before = set(Path(tempfile.gettempdir()).glob("tunedeck-measure-*"))
    spec = tiny_spec(tiny_model, make_dataset(train=40, validation=8))
    answer = client.post("/api/v1/preflight/measure", params={"steps": 4}, json=spec)
    assert answer.status_code == 200, answer.text
    measured = answer.json()
    assert measured["device"] == "cpu" and measured["batch_search"] is None
    assert measured["timed_steps"] == 4
    assert measured["samples_per_second"] > 0
    assert measured["memory_kind"] == "process RSS growth" and measured["peak_memory_mb"] >= 0
    # 40 rows, batch 8, 2 epochs: 10 steps at the measured pace
    assert measured["total_steps"] == 10
    assert measured["eta_seconds"] == pytest.approx(10 * measured["seconds_per_step"])
    assert set(Path(tempfile.gettempdir()).glob("tunedeck-measure-*")) == before
    assert client.post("/api/v1/preflight/measure", params={"steps": 0},
                       json=spec).status_code == 422
