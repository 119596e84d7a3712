"""Batching: the default spec draws random batches as transformers does; the Fast preset and a
spec may ask for length-grouped ones."""
from __future__ import annotations

from pathlib import Path

from transformers import DataCollatorWithPadding, Trainer

from app.jobs.schemas import JobSpec
from tests.fixtures import build_tiny_bert, tiny_spec
from worker.training import training_arguments


def spec(tmp_path: Path, **training) -> dict:
    return JobSpec.model_validate(tiny_spec(tmp_path / "model", tmp_path / "data", **training)
                                  ).model_dump(mode="json")


def test_the_default_spec_keeps_transformers_random_batches(tmp_path: Path) -> None:
    args = training_arguments(spec(tmp_path), tmp_path / "out", has_eval=False)
    assert args.train_sampling_strategy == "random"
    chosen = training_arguments(spec(tmp_path, train_sampling_strategy="group_by_length"),
                                tmp_path / "out", has_eval=False)
    assert chosen.train_sampling_strategy == "group_by_length"


def test_grouped_batches_pad_less_than_random_ones(tmp_path: Path) -> None:
    """The same rows, batch 4: grouped batches feed fewer padded positions to the model."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = build_tiny_bert(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [" ".join(["good"] * (1 + (i * 7) % 40)) for i in range(64)]
    rows = Dataset.from_dict({"text": texts, "labels": [i % 2 for i in range(64)]})
    rows = rows.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64),
                    batched=True, remove_columns=["text"])
    tokens = {}
    for sampling in ("random", "group_by_length"):
        args = training_arguments(spec(tmp_path, per_device_train_batch_size=4,
                                       train_sampling_strategy=sampling),
                                  tmp_path / sampling, has_eval=False)
        trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(
                              model_dir, num_labels=2),
                          args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          processing_class=tokenizer)
        batches = list(trainer.get_train_dataloader())
        assert sum(len(b["labels"]) for b in batches) == 64  # every row, once
        tokens[sampling] = sum(b["input_ids"].numel() for b in batches)
    real = sum(len(ids) for ids in rows["input_ids"])
    assert real <= tokens["group_by_length"] < 0.8 * tokens["random"]
