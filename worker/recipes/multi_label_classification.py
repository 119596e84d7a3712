"""multi-label-classification: a set of labels per text, ...ForSequenceClassification with
problem_type="multi_label_classification" (BCE on one logit per label).

load -> label-encode (multi-hot float vectors) -> tokenize -> DataCollatorWithPadding -> model
-> Trainer -> compute_metrics (sigmoid >= threshold) -> predict.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import Dataset, Sequence, Value
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from worker import data as D
from worker.metrics import MULTI_LABEL, PER_LABEL_CAP, multi_label_metrics, sigmoid
from worker.recipes.base import (
    TaskData,
    TextInputRecipe,
    load_splits,
    logits_of,
    pretrained,
)


def label_set(value: Any, separator: str) -> list[str]:
    """One cell as a list of label names: a list as is, a string split on `separator`,
    an empty cell as no labels."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None and str(v) != ""]
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    return [str(value)]


def label_sets(dataset: Dataset, label_field: str, separator: str) -> list[list[str]]:
    return [label_set(v, separator) for v in dataset[label_field]]


def names_from(train_sets: list[list[str]], label_field: str) -> list[str]:
    names = sorted({name for labels in train_sets for name in labels})
    if len(names) < 2:
        raise D.DataError(f"label column {label_field!r} has fewer than two distinct labels in "
                          "the train split; multi-label classification needs at least two")
    return names


def encode(dataset: Dataset, split: str, label_field: str, separator: str,
           names: list[str]) -> Dataset:
    """Add `labels`: a multi-hot float vector in `names` order."""
    index = {name: i for i, name in enumerate(names)}
    sets = label_sets(dataset, label_field, separator)
    unknown = sum(1 for labels in sets if any(name not in index for name in labels))
    if unknown:
        raise D.DataError(f"label column {label_field!r}: {unknown} row(s) of the {split} split "
                          "hold labels that do not occur in the train split")
    vectors = []
    for labels in sets:
        vector = [0.0] * len(names)
        for name in labels:
            vector[index[name]] = 1.0
        vectors.append(vector)
    if "labels" in dataset.column_names:  # the label column itself may be called labels
        dataset = dataset.remove_columns("labels")
    return dataset.add_column("labels", vectors, feature=Sequence(Value("float32")))


def unlabeled(dataset: Dataset, label_field: str) -> bool:
    return label_field not in dataset.column_names or all(
        v is None for v in dataset[label_field])


def per_label_indices(train_sets: list[list[str]], names: list[str]) -> list[int]:
    """The labels that get an `f1_<label>` series: all, or the PER_LABEL_CAP most frequent."""
    counts = Counter(name for labels in train_sets for name in labels)
    order = sorted(range(len(names)), key=lambda i: (-counts[names[i]], names[i]))
    return sorted(order[:PER_LABEL_CAP])


class MultiLabelClassification(TextInputRecipe):
    """Several labels per example; a label is predicted when its sigmoid >= threshold."""

    task = "multi-label-classification"

    def load(self, spec: dict, source: D.Source) -> TaskData:
        ds = spec["dataset"]
        field, separator = ds["label_field"], ds.get("label_separator") or ","
        raw = load_splits(source, ds, [*ds["text_fields"], field], ds["text_fields"])
        train_sets = label_sets(raw.train, field, separator)
        names = names_from(train_sets, field)
        train = encode(raw.train, ds["train_split"], field, separator, names)
        evaluation = None
        if raw.eval is not None:
            evaluation = encode(raw.eval, ds["eval_split"], field, separator, names)
        predict_raw, labeled = evaluation, evaluation is not None
        if raw.test is not None:
            predict_raw, labeled = raw.test, not unlabeled(raw.test, field)
            if not labeled and field in raw.test.column_names:  # empty cells: not `labels`
                predict_raw = raw.test.remove_columns(field)
            if labeled:
                predict_raw = encode(raw.test, ds["test_split"], field, separator, names)
        data = TaskData(train=train, eval=evaluation, predict_raw=predict_raw,
                        predict_split=raw.predict_split, predict_labeled=labeled,
                        tokenizer=AutoTokenizer.from_pretrained(spec["model"]),
                        label_names=names,
                        extra={"per_label": per_label_indices(train_sets, names)})
        data.train = self.features(spec, data, train)
        data.eval = self.features(spec, data, evaluation) if evaluation is not None else None
        return data

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        names = data.label_names or []
        return pretrained(AutoModelForSequenceClassification, spec,
                          f"this data has {len(names)} labels", num_labels=len(names),
                          problem_type="multi_label_classification",
                          id2label=dict(enumerate(names)),
                          label2id={n: i for i, n in enumerate(names)})

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        wanted = spec.get("metrics") or list(MULTI_LABEL)
        threshold = float(spec.get("threshold", 0.5))
        names = data.label_names or []
        per_label = data.extra["per_label"] if "per_label_f1" in wanted else []

        def compute(eval_pred: Any) -> dict[str, float]:
            predicted = sigmoid(logits_of(eval_pred.predictions)) >= threshold
            out = multi_label_metrics(predicted, np.asarray(eval_pred.label_ids), names,
                                      per_label)
            # the f1_<label> series are there only when per_label_f1 is wanted
            return {k: v for k, v in out.items() if k in wanted or k not in MULTI_LABEL}

        return compute

    def rows(self, spec: dict, data: TaskData, raw: Dataset,
             logits: Any) -> list[dict[str, Any]]:
        """The prediction rows of `raw` from the model's logits (also Try it's rows)."""
        probabilities = sigmoid(np.asarray(logits, dtype=np.float64))
        threshold = float(spec.get("threshold", 0.5))
        names = data.label_names or []
        text_fields = spec["dataset"]["text_fields"]
        columns = {f: raw[f] for f in text_fields}
        truth: list[Any] = list(raw["labels"]) if data.predict_labeled else [None] * len(raw)
        rows = []
        for i, probs in enumerate(probabilities):
            predicted = [names[j] for j, p in enumerate(probs) if p >= threshold]
            true = [names[j] for j, v in enumerate(truth[i]) if v >= 0.5] \
                if truth[i] is not None else None
            rows.append({
                "split": data.predict_split, "row": i,
                "inputs": {f: columns[f][i] for f in text_fields},
                "labels": true, "predictions": predicted,
                "probabilities": {names[j]: round(float(p), 6) for j, p in enumerate(probs)},
                "correct": (set(predicted) == set(true)) if true is not None else None,
            })
        return rows


RECIPE = MultiLabelClassification()
