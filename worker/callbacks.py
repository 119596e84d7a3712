"""The TrainerCallback that streams progress, metrics and checkpoints to a reporter.

Every hook only hands values to the reporter (an in-memory append); the reporter's own
thread writes them to the database, so training never waits on I/O.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

# Keys Trainer logs that are not metrics of their own.
_SKIP = {"epoch", "total_flos", "step"}


class Reporter(Protocol):
    def progress(self, step: int, max_steps: int, epoch: float | None,
                 samples_per_second: float | None, eta_seconds: float | None) -> None: ...

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None: ...

    def checkpoint(self, name: str, step: int, path: str, metrics: dict[str, float]) -> None: ...

    def notice(self, text: str) -> None: ...

    def job_fields(self, **fields: Any) -> None: ...

    @property
    def cancel_requested(self) -> bool: ...


def metric_name(key: str) -> str:
    """Trainer's log keys to series names: eval_loss -> eval/loss, loss -> train/loss."""
    for prefix in ("eval", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


def metric_values(logs: dict) -> dict[str, float]:
    """The series values in one Trainer log (an on_log call, or a trainer_state log_history
    entry: both hold the same dict)."""
    return {metric_name(k): float(v) for k, v in logs.items()
            if k not in _SKIP and _finite(v)}


def _finite(value: object) -> bool:
    """Numbers only, and no NaN/inf (a diverged grad_norm): a chart cannot draw them and a
    NOT NULL float column cannot hold them on every database."""
    return isinstance(value, int | float) and math.isfinite(value)


def any_rank(flag: bool, device: Any) -> bool:
    """True on every process when `flag` is true on any: one all_reduce of one number, so
    each rank of a torchrun job stops at the same step (a rank that stopped alone would leave
    the others waiting in their next collective for ever)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class StreamingCallback(TrainerCallback):
    def __init__(self, reporter: Reporter, samples_per_step: int,
                 agree: Callable[[bool], bool] | None = None):
        self.reporter = reporter
        # Under torchrun: the whole group's answer to "stop now?" (any_rank); rank 0's
        # reporter is the one that reads the cancel flag.
        self.agree = agree
        self.samples_per_step = samples_per_step
        self.eval_at: dict[int, dict[str, float]] = {}
        self._window: list[tuple[float, int]] = []
        self.cancelled = False

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs) -> None:
        self._window = [(time.monotonic(), state.global_step)]
        self._report_progress(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs) -> None:
        self._window.append((time.monotonic(), state.global_step))
        del self._window[:-50]
        self._report_progress(state)
        stop = self.reporter.cancel_requested
        if self.agree is not None:
            stop = self.agree(stop)
        if stop:
            self.cancelled = True
            control.should_training_stop = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs) -> None:
        values = metric_values(logs or {})
        if values:
            self.reporter.metrics(state.global_step, state.epoch, values)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs) -> None:
        self.eval_at[state.global_step] = {
            metric_name(k): float(v) for k, v in (metrics or {}).items()
            if k.startswith("eval_") and _finite(v)
        }

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs) -> None:
        name = f"checkpoint-{state.global_step}"
        path = f"{args.output_dir}/{name}"
        self.reporter.checkpoint(name, state.global_step, path,
                                 self.eval_at.get(state.global_step, {}))

    def _report_progress(self, state: TrainerState) -> None:
        speed = eta = None
        (t0, s0), (t1, s1) = self._window[0], self._window[-1]
        if s1 > s0 and t1 > t0:
            steps_per_second = (s1 - s0) / (t1 - t0)
            speed = steps_per_second * self.samples_per_step
            eta = max(0, state.max_steps - state.global_step) / steps_per_second
        self.reporter.progress(state.global_step, state.max_steps, state.epoch, speed, eta)
