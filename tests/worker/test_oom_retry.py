"""OOM self-healing on CPU: a real tiny-model job whose training raises the exception a CUDA
out-of-memory raises (torch.OutOfMemoryError) from a TrainerCallback at a chosen step.

The real out-of-memory on a GPU is not exercised here (no GPU on the machine these run on)."""
from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository, series
from app.jobs.models import Job
from tests.fixtures import tiny_spec
from tests.worker.test_runner import submit
from worker.failures import OOM_HINT
from worker.recipes import base
from worker.runner import run_job


class OutOfMemoryAt(TrainerCallback):
    """Raises CUDA's out-of-memory error at `step` while the batch is larger than `fits`."""

    def __init__(self, step: int, fits: int) -> None:
        self.step, self.fits = step, fits

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and args.per_device_train_batch_size > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")


@pytest.fixture
def oom_at(monkeypatch):
    """Every Trainer the recipe builds gets the fault callback."""

    def install(step: int, fits: int) -> None:
        class FaultyTrainer(Trainer):
            def __init__(self, *args, **kwargs):
                kwargs["callbacks"] = [*(kwargs.get("callbacks") or []),
                                       OutOfMemoryAt(step, fits)]
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(base, "Trainer", FaultyTrainer)

    return install


def spec(model, data, **training_args) -> dict:
    return tiny_spec(model, data, save_strategy="steps", save_steps=2, **training_args)


def test_an_oom_halves_the_batch_and_resumes_until_it_fits(settings_env, tiny_model,
                                                            make_dataset, oom_at, client):
    oom_at(step=3, fits=2)  # batch 8 and 4 run out of memory at step 3; batch 2 fits
    job_id = submit(spec(tiny_model, make_dataset(train=32, validation=16)))
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.global_step == 8 and job.attempts == 3
        assert job.spec["training"]["per_device_train_batch_size"] == 2
        assert job.spec["training"]["gradient_accumulation_steps"] == 4
        rows = [(a.number, a.outcome, a.resumed_from, a.message)
                for a in repository.attempts(session, job_id)]
        curves = series.metric_series(session, job_id).series
    assert rows[0][:3] == (1, "oom", None) and rows[0][3].startswith("OutOfMemoryError: CUDA")
    assert rows[1:] == [
        (2, "oom", "checkpoint-2", "batch 8 -> 4, accumulation 1 -> 2 after CUDA OOM; then "
                                   "OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                   "20.00 MiB"),
        (3, "succeeded", "checkpoint-2", "batch 4 -> 2, accumulation 2 -> 4 after CUDA OOM")]
    # One continuous curve: every step once, the resumed attempts counting on from step 2.
    assert curves["train/loss"].steps == list(range(1, 9))
    assert curves["eval/accuracy"].steps == [4, 8]
    page = client.get(f"/jobs/{job_id}").text
    assert "attempt 3 (from checkpoint-2): succeeded: batch 4 -&gt; 2, accumulation 2 -&gt; 4 " \
           "after CUDA OOM" in page


def test_an_oom_at_batch_size_one_fails_with_the_hint(settings_env, tiny_model, make_dataset,
                                                     oom_at):
    oom_at(step=3, fits=0)
    job_id = submit(spec(tiny_model, make_dataset(train=32, validation=16),
                         per_device_train_batch_size=2))
    assert run_job(job_id) == "failed"
    with session_scope() as session:
        job = session.get(Job, job_id)
        outcomes = [(a.outcome, a.message) for a in repository.attempts(session, job_id)]
    assert job.attempts == 2 and job.spec["training"]["per_device_train_batch_size"] == 1
    assert job.error_type == "OutOfMemoryError" and job.error_hint == OOM_HINT
    assert outcomes == [("oom", "OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                "20.00 MiB"),
                        ("failed", "batch 2 -> 1, accumulation 1 -> 2 after CUDA OOM; then "
                                   "OutOfMemoryError: CUDA out of memory. Tried to allocate "
                                   "20.00 MiB")]


@pytest.mark.parametrize("off", ["spec", "setting"])
def test_retry_can_be_turned_off(settings_env, tiny_model, make_dataset, oom_at, off):
    oom_at(step=3, fits=2)
    extra = {"on_oom": "fail"} if off == "spec" else {}
    job_id = submit({**spec(tiny_model, make_dataset(train=32, validation=16)), **extra})
    settings = get_settings()
    if off == "setting":
        settings = settings.model_copy(update={"oom_retry": False})
    assert run_job(job_id, settings=settings) == "failed"
    with session_scope() as session:
        job = session.get(Job, job_id)
    assert job.attempts == 1 and job.error_hint == OOM_HINT
    assert job.spec["training"]["per_device_train_batch_size"] == 8
