"""The data check before launch, in a browser and from the CLI, against `tunedeck serve` (whose
inference worker answers it). Run: pytest tests/e2e/test_preflight.py (-m slow for Measure)
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.browser import screenshot
from tests.fixtures import REPO, LiveServer, child_env, sentiment_rows, tiny_spec, write_jsonl

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("preflight-data")
    live = LiveServer({"TUNEDECK_DATA_DIR": str(data_dir)}, data_dir / "serve.log")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows of about 8 tokens, a third of them much longer (cut at MAX_LENGTH), and
    validation rows that repeat train rows."""
    root = tmp_path_factory.mktemp("preflight-dataset")
    train = sentiment_rows(60, seed=1)
    for row in train[::3]:
        row["text"] = row["text"] + " and it was so very fun and it was really good ."
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "validation.jsonl", sentiment_rows(10, seed=2) + train[:4])
    return root


def fill(page, model: Path, dataset: Path) -> None:
    page.fill('[name="model"]', str(model))
    page.check('input[name="dataset.source"][value="local"]')
    page.fill('[name="dataset.path"]', str(dataset))
    page.fill('[name="dataset.train_split"]', "train")
    page.fill('[name="dataset.eval_split"]', "validation")
    page.fill('[name="dataset.text_fields.0"]', "text")
    page.fill('[name="dataset.label_field"]', "label")
    page.fill('[name="max_length"]', str(MAX_LENGTH))


def test_check_data_shows_the_report_with_charts_before_launch(server, page, tiny_model,
                                                               dataset):
    page.goto(f"{server.url}/jobs/new")
    fill(page, tiny_model, dataset)
    page.click("#check-data")
    page.wait_for_selector("#preflight-report", timeout=120_000)
    assert page.url.endswith("/jobs/new")  # nothing launched: still the form
    assert page.locator("#preflight-problems").count() == 0, page.inner_text("#preflight")
    warnings = page.inner_text("#preflight-warnings")
    assert f"cut at max_length {MAX_LENGTH}" in warnings
    assert "also appear in train" in warnings
    # two splits, each with a token-length histogram and a label bar chart, drawn by uPlot
    page.wait_for_function("(window.tunedeck?.preflightCharts || []).length === 4")
    assert page.locator(".pf-chart canvas").count() == 4
    # 60 rows / batch 8 = 8 steps per epoch; the form's default 3 epochs
    assert page.inner_text("#pf-steps-total") == "24"
    screenshot(page, "preflight")

    # a wrong column: the panel says which field, the form stays as typed
    page.fill('[name="dataset.text_fields.0"]', "review")
    page.click("#check-data")
    page.wait_for_selector("#preflight-problems")
    assert "'review' not found" in page.inner_text("#preflight-problems")
    assert page.input_value('[name="dataset.text_fields.0"]') == "review"


@pytest.mark.slow
def test_measure_speed_and_memory_in_the_browser(server, page, tiny_model, dataset):
    page.goto(f"{server.url}/jobs/new")
    fill(page, tiny_model, dataset)
    page.click("#check-data")
    page.wait_for_selector("#measure-button", timeout=120_000)
    page.click("#measure-button")
    page.wait_for_selector("#measure-result", timeout=240_000)
    text = page.inner_text("#measure-result")
    assert "samples/s" in page.inner_text("#measure-speed"), text
    assert "MB" in page.inner_text("#measure-memory")
    assert "Measured on cpu" in text


def tunedeck(server: LiveServer, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO,
                          env=child_env({"TUNEDECK_URL": server.url}), capture_output=True,
                          text=True, timeout=240, check=False)


def test_the_cli_prints_the_report_and_its_warnings(server, tiny_model, dataset, tmp_path):
    spec = {**tiny_spec(tiny_model, dataset), "max_length": MAX_LENGTH}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    done = tunedeck(server, "preflight", str(path))
    assert done.returncode == 0, done.stderr  # warnings, but no error
    assert "train train" in done.stdout and "eval validation" in done.stdout
    assert "steps: 8 per epoch, 16 in all" in done.stdout
    assert f"warning: 33% of train rows are cut at max_length {MAX_LENGTH}" in done.stdout

    as_json = json.loads(tunedeck(server, "preflight", str(path), "--json").stdout)
    assert as_json["report"]["steps"]["total_steps"] == 16

    spec["dataset"]["label_field"] = "stars"
    path.write_text(yaml.safe_dump(spec))
    bad = tunedeck(server, "preflight", str(path))
    assert bad.returncode == 2
    assert "dataset.label_field" in bad.stderr and "'stars' not found" in bad.stderr
