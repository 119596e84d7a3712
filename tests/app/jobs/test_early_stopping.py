"""`early_stopping` in a job spec (app/jobs/early_stopping.py): the TrainingArguments it sets,
and a 422 naming the field for each combination that cannot work."""
from __future__ import annotations

import pytest

from tests.app.factories import SPEC

BASE = {**SPEC, "dataset": {**SPEC["dataset"], "eval_split": "validation"},
        "metrics": ["accuracy", "f1"], "early_stopping": {"patience": 2}}


def with_(**changes) -> dict:
    spec = {**BASE, **changes}
    return spec


def test_early_stopping_sets_what_the_callback_needs(client):
    job = client.post("/api/v1/jobs", json=with_(early_stopping={"patience": 2,
                                                                 "metric": "eval/accuracy"}))
    assert job.status_code == 201, job.text
    training = job.json()["spec"]["training"]
    assert training["load_best_model_at_end"] is True
    assert training["metric_for_best_model"] == "accuracy"
    assert training["greater_is_better"] is True
    assert job.json()["spec"]["early_stopping"] == {"patience": 2, "threshold": 0.0,
                                                    "metric": "eval/accuracy"}
    loss = client.post("/api/v1/jobs", json=with_(training={
        "eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 5})).json()
    assert loss["spec"]["training"]["metric_for_best_model"] == "loss"
    assert loss["spec"]["training"]["greater_is_better"] is False
    assert loss["spec"]["training"]["save_steps"] == 5  # saved at each eval
    resubmitted = client.post("/api/v1/jobs", json=loss["spec"])  # the stored spec is valid
    assert resubmitted.status_code == 201
    assert resubmitted.json()["spec"]["training"] == loss["spec"]["training"]


@pytest.mark.parametrize(("changes", "loc", "words"), [
    ({"dataset": SPEC["dataset"]}, ["dataset", "eval_split"], "set an eval split"),
    ({"training": {"eval_strategy": "no", "save_strategy": "no"}},
     ["training", "eval_strategy"], "needs evaluations"),
    ({"training": {"save_strategy": "steps"}}, ["training", "save_strategy"],
     "must match training.eval_strategy (epoch)"),
    ({"training": {"eval_strategy": "steps", "save_strategy": "steps", "eval_steps": 4,
                   "save_steps": 6}}, ["training", "save_steps"],
     "must be a multiple of eval_steps (4)"),
    ({"early_stopping": {"metric": "matthews_correlation"}}, ["early_stopping", "metric"],
     "pick one of accuracy, f1, loss"),
    ({"training": {"load_best_model_at_end": False}}, ["training", "load_best_model_at_end"],
     "early stopping sets it to True"),
    ({"training": {"metric_for_best_model": "f1"}}, ["training", "metric_for_best_model"],
     "early stopping sets it to 'loss'"),
    ({"early_stopping": {"patience": 0}}, ["early_stopping", "patience"], "greater than or equal"),
])
def test_combinations_that_cannot_work_are_refused_at_their_field(client, changes, loc, words):
    r = client.post("/api/v1/jobs", json=with_(**changes))
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", *loc]
    assert words in error["msg"]
