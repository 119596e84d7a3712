"""Issue 17: the loopback default is not a CSRF target; sessions, CSRF tokens, wrong-token
limits, the signing key, Last-Event-ID and token length for a network bind."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from app import db
from app.auth import service
from app.auth.cli import exposure_problem, key_problem
from app.config import Settings, get_settings
from app.db import session_scope
from app.jobs.api import parse_last_event_id
from app.main import create_app
from app.migrate import upgrade
from app.security import allowed_hosts, host_name
from tests.app.conftest import TOKEN
from tests.app.factories import make_job
from tests.fixtures import (
    REPO,
    LiveServer,
    child_env,
    drop_postgres_database,
    free_port,
    fresh_postgres_database,
    postgres_available,
    reset_caches,
    service_missing,
)

EVIL = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


def status_of(client: TestClient, job_id: int) -> str:
    return client.get(f"/api/v1/jobs/{job_id}").json()["status"]


# ---------------------------------------------------------------- cross-site and Host


def test_a_cross_site_form_post_cannot_cancel_a_job_with_auth_off(client):
    job_id = make_job()
    response = client.post(f"/api/v1/jobs/{job_id}/cancel", data={"x": "1"}, headers=EVIL)
    assert response.status_code == 403
    assert "cross-site" in response.json()["detail"]
    assert status_of(client, job_id) == "queued"


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://testserver:8080"},  # another port is another origin
    {"Sec-Fetch-Site": "cross-site"},
], ids=["origin", "null-origin", "other-port", "fetch-site"])
def test_either_header_alone_refuses_a_state_change(client, headers):
    job_id = make_job()
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers).status_code == 403
    assert client.delete("/api/v1/datasets/ds-x", headers=headers).status_code == 403
    assert status_of(client, job_id) == "queued"


def test_auth_on_refuses_cross_site_even_with_the_token(auth_client):
    job_id = make_job()
    assert auth_client.post(f"/api/v1/jobs/{job_id}/cancel", headers=EVIL).status_code == 403
    assert status_of(auth_client, job_id) == "queued"


@pytest.mark.parametrize("headers", [
    {},  # curl, the CLI, httpx scripts
    {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "HTTP://TestServer"},
    {"Sec-Fetch-Site": "none"},  # typed in the address bar
], ids=["no-browser", "same-origin", "case", "user-initiated"])
def test_same_origin_and_non_browser_clients_still_work(client, headers):
    job_id = make_job()
    response = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
    assert response.status_code == 200, response.text
    assert status_of(client, job_id) == "cancelled"


def test_cross_site_reads_are_not_refused(client):
    assert client.get("/api/v1/jobs", headers=EVIL).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io",
                                  ""])
def test_a_foreign_host_is_refused(client, host):
    for url in ("/api/v1/jobs", "/jobs", "/healthz"):
        response = client.get(url, headers={"Host": host})
        assert response.status_code == 400, (url, response.text)
        assert "TUNEDECK_ALLOWED_HOSTS" in response.json()["detail"]


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST",
                                  "testserver"])
def test_loopback_names_and_configured_hosts_are_answered(client, host):
    assert client.get("/healthz", headers={"Host": host}).status_code == 200


def settings_for(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in ("TUNEDECK_HOST", "TUNEDECK_ALLOWED_HOSTS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(f"TUNEDECK_{key.upper()}", value)
    return Settings()


def test_allowed_hosts_defaults(settings_env, monkeypatch):
    loopback = {"localhost", "127.0.0.1", "[::1]"}
    assert allowed_hosts(settings_for(monkeypatch)) == loopback
    assert allowed_hosts(settings_for(monkeypatch, host="10.0.0.5")) == loopback | {"10.0.0.5"}
    assert allowed_hosts(settings_for(monkeypatch, host="fd00::5")) == loopback | {"[fd00::5]"}
    assert allowed_hosts(settings_for(monkeypatch, host="0.0.0.0")) == loopback
    named = allowed_hosts(settings_for(monkeypatch, host="::",
                                       allowed_hosts="Deck.Example, x:8000, fd00::7,[fd00::8]"))
    assert named == loopback | {"deck.example", "x", "[fd00::7]", "[fd00::8]"}
    assert allowed_hosts(settings_for(monkeypatch, allowed_hosts="*")) is None


@pytest.mark.parametrize(("header", "name"), [
    ("example.com:8000", "example.com"), ("[::1]:8000", "[::1]"), ("[::1]", "[::1]"),
    ("Example.COM.", "example.com"), ("", "")])
def test_host_name(header, name):
    assert host_name(header) == name


def test_a_real_server_refuses_rebinding_and_cross_site(settings_env, tmp_path):
    """`tunedeck serve` on loopback (uvicorn, no TestClient): the defaults, not the test's."""
    env = {k: v for k, v in settings_env.items() if k != "TUNEDECK_ALLOWED_HOSTS"}
    server = LiveServer(env, tmp_path / "serve.log", with_worker=False)
    try:
        job_id = make_job()
        cancel = f"{server.url}/api/v1/jobs/{job_id}/cancel"
        rebound = httpx.get(f"{server.url}/api/v1/jobs",
                            headers={"Host": f"attacker.example:{server.port}"})
        assert rebound.status_code == 400
        assert httpx.post(cancel, headers=EVIL).status_code == 403
        assert httpx.get(f"{server.url}/api/v1/jobs/{job_id}").json()["status"] == "queued"
        same = httpx.post(cancel, headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 200 and same.json()["status"] == "cancelled"
    finally:
        server.stop()


def own_address() -> str:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]


def test_serve_on_a_wildcard_address_answers_its_addresses_not_any_name(settings_env,
                                                                         tmp_path):
    """0.0.0.0: each IP of the box (the address a request arrived on), localhost, and names
    only from TUNEDECK_ALLOWED_HOSTS; serve says so when it starts."""
    address = own_address()
    if address.startswith("127."):
        pytest.skip("no address besides loopback on this machine")
    port = free_port()
    env = {k: v for k, v in settings_env.items() if k != "TUNEDECK_ALLOWED_HOSTS"}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port", str(port),
             "--no-worker", "--log-level", "warning"],
            cwd=REPO, env=child_env({**env, "TUNEDECK_API_TOKENS": TOKEN}), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://{address}:{port}/healthz"
        for _ in range(300):
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        assert httpx.get(url).status_code == 200  # Host: <address>:<port>
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for name in (socket.gethostname(), "attacker.example"):
            assert httpx.get(url, headers={"Host": f"{name}:{port}"}).status_code == 400
        # Another IP literal is refused: only the one this connection reached counts.
        assert httpx.get(url, headers={"Host": f"10.9.9.9:{port}"}).status_code == 400
        assert "set TUNEDECK_ALLOWED_HOSTS" in log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


# ---------------------------------------------------------------- sessions and CSRF


def login(client: TestClient) -> str:
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"token": TOKEN, "csrf_token": csrf},
                           follow_redirects=False)
    assert response.status_code == 303
    return client.cookies["tunedeck_session"]


def page_csrf(client: TestClient, url: str = "/login") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def test_a_cookie_replayed_after_logout_is_refused(anon_client):
    cookie = login(anon_client)
    assert anon_client.get("/api/v1/jobs").status_code == 200
    logout = anon_client.post("/logout", data={"csrf_token": page_csrf(anon_client, "/jobs/new")},
                              follow_redirects=False)
    assert logout.status_code == 303
    anon_client.cookies.set("tunedeck_session", cookie)  # an attacker's copy of the cookie
    assert anon_client.get("/api/v1/jobs").status_code == 401
    page = anon_client.get("/jobs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def dialect(request, auth_on, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Auth on, against a freshly migrated database of each dialect (web_sessions' queries)."""
    url = None
    if request.param == "postgresql":
        if not postgres_available():
            service_missing("PostgreSQL is not reachable at 127.0.0.1:5432")
        url = fresh_postgres_database()
        monkeypatch.setenv("TUNEDECK_DATABASE_URL", url)
        reset_caches()
        upgrade(url)
    yield request.param
    db.get_engine().dispose()
    db.get_read_engine().dispose()
    reset_caches()
    if url:
        drop_postgres_database(url)


def test_logout_ends_the_session_on_each_database(dialect):
    with TestClient(create_app()) as c:
        cookie = login(c)
        assert c.get("/api/v1/jobs").status_code == 200
        c.post("/logout", data={"csrf_token": page_csrf(c, "/jobs/new")})
        c.cookies.set("tunedeck_session", cookie)
        assert c.get("/api/v1/jobs").status_code == 401


def test_revoking_a_token_ends_its_sessions(client):
    with session_scope() as session:
        _, token = service.create_token(session, "laptop")
        service.create_token(session, "other")
        cookie = service.make_session(session, get_settings(), service.hash_token(token))
    client.cookies.set("tunedeck_session", cookie)
    assert client.get("/api/v1/jobs").status_code == 200
    with session_scope() as session:
        service.revoke_token(session, "laptop")
    assert client.get("/api/v1/jobs").status_code == 401


def test_anonymous_csrf_tokens_differ_per_browser(settings_env):
    with TestClient(create_app()) as first, TestClient(create_app()) as second:
        token = page_csrf(first, "/jobs/new")
        assert first.cookies.get("tunedeck_csrf")
        assert page_csrf(second, "/jobs/new") != token
        assert page_csrf(first, "/jobs/new") == token  # stable for one browser
        # The first browser's token is worth nothing to the second one.
        refused = second.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert refused.status_code == 403
        ok = first.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert ok.status_code == 303


def test_the_csrf_cookie_is_private_to_the_site(settings_env):
    with TestClient(create_app()) as c:
        cookie = c.get("/login").headers["set-cookie"]
    assert cookie.startswith("tunedeck_csrf=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie


# ---------------------------------------------------------------- wrong-token limit


def test_wrong_bearer_tokens_are_limited_per_address(auth_on):
    app = create_app()
    wrong = {"Authorization": "Bearer td_guess-0000000000000000"}
    right = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, client=("10.0.0.9", 1)) as guesser, \
            TestClient(app, client=("10.0.0.7", 1)) as other:
        for _ in range(10):
            assert guesser.get("/api/v1/jobs", headers=wrong).status_code == 401
        limited = guesser.get("/api/v1/jobs", headers=wrong)
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 60
        # Even the right token waits, so a lucky guess cannot be told apart.
        assert guesser.get("/api/v1/jobs", headers=right).status_code == 429
        assert other.get("/api/v1/jobs", headers=right).status_code == 200


def test_wrong_login_tokens_are_limited(auth_on):
    with TestClient(create_app()) as c:
        csrf = page_csrf(c)
        for _ in range(10):
            wrong = c.post("/login", data={"token": "nope", "csrf_token": csrf})
            assert wrong.status_code == 401
        limited = c.post("/login", data={"token": TOKEN, "csrf_token": csrf})
        assert limited.status_code == 429 and "retry" in limited.json()["detail"]
        assert int(limited.headers["retry-after"]) > 0


# ---------------------------------------------------------------- the signing key


def test_an_empty_key_file_is_refused_with_what_to_do(settings_env):
    path = get_settings().data_dir / "secret_key"
    path.write_bytes(b"")  # what a full disk left behind
    service._stored_key.cache_clear()
    with pytest.raises(service.WeakSecretKey, match="Delete the file"):
        service.secret_key(get_settings())
    # Nothing is signed with it: no CSRF token, no session cookie.
    with pytest.raises(service.WeakSecretKey):
        service.csrf_token(get_settings(), "a:x")
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(free_port()), "--no-worker"],
        cwd=REPO, env=child_env(settings_env), capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 2
    assert "secret_key holds 0 bytes" in result.stderr and "Delete the file" in result.stderr


def test_an_unreadable_key_stops_serve_with_a_message(settings_env):
    (get_settings().data_dir / "secret_key").mkdir()  # stands in for any OSError (EIO, ENOSPC)
    service._stored_key.cache_clear()
    problem = key_problem()
    assert problem is not None and "could not read or write the secret key" in problem


def test_a_short_secret_key_setting_is_refused(settings_env, monkeypatch):
    monkeypatch.setenv("TUNEDECK_SECRET_KEY", "x" * 31)
    reset_caches()
    with pytest.raises(service.WeakSecretKey, match="TUNEDECK_SECRET_KEY is 31 bytes"):
        service.secret_key(get_settings())
    monkeypatch.setenv("TUNEDECK_SECRET_KEY", "x" * 32)
    reset_caches()
    assert service.secret_key(get_settings()) == b"x" * 32


def test_processes_starting_together_share_one_key(settings_env):
    """Each links its own fully written key into place or, finding one there, uses it."""
    code = ("from app.auth import service; from app.config import get_settings; "
            "print(service.secret_key(get_settings()).decode())")
    starts = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=child_env(settings_env),
                               stdout=subprocess.PIPE, text=True) for _ in range(4)]
    keys = {process.communicate(timeout=60)[0].strip() for process in starts}
    assert len(keys) == 1 and len(keys.pop()) >= 32


def test_a_new_key_is_written_whole_and_an_existing_one_kept(settings_env):
    directory = get_settings().data_dir
    service._stored_key.cache_clear()
    key = service.secret_key(get_settings())
    assert len(key) >= 32
    assert [p.name for p in directory.iterdir() if "secret" in p.name] == ["secret_key"]
    assert (directory / "secret_key").stat().st_mode & 0o777 == 0o600
    (directory / "secret_key").write_bytes(b"k" * 40)
    service._stored_key.cache_clear()
    assert service.secret_key(get_settings()) == b"k" * 40


# ---------------------------------------------------------------- Last-Event-ID


def metric_events(client: TestClient, job_id: int, last_event_id: bytes) -> int:
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events",
                       headers={"Last-Event-ID": last_event_id}) as response:
        assert response.status_code == 200
        body = response.read().decode()
    assert "event: end" in body
    return body.count("event: metric")


@pytest.mark.parametrize("value", ["²", "1" * 5000, "-1", "1e3", str(2**62 + 1), "", " "])
def test_a_malformed_last_event_id_is_ignored(client, finished_job, value):
    """Not a 500: the stream replays from the start, as for no header at all."""
    assert metric_events(client, finished_job, value.encode("latin-1")) == 5


@pytest.mark.parametrize(("value", "cursor"), [
    ("²", 0), ("١٢", 0), ("1" * 5000, 0), ("12", 12), (" 7 ", 7), (None, 0),
    (str(2**62), 2**62), (str(2**62 + 1), 0)])
def test_parse_last_event_id(value, cursor):
    """TestClient re-encodes a raw b"\\xb2" header as UTF-8, so "²" (isdigit() but not int())
    reaches the route only from a real client: checked here on the parser itself."""
    assert parse_last_event_id(value) == cursor


def test_a_valid_last_event_id_resumes(client, finished_job):
    with client.stream("GET", f"/api/v1/jobs/{finished_job}/events") as response:
        ids = [int(line[4:]) for line in response.iter_lines() if line.startswith("id: ")]
    assert metric_events(client, finished_job, f" {ids[2]} ".encode()) == 2
    assert metric_events(client, finished_job, str(2**62).encode()) == 0


# ---------------------------------------------------------------- token length


def test_a_short_env_token_refuses_a_network_bind(settings_env, monkeypatch):
    monkeypatch.setenv("TUNEDECK_API_TOKENS", "a")
    reset_caches()
    assert exposure_problem("127.0.0.1") is None  # loopback: one person, any token
    problem = exposure_problem("0.0.0.0")
    assert problem is not None and "shorter than 24 characters" in problem
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--host", "0.0.0.0", "--port",
         str(free_port()), "--no-worker"],
        cwd=REPO, env=child_env({**settings_env, "TUNEDECK_API_TOKENS": "a," + TOKEN}),
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "1 token(s) shorter than 24 characters" in result.stderr
    monkeypatch.setenv("TUNEDECK_API_TOKENS", TOKEN)  # 24 characters
    reset_caches()
    assert exposure_problem("0.0.0.0") is None
