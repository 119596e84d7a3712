"""The task-agnostic driver of the reference recipe (DESIGN.md): the spec's task recipe
(worker/recipes/) loads the data and builds the model, collator, metrics and Trainer; this module
runs them in run_glue's order and hands back what the runner stores.

No Celery and no database here: progress leaves through the reporter handed in, which the
StreamingCallback feeds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch.distributed as dist
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from worker import data as D
from worker.callbacks import Reporter, StreamingCallback, any_rank
from worker.checkpoints import DiskSpaceCallback
from worker.gpu import resolve_auto, resolve_precision
from worker.model_card import ModelCardCallback, context_of, write_final_cards
from worker.recipes import recipe_for
from worker.recipes.base import prefixed

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    cancelled: bool
    global_step: int
    task: str = "text-classification"  # the shape of the prediction rows
    final_metrics: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    # The saved models, each recorded as a checkpoint named after its directory (`final`,
    # and `final-merged` for a LoRA job); empty when the job was cancelled.
    final_dirs: list[Path] = field(default_factory=list)
    # The step whose model `final` holds: the best checkpoint's with load_best_model_at_end.
    final_step: int = 0
    # Early stopping ended training before max_steps (JobOut.stopped_early's fields).
    stopped_early: dict[str, Any] | None = None

    @property
    def final_dir(self) -> Path | None:
        return self.final_dirs[0] if self.final_dirs else None


def training_arguments(spec: dict, output_dir: Path, has_eval: bool,
                       notes: list[str] | None = None, use_cpu: bool = False) -> TrainingArguments:
    options = dict(spec.get("training") or {})
    if use_cpu:  # `resources.gpus: 0`, or DDP on CPU processes (gloo)
        options["use_cpu"] = True
    if dist.is_initialized() and dist.get_world_size() > 1:
        # transformers multiplies the loss by the process count for models whose forward
        # takes **kwargs, expecting it to be a sum over num_items_in_batch; the encoders'
        # losses are means, so their train and eval curves came out doubled under DDP
        # (measured: 1.39 instead of 0.69 on the tiny BERT). A per-process mean, averaged by
        # DDP, is the plain DDP loss for every task.
        options.setdefault("average_tokens_across_devices", False)
    auto_notes = resolve_auto(options)  # the Fast preset's "auto" values, for this hardware
    if notes is not None:
        notes.extend(auto_notes)
    resolve_precision(bool(options.get("fp16")), bool(options.get("bf16")))
    if not has_eval:
        options["eval_strategy"] = "no"
        if options.get("load_best_model_at_end"):
            raise D.DataError("load_best_model_at_end needs dataset.eval_split")
    return TrainingArguments(output_dir=str(output_dir), report_to="none", disable_tqdm=True,
                             **options)


def train(spec: dict, source: D.Source, job_dir: Path, reporter: Reporter,
          resume_from: str | None = None, use_evaluate: bool = True,
          use_cpu: bool = False) -> Outcome:
    """Run the whole recipe of the spec's task for one job; returns what the runner stores.

    Under torchrun (worker/rank.py) every process runs this; only the first one (rank 0)
    writes model cards, and its reporter is the only one that reports.
    """
    recipe = recipe_for(spec.get("task"))
    data = recipe.load(spec, source)
    hardware: list[str] = []
    args = training_arguments(spec, job_dir / "output", data.eval is not None, hardware,
                              use_cpu)
    set_seed(args.seed)  # before the model is built, as run_glue does: the head init is seeded
    model, notices = recipe.model(spec, data)
    samples_per_step = (args.per_device_train_batch_size * args.gradient_accumulation_steps
                        * max(1, args.world_size))
    reporter.job_fields(label_names=data.label_names, info=notices + hardware,
                        processes=max(1, args.world_size), effective_batch_size=samples_per_step)
    compute_metrics = None  # resolving metrics can try the Hub; a job that never evaluates skips
    if data.eval is not None or data.predict_raw is not None:
        compute_metrics = recipe.compute_metrics(spec, data, use_evaluate)
    main = args.process_index == 0
    agree = partial(any_rank, device=args.device) if args.world_size > 1 else None
    callback = StreamingCallback(reporter, samples_per_step, agree)
    card = context_of(spec, recipe.task, data)
    callbacks: list[TrainerCallback] = [ModelCardCallback(card, reporter.notice), callback,
                                        DiskSpaceCallback(reporter.notice)] if main else [callback]
    if spec.get("early_stopping"):  # on every rank: each sees the same gathered eval metrics
        callbacks.append(EarlyStoppingCallback(
            early_stopping_patience=spec["early_stopping"]["patience"],
            early_stopping_threshold=spec["early_stopping"]["threshold"]))
    trainer = recipe.trainer(model=model, args=args, data=data, spec=spec,
                             collator=recipe.collator(spec, data),
                             compute_metrics=compute_metrics, callbacks=callbacks)
    result = trainer.train(resume_from_checkpoint=resume_from)
    step = trainer.state.global_step
    if callback.cancelled:
        return Outcome(cancelled=True, global_step=step)
    final = {f"train/{k}": float(v) for k, v in result.metrics.items()
             if isinstance(v, int | float)}
    final_step = best_step(trainer) or step  # the loaded best model's step, else the last
    if data.eval is not None:
        final.update(callback.eval_at.get(final_step) or _evaluate(trainer))
    outcome = Outcome(cancelled=False, global_step=step, final_metrics=final, task=recipe.task,
                      final_step=final_step, stopped_early=stopped_early(trainer, spec))
    if data.predict_raw is not None:
        outcome.predictions, predict_metrics = recipe.predict(trainer, spec, data)
        final.update(predict_metrics)
    outcome.final_dirs = recipe.save_final(trainer, job_dir / "final")
    if main:
        write_final_cards(card, outcome.final_dirs, step, final, trainer.state.log_history,
                          reporter.notice)
    return outcome


def best_step(trainer: Trainer) -> int | None:
    """The step of the model Trainer loaded at the end (load_best_model_at_end), if it did."""
    best = trainer.state.best_model_checkpoint
    if not (trainer.args.load_best_model_at_end and best):
        return None
    return int(Path(best).name.rsplit("-", 1)[-1])


def stopped_early(trainer: Trainer, spec: dict) -> dict[str, Any] | None:
    """Where early stopping ended training and which checkpoint `final` holds; None when the
    job ran to max_steps (or has no early stopping)."""
    state = trainer.state
    step = best_step(trainer)
    if not spec.get("early_stopping") or step is None or state.global_step >= state.max_steps:
        return None
    metric = str(trainer.args.metric_for_best_model).removeprefix("eval_")
    return {"step": state.global_step, "best_step": step,
            "best_checkpoint": Path(str(state.best_model_checkpoint)).name,
            "metric": f"eval/{metric}", "best_metric": state.best_metric}


def _evaluate(trainer: Trainer) -> dict[str, float]:
    return prefixed(trainer.evaluate(), "eval")
