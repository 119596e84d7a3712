"""P2: tokens and step time with dynamic padding against padding to max_length, on MRPC.

Three ways to batch the MRPC train split (3,668 pairs, MiniLM's tokenizer, max_length 128,
batch 16), each built by Trainer.get_train_dataloader exactly as a job builds it:
  padded   DataCollatorWithPadding(padding="max_length"): every row padded to 128;
  dynamic  DataCollatorWithPadding() with transformers' random batches (the spec's default,
           train_sampling_strategy: random): each batch padded to its longest row;
  grouped  the Fast preset's batches: the same dynamic padding, with batches of similar
           length (train_sampling_strategy: group_by_length).
Tokens: every position fed to the model in one epoch, padding included. Step time: one
forward and backward pass of all-MiniLM-L6-v2 on the same batch positions,
the three ways interleaved step by step; medians.

    .venv/bin/python -m benchmarks.padding [--steps 8]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.jobs.schemas import FAST_TRAINING, TrainingSpec
from benchmarks.common import Row, child_env, minilm_dir, mrpc_dir, print_rows, run_child

WAYS = ("padded", "dynamic", "grouped")
TARGET = 0.5
DEFAULT_SAMPLING = TrainingSpec.model_fields["train_sampling_strategy"].default
FAST_SAMPLING = FAST_TRAINING["train_sampling_strategy"]


def trainers(model_dir: str, data: Path, work: Path) -> dict[str, Any]:
    """One Trainer per way of batching, over the same tokenized train split."""
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from worker.data import tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train = load_dataset("json", data_files={"train": str(data / "train.jsonl")}, split="train")
    train = tokenize(train.rename_column("label", "labels"), tokenizer,
                     ["sentence1", "sentence2"], 128)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    collators = {"padded": DataCollatorWithPadding(tokenizer, padding="max_length",
                                                   max_length=128),
                 "dynamic": DataCollatorWithPadding(tokenizer),
                 "grouped": DataCollatorWithPadding(tokenizer)}
    built = {}
    for way in WAYS:
        sampling = FAST_SAMPLING if way == "grouped" else DEFAULT_SAMPLING
        args = TrainingArguments(output_dir=str(work / way), report_to="none", seed=42,
                                 per_device_train_batch_size=16, disable_tqdm=True,
                                 train_sampling_strategy=sampling)
        built[way] = Trainer(model=model, args=args, train_dataset=train,
                             data_collator=collators[way], processing_class=tokenizer)
    return built


def measure(model_dir: str, data: Path, steps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tunedeck-p2-") as tmp:
        built = trainers(model_dir, data, Path(tmp))
        batches = {way: list(t.get_train_dataloader()) for way, t in built.items()}
        tokens = {way: sum(b["input_ids"].numel() for b in bs) for way, bs in batches.items()}
        real = sum(int(b["attention_mask"].sum()) for b in batches["padded"])
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        model = built["padded"].model
        model.train()
        for i in range(steps + 1):  # the first round warms up and is dropped
            for way in WAYS:
                start = time.perf_counter()
                model(**batches[way][i]).loss.backward()
                if i:
                    times[way].append(time.perf_counter() - start)
                model.zero_grad()
    return {"tokens": tokens, "real_tokens": real, "batches": len(batches["padded"]),
            "step_seconds": {way: statistics.median(t) for way, t in times.items()},
            "step_samples": times}


def run(steps: int = 8) -> list[Row]:
    model, data = minilm_dir(), mrpc_dir()
    result = run_child("benchmarks.padding", "--child", str(model), str(data), "--steps",
                       str(steps), env=child_env())
    tokens, step = result["tokens"], result["step_seconds"]
    ratio = tokens["grouped"] / tokens["padded"]
    details = {**result, "default_sampling": DEFAULT_SAMPLING, "fast_sampling": FAST_SAMPLING,
               "setup": f"MRPC train {result['batches']} batches of 16, max_length 128, "
                        f"all-MiniLM-L6-v2, {steps} interleaved steps per way"}
    return [
        Row("P2", "padded tokens per epoch, tunedeck's dynamic padding with the Fast preset's "
            f"batches ({FAST_SAMPLING}) / padded to max_length", round(ratio, 3), "x",
            f"<= {TARGET}", ratio <= TARGET, details),
        Row("P2", "  same, dynamic padding with the default batches (train_sampling_strategy: "
            f"{DEFAULT_SAMPLING}) / padded",
            round(tokens["dynamic"] / tokens["padded"], 3), "x", "report"),
        Row("P2", f"  tokens per epoch: padded / default batches ({DEFAULT_SAMPLING}) / Fast "
            f"preset's ({FAST_SAMPLING}) (real: {result['real_tokens']:,})",
            " / ".join(f"{tokens[w]:,}" for w in WAYS), "tokens", "report"),
        Row("P2", f"  train step time, Fast preset's batches ({FAST_SAMPLING}) / padded "
            "(median)",
            round(step["grouped"] / step["padded"], 3), "x", "report"),
        Row("P2", f"  train step time, default batches ({DEFAULT_SAMPLING}) / padded (median)",
            round(step["dynamic"] / step["padded"], 3), "x", "report"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "DATA"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        print(json.dumps(measure(args.child[0], Path(args.child[1]), args.steps)))
        return
    print_rows(run(args.steps))


if __name__ == "__main__":
    main()
