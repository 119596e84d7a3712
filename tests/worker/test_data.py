"""Problems only the data can show fail the job with a message that names them.

The spec was valid (tests/app/test_bad_input.py covers those that are not), so the job row
exists; the worker stores DataError and its message, and no training starts.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.db import session_scope
from app.jobs import repository, service
from app.jobs.models import Job
from app.jobs.schemas import JobSpec
from tests.fixtures import sentiment_rows, write_jsonl
from worker.runner import run_job


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


GOOD = jsonl(sentiment_rows(8))
LATIN1_CSV = "text,label\nfine,1\ncaf\xe9 au lait,0\n".encode("latin-1")

# (files in the dataset folder, spec changes, words of the failure message)
CASES = {
    "missing label column": ({"train.jsonl": GOOD}, {"label_field": "sentiment"},
                             ("column 'sentiment' not found in the train split; columns are: "
                             "text, idx, label")),
    "missing text column": ({"train.jsonl": GOOD}, {"text_fields": ["review"]},
                            "column 'review' not found in the train split"),
    "one class": ({"train.jsonl": jsonl([{"text": "good", "label": 1}] * 6)}, {},
                  ("label column 'label' has a single value in the train split (6 rows); "
                  "classification needs at least two classes")),
    "no labels at all": ({"train.jsonl": jsonl([{"text": "good", "label": None}] * 4)}, {},
                         "label column 'label' has no values in the train split"),
    "empty file": ({"train.jsonl": b""}, {}, "train.jsonl is empty"),
    "header only": ({"train.csv": b"text,label\n"}, {},
                    "the train split is empty (train.csv)"),
    "non-UTF-8 file": ({"train.csv": LATIN1_CSV}, {},
                       ("train.csv is not UTF-8 text: byte 0xe9 at offset 21 (line 3); "
                       "save it as UTF-8")),
    "malformed JSON Lines": ({"train.jsonl": GOOD + b'{"text": "x", \n'}, {},
                             "could not read the train split (train.jsonl): ArrowInvalid"),
    "eval label unseen in train": (
        {"train.jsonl": GOOD, "validation.jsonl": jsonl([{"text": "so so", "label": 7}])},
        {"eval_split": "validation"},
        ("label column 'label': 1 value(s) in 1 row(s) of the validation split do not occur "
         "in the train split (which has 2 labels)")),
    "unknown split": ({"train.jsonl": GOOD}, {"eval_split": "validation"},
                      "split 'validation' not found"),
}


def submit(spec: dict) -> int:
    with session_scope() as session:
        job = service.create_job(session, JobSpec.model_validate(spec))
        session.info.pop("tunedeck_pending_jobs", None)  # run in-process, not via the broker
        return job.id


def spec_for(path: Path, **dataset) -> dict:
    return {"model": "tiny-bert-never-loaded", "max_length": 32,
            "dataset": {"source": "local", "path": str(path), "train_split": "train",
                        "text_fields": ["text"], "label_field": "label", **dataset},
            "training": {"eval_strategy": "no", "max_steps": 2}}


@pytest.mark.parametrize(("files", "changes", "words"), CASES.values(), ids=CASES.keys())
def test_bad_data_fails_the_job_with_a_precise_message(settings_env, tmp_path, files, changes,
                                                       words):
    for name, content in files.items():
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(content)
    job_id = submit(spec_for(tmp_path / "data", **changes))
    assert run_job(job_id) == "failed"
    with session_scope() as session:
        job = session.get(Job, job_id)
        attempts = repository.attempts(session, job_id)
        assert job.error_type == "DataError", job.error_message
        assert words in job.error_message
        assert job.error_hint is None and "Traceback" in job.error_traceback
        assert job.global_step == 0 and repository.checkpoints(session, job_id) == []
        assert [a.outcome for a in attempts] == ["failed"]
        assert attempts[0].message.startswith("DataError: ")


def test_a_local_path_that_is_not_there(settings_env, tmp_path):
    job_id = submit(spec_for(tmp_path / "nowhere"))
    assert run_job(job_id) == "failed"
    with session_scope() as session:
        assert "does not exist on this worker" in session.get(Job, job_id).error_message


def test_an_unsupported_file_type(settings_env, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", sentiment_rows(4))
    (tmp_path / "train.txt").write_text("good\nbad\n")
    job_id = submit(spec_for(tmp_path / "train.txt"))
    assert run_job(job_id) == "failed"
    with session_scope() as session:
        assert "unsupported file type '.txt'" in session.get(Job, job_id).error_message
