"""With auth on, a spec reads local files only under TUNEDECK_LOCAL_ROOTS (app/paths.py).

Issue 17, item 1: a token holder could train on (and read back) any file of the worker host.
The worker's own check is in tests/worker/test_confinement.py.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import session_scope
from app.jobs.models import Job
from app.main import create_app
from tests.app.auth.test_auth import login_csrf
from tests.app.conftest import TOKEN
from tests.app.jobs.test_views import field_errors, form_data
from tests.fixtures import reset_caches, sentiment_rows, write_jsonl


def spec(path: Path | str, source: str = "local", model: str = "tiny-bert-on-the-hub") -> dict:
    return {"model": model, "dataset": {"source": source, "path": str(path),
                                        "text_fields": ["text"], "label_field": "text"}}


def dataset(folder: Path) -> Path:
    write_jsonl(folder / "train.jsonl", sentiment_rows(8))
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A dataset folder outside every root (stands in for /etc/xdg/pip)."""
    return dataset(tmp_path / "outside")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def client_with(monkeypatch: pytest.MonkeyPatch, roots: str | None) -> TestClient:
    if roots is not None:
        monkeypatch.setenv("TUNEDECK_LOCAL_ROOTS", roots)
        reset_caches()
    return TestClient(create_app(), headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def no_roots(auth_on, monkeypatch) -> Iterator[TestClient]:
    with client_with(monkeypatch, None) as c:
        yield c


@pytest.fixture
def with_root(auth_on, monkeypatch, root: Path) -> Iterator[TestClient]:
    with client_with(monkeypatch, f" {root} ,/nonexistent-root") as c:
        yield c


def refused(response, field: str, words: str) -> str:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", *field.split(".")]
    assert "TUNEDECK_LOCAL_ROOTS" in error["msg"] and words in error["msg"], error["msg"]
    return error["msg"]


def jobs() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count(Job.id)))


def test_local_dataset_without_roots_is_refused(no_roots, outside):
    message = refused(no_roots.post("/api/v1/jobs", json=spec(outside)), "dataset.path",
                      "not set: only uploads and Hub ids are allowed while auth is on")
    assert message.startswith(f"{outside} is outside TUNEDECK_LOCAL_ROOTS")
    assert jobs() == 0


def test_local_dataset_inside_a_root_is_accepted(with_root, root):
    response = with_root.post("/api/v1/jobs", json=spec(dataset(root / "reviews")))
    assert response.status_code == 201, response.text


def test_local_dataset_outside_the_roots_is_refused(with_root, root, outside):
    refused(with_root.post("/api/v1/jobs", json=spec(outside)), "dataset.path",
            f"allowed: {root}, /nonexistent-root")


def test_a_symlink_inside_a_root_to_outside_is_refused(with_root, root, outside):
    (root / "link").symlink_to(outside, target_is_directory=True)
    refused(with_root.post("/api/v1/jobs", json=spec(root / "link")), "dataset.path",
            "outside")
    (root / "file-link.jsonl").symlink_to(outside / "train.jsonl")
    refused(with_root.post("/api/v1/jobs", json=spec(root / "file-link.jsonl")), "dataset.path",
            "outside")
    assert jobs() == 0


def test_a_dotdot_escape_is_refused(with_root, root, outside):
    escape = f"{root}/../outside"
    message = refused(with_root.post("/api/v1/jobs", json=spec(escape)), "dataset.path",
                      "outside")
    assert message.startswith(escape)


def test_a_root_that_is_a_prefix_string_is_not_a_parent(with_root, root, tmp_path):
    """root-evil starts with the text of root but is not inside it."""
    evil = dataset(tmp_path / f"{root.name}-evil")
    refused(with_root.post("/api/v1/jobs", json=spec(evil)), "dataset.path", "outside")


def test_a_hub_name_that_is_a_local_folder_is_confined(no_roots, outside):
    refused(no_roots.post("/api/v1/jobs", json=spec(outside, source="hub")), "dataset.path",
            "outside")
    response = no_roots.post("/api/v1/jobs", json=spec("nyu-mll/glue", source="hub"))
    assert response.status_code == 201, response.text  # a Hub id is no local path


def test_a_name_that_can_only_be_a_path_is_confined_even_if_missing_here(no_roots):
    """`output/../..` is no Hub id; in the worker's job dir it could name the data dir."""
    refused(no_roots.post("/api/v1/jobs", json=spec("output/../../..", source="hub")),
            "dataset.path", "outside")
    refused(no_roots.post("/api/v1/jobs", json=spec("nyu-mll/glue", source="hub",
                                                    model="final/../../1/final")),
            "model", "outside")


def test_a_local_model_outside_the_roots_is_refused(with_root, root, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    inside = dataset(root / "reviews")
    refused(with_root.post("/api/v1/jobs", json=spec(inside, model=str(model))), "model",
            "outside")
    (root / "model").symlink_to(model, target_is_directory=True)
    refused(with_root.post("/api/v1/jobs", json=spec(inside, model=str(root / "model"))),
            "model", "outside")


def test_a_missing_path_outside_is_refused_too(no_roots, tmp_path):
    """Refused before any look at the disk: the answer tells nothing about what exists."""
    refused(no_roots.post("/api/v1/jobs", json=spec(tmp_path / "no-such")), "dataset.path",
            "outside")


def test_an_upload_stays_allowed(no_roots):
    upload = no_roots.post("/api/v1/datasets", files={
        "file": ("d.csv", b"text,label\nfine,1\nbad,0\n", "text/csv")}).json()
    response = no_roots.post("/api/v1/jobs", json=spec(upload["id"], source="upload"))
    assert response.status_code == 201, response.text


def test_with_auth_off_any_path_is_allowed(client, outside):
    assert client.post("/api/v1/jobs", json=spec(outside)).status_code == 201
    assert client.post("/api/v1/jobs", json=spec(outside, source="hub")).status_code == 201


def test_a_long_path_is_capped_in_the_message(no_roots):
    long = "/" + "x" * 900
    message = refused(no_roots.post("/api/v1/jobs", json=spec(long)), "dataset.path",
                      "outside")
    assert len(message) < 400 and message.startswith(long[:200] + "... is outside")


def test_the_form_is_refused_the_same_way(anon_client, outside):
    """The new-job page goes through the same service: the error shows at the path field."""
    anon_client.post("/login", data={"token": TOKEN, "csrf_token": login_csrf(anon_client)})
    data = form_data(anon_client, **{"model": "tiny-bert-on-the-hub",
                                     "dataset.path": str(outside)})
    response = anon_client.post("/jobs", data=data)
    assert response.status_code == 422
    assert "TUNEDECK_LOCAL_ROOTS" in field_errors(response.text)["dataset.path"]
    assert jobs() == 0
