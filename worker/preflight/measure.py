"""Measured pre-flight: ~20 real optimizer steps of a spec, thrown away, timed and weighed.

Runs on the inference worker (HANDLERS["measure"]), one measurement at a time (a lock; a second
request waits for the first), in a temporary directory removed afterwards: no checkpoint, no
job row, nothing left behind. The first WARMUP steps (kernel selection, allocator growth) are
run but not timed. On CUDA it also searches the largest per-device batch that fits on the
longest rows (doubling from the spec's batch up to the effective batch, then one step back
between the last fit and the first out-of-memory) and suggests batch size + gradient
accumulation with the same effective batch. That search only runs on a GPU
(tests/worker/preflight/test_measure.py::test_the_batch_search_on_a_gpu is its CUDA-only test).
"""
from __future__ import annotations

import gc
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from transformers import TrainerCallback, set_seed

from worker import data as D
from worker.bad_input import BadInput
from worker.preflight import confined_spec
from worker.preflight.report import steps as count_steps
from worker.recipes import recipe_for
from worker.recipes.base import TaskData
from worker.runner import source_for
from worker.training import training_arguments

DEFAULT_STEPS = 20
MAX_STEPS = 200
WARMUP = 3
SEARCH_STEPS = 2
_LOCK = threading.Lock()  # one measurement at a time: two would measure each other


class StepClock(TrainerCallback):
    """Wall time at the end of each optimizer step, and the process RSS at each (sub)step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rss_peak = 0
        self._process = psutil.Process()

    def _sample(self) -> None:
        self.rss_peak = max(self.rss_peak, self._process.memory_info().rss)

    def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sample()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._sample()
        self.times.append(time.perf_counter())


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """`{"spec": <job spec>, "steps": 20}` -> speed, memory, ETA (and a batch suggestion)."""
    steps = int(payload.get("steps") or DEFAULT_STEPS)
    if not 1 <= steps <= MAX_STEPS:
        raise BadInput("steps", f"steps must be between 1 and {MAX_STEPS}")
    with _LOCK:
        try:
            return measure(confined_spec(payload["spec"]), steps)
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def measure(spec: dict[str, Any], steps: int) -> dict[str, Any]:
    recipe = recipe_for(spec.get("task"))
    rss_before = psutil.Process().memory_info().rss
    try:
        data = recipe.load(spec, source_for(spec))
    except D.DataError as exc:
        raise BadInput("dataset", str(exc)) from exc
    training = spec.get("training") or {}
    full_rows = len(data.train)
    effective = int(training.get("per_device_train_batch_size", 8)) * int(
        training.get("gradient_accumulation_steps", 1))
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="tunedeck-measure-") as tmp:
        clock, seconds = run_steps(recipe, spec, data, Path(tmp), steps)
        timed = clock.times[WARMUP - 1:] if len(clock.times) >= WARMUP else clock.times
        elapsed = timed[-1] - timed[0] if len(timed) > 1 else seconds
        per_step = elapsed / max(1, len(timed) - 1)
        search = largest_batch(recipe, spec, data, Path(tmp), effective) if cuda else None
    total = count_steps(training, full_rows)["total_steps"]
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "steps": steps, "timed_steps": max(0, len(timed) - 1), "warmup_steps": WARMUP,
        "effective_batch": effective, "seconds_per_step": per_step,
        "samples_per_second": effective / per_step if per_step else None,
        "peak_memory_mb": _peak_mb(clock, rss_before, cuda),
        "memory_kind": "cuda max_memory_allocated" if cuda else "process RSS growth",
        "total_steps": total, "eta_seconds": total * per_step,
        "batch_search": search,
    }


def _peak_mb(clock: StepClock, rss_before: int, cuda: bool) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return max(0, clock.rss_peak - rss_before) / 2**20


def measured_spec(spec: dict[str, Any], steps: int, batch: int | None = None,
                  accumulation: int | None = None) -> dict[str, Any]:
    """The spec's training arguments for a throw-away run of `steps` optimizer steps."""
    training = dict(spec.get("training") or {})
    training.update(max_steps=steps, save_strategy="no", eval_strategy="no",
                    logging_steps=10**6, load_best_model_at_end=False, push_to_hub=False,
                    # no worker processes forked from the inference worker's threads
                    dataloader_num_workers=0)
    if batch is not None:
        training.update(per_device_train_batch_size=batch,
                        gradient_accumulation_steps=accumulation or 1)
    return {**spec, "training": training}


def run_steps(recipe: Any, spec: dict[str, Any], data: TaskData, tmp: Path, steps: int,
              batch: int | None = None, accumulation: int | None = None,
              train: Any = None, warmup: int = WARMUP) -> tuple[StepClock, float]:
    """Train `steps` (+`warmup`) optimizer steps on a fresh model; the clock and seconds."""
    run_spec = measured_spec(spec, steps + warmup, batch, accumulation)
    args = training_arguments(run_spec, tmp / "output", has_eval=False)
    set_seed(args.seed)
    model, _ = recipe.model(run_spec, data)
    clock = StepClock()
    run_data = TaskData(train=train if train is not None else data.train, eval=None,
                        predict_raw=None, predict_split=None, predict_labeled=False,
                        tokenizer=data.tokenizer, label_names=data.label_names,
                        extra=data.extra)
    trainer = recipe.trainer(model=model, args=args, data=run_data, spec=run_spec,
                             collator=recipe.collator(run_spec, run_data),
                             compute_metrics=None, callbacks=[clock])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        trainer.train()
    finally:
        del trainer, model
    return clock, time.perf_counter() - started


# ---------------------------------------------------------------- GPU: the largest batch

def longest_rows(train: Any, n: int) -> Any:
    """The n longest training rows (the worst case for memory)."""
    if "input_ids" in train.column_names:
        sizes = [len(ids) for ids in train["input_ids"]]
    else:  # causal-lm-sft: SFTTrainer tokenizes later; text length stands in
        sizes = [len(str(p)) + len(str(c)) for p, c in zip(train["prompt"], train["completion"],
                                                            strict=True)]
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])[:max(1, n)]
    return train.select(order)


def fits(recipe: Any, spec: dict[str, Any], data: TaskData, tmp: Path, batch: int) -> bool:
    try:
        run_steps(recipe, spec, data, tmp, SEARCH_STEPS, batch, 1,
                  longest_rows(data.train, batch * SEARCH_STEPS), warmup=0)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        gc.collect()
        torch.cuda.empty_cache()


def largest_batch(recipe: Any, spec: dict[str, Any], data: TaskData, tmp: Path,
                  effective: int) -> dict[str, Any]:
    """Doubling from the spec's batch up to the effective batch, then back off once."""
    start = int((spec.get("training") or {}).get("per_device_train_batch_size", 8))
    tried: dict[int, bool] = {}
    best, batch = 0, start
    while batch <= effective:
        tried[batch] = fits(recipe, spec, data, tmp, batch)
        if not tried[batch]:
            break
        best, batch = batch, batch * 2
    if best == 0:  # the spec's own batch does not fit: halve until one does
        batch = start // 2
        while batch >= 1 and not tried.setdefault(batch, fits(recipe, spec, data, tmp, batch)):
            batch //= 2
        best = max(batch, 0)
    elif best * 2 <= effective and (middle := best + best // 2) not in tried:
        tried[middle] = fits(recipe, spec, data, tmp, middle)
        best = middle if tried[middle] else best
    return {"largest_fitting_batch": best or None,
            "tried": [{"batch": b, "fits": ok} for b, ok in sorted(tried.items())],
            **suggestion(best, effective)}


def suggestion(largest: int, effective: int) -> dict[str, Any]:
    """The largest batch <= `largest` that divides the effective batch, and its accumulation."""
    if largest < 1:
        return {"suggested_batch": None, "suggested_accumulation": None}
    batch = max(d for d in range(1, min(largest, effective) + 1) if effective % d == 0)
    return {"suggested_batch": batch, "suggested_accumulation": effective // batch}
