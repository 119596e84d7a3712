"""Issue 17 item 3 in a real browser: a page on another site cannot cancel a job on a loopback
server with auth off, while the server's own page still can."""
from __future__ import annotations

import time

import httpx

from tests.app.factories import make_job
from tests.fixtures import LiveServer

EVIL_PAGE = """<!doctype html><title>cats</title>
<form id="f" method="post" action="{action}"><input name="x" value="1"></form>
<script>document.getElementById("f").submit()</script>"""


def job_status(server: LiveServer, job_id: int) -> str:
    return httpx.get(f"{server.url}/api/v1/jobs/{job_id}", timeout=10).json()["status"]


def test_a_page_on_another_site_cannot_cancel_a_job(settings_env, tmp_path, page):
    env = {k: v for k, v in settings_env.items() if k != "TUNEDECK_ALLOWED_HOSTS"}
    server = LiveServer(env, tmp_path / "serve.log", with_worker=False)
    try:
        job_id = make_job()
        action = f"{server.url}/api/v1/jobs/{job_id}/cancel"
        page.route("http://evil.example/**", lambda route: route.fulfill(
            content_type="text/html", body=EVIL_PAGE.format(action=action)))
        with page.expect_response(action) as refused:
            page.goto("http://evil.example/")
        assert refused.value.status == 403
        assert job_status(server, job_id) == "queued"

        # The dashboard's own Cancel button (htmx POST, same origin, CSRF cookie) still works.
        page.goto(f"{server.url}/jobs/{job_id}")
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_response(f"{server.url}/jobs/{job_id}/cancel") as accepted:
            page.click("#cancel")
        assert accepted.value.status == 200
        deadline = time.monotonic() + 10
        while job_status(server, job_id) != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert job_status(server, job_id) == "cancelled"
    finally:
        server.stop()
