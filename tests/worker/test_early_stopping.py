"""Early stopping on a real tiny-model training: the job stops before max_steps, says where,
and `final` holds the best checkpoint's model."""
from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository, service
from app.jobs.models import Job
from tests.fixtures import tiny_spec
from tests.worker.test_runner import submit
from worker.runner import run_job


def test_a_job_that_stops_improving_stops_early_and_keeps_its_best_checkpoint(
        settings_env, tiny_model, make_dataset):
    # An eval every 2 steps. The threshold is larger than any change of the eval loss, so no
    # eval after the first counts as an improvement: with patience 2, training stops at the
    # third eval (step 6), long before max_steps (40).
    spec = tiny_spec(tiny_model, make_dataset(train=64, validation=16), max_steps=40,
                     eval_strategy="steps", save_strategy="steps", eval_steps=2,
                     num_train_epochs=10)
    spec["early_stopping"] = {"patience": 2, "threshold": 100.0}
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        out = service.to_out(job)
        checkpoints = {c.name: c for c in repository.checkpoints(session, job_id)}
    stopped = out.stopped_early
    assert stopped is not None and stopped.step == 6 == out.progress.step
    assert out.progress.max_steps == 40
    assert stopped.metric == "eval/loss"
    # Trainer's own best (no threshold): the lowest eval loss of steps 2, 4, 6.
    losses = {step: checkpoints[f"checkpoint-{step}"].metrics["eval/loss"] for step in (2, 4, 6)}
    assert stopped.best_step == min(losses, key=losses.__getitem__)
    assert stopped.best_checkpoint == f"checkpoint-{stopped.best_step}"
    assert stopped.best_metric == losses[stopped.best_step]
    # final is the best checkpoint: the same weights, its step and its eval metrics.
    final = checkpoints["final"]
    assert final.step == stopped.best_step
    assert final.metrics["eval/loss"] == losses[stopped.best_step]
    assert out.final_metrics["eval/loss"] == losses[stopped.best_step]
    data_dir = Path(get_settings().data_dir)
    best = load_file(data_dir / checkpoints[stopped.best_checkpoint].path / "model.safetensors")
    kept = load_file(data_dir / final.path / "model.safetensors")
    assert best.keys() == kept.keys()
    assert all((best[name] == kept[name]).all() for name in best)
