"""The New job form's Sweep and Early stopping sections, and the sweep page's leaderboard."""
from __future__ import annotations

import re

from app.jobs.models import Job
from app.sweeps.models import Sweep
from tests.app.jobs.test_views import field_errors, form_data


def launch_sweep(client, **overrides):
    data = form_data(client, launch="sweep", **{
        "sweep.grid": "training.learning_rate: 1e-3, 5e-3\ntraining.seed: 1, 2",
        "sweep.metric": "eval/accuracy", **overrides})
    return client.post("/jobs", data=data, follow_redirects=False)


def test_the_sweep_section_queues_one_job_per_point_and_opens_the_sweep(client, session):
    response = launch_sweep(client)
    assert response.status_code == 303
    sweep_id = int(response.headers["location"].rsplit("/", 1)[1])
    jobs = session.query(Job).filter(Job.sweep_id == sweep_id).order_by(Job.id).all()
    assert [j.sweep_values for j in jobs] == [
        {"training.learning_rate": lr, "training.seed": seed}
        for lr in (1e-3, 5e-3) for seed in (1, 2)]
    assert all(j.spec["training"]["max_steps"] == 12 for j in jobs)  # the form's advanced key
    html = client.get(f"/sweeps/{sweep_id}").text
    assert session.get(Sweep, sweep_id).mode == "max"
    rows = re.findall(r'<tr id="sweep-job-(\d+)"', html)
    assert [int(r) for r in rows] == [j.id for j in jobs]
    assert 'hx-trigger="every 2s"' in html and "learning_rate" in html
    ids = ",".join(str(j.id) for j in jobs)
    assert f'href="/compare?jobs={ids}"' in html
    job_page = client.get(f"/jobs/{jobs[1].id}").text
    assert f'Part of <a href="/sweeps/{sweep_id}">sweep {sweep_id}</a>' in job_page
    assert "<code>training.seed=2</code>" in job_page


def test_a_bad_point_is_shown_at_the_grid_and_nothing_is_queued(client, session):
    response = launch_sweep(client, **{"sweep.grid": "training.learning_rate: 1e-3, 7"})
    assert response.status_code == 422
    error = field_errors(response.text)["sweep.grid"]
    assert error.startswith("point 2 of 2 (learning_rate=7): training.learning_rate:")
    assert "training.learning_rate: 1e-3, 7" in response.text  # kept as typed
    assert session.query(Job).count() == 0 and session.query(Sweep).count() == 0
    empty = launch_sweep(client, **{"sweep.grid": ""})
    assert empty.status_code == 422 and "at least one key" in field_errors(empty.text)[
        "sweep.grid"]


def test_cancel_from_the_sweep_page_stops_polling(client, session):
    sweep_id = int(launch_sweep(client).headers["location"].rsplit("/", 1)[1])
    html = client.post(f"/sweeps/{sweep_id}/cancel",
                       headers={"X-CSRF-Token": csrf_of(client, sweep_id)}).text
    assert re.findall(r'<tr id="sweep-job-\d+" data-status="(\w+)"', html) == ["cancelled"] * 4
    assert 'data-finished="true"' in html and "every 2s" not in html


def csrf_of(client, sweep_id: int) -> str:
    page = client.get(f"/sweeps/{sweep_id}").text
    return re.search(r'"X-CSRF-Token": "([^"]*)"', page).group(1)


def test_early_stopping_in_the_form(client, session):
    on = {"early_stopping.on": "on", "early_stopping.patience": "2",
          "early_stopping.threshold": "0.01", "early_stopping.metric": "accuracy"}
    response = client.post("/jobs", data=form_data(client, **on), follow_redirects=False)
    assert response.status_code == 303
    job = session.get(Job, int(response.headers["location"].rsplit("/", 1)[1]))
    assert job.spec["early_stopping"] == {"patience": 2, "threshold": 0.01, "metric": "accuracy"}
    assert job.spec["training"]["metric_for_best_model"] == "accuracy"
    clone = client.get(f"/jobs/new?clone={job.id}").text
    assert 'id="early-stopping" checked' in clone
    assert "metric_for_best_model" not in clone  # early stopping sets it, not the Advanced box
    bad = client.post("/jobs", data=form_data(client, **on, **{
        "training.save_strategy": "no"}))
    assert bad.status_code == 422
    assert "must match training.eval_strategy" in field_errors(bad.text)[
        "training.save_strategy"]
