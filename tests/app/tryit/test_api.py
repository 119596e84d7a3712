"""POST /api/v1/jobs/{id}/checkpoints/{name}/predict and the job page's Try it panel
(app/tryit/): 404 / 409 / 422 / 503 before or without an inference worker, then answers from a
real `tunedeck worker --inference` process that equal the job's trainer.predict rows.
Run: pytest tests/app/tryit/test_api.py
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import FormData

from app.errors import Invalid
from app.jobs.models import JobStatus
from app.main import create_app
from app.tryit.views import inputs_from_form
from tests.app.factories import make_job
from tests.app.jobs.test_views import csrf
from tests.e2e.workers import WorkerProcess
from tests.fixtures import reset_caches, tiny_spec
from tests.worker.test_runner import submit
from worker.runner import run_job


def predict(client: TestClient, job_id: int, name: str = "final", **body):
    return client.post(f"/api/v1/jobs/{job_id}/checkpoints/{name}/predict", json=body)


def locations(response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


def test_unknown_job_or_checkpoint_is_404(client, finished_job):
    assert predict(client, 999_999, inputs=[{"text": "x"}]).status_code == 404
    missing = predict(client, finished_job, "nope", inputs=[{"text": "x"}])
    assert missing.status_code == 404
    assert "it has: checkpoint-2, final" in missing.json()["detail"]


def test_a_job_without_a_checkpoint_yet_is_409(client):
    job_id = make_job(JobStatus.running)
    response = predict(client, job_id, inputs=[{"text": "x"}])
    assert response.status_code == 409
    assert "no checkpoint yet (running)" in response.json()["detail"]


def test_a_checkpoint_gone_from_disk_is_404(client, finished_job, data_dir_path: Path):
    shutil.rmtree(data_dir_path / "jobs" / str(finished_job) / "final")
    response = predict(client, finished_job, inputs=[{"text": "x"}])
    assert response.status_code == 404 and "no longer on disk" in response.json()["detail"]


def test_bad_inputs_are_422_naming_the_field(client, finished_job):
    """Checked by the web (app/tryit/inputs.py): no inference worker runs in this test."""
    assert locations(predict(client, finished_job, inputs=[{"text": " "}])) == [
        ["body", "inputs", "0", "text"]]
    assert locations(predict(client, finished_job, inputs=[{"text": "a"}, {"txt": "b"}])) == [
        ["body", "inputs", "1", "txt"]]
    assert locations(predict(client, finished_job, inputs=[])) == [["body", "inputs"]]
    assert locations(predict(client, finished_job, inputs=["a text"])) == [
        ["body", "inputs", 0]]
    assert locations(predict(client, finished_job, inputs=[{"text": "a"}],
                             max_new_tokens=100_000)) == [["body", "max_new_tokens"]]
    assert locations(predict(client, finished_job, inputs=[{"text": "a"}] * 65)) == [
        ["body", "inputs"]]


def test_without_an_inference_worker_the_answer_is_503(settings_env, finished_job,
                                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNEDECK_INFERENCE_TIMEOUT_SECONDS", "0.5")
    reset_caches()
    with TestClient(create_app()) as client:
        response = predict(client, finished_job, inputs=[{"text": "a fine film"}])
    assert response.status_code == 503
    assert "tunedeck worker --inference" in response.json()["detail"]


def test_the_route_needs_a_token_when_auth_is_on(anon_client, finished_job):
    assert predict(anon_client, finished_job, inputs=[{"text": "x"}]).status_code == 401


def test_the_job_page_offers_try_it_per_checkpoint(client, finished_job):
    page = client.get(f"/jobs/{finished_job}").text
    panel = page[page.index('id="try-it"'):]
    assert re.search(r'<option value="final" selected>', panel)
    assert 'name="field.text"' in panel
    assert f'hx-get="/jobs/{finished_job}/try?checkpoint=checkpoint-2"' in page
    picked = client.get(f"/jobs/{finished_job}/try?checkpoint=checkpoint-2").text
    assert '<option value="checkpoint-2" selected>' in picked
    waiting = client.get(f"/jobs/{make_job(JobStatus.queued)}").text
    assert "Try it needs a checkpoint" in waiting


def test_the_panel_shows_a_bad_input_next_to_the_form(client, finished_job):
    html = client.post(f"/jobs/{finished_job}/try", data={"checkpoint": "final",
                                                          "field.text": "\n \n"},
                       headers={"X-CSRF-Token": csrf(client)})
    assert html.status_code == 200  # htmx swaps only successful answers
    assert 'id="try-it-error" data-field="inputs.0.text"' in html.text


@pytest.fixture
def inference_worker(settings_env, tmp_path: Path):
    worker = WorkerProcess(settings_env, tmp_path / "inference.log", "inference", "--inference")
    worker.wait_for_output("ready", timeout=90)
    yield worker
    worker.stop()


def test_an_inference_worker_answers_with_the_trainer_predict_rows(
        client, tiny_model, make_dataset, inference_worker):
    spec = tiny_spec(tiny_model, make_dataset(train=24, validation=8, string_labels=True))
    job_id = submit(spec)
    assert run_job(job_id) == "succeeded"
    stored = client.get(f"/api/v1/jobs/{job_id}/predictions?per_page=8").json()["items"]
    response = predict(client, job_id, inputs=[r["inputs"] for r in stored])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["checkpoint"] == "final" and answer["device"] in ("cpu", "cuda")
    for mine, theirs in zip(answer["predictions"], stored, strict=True):
        assert mine["prediction"] == theirs["prediction"]
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-5)
    # The panel renders the answer as the predictions view does: the label, a bar per label.
    html = client.post(f"/jobs/{job_id}/try",
                       data={"checkpoint": "final", "field.text": "the movie was great ."},
                       headers={"X-CSRF-Token": csrf(client)}).text
    assert 'id="try-it-rows" data-task="text-classification"' in html
    assert re.search(r'<strong>(positive|negative)</strong>', html)
    assert html.count('class="bar"') == 2  # one probability bar per label


def test_the_panels_fields_become_the_tasks_inputs():
    """inputs_from_form: lines pair up for text pairs; a chat job's system and user turns."""
    pair = {"dataset": {"text_fields": ["premise", "hypothesis"]}}
    form = FormData([("field.premise", "a cat\r\n\r\na dog"), ("field.hypothesis", "x\n\ny")])
    assert inputs_from_form(pair, form) == ([{"premise": "a cat", "hypothesis": "x"},
                                             {"premise": "a dog", "hypothesis": "y"}], None)
    with pytest.raises(Invalid) as uneven:
        inputs_from_form(pair, FormData([("field.premise", "a\nb"), ("field.hypothesis", "x")]))
    assert uneven.value.field == "inputs.hypothesis"
    chat = {"task": "causal-lm-sft", "dataset": {"messages_field": "messages"}}
    form = FormData([("system", " Be brief. "), ("field.messages", "Add 2 and 3.\r\n"),
                     ("max_new_tokens", "8")])
    assert inputs_from_form(chat, form) == ([{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Add 2 and 3.\n"}]}], 8)
    ner = {"task": "token-classification", "dataset": {"tokens_field": "tokens"}}
    assert inputs_from_form(ner, FormData([("field.tokens", "anna flew\nto paris")]))[0] == [
        {"tokens": "anna flew"}, {"tokens": "to paris"}]
