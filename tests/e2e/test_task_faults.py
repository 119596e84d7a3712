"""Resume after a killed worker, and cancel, for each new task: real Celery workers on SQLite,
the task's generated data, a tiny BERT for the encoder tasks and a tiny random Llama with LoRA
for causal-lm-sft (test_faults.py does the same for text-classification on both backends)."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import get_settings
from tests.e2e.test_faults import (  # noqa: F401 - fixtures
    MAX_STEPS,
    api,
    duplicate_points,
    finished,
    job_row,
    long_spec,
    loss_points,
    sqlite_env,
    wait_until,
)
from tests.e2e.workers import WorkerProcess
from tests.fixtures import write_jsonl
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import addition
from worker.runner import checkpoint_step, latest_checkpoint

pytestmark = pytest.mark.slow  # ~1-2 minutes per task on a 2-core box

TASKS = {
    "multi-label-classification": (multi_label_rows, {"label_field": "labels"}, "labels"),
    "text-regression": (regression_rows, {"label_field": "score"}, "error"),
    "token-classification": (ner_rows, {"tokens_field": "tokens", "tags_field": "ner_tags"},
                             "entities"),
}


def task_spec(task: str, tiny_model, root) -> dict:
    rows_of, fields, _ = TASKS[task]
    write_jsonl(root / "train.jsonl", rows_of(64, seed=1))
    write_jsonl(root / "test.jsonl", rows_of(8, seed=2))
    spec = long_spec(tiny_model, root)
    spec["task"] = task
    spec["dataset"]["test_split"] = "test"
    if task == "token-classification":
        del spec["dataset"]["text_fields"], spec["dataset"]["label_field"]
    spec["dataset"].update(fields)
    return spec


def kill_resume_cancel(client: TestClient, env: dict[str, str], spec: dict, tmp_path: Path,
                       reference: bool = False) -> dict:
    """Two workers: the one running the job is SIGKILLed past step 12 and the other resumes
    it; then a second job of the spec is cancelled past step 10; with `reference`, a third
    runs unbroken. The finished jobs (and the step resumed from), by role."""
    job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
    output = get_settings().job_dir(job_id) / "output"
    workers = {name: WorkerProcess(env, tmp_path / f"{name}.log", name)
               for name in ("w1", "w2")}
    try:
        wait_until(lambda: job_row(job_id).global_step >= 12 and latest_checkpoint(output),
                   180, "training past step 12 with a checkpoint")
        worker_id = job_row(job_id).worker_id
        assert worker_id is not None
        victim = worker_id.split("@")[0]
        workers.pop(victim).kill()
        resumed_from = latest_checkpoint(output)
        job = finished(client, job_id, timeout=300)

        cancel_id = client.post("/api/v1/jobs", json=spec).json()["id"]
        cancel_output = get_settings().job_dir(cancel_id) / "output"
        wait_until(lambda: job_row(cancel_id).global_step >= 10
                   and latest_checkpoint(cancel_output), 180, "the second job past step 10")
        assert client.post(f"/api/v1/jobs/{cancel_id}/cancel").json()["cancel_requested"]
        jobs = {"resumed": job, "cancelled": finished(client, cancel_id),
                "resumed_from": resumed_from, "cancel_output": cancel_output}
        if reference:
            reference_id = client.post("/api/v1/jobs", json=spec).json()["id"]
            jobs["reference"] = finished(client, reference_id, timeout=300)
    finally:
        for worker in workers.values():
            worker.stop()
    return jobs


def check_resumed_and_cancelled(client: TestClient, jobs: dict, task: str, field: str) -> None:
    job, cancelled = jobs["resumed"], jobs["cancelled"]
    job_id, cancel_id = job["id"], cancelled["id"]
    resume_step = checkpoint_step(jobs["resumed_from"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["step"] == MAX_STEPS and job["attempts"] == 2
    attempts = client.get(f"/api/v1/jobs/{job_id}/attempts").json()
    assert [a["outcome"] for a in attempts] == ["lost", "succeeded"]
    assert attempts[1]["resumed_from"] == f"checkpoint-{resume_step}"
    assert [s for s, _ in loss_points(job_id)] == list(range(1, MAX_STEPS + 1))
    assert duplicate_points(job_id) == 0
    page = client.get(f"/api/v1/jobs/{job_id}/predictions").json()
    assert page["task"] == task and page["total"] == 8
    assert field in page["items"][0]

    assert cancelled["status"] == "cancelled" and MAX_STEPS > cancelled["progress"]["step"] >= 10
    names = [c["name"] for c in client.get(f"/api/v1/jobs/{cancel_id}/checkpoints").json()]
    last = latest_checkpoint(jobs["cancel_output"])
    assert "final" not in names and last is not None and last.name in names
    assert client.get(f"/api/v1/jobs/{cancel_id}/predictions").json()["total"] == 0


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_resumes_after_a_killed_worker_and_cancels(sqlite_env, api, tiny_model,  # noqa: F811
                                                             tmp_path, task):
    spec = task_spec(task, tiny_model, tmp_path / "data")
    jobs = kill_resume_cancel(api, sqlite_env, spec, tmp_path)
    check_resumed_and_cancelled(api, jobs, task, TASKS[task][2])


def sft_spec(tiny_llama: Path, root: Path) -> dict:
    """long_spec's schedule (100 steps, a checkpoint every 5, a loss point every step) on
    prompt/completion rows, LoRA without dropout (so an unbroken run is the reference)."""
    pairs = [(a, b) for a in range(9) for b in range(8)]
    write_jsonl(root / "train.jsonl", [addition(a, b, chat=False) for a, b in pairs[:64]])
    write_jsonl(root / "test.jsonl", [addition(a, b, chat=False) for a, b in pairs[64:]])
    spec = long_spec(tiny_llama, root, learning_rate=1e-2)
    spec.update(task="causal-lm-sft", max_length=64, generation={"max_new_tokens": 4},
                lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})
    spec["dataset"] = {"source": "local", "path": str(root), "train_split": "train",
                       "test_split": "test", "prompt_field": "question",
                       "completion_field": "answer"}
    return spec


def losses(client: TestClient, job_id: int) -> dict[int, float]:
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "train/loss"}).json()
    points = series["series"]["train/loss"]
    return dict(zip(points["steps"], points["values"], strict=True))


def test_a_lora_sft_job_resumes_its_adapter_after_a_killed_worker_and_cancels(
        sqlite_env, api, tiny_llama, tmp_path):  # noqa: F811
    jobs = kill_resume_cancel(api, sqlite_env, sft_spec(tiny_llama, tmp_path / "data"),
                              tmp_path, reference=True)
    check_resumed_and_cancelled(api, jobs, "causal-lm-sft", "generated")
    checkpoint = jobs["resumed_from"]
    # what the second attempt resumed from is an adapter checkpoint, not a full model
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not list(checkpoint.glob("model*.safetensors"))
    job_id, reference = jobs["resumed"]["id"], jobs["reference"]
    names = [c["name"] for c in api.get(f"/api/v1/jobs/{job_id}/checkpoints").json()]
    assert "final" in names and "final-merged" in names
    # The resumed attempt trained on from the adapter's weights: every loss after the
    # checkpoint is the unbroken run's. Restarting from the base model would repeat the curve's
    # start instead, which is far from its value at the checkpoint.
    resume_step = checkpoint_step(checkpoint)
    assert reference["status"] == "succeeded", reference["error"]
    ours, unbroken = losses(api, job_id), losses(api, reference["id"])
    assert abs(unbroken[resume_step + 1] - unbroken[1]) > 0.1
    after = range(resume_step + 1, MAX_STEPS + 1)
    assert [ours[s] for s in after] == pytest.approx([unbroken[s] for s in after], rel=1e-4)
    assert ours[1] == pytest.approx(unbroken[1], rel=1e-4)
