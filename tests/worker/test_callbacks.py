"""Trainer log keys become series names; values a chart cannot draw are dropped."""
from __future__ import annotations

from worker.callbacks import metric_name, metric_values


def test_metric_names():
    assert metric_name("loss") == "train/loss"
    assert metric_name("eval_accuracy") == "eval/accuracy"
    assert metric_name("test_f1") == "test/f1"
    assert metric_name("train_runtime") == "train/train_runtime"


def test_non_finite_and_non_numeric_values_are_dropped():
    logs = {"loss": 0.5, "grad_norm": float("nan"), "learning_rate": float("inf"),
            "epoch": 1.0, "note": "text", "eval_loss": 2}
    assert metric_values(logs) == {"train/loss": 0.5, "eval/loss": 2.0}
