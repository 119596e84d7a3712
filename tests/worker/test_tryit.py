"""Try it in the inference worker (worker/tryit.py): for the inputs of a job's predict split and
the same checkpoint (`final`), its rows equal the rows trainer.predict stored, for every task;
bad inputs name their field; the checkpoint path must be the job's own; loaded checkpoints are
cached. Each job runs through run_job (the real driver); the handler is called in-process as
the inference worker calls it. Run: pytest tests/worker/test_tryit.py
"""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app import db
from app.jobs.models import Checkpoint
from tests.fixtures import tiny_spec
from tests.task_data import multi_label_rows, ner_rows, regression_rows
from tests.worker.recipes.test_causal_lm_sft import addition, make_data, sft_spec
from tests.worker.recipes.test_recipes import spec_for, write_splits
from tests.worker.test_runner import submit
from worker import model_cache, tryit
from worker.bad_input import BadInput
from worker.inference import HANDLERS
from worker.model_cache import ModelCache, choose_device
from worker.runner import run_job

FLOAT_KEYS = ("confidence", "prediction", "probabilities")


def trained(client: TestClient, spec: dict) -> tuple[int, list[dict]]:
    """Run the job; its id and its stored prediction rows (trainer.predict's), in row order."""
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    page = client.get(f"/api/v1/jobs/{job_id}/predictions?per_page=100").json()
    return job_id, sorted(page["items"], key=lambda r: r["row"])


def try_it(job_id: int, inputs: list[dict], checkpoint: str = "final", **extra) -> list[dict]:
    answer = HANDLERS["predict"]({"job_id": job_id, "checkpoint": checkpoint,
                                  "inputs": inputs, **extra})
    assert answer["device"] in ("cpu", "cuda") and answer["checkpoint"] == checkpoint
    return answer["predictions"]


def same_predictions(got: list[dict], stored: list[dict], keys: tuple[str, ...]) -> None:
    """The prediction fields of each row are equal (floats to 1e-5: other batch padding)."""
    assert len(got) == len(stored)
    for mine, theirs in zip(got, stored, strict=True):
        assert "split" not in mine and mine["row"] == theirs["row"]
        for key in keys:
            if key in FLOAT_KEYS:
                assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
            else:
                assert mine[key] == theirs[key], key


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tryit, "_cache", None)


def test_text_pair_classification_equals_trainer_predict(client, tiny_model, make_dataset):
    spec = tiny_spec(tiny_model, make_dataset(train=32, validation=8, test=10, pair=True,
                                              string_labels=True))
    spec["dataset"].update(text_fields=["sentence1", "sentence2"], test_split="test")
    spec["training"]["per_device_eval_batch_size"] = 4  # several batches, padded apart
    job_id, stored = trained(client, spec)
    got = try_it(job_id, [r["inputs"] for r in stored])
    same_predictions(got, stored, ("inputs", "prediction", "confidence", "probabilities"))
    assert {r["label"] for r in got} == {None} and {r["correct"] for r in got} == {None}
    # A warm second request reuses the loaded model.
    assert try_it(job_id, [stored[0]["inputs"]])[0]["prediction"] == stored[0]["prediction"]
    assert len(tryit.cache().keys()) == 1


def test_multi_label_and_regression_equal_trainer_predict(client, tiny_model, tmp_path):
    root = write_splits(tmp_path / "topics", multi_label_rows, train=24, validation=8, test=6)
    job_id, stored = trained(client, spec_for("multi-label-classification", tiny_model, root,
                                              test_split="test", label_field="labels"))
    same_predictions(try_it(job_id, [r["inputs"] for r in stored]), stored,
                     ("inputs", "predictions", "probabilities"))
    root = write_splits(tmp_path / "scores", regression_rows, train=24, validation=8, test=6)
    job_id, stored = trained(client, spec_for("text-regression", tiny_model, root,
                                              test_split="test", label_field="score"))
    same_predictions(try_it(job_id, [r["inputs"] for r in stored]), stored,
                     ("inputs", "prediction"))


def test_token_classification_equals_trainer_predict(client, tiny_model, tmp_path):
    root = write_splits(tmp_path / "ner", ner_rows, train=48, validation=8, test=8)
    spec = spec_for("token-classification", tiny_model, root, test_split="test")
    spec["training"]["num_train_epochs"] = 4
    job_id, stored = trained(client, spec)
    got = try_it(job_id, [{"tokens": r["tokens"]} for r in stored])
    same_predictions(got, stored, ("tokens", "predicted_tags", "entities"))
    assert any(r["entities"] for r in got)  # not all-O on both sides
    # A typed sentence is split on whitespace into the same words.
    typed = try_it(job_id, [{"tokens": " ".join(stored[0]["tokens"])}])
    assert typed[0]["predicted_tags"] == stored[0]["predicted_tags"]


@pytest.mark.slow
@pytest.mark.parametrize("chat", [False, True], ids=["prompt-completion", "chat"])
def test_sft_generations_equal_trainer_predict(client, tiny_llama, tmp_path, chat):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data", chat=chat), chat=chat)
    job_id, stored = trained(client, spec)
    pairs = [(a, b) for a in range(6) for b in range(4)][20:]  # make_data's test rows
    field = "messages" if chat else "question"
    inputs = [{field: addition(a, b, chat)["messages"][:-1] if chat else row["prompt"]}
              for (a, b), row in zip(pairs, stored, strict=True)]
    for checkpoint in ("final", "final-merged"):  # the LoRA adapter and the merged model
        got = try_it(job_id, inputs, checkpoint)
        same_predictions(got, stored, ("prompt", "generated"))
        assert {r["reference"] for r in got} == {None}
    shorter = try_it(job_id, inputs[:1], max_new_tokens=1)
    assert len(shorter[0]["generated"]) <= len(stored[0]["generated"])


def test_bad_inputs_name_their_field(client, tiny_model, make_dataset):
    job_id, _ = trained(client, tiny_spec(tiny_model, make_dataset(train=16, validation=4)))
    for inputs, field in (([{"text": ""}], "inputs.0.text"),
                          ([{"text": "fine"}, {"sentence": "x"}], "inputs.1.sentence"),
                          ([{"text": "fine"}, {}], "inputs.1.text"), ([], "inputs"),
                          (["just text"], "inputs.0")):
        with pytest.raises(BadInput) as caught:
            try_it(job_id, inputs)
        assert caught.value.field == field
    with pytest.raises(tryit.CheckpointGone, match="no checkpoint named 'nope'"):
        try_it(job_id, [{"text": "fine"}], "nope")


def test_a_checkpoint_outside_the_job_folder_is_refused(client, tiny_model, make_dataset,
                                                        tmp_path):
    job_id, _ = trained(client, tiny_spec(tiny_model, make_dataset(train=16, validation=4)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with db.session_scope() as session:
        session.execute(update(Checkpoint).where(Checkpoint.job_id == job_id,
                                                 Checkpoint.name == "final")
                        .values(path=str(elsewhere)))
    with pytest.raises(tryit.CheckpointGone, match="no longer on disk"):
        try_it(job_id, [{"text": "fine"}])


def test_the_cache_keeps_the_most_recent_checkpoints():
    cache = ModelCache(2)
    loads: list[str] = []

    def loader(name: str):
        return lambda: loads.append(name) or name

    for name in ("a", "b", "a", "c", "a", "b"):
        assert cache.get(name, loader(name)) == name
    assert loads == ["a", "b", "c", "b"]  # b was evicted by c, a stayed in use
    assert cache.keys() == ["a", "b"]



def test_cuda_only_when_the_gpu_has_room(monkeypatch: pytest.MonkeyPatch, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"0" * 1000)
    free = {"bytes": 0}
    monkeypatch.setattr(model_cache.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(model_cache.torch.cuda, "mem_get_info",
                        lambda: (free["bytes"], 80 << 30))
    free["bytes"] = model_cache.GPU_HEADROOM_BYTES + 1999  # a training job took the rest
    assert choose_device(tmp_path, "auto") == "cpu"
    free["bytes"] = model_cache.GPU_HEADROOM_BYTES + 2000  # the weights twice, plus headroom
    assert choose_device(tmp_path, "auto") == "cuda"
    assert choose_device(tmp_path, "cpu") == "cpu"
    free["bytes"] = 0
    assert choose_device(tmp_path, "cuda") == "cuda"
    monkeypatch.setattr(model_cache.torch.cuda, "is_available", lambda: False)
    assert choose_device(tmp_path, "cuda") == "cpu"  # no GPU here at all


def test_an_adapter_counts_its_local_base_model(tmp_path):
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "model.safetensors").write_bytes(b"0" * 5000)
    (adapter / "adapter_model.safetensors").write_bytes(b"0" * 100)
    (adapter / "adapter_config.json").write_text(f'{{"base_model_name_or_path": "{base}"}}')
    assert model_cache.weights_bytes(adapter) == 5100
