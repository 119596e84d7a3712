"""Measured pre-flight (worker/preflight/measure.py). The batch search needs CUDA: on CPU its
control flow runs with an injected fit test, and the real search runs only where a GPU is.
Run: pytest tests/worker/preflight/test_measure.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from app.jobs.schemas import JobSpec
from tests.fixtures import tiny_spec
from worker.preflight import measure


def spec_of(model: Path, dataset: Path, **training) -> dict:
    return JobSpec.model_validate(tiny_spec(model, dataset, **training)).model_dump(mode="json")


@pytest.mark.parametrize(("largest", "effective", "batch", "accumulation"),
                         [(16, 64, 16, 4), (100, 32, 32, 1), (12, 32, 8, 4), (5, 24, 4, 6)])
def test_the_suggestion_keeps_the_effective_batch(largest, effective, batch, accumulation):
    assert measure.suggestion(largest, effective) == {
        "suggested_batch": batch, "suggested_accumulation": accumulation}


def test_the_search_doubles_then_backs_off(monkeypatch):
    monkeypatch.setattr(measure, "fits", lambda recipe, spec, data, tmp, batch: batch <= 24)
    spec = {"training": {"per_device_train_batch_size": 8}}
    found = measure.largest_batch(None, spec, None, Path("."), effective=64)
    assert [t["batch"] for t in found["tried"]] == [8, 16, 24, 32]
    assert found["largest_fitting_batch"] == 24
    assert (found["suggested_batch"], found["suggested_accumulation"]) == (16, 4)


def test_a_batch_that_does_not_fit_is_halved(monkeypatch):
    monkeypatch.setattr(measure, "fits", lambda recipe, spec, data, tmp, batch: batch <= 3)
    spec = {"training": {"per_device_train_batch_size": 8}}
    found = measure.largest_batch(None, spec, None, Path("."), effective=8)
    assert [(t["batch"], t["fits"]) for t in found["tried"]] == [(2, True), (4, False),
                                                                 (8, False)]
    assert (found["suggested_batch"], found["suggested_accumulation"]) == (2, 4)


def test_a_cpu_measurement(settings_env, tiny_model, make_dataset):
    before = set(Path(tempfile.gettempdir()).glob("tunedeck-measure-*"))
    out = measure.handle({"spec": spec_of(tiny_model, make_dataset(train=24)), "steps": 2})
    assert out["timed_steps"] == 2 and out["samples_per_second"] > 0
    assert out["total_steps"] == 6  # 24 rows, batch 8, 2 epochs
    assert set(Path(tempfile.gettempdir()).glob("tunedeck-measure-*")) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the batch search needs CUDA")
def test_the_batch_search_on_a_gpu(settings_env, tiny_model, make_dataset):
    spec = spec_of(tiny_model, make_dataset(train=256), per_device_train_batch_size=8,
                   gradient_accumulation_steps=4)
    out = measure.handle({"spec": spec, "steps": 5})
    assert out["memory_kind"] == "cuda max_memory_allocated" and out["peak_memory_mb"] > 0
    search = out["batch_search"]
    assert search["largest_fitting_batch"] == 32  # the tiny model fits the effective batch
    assert (search["suggested_batch"], search["suggested_accumulation"]) == (32, 1)
