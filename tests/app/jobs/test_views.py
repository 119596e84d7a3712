"""HTML pages and htmx partials, on rows written straight to the database."""
from __future__ import annotations

import re

import pytest
from sqlalchemy.orm import Session

from app.jobs.models import Checkpoint, Job, MetricPoint, Prediction

SPEC = {"model": "/models/tiny", "metrics": ["accuracy", "f1"], "max_length": 32,
        "dataset": {"source": "local", "path": "/data/set", "train_split": "train",
                    "eval_split": "validation", "text_fields": ["text"], "label_field": "label"},
        "training": {"num_train_epochs": 2, "learning_rate": 5e-3, "max_steps": 40}}


def add_job(session: Session, **fields) -> Job:
    values = {"name": "tiny-set", "status": "queued", "spec": SPEC, "latest_metrics": {},
              "info": [], **fields}
    job = Job(**values)
    session.add(job)
    session.commit()
    return job


def running_job(session: Session) -> Job:
    return add_job(session, status="running", global_step=10, max_steps=40, epoch=0.5,
                   eta_seconds=95, samples_per_second=123.4,
                   latest_metrics={"train/loss": 0.4321, "eval/accuracy": 0.875},
                   info=["Some weights of the model were newly initialized: classifier.bias"])


def csrf(client) -> str:
    page = client.get("/jobs/new").text
    return re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)


def field_errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-error-for="([^"]+)">([^<]*)<', html))


# ---------------------------------------------------------------- job list

def test_job_list_shows_status_progress_eta_and_latest_metrics(client, session):
    job = running_job(session)
    html = client.get("/jobs").text
    row = re.search(rf'<tr id="job-{job.id}".*?</tr>', html, re.DOTALL).group(0)
    assert "running" in row and "10 / 40 steps" in row and "ETA 1m 35s" in row
    assert "0.4321" in row and "accuracy" in row and "0.875" in row and "123" in row
    assert 'hx-trigger="every 2s"' in html


def test_job_list_pages_newest_first(client, session):
    for i in range(30):
        add_job(session, name=f"job-{i:02d}")
    first = client.get("/jobs").text
    assert "job-29" in first and "job-04" not in first
    assert "30 jobs · page 1 of 2" in first and 'href="/jobs?page=2"' in first
    second = client.get("/jobs/table?page=2").text
    assert second.startswith('\n<div id="jobs-table"') or 'id="jobs-table"' in second
    assert "job-04" in second and "job-29" not in second and "<html" not in second


def test_job_list_filters_by_status(client, session):
    add_job(session, name="will-fail", status="failed")
    add_job(session, name="still-queued")
    html = client.get("/jobs?status=failed").text
    assert "will-fail" in html and "still-queued" not in html
    assert 'hx-get="/jobs/table?page=1&amp;status=failed"' in html


# ---------------------------------------------------------------- new job form

def test_form_offers_the_classic_preset(client):
    html = client.get("/jobs/new?preset=mrpc").text
    for value in ("bert-base-uncased", "glue", "mrpc", "sentence1", "sentence2"):
        assert f'value="{value}"' in html
    assert 'name="training.num_train_epochs" value="3"' in html


def test_enter_in_the_form_launches_a_job_not_a_sweep(client):
    """Enter submits through the form's first submit button: it must be "Launch job"."""
    page = client.get("/jobs/new").text
    form = page[page.index('<form'):page.index('</form>')]
    first = form[form.index('type="submit"') - 40:form.index('type="submit"') + 80]
    assert "Launch job" in first and 'value="sweep"' not in first, first
    assert 'id="launch-sweep"' in form


def test_clone_opens_the_form_filled_with_the_spec(client, session):
    job = add_job(session, spec={**SPEC, "training": {**SPEC["training"],
                                                       "label_smoothing_factor": 0.1}})
    html = client.get(f"/jobs/new?clone={job.id}").text
    assert f"Cloned from <a href=\"/jobs/{job.id}\">" in html
    assert 'value="/models/tiny"' in html and 'value="0.005"' in html
    assert "label_smoothing_factor: 0.1" in html and "max_steps: 40" in html
    assert client.get("/jobs/new?clone=999").status_code == 404


def form_data(client, **overrides) -> dict:
    data = {"csrf_token": csrf(client), "model": "/models/tiny", "dataset.source": "local",
            "dataset.path": "/data/set", "dataset.train_split": "train",
            "dataset.eval_split": "validation", "dataset.text_fields.0": "text",
            "dataset.label_field": "label", "max_length": "32", "metrics": ["accuracy"],
            "training.num_train_epochs": "2", "training.learning_rate": "5e-3",
            "training.per_device_train_batch_size": "8",
            "training.per_device_eval_batch_size": "8",
            "training.gradient_accumulation_steps": "1", "training.lr_scheduler_type": "linear",
            "training.warmup_steps": "0", "training.weight_decay": "0",
            "training.eval_strategy": "epoch", "training.save_strategy": "epoch",
            "training.logging_steps": "1", "precision": "fp32", "training.seed": "7",
            "training.train_sampling_strategy": "random", "advanced": "max_steps: 12"}
    return {**data, **overrides}


def test_valid_form_creates_the_job_and_redirects_to_it(client, session):
    response = client.post("/jobs", data=form_data(client), follow_redirects=False)
    assert response.status_code == 303
    job_id = int(response.headers["location"].rsplit("/", 1)[1])
    job = session.get(Job, job_id)
    assert job.status == "queued" and job.spec["training"]["max_steps"] == 12
    assert job.spec["dataset"]["text_fields"] == ["text"] and job.spec["metrics"] == ["accuracy"]
    assert client.get(f"/jobs/{job_id}").status_code == 200


def test_invalid_form_shows_errors_by_field_and_keeps_the_input(client, session):
    data = form_data(client, **{"training.learning_rate": "fast", "model": "",
                                "training.per_device_train_batch_size": "0"})
    response = client.post("/jobs", data=data)
    assert response.status_code == 422
    errors = field_errors(response.text)
    assert errors["model"] == "This field is required."
    assert "valid number" in errors["training.learning_rate"]
    assert "greater than or equal to 1" in errors["training.per_device_train_batch_size"]
    assert 'name="training.learning_rate" value="fast"' in response.text
    assert 'value="/data/set"' in response.text
    assert session.query(Job).count() == 0


def test_unknown_upload_id_is_shown_at_the_upload(client):
    data = form_data(client, **{"dataset.source": "upload", "dataset.upload": "ds-missing"})
    response = client.post("/jobs", data=data)
    assert response.status_code == 422
    assert "ds-missing" in field_errors(response.text)["dataset.upload"]


def test_form_post_without_csrf_token_is_refused(client):
    data = form_data(client)
    del data["csrf_token"]
    assert client.post("/jobs", data=data).status_code == 403


def test_upload_previews_rows_and_offers_columns(client):
    body = "id,review,stars\n1,great film,pos\n2,awful plot,neg\n3,fine,pos\n"
    response = client.post("/jobs/upload", files={"file": ("reviews.csv", body, "text/csv")},
                           headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200
    html = response.text
    assert 'name="dataset.upload" value="ds-' in html and "3 rows" in html
    assert "<td>great film</td>" in html
    assert 'hx-swap-oob="true"' in html
    assert re.search(r'name="dataset.label_field".*?<option value="stars" selected>', html, re.DOTALL)
    assert re.search(r'name="dataset.text_fields.0".*?<option value="review" selected>', html,
                     re.DOTALL)
    assert 'value="train[:80%]"' in html


def test_upload_of_an_unreadable_file_says_why(client):
    response = client.post("/jobs/upload", files={"file": ("notes.docx", b"x", "text/plain")},
                           headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 422
    assert "unsupported file type" in field_errors(response.text)["file"]


# ---------------------------------------------------------------- job page

def test_running_job_page_streams_from_the_rendered_cursor(client, session):
    job = running_job(session)
    session.add_all([MetricPoint(job_id=job.id, name="train/loss", step=s, value=1 / s)
                     for s in range(1, 6)])
    session.commit()
    last = max(p.id for p in session.query(MetricPoint))
    html = client.get(f"/jobs/{job.id}").text
    assert f'sse-connect="/api/v1/jobs/{job.id}/events?after={last}"' in html
    assert 'sse-close="end"' in html and 'id="cancel"' in html
    assert 'data-kind="info"' in html and "newly initialized" in html
    assert "/static/vendor/uPlot.iife.min.js" in html and "/static/chart.js" in html


def test_failed_job_shows_the_error_and_traceback_tail(client, session):
    trace = "\n".join(f"line {i}" for i in range(100))
    job = add_job(session, status="failed", error_type="ValueError", error_message="bad label",
                  error_traceback=trace, error_hint="check the label column")
    html = client.get(f"/jobs/{job.id}").text
    assert "ValueError" in html and "bad label" in html and "check the label column" in html
    assert "line 99" in html and "line 59" not in html
    assert "sse-connect" not in html and 'id="cancel"' not in html


def test_cancel_returns_the_refreshed_status(client, session):
    job = add_job(session)
    html = client.post(f"/jobs/{job.id}/cancel", headers={"X-CSRF-Token": csrf(client)}).text
    assert 'id="job-status"' in html and 'data-status="cancelled"' in html
    assert "<html" not in html
    again = client.post(f"/jobs/{job.id}/cancel", headers={"X-CSRF-Token": csrf(client)})
    assert again.status_code == 200


def test_status_partial(client, session):
    job = running_job(session)
    html = client.get(f"/jobs/{job.id}/status").text
    assert html.lstrip().startswith('<section id="job-status"')
    assert "sse:progress throttle:1s" in html and "ETA" in html


def finished_with_predictions(session: Session) -> Job:
    job = add_job(session, status="succeeded", label_names=["neg", "pos"],
                  final_metrics={"test/accuracy": 0.75, "test/f1": 0.8})
    rows = [("good film", "pos", "pos"), ("awful", "neg", "pos"), ("fine", "pos", "pos"),
            ("bad", "neg", "neg")] * 10
    session.add_all([
        Prediction(job_id=job.id, split="validation", row=i, inputs={"text": f"{text} {i}"},
                   label=label, prediction=pred, confidence=0.9,
                   probabilities={pred: 0.9}, correct=label == pred)
        for i, (text, label, pred) in enumerate(rows)])
    session.add(Checkpoint(job_id=job.id, name="checkpoint-20", step=20, path="jobs/x",
                           metrics={"eval/accuracy": 0.7}, size_bytes=2048))
    session.commit()
    return job


def test_predictions_table_filter_paging_confusion_and_metrics(client, session):
    job = finished_with_predictions(session)
    html = client.get(f"/jobs/{job.id}").text
    assert 'id="confusion"' in html and "test/accuracy" in html and "0.75" in html
    assert "40 rows · page 1 of 2" in html
    confusion = re.search(r'id="confusion".*?</table>', html, re.DOTALL).group(0)
    assert [int(n) for n in re.findall(r">(\d+)</td>", confusion)] == [10, 10, 0, 20]
    errors = client.get(f"/jobs/{job.id}/predictions?errors_only=true").text
    assert errors.lstrip().startswith('<section id="predictions"')
    assert "10 misclassified rows" in errors
    assert 'data-correct="true"' not in errors and errors.count('data-correct="false"') == 10
    page2 = client.get(f"/jobs/{job.id}/predictions?page=2").text
    assert "page 2 of 2" in page2 and "awful 21" in page2


def test_checkpoints_list_step_metrics_and_download_link(client, session):
    job = finished_with_predictions(session)
    html = client.get(f"/jobs/{job.id}/checkpoints").text
    assert "checkpoint-20" in html and "eval/accuracy" in html and "0.7" in html
    assert f'href="/api/v1/jobs/{job.id}/checkpoints/checkpoint-20/download"' in html
    assert "2.0 KB" in html


@pytest.mark.parametrize("path", ["/jobs/12345", "/jobs/12345/status",
                                  "/jobs/12345/predictions"])
def test_missing_job_is_404(client, path):
    assert client.get(path).status_code == 404


def test_vendored_assets_are_served_locally(client):
    for path in ("/static/vendor/htmx.min.js", "/static/vendor/sse.js",
                 "/static/vendor/uPlot.iife.min.js", "/static/chart.js"):
        assert client.get(path).status_code == 200, path


def test_a_job_on_an_uploaded_file_goes_through(client, session):
    body = "review,stars\ngreat film,pos\nawful plot,neg\nfine,pos\nbad,neg\n"
    upload = client.post("/jobs/upload", files={"file": ("r.csv", body, "text/csv")},
                         headers={"X-CSRF-Token": csrf(client)}).text
    dataset_id = re.search(r'name="dataset.upload" value="([^"]+)"', upload).group(1)
    data = form_data(client, **{"dataset.source": "upload", "dataset.upload": dataset_id,
                                "dataset.path": "", "dataset.text_fields.0": "review",
                                "dataset.label_field": "stars",
                                "dataset.train_split": "train[:80%]",
                                "dataset.eval_split": "train[80%:]"})
    response = client.post("/jobs", data=data, follow_redirects=False)
    assert response.status_code == 303
    job = session.get(Job, int(response.headers["location"].rsplit("/", 1)[1]))
    assert job.spec["dataset"]["source"] == "upload" and job.spec["dataset"]["path"] == dataset_id


def test_the_fast_switch_stores_the_expanded_preset_and_the_page_names_it(client, session):
    response = client.post("/jobs", data=form_data(client, fast="on"), follow_redirects=False)
    job = session.get(Job, int(response.headers["location"].rsplit("/", 1)[1]))
    assert job.spec["preset"] == "fast" and job.spec["collator"] == {"pad_to_multiple_of": 8}
    assert job.spec["training"]["train_sampling_strategy"] == "group_by_length"
    assert job.spec["training"]["bf16"] == "auto" and job.spec["training"]["tf32"] == "auto"
    page = client.get(f"/jobs/{job.id}").text
    assert '<span class="badge" id="preset">Fast preset</span>' in page
    assert "dataloader_num_workers: 2" in page  # the stored spec, every key the preset set
    plain = client.post("/jobs", data=form_data(client), follow_redirects=False)
    assert "Fast preset</span>" not in client.get(plain.headers["location"]).text
