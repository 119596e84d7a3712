"""Bad job specs: each gets a precise 4xx naming the problem, and leaves no row behind.

Problems only the data can show (a missing column, one class, an empty or non-UTF-8 file) fail
the job with a precise message instead: tests/worker/test_data.py. Uploads have their own
table in tests/app/datasets/test_api.py (nothing stays on disk after a rejected upload).
"""
from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from app.cli import main as tunedeck
from app.db import session_scope
from app.jobs.models import Job
from tests.fixtures import reset_caches

SPEC = {"model": "tiny-bert", "dataset": {"source": "local", "path": "/data/reviews",
                                          "text_fields": ["text"], "label_field": "label"}}


def with_(path: str, value: Any) -> dict:
    spec = copy.deepcopy(SPEC)
    *parents, key = path.split(".")
    node = spec
    for name in parents:
        node = node.setdefault(name, {})
    node[key] = value
    return spec


def without(key: str) -> dict:
    spec = copy.deepcopy(SPEC)
    del spec[key]
    return spec


# (body, status, where the error points, words the message must contain)
CASES = {
    "malformed JSON": (b'{"model": "m",', 422, ["body", 14], "JSON decode error"),
    "not an object": (b"[1, 2]", 422, ["body"], "valid dictionary"),
    "non-UTF-8 body": (b'{"model": "\xff"}', 400, None, "error parsing the body"),
    "missing model": (without("model"), 422, ["body", "model"], "Field required"),
    "unknown top-level key": (with_("epochs", 3), 422, ["body", "epochs"],
                              "Extra inputs are not permitted"),
    "learning rate as text": (with_("training.learning_rate", "fast"), 422,
                              ["body", "training", "learning_rate"], "valid number"),
    "zero learning rate": (with_("training.learning_rate", 0), 422,
                           ["body", "training", "learning_rate"], "greater than 0"),
    "negative learning rate": (with_("training.learning_rate", -2e-5), 422,
                               ["body", "training", "learning_rate"], "greater than 0"),
    "fractional batch size": (with_("training.per_device_train_batch_size", 2.5), 422,
                              ["body", "training", "per_device_train_batch_size"],
                              "fractional part"),
    "zero epochs": (with_("training.num_train_epochs", 0), 422,
                    ["body", "training", "num_train_epochs"], "greater than 0"),
    "unknown scheduler": (with_("training.lr_scheduler_type", "cosine_annealing"), 422,
                          ["body", "training", "lr_scheduler_type"], "'cosine_with_restarts'"),
    "unknown TrainingArguments key": (with_("training.learnig_rate", 1e-5), 422,
                                      ["body", "training"],
                                      "training.learnig_rate is not a TrainingArguments field"),
    "a key tunedeck sets": (with_("training.output_dir", "/tmp/x"), 422, ["body", "training"],
                            "training.output_dir is set by tunedeck"),
    "fp16 and bf16": (with_("training", {"fp16": True, "bf16": True}), 422,
                      ["body", "training"], "fp16 and bf16 cannot both be true"),
    "warmup 1.5": (with_("training.warmup_steps", 1.5), 422,
                   ["body", "training", "warmup_steps"], "an int (steps) or a float in [0, 1)"),
    "max_length as text": (with_("max_length", "long"), 422, ["body", "max_length"],
                           "valid integer"),
    "unknown dataset source": (with_("dataset.source", "s3"), 422,
                               ["body", "dataset", "source"], "'hub', 'upload' or 'local'"),
    "no text fields": (with_("dataset.text_fields", []), 422, ["body", "dataset", "text_fields"],
                       "at least 1 item"),
    "three text fields": (with_("dataset.text_fields", ["a", "b", "c"]), 422,
                          ["body", "dataset", "text_fields"], "at most 2 items"),
    "an empty text field name": (with_("dataset.text_fields", ["text", ""]), 422,
                                 ["body", "dataset", "text_fields"], "must not be empty"),
    "the same text field twice": (with_("dataset.text_fields", ["text", "text"]), 422,
                                  ["body", "dataset", "text_fields"], "two different columns"),
    "name over 200 characters": (with_("name", "n" * 201), 422, ["body", "name"],
                                 "at most 200 characters"),
    "huge model field": (with_("model", "m" * 100_000), 422, ["body", "model"],
                         "at most 1000 characters"),
    "unknown uploaded dataset": (with_("dataset", {**SPEC["dataset"], "source": "upload",
                                                   "path": "ds-000000000000"}), 422,
                                 ["body", "dataset", "path"],
                                 "no uploaded dataset with id 'ds-000000000000'"),
}


def job_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(Job.id))) or 0


@pytest.mark.parametrize(("body", "status", "loc", "words"), CASES.values(), ids=CASES.keys())
def test_a_bad_spec_gets_a_precise_error_and_leaves_no_row(client, body, status, loc, words):
    if isinstance(body, bytes):
        response = client.post("/api/v1/jobs", content=body,
                               headers={"Content-Type": "application/json"})
    else:
        response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if loc is None:
        assert words in detail
    else:
        assert len(detail) == 1, detail
        assert detail[0]["loc"] == loc
        assert words in detail[0]["msg"] + json.dumps(detail[0].get("ctx", {}))
    assert job_count() == 0


def test_a_spec_over_the_body_limit_is_413_and_leaves_no_row(client, monkeypatch):
    monkeypatch.setenv("TUNEDECK_MAX_UPLOAD_MB", "1")
    reset_caches()
    response = client.post("/api/v1/jobs", json=with_("name", "n" * 3_000_000))
    assert response.status_code == 413
    assert "upload limit of 1 MB" in response.json()["detail"]
    assert job_count() == 0


def test_the_good_spec_of_this_table_is_accepted(client):
    """The table's base spec is valid, so each case fails for its one change only."""
    assert client.post("/api/v1/jobs", json=SPEC).status_code == 201


@pytest.mark.parametrize(("name", "content", "words"), [
    ("spec.yaml", b"model: m\ndataset: [unclosed\n", "while parsing a flow sequence"),
    ("spec.yaml", b"- model: m\n", "a job spec is a mapping"),
    ("spec.yaml", b"model: caf\xe9\n", "can't decode byte 0xe9"),
    ("spec.json", b'{"model": "m",}', "Expecting property name"),
    ("spec.yaml", b"", "a job spec is a mapping"),
], ids=["malformed YAML", "YAML list", "non-UTF-8 YAML", "malformed JSON", "empty file"])
def test_tunedeck_submit_rejects_a_bad_spec_file_before_sending(tmp_path, capsys, name,
                                                                content, words):
    path = tmp_path / name
    path.write_bytes(content)
    # Nothing listens on the URL: the file is rejected before any request.
    assert tunedeck(["submit", str(path), "--url", "http://127.0.0.1:9"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err
    assert "cannot reach" not in err
