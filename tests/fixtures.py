"""Fixtures shared by the whole suite (loaded from conftest.py)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from app import db
from app.config import get_settings
from app.jobs import queue
from app.main import create_app
from app.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "TUNEDECK_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TUNEDECK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("TUNEDECK_REQUIRE_SERVICES") == "1"


def reset_caches() -> None:
    get_settings.cache_clear()
    db.forget_engines()
    queue.get_producer.cache_clear()


def service_missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (TUNEDECK_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


def postgres_available() -> bool:
    try:
        with create_engine(POSTGRES_URL).connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:  # noqa: BLE001
        return False


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except Exception:  # noqa: BLE001
        return False


def fresh_postgres_database() -> str:
    """A new, empty database on the PostgreSQL server; dropped by the caller."""
    name = f"tunedeck_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings_env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Isolated TUNEDECK_* environment on SQLite + the embedded broker, schema migrated."""
    # TestClient sends Host: testserver; app/security.py answers only the names it is told.
    env = {"TUNEDECK_DATA_DIR": str(data_dir), "TUNEDECK_ALLOWED_HOSTS": "testserver"}
    for key in list(os.environ):
        if key.startswith("TUNEDECK_") and key not in ("TUNEDECK_REQUIRE_SERVICES",):
            monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    upgrade(get_settings().db_url)
    yield env
    db.get_engine().dispose()
    db.get_read_engine().dispose()
    reset_caches()


@pytest.fixture
def session(settings_env) -> Iterator[Session]:
    with db.session_scope() as s:
        yield s


@pytest.fixture
def client(settings_env) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


# ---------------------------------------------------------------- tiny model and data

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(
    {"the", "a", "good", "great", "fine", "bad", "awful", "poor", "movie", "film", "plot", "was",
     "is", "very", "not", "really", "acting", "story", "and", "but", "it", "this", "that", "so",
     "terrible", "excellent", "boring", "fun", "i", "liked", "hated", "loved", "same", "different",
     "says", "said", "cat", "dog", "sat", "ran", "on", "mat", "park", "##s", "##ly", "##ed", "."}
)]


def build_tiny_bert(path: Path) -> Path:
    """A 2-layer BERT encoder with a real WordPiece tokenizer, saved like a Hub checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(VOCAB)}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(path)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    BertModel(config).save_pretrained(path)  # a base checkpoint: the head is new, as on the Hub
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


POSITIVE = ["good", "great", "fine", "excellent", "fun", "liked", "loved"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "boring", "hated"]


def sentiment_rows(n: int, *, seed: int = 0, string_labels: bool = False,
                   pair: bool = False) -> list[dict]:
    """Learnable rows: the label is whether the sentence holds a positive word."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        subject = rng.choice(["the movie", "the film", "the plot", "this story", "the acting"])
        row = {"text": f"{subject} was very {word} .", "idx": i}
        if pair:
            row = {"sentence1": row["text"],
                   "sentence2": f"{subject} {'is' if rng.random() < .5 else 'was'} {word} .",
                   "idx": i}
        label = ("positive" if positive else "negative") if string_labels else int(positive)
        row["label"] = label
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Writes train/validation/test JSON Lines files into a fresh directory."""

    def make(train: int = 32, validation: int = 16, test: int = 0, **kwargs) -> Path:
        root = tmp_path / f"dataset-{uuid.uuid4().hex[:6]}"
        write_jsonl(root / "train.jsonl", sentiment_rows(train, seed=1, **kwargs))
        if validation:
            write_jsonl(root / "validation.jsonl", sentiment_rows(validation, seed=2, **kwargs))
        if test:
            write_jsonl(root / "test.jsonl", sentiment_rows(test, seed=3, **kwargs))
        return root

    return make


def tiny_spec(model: Path, dataset: Path, **training) -> dict:
    """A job spec for the tiny model that trains in seconds on CPU."""
    spec_training = {"num_train_epochs": 2, "learning_rate": 5e-3,
                     "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                     "logging_steps": 1, "eval_strategy": "epoch", "save_strategy": "epoch",
                     "seed": 7}
    spec_training.update(training)
    return {
        "model": str(model),
        "dataset": {"source": "local", "path": str(dataset), "train_split": "train",
                    "eval_split": "validation", "text_fields": ["text"], "label_field": "label"},
        "max_length": 32,
        "training": spec_training,
    }


# ---------------------------------------------------------------- live processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNEDECK_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LiveServer:
    """`tunedeck serve` (web + embedded worker) in a subprocess, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, with_worker: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
                "--log-level", "warning"]
        if not with_worker:
            args.append("--no-worker")
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, cwd=REPO, env=child_env(env), stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tunedeck serve exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("tunedeck serve did not become ready")

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def live_server(settings_env, tmp_path: Path) -> Iterator[LiveServer]:
    """tunedeck serve on SQLite + the embedded broker, sharing settings_env's data dir."""
    server = LiveServer(settings_env, tmp_path / "serve.log")
    yield server
    server.stop()


def wait_for_job(base_url: str, job_id: int, timeout: float = 240,
                 headers: dict | None = None) -> dict:
    """Poll the API until the job finishes; returns the final job JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base_url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")
