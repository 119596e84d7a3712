"""Local metrics agree with scikit-learn, and with `evaluate` wherever its metrics load."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from worker.metrics import KNOWN, MetricSuite, load_evaluate_metric, local_metric

SKLEARN = {
    "accuracy": lambda y, p, avg: skm.accuracy_score(y, p),
    "f1": lambda y, p, avg: skm.f1_score(y, p, average=avg, zero_division=0),
    "precision": lambda y, p, avg: skm.precision_score(y, p, average=avg, zero_division=0),
    "recall": lambda y, p, avg: skm.recall_score(y, p, average=avg, zero_division=0),
    "matthews_correlation": lambda y, p, avg: skm.matthews_corrcoef(y, p),
}


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
    average = "binary" if num_labels == 2 else "macro"
    if num_labels > 2:  # sklearn's macro averages over the labels present in either array
        present = np.union1d(labels, preds)
        if len(present) < num_labels:
            return
    expected = SKLEARN[name](labels, preds, average)
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
