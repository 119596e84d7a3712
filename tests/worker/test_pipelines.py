"""The downloaded `final` loads with transformers.pipeline(task, model=dir) for every task that
has a pipeline, and the pipeline agrees with the job's stored prediction rows on their inputs.

Each job runs through run_job (the real driver); `final` comes from the download route's tar.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer, pipeline

from tests.fixtures import tiny_spec
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import addition, make_data, sft_spec
from tests.worker.recipes.test_recipes import spec_for, write_splits
from tests.worker.test_runner import submit
from worker.runner import run_job


def finished(client: TestClient, spec: dict, tmp_path: Path,
             name: str = "final") -> tuple[Path, list[dict]]:
    """Run the job; its checkpoint `name` downloaded and unpacked, and its prediction rows."""
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    response = client.get(f"/api/v1/jobs/{job_id}/checkpoints/{name}/download")
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:") as tar:
        tar.extractall(tmp_path / "download", filter="data")
    page = client.get(f"/api/v1/jobs/{job_id}/predictions?per_page=50").json()
    rows = sorted(page["items"], key=lambda r: r["row"])
    return tmp_path / "download" / f"job-{job_id}-{name}", rows


def test_text_classification_final_loads_in_a_pipeline(client, tiny_model, make_dataset,
                                                        tmp_path):
    spec = tiny_spec(tiny_model, make_dataset(train=32, validation=8, test=8,
                                              string_labels=True))
    spec["dataset"]["test_split"] = "test"
    final, rows = finished(client, spec, tmp_path)
    assert (final / "README.md").is_file()
    classifier = pipeline("text-classification", model=str(final))
    outputs = classifier([r["inputs"]["text"] for r in rows])
    assert [o["label"] for o in outputs] == [r["prediction"] for r in rows]
    assert [o["score"] for o in outputs] == pytest.approx([r["confidence"] for r in rows],
                                                          abs=1e-5)
    assert {o["label"] for o in outputs} <= {"negative", "positive"}  # names, not LABEL_n


def test_multi_label_final_gives_each_labels_sigmoid(client, tiny_model, tmp_path):
    root = write_splits(tmp_path / "data", multi_label_rows, train=24, validation=8, test=6)
    spec = spec_for("multi-label-classification", tiny_model, root, test_split="test",
                    label_field="labels")
    final, rows = finished(client, spec, tmp_path)
    classifier = pipeline("text-classification", model=str(final),
                          function_to_apply="sigmoid", top_k=None)
    by_default = pipeline("text-classification", model=str(final), top_k=None)  # problem_type
    texts = [r["inputs"]["text"] for r in rows]
    for row, scores, default in zip(rows, classifier(texts), by_default(texts), strict=True):
        probabilities = {s["label"]: s["score"] for s in scores}
        assert probabilities == pytest.approx(row["probabilities"], abs=1e-5)
        assert {s["label"]: s["score"] for s in default} == probabilities
        assert sorted(n for n, p in probabilities.items() if p >= 0.5) == sorted(
            row["predictions"])


def test_regression_final_gives_the_raw_score(client, tiny_model, tmp_path):
    root = write_splits(tmp_path / "data", regression_rows, train=24, validation=8, test=6)
    spec = spec_for("text-regression", tiny_model, root, test_split="test", label_field="score")
    final, rows = finished(client, spec, tmp_path)
    texts = [r["inputs"]["text"] for r in rows]
    scores = [o["score"] for o in pipeline("text-classification", model=str(final),
                                           function_to_apply="none")(texts)]
    assert scores == pytest.approx([r["prediction"] for r in rows], abs=1e-5)
    default = pipeline("text-classification", model=str(final))(texts)  # problem_type
    assert [o["score"] for o in default] == pytest.approx(scores, abs=1e-6)


def test_token_classification_final_tags_words_like_the_prediction_rows(client, tiny_model,
                                                                        tmp_path):
    root = write_splits(tmp_path / "data", ner_rows, train=48, validation=8, test=8)
    spec = spec_for("token-classification", tiny_model, root, test_split="test")
    spec["training"]["num_train_epochs"] = 4
    final, rows = finished(client, spec, tmp_path)
    tagger = pipeline("token-classification", model=str(final), aggregation_strategy="first")
    found = 0
    for row in rows:
        sentence = " ".join(row["tokens"])
        entities = tagger([row["tokens"]], is_split_into_words=True)[0]  # a batch of one
        got = [(e["entity_group"], sentence[e["start"]:e["end"]]) for e in entities]
        assert got == [(e["type"], e["text"]) for e in row["entities"]]
        found += len(got)
    assert found > 0  # the model tags some entities: the comparison is not all-O on both sides


@pytest.mark.parametrize("chat", [False, True], ids=["prompt-completion", "chat"])
def test_sft_final_merged_generates_the_stored_text(client, tiny_llama, tmp_path, chat):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data", chat=chat), chat=chat)
    merged, rows = finished(client, spec, tmp_path, "final-merged")
    generator = pipeline("text-generation", model=str(merged))
    pairs = [(a, b) for a in range(6) for b in range(4)][20:]  # make_data's test rows
    prompts = [addition(a, b, chat)["messages"][:-1] if chat else r["prompt"]
               for (a, b), r in zip(pairs, rows, strict=True)]
    new_tokens = spec["generation"]["max_new_tokens"]
    for prompt, row in zip(prompts, rows, strict=True):
        out = generator(prompt, max_new_tokens=new_tokens, do_sample=False,
                        return_full_text=False)
        assert out[0]["generated_text"] == row["generated"]


def test_sft_final_adapter_loads_with_peft_and_generates_the_stored_text(client, tiny_llama,
                                                                          tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"))
    final, rows = finished(client, spec, tmp_path)
    assert json.loads((final / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == str(tiny_llama)
    model = AutoPeftModelForCausalLM.from_pretrained(str(final))
    generator = pipeline("text-generation", model=model,
                         tokenizer=AutoTokenizer.from_pretrained(str(final)))
    for row in rows:
        out = generator(row["prompt"], max_new_tokens=spec["generation"]["max_new_tokens"],
                        do_sample=False, return_full_text=False)
        assert out[0]["generated_text"] == row["generated"]
