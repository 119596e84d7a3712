"""No request handler blocks the event loop for more than 50 ms.

Every route of the app is requested, in-process (httpx's ASGI transport) on an asyncio loop in
debug mode whose slow_callback_duration is 50 ms: asyncio then logs each step of a task that
held the loop longer. Sync routes and dependencies run in the thread pool and never show up;
an `async def` that waits on I/O (a database call, a file read, a sleep) does. The job detail,
job list and API token reads stay on the loop on purpose (app/jobs/api.py, app/auth/deps.py:
one indexed SELECT each); this test is what holds them under the limit.

The machine running the tests is shared, so a handler counts as blocking only when it is over
the limit in every one of ROUNDS rounds: a descheduled process is slow once, a blocking
handler every time (and one-time costs, such as building the OpenAPI schema on its first
request, are not counted).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

from app.auth import service as auth
from app.auth.deps import CSRF_HEADER, SESSION_COOKIE
from app.config import get_settings
from app.db import session_scope
from app.main import create_app
from tests.app.factories import make_job

LIMIT_SECONDS = 0.05
ROUNDS = 3
CSV = b"text,label\ngood movie,1\nbad movie,0\n"
Step = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


class SlowCallbacks(logging.Handler):
    """Collects asyncio's 'Executing <task> took N seconds' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Executing "):
            self.seen.append(record.getMessage())


@pytest.fixture
def slow_callbacks() -> Iterator[SlowCallbacks]:
    handler, logger = SlowCallbacks(), logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def blocking_routes(app: FastAPI, steps: dict[str, Step], headers: dict[str, str],
                    slow: SlowCallbacks) -> dict[str, list[str]]:
    """The steps whose request held the loop over the limit in every round."""
    async def run() -> dict[str, list[str]]:
        asyncio.get_running_loop().slow_callback_duration = LIMIT_SECONDS
        over: dict[str, list[str]] = defaultdict(list)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers=headers) as client:
            for _ in range(ROUNDS):
                for name, step in steps.items():
                    await asyncio.sleep(0)
                    slow.seen.clear()
                    response = await step(client)
                    await asyncio.sleep(0)  # end the task's step: its warning comes now
                    assert response.status_code < 500, (name, response.text)
                    if slow.seen:
                        over[name].append(slow.seen[0])
        return {name: found for name, found in over.items() if len(found) == ROUNDS}

    return asyncio.run(run(), debug=True)


def route_keys(app: FastAPI) -> set[str]:
    """'METHOD /path' of every route (HEAD aside), '/static' for the mount."""
    keys = set()
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        for each in (contexts() if callable(contexts) else contexts) or [route]:
            methods = getattr(each, "methods", None)
            if methods is None:
                keys.add(each.path)
            keys.update(f"{m} {each.path}" for m in methods or () if m != "HEAD")
    return keys


def every_route(job: int, pages: dict[str, str],
                logouts: list[dict[str, str]], other: int = 0) -> dict[str, Step]:
    """One request per route (`pages`: the cookie and CSRF headers of a logged-in page;
    `logouts`: one such session for each round's logout)."""
    spec = {"model": "m", "dataset": {"path": "d", "text_fields": ["text"]}}
    made: dict[str, str] = {}

    async def upload(c: httpx.AsyncClient) -> httpx.Response:
        response = await c.post("/api/v1/datasets", files={"file": ("r.csv", CSV)})
        made["dataset"] = response.json()["id"]
        return response

    async def sweep(c: httpx.AsyncClient) -> httpx.Response:
        response = await c.post("/api/v1/sweeps", json={"base": spec,
                                                        "grid": {"training.seed": [1, 2]}})
        made["sweep"] = str(response.json()["id"])
        return response

    def get(path: str, **kw) -> Step:
        return lambda c: c.get(path, **kw)

    def post(path: str, **kw) -> Step:
        return lambda c: c.post(path, **kw)

    api = f"/api/v1/jobs/{job}"
    return {
        "GET /healthz": get("/healthz"),
        "GET /openapi.json": get("/openapi.json"),
        "GET /docs": get("/docs"),
        "GET /docs/oauth2-redirect": get("/docs/oauth2-redirect"),
        "GET /redoc": get("/redoc"),
        "/static": get("/static/chart.js"),
        "GET /login": get("/login"),
        "POST /login": post("/login", headers=pages, data={"token": "td_wrong"}),
        "POST /api/v1/jobs": post("/api/v1/jobs", json=spec),
        "GET /api/v1/jobs": get("/api/v1/jobs"),
        "GET /api/v1/jobs/{job_id}": get(api),
        "POST /api/v1/jobs/{job_id}/cancel": post(f"{api}/cancel"),
        "GET /api/v1/jobs/{job_id}/attempts": get(f"{api}/attempts"),
        "GET /api/v1/jobs/{job_id}/metrics": get(f"{api}/metrics"),
        "GET /api/v1/jobs/{job_id}/events": get(f"{api}/events"),
        "GET /api/v1/jobs/{job_id}/checkpoints": get(f"{api}/checkpoints"),
        "GET /api/v1/jobs/{job_id}/checkpoints/{name}/download":
            get(f"{api}/checkpoints/final/download"),
        "GET /api/v1/jobs/{job_id}/predictions": get(f"{api}/predictions"),
        # Try it with an input the web refuses (422): no inference worker runs here.
        "POST /api/v1/jobs/{job_id}/checkpoints/{name}/predict":
            post(f"{api}/checkpoints/final/predict", json={"inputs": [{"text": ""}]}),
        "POST /api/v1/sweeps": sweep,
        "GET /api/v1/sweeps/{sweep_id}": lambda c: c.get(f"/api/v1/sweeps/{made['sweep']}"),
        "POST /api/v1/sweeps/{sweep_id}/cancel":
            lambda c: c.post(f"/api/v1/sweeps/{made['sweep']}/cancel"),
        "GET /sweeps/{sweep_id}": lambda c: c.get(f"/sweeps/{made['sweep']}", headers=pages),
        "GET /sweeps/{sweep_id}/leaderboard":
            lambda c: c.get(f"/sweeps/{made['sweep']}/leaderboard", headers=pages),
        "POST /sweeps/{sweep_id}/cancel":
            lambda c: c.post(f"/sweeps/{made['sweep']}/cancel", headers=pages),
        "PATCH /api/v1/jobs/{job_id}": lambda c: c.patch(api, json={"tags": ["t"]}),
        "GET /api/v1/compare": get("/api/v1/compare", params={"jobs": f"{job},{other}"}),
        "GET /api/v1/compare/flips": get("/api/v1/compare/flips",
                                         params={"jobs": f"{job},{other}"}),
        "POST /api/v1/datasets": upload,
        "GET /api/v1/datasets": get("/api/v1/datasets"),
        "GET /api/v1/datasets/{dataset_id}":
            lambda c: c.get(f"/api/v1/datasets/{made['dataset']}"),
        "DELETE /api/v1/datasets/{dataset_id}":
            lambda c: c.delete(f"/api/v1/datasets/{made['dataset']}"),
        "GET /": get("/", headers=pages),
        "GET /jobs": get("/jobs", headers=pages),
        "GET /jobs/table": get("/jobs/table", headers=pages),
        "GET /gpus": get("/gpus", headers=pages),
        "GET /jobs/new": get("/jobs/new", params={"clone": job}, headers=pages),
        "GET /jobs/new/task": get("/jobs/new/task", params={"task": "causal-lm-sft"},
                                  headers=pages),
        "POST /jobs": post("/jobs", headers=pages, data={"model": "m"}),
        "POST /jobs/upload": post("/jobs/upload", headers=pages,
                                  files={"file": ("r.csv", CSV)}),
        "GET /jobs/{job_id}": get(f"/jobs/{job}", headers=pages),
        "GET /jobs/{job_id}/status": get(f"/jobs/{job}/status", headers=pages),
        "POST /jobs/{job_id}/cancel": post(f"/jobs/{job}/cancel", headers=pages),
        "GET /jobs/{job_id}/checkpoints": get(f"/jobs/{job}/checkpoints", headers=pages),
        "GET /jobs/{job_id}/predictions": get(f"/jobs/{job}/predictions", headers=pages),
        # Hub pushes (app/hub/): refused with a 409 here, no TUNEDECK_HF_TOKEN is set.
        "POST /api/v1/jobs/{job_id}/checkpoints/{name}/push":
            post(f"{api}/checkpoints/final/push", json={"repo_id": "org/model"}),
        "GET /api/v1/jobs/{job_id}/pushes": get(f"{api}/pushes"),
        "GET /api/v1/jobs/{job_id}/pushes/{push_id}": get(f"{api}/pushes/1"),
        "GET /jobs/{job_id}/pushes": get(f"/jobs/{job}/pushes", headers=pages),
        "POST /jobs/{job_id}/checkpoints/{name}/push":
            post(f"/jobs/{job}/checkpoints/final/push", headers=pages,
                 data={"repo_id": "org/model"}),
        "GET /jobs/{job_id}/try": get(f"/jobs/{job}/try", params={"checkpoint": "final"},
                                      headers=pages),
        "POST /jobs/{job_id}/try": post(f"/jobs/{job}/try", headers=pages,
                                        data={"checkpoint": "final", "field.text": ""}),
        # Pre-flight with a spec the schema (or the form) refuses: no inference worker here.
        "POST /api/v1/preflight": post("/api/v1/preflight", json={**spec, "max_length": 1}),
        "POST /api/v1/preflight/measure":
            post("/api/v1/preflight/measure", json={**spec, "max_length": 1}),
        "POST /jobs/preflight": post("/jobs/preflight", headers=pages, data={"model": "m"}),
        "POST /jobs/preflight/measure":
            post("/jobs/preflight/measure", headers=pages, data={"model": "m"}),
        "POST /jobs/{job_id}/annotations": post(f"/jobs/{job}/annotations", headers=pages,
                                                data={"tags": "a, b", "note": "n"}),
        "GET /compare": get("/compare", params={"jobs": f"{job},{other}"}, headers=pages),
        "GET /compare/summary": get("/compare/summary", params={"jobs": f"{job},{other}"},
                                    headers=pages),
        "GET /compare/flips": get("/compare/flips", params={"jobs": f"{job},{other}"},
                                  headers=pages),
        "POST /logout": lambda c: c.post("/logout", headers=logouts.pop()),
    }


def a_token() -> str:
    """A token row (auth on, checked against the database on every API request)."""
    with session_scope() as session:
        return auth.create_token(session, "loop-test")[1]


def page_headers(token: str) -> dict[str, str]:
    """A logged-in page's cookie and CSRF header (a new session)."""
    settings = get_settings()
    with session_scope() as session:
        cookie = auth.make_session(session, settings, auth.hash_token(token))
    return {"Cookie": f"{SESSION_COOKIE}={cookie}",
            CSRF_HEADER: auth.csrf_token(settings, "s:" + cookie)}


def test_no_route_blocks_the_event_loop(finished_job, slow_callbacks):
    app, token = create_app(), a_token()
    steps = every_route(finished_job, page_headers(token),
                        [page_headers(token) for _ in range(ROUNDS)], other=make_job())
    assert set(steps) == route_keys(app)  # a new route needs its request here
    found = blocking_routes(app, steps, {"Authorization": f"Bearer {token}"}, slow_callbacks)
    assert found == {}


def test_a_handler_that_blocks_the_loop_is_caught(settings_env, slow_callbacks):
    app = create_app()

    @app.get("/blocks")
    async def blocks() -> dict[str, str]:
        time.sleep(2 * LIMIT_SECONDS)  # the point: a blocking call
        return {}

    @app.get("/yields")
    async def yields() -> dict[str, str]:
        await asyncio.sleep(2 * LIMIT_SECONDS)
        return {}

    steps = {name: (lambda c, n=name: c.get(f"/{n}")) for name in ("blocks", "yields")}
    assert list(blocking_routes(app, steps, {}, slow_callbacks)) == ["blocks"]
