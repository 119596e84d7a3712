"""The inference transport end to end: the web's ask() -> the broker -> a real
`tunedeck worker --inference` process -> the request row -> the answer (app/inference/service.py,
worker/inference.py). Run: pytest tests/app/inference/test_service.py
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from app.errors import Invalid, Unavailable
from app.inference import service
from app.inference.models import FAILED
from tests.e2e.workers import WorkerProcess


@pytest.fixture
def inference_worker(settings_env, tmp_path: Path):
    worker = WorkerProcess(settings_env, tmp_path / "inference.log", "inference", "--inference")
    worker.wait_for_output("ready", timeout=90)
    yield worker
    worker.stop()


def test_a_request_is_answered_by_the_inference_worker(inference_worker, client):
    answer = service.ask("ping", {"echo": "hello"}, timeout=30)
    assert answer["pong"] is True
    assert answer["echo"] == "hello"
    assert answer["pid"] == inference_worker.process.pid  # `tunedeck worker` execs in place
    # Warm: the second answer comes through the same running process, well within a second.
    started = time.monotonic()
    again = service.ask("ping", {"echo": 2}, timeout=30)
    assert again["pid"] == answer["pid"]
    assert time.monotonic() - started < 5


def test_a_bad_request_names_its_field(inference_worker, client):
    with pytest.raises(Invalid) as caught:
        service.ask("no-such-kind", {}, timeout=30)
    assert caught.value.field == "kind"
    assert "no-such-kind" in caught.value.message


def test_without_an_inference_worker_the_web_says_what_to_start(settings_env, tmp_path):
    with pytest.raises(Unavailable, match="tunedeck worker --inference"):
        service.ask("ping", {}, timeout=0.5)
    row = service.status(1)
    assert row.status == FAILED and "no answer" in (row.error or "")
    # A worker that starts later skips the request the web gave up on.
    worker = WorkerProcess(settings_env, tmp_path / "late.log", "late", "--inference")
    try:
        worker.wait_for_output("ready", timeout=90)
        assert service.ask("ping", {"echo": "late"}, timeout=30)["echo"] == "late"
        assert service.status(1).status == FAILED
    finally:
        worker.stop()
