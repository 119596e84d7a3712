"""app/jobs/training_args.py names every TrainingArguments field of the installed transformers,
so the web process validates spec keys without importing transformers."""
from __future__ import annotations

import dataclasses

import transformers

from app.jobs.training_args import RESERVED_TRAINING_KEYS, TRAINING_ARGUMENT_NAMES


def installed_fields() -> set[str]:
    return {field.name for field in dataclasses.fields(transformers.TrainingArguments)
            if field.init}


def test_the_field_list_matches_the_installed_transformers():
    """A transformers upgrade that adds, renames or drops a field fails here: update the list."""
    fields = installed_fields()
    assert TRAINING_ARGUMENT_NAMES - fields == set(), "no longer TrainingArguments fields"
    assert fields - TRAINING_ARGUMENT_NAMES == set(), (
        f"new in transformers {transformers.__version__}: add to TRAINING_ARGUMENT_NAMES")


def test_reserved_keys_are_real_fields():
    assert RESERVED_TRAINING_KEYS - installed_fields() == set()
