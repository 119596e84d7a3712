"""text-classification: one label per text (or text pair), ...ForSequenceClassification.

The reference recipe (DESIGN.md) as run_glue runs it: load -> label-encode -> tokenize ->
DataCollatorWithPadding -> model -> Trainer -> compute_metrics -> predict.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from worker import data as D
from worker.metrics import GLUE_EXTRA, MetricSuite, softmax
from worker.recipes.base import (
    TaskData,
    TextInputRecipe,
    pretrained,
)


def metric_names(spec: dict) -> list[str]:
    names = list(spec.get("metrics") or ["accuracy", "f1"])
    ds = spec["dataset"]
    if ds.get("source") == "hub" and ds["path"] in ("glue", "nyu-mll/glue"):
        names += GLUE_EXTRA.get(ds.get("config") or "", [])
    return list(dict.fromkeys(names))


def build_model(spec: dict, labels: D.Labels) -> tuple[PreTrainedModel, list[str]]:
    return pretrained(AutoModelForSequenceClassification, spec,
                      f"this data has {len(labels.names)} labels",
                      num_labels=len(labels.names), id2label=labels.id2label,
                      label2id=labels.label2id)


class TextClassification(TextInputRecipe):
    """Single-label sequence classification (the classic MRPC recipe)."""

    task = "text-classification"

    def load(self, spec: dict, source: D.Source) -> TaskData:
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
        tokenizer = AutoTokenizer.from_pretrained(spec["model"])
        data = TaskData(train=train, eval=evaluation, predict_raw=predict_raw,
                        predict_split=predict_split, predict_labeled=labeled,
                        tokenizer=tokenizer, label_names=labels.names,
                        extra={"labels": labels})
        data.train = self.features(spec, data, train)
        data.eval = self.features(spec, data, evaluation) if evaluation is not None else None
        return data

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        return build_model(spec, data.extra["labels"])

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        return MetricSuite(metric_names(spec), len(data.label_names or []), use_evaluate)

    def rows(self, spec: dict, data: TaskData, raw: Dataset,
             logits: Any) -> list[dict[str, Any]]:
        """The prediction rows of `raw` from the model's logits (also Try it's rows)."""
        probabilities = softmax(np.asarray(logits, dtype=np.float64))
        names = data.label_names or []
        text_fields = spec["dataset"]["text_fields"]
        columns = {f: raw[f] for f in text_fields}
        true_ids = raw["labels"] if data.predict_labeled else [None] * len(raw)
        rows = []
        for i, probs in enumerate(probabilities):
            predicted = int(probs.argmax())
            true = true_ids[i]
            rows.append({
                "split": data.predict_split, "row": i,
                "inputs": {f: columns[f][i] for f in text_fields},
                "label": names[true] if true is not None else None,
                "prediction": names[predicted], "confidence": float(probs[predicted]),
                "probabilities": {names[j]: round(float(p), 6) for j, p in enumerate(probs)},
                "correct": (predicted == true) if true is not None else None,
            })
        return rows


RECIPE = TextClassification()
