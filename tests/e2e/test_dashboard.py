"""The dashboard in a real browser against `tunedeck serve`: form -> live job page -> results."""
from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.e2e.browser import SCREENSHOTS_DIR, screenshot
from tests.fixtures import sentiment_rows, write_jsonl

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LOSS_STEPS = "Array.from(window.tunedeck.series.get('train/loss')?.keys() ?? []).sort((a,b)=>a-b)"
STATUS = "document.getElementById('job-status').dataset.status"
# Long enough to watch and reload mid-run (logging every step), short enough for the default run.
TRAIN_ROWS, BATCH, EPOCHS = 320, 4, 2
TOTAL_STEPS = TRAIN_ROWS // BATCH * EPOCHS


def noisy_dataset(root: Path) -> Path:
    """Learnable train rows; every fourth validation label flipped, so some predictions miss."""
    write_jsonl(root / "train.jsonl", sentiment_rows(TRAIN_ROWS, seed=1))
    validation = sentiment_rows(40, seed=2)
    for row in validation[::4]:
        row["label"] = 1 - row["label"]
    write_jsonl(root / "validation.jsonl", validation)
    return root


def fill_form(page, model: Path, dataset: Path, learning_rate: str) -> None:
    page.fill('[name="model"]', str(model))
    page.check('input[name="dataset.source"][value="local"]')
    page.fill('[name="dataset.path"]', str(dataset))
    page.fill('[name="dataset.train_split"]', "train")
    page.fill('[name="dataset.eval_split"]', "validation")
    page.fill('[name="dataset.text_fields.0"]', "text")
    page.fill('[name="dataset.label_field"]', "label")
    fields = {"num_train_epochs": str(EPOCHS), "learning_rate": learning_rate,
              "per_device_train_batch_size": str(BATCH), "logging_steps": "1", "seed": "7"}
    for name, value in fields.items():
        page.fill(f'[name="training.{name}"]', value)
    page.fill('[name="max_length"]', "32")


def loss_steps(page) -> list[int]:
    return page.evaluate(LOSS_STEPS)


def test_form_to_live_chart_to_predictions_and_checkpoint(live_server, tiny_model, page,
                                                          tmp_path):
    dataset = noisy_dataset(tmp_path / "noisy")
    page.goto(f"{live_server.url}/jobs/new")

    fill_form(page, tiny_model, dataset, learning_rate="5e-3")
    screenshot(page, "form")

    # invalid input: the error sits next to its field and what was typed stays
    page.fill('[name="training.learning_rate"]', "fast")
    page.click("button[type=submit]")
    error = page.locator('[data-error-for="training.learning_rate"]')
    assert "valid number" in error.inner_text()
    assert page.input_value('[name="training.learning_rate"]') == "fast"
    assert page.input_value('[name="dataset.path"]') == str(dataset)

    page.fill('[name="training.learning_rate"]', "5e-3")
    page.click("button[type=submit]")
    page.wait_for_url("**/jobs/*")
    job_url = page.url

    # the chart gains points while the job runs, without a reload
    page.evaluate("window.notReloaded = true")
    page.wait_for_function(f"{STATUS} === 'running' && {LOSS_STEPS}.length >= 5", timeout=90_000)
    first = len(loss_steps(page))
    page.wait_for_function(f"{LOSS_STEPS}.length > {first + 5}")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate(STATUS) == "running"

    # reload mid-run: the same curve, no gap, then it keeps growing
    before = page.evaluate("Object.fromEntries(window.tunedeck.series.get('train/loss'))")
    page.reload()
    page.wait_for_function("document.getElementById('chart').dataset.loaded === 'true'")
    after = page.evaluate("Object.fromEntries(window.tunedeck.series.get('train/loss'))")
    assert {k: after[k] for k in before} == before
    steps = loss_steps(page)
    assert steps == list(range(1, len(steps) + 1))
    if SCREENSHOTS_DIR:  # a fuller curve, past the first eval, for the README
        fuller = f"{LOSS_STEPS}.length > {TOTAL_STEPS * 0.6} || {STATUS} !== 'running'"
        page.wait_for_function(fuller, timeout=120_000)
        screenshot(page, "running")

    # the job succeeds; status, whole curve and predictions arrive live
    page.wait_for_function(f"{STATUS} === 'succeeded'", timeout=120_000)
    page.wait_for_selector("#prediction-rows")
    steps = loss_steps(page)
    assert steps == list(range(1, TOTAL_STEPS + 1))
    drawn = page.evaluate("window.tunedeck.plot.data[0]")
    assert drawn == sorted(set(drawn)), "the chart's x values hold a duplicate"
    assert len(drawn) >= TOTAL_STEPS
    assert "newly initialized" in page.inner_text("#job-status")

    # predictions: only the misclassified rows, with the confusion matrix and metrics
    page.check("#errors-only")
    page.wait_for_selector("text=misclassified rows")
    rows = page.locator("#prediction-rows tbody tr")
    assert rows.count() > 0
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.correct)")) == {"false"}
    assert page.locator("#confusion").is_visible()
    assert "accuracy" in page.inner_text("#final-metrics")
    page.locator("#predictions").scroll_into_view_if_needed()
    screenshot(page, "predictions")

    # a checkpoint downloads as a streamed tar archive
    link = page.wait_for_selector('[data-checkpoint="final"] a[download]')
    with page.expect_download() as info:
        link.click()
    archive = info.value.path()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(name.endswith("config.json") for name in names)
    assert page.url == job_url


def test_upload_preview_pickers_and_the_classic_preset(live_server, page, tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text("id,review,stars\n1,great film,pos\n2,awful plot,neg\n3,fine,pos\n")
    page.goto(f"{live_server.url}/jobs/new")
    page.check('input[name="dataset.source"][value="upload"]')
    assert not page.is_visible('[name="dataset.path"]')
    page.set_input_files('input[name="file"]', str(data))
    page.wait_for_selector("table.preview")
    assert "great film" in page.inner_text("table.preview")
    assert page.input_value('select[name="dataset.label_field"]') == "stars"
    assert page.input_value('select[name="dataset.text_fields.0"]') == "review"
    assert page.input_value('[name="dataset.train_split"]') == "train[:80%]"

    page.click("#preset-mrpc")
    page.wait_for_url("**preset=mrpc")
    assert page.input_value('[name="model"]') == "bert-base-uncased"
    assert page.input_value('[name="dataset.config"]') == "mrpc"
    assert page.input_value('[name="dataset.text_fields.1"]') == "sentence2"
