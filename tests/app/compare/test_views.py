"""The compare page and its partials, rendered by the app (the browser test is
tests/e2e/test_compare.py)."""
from __future__ import annotations

from fastapi.testclient import TestClient

from app.jobs.models import JobStatus
from app.main import create_app
from tests.app.compare.test_api import classified, finished, spec
from tests.app.factories import make_job


def test_the_page_shows_the_diff_the_best_metric_and_the_flips(settings_env) -> None:
    a = finished("a", spec(learning_rate=1e-5), {"eval/accuracy": 0.5})
    b = finished("b", spec(learning_rate=3e-5), {"eval/accuracy": 0.67})
    classified(a, [True, True, False, False, True, False])
    classified(b, [True, False, True, False, True, True])
    with TestClient(create_app()) as client:
        # the job list's checkboxes send jobs=a&jobs=b
        html = client.get(f"/compare?jobs={a}&jobs={b}").text
        assert 'data-key="training.learning_rate"' in html
        assert 'data-key="name"' not in html
        assert html.count('data-best="true"') == 1
        assert "3</strong> rows flipped" in html
        assert html.count('<tr data-row="') == 3
        assert 'hx-trigger="every' not in html  # every job finished: nothing polls
        fixed = client.get("/compare/flips", params={"jobs": f"{a},{b}",
                                                     "direction": "fixed"}).text
        assert fixed.count('<tr data-row="') == 2
        assert "2 fixed" in fixed
        refused = client.get("/compare", params={"jobs": str(a)})
        assert refused.status_code == 422 and "compare 2 to 12 jobs" in refused.text


def test_a_running_job_keeps_the_page_live(settings_env) -> None:
    a = finished("a", spec(), {})
    b = make_job(JobStatus.running)
    with TestClient(create_app()) as client:
        html = client.get("/compare", params={"jobs": f"{a},{b}"}).text
        assert f'hx-get="/compare/summary?jobs={a},{b}" hx-trigger="every 3s"' in html
        assert f"job {b} has no predictions yet (running)" in html
