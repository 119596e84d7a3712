"""The encoder tasks on a tiny BERT: data loading and encoding, their errors, and each task end
to end through run_job with its prediction rows as the API serves them."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from app.db import session_scope
from app.jobs import service
from app.jobs.models import Job
from app.jobs.outputs import MultiLabelPredictionOut, RegressionPredictionOut, TokenPredictionOut
from tests.fixtures import tiny_spec, write_jsonl
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.test_runner import submit
from worker import data as D
from worker.recipes import RECIPES, recipe_for
from worker.recipes.token_classification import IGNORE, align, entities
from worker.runner import run_job

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def spec_for(task: str, model: Path, dataset: Path, **dataset_fields) -> dict:
    spec = tiny_spec(model, dataset, num_train_epochs=1)
    spec["task"] = task
    if task == "token-classification":
        del spec["dataset"]["text_fields"], spec["dataset"]["label_field"]
        spec["dataset"].update(tokens_field="tokens", tags_field="ner_tags")
    spec["dataset"].update(dataset_fields)
    return spec


def write_splits(root: Path, rows_of, train: int = 24, validation: int = 8,
                 test: int = 0) -> Path:
    write_jsonl(root / "train.jsonl", rows_of(train, seed=1))
    if validation:
        write_jsonl(root / "validation.jsonl", rows_of(validation, seed=2))
    if test:
        write_jsonl(root / "test.jsonl", rows_of(test, seed=3))
    return root


def test_every_task_has_a_recipe():
    assert {"text-classification", "multi-label-classification", "text-regression",
            "token-classification"} <= set(RECIPES)
    assert recipe_for(None).task == "text-classification"
    with pytest.raises(ValueError, match="unknown task 'summarize'"):
        recipe_for("summarize")


# ---------------------------------------------------------------- multi-label

def test_multi_label_lists_and_separated_strings_encode_alike(tmp_path, tiny_model):
    rows = multi_label_rows(12, seed=4)
    jsonl = write_jsonl(tmp_path / "lists" / "train.jsonl", rows).parent
    (tmp_path / "csv").mkdir()
    with (tmp_path / "csv" / "train.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "labels"])
        writer.writerows([r["text"], " ; ".join(r["labels"])] for r in rows)
    recipe = recipe_for("multi-label-classification")
    from_lists = recipe.load(spec_for(recipe.task, tiny_model, jsonl, label_field="labels",
                                      eval_split=None), D.local_source(jsonl))
    from_csv = recipe.load(spec_for(recipe.task, tiny_model, tmp_path / "csv",
                                    label_field="labels", label_separator=";", eval_split=None),
                           D.local_source(tmp_path / "csv"))
    names = sorted({t for r in rows for t in r["labels"]})
    assert from_lists.label_names == from_csv.label_names == names
    expected = [[1.0 if n in r["labels"] else 0.0 for n in names] for r in rows]
    assert from_lists.train["labels"] == from_csv.train["labels"] == expected
    assert {"input_ids", "attention_mask", "labels"} <= set(from_csv.train.column_names)


def test_multi_label_eval_label_unseen_in_train_is_named_without_its_value(tmp_path, tiny_model):
    root = write_splits(tmp_path, multi_label_rows)
    write_jsonl(root / "validation.jsonl", [{"text": "a b", "labels": ["secret-topic"]}])
    recipe = recipe_for("multi-label-classification")
    with pytest.raises(D.DataError) as caught:
        recipe.load(spec_for(recipe.task, tiny_model, root, label_field="labels"),
                    D.local_source(root))
    message = str(caught.value)
    assert "label column 'labels'" in message and "validation split" in message
    assert "secret-topic" not in message


# ---------------------------------------------------------------- regression

def test_regression_labels_must_be_numbers_and_the_error_names_the_row(tmp_path, tiny_model):
    rows = regression_rows(10)
    rows[3]["score"] = "very high"
    write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = recipe_for("text-regression")
    with pytest.raises(D.DataError) as caught:
        recipe.load(spec_for(recipe.task, tiny_model, tmp_path, label_field="score",
                             eval_split=None), D.local_source(tmp_path))
    message = str(caught.value)
    assert message == ("label column 'score' must hold numbers: 1 row(s) of the train split "
                       "do not (first: row 3)")


def test_regression_labels_are_float32(tmp_path, tiny_model):
    write_splits(tmp_path, regression_rows)
    recipe = recipe_for("text-regression")
    data = recipe.load(spec_for(recipe.task, tiny_model, tmp_path, label_field="score"),
                       D.local_source(tmp_path))
    assert data.label_names is None
    assert data.train.features["labels"] == Value("float32")
    assert data.train["labels"] == [r["score"] for r in regression_rows(24, seed=1)]


# ---------------------------------------------------------------- token classification

def conll_layout(root: Path) -> Path:
    """A dataset saved like conll2003: tags as ClassLabel ids."""
    features = Features({"tokens": Sequence(Value("string")),
                         "ner_tags": Sequence(ClassLabel(names=TAGS))})

    def split(n: int, seed: int) -> Dataset:
        rows = ner_rows(n, seed=seed)
        return Dataset.from_dict({"tokens": [r["tokens"] for r in rows],
                                  "ner_tags": [[TAGS.index(t) for t in r["ner_tags"]]
                                               for r in rows]}, features=features)

    DatasetDict({"train": split(16, 1), "validation": split(6, 2)}).save_to_disk(str(root))
    return root


def test_token_classification_reads_classlabel_ids_and_labels_first_subtokens(
        tmp_path, tiny_model):
    root = conll_layout(tmp_path / "conll")
    recipe = recipe_for("token-classification")
    data = recipe.load(spec_for(recipe.task, tiny_model, root), D.local_source(root))
    assert data.label_names == TAGS
    first = ner_rows(16, seed=1)[0]
    encoded = data.tokenizer(first["tokens"], is_split_into_words=True)
    expected = align(encoded.word_ids(), [TAGS.index(t) for t in first["ner_tags"]])
    assert data.train[0]["labels"] == expected
    assert expected[0] == IGNORE and expected[-1] == IGNORE  # [CLS] and [SEP]


def test_align_labels_each_words_first_subtoken_only():
    # [CLS] films(2 pieces) sat [SEP]
    assert align([None, 0, 0, 1, None], [3, 0]) == [IGNORE, 3, IGNORE, 0, IGNORE]


def test_string_tags_are_sorted_o_first(tmp_path, tiny_model):
    write_splits(tmp_path, ner_rows)
    recipe = recipe_for("token-classification")
    data = recipe.load(spec_for(recipe.task, tiny_model, tmp_path), D.local_source(tmp_path))
    assert data.label_names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.mark.parametrize(("change", "words"), [
    (lambda r: r.update(ner_tags=r["ner_tags"][:-1]),
     "row 2 of the train split: 'ner_tags' must hold one tag per word of 'tokens'"),
    (lambda r: r.update(ner_tags=["PERSON"] * len(r["tokens"])),
     "tags column 'ner_tags' in the train split: tags must be IOB2"),
    (lambda r: r.update(tokens="anna lives in rome"),
     "column 'tokens': row 2 of the train split is not a list of words"),
])
def test_token_data_errors_name_the_column_and_split(tmp_path, tiny_model, change, words):
    rows = ner_rows(8)
    change(rows[2])
    write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = recipe_for("token-classification")
    with pytest.raises(D.DataError) as caught:
        recipe.load(spec_for(recipe.task, tiny_model, tmp_path, eval_split=None),
                    D.local_source(tmp_path))
    assert str(caught.value).startswith(words)
    assert "PERSON" not in str(caught.value) and "anna" not in str(caught.value)


def test_entities_are_word_spans_with_exclusive_end():
    words = ["anna", "smith", "lives", "in", "new", "york"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    assert entities(words, tags) == [
        {"type": "PER", "start": 0, "end": 2, "text": "anna smith"},
        {"type": "LOC", "start": 4, "end": 6, "text": "new york"}]


# ---------------------------------------------------------------- end to end

CASES = {
    "multi-label-classification": (multi_label_rows, {"label_field": "labels"},
                                   MultiLabelPredictionOut,
                                   ["eval/f1_micro", "eval/f1_macro", "eval/subset_accuracy",
                                    "eval/f1_food", "test/f1_micro"]),
    "text-regression": (regression_rows, {"label_field": "score"}, RegressionPredictionOut,
                        ["eval/mse", "eval/mae", "eval/pearson", "eval/spearman", "test/mse"]),
    "token-classification": (ner_rows, {}, TokenPredictionOut,
                             ["eval/precision", "eval/recall", "eval/f1", "eval/accuracy",
                              "test/f1"]),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_each_task_runs_end_to_end_and_serves_its_rows(settings_env, tiny_model, tmp_path,
                                                       task):
    rows_of, fields, model, metrics = CASES[task]
    root = write_splits(tmp_path / "data", rows_of, test=6)
    job_id = submit(spec_for(task, tiny_model, root, test_split="test", **fields))
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert set(metrics) <= set(job.final_metrics)
        page = service.prediction_page(session, job, errors_only=False, page=1, per_page=50)
        assert page.task == task and page.total == 6 and page.confusion is None
        assert all(isinstance(item, model) for item in page.items)
        assert {item.split for item in page.items} == {"test"}
        wrong = service.prediction_page(session, job, errors_only=True, page=1, per_page=50)
    truth = rows_of(6, seed=3)
    first = page.items[0]
    if isinstance(first, MultiLabelPredictionOut):
        assert first.labels == truth[0]["labels"]
        assert set(first.probabilities) == set(job.label_names)
        assert first.correct == (set(first.predictions) == set(first.labels))
        assert all(item.correct is False for item in wrong.items)
    elif isinstance(first, RegressionPredictionOut):
        assert first.label == truth[0]["score"]
        assert first.error == pytest.approx(first.prediction - first.label)
        sizes = [abs(item.error) for item in wrong.items]
        assert wrong.total == 6 and sizes == sorted(sizes, reverse=True)
    else:
        assert first.tokens == truth[0]["tokens"] and first.tags == truth[0]["ner_tags"]
        assert len(first.predicted_tags) == len(first.tokens)
        assert [e.model_dump() for e in first.entities] == entities(first.tokens,
                                                                    first.predicted_tags)
        assert all(item.correct is False for item in wrong.items)


@pytest.mark.parametrize("task", sorted(CASES))
def test_a_test_split_without_labels_is_predicted_without_verdicts(settings_env, tiny_model,
                                                                   tmp_path, task):
    rows_of, fields, _, _ = CASES[task]
    label = {"multi-label-classification": "labels", "text-regression": "score",
             "token-classification": "ner_tags"}[task]
    train = Dataset.from_list(rows_of(24, seed=1))
    test = Dataset.from_list([{**r, label: None} for r in rows_of(4, seed=3)],
                             features=train.features)  # a saved dataset keeps the columns
    root = tmp_path / "data"
    DatasetDict({"train": train, "test": test}).save_to_disk(str(root))
    job_id = submit(spec_for(task, tiny_model, root, eval_split=None, test_split="test",
                             **fields))
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        page = service.prediction_page(session, job, errors_only=False, page=1, per_page=50)
    assert page.total == 4 and not any(k.startswith("test/f") for k in job.final_metrics)
    for item in page.items:
        truth = item.model_dump()
        assert truth.get("correct") is None
        assert truth.get("labels", truth.get("label", truth.get("tags"))) is None
