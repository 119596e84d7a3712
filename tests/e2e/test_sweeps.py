"""Sweeps and early stopping in a real browser against `tunedeck serve` (web + embedded
worker): the form's Sweep section -> the live leaderboard; a job that stopped early on its page."""
from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.browser import screenshot
from tests.fixtures import sentiment_rows, tiny_spec, wait_for_job, write_jsonl

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

ROWS = "Array.from(document.querySelectorAll('#leaderboard tbody tr'))"
STATUSES = f"{ROWS}.map((r) => r.dataset.status)"
METRICS = f"{ROWS}.map((r) => r.dataset.metric)"


def dataset(root):
    write_jsonl(root / "train.jsonl", sentiment_rows(32, seed=1))
    write_jsonl(root / "validation.jsonl", sentiment_rows(16, seed=2))
    return root


def test_a_three_point_sweep_fills_its_leaderboard_live(live_server, tiny_model, page,
                                                        tmp_path):
    data = dataset(tmp_path / "data")
    page.goto(f"{live_server.url}/jobs/new")
    page.fill('[name="model"]', str(tiny_model))
    page.check('input[name="dataset.source"][value="local"]')
    page.fill('[name="dataset.path"]', str(data))
    page.fill('[name="dataset.eval_split"]', "validation")
    page.fill('[name="dataset.text_fields.0"]', "text")
    for name, value in {"num_train_epochs": "2", "per_device_train_batch_size": "8",
                        "logging_steps": "1", "seed": "7"}.items():
        page.fill(f'[name="training.{name}"]', value)
    page.fill('[name="max_length"]', "32")
    page.click("#sweep-section summary")
    page.fill('[name="sweep.grid"]', "training.learning_rate: 1e-3, 3e-3, 5e-3")
    page.fill('[name="sweep.metric"]', "eval/accuracy")
    page.click("#launch-sweep")
    page.wait_for_url(re.compile(r".*/sweeps/\d+$"))
    page.evaluate("window.notReloaded = true")

    assert page.evaluate(f"{ROWS}.length") == 3
    job_ids = page.evaluate(f"{ROWS}.map((r) => +r.id.split('-').pop())")
    values = page.evaluate(f"{ROWS}.map((r) => r.querySelector('[data-key]').textContent)")
    assert values == ["0.001", "0.003", "0.005"]  # queue order until a metric comes in
    # One worker: the jobs run one after another; the page follows without a reload.
    page.wait_for_function(f"{STATUSES}.filter((s) => s === 'running').length === 1",
                           timeout=120_000)
    page.wait_for_function(f"{METRICS}.filter((m) => m !== '').length >= 1", timeout=120_000)
    page.wait_for_function("document.getElementById('leaderboard').dataset.finished === 'true'",
                           timeout=240_000)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "sweep")
    assert page.evaluate(STATUSES) == ["succeeded"] * 3
    metrics = [float(m) for m in page.evaluate(METRICS)]
    assert metrics == sorted(metrics, reverse=True)  # best first
    assert page.locator("tr.best .tag.best").count() == 1
    assert page.locator("#cancel-sweep").count() == 0  # nothing left to cancel
    href = page.get_attribute("#compare-all", "href")
    assert href == "/compare?jobs=" + ",".join(map(str, sorted(job_ids)))

    # Compare all: three coloured curves, the diff holds only the swept key, and the flipped
    # examples of the three jobs on their shared validation split
    page.click("#compare-all")
    page.wait_for_function("document.getElementById('compare-charts').dataset.loaded")
    plot = "window.tunedeckCompare.plots['train/loss'].plot"
    drawn = page.evaluate(f"{plot}.data.slice(1).map(ys => ys.filter(v => v !== null).length)")
    assert len(drawn) == 3 and all(n > 0 for n in drawn)
    colours = page.evaluate(f"{plot}.series.slice(1).map((s, i) => s.stroke({plot}, i + 1))")
    assert len(set(colours)) == 3
    keys = page.locator("#spec-diff tr[data-key]").evaluate_all("rs => rs.map(r => r.dataset.key)")
    assert keys == ["training.learning_rate"]
    assert page.get_attribute("#flips", "data-comparable") == "true"
    assert "rows flipped" in page.inner_text("#flip-counts")
    assert page.locator("#class-changes tr[data-class]").count() == 2  # positive, negative
    screenshot(page, "compare")


def test_a_job_that_stopped_early_says_so_on_its_page(live_server, tiny_model, page, tmp_path):
    spec = tiny_spec(tiny_model, dataset(tmp_path / "data"), max_steps=40,
                     eval_strategy="steps", save_strategy="steps", eval_steps=2,
                     num_train_epochs=20)
    spec["early_stopping"] = {"patience": 2, "threshold": 100.0}  # no eval improves by 100
    job = httpx.post(f"{live_server.url}/api/v1/jobs", json=spec).json()
    done = wait_for_job(live_server.url, job["id"])
    assert done["status"] == "succeeded" and done["stopped_early"]["step"] == 6
    page.goto(f"{live_server.url}/jobs/{job['id']}")
    notice = page.locator("#stopped-early")
    assert "Stopped early at step 6 of 40" in notice.inner_text()
    best = done["stopped_early"]["best_checkpoint"]
    assert f"The best checkpoint, {best}" in notice.inner_text()
    page.wait_for_function("document.getElementById('chart').dataset.stops !== undefined")
    stops = page.get_attribute("#chart", "data-stops")
    assert stops == f"{done['stopped_early']['best_step']},6"  # the dashed lines drawn
    assert page.locator(f'tr[data-checkpoint="{best}"] #best-checkpoint').count() == 1
