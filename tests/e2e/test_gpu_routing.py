"""Jobs reach a box that can run them: a job asking for N GPUs waits in tunedeck.gpusN, which
only workers with at least N GPUs consume (app/jobs/queue.py), and a worker with several GPUs
runs several jobs at once, one pool process each. Real worker processes (`tunedeck worker`)
with fake GPUs (TUNEDECK_FAKE_GPUS: jobs placed on them train on the CPU; a 2-GPU job runs as 2
torchrun processes on gloo), on Redis and PostgreSQL; the API in-process (TestClient).

    PYTHONPATH=$PWD pytest -m slow tests/e2e/test_gpu_routing.py
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.test_faults import finished, job_row, long_spec, loss_points
from tests.e2e.workers import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres,
              pytest.mark.timeout(600)]


def submit(api: TestClient, spec: dict, gpus: int) -> int:
    response = api.post("/api/v1/jobs", json={**spec, "resources": {"gpus": gpus}})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def box(env: dict[str, str], tmp_path, name: str, gpus: int) -> WorkerProcess:
    worker = WorkerProcess({**env, "TUNEDECK_FAKE_GPUS": f"{gpus}x80"}, tmp_path / f"{name}.log",
                           name)
    worker.wait_for_output(f"worker with {gpus} GPU(s) consumes")
    return worker


def test_a_two_gpu_job_waits_for_a_two_gpu_box_which_also_runs_two_jobs_at_once(
        fleet_env, fleet_api, tiny_model, make_dataset, tmp_path):
    env, api = fleet_env, fleet_api
    spec = long_spec(tiny_model, make_dataset(train=64, validation=0))
    spec["training"]["max_steps"] = 30
    # No worker is alive yet, so nothing refuses the 2-GPU job: it waits. The 1-GPU job
    # comes after it; without a queue per GPU count the 1-GPU box would take the 2-GPU job
    # first (FIFO) and fail it.
    two = submit(api, spec, gpus=2)
    one = submit(api, spec, gpus=1)
    workers = [box(env, tmp_path, "small", 1)]
    try:
        assert finished(api, one)["status"] == "succeeded"
        assert job_row(one).worker_id.startswith("small@")
        assert api.get(f"/api/v1/jobs/{two}").json()["status"] == "queued"

        workers.append(box(env, tmp_path, "big", 2))
        assert finished(api, two)["status"] == "succeeded"
        row = job_row(two)
        assert row.worker_id.startswith("big@") and row.devices == "cuda:0,1"
        assert row.processes == 2
        assert [step for step, _ in loss_points(two)] == list(range(1, 31))  # rank 0 alone

        # The big box runs two 1-GPU jobs at once, one pool process and one GPU each.
        workers.pop(0).stop()
        pair = [submit(api, spec, gpus=1) for _ in range(2)]
        done = [finished(api, job_id) for job_id in pair]
        assert [job["status"] for job in done] == ["succeeded", "succeeded"]
        a, b = (job_row(job_id) for job_id in pair)
        assert a.worker_id == b.worker_id == row.worker_id
        assert {a.devices, b.devices} == {"cuda:0", "cuda:1"}
        assert a.started_at < b.finished_at and b.started_at < a.finished_at  # at once
    finally:
        for worker in workers:
            worker.stop()
