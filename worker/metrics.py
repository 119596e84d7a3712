"""Each task's metrics, computed with scikit-learn (seqeval for entities).

text-classification keeps its evaluate-first behaviour: a metric that `evaluate.load` fetches is
computed by it, else here, where the numbers follow the same definitions (binary F1/precision/
recall on the positive class 1; macro averages over all classes for more), and tests check both
paths agree.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

import evaluate
import numpy as np
from scipy import stats
from sklearn import metrics as skm

log = logging.getLogger(__name__)

KNOWN = ("accuracy", "f1", "precision", "recall", "matthews_correlation")
# The GLUE metric of each task beyond accuracy (the classification tasks tunedeck trains).
GLUE_EXTRA = {"cola": ["matthews_correlation"], "mrpc": ["f1"], "qqp": ["f1"]}
MULTI_LABEL = ("f1_micro", "f1_macro", "subset_accuracy", "per_label_f1")
REGRESSION = ("mse", "mae", "pearson", "spearman")
TOKEN = ("precision", "recall", "f1", "accuracy")
PER_LABEL_CAP = 20  # per-label f1 series for at most this many labels (the most frequent)


def local_metric(name: str, predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """One single-label metric; macro averages run over all `num_labels` classes."""
    if name == "accuracy":
        return float(skm.accuracy_score(labels, predictions))
    if name == "matthews_correlation":
        return float(skm.matthews_corrcoef(labels, predictions))
    scorers = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    if name not in scorers:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(KNOWN)}")
    if num_labels == 2:
        kwargs: dict = {"average": "binary", "pos_label": 1, "labels": [0, 1]}
    else:
        kwargs = {"average": "macro", "labels": list(range(num_labels))}
    return float(scorers[name](labels, predictions, zero_division=0, **kwargs))


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
    """text-classification's metrics, resolved once at start (evaluate or local for each)."""

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


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def series_name(label: str) -> str:
    """A label as part of a metric series name: letters, digits, `_`, `-` and `.` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "label"


def multi_label_metrics(predicted: np.ndarray, labels: np.ndarray, names: Sequence[str],
                        per_label: Sequence[int] = ()) -> dict[str, float]:
    """f1_micro, f1_macro, subset_accuracy over 0/1 indicator matrices, and `f1_<label>` for
    the label indices in `per_label`."""
    truth, guess = np.asarray(labels) >= 0.5, np.asarray(predicted).astype(bool)
    out = {
        "f1_micro": float(skm.f1_score(truth, guess, average="micro", zero_division=0)),
        "f1_macro": float(skm.f1_score(truth, guess, average="macro", zero_division=0)),
        "subset_accuracy": float(skm.accuracy_score(truth, guess)),
    }
    if per_label:
        scores = skm.f1_score(truth, guess, average=None, zero_division=0)
        used: set[str] = set()
        for i in per_label:
            name = f"f1_{series_name(names[i])}"
            if name not in used:  # two labels that clean to one name: the first keeps it
                used.add(name)
                out[name] = float(scores[i])
    return out


def regression_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """mse, mae, and the Pearson and Spearman correlations (0.0 where one side is constant,
    where they are undefined)."""
    predicted, labels = np.asarray(predicted, float).ravel(), np.asarray(labels, float).ravel()
    out = {"mse": float(skm.mean_squared_error(labels, predicted)),
           "mae": float(skm.mean_absolute_error(labels, predicted))}
    constant = len(labels) < 2 or np.ptp(labels) == 0 or np.ptp(predicted) == 0
    out["pearson"] = 0.0 if constant else float(stats.pearsonr(predicted, labels)[0])
    out["spearman"] = 0.0 if constant else float(stats.spearmanr(predicted, labels)[0])
    return out


def entity_metrics(true_tags: list[list[str]], predicted_tags: list[list[str]]) -> dict[str, float]:
    """Entity-level precision/recall/f1 (seqeval's definition: micro over entities, an entity
    counts when its type and span match exactly) and word-level tag accuracy."""
    from seqeval import metrics as sq

    return {
        "precision": float(sq.precision_score(true_tags, predicted_tags, zero_division=0)),
        "recall": float(sq.recall_score(true_tags, predicted_tags, zero_division=0)),
        "f1": float(sq.f1_score(true_tags, predicted_tags, zero_division=0)),
        "accuracy": float(sq.accuracy_score(true_tags, predicted_tags)),
    }
