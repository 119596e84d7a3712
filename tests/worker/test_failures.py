"""Failures explained: the exception class, message, traceback tail, and a hint for OOM."""
from __future__ import annotations

import pytest
import torch

from app.db import session_scope
from app.jobs import service
from app.jobs.schemas import JobSpec
from worker import runner
from worker.failures import OOM_HINT, TRACEBACK_LINES, describe_failure
from worker.runner import run_job

SPEC = {"model": "m", "dataset": {"path": "d", "text_fields": ["text"]}}


def raised(exc: BaseException) -> BaseException:
    """`exc` with a real traceback several frames deep."""
    def deep(n: int) -> None:
        if n == 0:
            raise exc
        deep(n - 1)
    try:
        deep(40)
    except BaseException as caught:  # noqa: BLE001 - returned to the test
        return caught
    raise AssertionError("unreachable")


@pytest.mark.parametrize("exc", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.7 GiB "
                           "total capacity)"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("MPS backend out of memory (MPS allocated: 17.2 GB)"),
], ids=["torch.OutOfMemoryError", "CUDA error", "MPS"])
def test_out_of_memory_is_recognised_with_a_hint(exc):
    kind, message, _tail, hint = describe_failure(raised(exc))
    assert kind == type(exc).__name__ and message == str(exc)
    assert hint == OOM_HINT
    for advice in ("per_device_train_batch_size", "gradient_accumulation_steps", "fp16",
                   "bf16", "max_length"):
        assert advice in hint


def chained(depth: int) -> BaseException:
    """An exception with `depth` causes: a traceback longer than the tail kept."""
    exc: BaseException | None = None
    for i in range(depth):
        try:
            raise KeyError(f"label {i}") from exc
        except KeyError as caught:
            exc = caught
    return exc


def test_other_failures_keep_class_message_and_the_traceback_tail():
    kind, message, tail, hint = describe_failure(chained(20))
    assert (kind, message, hint) == ("KeyError", "'label 19'", None)
    lines = tail.splitlines()
    assert len(lines) == TRACEBACK_LINES and lines[-1] == "KeyError: 'label 19'"
    assert describe_failure(raised(ValueError("x" * 50_000)))[1] == "x" * 10_000


def test_a_failed_job_shows_the_failure_through_the_api(client, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(runner, "train", out_of_memory)
    with session_scope() as session:
        # on_oom: fail, so the first attempt is the one that fails (the retry has its own tests
        # in tests/worker/test_oom_retry.py)
        spec = JobSpec.model_validate({**SPEC, "on_oom": "fail"})
        job_id = service.create_job(session, spec).id
        session.info.pop("tunedeck_pending_jobs", None)
    assert run_job(job_id) == "failed"
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    error = job["error"]
    assert error["type"] == "OutOfMemoryError"
    assert error["message"] == "CUDA out of memory. Tried to allocate 20.00 MiB"
    assert error["hint"] == OOM_HINT
    assert "in out_of_memory" in error["traceback"]
    attempts = client.get(f"/api/v1/jobs/{job_id}/attempts").json()
    assert attempts[0]["outcome"] == "failed"
    assert attempts[0]["message"].startswith("OutOfMemoryError: CUDA out of memory")
