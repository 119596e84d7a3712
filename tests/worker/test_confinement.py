"""The worker side of issue 17: it re-checks local paths before opening anything, runs a job in
its job dir, keeps data values out of messages, and passes ignore_mismatched_sizes through.

The submit-time check is in tests/app/test_paths.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from datasets import Dataset

from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job
from tests.app.conftest import TOKEN
from tests.app.factories import make_job
from tests.fixtures import reset_caches, tiny_spec, write_jsonl
from worker import data as D
from worker.runner import run_job

SECRET = "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def auth_on(monkeypatch: pytest.MonkeyPatch, roots: str = "") -> None:
    monkeypatch.setenv("TUNEDECK_API_TOKENS", TOKEN)
    monkeypatch.setenv("TUNEDECK_LOCAL_ROOTS", roots)
    reset_caches()


def test_the_worker_refuses_a_path_outside_the_roots(settings_env, tiny_model, make_dataset,
                                                     monkeypatch):
    """A row that bypassed the submit check (an older row, a roots change) reads nothing."""
    dataset = make_dataset(train=16, validation=8)
    job_id = make_job(spec=tiny_spec(tiny_model, dataset))  # no submit-time check here
    auth_on(monkeypatch, roots=str(tiny_model))  # the model is inside, the dataset is not
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert job.error_type == "OutsideLocalRoots"
    assert job.error_message == (
        f"dataset.path: {dataset} is outside TUNEDECK_LOCAL_ROOTS (allowed: "
        f"{tiny_model.resolve()}; symlinks and .. are resolved first)")
    assert job.label_names is None and job.info == []  # the data was never loaded
    assert not (get_settings().job_dir(job_id) / "output").exists()


def test_the_worker_refuses_a_model_outside_the_roots(settings_env, tiny_model, make_dataset,
                                                      monkeypatch):
    dataset = make_dataset(train=16, validation=8)
    job_id = make_job(spec=tiny_spec(tiny_model, dataset))
    auth_on(monkeypatch, roots=str(dataset))
    assert run_job(job_id) == "failed"
    message = job_row(job_id).error_message
    assert message.startswith(f"model: {tiny_model} is outside TUNEDECK_LOCAL_ROOTS")


def test_inside_the_roots_the_job_trains_with_auth_on(settings_env, tiny_model, make_dataset,
                                                      monkeypatch, tmp_path):
    dataset = make_dataset(train=16, validation=8)
    job_id = make_job(spec=tiny_spec(tiny_model, dataset, num_train_epochs=1))
    auth_on(monkeypatch, roots=f"{tmp_path},{tiny_model}")
    assert run_job(job_id) == "succeeded"


def test_a_job_runs_in_its_job_dir_not_the_workers_cwd(settings_env, tiny_model, make_dataset,
                                                       tmp_path, monkeypatch):
    """evaluate.load("accuracy") tries a local ./accuracy/accuracy.py before the Hub (offline
    here, so it would fall back to it): a file planted in the worker's cwd must not run."""
    cwd = tmp_path / "worker-cwd"
    marker = tmp_path / "planted-code-ran"
    (cwd / "accuracy").mkdir(parents=True)
    (cwd / "accuracy" / "accuracy.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    monkeypatch.chdir(cwd)
    spec = tiny_spec(tiny_model, make_dataset(train=16, validation=8), num_train_epochs=1)
    job_id = make_job(spec={**spec, "metrics": ["accuracy"]})
    assert run_job(job_id) == "succeeded"
    assert not marker.exists()
    assert Path.cwd() == cwd  # restored after the job
    assert "eval/accuracy" in job_row(job_id).final_metrics


def test_a_relative_local_path_still_resolves_from_the_workers_cwd(settings_env, tiny_model,
                                                                   make_dataset, monkeypatch):
    """Auth off: a relative dataset path means what it meant before jobs ran in their dir."""
    dataset = make_dataset(train=16, validation=8)
    monkeypatch.chdir(dataset.parent)
    spec = tiny_spec(tiny_model, Path(dataset.name), num_train_epochs=1)
    assert run_job(make_job(spec=spec)) == "succeeded"


# ---------------------------------------------------------------- messages without data values


def test_a_single_secret_label_is_not_in_the_message(settings_env, tiny_model, tmp_path):
    """The issue's repro: label_field private_key, whose only value is a secret."""
    rows = [{"text": "the movie was good .", "private_key": SECRET}] * 6
    write_jsonl(tmp_path / "keys" / "train.jsonl", rows)
    spec = tiny_spec(tiny_model, tmp_path / "keys", eval_strategy="no")
    spec["dataset"].update(label_field="private_key", eval_split=None)
    job_id = make_job(spec=spec)
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert ("label column 'private_key' has a single value in the train split (6 rows)"
            in job.error_message)
    for text in (job.error_message, job.error_traceback, json.dumps(job.info)):
        assert "PRIVATE KEY" not in text and "MIIEvQ" not in text


def test_an_unseen_eval_label_is_counted_not_shown():
    labels = D.labels_from(Dataset.from_dict({"label": ["a", "b", "a"]}), "label")
    evaluation = Dataset.from_dict({"label": ["a", SECRET, SECRET, "other-secret"]})
    with pytest.raises(D.DataError) as caught:
        D.encode_labels(evaluation, "validation", "label", labels)
    assert str(caught.value) == (
        "label column 'label': 2 value(s) in 3 row(s) of the validation split do not occur in "
        "the train split (which has 2 labels)")


def test_a_csv_parse_error_names_the_line_not_its_text(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "train.csv").write_text(f"text,label\nfine,1\n{SECRET},x,y\n")
    with pytest.raises(D.DataError) as caught:
        D.load_split(D.local_source(folder), "train")
    message = str(caught.value)
    assert "could not read the train split (train.csv)" in message
    assert "Expected 2 fields in line 3, saw 3" in message and "PRIVATE" not in message


def test_column_names_are_capped_in_the_message():
    dataset = Dataset.from_dict({f"{'c' * 300}{i}": [1] for i in range(40)})
    with pytest.raises(D.DataError) as caught:
        D.check_columns(dataset, "train", ["text"])
    message = str(caught.value)
    assert "and 10 more" in message and len(message) < 30 * 210


# ---------------------------------------------------------------- ignore_mismatched_sizes


@pytest.fixture(scope="module")
def three_label_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT fine-tuned elsewhere as a 3-label classifier."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    path = tmp_path_factory.mktemp("three-labels")
    BertForSequenceClassification.from_pretrained(tiny_model, num_labels=3).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(path)
    return path


def test_another_label_count_fails_with_the_way_out(settings_env, three_label_model,
                                                    make_dataset):
    spec = tiny_spec(three_label_model, make_dataset(train=16, validation=8))
    job_id = make_job(spec=spec)
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert job.error_type == "DataError"
    assert "this data has 2 labels" in job.error_message
    assert "set ignore_mismatched_sizes: true" in job.error_message


def test_ignore_mismatched_sizes_reinitialises_the_head(settings_env, three_label_model,
                                                        make_dataset):
    spec = tiny_spec(three_label_model, make_dataset(train=16, validation=8),
                     num_train_epochs=1)
    job_id = make_job(spec={**spec, "ignore_mismatched_sizes": True})
    assert run_job(job_id) == "succeeded"
    (notice,) = [n for n in job_row(job_id).info if "ignore_mismatched_sizes" in n]
    assert "classifier.bias (3 -> 2)" in notice and "classifier.weight (3x32 -> 2x32)" in notice
    assert os.path.isdir(get_settings().job_dir(job_id) / "final")
