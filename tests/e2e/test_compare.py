"""The compare page in a real browser against `tunedeck serve --no-worker` (SQLite): three
jobs' rows made by the factories and the worker's own store functions (no training), picked
in the job list, compared: one coloured curve per job in each chart, live while one runs, the
spec diff with only the key that differs, the final metrics with the best marked, and the
flipped examples with their filter."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from app.db import session_scope, utcnow
from app.jobs.models import Job, JobStatus
from tests.app.compare.test_api import classified, finished, spec
from tests.app.factories import add_points
from tests.e2e.browser import screenshot
from tests.fixtures import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PLOT = "window.tunedeckCompare.plots['{}'].plot"


@pytest.fixture
def web(settings_env, tmp_path) -> Iterator[LiveServer]:
    server = LiveServer(settings_env, tmp_path / "serve.log", with_worker=False)
    yield server
    server.stop()


def three_jobs() -> list[int]:
    """Two finished learning rates and a third still running, all on the same split."""
    a = finished("lr-1e-5", spec(learning_rate=1e-5), {"eval/accuracy": 0.5, "eval/loss": 0.7})
    b = finished("lr-3e-5", spec(learning_rate=3e-5), {"eval/accuracy": 0.83, "eval/loss": 0.4})
    c = finished("lr-1e-4", spec(learning_rate=1e-4), {"eval/accuracy": 0.67, "eval/loss": 0.5})
    with session_scope() as session:  # c is still training (a test may write its state)
        job = session.get(Job, c)
        # a live lease, so the server's lease sweep leaves it running
        job.status, job.worker_id, job.attempts = JobStatus.running, "w1@test", 1
        job.heartbeat_at = utcnow() + timedelta(hours=1)
    for job_id, scale in ((a, 1.0), (b, 0.7), (c, 0.4)):
        add_points(job_id, "train/loss", [scale / (1 + i / 10) for i in range(60)])
        add_points(job_id, "eval/loss", [scale, scale * 0.8], first_step=30)
        add_points(job_id, "eval/accuracy", [0.5, 0.5 + scale / 4], first_step=30)
    classified(a, [True, True, False, False, True, False])
    classified(b, [True, False, True, False, True, True])
    return [a, b, c]


def test_compare_three_jobs_from_the_job_list(web, page) -> None:
    a, b, c = three_jobs()
    page.goto(f"{web.url}/jobs")
    for job_id in (a, b, c):
        page.check(f"#pick-{job_id}")
    page.wait_for_timeout(2500)  # the table refreshes every 2 s: the ticks must survive it
    assert all(page.is_checked(f"#pick-{job_id}") for job_id in (a, b, c))
    page.click("#compare-button")
    page.wait_for_url("**/compare?**")
    page.wait_for_function("document.getElementById('compare-charts').dataset.loaded")

    # one chart per family, one series per job, each in its own colour
    families = page.get_attribute("#compare-charts", "data-families").split(",")
    assert families[:2] == ["train/loss", "eval/loss"] and "eval/accuracy" in families
    for family in ("train/loss", "eval/loss", "eval/accuracy"):
        labels = page.evaluate(f"{PLOT.format(family)}.series.slice(1).map(s => s.label)")
        assert labels == [f"#{a} lr-1e-5", f"#{b} lr-3e-5", f"#{c} lr-1e-4"]
        drawn = page.evaluate(f"{PLOT.format(family)}.data.slice(1).map("
                              "ys => ys.filter(v => v !== null).length)")
        assert all(n > 0 for n in drawn), (family, drawn)
    colours = page.evaluate(f"{PLOT.format('train/loss')}.series.slice(1)"
                            ".map((s, i) => s.stroke(window.tunedeckCompare, i + 1))")
    assert len(set(colours)) == 3

    # the diff shows only the key that differs; the best accuracy and loss are b's
    keys = page.locator("#spec-diff tr[data-key]").evaluate_all(
        "rows => rows.map(r => r.dataset.key)")
    assert keys == ["training.learning_rate"]
    best = page.locator('#compare-metrics td[data-best="true"]')
    assert best.count() == 2
    assert "0.83" in page.inner_text('#compare-metrics tr[data-metric="eval/accuracy"]')

    # flips: c has no predictions yet, so none are shown and the page says why
    assert f"job {c} has no predictions yet (running)" in page.inner_text("#no-flips")

    # live: c's new points reach its curve without a reload
    page.evaluate("window.notReloaded = true")
    add_points(c, "train/loss", [0.01 * i for i in range(10)], first_step=61)
    page.wait_for_function(
        f"window.tunedeckCompare.data.get({c}).get('train/loss').size >= 70", timeout=20_000)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "compare")


def test_flipped_examples_table_and_filter(web, page) -> None:
    a, b, _ = three_jobs()
    page.goto(f"{web.url}/compare?jobs={a},{b}")
    rows = page.locator("#flip-rows tbody tr")
    assert rows.count() == 3
    assert "3 rows flipped" in page.inner_text("#flip-counts")
    first = rows.first
    assert first.get_attribute("data-row") == "1"
    cells = first.locator("td[data-correct]")
    assert [cells.nth(i).get_attribute("data-correct") for i in range(2)] == ["true", "false"]
    assert "55%" in cells.nth(0).inner_text()  # the confidence next to the prediction
    assert page.locator('#class-changes tr[data-class="pos"]').is_visible()

    page.select_option('#flip-filters select[name="direction"]', "fixed")
    page.wait_for_function("document.querySelectorAll('#flip-rows tbody tr').length === 2")
    rows = page.locator("#flip-rows tbody tr")
    assert [rows.nth(i).get_attribute("data-row") for i in range(2)] == ["2", "5"]
    page.select_option('#flip-filters select[name="label"]', "neg")
    page.wait_for_function("document.querySelectorAll('#flip-rows tbody tr').length === 1")
    assert page.locator("#flip-rows tbody tr").first.get_attribute("data-row") == "5"


def test_the_cli_and_the_client_compare_and_tag(web) -> None:
    import subprocess
    import sys

    from app.client import Client
    from tests.fixtures import REPO, child_env

    a, b, c = three_jobs()
    done = subprocess.run([sys.executable, "-m", "app.cli", "compare", str(a), str(b), str(c),
                           "--url", web.url], cwd=REPO, env=child_env({}), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    accuracy = next(line for line in lines if line.startswith("eval/accuracy"))
    assert accuracy.split()[1:] == ["0.5000", "*0.8300", "0.6700"]
    diff = next(line for line in lines if line.startswith("training.learning_rate"))
    assert diff.split()[1:] == ["1e-05", "3e-05", "0.0001"]
    assert lines[-1] == f"no flipped examples: job {c} has no predictions yet (running)"

    with Client(web.url) as client:
        assert client.annotate(a, tags=["lr-sweep"], note="baseline")["note"] == "baseline"
        assert [job["id"] for job in client.jobs(tag="lr-sweep")["items"]] == [a]
        flips = client.flips([a, b], direction="broken")
        assert [row["row"] for row in flips["items"]] == [1]
        assert client.compare([a, b], max_points=4)["flips"]["flipped"] == 3
