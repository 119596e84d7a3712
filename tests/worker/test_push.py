"""Push a checkpoint to the Hub end to end: the API -> a push row -> the inference queue -> a real
`tunedeck worker --inference` process -> huggingface_hub's create_repo + upload_folder -> a local
stand-in for the Hub (tests/hub_server.py, HF_ENDPOINT) that records what the client sends.

What this proves: the files of the checkpoint (less the resume state) and its README.md model
card reach the endpoint byte for byte through huggingface_hub's real client and upload protocol
(inline commits, and git-LFS "basic" uploads with hf_xet turned off); the private flag, the
bearer token on every API call, the push row's stages and outcome; a token the Hub refuses
becomes "the Hub refused the token" on the push and the job page; the token appears in no
database row, log line or response. What it cannot prove: that huggingface.co accepts these
requests (its API may change, and it checks more: the token's scopes, the YAML schema, rate
limits), nor uploads through Xet storage, which the real Hub uses for large files when hf_xet
is installed (the stand-in speaks the LFS batch API only).
Run: pytest tests/worker/test_push.py
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from huggingface_hub import ModelCard
from huggingface_hub.errors import OfflineModeIsEnabled
from sqlalchemy import text
from transformers import AutoModelForCausalLM

from app import db
from app.config import get_settings
from app.hub.models import HubPush
from app.jobs import repository
from app.models import Base
from tests.app.factories import make_finished_job
from tests.e2e.workers import WorkerProcess
from tests.fixtures import reset_caches, tiny_spec
from tests.hub_server import FakeHub
from tests.worker.recipes.test_causal_lm_sft import make_data, sft_spec
from tests.worker.test_runner import submit
from worker.push import PushFailed, Target, describe, files_to_send, handle
from worker.runner import run_job

TOKEN = "hf_tunedeckTestToken0123456789abcdef"
# A real Hub tells LFS from inline files itself; the stand-in sends files from 4 KB by LFS
# when the client has hf_xet turned off (else the client would use Xet storage for them).
# Each mode takes about 22 s on a loaded 2-core box; the LFS one is marked slow.
MODES = {"inline": (None, {}), "lfs": (4096, {"HF_HUB_DISABLE_XET": "1"})}


@contextmanager
def hub_and_worker(mode: str, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                   tmp_path: Path) -> Iterator[tuple[FakeHub, WorkerProcess]]:
    """The stand-in Hub and an inference worker pointed at it, both holding TOKEN."""
    lfs_from, extra = MODES[mode]
    fake = FakeHub(TOKEN, lfs_from_bytes=lfs_from)
    monkeypatch.setenv("TUNEDECK_HF_TOKEN", TOKEN)
    reset_caches()
    env = {**settings_env, **extra, "TUNEDECK_HF_TOKEN": TOKEN, "HF_ENDPOINT": fake.url,
           "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    worker = WorkerProcess(env, tmp_path / "inference.log", "inference", "--inference")
    try:
        worker.wait_for_output("ready", timeout=120)
        yield fake, worker
    finally:
        worker.stop()
        fake.stop()


@pytest.fixture(params=["inline", pytest.param("lfs", marks=pytest.mark.slow)])
def hub(request, settings_env, monkeypatch, tmp_path) -> Iterator[tuple[FakeHub, WorkerProcess]]:
    with hub_and_worker(request.param, settings_env, monkeypatch, tmp_path) as pair:
        yield pair


def push(client: TestClient, job_id: int, name: str, body: dict) -> dict:
    """Push checkpoint `name` through the API and wait for the outcome."""
    answer = client.post(f"/api/v1/jobs/{job_id}/checkpoints/{name}/push", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued" and answer.json()["repo_id"] == body["repo_id"]
    return wait_for(client, job_id, answer.json()["id"])


def wait_for(client: TestClient, job_id: int, push_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/jobs/{job_id}/pushes/{push_id}").json()
        if body["status"] in ("succeeded", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"push {push_id} did not end in {timeout} s: {body}")


def checkpoint_folders(job_id: int) -> dict[str, Path]:
    data_dir = get_settings().data_dir
    with db.session_scope() as session:
        return {c.name: data_dir / c.path for c in repository.checkpoints(session, job_id)}


def database_text() -> str:
    """Every row of every table, as text."""
    with db.get_engine().connect() as connection:
        return "\n".join(str(row) for table in Base.metadata.sorted_tables
                         for row in connection.execute(text(f"SELECT * FROM {table.name}")))


def test_a_checkpoint_reaches_the_hub_with_its_card_and_the_token_stays_secret(
        hub, client, tiny_model, make_dataset, caplog):
    fake, worker = hub
    spec = tiny_spec(tiny_model, make_dataset(train=16, validation=8), num_train_epochs=2)
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    responses: list[str] = []

    def push_and_keep(name: str, body: dict) -> dict:
        done = push(client, job_id, name, body)
        responses.append(str(done))
        return done

    # `final`, private, into an organisation's namespace
    done = push_and_keep("final", {"repo_id": "acme/tiny-sentiment", "private": True})
    assert done["status"] == "succeeded", done
    folders = checkpoint_folders(job_id)
    final = folders["final"]
    sent = {p.relative_to(final).as_posix(): p.read_bytes() for p in files_to_send(final)}
    received = fake.state.files["acme/tiny-sentiment"]
    assert received == sent and "model.safetensors" in received and "config.json" in received
    card = ModelCard(received["README.md"].decode())
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.tags == ["tunedeck", "text-classification"]
    assert fake.state.repos["acme/tiny-sentiment"]["visibility"] == "private"
    assert (done["stage"], done["files_done"], done["files_total"]) == ("done", len(sent),
                                                                        len(sent))
    assert done["bytes_done"] == done["bytes_total"] == sum(len(b) for b in sent.values())
    assert done["url"] == f"{fake.url}/acme/tiny-sentiment"
    assert done["commit"] == fake.state.commits[-1]["oid"]
    assert fake.state.commits[-1]["header"]["summary"] == f"tunedeck job {job_id}: final"

    # a checkpoint-N, public, into the token owner's namespace: no optimizer/scheduler/RNG state
    done = push_and_keep("checkpoint-2", {"repo_id": "tiny-step-2", "private": False})
    assert done["status"] == "succeeded", done
    received = fake.state.files["tunedeck-user/tiny-step-2"]
    assert fake.state.repos["tunedeck-user/tiny-step-2"]["visibility"] == "public"
    assert "optimizer.pt" in {p.name for p in folders["checkpoint-2"].iterdir()}
    assert "optimizer.pt" not in received and "rng_state.pth" not in received
    assert "README.md" in received and "trainer_state.json" in received

    # every Hub API call carried the token (the LFS storage PUTs go to a signed URL, none)
    api_calls = [r for r in fake.state.requests if not r.path.startswith("/lfs-upload/")]
    assert {r.headers.get("authorization") for r in api_calls} == {f"Bearer {TOKEN}"}
    uploads = [r for r in fake.state.requests if r.path.startswith("/lfs-upload/")]
    assert bool(uploads) == (fake.state.lfs_from_bytes is not None)

    # a token the Hub refuses (revoked): the push fails in words, on the API and the page
    fake.state.token = "hf_anotherTokenTheHubNowWants"
    done = push_and_keep("final", {"repo_id": "acme/refused", "private": True})
    assert done["status"] == "failed" and done["stage"] == "creating repo"
    assert done["error"].startswith("the Hub refused the token (HTTP 401)")
    refused = [r for r in fake.state.requests if r.path == "/api/repos/create"][-1]
    assert refused.headers["authorization"] == f"Bearer {TOKEN}"  # and it echoed it back
    page = client.get(f"/jobs/{job_id}").text
    responses.append(page)
    assert "the Hub refused the token (HTTP 401)" in page
    responses.append(client.get(f"/api/v1/jobs/{job_id}/pushes").text)

    worker.stop()
    for where, content in (("the database", database_text()), ("the worker log",
                           worker.output()), ("the test process's log", caplog.text),
                           ("a response", "\n".join(responses))):
        assert TOKEN not in content, f"the token is in {where}"
    assert f"push {done['id']} of job {job_id} final to acme/refused failed" in worker.output()


def test_files_to_send_leaves_out_resume_state_and_git(tmp_path: Path):
    for name in ("README.md", "model.safetensors", "optimizer.pt", "rng_state_1.pth",
                 ".git/HEAD", "sub/scheduler.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in files_to_send(tmp_path)] == [
        "README.md", "model.safetensors", "sub/scheduler.pt"]


@pytest.mark.slow
def test_a_lora_job_pushes_its_adapter_or_the_merged_model(settings_env, monkeypatch, tmp_path,
                                                           client, tiny_llama):
    """`final` of a LoRA job is the adapter (peft's files and card), `final-merged` a full
    model that transformers loads alone. About 20 s: a LoRA job and a worker start."""
    job_id = submit(sft_spec(tiny_llama, make_data(tmp_path / "data")))
    assert run_job(job_id) == "succeeded"
    with hub_and_worker("inline", settings_env, monkeypatch, tmp_path) as (fake, _):
        for name in ("final", "final-merged"):
            done = push(client, job_id, name, {"repo_id": f"acme/{name}", "private": True})
            assert done["status"] == "succeeded", done
    adapter, merged = fake.state.files["acme/final"], fake.state.files["acme/final-merged"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(adapter)
    assert "model.safetensors" not in adapter
    assert {"config.json", "model.safetensors", "README.md"} <= set(merged)
    assert "adapter_config.json" not in merged
    assert ModelCard(adapter["README.md"].decode()).data.library_name == "peft"
    assert ModelCard(merged["README.md"].decode()).data.library_name == "transformers"
    folder = tmp_path / "received"
    for path, content in merged.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    AutoModelForCausalLM.from_pretrained(folder)  # the pushed files are a whole model


def queued_push(job_id: int, checkpoint: str = "final") -> int:
    with db.session_scope() as session:
        row = HubPush(job_id=job_id, checkpoint=checkpoint, repo_id="acme/x", private=True)
        session.add(row)
        session.flush()
        return row.id


def test_a_worker_without_the_token_fails_the_push_in_words(settings_env):
    push_id = queued_push(make_finished_job(get_settings().data_dir))
    with pytest.raises(PushFailed, match="inference worker has no TUNEDECK_HF_TOKEN"):
        handle({"push_id": push_id})
    with db.session_scope() as session:
        row = session.get(HubPush, push_id)
        assert (row.status, row.stage) == ("failed", "waiting")
        assert "TUNEDECK_HF_TOKEN" in row.error and row.finished_at is not None
    assert handle({"push_id": push_id}) == {"push_id": push_id, "skipped": True}  # redelivered


@pytest.mark.parametrize(("error", "expected"), [
    (OfflineModeIsEnabled("offline"), "HF_HUB_OFFLINE is set on the inference worker"),
    (FileNotFoundError("gone"), "checkpoint 'final' is no longer on disk"),
    (RuntimeError(f"odd answer for {TOKEN}"), "RuntimeError: odd answer for [token]"),
])
def test_failures_are_described_without_the_token(error, expected, tmp_path):
    target = Target(1, "final", "acme/x", True, tmp_path)
    assert describe(error, TOKEN, target).startswith(expected)
