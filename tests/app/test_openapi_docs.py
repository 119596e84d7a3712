"""The OpenAPI schema documents every route, and a property-based run over it finds no 5xx."""
from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from sqlalchemy import update

from app.db import session_scope, utcnow
from app.jobs.models import FINISHED, Job, JobStatus
from app.main import create_app
from tests.app.conftest import TOKEN
from tests.app.factories import make_finished_job
from tests.fixtures import reset_caches


def operations() -> list[tuple[str, str]]:
    spec = create_app().openapi()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items()
                  if path.startswith("/api/") for method in ops)


def finish_open_jobs() -> None:
    """An event stream follows a job until it ends; end them so every stream call returns."""
    with session_scope() as session:
        session.execute(update(Job).where(Job.status.not_in([s.value for s in FINISHED]))
                        .values(status=JobStatus.cancelled, finished_at=utcnow()))


# Answered by the inference worker, which this test does not start: a valid request gets the
# documented 503 at once (tests/app/preflight/test_api.py runs them against a real worker).
WORKER_ANSWERED = ("/api/v1/preflight",)


@pytest.mark.parametrize(("method", "path"), operations())
def test_no_server_errors(auth_on, data_dir_path, monkeypatch, method, path):
    """Valid and invalid requests (25 of each per operation) with the right token: no 5xx
    (but the documented 503 of an operation no inference worker answers here)."""
    make_finished_job(data_dir_path)  # job 1 exists, with checkpoints, metrics, predictions
    no_worker = path.startswith(WORKER_ANSWERED)
    if no_worker:
        monkeypatch.setenv("TUNEDECK_PREFLIGHT_TIMEOUT_SECONDS", "0.05")
        monkeypatch.setenv("TUNEDECK_MEASURE_TIMEOUT_SECONDS", "0.05")
        reset_caches()
    operation = schemathesis.openapi.from_asgi("/openapi.json", create_app())[path][method]
    strategy = (operation.as_strategy(GenerationMode.POSITIVE)
                | operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        if case.path.endswith("/events"):
            finish_open_jobs()
        started = time.monotonic()
        response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
        if no_worker and response.status_code == 503:
            case.validate_response(response, checks=[status_code_conformance])
        else:
            case.validate_response(response,
                                   checks=[not_a_server_error, status_code_conformance])
        assert time.monotonic() - started < 10

    check()


def test_every_operation_documents_auth_errors_and_models(auth_on):
    spec = create_app().openapi()
    operations = [(path, method, op) for path, ops in spec["paths"].items()
                  if path.startswith("/api/") for method, op in ops.items()]
    assert len(operations) >= 13
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert "401" in op["responses"], where
        assert op["responses"]["401"]["content"]["application/json"]["schema"], where
        assert op.get("summary"), where
        if "{job_id}" in path or "{dataset_id}" in path:
            assert "404" in op["responses"], where
        ok = next(code for code in op["responses"] if code.startswith("2"))
        if ok != "204":
            assert op["responses"][ok].get("content"), where
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_docs_pages_are_served(client):
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "tunedeck"
