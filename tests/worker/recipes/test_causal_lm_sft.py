"""causal-lm-sft on a tiny random Llama: data layouts, completion-only labels, the driver run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from tests.fixtures import write_jsonl
from worker import data as D
from worker.recipes import recipe_for
from worker.recipes.causal_lm_sft import RECIPE, perplexity, sft_config
from worker.training import train


class Recorder:
    """The reporter the driver's StreamingCallback writes to, in memory."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.points: dict[str, dict[int, float]] = {}
        self.checkpoints: list[tuple[str, int, str]] = []
        self.fields: dict = {}
        self.steps: list[int] = []
        self.cancel_after = cancel_after

    def progress(self, step: int, *args) -> None:
        self.steps.append(step)

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.points.setdefault(name, {})[step] = value

    def checkpoint(self, name: str, step: int, path: str, metrics: dict[str, float]) -> None:
        self.checkpoints.append((name, step, path))

    def job_fields(self, **fields) -> None:
        self.fields.update(fields)

    def notice(self, text: str) -> None:
        self.fields.setdefault("notices", []).append(text)

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_after is not None and max(self.steps, default=0) >= self.cancel_after


def addition(a: int, b: int, chat: bool) -> dict:
    if chat:
        return {"messages": [{"role": "user", "content": f"Add {a} and {b}."},
                             {"role": "assistant", "content": str(a + b)}]}
    return {"question": f"Add {a} and {b}. Answer:", "answer": f" {a + b}"}


def make_data(root: Path, chat: bool = False, test_rows: list[dict] | None = None) -> Path:
    pairs = [(a, b) for a in range(6) for b in range(4)]
    write_jsonl(root / "train.jsonl", [addition(a, b, chat) for a, b in pairs[:16]])
    write_jsonl(root / "validation.jsonl", [addition(a, b, chat) for a, b in pairs[16:20]])
    write_jsonl(root / "test.jsonl", test_rows or [addition(a, b, chat) for a, b in pairs[20:]])
    return root


def sft_spec(model: Path, data: Path, chat: bool = False, **training) -> dict:
    fields = ({"messages_field": "messages"} if chat
              else {"prompt_field": "question", "completion_field": "answer"})
    options = {"max_steps": 2, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
               "per_device_eval_batch_size": 4, "logging_steps": 1, "eval_strategy": "steps",
               "eval_steps": 1, "save_strategy": "steps", "save_steps": 1, "seed": 7}
    options.update(training)
    return {"task": "causal-lm-sft", "model": str(model), "max_length": 64,
            "dataset": {"source": "local", "path": str(data), "train_split": "train",
                        "eval_split": "validation", "test_split": "test", **fields},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"},
            "generation": {"max_new_tokens": 4}, "training": options}


def built_trainer(spec: dict, tmp_path: Path):
    data = RECIPE.load(spec, D.local_source(Path(spec["dataset"]["path"])))
    model, _ = RECIPE.model(spec, data)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none",
                             disable_tqdm=True)
    return RECIPE.trainer(model=model, args=args, data=data, spec=spec, collator=None,
                          compute_metrics=None, callbacks=[]), data


def trained_text(tokenizer, example: dict) -> tuple[list[int], str]:
    """The positions with a label and the text those labels spell."""
    kept = [i for i, label in enumerate(example["labels"]) if label != -100]
    assert [example["input_ids"][i] for i in kept] == [example["labels"][i] for i in kept]
    return kept, tokenizer.decode([example["labels"][i] for i in kept])


def test_the_registry_runs_causal_lm_sft():
    assert recipe_for("causal-lm-sft") is RECIPE


def test_prompt_completion_labels_cover_the_completion_only(tiny_llama, tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"))
    trainer, data = built_trainer(spec, tmp_path)
    tokenizer = data.tokenizer
    example = trainer.train_dataset[0]
    prompt_ids = tokenizer(example["prompt"])["input_ids"]
    kept, text = trained_text(tokenizer, example)
    assert example["labels"][:len(prompt_ids)] == [-100] * len(prompt_ids)
    assert kept == list(range(len(prompt_ids), len(example["input_ids"])))
    assert example["input_ids"][:len(prompt_ids)] == prompt_ids
    assert text == example["completion"]  # the answer and EOS: the model learns to stop
    assert text.endswith(tokenizer.eos_token) and text.startswith(" ")
    assert len(trainer.train_dataset) == 16 and len(trainer.eval_dataset) == 4


def test_chat_messages_train_on_the_last_assistant_turn_only(tiny_llama, tmp_path):
    turns = [{"role": "user", "content": "Add 1 and 2."}, {"role": "assistant", "content": "3"},
             {"role": "user", "content": "Add 4 and 5."}, {"role": "assistant", "content": "9"}]
    root = make_data(tmp_path / "data", chat=True)
    write_jsonl(root / "train.jsonl", [{"messages": turns}] * 2)
    trainer, data = built_trainer(sft_spec(tiny_llama, root, chat=True), tmp_path)
    tokenizer = data.tokenizer
    example = trainer.train_dataset[0]
    _, text = trained_text(tokenizer, example)
    assert text == "9<|im_end|>\n"  # the earlier assistant turn ("3") is context, not a target
    rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    assert tokenizer.decode(example["input_ids"]) == rendered


def test_a_row_cut_before_its_completion_is_left_out(tiny_llama, tmp_path):
    root = make_data(tmp_path / "data")
    long = {"question": "Add " + " and ".join(["1"] * 40) + ". Answer:", "answer": " 40"}
    write_jsonl(root / "train.jsonl", [addition(1, 2, chat=False), long])
    spec = sft_spec(tiny_llama, root)
    spec["max_length"] = 24
    trainer, _ = built_trainer(spec, tmp_path)
    assert trainer.train_dataset["prompt"] == ["Add 1 and 2. Answer:"]


def test_test_rows_without_an_answer_are_generated_without_a_score(tiny_llama, tmp_path):
    question = [{"role": "user", "content": "Add 2 and 2."}]
    root = make_data(tmp_path / "data", chat=True, test_rows=[{"messages": question}] * 3)
    spec = sft_spec(tiny_llama, root, chat=True, max_steps=1)
    outcome = train(spec, D.local_source(root), tmp_path / "job", Recorder())
    assert [(r["reference"], r["correct"]) for r in outcome.predictions] == [(None, None)] * 3
    assert outcome.predictions[0]["prompt"].endswith(
        "<|im_start|>user\nAdd 2 and 2.<|im_end|>\n<|im_start|>assistant\n")
    assert "test/exact_match" not in outcome.final_metrics


@pytest.mark.parametrize(("rows", "fields", "message"), [
    ([{"question": "Q", "answer": ""}], {}, "row 0 of the train split: 'answer' must be non-empty"),
    ([{"question": "Q"}], {}, "column 'answer' not found in the train split"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], {"messages_field": "messages"},
     "row 0 of the train split: the last message must be the assistant's answer"),
    ([{"messages": [{"role": "robot", "content": "hi"}]}], {"messages_field": "messages"},
     "row 0 of the train split, message 0: expected {role, content}"),
    ([{"messages": "not json"}], {"messages_field": "messages"},
     "row 0 of the train split: messages are not valid JSON"),
])
def test_bad_rows_name_the_row_and_the_field(tiny_llama, tmp_path, rows, fields, message):
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    spec = sft_spec(tiny_llama, tmp_path / "data")
    spec["dataset"].update(eval_split=None, test_split=None, **fields)
    with pytest.raises(D.DataError, match=message.replace("{", r"\{").replace("(", r"\(")):
        RECIPE.load(spec, D.local_source(tmp_path / "data"))


def test_messages_stored_as_json_text_load_from_csv(tiny_llama, tmp_path):
    turns = [{"role": "user", "content": "Add 1 and 2."}, {"role": "assistant", "content": "3"}]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(
        "messages\n" + '"' + json.dumps(turns).replace('"', '""') + '"\n')
    spec = sft_spec(tiny_llama, tmp_path / "data", chat=True)
    spec["dataset"].update(eval_split=None, test_split=None)
    data = RECIPE.load(spec, D.local_source(tmp_path / "data"))
    assert data.train[0]["prompt"] == turns[:1] and data.train[0]["completion"] == turns[1:]


def test_a_lora_job_through_the_driver(tiny_llama, tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"))
    reporter = Recorder()
    outcome = train(spec, D.local_source(tmp_path / "data"), tmp_path / "job", reporter)

    assert not outcome.cancelled and outcome.global_step == 2
    assert any(n.startswith("LoRA r=4, alpha=8") for n in reporter.fields["info"])
    assert reporter.fields["label_names"] is None
    # every log and eval reached the callback, perplexity with each eval
    assert sorted(reporter.points["train/loss"]) == [1, 2]
    assert sorted(reporter.points["eval/loss"]) == [1, 2]
    for step, loss in reporter.points["eval/loss"].items():
        assert reporter.points["eval/perplexity"][step] == pytest.approx(math.exp(loss))
    assert "eval/num_tokens" not in reporter.points
    assert outcome.final_metrics["eval/perplexity"] == reporter.points["eval/perplexity"][2]
    # checkpoints hold the adapter, not the model
    assert [(n, s) for n, s, _ in reporter.checkpoints] == [("checkpoint-1", 1),
                                                            ("checkpoint-2", 2)]
    checkpoint = Path(reporter.checkpoints[-1][2])
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    # predictions: one row per test example, exact match over them
    rows = outcome.predictions
    assert [r["row"] for r in rows] == [0, 1, 2, 3] and {r["split"] for r in rows} == {"test"}
    assert set(rows[0]) == {"split", "row", "prompt", "reference", "generated", "correct"}
    assert rows[0]["prompt"] == "Add 5 and 0. Answer:" and rows[0]["reference"] == " 5"
    assert all(r["correct"] == (r["generated"].strip() == r["reference"].strip()) for r in rows)
    assert outcome.final_metrics["test/exact_match"] == sum(r["correct"] for r in rows) / 4
    # final: adapter + tokenizer; final-merged: a plain model
    final, merged = outcome.final_dirs
    assert (final.name, merged.name) == ("final", "final-merged")
    assert (final / "adapter_config.json").is_file() and (final / "tokenizer.json").is_file()
    assert (merged / "model.safetensors").is_file() and (merged / "tokenizer.json").is_file()
    assert not (merged / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(merged)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), final)
    ids = AutoTokenizer.from_pretrained(merged)(rows[0]["prompt"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(plain(**ids).logits, adapted(**ids).logits, atol=1e-5)
    assert not torch.allclose(
        plain(**ids).logits, AutoModelForCausalLM.from_pretrained(tiny_llama)(**ids).logits)


def test_a_chat_job_generates_from_the_rendered_prompt(tiny_llama, tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data", chat=True), chat=True, max_steps=1)
    outcome = train(spec, D.local_source(tmp_path / "data"), tmp_path / "job", Recorder())
    first = outcome.predictions[0]
    assert first["prompt"] == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                               "<|im_start|>user\nAdd 5 and 0.<|im_end|>\n"
                               "<|im_start|>assistant\n")
    assert first["reference"] == "5"
    assert "test/exact_match" in outcome.final_metrics


def test_lora_null_is_a_full_fine_tune(tiny_llama, tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"), max_steps=1)
    spec["lora"] = None
    reporter = Recorder()
    outcome = train(spec, D.local_source(tmp_path / "data"), tmp_path / "job", reporter)
    assert reporter.fields["info"][0].startswith("Full fine-tune: all ")
    assert [d.name for d in outcome.final_dirs] == ["final"]
    assert (outcome.final_dirs[0] / "model.safetensors").is_file()
    assert (Path(reporter.checkpoints[0][2]) / "model.safetensors").is_file()
    AutoModelForCausalLM.from_pretrained(outcome.final_dirs[0])


def test_cancel_stops_a_lora_job_at_the_next_step(tiny_llama, tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"), max_steps=50)
    outcome = train(spec, D.local_source(tmp_path / "data"), tmp_path / "job",
                    Recorder(cancel_after=1))
    assert outcome.cancelled and outcome.global_step == 1
    assert outcome.final_dirs == [] and outcome.predictions == []


def test_resuming_from_an_adapter_checkpoint_ends_where_an_unbroken_run_does(tiny_llama,
                                                                             tmp_path):
    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"), max_steps=4, save_steps=2,
                    eval_strategy="no")
    source = D.local_source(tmp_path / "data")
    whole = train(spec, source, tmp_path / "whole", Recorder())
    # the first attempt stops after step 2, as a killed worker would (its schedule unchanged)
    broken = train(spec, source, tmp_path / "broken", Recorder(cancel_after=2))
    assert broken.cancelled and broken.global_step == 2
    checkpoint = tmp_path / "broken" / "output" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    resumed = train(spec, source, tmp_path / "resumed", Recorder(), resume_from=str(checkpoint))
    assert resumed.global_step == 4

    def adapter(job: str) -> dict:
        from safetensors.torch import load_file
        return load_file(tmp_path / job / "final" / "adapter_model.safetensors")

    expected, got = adapter("whole"), adapter("resumed")
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)
    assert resumed.predictions == whole.predictions


def test_the_sft_config_is_the_jobs_training_arguments_not_trls_defaults(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-4, logging_steps=5,
                             seed=11, report_to="none")
    config = sft_config(args, {"max_length": 96})
    assert (config.learning_rate, config.logging_steps, config.seed) == (3e-4, 5, 11)
    # TRL would default to bf16 and gradient checkpointing; tunedeck's rules stay in force
    assert not config.bf16 and not config.fp16 and not config.gradient_checkpointing
    assert config.max_length == 96 and config.completion_only_loss is True
    assert config.output_dir == str(tmp_path) and config.report_to == []


def test_perplexity_is_exp_of_the_loss_and_never_overflows():
    assert perplexity(math.log(20)) == pytest.approx(20)
    assert math.isfinite(perplexity(5000.0))


def test_a_submitted_sft_job_runs_and_stores_its_rows(settings_env, tiny_llama, tmp_path):
    """The whole path: JobSpec -> job row -> run_job -> metrics, checkpoints, predictions."""
    from app.db import session_scope
    from app.jobs import repository, series, service
    from app.jobs.models import Job
    from app.jobs.schemas import JobSpec
    from worker.runner import run_job

    spec = sft_spec(tiny_llama, make_data(tmp_path / "data"))
    with session_scope() as session:
        job_id = service.create_job(session, JobSpec.model_validate(spec)).id
        session.info.pop("tunedeck_pending_jobs", None)  # run in-process, not via the broker
    assert run_job(job_id) == "succeeded"
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.global_step == 2 and "test/exact_match" in job.final_metrics
        assert job.final_metrics["eval/perplexity"] == pytest.approx(
            math.exp(job.final_metrics["eval/loss"]))
        charted = series.metric_series(session, job_id).series
        assert charted["eval/perplexity"].steps == [1, 2]
        names = [c.name for c in repository.checkpoints(session, job_id)]
        assert names == ["checkpoint-1", "checkpoint-2", "final", "final-merged"]
        rows, total = repository.predictions(session, job_id, errors_only=False, offset=0,
                                             limit=10)
        assert total == 4
        assert rows[0].fields["prompt"] == "Add 5 and 0. Answer:"
        assert rows[0].fields["reference"] == " 5"
        assert rows[0].correct == (rows[0].fields["generated"].strip() == "5")
