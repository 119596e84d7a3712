"""The spec union: each task's spec, its defaults and its 422s naming the field; and each task's
prediction rows as /predictions serves them and the job page shows them."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.jobs.models import Job, Prediction, prediction_columns
from app.jobs.schemas import JobSpec

DATA = {"source": "local", "path": "/data/set"}
SPECS: dict[str, dict[str, Any]] = {
    "text-classification": {"model": "m", "dataset": {**DATA, "text_fields": ["text"]}},
    "multi-label-classification": {
        "model": "m", "task": "multi-label-classification", "threshold": 0.4,
        "dataset": {**DATA, "text_fields": ["text"], "label_field": "topics",
                    "label_separator": "|"}},
    "text-regression": {"model": "m", "task": "text-regression",
                        "dataset": {**DATA, "text_fields": ["text"], "label_field": "score"}},
    "token-classification": {"model": "m", "task": "token-classification",
                             "dataset": {**DATA, "tokens_field": "words",
                                         "tags_field": "tags"}},
    "causal-lm-sft": {"model": "m", "task": "causal-lm-sft",
                      "dataset": {**DATA, "messages_field": "messages"},
                      "lora": {"r": 8, "alpha": 16, "dropout": 0.1,
                               "target_modules": ["q_proj", "v_proj"]},
                      "generation": {"max_new_tokens": 32}},
}


def with_(task: str, path: str, value: Any) -> dict:
    spec = copy.deepcopy(SPECS[task])
    *parents, key = path.split(".")
    node = spec
    for name in parents:
        node = node[name]
    node[key] = value
    return spec


@pytest.mark.parametrize("task", sorted(SPECS))
def test_each_tasks_spec_is_accepted_and_keeps_its_task(client, task):
    response = client.post("/api/v1/jobs", json=SPECS[task])
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert spec["task"] == task
    assert spec["dataset"] == JobSpec.model_validate(SPECS[task]).model_dump(
        mode="json")["dataset"]


def test_defaults_per_task():
    old = JobSpec.model_validate(SPECS["text-classification"])  # a spec from before tasks
    assert old.task == "text-classification" and old.metrics == ["accuracy", "f1"]
    multi = JobSpec.model_validate({k: v for k, v in SPECS["multi-label-classification"].items()
                                    if k != "threshold"})
    assert multi.threshold == 0.5
    assert multi.metrics == ["f1_micro", "f1_macro", "subset_accuracy", "per_label_f1"]
    token = JobSpec.model_validate({"model": "m", "task": "token-classification",
                                    "dataset": DATA})
    assert (token.dataset.tokens_field, token.dataset.tags_field) == ("tokens", "ner_tags")
    sft = JobSpec.model_validate({"model": "m", "task": "causal-lm-sft", "dataset": DATA})
    assert (sft.dataset.prompt_field, sft.dataset.completion_field) == ("prompt", "completion")
    assert sft.lora.model_dump() == {"r": 16, "alpha": 32, "dropout": 0.05,
                                     "target_modules": "all-linear"}
    assert sft.generation.max_new_tokens == 64
    full = JobSpec.model_validate({**SPECS["causal-lm-sft"], "lora": None})
    assert full.lora is None


# (spec, where the error points, words the message must contain)
CASES = {
    "unknown task": ({**SPECS["text-classification"], "task": "summarization"},
                     ["body", "task"], "does not match any of the expected tags"),
    "token task given text_fields": (
        with_("token-classification", "dataset.text_fields", ["text"]),
        ["body", "dataset", "text_fields"], "Extra inputs are not permitted"),
    "empty tokens_field": (with_("token-classification", "dataset.tokens_field", ""),
                           ["body", "dataset", "tokens_field"], "at least 1 character"),
    "tokens and tags in one column": (
        with_("token-classification", "dataset.tags_field", "words"), ["body", "dataset"],
        "tokens_field and tags_field must be two different columns"),
    "token metric on regression": (with_("text-regression", "metrics", ["f1"]),
                                   ["body", "metrics", 0], "'mse', 'mae', 'pearson'"),
    "threshold 1": (with_("multi-label-classification", "threshold", 1),
                    ["body", "threshold"], "less than 1"),
    "empty label separator": (with_("multi-label-classification", "dataset.label_separator", ""),
                              ["body", "dataset", "label_separator"], "at least 1 character"),
    "threshold on text-classification": (with_("text-classification", "threshold", 0.5),
                                         ["body", "threshold"], "Extra inputs"),
    "messages and prompt": (with_("causal-lm-sft", "dataset.prompt_field", "p"),
                            ["body", "dataset"], "not both"),
    "lora r 0": (with_("causal-lm-sft", "lora.r", 0), ["body", "lora", "r"],
                 "greater than or equal to 1"),
    "lora dropout 1": (with_("causal-lm-sft", "lora.dropout", 1), ["body", "lora", "dropout"],
                       "less than 1"),
    "lora no modules": (with_("causal-lm-sft", "lora.target_modules", []),
                        ["body", "lora", "target_modules"], "non-empty list"),
    "max_new_tokens 0": (with_("causal-lm-sft", "generation.max_new_tokens", 0),
                         ["body", "generation", "max_new_tokens"], "greater than or equal to 1"),
    "lora on regression": (with_("text-regression", "lora", {"r": 4}), ["body", "lora"],
                           "Extra inputs"),
    "learning rate on token task": (
        with_("token-classification", "training", {"learning_rate": "fast"}),
        ["body", "training", "learning_rate"], "valid number"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_task_specs_are_422_naming_the_field(client, case):
    body, loc, words = CASES[case]
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"] == loc and words in d["msg"] for d in detail), detail


def test_model_validate_errors_have_no_task_tag():
    with pytest.raises(Exception) as caught:
        JobSpec.model_validate(with_("token-classification", "dataset.tokens_field", ""))
    assert [e["loc"] for e in caught.value.errors()] == [("dataset", "tokens_field")]


# ---------------------------------------------------------------- predictions of each task

ROWS = {
    "multi-label-classification": [
        {"split": "test", "row": 0, "inputs": {"text": "goal pizza"},
         "labels": ["food", "sports"], "predictions": ["sports"],
         "probabilities": {"food": 0.3, "sports": 0.9}, "correct": False},
        {"split": "test", "row": 1, "inputs": {"text": "song"}, "labels": ["music"],
         "predictions": ["music"], "probabilities": {"food": 0.1, "sports": 0.2},
         "correct": True}],
    "text-regression": [
        {"split": "test", "row": 0, "inputs": {"text": "good"}, "label": 1.0,
         "prediction": 1.25, "error": 0.25},
        {"split": "test", "row": 1, "inputs": {"text": "bad bad"}, "label": -2.0,
         "prediction": -1.0, "error": 1.0},
        {"split": "test", "row": 2, "inputs": {"text": "x"}, "label": None,
         "prediction": 0.5, "error": None}],
    "token-classification": [
        {"split": "test", "row": 0, "tokens": ["anna", "lives", "in", "rome"],
         "tags": ["B-PER", "O", "O", "B-LOC"], "predicted_tags": ["B-PER", "O", "O", "O"],
         "entities": [{"type": "PER", "start": 0, "end": 1, "text": "anna"}],
         "correct": False},
        {"split": "test", "row": 1, "tokens": ["hi"], "tags": ["O"], "predicted_tags": ["O"],
         "entities": [], "correct": True}],
    "causal-lm-sft": [
        {"split": "test", "row": 0, "prompt": "2+2=", "reference": "4", "generated": "4",
         "correct": True},
        {"split": "test", "row": 1, "prompt": "3+3=", "reference": "6", "generated": "7",
         "correct": False}],
}
WRONG = {"multi-label-classification": [0], "text-regression": [1, 0],
         "token-classification": [0], "causal-lm-sft": [1]}


def finished(session: Session, task: str) -> Job:
    spec = JobSpec.model_validate(SPECS[task]).model_dump(mode="json")
    job = Job(name=task, status="succeeded", spec=spec, latest_metrics={}, info=[],
              final_metrics={"test/loss": 0.5}, label_names=None)
    session.add(job)
    session.flush()
    session.execute(Prediction.__table__.insert(),
                    [prediction_columns(job.id, task, row) for row in ROWS[task]])
    session.commit()
    return job


@pytest.mark.parametrize("task", sorted(ROWS))
def test_predictions_api_serves_each_tasks_row_shape(client, session, task):
    job = finished(session, task)
    page = client.get(f"/api/v1/jobs/{job.id}/predictions").json()
    assert page["task"] == task and page["total"] == len(ROWS[task])
    assert page["items"] == ROWS[task]  # exactly the worker's rows, in DESIGN.md's shape
    assert page["confusion"] is None
    wrong = client.get(f"/api/v1/jobs/{job.id}/predictions?errors_only=true").json()
    assert [item["row"] for item in wrong["items"]] == WRONG[task]
    html = client.get(f"/jobs/{job.id}/predictions").text
    assert f'data-task="{task}"' in html and "Predictions appear" not in html
    assert client.get(f"/jobs/{job.id}").status_code == 200  # the whole job page


def test_text_classification_rows_keep_their_columns_and_confusion(client, session):
    spec = JobSpec.model_validate(SPECS["text-classification"]).model_dump(mode="json")
    job = Job(name="tc", status="succeeded", spec={k: v for k, v in spec.items() if k != "task"},
              latest_metrics={}, info=[], label_names=["neg", "pos"])
    session.add(job)
    session.flush()
    row = {"split": "validation", "row": 0, "inputs": {"text": "good"}, "label": "pos",
           "prediction": "neg", "confidence": 0.6, "probabilities": {"neg": 0.6, "pos": 0.4},
           "correct": False}
    session.execute(Prediction.__table__.insert(),
                    [prediction_columns(job.id, "text-classification", row)])
    session.commit()
    page = client.get(f"/api/v1/jobs/{job.id}/predictions").json()
    assert page["task"] == "text-classification"  # a spec stored without a task
    assert page["items"] == [row] and page["confusion"] == [[0, 0], [1, 0]]


def test_every_example_spec_validates():
    import yaml

    examples = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))
    tasks = {JobSpec.model_validate(yaml.safe_load(p.read_text())).task for p in examples}
    assert {"text-classification", "multi-label-classification", "text-regression",
            "token-classification"} <= tasks
