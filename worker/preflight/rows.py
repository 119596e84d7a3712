"""What pre-flight reads of each split, per task, with the loaders and tokenizers training uses.

Each task's `rows` turns a raw split into SplitRows: the text key compared for duplicates, the
token length of every row *before* truncation (the tokenizer called as the recipe calls it,
minus `truncation`), the labels of every row, and the empty/missing counts. Truncation at
max_length is then `length > max_length` (for a text pair too: `longest_first` cuts the pair
to exactly max_length).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset

from worker import data as D
from worker.recipes import causal_lm_sft as sft
from worker.recipes import multi_label_classification as ml
from worker.recipes import text_regression as reg
from worker.recipes import token_classification as tok

BATCH = 2048  # rows per tokenizer call: the fast tokenizer's own threads work on each batch
CLASSES, MULTI, VALUES, TAGS, NONE = "classes", "multi-label", "values", "tags", "none"


@dataclass
class SplitRows:
    """One split as pre-flight sees it."""

    role: str                        # train | eval | test
    name: str                        # the split as the spec names it
    keys: list[str]                  # whitespace-normalised text, for duplicate matching
    lengths: np.ndarray              # tokens per row before truncation
    labels: list[Any]                # per row: a label name, a list of names, a float, or None
    empty_texts: int = 0
    missing_labels: int = 0
    labeled: bool = True             # False: a test split without labels
    # causal-lm-sft: tokens of the prompt (the completion starts after them)
    prompt_lengths: np.ndarray | None = None
    tag_counts: dict[str, int] = field(default_factory=dict)  # token-classification
    misaligned: int = 0              # token-classification: rows whose tags and words differ


def column(split: Dataset, name: str) -> list[Any]:
    """A whole column as a list, in one Arrow conversion (indexing datasets' lazy Column row
    by row costs ~100 us a row: 10 s per 100k rows)."""
    return split.with_format("arrow")[name].to_pylist()


def normalise(text: Any) -> str:
    return " ".join(str(text).split()) if text is not None else ""


def blank(text: Any) -> bool:
    return text is None or (isinstance(text, str) and not text.strip())


def token_lengths(tokenizer: Any, texts: list[Any], pairs: list[Any] | None = None,
                  **kwargs: Any) -> np.ndarray:
    """input_ids lengths of every row, special tokens included, no truncation; batched."""
    out = np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        second = pairs[start:start + BATCH] if pairs is not None else None
        ids = tokenizer(chunk, second, truncation=False, verbose=False,
                        return_attention_mask=False, return_token_type_ids=False,
                        **kwargs)["input_ids"]
        out[start:start + len(chunk)] = [len(row) for row in ids]
    return out


# ---------------------------------------------------------------- sequence tasks

def text_rows(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any,
              label_of: Callable[[Any], Any]) -> SplitRows:
    """The three text-input tasks: one or two text columns (None read as "", as tokenize does)."""
    ds = spec["dataset"]
    fields = ds["text_fields"]
    columns = [column(split, f) for f in fields]
    texts = [["" if t is None else str(t) for t in column] for column in columns]
    keys = ["\t".join(normalise(c[i]) for c in columns) for i in range(len(split))]
    empty = sum(1 for i in range(len(split)) if all(blank(c[i]) for c in columns))
    lengths = token_lengths(tokenizer, texts[0], texts[1] if len(texts) > 1 else None)
    field_name = ds["label_field"]
    raw = column(split, field_name) if field_name in split.column_names \
        else [None] * len(split)
    labels = [label_of(v) for v in raw]
    missing = sum(1 for v in labels if v is None or v == [])
    return SplitRows(role, name, keys, lengths, labels, empty_texts=empty,
                     missing_labels=missing, labeled=missing < len(split))


def class_label_reader(split: Dataset, label_field: str) -> Callable[[Any], Any]:
    """A text-classification label as its name (ClassLabel ids by name; -1 is no label)."""
    feature = split.features.get(label_field)
    if isinstance(feature, ClassLabel):
        return lambda v: feature.names[v] if v is not None and 0 <= v < feature.num_classes \
            else None
    return lambda v: None if v is None else str(v)


def classification(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any) -> SplitRows:
    reader = class_label_reader(split, spec["dataset"]["label_field"])
    return text_rows(split, role, name, spec, tokenizer, reader)


def multi_label(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any) -> SplitRows:
    separator = spec["dataset"].get("label_separator") or ","
    return text_rows(split, role, name, spec, tokenizer,
                     lambda v: ml.label_set(v, separator))


def regression(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any) -> SplitRows:
    return text_rows(split, role, name, spec, tokenizer, reg.number)


# ---------------------------------------------------------------- token-classification

def tag_name_reader(split: Dataset, tags_field: str) -> Callable[[Any], str]:
    inner = getattr(split.features.get(tags_field), "feature", None)
    if isinstance(inner, ClassLabel):
        return lambda t: inner.names[t] if isinstance(t, int) and 0 <= t < inner.num_classes \
            else str(t)
    return str


def tokens(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any) -> SplitRows:
    ds = spec["dataset"]
    words = [w if isinstance(w, list) else [] for w in column(split, ds["tokens_field"])]
    words = [[str(x) for x in w] for w in words]
    lengths = token_lengths(tokenizer, words, is_split_into_words=True)
    raw_tags = column(split, ds["tags_field"]) if ds["tags_field"] in split.column_names \
        else [None] * len(split)
    name_of = tag_name_reader(split, ds["tags_field"])
    labels = [None if t is None else [name_of(x) for x in t] for t in raw_tags]
    counts: dict[str, int] = {}
    for row in labels:
        for tag in row or []:
            counts[tag] = counts.get(tag, 0) + 1
    missing = sum(1 for t in labels if not t)
    misaligned = sum(1 for w, t in zip(words, labels, strict=True) if t and len(t) != len(w))
    return SplitRows(role, name, [" ".join(w) for w in words], lengths, labels,
                     empty_texts=sum(1 for w in words if not w), missing_labels=missing,
                     labeled=missing < len(split), tag_counts=counts, misaligned=misaligned)


# ---------------------------------------------------------------- causal-lm-sft

def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def sft_rows(split: Dataset, role: str, name: str, spec: dict, tokenizer: Any) -> SplitRows:
    """As TRL's SFTTrainer tokenizes prompt-completion rows: prompt ids, prompt+completion
    (+EOS for plain text) ids; the completion starts at their common prefix."""
    ds = spec["dataset"]
    chat = bool(ds.get("messages_field"))
    shaped = sft.shape_split(split, name, ds, require_reference=role != "test")
    prompts, completions = column(shaped, "prompt"), column(shaped, "completion")
    if chat:
        prompt_texts = [tokenizer.apply_chat_template(p, tokenize=False,
                                                      add_generation_prompt=True)
                        for p in prompts]
        full_texts = [tokenizer.apply_chat_template(p + c, tokenize=False)
                      for p, c in zip(prompts, completions, strict=True)]
        keys = [normalise(json.dumps(p + c, ensure_ascii=False)) for p, c in
                zip(prompts, completions, strict=True)]
        kwargs: dict[str, Any] = {"add_special_tokens": False}
    else:
        eos = tokenizer.eos_token or ""
        prompt_texts = list(prompts)
        full_texts = [p + (c if c.endswith(eos) else c + eos) for p, c in
                      zip(prompts, completions, strict=True)]
        keys = [normalise(p) + "\t" + normalise(c) for p, c in
                zip(prompts, completions, strict=True)]
        kwargs = {}
    prompt_ids = _ids(tokenizer, prompt_texts, kwargs)
    full_ids = _ids(tokenizer, full_texts, kwargs)
    prompt_lengths = np.array([common_prefix(p, f) for p, f in
                               zip(prompt_ids, full_ids, strict=True)], dtype=np.int64)
    lengths = np.array([len(f) for f in full_ids], dtype=np.int64)
    references = column(shaped, "reference")
    return SplitRows(role, name, keys, lengths, [None] * len(shaped),
                     missing_labels=sum(1 for r in references if r is None),
                     labeled=any(r is not None for r in references),
                     prompt_lengths=prompt_lengths)


def _ids(tokenizer: Any, texts: list[str], kwargs: dict[str, Any]) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), BATCH):
        out += tokenizer(texts[start:start + BATCH], verbose=False, **kwargs)["input_ids"]
    return out


# ---------------------------------------------------------------- per task

@dataclass
class TaskReader:
    """How pre-flight reads one task: its columns, tokenizer, rows and label kind."""

    label_kind: str
    columns: Callable[[dict], dict[str, str]]      # spec field -> column, checked on train/eval
    test_columns: Callable[[dict], dict[str, str]]  # those a test split must have
    tokenizer: Callable[[str], Any]
    rows: Callable[..., SplitRows]


def _text_columns(ds: dict) -> dict[str, str]:
    return {f"dataset.text_fields.{i}": c for i, c in enumerate(ds["text_fields"])}


def _labeled_text(ds: dict) -> dict[str, str]:
    return {**_text_columns(ds), "dataset.label_field": ds["label_field"]}


def _auto_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def _sft_columns(ds: dict) -> dict[str, str]:
    if ds.get("messages_field"):
        return {"dataset.messages_field": ds["messages_field"]}
    return {"dataset.prompt_field": ds.get("prompt_field") or "prompt",
            "dataset.completion_field": ds.get("completion_field") or "completion"}


def _sft_test_columns(ds: dict) -> dict[str, str]:
    columns = _sft_columns(ds)
    columns.pop("dataset.completion_field", None)
    return columns


READERS: dict[str, TaskReader] = {
    "text-classification": TaskReader(CLASSES, _labeled_text, _text_columns, _auto_tokenizer,
                                      classification),
    "multi-label-classification": TaskReader(MULTI, _labeled_text, _text_columns,
                                             _auto_tokenizer, multi_label),
    "text-regression": TaskReader(VALUES, _labeled_text, _text_columns, _auto_tokenizer,
                                  regression),
    "token-classification": TaskReader(
        TAGS, lambda ds: {"dataset.tokens_field": ds["tokens_field"],
                          "dataset.tags_field": ds["tags_field"]},
        lambda ds: {"dataset.tokens_field": ds["tokens_field"]},
        tok.RECIPE.tokenizer, tokens),
    "causal-lm-sft": TaskReader(NONE, _sft_columns, _sft_test_columns, sft.load_tokenizer,
                                sft_rows),
}


def check_labels(task: str, train: Dataset, spec: dict) -> str | None:
    """The recipe's own label check on the train split; its message when training would
    refuse the labels (one class, no IOB2 tags), else None."""
    ds = spec["dataset"]
    try:
        if task == "text-classification":
            D.labels_from(train, ds["label_field"])
        elif task == "multi-label-classification":
            ml.names_from(ml.label_sets(train, ds["label_field"],
                                        ds.get("label_separator") or ","), ds["label_field"])
        elif task == "token-classification":
            tok.tag_names(train, ds["tags_field"], ds["train_split"])
    except D.DataError as exc:
        return str(exc)
    return None
