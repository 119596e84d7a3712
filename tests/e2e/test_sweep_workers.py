"""A sweep's jobs are ordinary jobs: one worker runs them one after another, two run them at
the same time, and cancelling the sweep stops the running ones. Real worker processes on Redis
and PostgreSQL; the API in-process (TestClient)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.e2e.test_faults import finished, long_spec, wait_until
from tests.e2e.workers import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres,
              pytest.mark.timeout(400)]


def sweep(api: TestClient, tiny_model, dataset, max_steps: int) -> list[int]:
    spec = long_spec(tiny_model, dataset)
    spec["training"]["max_steps"] = max_steps
    r = api.post("/api/v1/sweeps", json={"base": spec, "grid": {"training.seed": [1, 2]}})
    assert r.status_code == 201, r.text
    return r.json()["jobs"]


def running(api: TestClient, job_ids: list[int]) -> list[str]:
    return [api.get(f"/api/v1/jobs/{i}").json()["status"] for i in job_ids]


def test_one_worker_runs_a_sweep_in_turn_two_in_parallel_and_cancel_stops_both(
        fleet_env, fleet_api, tiny_model, make_dataset, tmp_path):
    env, api = fleet_env, fleet_api
    dataset = make_dataset(train=64, validation=0)
    workers = [WorkerProcess(env, tmp_path / "w1.log", "w1")]
    try:
        first, second = sweep(api, tiny_model, dataset, max_steps=20)
        a, b = finished(api, first), finished(api, second)
        assert a["status"] == b["status"] == "succeeded"
        assert b["started_at"] >= a["finished_at"]  # one worker: one after another

        workers.append(WorkerProcess(env, tmp_path / "w2.log", "w2"))
        jobs = sweep(api, tiny_model, dataset, max_steps=2000)
        wait_until(lambda: running(api, jobs) == ["running", "running"], 120,
                   "both jobs of the sweep running at once")
        sweep_id = api.get(f"/api/v1/jobs/{jobs[0]}").json()["sweep_id"]
        cancelled = api.post(f"/api/v1/sweeps/{sweep_id}/cancel")
        assert cancelled.status_code == 200
        ends = [finished(api, i) for i in jobs]
    finally:
        for worker in workers:
            worker.stop()
    assert [e["status"] for e in ends] == ["cancelled", "cancelled"]
    assert all(e["progress"]["step"] < 2000 for e in ends)
    hosts = {api.get(f"/api/v1/jobs/{i}/attempts").json()[0]["worker_id"].split("@")[0]
             for i in jobs}
    assert hosts == {"w1", "w2"}
