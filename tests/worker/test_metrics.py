"""The metrics of each task: the text-classification ones agree with scikit-learn's definitions
(macro over every class) and with `evaluate` wherever its metrics load; the other tasks' on
examples worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from worker.metrics import (
    KNOWN,
    MetricSuite,
    entity_metrics,
    load_evaluate_metric,
    local_metric,
    multi_label_metrics,
    regression_metrics,
)

SKLEARN = {
    "accuracy": lambda y, p, avg: skm.accuracy_score(y, p),
    "f1": lambda y, p, avg: skm.f1_score(y, p, average=avg, zero_division=0),
    "precision": lambda y, p, avg: skm.precision_score(y, p, average=avg, zero_division=0),
    "recall": lambda y, p, avg: skm.recall_score(y, p, average=avg, zero_division=0),
    "matthews_correlation": lambda y, p, avg: skm.matthews_corrcoef(y, p),
}


def by_hand(name: str, matrix: np.ndarray) -> float:
    """Macro precision/recall/F1 over every class of a confusion matrix (0 where undefined)."""
    if name not in ("precision", "recall", "f1"):
        return SKLEARN[name](*expand(matrix), None)
    tp = np.diag(matrix).astype(float)
    precision = np.divide(tp, matrix.sum(0), out=np.zeros_like(tp), where=matrix.sum(0) > 0)
    recall = np.divide(tp, matrix.sum(1), out=np.zeros_like(tp), where=matrix.sum(1) > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return float({"precision": precision, "recall": recall, "f1": f1}[name].mean())


def expand(matrix: np.ndarray) -> tuple[list[int], list[int]]:
    labels, preds = [], []
    for (true, predicted), n in np.ndenumerate(matrix):
        labels += [true] * n
        preds += [predicted] * n
    return labels, preds


@st.composite
def labelled(draw):
    num_labels = draw(st.integers(min_value=2, max_value=5))
    n = draw(st.integers(min_value=1, max_value=60))
    labels = draw(st.lists(st.integers(0, num_labels - 1), min_size=n, max_size=n))
    preds = draw(st.lists(st.integers(0, num_labels - 1), min_size=n, max_size=n))
    return num_labels, np.array(labels), np.array(preds)


@settings(max_examples=150, deadline=None)
@given(labelled(), st.sampled_from(KNOWN))
def test_local_metrics_match_scikit_learn(case, name):
    num_labels, labels, preds = case
    if num_labels == 2:
        expected = SKLEARN[name](labels, preds, "binary")
    else:  # a class absent from both arrays still counts (as 0) in the macro average
        matrix = skm.confusion_matrix(labels, preds, labels=list(range(num_labels)))
        expected = by_hand(name, matrix)
    assert local_metric(name, preds, labels, num_labels) == pytest.approx(expected, abs=1e-9)


def test_suite_computes_from_logits():
    logits = np.array([[2.0, 0.1], [0.2, 1.0], [3.0, -1.0], [0.0, 0.5]])
    labels = np.array([0, 1, 1, 1])

    class EvalPred:
        predictions, label_ids = logits, labels

    out = MetricSuite(["accuracy", "f1"], 2, use_evaluate=False)(EvalPred())
    assert out == {"accuracy": 0.75, "f1": pytest.approx(0.8)}


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metrics"):
        MetricSuite(["bleu"], 2, use_evaluate=False)


@pytest.mark.parametrize("name", KNOWN)
def test_evaluate_and_local_agree_where_evaluate_loads(name):
    compute = load_evaluate_metric(name)
    if compute is None:
        pytest.skip(f"evaluate.load({name!r}) needs the Hugging Face Hub, unreachable here")
    rng = np.random.default_rng(0)
    for num_labels in (2, 3):
        labels = rng.integers(0, num_labels, 200)
        preds = rng.integers(0, num_labels, 200)
        suite = MetricSuite([name], num_labels)
        assert name in suite.evaluate_fns
        local = local_metric(name, preds, labels, num_labels)
        assert suite.compute(preds, labels)[name] == pytest.approx(local, abs=1e-9)


def test_multi_label_metrics_by_hand():
    truth = np.array([[1, 0], [1, 1], [0, 1]], dtype=float)
    guess = np.array([[1, 1], [0, 1], [0, 0]])
    out = multi_label_metrics(guess, truth, ["a b", "c"], per_label=[0, 1])
    # label "a b": tp 1, fn 1 -> 2/3; "c": tp 1, fp 1, fn 1 -> 1/2; micro: tp 2, fp 1, fn 2
    assert out == pytest.approx({"f1_micro": 4 / 7, "f1_macro": 7 / 12, "subset_accuracy": 0.0,
                                 "f1_a_b": 2 / 3, "f1_c": 0.5})
    assert "f1_c" not in multi_label_metrics(guess, truth, ["a b", "c"], per_label=[0])


def test_regression_metrics_by_hand():
    out = regression_metrics(np.array([2.0, 2.0, 5.0]), np.array([1.0, 2.0, 3.0]))
    assert out == pytest.approx({"mse": 5 / 3, "mae": 1.0, "pearson": 3 / np.sqrt(12),
                                 "spearman": 1.5 / np.sqrt(3)})
    constant = regression_metrics(np.array([1.0, 1.0]), np.array([0.0, 2.0]))
    assert constant["pearson"] == 0.0 and constant["spearman"] == 0.0  # undefined: 0


def test_entity_metrics_count_whole_entities():
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    guess = [["B-PER", "O", "O", "B-LOC"]]  # LOC right; PER cut short counts as wrong
    assert entity_metrics(true, guess) == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.75})
