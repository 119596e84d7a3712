"""The task seam: what one kind of fine-tune owns, in the order of the reference recipe.

Each task is one module in worker/recipes/ defining `RECIPE = <Recipe subclass>()`; the
runner, callback, reporter, resume and cancel only ever see this interface
(worker/training.py drives it). A task module owns: loading and checking its data,
tokenization and label encoding, the model class and its head, the collator,
compute_metrics and the prediction rows (their shapes are DESIGN.md's "Tasks" table).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_utils import PredictionOutput

from worker.data import DataError, Source, check_columns, load_split, tokenize
from worker.gpu import padding_multiple


@dataclass
class TaskData:
    """A job's data, ready for Trainer: features to train/evaluate on, the raw predict rows."""

    train: Dataset                      # model-ready features (tokenized, labels encoded)
    eval: Dataset | None                # same, or None when the spec has no eval_split
    predict_raw: Dataset | None         # raw rows of the split trainer.predict runs on
    predict_split: str | None           # its name (test_split, else eval_split)
    predict_labeled: bool               # whether predict_raw carries labels/references
    tokenizer: Any                      # the processing_class handed to Trainer
    label_names: list[str] | None = None   # stored on the job (None for causal-lm-sft)
    extra: dict[str, Any] = field(default_factory=dict)  # whatever else the task needs later


class Recipe:
    """One task's recipe. Subclasses override what differs; the defaults are plain Trainer."""

    task: str = ""

    def load(self, spec: dict, source: Source) -> TaskData:
        """Load, check, label-encode and tokenize the splits (recipe steps 1-2)."""
        raise NotImplementedError

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        """The model with its head (fp32 master weights) and notices to show as info."""
        raise NotImplementedError

    def collator(self, spec: dict, data: TaskData) -> Callable | None:
        raise NotImplementedError

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        """Trainer's compute_metrics for eval (None: eval loss only)."""
        return None

    def trainer(self, *, model: PreTrainedModel, args: TrainingArguments, data: TaskData,
                spec: dict, collator: Callable | None, compute_metrics: Callable | None,
                callbacks: list) -> Trainer:
        """The Trainer (or a subclass such as TRL's SFTTrainer) for this task."""
        return Trainer(model=model, args=args, train_dataset=data.train,
                       eval_dataset=data.eval, data_collator=collator,
                       processing_class=data.tokenizer, compute_metrics=compute_metrics,
                       callbacks=callbacks)

    def features(self, spec: dict, data: TaskData, split: Dataset) -> Dataset:
        """The model inputs of raw split rows (tokenized, labels encoded)."""
        raise NotImplementedError

    def predict(self, trainer: Trainer, spec: dict,
                data: TaskData) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """trainer.predict on the test split (else eval): rows in DESIGN.md's shape for this
        task (each with `split` and `row`) and the `test/<name>` metrics."""
        raw = data.predict_raw
        assert raw is not None
        output = predict_in_order(trainer, self.features(spec, data, raw))
        return (self.rows(spec, data, raw, logits_of(output.predictions)),
                prefixed(output.metrics, "test"))

    def rows(self, spec: dict, data: TaskData, raw: Dataset,
             logits: Any) -> list[dict[str, Any]]:
        """The prediction rows of raw examples from the model's outputs: what predict()
        stores and what Try it (worker/tryit.py) answers, built by the same code."""
        raise NotImplementedError

    def save_final(self, trainer: Trainer, final_dir: Path) -> list[Path]:
        """Save the trained model; returns the directories to record as checkpoints
        (`final`, and for a LoRA job also `final-merged`)."""
        trainer.save_model(str(final_dir))
        return [final_dir]


def head_notice(model_name: str, loading_info: dict) -> list[str]:
    """The info line for a head that from_pretrained initialized rather than loaded."""
    missing = sorted(loading_info.get("missing_keys") or [])
    if not missing:
        return []
    shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
    return [(f"Some weights of the model were newly initialized, not loaded from {model_name}: "
             f"{shown}. This is expected: this job trains the new task head.")]


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


def pretrained(auto_class: Any, spec: dict, head: str,
               **kwargs: Any) -> tuple[PreTrainedModel, list[str]]:
    """auto_class.from_pretrained(spec's model) in fp32, honouring the spec's
    ignore_mismatched_sizes, and the notices to show; `head` says what this job's head is
    (for the error when the checkpoint's head has another shape)."""
    # fp32 master weights whatever the checkpoint stores: transformers 5 would otherwise load
    # an fp16 checkpoint as fp16, which AMP's gradient scaler refuses, and bf16 as pure bf16.
    try:
        model, info = auto_class.from_pretrained(
            spec["model"], output_loading_info=True, dtype=torch.float32,
            ignore_mismatched_sizes=bool(spec.get("ignore_mismatched_sizes")), **kwargs)
    except RuntimeError as exc:
        if "ignore_mismatched_sizes" not in str(exc):
            raise
        raise DataError(
            f"{spec['model']} has weights whose shapes differ from this job's model (a head "
            f"for another label count: {head}); set ignore_mismatched_sizes: true in the spec "
            "to re-initialise them") from exc
    return model, head_notice(spec["model"], info) + mismatch_notice(spec["model"], info)


def predict_in_order(trainer: Trainer, features: Dataset) -> PredictionOutput:
    """trainer.predict(features) (metrics prefixed `test_`) with the predictions in the rows'
    order. With train_sampling_strategy group_by_length (the Fast preset's) transformers also
    length-groups the eval/predict batches, so trainer.predict would hand the predictions back
    shuffled against the rows; the prediction rows pair each input with its own output."""
    args = trainer.args
    if args.train_sampling_strategy != "group_by_length":
        return trainer.predict(features, metric_key_prefix="test")
    trainer.args = copy.copy(args)  # a shallow copy: no __post_init__ re-run
    trainer.args.train_sampling_strategy = "sequential"
    try:
        return trainer.predict(features, metric_key_prefix="test")
    finally:
        trainer.args = args


def logits_of(predictions: Any) -> np.ndarray:
    """The logits array of trainer.predict's output (the first item when it is a tuple)."""
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return np.asarray(logits, dtype=np.float64)


def prefixed(metrics: dict[str, Any] | None, prefix: str) -> dict[str, float]:
    """Trainer's `<prefix>_<name>` numbers as tunedeck's `<prefix>/<name>` series."""
    cut = len(prefix) + 1
    return {f"{prefix}/{k[cut:]}": float(v) for k, v in (metrics or {}).items()
            if k.startswith(f"{prefix}_") and isinstance(v, int | float)}


@dataclass
class RawSplits:
    """A job's splits as loaded, their columns checked; `test` is None without a test_split."""

    train: Dataset
    eval: Dataset | None
    test: Dataset | None
    predict_split: str | None   # test_split, else eval_split


def load_splits(source: Source, ds: dict, columns: list[str],
                test_columns: list[str]) -> RawSplits:
    """Load train/eval/test; train and eval must hold `columns`, test `test_columns` (a test
    split may come without labels)."""
    train = load_split(source, ds["train_split"])
    check_columns(train, ds["train_split"], columns)
    evaluation = test = None
    if ds.get("eval_split"):
        evaluation = load_split(source, ds["eval_split"])
        check_columns(evaluation, ds["eval_split"], columns)
    if ds.get("test_split"):
        test = load_split(source, ds["test_split"])
        check_columns(test, ds["test_split"], test_columns)
    return RawSplits(train, evaluation, test, ds.get("test_split") or ds.get("eval_split"))


class TextInputRecipe(Recipe):
    """The sequence-classification tasks: one or two text columns, padded per batch."""

    def features(self, spec: dict, data: TaskData, split: Dataset) -> Dataset:
        """Tokenized model inputs (and `labels`) of one split."""
        return tokenize(split, data.tokenizer, spec["dataset"]["text_fields"],
                        spec.get("max_length", 128))

    def collator(self, spec: dict, data: TaskData) -> Callable | None:
        return DataCollatorWithPadding(data.tokenizer,
                                       pad_to_multiple_of=padding_multiple(spec))
