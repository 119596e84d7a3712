"""text-regression: one number per text, ...ForSequenceClassification with num_labels=1
(MSE loss, the raw output is the prediction).

load -> label-encode (float) -> tokenize -> DataCollatorWithPadding -> model -> Trainer
-> compute_metrics -> predict.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import Dataset, Value
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from worker import data as D
from worker.metrics import REGRESSION, regression_metrics
from worker.recipes.base import (
    TaskData,
    TextInputRecipe,
    load_splits,
    logits_of,
    pretrained,
)


def number(value: Any) -> float | None:
    """A cell as a finite float, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def encode(dataset: Dataset, split: str, label_field: str) -> Dataset:
    """Add `labels` (float32); every row must hold a finite number."""
    values = [number(v) for v in dataset[label_field]]
    bad = [i for i, v in enumerate(values) if v is None]
    if bad:
        raise D.DataError(f"label column {label_field!r} must hold numbers: {len(bad)} row(s) "
                          f"of the {split} split do not (first: row {bad[0]})")
    if "labels" in dataset.column_names:  # the label column itself may be called labels
        dataset = dataset.remove_columns("labels")
    return dataset.add_column("labels", values, feature=Value("float32"))


def unlabeled(dataset: Dataset, label_field: str) -> bool:
    return label_field not in dataset.column_names or all(
        v is None for v in dataset[label_field])


class TextRegression(TextInputRecipe):
    """A score per example; MSE on the single output."""

    task = "text-regression"

    def load(self, spec: dict, source: D.Source) -> TaskData:
        ds = spec["dataset"]
        field = ds["label_field"]
        raw = load_splits(source, ds, [*ds["text_fields"], field], ds["text_fields"])
        train = encode(raw.train, ds["train_split"], field)
        evaluation = encode(raw.eval, ds["eval_split"], field) if raw.eval is not None else None
        predict_raw, labeled = evaluation, evaluation is not None
        if raw.test is not None:
            predict_raw, labeled = raw.test, not unlabeled(raw.test, field)
            if not labeled and field in raw.test.column_names:  # empty cells: not `labels`
                predict_raw = raw.test.remove_columns(field)
            if labeled:
                predict_raw = encode(raw.test, ds["test_split"], field)
        data = TaskData(train=train, eval=evaluation, predict_raw=predict_raw,
                        predict_split=raw.predict_split, predict_labeled=labeled,
                        tokenizer=AutoTokenizer.from_pretrained(spec["model"]),
                        label_names=None)
        data.train = self.features(spec, data, train)
        data.eval = self.features(spec, data, evaluation) if evaluation is not None else None
        return data

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        return pretrained(AutoModelForSequenceClassification, spec, "this job's head has one output",
                          num_labels=1, problem_type="regression")

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        wanted = spec.get("metrics") or list(REGRESSION)

        def compute(eval_pred: Any) -> dict[str, float]:
            out = regression_metrics(logits_of(eval_pred.predictions).ravel(),
                                     np.asarray(eval_pred.label_ids))
            return {k: v for k, v in out.items() if k in wanted}

        return compute

    def rows(self, spec: dict, data: TaskData, raw: Dataset,
             logits: Any) -> list[dict[str, Any]]:
        """The prediction rows of `raw` from the model's outputs (also Try it's rows)."""
        predicted = np.asarray(logits, dtype=np.float64).ravel()
        text_fields = spec["dataset"]["text_fields"]
        columns = {f: raw[f] for f in text_fields}
        truth: list[Any] = list(raw["labels"]) if data.predict_labeled else [None] * len(raw)
        rows = []
        for i, value in enumerate(predicted):
            true = float(truth[i]) if truth[i] is not None else None
            rows.append({
                "split": data.predict_split, "row": i,
                "inputs": {f: columns[f][i] for f in text_fields},
                "label": true, "prediction": float(value),
                # signed: prediction minus label (the view sorts by its size)
                "error": float(value) - true if true is not None else None,
            })
        return rows


RECIPE = TextRegression()
