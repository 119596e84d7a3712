"""Pre-flight warnings: what is wrong with the data for this spec, and what to change.

Each warning is `{severity, code, field, message}`; `error` means training would fail or train
on nothing, `warning` that it would run but mislead, `info` worth knowing. They are ranked by
severity, then by how many rows they touch (`weight`, dropped from the answer).
"""
from __future__ import annotations

import math
from typing import Any

SEVERITY = {"error": 0, "warning": 1, "info": 2}
TRUNCATION_WARN = 0.05      # share of train rows cut at max_length worth a warning
IMBALANCE_RATIO = 10        # most / least frequent class
FEW_STEPS = 10


def warning(severity: str, code: str, field: str | None, message: str,
            weight: float = 0.0) -> dict[str, Any]:
    return {"severity": severity, "code": code, "field": field, "message": message,
            "weight": weight}


def ranked(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found.sort(key=lambda w: (SEVERITY[w["severity"]], -w["weight"]))
    return [{k: v for k, v in w.items() if k != "weight"} for w in found]


def suggest_length(p95: float, limit: int | None) -> int:
    """p95 rounded up to a multiple of 32 (187 -> 192), of 8 up to 64 (20 -> 24), at most
    the model's limit."""
    step = 8 if p95 <= 64 else 32
    wanted = max(step, math.ceil(p95 / step) * step)
    return min(wanted, limit) if limit else wanted


def pct(share: float) -> str:
    return f"{share * 100:.0f}%" if share >= 0.01 or share == 0 else f"{share * 100:.1f}%"


def truncation_warnings(split: dict[str, Any], max_length: int,
                        limit: int | None) -> list[dict[str, Any]]:
    cut = split["truncated"]
    out = []
    if cut.get("no_completion_left"):
        n = cut["no_completion_left"]
        out.append(warning(
            "error" if n == split["rows"] else "warning", "no_completion", "max_length",
            f"{n} of {split['rows']} {split['split']} rows have a prompt of max_length "
            f"{max_length} tokens or more: no completion token is left, and the trainer drops "
            "them; raise max_length or shorten the prompts", n))
    if cut["share"] < TRUNCATION_WARN or split["role"] == "test":
        return out
    p95 = split["tokens"]["p95"]
    if limit and max_length >= limit:
        advice = f"the model takes at most {limit} tokens: shorten or split the texts"
    else:
        advice = f"p95 is {p95:.0f} tokens: try {suggest_length(p95, limit)}"
    worst = sorted(((s, n) for n, s in cut.get("by_label", {}).items() if s > cut["share"]),
                   reverse=True)[:2]
    labels = "; most cut: " + ", ".join(f"{n} {pct(s)}" for s, n in worst) if worst else ""
    out.append(warning("warning", "truncated", "max_length",
                       f"{pct(cut['share'])} of {split['split']} rows are cut at max_length "
                       f"{max_length}; {advice}{labels}", cut["share"] * split["rows"]))
    return out


def label_warnings(split: dict[str, Any], task: str) -> list[dict[str, Any]]:
    out = []
    name, rows = split["split"], split["rows"]
    label_field = "dataset.tags_field" if task == "token-classification" \
        else "dataset.label_field"
    unseen = split.get("unseen_labels")
    if unseen and unseen["rows"]:
        shown = ", ".join(unseen["labels"][:5]) + (" ..." if len(unseen["labels"]) > 5 else "")
        out.append(warning("error", "unseen_labels", label_field,
                           f"{unseen['rows']} {name} rows hold labels the train split never "
                           f"has ({shown}): training refuses them; add such rows to train or "
                           "drop them", unseen["rows"]))
    if split.get("misaligned_rows"):
        out.append(warning("error", "misaligned_tags", label_field,
                           f"{split['misaligned_rows']} {name} rows have a tag count that "
                           "differs from their word count: training refuses them",
                           split["misaligned_rows"]))
    missing = split["missing_labels"]
    if missing and split["role"] != "test" and task != "multi-label-classification" \
            and task != "causal-lm-sft":
        out.append(warning("error", "missing_labels", label_field,
                           f"{missing} of {rows} {name} rows have no label: training refuses "
                           "them; fill or drop them", missing))
    elif missing and task == "multi-label-classification" and split["role"] != "test":
        out.append(warning("info", "no_labels", label_field,
                           f"{missing} of {rows} {name} rows have an empty label set (trained "
                           "as 'none of the labels')", missing))
    counts = (split.get("labels") or {}).get("counts") or {}
    if split["role"] == "train" and len(counts) >= 2 and task != "token-classification":
        top, low = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(),
                                                                  key=lambda kv: kv[1])
        if low[1] and top[1] / low[1] >= IMBALANCE_RATIO:
            out.append(warning(
                "warning", "imbalance", label_field,
                f"labels are imbalanced in {name}: {top[0]} has {top[1]} rows, {low[0]} "
                f"{low[1]}; accuracy will look good by predicting {top[0]}: watch f1 / "
                "matthews_correlation, or rebalance", top[1] / low[1]))
    return out


def text_warnings(split: dict[str, Any], fields: str) -> list[dict[str, Any]]:
    empty = split["empty_texts"]
    if not empty:
        return []
    return [warning("warning", "empty_texts", fields,
                    f"{empty} of {split['rows']} {split['split']} rows have an empty text; "
                    "drop them", empty)]


def duplicate_warnings(dupes: list[dict[str, Any]], within_train: int,
                       train_rows: int) -> list[dict[str, Any]]:
    out = []
    for d in dupes:
        if d["rows"]:
            out.append(warning(
                "warning", "leak", "dataset",
                f"{d['rows']} {d['split']} rows ({pct(d['share'])}) also appear in train: their "
                "metrics are inflated; remove them from one side", d["rows"] * 10))
    if within_train:
        out.append(warning("info", "train_duplicates", "dataset",
                           f"{within_train} of {train_rows} train rows repeat an earlier row",
                           within_train))
    return out


def step_warnings(steps: dict[str, Any], training: dict[str, Any],
                  has_eval: bool) -> list[dict[str, Any]]:
    out = []
    total = steps["total_steps"]
    if total < FEW_STEPS:
        out.append(warning("warning", "few_steps", "training.num_train_epochs",
                           f"only {total} optimizer steps in all; lower the batch size or "
                           "gradient accumulation, or raise the epochs", FEW_STEPS - total))
    warmup = training.get("warmup_steps", 0) or 0
    warm_steps = warmup if warmup >= 1 else math.ceil(warmup * total)
    if warm_steps >= total:
        out.append(warning("warning", "warmup", "training.warmup_steps",
                           f"warmup_steps {warmup} covers all {total} steps: the learning "
                           "rate never reaches its peak", 1))
    if not has_eval:
        out.append(warning("info", "no_eval", "dataset.eval_split",
                           "no eval_split: no eval metrics while training"))
    return out


def length_limit_warning(max_length: int, limit: int | None) -> list[dict[str, Any]]:
    if limit and max_length > limit:
        return [warning("error", "max_length_over_model", "max_length",
                        f"max_length {max_length} is over the {limit} positions this model "
                        f"takes: set max_length to {limit} or less", 1e9)]
    return []
