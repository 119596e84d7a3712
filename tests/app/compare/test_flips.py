"""app/compare/flips.py for every task: what "right" is, the row's class, the prediction and
confidence shown for each job (through GET /api/v1/compare/flips)."""
from __future__ import annotations

from typing import Any

import pytest

from app.jobs.models import JobStatus
from tests.app.factories import SPEC, add_predictions, make_job


def two_jobs(task: str, rows_a: list[dict], rows_b: list[dict]) -> tuple[int, int]:
    spec = {**SPEC, "task": task}
    a, b = (make_job(JobStatus.succeeded, spec=spec, name=n) for n in ("a", "b"))
    add_predictions(a, task, [{"split": "test", "row": i, **r} for i, r in enumerate(rows_a)])
    add_predictions(b, task, [{"split": "test", "row": i, **r} for i, r in enumerate(rows_b)])
    return a, b


def flips(client, a: int, b: int, **params: Any) -> dict:
    response = client.get("/api/v1/compare/flips", params={"jobs": f"{a},{b}", **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_text_regression_is_right_within_a_tolerance(client) -> None:
    labels = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # range 5: the default tolerance is 0.5
    a_pred = [0.1, 1.9, 2.2, 3.0, 4.6, 5.0]
    b_pred = [0.9, 1.1, 2.1, 3.4, 4.1, 5.0]

    def rows(predicted: list[float]) -> list[dict]:
        return [{"inputs": {"text": f"s{i}"}, "label": y, "prediction": p, "error": p - y}
                for i, (y, p) in enumerate(zip(labels, predicted, strict=True))]

    a, b = two_jobs("text-regression", rows(a_pred), rows(b_pred))
    page = flips(client, a, b)
    summary = page["summary"]
    assert summary["tolerance"] == 0.5
    # a wrong on rows 1 (0.9 off) and 4 (0.6); b wrong on row 0 (0.9)
    assert (summary["fixed"], summary["broken"]) == (2, 1)
    assert [r["row"] for r in page["items"]] == [0, 1, 4]
    assert page["items"][0]["runs"][str(b)] == {"prediction": 0.9, "confidence": None,
                                                "correct": False}
    assert {c["name"] for c in summary["classes"]} == {"0 to 1.25", "1.25 to 2.5",
                                                      "2.5 to 3.75", "3.75 to 5"}
    strict = flips(client, a, b, tolerance=0.05)
    # within 0.05: a is right on rows 3 and 5, b on row 5 only
    assert strict["summary"]["tolerance"] == 0.05 and strict["summary"]["broken"] == 1
    assert [r["row"] for r in strict["items"]] == [3]


def test_multi_label_token_and_generation_rows(client) -> None:
    multi = [{"inputs": {"text": "t"}, "labels": ["x", "y"], "predictions": p,
              "probabilities": {"x": 0.9, "y": q}, "correct": p == ["x", "y"]}
             for p, q in ((["x", "y"], 0.7), (["x"], 0.4))]
    a, b = two_jobs("multi-label-classification", multi, multi[::-1])
    page = flips(client, a, b)
    assert page["summary"]["classes"][0]["name"] in ("x", "y")
    row = page["items"][0]
    assert row["truth"] == ["x", "y"]
    assert row["runs"][str(a)] == {"prediction": ["x", "y"], "confidence": 0.7,
                                   "correct": True}
    assert row["runs"][str(b)]["confidence"] == pytest.approx(0.6)  # max(0.4, 0.6)

    tokens = ["Ada", "Lovelace", "wrote"]
    right = {"tokens": tokens, "tags": ["B-PER", "I-PER", "O"],
             "predicted_tags": ["B-PER", "I-PER", "O"],
             "entities": [{"type": "PER", "start": 0, "end": 2, "text": "Ada Lovelace"}],
             "correct": True}
    wrong = {**right, "predicted_tags": ["B-LOC", "O", "O"],
             "entities": [{"type": "LOC", "start": 0, "end": 1, "text": "Ada"}],
             "correct": False}
    a, b = two_jobs("token-classification", [right], [wrong])
    page = flips(client, a, b, direction="broken")
    row = page["items"][0]
    assert (row["text"], row["truth"], row["label"]) == ("Ada Lovelace wrote",
                                                         ["PER: Ada Lovelace"], "PER")
    assert row["runs"][str(b)]["prediction"] == ["LOC: Ada"]

    generated = [{"prompt": "Capital of France?", "reference": "Paris", "generated": g,
                  "correct": g == "Paris"} for g in ("Paris", "Lyon")]
    a, b = two_jobs("causal-lm-sft", generated[1:], generated[:1])
    page = flips(client, a, b, direction="fixed")
    assert page["summary"]["classes"] == []  # generations have no classes
    row = page["items"][0]
    assert (row["text"], row["truth"]) == ("Capital of France?", "Paris")
    assert row["runs"][str(a)]["prediction"] == "Lyon"
    assert row["runs"][str(b)] == {"prediction": "Paris", "confidence": None, "correct": True}


def test_jobs_of_different_tasks_and_unlabelled_splits(client) -> None:
    a = make_job(JobStatus.succeeded, spec={**SPEC, "task": "text-regression"})
    b = make_job(JobStatus.succeeded, spec=SPEC)
    reason = flips(client, a, b)["summary"]["reason"]
    assert reason == "the jobs are of different tasks (text-classification, text-regression)"
    unlabelled = [{"prompt": "p", "reference": None, "generated": "g", "correct": None}]
    a, b = two_jobs("causal-lm-sft", unlabelled, unlabelled)
    summary = flips(client, a, b)["summary"]
    assert summary["reason"] == ("the shared split 'test' has no labels, so no prediction is "
                                 "right or wrong")
