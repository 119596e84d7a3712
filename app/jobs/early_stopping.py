"""`early_stopping` in a job spec: what transformers' EarlyStoppingCallback needs, set at submit.

The callback itself is added by the worker (worker/training.py). Here the spec gets
`load_best_model_at_end`, `metric_for_best_model` and `greater_is_better` in `training`, and
combinations that could not work are refused with the field to change (tests in
tests/app/jobs/test_early_stopping.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from app.jobs.schemas import SpecBase

# Metrics where lower is better; every other one is maximised.
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae", "perplexity"})
# Metric names that are no single eval series: computed at predict time, or one per label.
NOT_AT_EVAL = frozenset({"exact_match", "per_label_f1"})
# The TrainingArguments apply() sets (save_steps too, when eval and save go by steps).
STOPPING_KEYS = frozenset({"load_best_model_at_end", "metric_for_best_model", "greater_is_better"})
CONFLICT = "spec_conflict"  # the error type; schemas.untagged_errors moves it to ctx["field"]


class EarlyStoppingSpec(BaseModel):
    """Stop when the metric has not improved by more than `threshold` for `patience` evals."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(default=3, ge=1, le=10_000)
    threshold: float = Field(default=0.0, ge=0)
    # An eval metric of the spec (`accuracy` or `eval/accuracy`); default: the eval loss.
    metric: str | None = Field(default=None, min_length=1, max_length=100)


def conflict(field: str, message: str) -> PydanticCustomError:
    """A validation error that names `field` (a dotted spec path) as its location."""
    return PydanticCustomError(CONFLICT, message, {"field": field})


def metric_name(spec: SpecBase) -> str:
    """The watched metric without its `eval/` or `eval_` prefix."""
    assert spec.early_stopping is not None
    metric = spec.early_stopping.metric or "loss"
    return metric.removeprefix("eval/").removeprefix("eval_")


def apply(spec: SpecBase) -> None:
    """Check the spec can stop early and write the TrainingArguments the callback needs."""
    if spec.early_stopping is None:
        return
    if spec.dataset.eval_split is None:
        raise conflict("dataset.eval_split", "early stopping compares evaluations: set an "
                       "eval split")
    _check_strategies(spec)
    metric = metric_name(spec)
    allowed = sorted({"loss", *getattr(spec, "metrics", [])} - NOT_AT_EVAL)
    if metric not in allowed:
        raise conflict("early_stopping.metric", f"{metric!r} is not an eval metric of this "
                       f"spec; pick one of {', '.join(allowed)}")
    wanted = {"load_best_model_at_end": True, "metric_for_best_model": metric,
              "greater_is_better": metric not in LOWER_IS_BETTER}
    _set_training(spec, wanted)


def _check_strategies(spec: SpecBase) -> None:
    training = spec.training
    if training.eval_strategy == "no":
        raise conflict("training.eval_strategy", "early stopping needs evaluations: use "
                       "epoch or steps")
    if training.save_strategy != training.eval_strategy:
        raise conflict("training.save_strategy", f"must match training.eval_strategy "
                       f"({training.eval_strategy}) with early stopping: the best model is a "
                       "checkpoint saved at an evaluation")
    if training.eval_strategy == "steps":
        extra = training.model_extra or {}
        eval_steps = extra.get("eval_steps") or training.logging_steps
        save_steps = extra.get("save_steps")
        if save_steps is None:
            _set_training(spec, {"save_steps": eval_steps})
        elif not _multiple(save_steps, eval_steps):
            raise conflict("training.save_steps", f"must be a multiple of eval_steps "
                           f"({eval_steps}) with early stopping")


def _multiple(save_steps: Any, eval_steps: Any) -> bool:
    try:
        return float(save_steps) % float(eval_steps) == 0
    except (TypeError, ValueError, ZeroDivisionError):
        return False


def _set_training(spec: SpecBase, wanted: dict[str, Any]) -> None:
    """Set TrainingArguments keys, refusing a value the spec gave otherwise."""
    extra = spec.training.model_extra
    assert extra is not None  # TrainingSpec allows extra keys
    for key, value in wanted.items():
        if key in extra and extra[key] != value:
            raise conflict(f"training.{key}", f"early stopping sets it to {value!r}; "
                           f"remove it or change early_stopping")
        extra[key] = value
