"""The submit refuses resources no live worker could give (422 naming the field), from the
inventory workers advertise (app/workers/); with no live worker the job just waits."""
from __future__ import annotations

from datetime import timedelta

from app.db import session_scope, utcnow
from app.workers import store
from tests.app.factories import SPEC, make_job

A100 = {"index": 0, "name": "A100", "memory_total_mb": 81920, "memory_used_mb": 0,
        "utilization": 0.0}


def advertise(worker_id: str, gpus: int, *, ddp_cpu: bool = False, age: float = 0) -> None:
    with session_scope() as session:
        store.advertise(session, worker_id, [{**A100, "index": i} for i in range(gpus)],
                             ddp_cpu, False, utcnow() - timedelta(seconds=age))


def submit(client, **resources):
    return client.post("/api/v1/jobs", json={**SPEC, "resources": resources})


def test_more_gpus_than_any_live_worker_has_is_a_422_with_the_reason(client):
    advertise("gpu-box@a", 4)
    advertise("small@b", 1)
    response = submit(client, gpus=8)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "resources", "gpus"]
    assert error["msg"] == ("asks for 8 GPUs on one worker; the largest has 4 (gpu-box@a: 4, "
                            "small@b: 1)")
    assert submit(client, gpus=4).status_code == 201


def test_more_memory_than_the_largest_gpu_is_a_422(client):
    advertise("gpu-box@a", 1)
    response = submit(client, gpus=1, gpu_memory_gb=100)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "resources", "gpu_memory_gb"]
    assert submit(client, gpus=1, gpu_memory_gb=20).status_code == 201


def test_stale_workers_and_no_workers_refuse_nothing(client):
    assert submit(client, gpus=8).status_code == 201  # no worker yet: it waits
    advertise("gone@a", 1, age=3600)
    assert submit(client, gpus=8).status_code == 201


def test_a_ddp_cpu_worker_runs_up_to_eight_cpu_processes(client):
    advertise("laptop@a", 0, ddp_cpu=True)
    assert submit(client, gpus=8).status_code == 201
    [error] = submit(client, gpus=9).json()["detail"]
    assert error["msg"] == "asks for 9 GPUs on one worker; the largest has 8 (laptop@a: 8)"


def test_resources_are_validated_and_echoed(client):
    response = submit(client, gpus=-1)
    assert response.status_code == 422 and "resources" in str(response.json()["detail"])
    body = submit(client, gpus=0).json()
    assert body["spec"]["resources"] == {"gpus": 0, "gpu_memory_gb": None}
    assert client.post("/api/v1/jobs", json=SPEC).json()["spec"]["resources"] == {
        "gpus": None, "gpu_memory_gb": None}


def test_the_gpus_page_lists_each_workers_gpus_and_the_jobs_on_them(client):
    advertise("box@a", 2)
    advertise("laptop@b", 0)
    job = make_job("running", name="big-one", worker_id="box@a", devices="cuda:1")
    page = client.get("/gpus").text
    assert "box@a" in page and "laptop@b" in page and "No GPU" in page
    row = page.split('data-gpu="1"')[1].split("</tr>")[0]
    assert f'href="/jobs/{job}"' in row and "big-one" in row and "0 / 80 GB" in row
    assert "free" in page.split('data-gpu="0"')[1].split("</tr>")[0]


def test_a_queued_job_no_live_worker_can_run_says_what_it_waits_for(client):
    job = submit(client, gpus=2).json()["id"]  # no worker alive yet: accepted
    assert 'id="job-waiting"' not in client.get(f"/jobs/{job}").text
    advertise("small@a", 1)
    advertise("laptop@b", 0)
    notice = client.get(f"/jobs/{job}/status").text.split('id="job-waiting">')[1]
    assert notice.startswith("Waits for a worker with 2 GPUs: the live workers have at most 1 "
                             "(laptop@b: 0, small@a: 1).")
    advertise("box@c", 2)
    assert 'id="job-waiting"' not in client.get(f"/jobs/{job}").text
