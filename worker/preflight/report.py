"""The numbers of a pre-flight report (per split, duplicates, steps) from SplitRows.

Every number here is plain arithmetic over the rows, so tests recompute it independently
(tests/worker/preflight/test_report.py). Percentiles are numpy's default (linear interpolation).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from worker.data import capped
from worker.preflight.rows import CLASSES, MULTI, NONE, TAGS, VALUES, SplitRows

HISTOGRAM_BINS = 30
DUPLICATE_EXAMPLES = 5
SHOWN_LABELS = 50  # label charts show the most frequent ones; the count says how many there are


def histogram(values: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, list[int]]:
    """Integer-wide bins from 0: `edges[i] <= value < edges[i + 1]` counts in counts[i]."""
    if len(values) == 0:
        return {"edges": [0, 1], "counts": [0]}
    top = int(values.max())
    width = max(1, math.ceil((top + 1) / bins))
    counts = np.bincount(values.astype(np.int64) // width)
    return {"edges": [i * width for i in range(len(counts) + 1)],
            "counts": [int(c) for c in counts]}


def value_histogram(values: list[float], bins: int = 20) -> dict[str, list[float]]:
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def token_stats(lengths: np.ndarray) -> dict[str, Any]:
    if len(lengths) == 0:
        return {"p50": 0.0, "p95": 0.0, "max": 0, "mean": 0.0, "histogram": histogram(lengths)}
    return {"p50": float(np.percentile(lengths, 50)), "p95": float(np.percentile(lengths, 95)),
            "max": int(lengths.max()), "mean": float(lengths.mean()),
            "histogram": histogram(lengths)}


def row_labels(value: Any) -> list[str]:
    """The label names a row counts under (one, several, its tags, or none)."""
    if value is None:
        return []
    if isinstance(value, list):
        return sorted(set(value))
    return [value]


def label_counts(rows: SplitRows, kind: str) -> dict[str, int]:
    if kind == TAGS:
        counts: Counter[str] = Counter(rows.tag_counts)
    elif kind in (CLASSES, MULTI):
        counts = Counter(name for v in rows.labels for name in row_labels(v))
    else:
        return {}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def truncation(rows: SplitRows, kind: str, max_length: int) -> dict[str, Any]:
    cut = rows.lengths > max_length
    out: dict[str, Any] = {"rows": int(cut.sum()),
                           "share": float(cut.mean()) if len(cut) else 0.0}
    if kind in (CLASSES, MULTI, TAGS):
        total: Counter[str] = Counter()
        hit: Counter[str] = Counter()
        for value, was_cut in zip(rows.labels, cut, strict=True):
            for name in row_labels(value):
                total[name] += 1
                hit[name] += int(was_cut)
        out["by_label"] = {name: hit[name] / n for name, n in sorted(total.items())}
    if rows.prompt_lengths is not None:
        # TRL keeps the first max_length tokens and drops rows with no completion token left
        dropped = rows.prompt_lengths >= max_length
        out["no_completion_left"] = int(dropped.sum())
    return out


def split_report(rows: SplitRows, kind: str, max_length: int,
                 train_labels: set[str] | None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "role": rows.role, "split": rows.name, "rows": len(rows.keys),
        "labeled": rows.labeled, "tokens": token_stats(rows.lengths),
        "truncated": truncation(rows, kind, max_length),
        "empty_texts": rows.empty_texts, "missing_labels": rows.missing_labels,
    }
    if rows.prompt_lengths is not None:
        report["prompt_tokens"] = token_stats(rows.prompt_lengths)
    if kind == TAGS:
        report["misaligned_rows"] = rows.misaligned
    counts = label_counts(rows, kind)
    if kind in (CLASSES, MULTI, TAGS):
        report["labels"] = {"kind": kind, "distinct": len(counts),
                            "counts": dict(list(counts.items())[:SHOWN_LABELS])}
    elif kind == VALUES:
        values = [v for v in rows.labels if v is not None]
        report["labels"] = {"kind": kind, "distinct": len(set(values)),
                            "histogram": value_histogram(values) if values else None,
                            "min": min(values, default=None), "max": max(values, default=None),
                            "mean": float(np.mean(values)) if values else None}
    if train_labels is not None and kind in (CLASSES, MULTI, TAGS) and rows.labeled:
        unseen = {name: n for name, n in counts.items() if name not in train_labels}
        rows_hit = sum(1 for v in rows.labels
                       if any(name not in train_labels for name in row_labels(v)))
        report["unseen_labels"] = {"labels": sorted(unseen), "rows": rows_hit}
    return report


def duplicates(train: SplitRows, other: SplitRows) -> dict[str, Any]:
    """Rows of `other` whose normalised text is also a train row's."""
    seen = set(train.keys)
    hits = [i for i, key in enumerate(other.keys) if key and key in seen]
    return {"split": other.name, "rows": len(hits),
            "share": len(hits) / len(other.keys) if other.keys else 0.0,
            "examples": [{"row": i, "text": capped(other.keys[i])}
                         for i in hits[:DUPLICATE_EXAMPLES]]}


def within(rows: SplitRows) -> int:
    """Rows that repeat an earlier row of the same split."""
    keys = [k for k in rows.keys if k]
    return len(keys) - len(set(keys))


def steps(training: dict[str, Any], train_rows: int) -> dict[str, Any]:
    """Optimizer steps as transformers' Trainer counts them (one device: tunedeck runs a job
    on one GPU or the CPU)."""
    batch = int(training.get("per_device_train_batch_size", 8))
    accumulation = int(training.get("gradient_accumulation_steps", 1))
    max_steps = int(training.get("max_steps", -1))
    epochs = float(training.get("num_train_epochs", 3))
    drop_last = bool(training.get("dataloader_drop_last"))
    batches = train_rows // batch if drop_last else math.ceil(train_rows / batch)
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
    total = max_steps if max_steps > 0 else math.ceil(epochs * per_epoch)
    return {"train_rows": train_rows, "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": accumulation, "effective_batch": batch * accumulation,
            "batches_per_epoch": batches, "steps_per_epoch": per_epoch,
            "epochs": epochs if max_steps <= 0 else total / per_epoch,
            "max_steps": max_steps, "total_steps": total}


def label_kind_of(task: str) -> str:
    return {"text-classification": CLASSES, "multi-label-classification": MULTI,
            "text-regression": VALUES, "token-classification": TAGS}.get(task, NONE)
