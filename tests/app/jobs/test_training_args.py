"""TrainingArguments keys that would reach outside the worker are refused (issue 17, item 2).

The list and the reason for each: app/jobs/training_args.py REFUSED_TRAINING_KEYS.
"""
from __future__ import annotations

import pytest

from app.jobs.training_args import REFUSED_TRAINING_KEYS, TRAINING_ARGUMENT_NAMES

SPEC = {"model": "tiny-bert", "dataset": {"source": "hub", "path": "glue", "config": "sst2",
                                          "text_fields": ["sentence"]}}
VALUES = {"push_to_hub": True, "hub_model_id": "me/leak", "hub_token": "hf_x",
          "hub_strategy": "every_save", "hub_private_repo": False, "hub_always_push": True,
          "hub_revision": "main", "trackio_space_id": "me/space", "trackio_bucket_id": "b",
          "trackio_static_space_id": "me/static"}


def test_every_refused_key_is_a_training_argument():
    assert set(REFUSED_TRAINING_KEYS) <= TRAINING_ARGUMENT_NAMES
    assert set(VALUES) == set(REFUSED_TRAINING_KEYS)


@pytest.mark.parametrize("key", sorted(VALUES))
def test_a_key_that_reaches_outside_is_a_422_naming_it(client, key):
    response = client.post("/api/v1/jobs", json={**SPEC, "training": {key: VALUES[key]}})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "training"]
    assert f"training.{key} is refused: " in error["msg"]
    assert client.get("/api/v1/jobs").json()["total"] == 0


def test_accelerator_config_as_a_file_path_is_refused(client):
    response = client.post("/api/v1/jobs", json={
        **SPEC, "training": {"accelerator_config": "/etc/accelerate.json"}})
    assert response.status_code == 422
    assert "training.accelerator_config must be a mapping" in response.text
    response = client.post("/api/v1/jobs", json={
        **SPEC, "training": {"accelerator_config": {"split_batches": False}}})
    assert response.status_code == 201, response.text


def test_project_names_nothing_outside_and_stays_allowed(client):
    response = client.post("/api/v1/jobs", json={**SPEC, "training": {"project": "mine"}})
    assert response.status_code == 201, response.text


def test_ignore_mismatched_sizes_is_a_boolean_spec_key(client):
    response = client.post("/api/v1/jobs", json={**SPEC, "ignore_mismatched_sizes": True})
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["ignore_mismatched_sizes"] is True
    assert client.post("/api/v1/jobs", json=SPEC).json()["spec"]["ignore_mismatched_sizes"] \
        is False
    response = client.post("/api/v1/jobs", json={**SPEC, "ignore_mismatched_sizes": "maybe"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "ignore_mismatched_sizes"]
