"""Pre-flight: a data report for a job spec before anything is queued (POST /api/v1/preflight).

Runs on the inference worker (worker/inference.py HANDLERS["preflight"]): the spec's data is
loaded with the loaders training uses (runner.source_for, data.load_split), tokenized with the
model's own tokenizer as the task's recipe loads it, and summed up per split (report.py) with
ranked warnings (warnings.py). A spec that names a missing split, column or model is a
BadInput naming that field (422); data that training would refuse is an `error` warning.
"""
from __future__ import annotations

import time
from typing import Any

from app.config import get_settings
from worker import data as D
from worker.bad_input import BadInput
from worker.preflight import report as R
from worker.preflight import warnings as W
from worker.preflight.rows import READERS, SplitRows, TaskReader, check_labels
from worker.runner import confined, source_for

ROLES = (("train", "train_split"), ("eval", "eval_split"), ("test", "test_split"))


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """The request's payload is `{"spec": <the validated job spec>}`."""
    started = time.perf_counter()
    spec = payload["spec"]
    task = spec.get("task") or "text-classification"
    reader = READERS[task]
    spec = confined_spec(spec)
    tokenizer = load_tokenizer(reader, spec["model"])
    splits = load_splits(spec, reader)
    loaded = time.perf_counter()
    try:
        rows = {role: reader.rows(split, role, name, spec, tokenizer)
                for role, (name, split) in splits.items()}
    except D.DataError as exc:  # a row training could not shape (an SFT row without text)
        raise BadInput(_field_named(str(exc), spec["dataset"]), str(exc)) from exc
    tokenized = time.perf_counter()
    out = build(spec, task, rows, tokenizer, check_labels(task, splits["train"][1], spec))
    total_rows = sum(len(r.keys) for r in rows.values())
    out["timing"] = {"rows": total_rows, "load_seconds": round(loaded - started, 3),
                     "tokenize_seconds": round(tokenized - loaded, 3),
                     "seconds": round(time.perf_counter() - started, 3)}
    return out


def confined_spec(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        return confined(spec, get_settings())
    except Exception as exc:  # OutsideLocalRoots: an Invalid naming its field
        field = getattr(exc, "field", None)
        if field is None:
            raise
        raise BadInput(field, getattr(exc, "message", str(exc))) from exc


def load_tokenizer(reader: TaskReader, model: str) -> Any:
    try:
        return reader.tokenizer(model)
    except D.DataError as exc:
        raise BadInput("model", str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise BadInput("model", f"cannot load the tokenizer of {D.capped(model)!r}: "
                       f"{D.capped(str(exc))}") from exc


def load_splits(spec: dict[str, Any], reader: TaskReader) -> dict[str, tuple[str, Any]]:
    """role -> (split name, raw split) for the splits the spec names; columns checked."""
    ds = spec["dataset"]
    try:
        source = source_for(spec)
    except D.DataError as exc:
        raise BadInput("dataset.path", str(exc)) from exc
    out = {}
    for role, key in ROLES:
        name = ds.get(key)
        if not name:
            continue
        try:
            split = D.load_split(source, name)
        except D.DataError as exc:
            field = "dataset.path" if "does not exist" in str(exc) else f"dataset.{key}"
            raise BadInput(field, str(exc)) from exc
        except (FileNotFoundError, ConnectionError) as exc:
            raise BadInput("dataset.path", f"cannot load {D.capped(ds['path'])!r}: "
                           f"{D.capped(str(exc))}") from exc
        columns = reader.test_columns(ds) if role == "test" else reader.columns(ds)
        for field, column in columns.items():
            if column not in split.column_names:
                shown = ", ".join(D.capped(c) for c in split.column_names[:D.SHOWN_COLUMNS])
                raise BadInput(field, f"column {D.capped(column)!r} not found in the {name} "
                               f"split; columns are: {shown}")
        out[role] = (name, split)
    return out


def model_limit(tokenizer: Any, model: str) -> int | None:
    """The most tokens the model takes (the tokenizer's model_max_length when it is real,
    else the config's max_position_embeddings); None when neither says."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    try:
        from transformers import AutoConfig

        positions = getattr(AutoConfig.from_pretrained(model), "max_position_embeddings", None)
    except (OSError, ValueError):
        return None
    return int(positions) if positions else None


def build(spec: dict[str, Any], task: str, rows: dict[str, SplitRows], tokenizer: Any,
          label_error: str | None) -> dict[str, Any]:
    max_length = int(spec.get("max_length", 128))
    kind = R.label_kind_of(task)
    limit = model_limit(tokenizer, spec["model"])
    train = rows["train"]
    train_labels = set(R.label_counts(train, kind))
    splits = [R.split_report(r, kind, max_length, None if r.role == "train" else train_labels)
              for r in rows.values()]
    dupes = [R.duplicates(train, r) for r in rows.values() if r.role != "train"]
    within_train = R.within(train)
    training = spec.get("training") or {}
    kept = len(train.keys)
    if train.prompt_lengths is not None:  # TRL drops rows with no completion token left
        kept -= int((train.prompt_lengths >= max_length).sum())
    steps = R.steps(training, kept)
    found = W.length_limit_warning(max_length, limit)
    if label_error:
        field = "dataset.tags_field" if task == "token-classification" else "dataset.label_field"
        found.append(W.warning("error", "labels", field, label_error, 1e8))
    text_field = _text_field(spec["dataset"])
    for split in splits:
        found += W.truncation_warnings(split, max_length, limit)
        found += W.label_warnings(split, task)
        found += W.text_warnings(split, text_field)
    found += W.duplicate_warnings(dupes, within_train, len(train.keys))
    found += W.step_warnings(steps, training, "eval" in rows)
    return {"task": task, "model": spec["model"], "max_length": max_length,
            "model_max_tokens": limit,
            "tokenizer": {"class": type(tokenizer).__name__,
                          "fast": bool(getattr(tokenizer, "is_fast", False))},
            "splits": splits,
            "duplicates": {"within_train": within_train, "across": dupes},
            "steps": steps, "warnings": W.ranked(found)}


def _field_named(message: str, ds: dict[str, Any]) -> str:
    """The spec field whose column a data error names, else the text field."""
    for key in ("completion_field", "prompt_field", "messages_field", "tokens_field",
                "tags_field", "label_field"):
        if ds.get(key) and repr(ds[key]) in message:
            return f"dataset.{key}"
    return _text_field(ds)


def _text_field(ds: dict[str, Any]) -> str:
    for key in ("text_fields", "tokens_field", "messages_field", "prompt_field"):
        if ds.get(key):
            return f"dataset.{key}"
    return "dataset"
