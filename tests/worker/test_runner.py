"""The recipe end to end in-process: run_job on a tiny BERT and generated data."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from transformers import AutoModelForSequenceClassification

from app.db import session_scope
from app.jobs import repository, series, service
from app.jobs.models import Job, MetricPoint, Prediction
from app.jobs.schemas import JobSpec
from tests.fixtures import tiny_spec
from worker.runner import latest_checkpoint, run_job


def submit(spec: dict) -> int:
    with session_scope() as session:
        job = service.create_job(session, JobSpec.model_validate(spec))
        session.info.pop("tunedeck_pending_jobs", None)  # run in-process, not via the broker
        return job.id


def job_row(job_id: int) -> Job:
    with session_scope() as session:
        return session.get(Job, job_id)


def test_tiny_job_trains_and_stores_everything(settings_env, tiny_model, make_dataset):
    dataset = make_dataset(train=32, validation=16)
    job_id = submit(tiny_spec(tiny_model, dataset))
    assert run_job(job_id) == "succeeded"
    job = job_row(job_id)
    assert job.status == "succeeded" and job.global_step == 8  # 32 rows / 8 x 2 epochs
    assert job.label_names == ["0", "1"]
    assert any("newly initialized" in note for note in job.info)
    with session_scope() as session:
        charted = series.metric_series(session, job_id).series
        assert charted["train/loss"].steps == list(range(1, 9))  # logging_steps=1
        assert charted["eval/accuracy"].steps == [4, 8] and len(charted["eval/f1"].steps) == 2
        assert "train/train_runtime" in charted and "train/learning_rate" in charted
        names = [c.name for c in repository.checkpoints(session, job_id)]
        assert names == ["checkpoint-4", "checkpoint-8", "final"]
        assert session.scalar(select(func.count(Prediction.id)).where(
            Prediction.job_id == job_id)) == 16
    assert job.final_metrics["eval/accuracy"] == charted["eval/accuracy"].values[-1]
    final = Path(settings_env["TUNEDECK_DATA_DIR"]) / "jobs" / str(job_id) / "final"
    model = AutoModelForSequenceClassification.from_pretrained(final)
    assert model.config.id2label == {0: "0", 1: "1"}


def test_string_labels_and_text_pairs(settings_env, tiny_model, make_dataset):
    dataset = make_dataset(train=24, validation=8, test=8, string_labels=True, pair=True)
    spec = tiny_spec(tiny_model, dataset, num_train_epochs=1)
    spec["dataset"].update(text_fields=["sentence1", "sentence2"], test_split="test")
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    job = job_row(job_id)
    assert job.label_names == ["negative", "positive"]
    with session_scope() as session:
        rows, total = repository.predictions(session, job_id, errors_only=False, offset=0,
                                             limit=100)
        assert total == 8
        assert {r.split for r in rows} == {"test"}
        assert {r.label for r in rows} == {"negative", "positive"}
        assert set(rows[0].inputs) == {"sentence1", "sentence2"}
        assert abs(sum(rows[0].probabilities.values()) - 1) < 1e-4
        assert all(r.correct == (r.label == r.prediction) for r in rows)
    assert "test/accuracy" in job.final_metrics


def test_missing_column_fails_the_job_with_its_name(settings_env, tiny_model, make_dataset):
    spec = tiny_spec(tiny_model, make_dataset())
    spec["dataset"]["text_fields"] = ["review"]
    job_id = submit(spec)
    assert run_job(job_id) == "failed"
    job = job_row(job_id)
    assert job.error_type == "DataError"
    assert "'review' not found in the train split" in job.error_message
    assert "Traceback" in job.error_traceback


def test_single_label_value_fails_the_job(settings_env, tiny_model, tmp_path):
    from tests.fixtures import write_jsonl

    write_jsonl(tmp_path / "one" / "train.jsonl", [{"text": "good", "label": 1}] * 8)
    spec = tiny_spec(tiny_model, tmp_path / "one", eval_strategy="no")
    spec["dataset"]["eval_split"] = None
    job_id = submit(spec)
    assert run_job(job_id) == "failed"
    assert "has a single value in the train split (8 rows)" in job_row(job_id).error_message


def test_second_delivery_is_dropped(settings_env, tiny_model, make_dataset):
    spec = tiny_spec(tiny_model, make_dataset(train=8, validation=0), num_train_epochs=1)
    spec["dataset"]["eval_split"] = None
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    assert run_job(job_id) == "skipped"
    with session_scope() as session:
        points = session.scalar(select(func.count(MetricPoint.id)).where(
            MetricPoint.job_id == job_id, MetricPoint.name == "train/loss"))
    assert points == 1


def test_latest_checkpoint_ignores_incomplete(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        if complete:
            (path / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert latest_checkpoint(tmp_path / "missing") is None
