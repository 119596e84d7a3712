"""GET /api/v1/compare and /api/v1/compare/flips on SQLite and PostgreSQL: the spec diff, the
final metrics with the best marked, the curves, and the flipped rows of jobs that predicted on
the same split (and why none are shown when they did not)."""
from __future__ import annotations

from typing import Any

import pytest

from app.jobs.models import JobStatus
from tests.app.factories import SPEC, add_points, add_predictions, make_job

LABELS = ["neg", "pos", "pos", "neg", "pos", "neg"]


def spec(dataset: dict | None = None, **training: Any) -> dict:
    return {**SPEC, "dataset": {**SPEC["dataset"], **(dataset or {})},
            "training": {"seed": 7, **training}}


def finished(name: str, job_spec: dict, metrics: dict[str, float]) -> int:
    return make_job(JobStatus.succeeded, spec=job_spec, name=name, final_metrics=metrics,
                    label_names=["neg", "pos"])


def classified(job_id: int, right: list[bool], split: str = "validation") -> None:
    """Text-classification rows over LABELS, right where `right` says (confidence by row)."""
    other = {"neg": "pos", "pos": "neg"}
    rows = []
    for i, (label, ok) in enumerate(zip(LABELS, right, strict=True)):
        predicted = label if ok else other[label]
        confidence = 0.5 + i / 20
        rows.append({"split": split, "row": i, "inputs": {"text": f"sentence {i}"},
                     "label": label, "prediction": predicted, "confidence": confidence,
                     "probabilities": {predicted: confidence, other[predicted]: 1 - confidence},
                     "correct": ok})
    add_predictions(job_id, "text-classification", rows)


def test_spec_diff_final_metrics_best_and_series(client) -> None:
    a = finished("lr-1e-5", spec(learning_rate=1e-5), {"eval/accuracy": 0.8, "eval/loss": 0.5,
                                                       "eval/runtime": 3.0})
    b = finished("lr-3e-5", spec(learning_rate=3e-5), {"eval/accuracy": 0.9, "eval/loss": 0.4,
                                                       "eval/runtime": 2.0})
    c = finished("warm", spec(learning_rate=3e-5, warmup_steps=10),
                 {"eval/accuracy": 0.9, "eval/loss": 0.6})
    for job_id, scale in ((a, 1.0), (b, 0.5), (c, 0.25)):
        add_points(job_id, "train/loss", [scale * (1 + (i % 7)) / (i + 1) for i in range(100)])
        add_points(job_id, "eval/accuracy", [0.5, 0.7, 0.8], first_step=40)

    body = client.get("/api/v1/compare", params={"jobs": f"{a},{b},{c}",
                                                 "max_points": 8}).json()

    assert [job["id"] for job in body["jobs"]] == [a, b, c]
    assert [job["name"] for job in body["jobs"]] == ["lr-1e-5", "lr-3e-5", "warm"]
    # only the keys that differ, flattened; c alone sets warmup_steps; the name is not compared
    assert body["spec_diff"] == {
        "training.learning_rate": {str(a): 1e-5, str(b): 3e-5, str(c): 3e-5},
        "training.warmup_steps": {str(c): 10}}
    assert body["final_metrics"][str(a)]["eval/accuracy"] == 0.8
    # highest accuracy (a tie: both), lowest loss; no best for runtime
    assert body["best"] == {"eval/accuracy": [b, c], "eval/loss": [b]}
    for job_id, scale in ((a, 1.0), (b, 0.5), (c, 0.25)):
        loss = body["series"][str(job_id)]["train/loss"]
        assert len(loss["steps"]) <= 8  # M4-downsampled like /metrics
        assert (loss["steps"][0], loss["steps"][-1]) == (1, 100)
        assert loss["values"][0] == scale * 1.0
        assert body["series"][str(job_id)]["eval/accuracy"]["steps"] == [40, 41, 42]
        assert body["jobs"][[a, b, c].index(job_id)]["last_id"] > 0
    assert body["flips"]["comparable"] is False  # no predictions stored


def test_flipped_rows_across_two_jobs_on_the_same_split(client) -> None:
    a = finished("a", spec(learning_rate=1e-5), {"eval/accuracy": 0.5})
    b = finished("b", spec(learning_rate=3e-5), {"eval/accuracy": 0.67})
    classified(a, [True, True, False, False, True, False])
    classified(b, [True, False, True, False, True, True])

    summary = client.get("/api/v1/compare", params={"jobs": f"{a},{b}"}).json()["flips"]
    assert summary["comparable"] is True and summary["reason"] is None
    assert (summary["split"], summary["rows"], summary["baseline"]) == ("validation", 6, a)
    assert (summary["flipped"], summary["fixed"], summary["broken"]) == (3, 2, 1)
    # per class: neg rows 0, 3, 5 (a right on 0; b on 0 and 5), pos rows 1, 2, 4
    classes = {c["name"]: c for c in summary["classes"]}
    assert classes["neg"] == {"name": "neg", "rows": 3, "right": {str(a): 1, str(b): 2},
                              "fixed": 1, "broken": 0}
    assert classes["pos"] == {"name": "pos", "rows": 3, "right": {str(a): 2, str(b): 2},
                              "fixed": 1, "broken": 1}

    page = client.get("/api/v1/compare/flips", params={"jobs": f"{a},{b}"}).json()
    assert page["total"] == 3 and [r["row"] for r in page["items"]] == [1, 2, 5]
    row = page["items"][0]
    assert (row["text"], row["truth"], row["label"]) == ("sentence 1", "pos", "pos")
    assert row["runs"][str(a)] == {"prediction": "pos", "confidence": 0.55, "correct": True}
    assert row["runs"][str(b)] == {"prediction": "neg", "confidence": 0.55, "correct": False}

    fixed = client.get("/api/v1/compare/flips",
                       params={"jobs": f"{a},{b}", "direction": "fixed"}).json()
    assert [r["row"] for r in fixed["items"]] == [2, 5]
    of_class = client.get("/api/v1/compare/flips",
                          params={"jobs": f"{a},{b}", "label": "pos", "per_page": 1}).json()
    assert of_class["total"] == 2 and [r["row"] for r in of_class["items"]] == [1]
    # the baseline is the first job named: the other way round, fixed and broken swap
    swapped = client.get("/api/v1/compare", params={"jobs": f"{b},{a}"}).json()["flips"]
    assert (swapped["fixed"], swapped["broken"], swapped["baseline"]) == (1, 2, b)


@pytest.mark.parametrize(("change", "reason"), [
    ({"split": "test"}, "the jobs predicted on different splits: job {a} validation, "
                        "job {b} test"),
    ({"rows": 4}, "the jobs predicted on different rows: job {a} 6 rows, job {b} 4 rows"),
    ({"dataset": {"path": "imdb"}}, "the jobs predicted on different datasets: "
                                    "job {a} hub:glue, job {b} hub:imdb"),
    ({"none": True}, "job {b} has no predictions yet (succeeded)"),
])
def test_jobs_that_did_not_predict_the_same_rows_say_why_no_flips(client, change,
                                                                  reason) -> None:
    a = finished("a", spec(), {})
    b = finished("b", spec(change.get("dataset")), {})
    classified(a, [True] * 6)
    if not change.get("none"):
        classified(b, [False] * 6, split=change.get("split", "validation"))
    if "rows" in change:
        add_predictions(b, "text-classification", [
            {"split": "validation", "row": i, "inputs": {"text": "x"}, "label": "neg",
             "prediction": "neg", "confidence": 0.9, "probabilities": {"neg": 0.9},
             "correct": True} for i in range(change["rows"])])

    summary = client.get("/api/v1/compare", params={"jobs": f"{a},{b}"}).json()["flips"]
    assert summary["comparable"] is False
    assert summary["reason"] == reason.format(a=a, b=b)
    assert summary["flipped"] == 0 and summary["classes"] == []
    page = client.get("/api/v1/compare/flips", params={"jobs": f"{a},{b}"}).json()
    assert page["items"] == [] and page["summary"]["reason"] == reason.format(a=a, b=b)


def test_bad_job_lists_are_refused_naming_the_field(client) -> None:
    a = make_job()
    for jobs in (str(a), "1,x", ",".join(str(i) for i in range(1, 14))):
        refused = client.get("/api/v1/compare", params={"jobs": jobs})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["query", "jobs"]
    missing = client.get("/api/v1/compare", params={"jobs": f"{a},424242"})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "job 424242 not found"}
