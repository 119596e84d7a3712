"""Resume after a killed worker, and cancel, for each encoder task: real Celery workers on
SQLite, a tiny BERT, the task's generated data (test_faults.py does the same for
text-classification on both backends)."""
from __future__ import annotations

import pytest

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


@pytest.mark.parametrize("task", sorted(TASKS))
def test_each_task_resumes_after_a_killed_worker_and_cancels(sqlite_env, api, tiny_model,  # noqa: F811
                                                             tmp_path, task):
    spec = task_spec(task, tiny_model, tmp_path / "data")
    job_id = api.post("/api/v1/jobs", json=spec).json()["id"]
    output = get_settings().job_dir(job_id) / "output"
    workers = {name: WorkerProcess(sqlite_env, tmp_path / f"{name}.log", name)
               for name in ("w1", "w2")}
    try:
        wait_until(lambda: job_row(job_id).global_step >= 12 and latest_checkpoint(output),
                   180, "training past step 12 with a checkpoint")
        victim = job_row(job_id).worker_id.split("@")[0]
        workers.pop(victim).kill()
        resume_step = checkpoint_step(latest_checkpoint(output))
        job = finished(api, job_id, timeout=300)

        cancel_id = api.post("/api/v1/jobs", json=spec).json()["id"]
        cancel_output = get_settings().job_dir(cancel_id) / "output"
        wait_until(lambda: job_row(cancel_id).global_step >= 10
                   and latest_checkpoint(cancel_output), 180, "the second job past step 10")
        assert api.post(f"/api/v1/jobs/{cancel_id}/cancel").json()["cancel_requested"]
        cancelled = finished(api, cancel_id)
    finally:
        for worker in workers.values():
            worker.stop()

    assert job["status"] == "succeeded", job["error"]
    assert job["progress"]["step"] == MAX_STEPS and job["attempts"] == 2
    attempts = api.get(f"/api/v1/jobs/{job_id}/attempts").json()
    assert [a["outcome"] for a in attempts] == ["lost", "succeeded"]
    assert attempts[1]["resumed_from"] == f"checkpoint-{resume_step}"
    assert [s for s, _ in loss_points(job_id)] == list(range(1, MAX_STEPS + 1))
    assert duplicate_points(job_id) == 0
    page = api.get(f"/api/v1/jobs/{job_id}/predictions").json()
    assert page["task"] == task and page["total"] == 8
    assert TASKS[task][2] in page["items"][0]

    assert cancelled["status"] == "cancelled" and MAX_STEPS > cancelled["progress"]["step"] >= 10
    names = [c["name"] for c in api.get(f"/api/v1/jobs/{cancel_id}/checkpoints").json()]
    assert "final" not in names and latest_checkpoint(cancel_output).name in names
    assert api.get(f"/api/v1/jobs/{cancel_id}/predictions").json()["total"] == 0
