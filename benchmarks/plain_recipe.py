"""The reference recipe of DESIGN.md as a plain script: no tunedeck, no database, no callback.

Benchmark P1 runs it side by side with a tunedeck job of the same spec and seed; both must end
with the same eval accuracy, and tunedeck's train samples/s must stay within 1% of this one's.

    .venv/bin/python -m benchmarks.plain_recipe --model DIR --data ../shared/data/mrpc \
        [--train-rows 384] [--epochs 1] [--batch-size 16] [--max-length 128] [--seed 42]

The recipe: load_dataset("json") -> tokenize with truncation (batched map, text pairs) ->
DataCollatorWithPadding -> AutoModelForSequenceClassification(num_labels=2) ->
TrainingArguments -> Trainer.train -> compute_metrics (argmax -> accuracy, F1) ->
trainer.predict on the validation split. As in worker/training.py, set_seed(seed) runs right
before the model is built, so the new classification head starts from the same weights.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy and binary F1 (positive class 1) of the argmax of the logits."""
    predictions = np.argmax(eval_pred.predictions, axis=-1)
    labels = eval_pred.label_ids
    true_pos = float(np.sum((predictions == 1) & (labels == 1)))
    precision = true_pos / max(1.0, float(np.sum(predictions == 1)))
    recall = true_pos / max(1.0, float(np.sum(labels == 1)))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float(np.mean(predictions == labels)), "f1": f1}


def run(model: str, data_files: dict[str, str], training: dict[str, Any], output_dir: str,
        max_length: int = 128) -> dict[str, float]:
    """Train and evaluate once; returns Trainer's train metrics, eval and predict metrics."""
    raw = load_dataset("json", data_files=data_files)
    tokenizer = AutoTokenizer.from_pretrained(model)

    def tokenize(batch: dict[str, list]) -> dict:
        return tokenizer(batch["sentence1"], batch["sentence2"], truncation=True,
                         max_length=max_length)

    encoded = raw.map(tokenize, batched=True,
                      remove_columns=["sentence1", "sentence2", "idx"])
    args = TrainingArguments(output_dir=output_dir, report_to="none", disable_tqdm=True,
                             **training)
    set_seed(args.seed)
    classifier = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    trainer = Trainer(model=classifier, args=args, train_dataset=encoded["train"],
                      eval_dataset=encoded["validation"],
                      data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=compute_metrics)
    result = trainer.train()
    metrics = dict(result.metrics)
    metrics.update(trainer.evaluate())
    metrics.update(trainer.predict(encoded["validation"], metric_key_prefix="test").metrics)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def subset_files(source: Path, target: Path, train_rows: int,
                 eval_rows: int | None = None) -> dict[str, str]:
    """The first `train_rows` training rows and the validation rows, as JSON Lines in `target`."""
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in (("train", train_rows), ("validation", eval_rows)):
        lines = (source / f"{split}.jsonl").read_text().splitlines(keepends=True)
        (target / f"{split}.jsonl").write_text("".join(lines[:rows]))
        files[split] = str(target / f"{split}.jsonl")
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local checkpoint directory")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mrpc"),
                        help="a folder with train.jsonl and validation.jsonl")
    parser.add_argument("--train-rows", type=int, default=384)
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    training = {"num_train_epochs": args.epochs, "per_device_train_batch_size": args.batch_size,
                "per_device_eval_batch_size": 32, "eval_strategy": "epoch",
                "save_strategy": "no", "logging_steps": 5, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="plain-recipe-") as tmp:
        files = subset_files(args.data, Path(tmp) / "data", args.train_rows)
        metrics = run(args.model, files, training, str(Path(tmp) / "output"), args.max_length)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
