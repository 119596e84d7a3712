"""One job on two processes through torchrun: DDP on CPU with gloo (TUNEDECK_DDP_CPU maps
`resources: {gpus: 2}` to two CPU processes), through run_job, the code path the Celery task
calls: text-classification on the tiny BERT of tests/fixtures.py (in the default suite), the
other encoder tasks and causal-lm-sft (LoRA, tiny Llama of tests/causal_lm.py) marked slow.

    PYTHONPATH=$PWD pytest tests/worker/test_distributed.py
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository, series, service
from app.jobs.models import Job, Prediction
from tests.fixtures import tiny_spec
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import make_data, sft_spec
from tests.worker.recipes.test_recipes import spec_for as spec_for_task
from tests.worker.recipes.test_recipes import write_splits
from tests.worker.test_runner import submit
from worker.distributed import notes_dir
from worker.runner import run_job


@pytest.fixture
def ddp_cpu(settings_env, monkeypatch):
    monkeypatch.setenv("TUNEDECK_DDP_CPU", "1")
    get_settings.cache_clear()


def spec_for(model: Path, data: Path, **training) -> dict:
    spec = tiny_spec(model, data, **{"save_strategy": "steps", "save_steps": 2, **training})
    spec["resources"] = {"gpus": 2}
    return spec


def notes(job_id: int, attempt: int) -> dict[int, dict]:
    folder = notes_dir(get_settings(), job_id, attempt)
    return {int(p.stem.split("-")[1]): json.loads(p.read_text())
            for p in folder.glob("rank-*.json")}


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def run_in_thread(job_id: int) -> tuple[threading.Thread, list[str]]:
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(run_job(job_id)), daemon=True)
    thread.start()
    return thread, result


def wait_until(check, timeout: float = 240, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_processes_train_one_job_and_rank_zero_reports(ddp_cpu, tiny_model, make_dataset,
                                                           client):
    job_id = submit(spec_for(tiny_model, make_dataset(train=32, validation=16)))
    assert run_job(job_id) == "succeeded"
    job = job_row(job_id)
    # 32 rows / (8 per process x 2 processes) = 2 steps an epoch, 2 epochs.
    assert (job.global_step, job.processes, job.devices) == (4, 2, "cpu x2")
    assert job.effective_batch_size == 16
    with session_scope() as session:
        curves = series.metric_series(session, job_id).series
        names = [c.name for c in repository.checkpoints(session, job_id)]
        predicted = session.scalar(select(func.count(Prediction.id))
                                   .where(Prediction.job_id == job_id))
    assert curves["train/loss"].steps == [1, 2, 3, 4]  # one curve, each step once
    assert curves["eval/accuracy"].steps == [2, 4]
    assert names == ["checkpoint-2", "checkpoint-4", "final"]
    assert predicted == 16  # the eval split's rows, each once (gathered from both ranks)
    assert {rank: note["state"] for rank, note in notes(job_id, 1).items()} == {0: "ok", 1: "ok"}
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    assert (body["processes"], body["effective_batch_size"], body["devices"]) == (2, 16, "cpu x2")
    page = client.get(f"/jobs/{job_id}").text
    effective = page.split('id="effective-batch"')[1].split("</div>")[0]
    assert 'id="devices"' in page and "cpu x2" in page and "16" in effective
    assert "(8 x 2 x 1)" in effective
    assert '<span class="devices">cpu x2</span>' in client.get("/jobs/table").text


@pytest.mark.slow
def test_a_cancel_stops_both_ranks_at_the_same_step(ddp_cpu, tiny_model, make_dataset):
    job_id = submit(spec_for(tiny_model, make_dataset(train=32, validation=16), max_steps=400,
                             save_steps=1000))
    thread, result = run_in_thread(job_id)
    wait_until(lambda: job_row(job_id).global_step >= 3, what="step 3")
    with session_scope() as session:
        service.cancel_job(session, session.get(Job, job_id))
    thread.join(240)
    assert result == ["cancelled"]
    job = job_row(job_id)
    assert job.status == "cancelled" and 3 <= job.global_step < 400
    # Both ranks left the training loop and ended normally: a rank that missed the cancel
    # would have waited in its next all_reduce until torchrun killed it.
    assert {r: n["state"] for r, n in notes(job_id, 1).items()} == {0: "ok", 1: "ok"}


@pytest.mark.slow
def test_a_killed_rank_restarts_the_job_from_its_last_checkpoint(ddp_cpu, tiny_model,
                                                                 make_dataset):
    job_id = submit(spec_for(tiny_model, make_dataset(train=32, validation=16), max_steps=60,
                             eval_strategy="no", save_steps=4))
    spec_path = notes_dir(get_settings(), job_id, 1) / "rank-1.pid"
    thread, result = run_in_thread(job_id)
    wait_until(lambda: job_row(job_id).global_step >= 6 and spec_path.exists(), what="step 6")
    os.kill(int(spec_path.read_text()), signal.SIGKILL)
    thread.join(240)
    assert result == ["queued"]  # requeued at once, as the sweep requeues a lost attempt
    assert run_job(job_id) == "succeeded"  # the next delivery resumes it
    with session_scope() as session:
        attempts = [(a.number, a.outcome, a.resumed_from)
                    for a in repository.attempts(session, job_id)]
        curve = series.metric_series(session, job_id).series["train/loss"]
        message = repository.attempts(session, job_id)[0].message
    resumed = attempts[1][2]
    assert attempts == [(1, "lost", None), (2, "succeeded", resumed)] and resumed
    assert "rank(s) [1] of 2 died" in message
    assert curve.steps == list(range(1, 61))  # one curve, the restart counting on


def other_task_spec(task: str, model: Path, root: Path) -> dict:
    if task == "causal-lm-sft":
        return sft_spec(model, make_data(root), per_device_train_batch_size=4)
    rows_of = {"multi-label-classification": multi_label_rows,
               "text-regression": regression_rows, "token-classification": ner_rows}[task]
    fields = {"multi-label-classification": {"label_field": "labels"},
              "text-regression": {"label_field": "score"}}.get(task, {})
    return spec_for_task(task, model, write_splits(root, rows_of, train=32), **fields)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi-label-classification", "text-regression",
                                  "token-classification", "causal-lm-sft"])
def test_every_other_task_trains_on_two_processes(ddp_cpu, task, tiny_model, tiny_llama,
                                                  tmp_path):
    spec = other_task_spec(task, tiny_llama if task == "causal-lm-sft" else tiny_model,
                           tmp_path / "data")
    job_id = submit({**spec, "resources": {"gpus": 2}})
    assert run_job(job_id) == "succeeded", job_row(job_id).error_message
    job = job_row(job_id)
    with session_scope() as session:
        rows = session.scalar(select(func.count(Prediction.id))
                              .where(Prediction.job_id == job_id))
        steps = series.metric_series(session, job_id).series["train/loss"].steps
    assert (job.processes, job.devices) == (2, "cpu x2")
    predicted = 4 if task == "causal-lm-sft" else 8  # the predict split, each row once
    assert rows == predicted and steps == sorted(set(steps)) and job.global_step >= 1
