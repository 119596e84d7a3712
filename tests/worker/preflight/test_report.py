"""Pre-flight reports against numbers computed here, independently, with the tokenizer itself,
for every task (worker/preflight/). Run: pytest tests/worker/preflight/test_report.py
"""
from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from app.jobs.schemas import JobSpec
from tests.fixtures import write_jsonl
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import addition, built_trainer, make_data, sft_spec
from worker import data as D
from worker.inference import BadInput
from worker.preflight import handle
from worker.preflight.warnings import suggest_length
from worker.recipes import recipe_for

MAX_LENGTH = 16


def report_of(spec: dict) -> dict:
    return handle({"spec": JobSpec.model_validate(spec).model_dump(mode="json")})


def lengths(tokenizer, texts, **kwargs) -> np.ndarray:
    """One tokenizer call per row (not batched), no truncation."""
    return np.array([len(tokenizer(t, **kwargs)["input_ids"]) for t in texts])


def assert_tokens(split: dict, expected: np.ndarray) -> None:
    tokens = split["tokens"]
    assert tokens["p50"] == pytest.approx(float(np.percentile(expected, 50)))
    assert tokens["p95"] == pytest.approx(float(np.percentile(expected, 95)))
    assert tokens["max"] == int(expected.max())
    hist = tokens["histogram"]
    width = hist["edges"][1] - hist["edges"][0]
    assert hist["counts"] == np.bincount(expected // width).tolist()
    assert split["truncated"]["rows"] == int((expected > MAX_LENGTH).sum())
    assert split["truncated"]["share"] == pytest.approx(float((expected > MAX_LENGTH).mean()))


def sentence(rng: random.Random, label: str) -> str:
    """Negative rows run longer, so they are cut more often."""
    words = ["good", "great", "fun"] if label == "pos" else ["bad", "awful", "boring"]
    extra = rng.randint(0, 3 if label == "pos" else 9)
    return "the movie was " + " and ".join(rng.choice(words) for _ in range(extra + 1)) + " ."


def classification_data(root: Path) -> tuple[list[dict], list[dict]]:
    rng = random.Random(3)
    train = [{"text": sentence(rng, label), "label": label}
             for label in ["pos"] * 40 + ["neg"] * 20]
    train[5]["text"] = "   "
    evaluation = [{"text": sentence(rng, label), "label": label} for label in ["pos", "neg"] * 8]
    # Leaks: train rows with other whitespace; and a label train never has
    evaluation += [{"text": "  " + train[i]["text"].replace(" ", "  "), "label": train[i]["label"]}
                   for i in (0, 1, 2)]
    evaluation.append({"text": "the plot was fine .", "label": "meh"})
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "validation.jsonl", evaluation)
    return train, evaluation


def classification_spec(model: Path, root: Path, **training) -> dict:
    return {"model": str(model), "max_length": MAX_LENGTH,
            "dataset": {"source": "local", "path": str(root), "train_split": "train",
                        "eval_split": "validation", "text_fields": ["text"],
                        "label_field": "label"},
            "training": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 3,
                         "num_train_epochs": 2, **training}}


def test_text_classification_matches_the_tokenizer(settings_env, tiny_model, tmp_path):
    train, evaluation = classification_data(tmp_path / "data")
    report = report_of(classification_spec(tiny_model, tmp_path / "data"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    by_role = {s["role"]: s for s in report["splits"]}

    expected = lengths(tokenizer, [r["text"] for r in train])
    assert_tokens(by_role["train"], expected)
    assert by_role["train"]["rows"] == 60
    assert by_role["train"]["labels"]["counts"] == {"pos": 40, "neg": 20}
    labels = np.array([r["label"] for r in train])
    for name in ("pos", "neg"):
        share = float((expected[labels == name] > MAX_LENGTH).mean())
        assert by_role["train"]["truncated"]["by_label"][name] == pytest.approx(share)
    assert by_role["train"]["empty_texts"] == 1
    assert_tokens(by_role["eval"], lengths(tokenizer, [r["text"] for r in evaluation]))
    assert by_role["eval"]["unseen_labels"] == {"labels": ["meh"], "rows": 1}

    seen = {" ".join(r["text"].split()) for r in train}
    leaked = [i for i, r in enumerate(evaluation) if " ".join(r["text"].split()) in seen]
    leak = report["duplicates"]["across"][0]
    assert (leak["split"], leak["rows"]) == ("validation", len(leaked))
    assert {16, 17, 18} <= set(leaked)  # the three copied on purpose
    assert [e["row"] for e in leak["examples"]] == leaked[:5]
    normalised = [" ".join(r["text"].split()) for r in train if r["text"].strip()]
    assert report["duplicates"]["within_train"] == len(normalised) - len(set(normalised))

    # Trainer's count: ceil(60 / 8) = 8 batches, 8 // 3 + 1 = 3 optimizer steps per epoch
    assert report["steps"]["steps_per_epoch"] == math.ceil(math.ceil(60 / 8) / 3) == 3
    assert report["steps"]["total_steps"] == 6

    codes = [w["code"] for w in report["warnings"]]
    assert codes[0] == "unseen_labels"  # an error: training would refuse the eval split
    cut = next(w for w in report["warnings"] if w["code"] == "truncated")
    p95 = float(np.percentile(expected, 95))
    assert f"cut at max_length {MAX_LENGTH}" in cut["message"]
    step = 8 if p95 <= 64 else 32
    assert f"p95 is {p95:.0f} tokens: try {math.ceil(p95 / step) * step}" in cut["message"]
    assert {"leak", "empty_texts"} <= set(codes)


def test_the_lengths_are_those_training_tokenizes(settings_env, tiny_model, tmp_path):
    """min(length, max_length) is exactly the recipe's truncated input_ids length."""
    train, _ = classification_data(tmp_path / "data")
    spec = classification_spec(tiny_model, tmp_path / "data")
    spec["dataset"]["eval_split"] = None
    report = report_of(spec)
    data = recipe_for("text-classification").load(
        JobSpec.model_validate(spec).model_dump(mode="json"),
        D.local_source(tmp_path / "data"))
    trained = [len(ids) for ids in data.train["input_ids"]]
    expected = lengths(AutoTokenizer.from_pretrained(tiny_model), [r["text"] for r in train])
    assert trained == np.minimum(expected, MAX_LENGTH).tolist()
    assert report["splits"][0]["tokens"]["max"] == int(expected.max())


def test_max_steps_and_a_text_pair(settings_env, tiny_model, tmp_path):
    rows = [{"a": "the movie was good .", "b": "the film was " + "very " * i + "fun .",
             "label": i % 2} for i in range(30)]
    write_jsonl(tmp_path / "pair" / "train.jsonl", rows)
    spec = classification_spec(tiny_model, tmp_path / "pair", max_steps=5)
    spec["dataset"].update(eval_split=None, text_fields=["a", "b"])
    report = report_of(spec)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    expected = np.array([len(tokenizer(r["a"], r["b"])["input_ids"]) for r in rows])
    assert_tokens(report["splits"][0], expected)
    assert report["steps"]["total_steps"] == 5
    assert "no_eval" in [w["code"] for w in report["warnings"]]


def test_multi_label_counts_each_label(settings_env, tiny_model, tmp_path):
    train, evaluation = multi_label_rows(80, seed=1), multi_label_rows(20, seed=2)
    train[0]["labels"] = []
    write_jsonl(tmp_path / "ml" / "train.jsonl", train)
    write_jsonl(tmp_path / "ml" / "validation.jsonl", evaluation)
    spec = classification_spec(tiny_model, tmp_path / "ml")
    spec.update(task="multi-label-classification")
    spec["dataset"]["label_field"] = "labels"
    report = report_of(spec)
    counts = Counter(name for r in train for name in r["labels"])
    split = report["splits"][0]
    assert split["labels"]["counts"] == dict(counts)
    assert split["missing_labels"] == 1
    expected = lengths(AutoTokenizer.from_pretrained(tiny_model), [r["text"] for r in train])
    assert_tokens(split, expected)
    for name in counts:
        rows = np.array([name in r["labels"] for r in train])
        assert split["truncated"]["by_label"][name] == pytest.approx(
            float((expected[rows] > MAX_LENGTH).mean()))
    assert "no_labels" in [w["code"] for w in report["warnings"]]


def test_regression_has_a_value_histogram(settings_env, tiny_model, tmp_path):
    train = regression_rows(50, seed=1)
    write_jsonl(tmp_path / "reg" / "train.jsonl", train)
    spec = classification_spec(tiny_model, tmp_path / "reg")
    spec.update(task="text-regression")
    spec["dataset"].update(label_field="score", eval_split=None)
    split = report_of(spec)["splits"][0]
    counts, edges = np.histogram([r["score"] for r in train], bins=20)
    assert split["labels"]["histogram"] == {"edges": edges.tolist(), "counts": counts.tolist()}
    assert split["labels"]["min"] == min(r["score"] for r in train)
    assert_tokens(split, lengths(AutoTokenizer.from_pretrained(tiny_model),
                                 [r["text"] for r in train]))


def test_token_classification_counts_tags(settings_env, tiny_model, tmp_path):
    train, evaluation = ner_rows(40, seed=1), ner_rows(10, seed=2)
    evaluation[0]["ner_tags"][0] = "B-ORG"  # a tag train never has
    evaluation[1]["ner_tags"] = evaluation[1]["ner_tags"] + ["O"]  # one tag too many
    write_jsonl(tmp_path / "ner" / "train.jsonl", train)
    write_jsonl(tmp_path / "ner" / "validation.jsonl", evaluation)
    spec = classification_spec(tiny_model, tmp_path / "ner")
    spec.update(task="token-classification")
    spec["dataset"] = {"source": "local", "path": str(tmp_path / "ner"), "train_split": "train",
                       "eval_split": "validation", "tokens_field": "tokens",
                       "tags_field": "ner_tags"}
    report = report_of(spec)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    train_split, eval_split = report["splits"]
    assert train_split["labels"]["counts"] == dict(
        Counter(t for r in train for t in r["ner_tags"]))
    assert_tokens(train_split, lengths(tokenizer, [r["tokens"] for r in train],
                                       is_split_into_words=True))
    assert eval_split["unseen_labels"] == {"labels": ["B-ORG"], "rows": 1}
    assert eval_split["misaligned_rows"] == 1
    errors = [w for w in report["warnings"] if w["severity"] == "error"]
    assert {w["code"] for w in errors} == {"unseen_labels", "misaligned_tags"}
    assert {w["field"] for w in errors} == {"dataset.tags_field"}


@pytest.mark.parametrize("chat", [False, True])
def test_causal_lm_sft_counts_what_sft_trainer_trains(settings_env, tiny_llama, tmp_path, chat):
    root = make_data(tmp_path / "data", chat=chat)
    rows = [addition(a, b, chat) for a in range(6) for b in range(4)][:16]
    long = ("Add " + " and ".join(["1"] * 40) + ".")
    rows.append({"messages": [{"role": "user", "content": long},
                              {"role": "assistant", "content": "40"}]} if chat
                else {"question": long + " Answer:", "answer": " 40"})
    write_jsonl(root / "train.jsonl", rows)
    spec = sft_spec(tiny_llama, root, chat=chat)
    assert spec["max_length"] == 64
    report = report_of(spec)
    trainer, _ = built_trainer(JobSpec.model_validate(spec).model_dump(mode="json"), tmp_path)
    train = report["splits"][0]
    kept = train["rows"] - train["truncated"]["no_completion_left"]
    assert train["truncated"]["no_completion_left"] == 1
    assert len(trainer.train_dataset) == kept == report["steps"]["train_rows"]
    trained = sorted(len(ids) for ids in trainer.train_dataset["input_ids"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    if chat:
        texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
        expected = lengths(tokenizer, texts, add_special_tokens=False)
    else:
        expected = lengths(tokenizer, [r["question"] + r["answer"] + tokenizer.eos_token
                                       for r in rows])
    assert train["tokens"]["max"] == int(expected.max())
    assert sorted(np.minimum(expected, spec["max_length"]).tolist()[:-1]) == trained
    assert "no_completion" in [w["code"] for w in report["warnings"]]


@pytest.mark.parametrize(("change", "field"), [
    ({"dataset.text_fields": ["review"]}, "dataset.text_fields.0"),
    ({"dataset.label_field": "stars"}, "dataset.label_field"),
    ({"dataset.eval_split": "dev2"}, "dataset.eval_split"),
    ({"dataset.path": "/no/such/folder"}, "dataset.path"),
    ({"model": "/no/such/model"}, "model"),
])
def test_a_bad_spec_names_its_field(settings_env, tiny_model, tmp_path, change, field):
    classification_data(tmp_path / "data")
    spec = classification_spec(tiny_model, tmp_path / "data")
    for key, value in change.items():
        target = spec["dataset"] if key.startswith("dataset.") else spec
        target[key.removeprefix("dataset.")] = value
    with pytest.raises(BadInput) as caught:
        report_of(spec)
    assert caught.value.field == field


@pytest.mark.parametrize(("p95", "limit", "suggested"),
                         [(187, None, 192), (187.2, 512, 192), (20, None, 24), (600, 512, 512)])
def test_the_suggested_max_length(p95, limit, suggested):
    assert suggest_length(p95, limit) == suggested


def test_an_sft_row_without_a_completion_names_the_field(settings_env, tiny_llama, tmp_path):
    root = make_data(tmp_path / "data")
    write_jsonl(root / "validation.jsonl", [{"question": "Add 1 and 2.", "answer": ""}])
    with pytest.raises(BadInput) as caught:
        report_of(sft_spec(tiny_llama, root))
    assert caught.value.field == "dataset.completion_field"
    assert "row 0 of the validation split" in caught.value.message


def test_a_single_class_is_an_error(settings_env, tiny_model, tmp_path):
    write_jsonl(tmp_path / "one" / "train.jsonl", [{"text": "good .", "label": 1}] * 10)
    spec = classification_spec(tiny_model, tmp_path / "one")
    spec["dataset"]["eval_split"] = None
    first = report_of(spec)["warnings"][0]
    assert (first["severity"], first["field"]) == ("error", "dataset.label_field")
    assert "single value" in first["message"]
