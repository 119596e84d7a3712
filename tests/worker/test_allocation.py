"""Several jobs at once on one box, through run_job (what each Celery pool process calls):
worker/allocation.py waits for worker/scheduler.py's GPUs before the claim. The box is two
fake 80 GB GPUs (TUNEDECK_FAKE_GPUS=2x80, jobs train on the CPU), sharing on.

    PYTHONPATH=$PWD pytest -m slow tests/worker/test_allocation.py
"""
from __future__ import annotations

import threading

import pytest

from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job
from tests.fixtures import tiny_spec
from tests.worker.test_runner import submit
from worker.allocation import box_now
from worker.inventory import Gpu
from worker.runner import run_job


def test_running_jobs_fill_the_box_they_hold():
    gpus = [Gpu(0, "0", "g", 81920), Gpu(1, "1", "g", 81920)]
    running = [Job(id=1, spec={"resources": {"gpus": 1, "gpu_memory_gb": 30}}, devices="cuda:1"),
               Job(id=2, spec={"resources": {"gpus": 2}}, devices="cpu x2")]
    box = box_now("w", gpus, running, sharing=True)
    assert [(g.index, g.jobs, g.claimed_gb, g.whole) for g in box.gpus] == [
        (0, [], 0.0, False), (1, [1], 30.0, False)]
    assert Job(devices="cuda:0,3").gpu_indices == [0, 3] and Job(devices="cpu").gpu_indices == []


@pytest.mark.slow
def test_small_jobs_share_a_gpu_and_a_two_gpu_job_waits_for_both(settings_env, monkeypatch,
                                                                 tiny_model, make_dataset):
    monkeypatch.setenv("TUNEDECK_FAKE_GPUS", "2x80")
    monkeypatch.setenv("TUNEDECK_GPU_SHARING", "on")
    get_settings.cache_clear()
    data = make_dataset(train=32, validation=0)

    def spec(**resources) -> dict:
        spec = tiny_spec(tiny_model, data, max_steps=40, eval_strategy="no",
                         save_strategy="no")
        spec["dataset"]["eval_split"] = None
        return {**spec, "resources": resources}

    small = [submit(spec(gpus=1, gpu_memory_gb=30)) for _ in range(2)]
    big = submit(spec(gpus=2))
    results: dict[int, str] = {}
    threads = [threading.Thread(target=lambda j=j: results.update({j: run_job(j, "box@test")}))
               for j in [*small, big]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert results == {j: "succeeded" for j in [*small, big]}
    with session_scope() as session:
        a, b, c = (session.get(Job, j) for j in [*small, big])
    assert (a.devices, b.devices, c.devices) == ("cuda:0", "cuda:0", "cuda:0,1")
    assert a.started_at < b.finished_at and b.started_at < a.finished_at  # at once
    assert c.started_at >= max(a.finished_at, b.finished_at)  # waited for both GPUs
    assert c.processes == 2
