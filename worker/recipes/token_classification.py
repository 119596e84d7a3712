"""token-classification: a tag per word (IOB2, e.g. NER), ...ForTokenClassification.

As transformers' run_ner: load -> tags to ids -> tokenize the words (is_split_into_words), the
word's tag on its first sub-token and -100 elsewhere -> DataCollatorForTokenClassification
-> model -> Trainer -> compute_metrics (seqeval entities, word accuracy) -> predict.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    PreTrainedModel,
)

from worker import data as D
from worker.gpu import padding_multiple
from worker.metrics import TOKEN, entity_metrics
from worker.recipes.base import (
    Recipe,
    TaskData,
    load_splits,
    logits_of,
    pretrained,
)

IOB2 = re.compile(r"^(O|[BI]-.+)$")
IGNORE = -100
# Byte-level BPE tokenizers need a leading space to tokenize pre-split words (as run_ner does).
PREFIX_SPACE = {"bloom", "gpt2", "roberta", "deberta", "longformer", "bart"}


def tag_names(train: Dataset, tags_field: str, split: str) -> tuple[list[str], bool]:
    """The tag names in id order, and whether the column holds ClassLabel ids."""
    feature = train.features[tags_field]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, ClassLabel):
        names = list(inner.names)
        class_label = True
    else:
        values = {t for tags in train[tags_field] if tags for t in tags}
        if any(not isinstance(t, str) for t in values):
            raise D.DataError(f"tags column {tags_field!r} in the {split} split holds numbers "
                              "without tag names (a ClassLabel feature); give IOB2 tag strings")
        names = sorted(values, key=lambda t: (t != "O", t[2:], t))
        class_label = False
    if not all(isinstance(n, str) and IOB2.match(n) for n in names):
        raise D.DataError(f"tags column {tags_field!r} in the {split} split: tags must be "
                          "IOB2 (O, B-<type>, I-<type>)")
    if len(names) < 2:
        raise D.DataError(f"tags column {tags_field!r} has fewer than two distinct tags in "
                          f"the {split} split")
    return names, class_label


def encode(dataset: Dataset, split: str, ds: dict, names: list[str],
           class_label: bool) -> Dataset:
    """Check each row's words and tags; add `tag_ids` (one id per word)."""
    tokens_field, tags_field = ds["tokens_field"], ds["tags_field"]
    index = {name: i for i, name in enumerate(names)}
    ids: list[list[int]] = []
    for row, (words, tags) in enumerate(zip(dataset[tokens_field], dataset[tags_field],
                                            strict=True)):
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise D.DataError(f"column {tokens_field!r}: row {row} of the {split} split is "
                              "not a list of words")
        if not isinstance(tags, list) or len(tags) != len(words):
            raise D.DataError(f"row {row} of the {split} split: {tags_field!r} must hold one "
                              f"tag per word of {tokens_field!r}")
        if class_label:
            if any(not isinstance(t, int) or not 0 <= t < len(names) for t in tags):
                raise D.DataError(f"column {tags_field!r}: row {row} of the {split} split "
                                  "holds a tag id outside the tag names")
            ids.append(list(tags))
        else:
            if any(t not in index for t in tags):
                raise D.DataError(f"column {tags_field!r}: row {row} of the {split} split "
                                  "holds a tag that does not occur in the train split")
            ids.append([index[t] for t in tags])
    return dataset.add_column("tag_ids", ids)


def unlabeled(dataset: Dataset, tags_field: str) -> bool:
    return tags_field not in dataset.column_names or all(
        t is None for t in dataset[tags_field])


def align(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """Each word's tag on its first sub-token; -100 on later sub-tokens and special tokens."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE if word is None or word == previous else tags[word])
        previous = word
    return labels


def word_tags(predictions: np.ndarray, labels: np.ndarray,
              names: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """True and predicted tag names at the labelled (first sub-token) positions."""
    true, guess = [], []
    for predicted, label in zip(predictions, labels, strict=True):
        keep = label != IGNORE
        true.append([names[i] for i in label[keep]])
        guess.append([names[i] for i in predicted[keep]])
    return true, guess


def entities(words: list[str], tags: list[str]) -> list[dict[str, Any]]:
    """Spans of IOB2 tags as seqeval reads them; `end` is one past the last word."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [{"type": kind, "start": start, "end": end + 1,
             "text": " ".join(words[start:end + 1])}
            for kind, start, end in get_entities(tags)]


class TokenClassification(Recipe):
    """One IOB2 tag per word; entities scored as seqeval scores them."""

    task = "token-classification"

    def load(self, spec: dict, source: D.Source) -> TaskData:
        ds = spec["dataset"]
        columns = [ds["tokens_field"], ds["tags_field"]]
        raw = load_splits(source, ds, columns, [ds["tokens_field"]])
        names, class_label = tag_names(raw.train, ds["tags_field"], ds["train_split"])
        train = encode(raw.train, ds["train_split"], ds, names, class_label)
        evaluation = None
        if raw.eval is not None:
            evaluation = encode(raw.eval, ds["eval_split"], ds, names, class_label)
        predict_raw, labeled = evaluation, evaluation is not None
        if raw.test is not None:
            predict_raw, labeled = raw.test, not unlabeled(raw.test, ds["tags_field"])
            if labeled:
                predict_raw = encode(raw.test, ds["test_split"], ds, names, class_label)
        data = TaskData(train=train, eval=evaluation, predict_raw=predict_raw,
                        predict_split=raw.predict_split, predict_labeled=labeled,
                        tokenizer=self.tokenizer(spec["model"]), label_names=names)
        data.train = self.features(spec, data, train)
        data.eval = self.features(spec, data, evaluation) if evaluation is not None else None
        return data

    def tokenizer(self, model: str) -> Any:
        config = AutoConfig.from_pretrained(model)
        kwargs = {"add_prefix_space": True} if config.model_type in PREFIX_SPACE else {}
        tokenizer = AutoTokenizer.from_pretrained(model, **kwargs)
        if not tokenizer.is_fast:
            raise D.DataError(f"token-classification needs a fast tokenizer (word ids); "
                              f"{model} has none")
        return tokenizer

    def features(self, spec: dict, data: TaskData, split: Dataset) -> Dataset:
        """input_ids/attention_mask of the words, and `labels` where the split has tags."""
        words_field = spec["dataset"]["tokens_field"]
        tokenizer, max_length = data.tokenizer, spec.get("max_length", 128)
        labeled = "tag_ids" in split.column_names

        def encode_batch(batch: dict[str, list]) -> dict:
            out = tokenizer(batch[words_field], is_split_into_words=True, truncation=True,
                            max_length=max_length)
            if labeled:
                out["labels"] = [align(out.word_ids(i), tags)
                                 for i, tags in enumerate(batch["tag_ids"])]
            return out

        return split.map(encode_batch, batched=True, remove_columns=split.column_names,
                         desc="tokenize")

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        names = data.label_names or []
        return pretrained(AutoModelForTokenClassification, spec,
                          f"this data has {len(names)} tags", num_labels=len(names),
                          id2label=dict(enumerate(names)),
                          label2id={n: i for i, n in enumerate(names)})

    def collator(self, spec: dict, data: TaskData) -> Callable | None:
        return DataCollatorForTokenClassification(data.tokenizer,
                                                  pad_to_multiple_of=padding_multiple(spec))

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        wanted = spec.get("metrics") or list(TOKEN)
        names = data.label_names or []

        def compute(eval_pred: Any) -> dict[str, float]:
            predicted = logits_of(eval_pred.predictions).argmax(-1)
            true, guess = word_tags(predicted, np.asarray(eval_pred.label_ids), names)
            return {k: v for k, v in entity_metrics(true, guess).items() if k in wanted}

        return compute

    def rows(self, spec: dict, data: TaskData, raw: Dataset,
             logits: Any) -> list[dict[str, Any]]:
        """The prediction rows of `raw` from each sentence's sub-token logits (padded or
        not; only its first sub-tokens are read). Also Try it's rows."""
        predicted = [np.asarray(row).argmax(-1) for row in logits]
        names = data.label_names or []
        words_field = spec["dataset"]["tokens_field"]
        sentences = list(raw[words_field])
        encoded = data.tokenizer(sentences, is_split_into_words=True, truncation=True,
                                 max_length=spec.get("max_length", 128))
        truth: list[Any] = list(raw["tag_ids"]) if data.predict_labeled else [None] * len(raw)
        rows = []
        for i, words in enumerate(sentences):
            word_ids = encoded.word_ids(i)
            tags = ["O"] * len(words)  # words cut off by max_length get no entity
            for position, word in enumerate(word_ids):
                if word is not None and (position == 0 or word_ids[position - 1] != word):
                    tags[word] = names[int(predicted[i][position])]
            true = [names[t] for t in truth[i]] if truth[i] is not None else None
            rows.append({
                "split": data.predict_split, "row": i, "tokens": words, "tags": true,
                "predicted_tags": tags, "entities": entities(words, tags),
                "correct": (tags == true) if true is not None else None,
            })
        return rows


RECIPE = TokenClassification()
