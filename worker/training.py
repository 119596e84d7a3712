"""The reference recipe (DESIGN.md): data -> tokenizer -> model -> TrainingArguments -> Trainer.

No Celery and no database here: progress leaves through the reporter handed in, which the
StreamingCallback feeds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

from worker import data as D
from worker.callbacks import Reporter, StreamingCallback
from worker.checkpoints import DiskSpaceCallback
from worker.gpu import resolve_precision
from worker.metrics import GLUE_EXTRA, MetricSuite, softmax

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    train: Dataset
    eval: Dataset | None
    predict_raw: Dataset | None
    predict_split: str | None
    predict_labeled: bool
    labels: D.Labels


@dataclass
class Outcome:
    cancelled: bool
    global_step: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    final_dir: Path | None = None


def prepare(spec: dict, source: D.Source) -> Prepared:
    """Load the splits, check columns, build labels (recipe step 1)."""
    ds = spec["dataset"]
    columns = [*ds["text_fields"], ds["label_field"]]
    train = D.load_split(source, ds["train_split"])
    D.check_columns(train, ds["train_split"], columns)
    labels = D.labels_from(train, ds["label_field"])
    train = D.encode_labels(train, ds["train_split"], ds["label_field"], labels)
    evaluation = None
    if ds.get("eval_split"):
        evaluation = D.load_split(source, ds["eval_split"])
        D.check_columns(evaluation, ds["eval_split"], columns)
        evaluation = D.encode_labels(evaluation, ds["eval_split"], ds["label_field"], labels)
    predict_split = ds.get("test_split") or ds.get("eval_split")
    predict_raw, labeled = None, False
    if ds.get("test_split"):
        predict_raw = D.load_split(source, ds["test_split"])
        D.check_columns(predict_raw, ds["test_split"], ds["text_fields"])
        labeled = not D.unlabeled(predict_raw, ds["label_field"], labels)
        if labeled:
            predict_raw = D.encode_labels(predict_raw, ds["test_split"], ds["label_field"],
                                          labels)
    elif evaluation is not None:
        predict_raw, labeled = evaluation, True
    return Prepared(train, evaluation, predict_raw, predict_split, labeled, labels)


def metric_names(spec: dict) -> list[str]:
    names = list(spec.get("metrics") or ["accuracy", "f1"])
    ds = spec["dataset"]
    if ds.get("source") == "hub" and ds["path"] in ("glue", "nyu-mll/glue"):
        names += GLUE_EXTRA.get(ds.get("config") or "", [])
    return list(dict.fromkeys(names))


def training_arguments(spec: dict, output_dir: Path, has_eval: bool) -> TrainingArguments:
    options = dict(spec.get("training") or {})
    resolve_precision(bool(options.get("fp16")), bool(options.get("bf16")))
    if not has_eval:
        options["eval_strategy"] = "no"
        if options.get("load_best_model_at_end"):
            raise D.DataError("load_best_model_at_end needs dataset.eval_split")
    return TrainingArguments(output_dir=str(output_dir), report_to="none", disable_tqdm=True,
                             **options)


def head_notice(model_name: str, loading_info: dict) -> list[str]:
    missing = sorted(loading_info.get("missing_keys") or [])
    if not missing:
        return []
    shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
    return [(f"Some weights of the model were newly initialized, not loaded from {model_name}: "
             f"{shown}. This is expected: this job trains the new classification head.")]


def mismatch_notice(model_name: str, loading_info: dict) -> list[str]:
    """Which weights ignore_mismatched_sizes re-initialised, with the shapes that differed."""
    mismatched = sorted(loading_info.get("mismatched_keys") or [])
    if not mismatched:
        return []
    shown = ", ".join(f"{key} ({_shape(old)} -> {_shape(new)})"
                      for key, old, new in mismatched[:6])
    more = " ..." if len(mismatched) > 6 else ""
    return [(f"ignore_mismatched_sizes: weights of {model_name} whose shapes differ from this "
             f"job's model were re-initialised: {shown}{more}.")]


def _shape(size: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in size)


def build_model(spec: dict, labels: D.Labels):
    # fp32 master weights whatever the checkpoint stores: transformers 5 would otherwise load
    # an fp16 checkpoint as fp16, which AMP's gradient scaler refuses, and bf16 as pure bf16.
    ignore = bool(spec.get("ignore_mismatched_sizes"))
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            spec["model"], num_labels=len(labels.names), id2label=labels.id2label,
            label2id=labels.label2id, output_loading_info=True, dtype=torch.float32,
            ignore_mismatched_sizes=ignore)
    except RuntimeError as exc:
        if "ignore_mismatched_sizes" not in str(exc):
            raise
        raise D.DataError(
            f"{spec['model']} has weights whose shapes differ from this job's model (a "
            f"classification head for another label count: this data has {len(labels.names)} "
            "labels); set ignore_mismatched_sizes: true in the spec to re-initialise them"
        ) from exc
    return model, head_notice(spec["model"], info) + mismatch_notice(spec["model"], info)


def train(spec: dict, source: D.Source, job_dir: Path, reporter: Reporter,
          resume_from: str | None = None, use_evaluate: bool = True) -> Outcome:
    """Run the whole recipe for one job; returns what the runner stores."""
    ds = spec["dataset"]
    prepared = prepare(spec, source)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    max_length = spec.get("max_length", 128)

    def tok(split: Dataset) -> Dataset:
        return D.tokenize(split, tokenizer, ds["text_fields"], max_length)

    train_ds = tok(prepared.train)
    eval_ds = tok(prepared.eval) if prepared.eval is not None else None
    args = training_arguments(spec, job_dir / "output", eval_ds is not None)
    set_seed(args.seed)  # before the model is built, as run_glue does: the head init is seeded
    model, notices = build_model(spec, prepared.labels)
    reporter.job_fields(label_names=prepared.labels.names, info=notices)
    suite = None  # resolving metrics can try the Hub; a job that never evaluates skips it
    if eval_ds is not None or prepared.predict_raw is not None:
        suite = MetricSuite(metric_names(spec), len(prepared.labels.names), use_evaluate)
    samples_per_step = (args.per_device_train_batch_size * args.gradient_accumulation_steps
                        * max(1, args.world_size))
    callback = StreamingCallback(reporter, samples_per_step)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer, compute_metrics=suite,
                      callbacks=[callback, DiskSpaceCallback(reporter.notice)])
    result = trainer.train(resume_from_checkpoint=resume_from)
    step = trainer.state.global_step
    if callback.cancelled:
        return Outcome(cancelled=True, global_step=step)
    final = {f"train/{k}": float(v) for k, v in result.metrics.items()
             if isinstance(v, int | float)}
    if eval_ds is not None:
        final.update(callback.eval_at.get(step) or _evaluate(trainer))
    outcome = Outcome(cancelled=False, global_step=step, final_metrics=final)
    if prepared.predict_raw is not None:
        outcome.predictions, predict_metrics = predict(trainer, prepared, spec, tok)
        final.update(predict_metrics)
    outcome.final_dir = job_dir / "final"
    trainer.save_model(str(outcome.final_dir))
    return outcome


def _evaluate(trainer: Trainer) -> dict[str, float]:
    metrics = trainer.evaluate()
    return {f"eval/{k[5:]}": float(v) for k, v in metrics.items()
            if k.startswith("eval_") and isinstance(v, int | float)}


def predict(trainer: Trainer, prepared: Prepared, spec: dict, tok) -> tuple[list, dict]:
    """trainer.predict on the test split (else eval): one row per example."""
    raw = prepared.predict_raw
    features = tok(raw)
    output = trainer.predict(features, metric_key_prefix="test")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else \
        output.predictions
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    names = prepared.labels.names
    text_fields = spec["dataset"]["text_fields"]
    columns = {f: raw[f] for f in text_fields}
    true_ids = raw["labels"] if prepared.predict_labeled else [None] * len(raw)
    rows = []
    for i, probs in enumerate(probabilities):
        predicted = int(probs.argmax())
        true = true_ids[i]
        rows.append({
            "split": prepared.predict_split, "row": i,
            "inputs": {f: columns[f][i] for f in text_fields},
            "label": names[true] if true is not None else None,
            "prediction": names[predicted], "confidence": float(probs[predicted]),
            "probabilities": {names[j]: round(float(p), 6) for j, p in enumerate(probs)},
            "correct": (predicted == true) if true is not None else None,
        })
    metrics = {f"test/{k[5:]}": float(v) for k, v in (output.metrics or {}).items()
               if k.startswith("test_") and isinstance(v, int | float)}
    return rows, metrics
