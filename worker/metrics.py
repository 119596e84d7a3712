"""Classification metrics: through `evaluate` where its metrics load, else computed here.

The local versions follow scikit-learn's definitions (binary F1/precision/recall on the
positive class 1; macro averages for more classes), and tests check both paths agree.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import evaluate
import numpy as np

log = logging.getLogger(__name__)

KNOWN = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
# The GLUE metric of each task beyond accuracy (the classification tasks tunedeck trains).
GLUE_EXTRA = {"cola": ["matthews_correlation"], "mrpc": ["f1"], "qqp": ["f1"]}


def confusion(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _precision_recall(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true_pos = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, actual, out=np.zeros_like(true_pos), where=actual > 0)
    return precision, recall


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    total = precision + recall
    return np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)


def _pick(values: np.ndarray, num_labels: int) -> float:
    """Binary: the positive class (1); more classes: the macro average."""
    return float(values[1] if num_labels == 2 else values.mean())


def local_metric(name: str, predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    matrix = confusion(predictions, labels, num_labels)
    if name == "accuracy":
        return float(np.trace(matrix) / max(1, matrix.sum()))
    if name == "matthews_correlation":
        return _matthews(matrix)
    precision, recall = _precision_recall(matrix)
    if name == "precision":
        return _pick(precision, num_labels)
    if name == "recall":
        return _pick(recall, num_labels)
    if name == "f1":
        return _pick(_f1(precision, recall), num_labels)
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(KNOWN)}")


def _matthews(matrix: np.ndarray) -> float:
    """Multiclass MCC (Gorodkin), as scikit-learn computes it."""
    t = matrix.sum(axis=1).astype(float)
    p = matrix.sum(axis=0).astype(float)
    c = float(np.trace(matrix))
    s = float(matrix.sum())
    denominator = np.sqrt((s**2 - p @ p) * (s**2 - t @ t))
    return float((c * s - t @ p) / denominator) if denominator else 0.0


def load_evaluate_metric(name: str) -> Callable | None:
    """evaluate.load(name).compute, or None when the metric cannot be fetched (offline)."""
    try:
        return evaluate.load(name).compute
    except Exception as exc:  # noqa: BLE001 - any failure means: compute locally
        log.info("evaluate metric %r unavailable (%s); computing it locally", name, exc)
        return None


def evaluate_metric(compute: Callable, name: str, predictions: np.ndarray, labels: np.ndarray,
                    num_labels: int) -> float:
    kwargs = {}
    if name in ("f1", "precision", "recall") and num_labels > 2:
        kwargs["average"] = "macro"
    result = compute(predictions=predictions, references=labels, **kwargs)
    return float(result[name])


class MetricSuite:
    """The metrics of one job, resolved once at start (evaluate or local for each)."""

    def __init__(self, names: Sequence[str], num_labels: int, use_evaluate: bool = True):
        unknown = [n for n in names if n not in KNOWN]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(KNOWN)}")
        self.names = list(dict.fromkeys(names))
        self.num_labels = num_labels
        loaded = {n: load_evaluate_metric(n) if use_evaluate else None for n in self.names}
        self.evaluate_fns = {n: fn for n, fn in loaded.items() if fn is not None}

    @property
    def local_names(self) -> list[str]:
        return [n for n in self.names if n not in self.evaluate_fns]

    def compute(self, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        out = {}
        for name in self.names:
            fn = self.evaluate_fns.get(name)
            if fn is not None:
                out[name] = evaluate_metric(fn, name, predictions, labels, self.num_labels)
            else:
                out[name] = local_metric(name, predictions, labels, self.num_labels)
        return out

    def __call__(self, eval_pred) -> dict[str, float]:
        """compute_metrics for Trainer: argmax of the logits, then each metric."""
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(logits, tuple):
            logits = logits[0]
        return self.compute(np.argmax(logits, axis=-1), np.asarray(labels))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
