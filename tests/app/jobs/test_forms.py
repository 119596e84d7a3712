"""The new-job form's mapping between typed values and the job spec."""
from __future__ import annotations

import re

import pytest

from app.jobs import forms
from app.jobs.schemas import FAST_TRAINING, JobSpec


def spec_with_extras() -> dict:
    return {
        "name": "my-run", "model": "/models/tiny",
        "dataset": {"source": "local", "path": "/data/set", "train_split": "train",
                    "eval_split": "validation", "text_fields": ["a", "b"], "label_field": "y"},
        "max_length": 64, "metrics": ["accuracy"],
        "training": {"num_train_epochs": 2, "learning_rate": 1e-4, "bf16": True,
                     "max_steps": 50, "label_smoothing_factor": 0.1},
    }


@pytest.mark.parametrize("spec", [forms.PRESETS["mrpc"], spec_with_extras()])
def test_values_round_trip_to_the_same_spec(spec):
    values = forms.values_for_spec(JobSpec.model_validate(spec).model_dump(mode="json"))
    built = forms.build_spec(values)
    assert built == JobSpec.model_validate(spec)


def test_clone_puts_only_non_default_other_keys_in_advanced():
    values = forms.values_for_spec(JobSpec.model_validate(spec_with_extras()).model_dump())
    assert values["advanced"] == "label_smoothing_factor: 0.1\nmax_steps: 50\n"
    assert values["precision"] == "bf16"
    assert values["dataset.text_fields.1"] == "b"


def test_preset_is_the_classic_recipe():
    values = forms.values_for_spec(forms.PRESETS["mrpc"])
    assert (values["model"], values["dataset.path"], values["dataset.config"]) == (
        "bert-base-uncased", "glue", "mrpc")
    assert values["dataset.text_fields.0"] == "sentence1"
    assert values["dataset.text_fields.1"] == "sentence2"
    assert values["training.num_train_epochs"] == "3"
    assert float(values["training.learning_rate"]) == 2e-5


def invalid(values: dict) -> dict[str, str]:
    with pytest.raises(forms.FormInvalid) as info:
        forms.build_spec(values)
    return info.value.errors


def test_errors_are_keyed_by_form_field():
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "model": "",
              "training.learning_rate": "fast", "dataset.text_fields.0": "",
              "dataset.text_fields.1": "", "metrics": ["nope"]}
    errors = invalid(values)
    assert errors["model"] == forms.REQUIRED
    assert "valid number" in errors["training.learning_rate"]
    assert errors["dataset.text_fields"] == "Pick at least one text column."
    assert "metrics" in errors


@pytest.mark.parametrize(("text", "expected"), [
    ("max_steps: [", "Not valid YAML"),
    ("- 1\n- 2", "one `key: value` per line"),
    ("num_train_epochs: 4", "in its own field"),
    ("warp_speed: 9", "warp_speed"),
    ("output_dir: /tmp/x", "output_dir"),
])
def test_advanced_box_errors(text, expected):
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "advanced": text}
    assert expected in invalid(values)["advanced"]


def test_advanced_accepts_json_and_yaml():
    base = forms.values_for_spec(forms.PRESETS["mrpc"])
    for text in ('{"max_steps": 7}', "max_steps: 7"):
        assert forms.build_spec({**base, "advanced": text}).training.max_steps == 7


def test_upload_source_uses_the_uploaded_id_and_reports_it_there():
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "dataset.source": "upload",
              "dataset.upload": "ds-abc"}
    assert forms.build_spec(values).dataset.path == "ds-abc"
    assert "dataset.upload" in invalid({**values, "dataset.upload": ""})


def test_length_grouped_batches_have_a_field_of_their_own():
    spec = {**forms.PRESETS["mrpc"], "training": {**forms.PRESETS["mrpc"]["training"],
                                                   "train_sampling_strategy": "group_by_length"}}
    values = forms.values_for_spec(JobSpec.model_validate(spec).model_dump(mode="json"))
    assert values["training.train_sampling_strategy"] == "group_by_length"
    assert values["advanced"] == ""
    assert forms.build_spec(values).training.train_sampling_strategy == "group_by_length"
    assert "group_by_length" in forms.CHOICES["sampling"]


# ---------------------------------------------------------------- every task

def sft_spec(**changes) -> dict:
    spec = {"task": "causal-lm-sft", "model": "/models/llama",
            "dataset": {"source": "local", "path": "/data/chat", "messages_field": "turns"},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]},
            "generation": {"max_new_tokens": 12}}
    return {**spec, **changes}


TASK_SPECS = [
    *forms.PRESETS.values(),
    {"task": "multi-label-classification", "model": "m",
     "dataset": {"path": "d", "text_fields": ["t"], "label_field": "tags",
                 "label_separator": "|"}, "threshold": 0.3, "metrics": ["f1_macro"]},
    {"task": "token-classification", "model": "m",
     "dataset": {"path": "d", "tokens_field": "words", "tags_field": "iob"}},
    sft_spec(), sft_spec(lora=None),
    sft_spec(dataset={"path": "d", "prompt_field": "q", "completion_field": "a"}),
]


@pytest.mark.parametrize("spec", TASK_SPECS,
                         ids=lambda s: f"{s.get('task', 'text-classification')}")
def test_every_task_round_trips_through_the_form(spec):
    """Clone (values_for_spec) of a job of any task submits back to the same spec."""
    expected = JobSpec.model_validate(spec)
    values = forms.values_for_spec(expected.model_dump(mode="json"))
    assert values["task"] == expected.task
    assert forms.build_spec(values) == expected


def test_one_preset_per_task_each_valid():
    tasks = {JobSpec.model_validate(spec).task for spec in forms.PRESETS.values()}
    assert tasks == set(forms.TASK_SPECS)
    assert forms.PRESETS["conll2003"]["model"] == "bert-base-cased"
    assert forms.PRESETS["smollm2-sft"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert set(forms.PRESET_TITLES) == set(forms.PRESETS)


def test_sft_values_hold_lora_layout_and_generation():
    values = forms.values_for_spec(JobSpec.model_validate(sft_spec()).model_dump(mode="json"))
    assert values["dataset.layout"] == "messages"
    assert values["dataset.messages_field"] == "turns"
    assert values["lora.target_modules"] == "q_proj, v_proj"
    assert (values["lora.r"], values["lora.full"], values["generation.max_new_tokens"]) == (
        "8", "", "12")
    full = forms.values_for_spec(JobSpec.model_validate(sft_spec(lora=None)).model_dump())
    assert full["lora.full"] == "on"
    assert forms.build_spec(full).lora is None


def test_switching_task_keeps_what_was_typed_and_sets_the_new_tasks_defaults():
    typed = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "dataset.train_split": "train[:10]"}
    token = forms.values_for_task(typed, "token-classification")
    assert token["task"] == "token-classification"
    assert (token["model"], token["dataset.train_split"]) == ("bert-base-uncased", "train[:10]")
    assert (token["dataset.tokens_field"], token["dataset.tags_field"]) == ("tokens", "ner_tags")
    assert token["metrics"] == ["accuracy", "f1"]  # the checked ones the token task has too
    regression = forms.values_for_task(typed, "text-regression")
    assert regression["metrics"] == ["mse", "mae", "pearson", "spearman"]  # none carried over
    assert forms.values_for_task(typed, "no-such-task")["task"] == "text-classification"


@pytest.mark.parametrize(("task", "changes", "field", "expected"), [
    ("token-classification", {"dataset.tags_field": "tokens"}, "dataset.tags_field",
     "two different columns"),
    ("token-classification", {"dataset.tokens_field": ""}, "dataset.tokens_field",
     forms.REQUIRED),
    ("multi-label-classification", {"threshold": "1.5"}, "threshold", "less than 1"),
    ("causal-lm-sft", {"dataset.completion_field": "prompt"}, "dataset.completion_field",
     "two different columns"),
    ("causal-lm-sft", {"dataset.layout": "messages", "dataset.messages_field": ""},
     "dataset.messages_field", forms.REQUIRED),
    ("causal-lm-sft", {"lora.r": "0"}, "lora.r", "greater than or equal to 1"),
    ("causal-lm-sft", {"lora.target_modules": ""}, "lora.target_modules", forms.REQUIRED),
    ("causal-lm-sft", {"lora.target_modules": "q_proj, ,"}, "lora.target_modules",
     "all-linear"),
    ("causal-lm-sft", {"generation.max_new_tokens": "many"}, "generation.max_new_tokens",
     "valid integer"),
    ("causal-lm-sft", {"metrics": ["accuracy"]}, "metrics", "perplexity"),
])
def test_each_tasks_errors_sit_at_its_field(task, changes, field, expected):
    values = {**forms.values_for_task(forms.blank_values(), task), "model": "m",
              "dataset.path": "d", **changes}
    errors = invalid(values)
    assert expected in errors[field], errors


def test_an_unknown_task_is_an_error_at_the_picker():
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "task": "summarize"}
    assert "task" in invalid(values)


# ---------------------------------------------------------------- the form's routes

def test_task_picker_swaps_in_the_tasks_fields_with_what_was_typed(client):
    query = {"task": "causal-lm-sft", "dataset.train_split": "train[:64]", "model": "m"}
    html = client.get("/jobs/new/task", params=query).text
    assert 'id="data-fields" class="grid" data-task="causal-lm-sft" hx-swap-oob="true"' in html
    assert 'id="task-options" data-task="causal-lm-sft" hx-swap-oob="true"' in html
    assert 'value="train[:64]"' in html
    for name in ("dataset.prompt_field", "dataset.messages_field", "lora.r", "lora.full",
                 "generation.max_new_tokens"):
        assert f'name="{name}"' in html
    assert 'value="perplexity"' in html and 'name="dataset.text_fields.0"' not in html


def test_an_invalid_form_of_a_task_re_renders_that_task_with_its_error(client):
    form = {**forms.values_for_task(forms.blank_values(), "token-classification"),
            "model": "m", "dataset.path": "d", "dataset.tags_field": "tokens"}
    page = client.get("/jobs/new").text
    form["csrf_token"] = re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)
    response = client.post("/jobs", data=form)
    assert response.status_code == 422
    assert '<option value="token-classification" selected>' in response.text
    assert 'data-error-for="dataset.tags_field"' in response.text
    assert 'name="dataset.tokens_field" value="tokens"' in response.text


def test_every_preset_fills_its_tasks_form(client):
    for key, spec in forms.PRESETS.items():
        html = client.get(f"/jobs/new?preset={key}").text
        task = spec.get("task", "text-classification")
        assert f'<option value="{task}" selected>' in html
        assert f'data-task="{task}"' in html and f'id="preset-{key}"' in html


def test_iob_spans_read_entities_as_seqeval_does():
    from app.jobs.views import iob_spans

    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-LOC", "I-LOC", "I-PER"]
    assert iob_spans(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("LOC", 5, 7),
                               ("PER", 7, 8)]


def test_the_fast_switch_expands_the_preset_into_explicit_keys():
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "fast": "on"}
    assert values["training.train_sampling_strategy"] == "random"  # the reference default
    spec = forms.build_spec(values).model_dump(mode="json")
    assert spec["preset"] == "fast" and spec["collator"] == {"pad_to_multiple_of": 8}
    assert {k: spec["training"][k] for k in FAST_TRAINING} == FAST_TRAINING
    again = forms.values_for_spec(spec)
    assert again["fast"] == "on" and again["precision"] == "fp32" and again["advanced"] == ""
    assert forms.build_spec(again).model_dump(mode="json") == spec


def test_fields_changed_from_the_defaults_win_over_the_fast_preset():
    values = {**forms.values_for_spec(forms.PRESETS["mrpc"]), "fast": "on", "precision": "fp16",
              "training.train_sampling_strategy": "sequential",
              "advanced": "dataloader_num_workers: 0"}
    training = forms.build_spec(values).training.model_dump()
    assert training["train_sampling_strategy"] == "sequential"
    assert training["fp16"] is True and training["bf16"] is False
    assert training["dataloader_num_workers"] == 0 and training["tf32"] == "auto"


def test_without_the_switch_the_spec_is_the_reference_recipe():
    spec = forms.build_spec(forms.values_for_spec(forms.PRESETS["mrpc"])).model_dump(mode="json")
    assert spec["preset"] is None and spec["collator"] == {"pad_to_multiple_of": None}
    assert spec["training"]["train_sampling_strategy"] == "random"
    assert "dataloader_num_workers" not in spec["training"]


def test_the_gpu_fields_set_resources_and_round_trip():
    values = forms.values_for_spec(JobSpec.model_validate(spec_with_extras()).model_dump())
    assert (values["resources.gpus"], values["resources.gpu_memory_gb"]) == ("", "")
    assert forms.build_spec(values).resources.gpus is None  # empty: the worker's default
    values.update({"resources.gpus": "2", "resources.gpu_memory_gb": "20"})
    spec = forms.build_spec(values)
    assert (spec.resources.gpus, spec.resources.gpu_memory_gb) == (2, 20)
    again = forms.values_for_spec(spec.model_dump(mode="json"))
    assert (again["resources.gpus"], again["resources.gpu_memory_gb"]) == ("2", "20")
    values["resources.gpus"] = "-1"
    assert "resources.gpus" in invalid(values)
