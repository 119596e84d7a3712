"""The new-job form's mapping between typed values and the job spec."""
from __future__ import annotations

import pytest

from app.jobs import forms
from app.jobs.schemas import JobSpec


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
