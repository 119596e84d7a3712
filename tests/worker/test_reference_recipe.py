"""The reference recipe by default: a spec that leaves train_sampling_strategy out trains exactly
as a plain transformers script with the same data, arguments and seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from app.db import session_scope
from app.jobs.models import Job
from tests.fixtures import tiny_spec
from tests.worker.test_runner import submit
from worker.runner import run_job

ARGS = {"num_train_epochs": 2, "learning_rate": 5e-3, "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8, "logging_steps": 1, "eval_strategy": "epoch",
        "save_strategy": "no", "seed": 7}


def plain_script(model_dir: Path, data: Path, out: Path) -> dict[str, float]:
    """What a user would write from transformers' text-classification example."""
    raw = load_dataset("json", data_files={"train": str(data / "train.jsonl"),
                                           "validation": str(data / "validation.jsonl")})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = raw.map(lambda b: tokenizer(b["text"], truncation=True, max_length=32),
                      batched=True).rename_column("label", "labels")
    encoded = encoded.remove_columns(["text", "idx"])
    set_seed(7)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)

    def accuracy(prediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        return {"accuracy": float((predicted == prediction.label_ids).mean())}

    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(out), report_to="none",
                                                          **ARGS),
                      train_dataset=encoded["train"], eval_dataset=encoded["validation"],
                      data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=accuracy)
    trainer.train()
    return trainer.evaluate()


def test_a_spec_without_sampling_strategy_matches_the_plain_script(settings_env, tiny_model,
                                                                   make_dataset, tmp_path):
    data = make_dataset(train=40, validation=24)
    spec = tiny_spec(tiny_model, data, **ARGS)
    assert "train_sampling_strategy" not in spec["training"]
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        final = session.get(Job, job_id).final_metrics
    plain = plain_script(tiny_model, data, tmp_path / "plain")
    assert final["eval/loss"] == plain["eval_loss"]
    assert final["eval/accuracy"] == plain["eval_accuracy"]
