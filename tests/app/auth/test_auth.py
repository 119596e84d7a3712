"""Every /api route needs the bearer token when auth is on; pages log in with a cookie + CSRF."""
from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from app.auth import repository, service
from app.auth.cli import exposure_problem
from app.auth.deps import PageUser, csrf_token, require_csrf
from app.config import get_settings
from app.db import session_scope
from app.main import create_app
from tests.app.conftest import TOKEN
from tests.app.factories import SPEC, make_job
from tests.fixtures import REPO, child_env, free_port


def api_routes() -> set[tuple[str, str]]:
    """Every operation under /api in the OpenAPI schema."""
    paths = create_app().openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items()
            if path.startswith("/api/") for method in operations}


def calls(job_id: int, queued_id: int, dataset_id: str,
          sweep_id: int) -> dict[tuple[str, str], dict]:
    """One working request per API route (a test fails when a route has none)."""
    job = f"/api/v1/jobs/{job_id}"
    csv = {"file": ("d.csv", b"text,label\nfine,1\nbad,0\n", "text/csv")}
    return {
        ("POST", "/api/v1/jobs"): {"url": "/api/v1/jobs", "json": SPEC, "ok": 201},
        ("GET", "/api/v1/jobs"): {"url": "/api/v1/jobs"},
        ("GET", "/api/v1/jobs/{job_id}"): {"url": job},
        ("POST", "/api/v1/jobs/{job_id}/cancel"): {
            "url": f"/api/v1/jobs/{queued_id}/cancel"},
        ("GET", "/api/v1/jobs/{job_id}/attempts"): {"url": f"{job}/attempts"},
        ("GET", "/api/v1/jobs/{job_id}/metrics"): {"url": f"{job}/metrics"},
        ("GET", "/api/v1/jobs/{job_id}/events"): {"url": f"{job}/events"},
        ("GET", "/api/v1/jobs/{job_id}/checkpoints"): {"url": f"{job}/checkpoints"},
        ("GET", "/api/v1/jobs/{job_id}/checkpoints/{name}/download"): {
            "url": f"{job}/checkpoints/final/download"},
        ("GET", "/api/v1/jobs/{job_id}/predictions"): {"url": f"{job}/predictions"},
        # Past auth, these answer 404 (no such checkpoint or push) or 409 (this server has no
        # Hub token): real answers need an inference worker or a Hub; they have their own tests.
        ("POST", "/api/v1/jobs/{job_id}/checkpoints/{name}/predict"): {
            "url": f"{job}/checkpoints/nope/predict", "json": {"inputs": [{"text": "x"}]},
            "ok": 404},
        ("POST", "/api/v1/jobs/{job_id}/checkpoints/{name}/push"): {
            "url": f"{job}/checkpoints/nope/push", "json": {"repo_id": "me/model"},
            "ok": 409},
        ("GET", "/api/v1/jobs/{job_id}/pushes"): {"url": f"{job}/pushes"},
        ("GET", "/api/v1/jobs/{job_id}/pushes/{push_id}"): {"url": f"{job}/pushes/999",
                                                            "ok": 404},
        ("POST", "/api/v1/sweeps"): {"url": "/api/v1/sweeps", "ok": 201,
                                     "json": {"base": SPEC, "grid": {"training.seed": [1]}}},
        ("GET", "/api/v1/sweeps/{sweep_id}"): {"url": f"/api/v1/sweeps/{sweep_id}"},
        ("POST", "/api/v1/sweeps/{sweep_id}/cancel"): {
            "url": f"/api/v1/sweeps/{sweep_id}/cancel"},
        # Past the token check a spec the schema refuses gets its 422 (no inference worker
        # runs here to answer a valid one: tests/app/preflight/test_api.py starts one).
        ("POST", "/api/v1/preflight"): {"url": "/api/v1/preflight", "ok": 422,
                                        "json": {**SPEC, "max_length": 1}},
        ("POST", "/api/v1/preflight/measure"): {"url": "/api/v1/preflight/measure", "ok": 422,
                                                "json": {**SPEC, "max_length": 1}},
        ("PATCH", "/api/v1/jobs/{job_id}"): {"url": job, "json": {"tags": ["t"]}},
        ("GET", "/api/v1/compare"): {"url": f"/api/v1/compare?jobs={job_id},{queued_id}"},
        ("GET", "/api/v1/compare/flips"): {
            "url": f"/api/v1/compare/flips?jobs={job_id},{queued_id}"},
        ("POST", "/api/v1/datasets"): {"url": "/api/v1/datasets", "files": csv, "ok": 201},
        ("GET", "/api/v1/datasets"): {"url": "/api/v1/datasets"},
        ("GET", "/api/v1/datasets/{dataset_id}"): {"url": f"/api/v1/datasets/{dataset_id}"},
        ("DELETE", "/api/v1/datasets/{dataset_id}"): {
            "url": f"/api/v1/datasets/{dataset_id}", "ok": 204},
    }


@pytest.fixture
def failures_allowed(settings_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """More wrong tokens a minute than one test sends (the limit has tests of its own)."""
    monkeypatch.setenv("TUNEDECK_AUTH_FAILURES_PER_MINUTE", "1000")


@pytest.fixture
def route_calls(auth_client, finished_job) -> dict[tuple[str, str], dict]:
    response = auth_client.post("/api/v1/datasets", files={
        "file": ("d.csv", b"text,label\nfine,1\n", "text/csv")})
    sweep = auth_client.post("/api/v1/sweeps", json={"base": SPEC,
                                                     "grid": {"training.seed": [1]}})
    return calls(finished_job, make_job(), response.json()["id"], sweep.json()["id"])


def send(client: TestClient, method: str, call: dict, headers: dict | None = None):
    kwargs = {k: call[k] for k in ("json", "files") if k in call}
    if "files" in kwargs:  # a fresh file object for every request
        kwargs["files"] = {k: (n, io.BytesIO(b), t) for k, (n, b, t) in kwargs["files"].items()}
    return client.request(method, call["url"], headers=headers, **kwargs)


def test_the_table_covers_every_api_route(route_calls):
    assert set(route_calls) == api_routes()


@pytest.mark.parametrize("headers", [
    None,
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer tökén".encode("latin-1")},
], ids=["none", "wrong", "prefix", "basic", "empty", "non-ascii"])
def test_every_api_route_rejects_a_missing_or_wrong_token(failures_allowed, anon_client,
                                                          route_calls, headers):
    for (method, _path), call in route_calls.items():
        response = send(anon_client, method, call, headers)
        assert response.status_code == 401, (method, call["url"], response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "detail" in response.json()


def test_every_api_route_works_with_the_right_token(auth_client, route_calls):
    for (method, _path), call in route_calls.items():
        response = send(auth_client, method, call)
        assert response.status_code == call.get("ok", 200), (method, call["url"], response.text)


def test_401_comes_before_404_so_ids_do_not_leak(anon_client):
    assert anon_client.get("/api/v1/jobs/999999").status_code == 401
    assert anon_client.get("/api/v1/datasets/ds-nope").status_code == 401


def test_auth_is_off_without_tokens(client):
    assert client.get("/api/v1/jobs").status_code == 200


def test_a_database_token_turns_auth_on_and_revoking_ends_it(client):
    with session_scope() as session:
        _, token = service.create_token(session, "laptop")
    assert token.startswith("td_")
    assert client.get("/api/v1/jobs").status_code == 401
    ok = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    with session_scope() as session:
        row = repository.by_name(session, "laptop")
        assert row.token_hash == service.hash_token(token) != token
        assert row.last_used_at is not None
        service.create_token(session, "other")
        service.revoke_token(session, "laptop")
    assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}
                      ).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(client):
    with session_scope() as session:
        _, token = service.create_token(session, "script")
    headers = {"Authorization": f"Bearer {token}"}

    def last_used():
        with session_scope() as session:
            return repository.by_name(session, "script").last_used_at

    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    assert last_used() == first  # within the minute: no write per request
    with session_scope() as session:
        repository.by_name(session, "script").last_used_at = first - timedelta(minutes=5)
    assert client.get("/api/v1/jobs/1", headers=headers).status_code == 404  # auth passed
    assert last_used() > first


def test_token_names_are_unique(session):
    service.create_token(session, "ci")
    with pytest.raises(service.Conflict):
        service.create_token(session, "ci")


def test_tokens_never_reach_the_logs_or_settings_repr(anon_client, caplog):
    caplog.set_level(logging.DEBUG)
    for token in (TOKEN, "td_wrong-secret-value"):
        anon_client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
        anon_client.post("/login", data={"token": token, "csrf_token": "x"})
    assert TOKEN not in caplog.text and "wrong-secret-value" not in caplog.text
    assert TOKEN not in repr(get_settings()) and TOKEN not in str(get_settings().model_dump())


def test_token_create_prints_the_token_once(settings_env):
    env = child_env(settings_env)
    run = [sys.executable, "-m", "app.cli", "token"]
    created = subprocess.run([*run, "create", "ci"], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True)
    token = created.stdout.strip()
    assert re.fullmatch(r"td_[A-Za-z0-9_-]{40,}", token)
    assert token not in created.stderr
    listed = subprocess.run([*run, "list"], cwd=REPO, env=env, capture_output=True, text=True,
                            check=True)
    assert "ci" in listed.stdout and token not in listed.stdout
    again = subprocess.run([*run, "create", "ci"], cwd=REPO, env=env, capture_output=True,
                           text=True, check=False)
    assert again.returncode == 1 and "exists" in again.stderr


# ---------------------------------------------------------------- serve on the network


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("gpu-box.local", False),
])
def test_loopback_hosts(host, loopback):
    assert service.is_loopback(host) is loopback


def test_serve_refuses_a_network_bind_without_auth(settings_env):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port",
         str(free_port()), "--no-worker"],
        cwd=REPO, env=child_env(settings_env), capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 2
    assert "tunedeck token create NAME" in result.stderr
    assert "TUNEDECK_API_TOKENS" in result.stderr


def test_a_network_bind_is_allowed_once_a_token_exists(settings_env, monkeypatch):
    assert exposure_problem("0.0.0.0") is not None
    assert exposure_problem("127.0.0.1") is None
    with session_scope() as session:
        service.create_token(session, "ops")
    assert exposure_problem("0.0.0.0") is None


def test_env_tokens_allow_a_network_bind(auth_on):
    assert exposure_problem("0.0.0.0") is None


# ---------------------------------------------------------------- pages: login, cookie, CSRF


def login_csrf(client: TestClient) -> str:
    page = client.get("/login?next=/jobs")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_login_sets_a_cookie_that_reads_the_api_but_cannot_write(anon_client):
    csrf = login_csrf(anon_client)
    response = anon_client.post("/login", data={"token": TOKEN, "csrf_token": csrf,
                                                "next": "/jobs"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert TOKEN not in response.headers["set-cookie"]
    assert anon_client.get("/api/v1/jobs").status_code == 200
    job_id = make_job()
    assert anon_client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 401


def test_login_with_a_wrong_token_or_no_csrf_fails(anon_client):
    csrf = login_csrf(anon_client)
    wrong = anon_client.post("/login", data={"token": "nope", "csrf_token": csrf})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    no_csrf = anon_client.post("/login", data={"token": TOKEN})
    assert no_csrf.status_code == 403
    assert anon_client.get("/api/v1/jobs").status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/\\evil",
                                    "javascript:alert(1)", ""])
def test_login_never_redirects_off_site(anon_client, target):
    csrf = login_csrf(anon_client)
    response = anon_client.post("/login", data={"token": TOKEN, "csrf_token": csrf,
                                                "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_logout_needs_csrf_and_clears_the_cookie(anon_client):
    csrf = login_csrf(anon_client)
    anon_client.post("/login", data={"token": TOKEN, "csrf_token": csrf})
    assert anon_client.post("/logout").status_code == 403
    page_csrf = login_csrf(anon_client)  # bound to the new session
    assert page_csrf != csrf
    out = anon_client.post("/logout", data={"csrf_token": page_csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert anon_client.get("/api/v1/jobs").status_code == 401


def test_a_forged_or_expired_session_cookie_is_refused(anon_client, monkeypatch):
    settings = get_settings()
    with session_scope() as session:
        good = service.make_session(session, settings, service.hash_token(TOKEN))
    payload, _, signature = good.partition(".")
    for value in (f"{payload}.{signature[:-2]}xx", f"{payload}x.{signature}", "garbage", ""):
        anon_client.cookies.set("tunedeck_session", value)
        assert anon_client.get("/api/v1/jobs").status_code == 401
    monkeypatch.setattr(service, "SESSION_SECONDS", -10)
    with session_scope() as session:
        expired = service.make_session(session, settings, service.hash_token(TOKEN))
    anon_client.cookies.set("tunedeck_session", expired)
    assert anon_client.get("/api/v1/jobs").status_code == 401


def test_the_secret_key_file_is_private_and_stable(auth_on):
    settings = get_settings()
    key = service.secret_key(settings)
    path = settings.data_dir / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    service._stored_key.cache_clear()
    assert service.secret_key(settings) == key


def page_app() -> FastAPI:
    """A stand-in for the HTML views: how they use require_page_user and the CSRF helpers."""
    app = create_app()

    @app.get("/page")
    def page(user: PageUser) -> dict:
        return {"logged_in": user}

    @app.post("/page/action", dependencies=[Depends(require_csrf)])
    def action(user: PageUser) -> dict:
        return {"done": True}

    @app.get("/page/token")
    def token(request: __import__("fastapi").Request) -> dict:
        return {"csrf": csrf_token(request)}

    return app


def test_pages_redirect_to_login_and_htmx_gets_hx_redirect(auth_on):
    with TestClient(page_app()) as c:
        response = c.get("/page", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=/page"
        htmx = c.get("/page", headers={"HX-Request": "true"})
        assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/login?next=/page"
        csrf = login_csrf(c)
        c.post("/login", data={"token": TOKEN, "csrf_token": csrf})
        assert c.get("/page").json() == {"logged_in": True}
        token = c.get("/page/token").json()["csrf"]
        assert c.post("/page/action").status_code == 403
        assert c.post("/page/action", headers={"X-CSRF-Token": "x" + token}).status_code == 403
        assert c.post("/page/action", headers={"X-CSRF-Token": token}).json() == {"done": True}
        assert c.post("/page/action", data={"csrf_token": token}).json() == {"done": True}


def test_pages_are_open_without_auth_but_forms_still_need_csrf(settings_env):
    with TestClient(page_app()) as c:
        assert c.get("/page").json() == {"logged_in": False}
        assert c.post("/page/action").status_code == 403
        token = c.get("/page/token").json()["csrf"]
        assert c.post("/page/action", data={"csrf_token": token}).status_code == 200
