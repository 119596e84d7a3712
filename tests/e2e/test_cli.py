"""The `tunedeck` CLI against a real server (auth on) and worker, training the tiny model."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForSequenceClassification

from tests.fixtures import REPO, LiveServer, child_env, sentiment_rows, tiny_spec, write_jsonl

TOKEN = "td_e2e-cli-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One `tunedeck serve` (web + embedded worker) for the module, with a bearer token."""
    data_dir = tmp_path_factory.mktemp("cli-data")
    # Auth on: the tiny model and the datasets (pytest's temp folders) must be under a root.
    live = LiveServer({"TUNEDECK_DATA_DIR": str(data_dir), "TUNEDECK_API_TOKENS": TOKEN,
                       "TUNEDECK_LOCAL_ROOTS": str(tmp_path_factory.getbasetemp())},
                      data_dir / "serve.log")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-dataset")
    write_jsonl(root / "train.jsonl", sentiment_rows(32, seed=1))
    write_jsonl(root / "validation.jsonl", sentiment_rows(16, seed=2))
    return root


def tunedeck(server: LiveServer, *args: str, token: str = TOKEN, cwd: Path | None = None,
             timeout: float = 300) -> subprocess.CompletedProcess:
    env = child_env({"TUNEDECK_URL": server.url, "TUNEDECK_TOKEN": token})
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec) if path.suffix == ".yaml" else json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def watched(server, tiny_model, dataset, tmp_path_factory) -> tuple[int, str]:
    """`tunedeck submit spec.yaml --watch` of a job that succeeds: (job id, its stderr)."""
    spec = {**tiny_spec(tiny_model, dataset), "name": "cli"}
    path = write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", spec)
    submitted = tunedeck(server, "submit", str(path), "--watch")
    assert submitted.returncode == 0, submitted.stderr
    return int(submitted.stdout.split()[0]), submitted.stderr


def test_submit_watch_and_download(server, watched, tmp_path):
    job_id, progress = watched
    assert f"job {job_id} queued: cli" in progress
    assert f"job {job_id} succeeded |" in progress and "100% step 8/8" in progress
    assert "loss " in progress and "eval/accuracy " in progress
    assert f"tunedeck download {job_id}" in progress

    listed = tunedeck(server, "jobs")
    assert listed.returncode == 0 and f"{job_id}  succeeded" in listed.stdout

    downloaded = tunedeck(server, "download", str(job_id), "-o", str(tmp_path / "models"))
    assert downloaded.returncode == 0, downloaded.stderr
    model_dir = Path(downloaded.stdout.strip())
    assert model_dir == tmp_path / "models" / f"job-{job_id}-final"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.num_labels == 2

    tar = tunedeck(server, "download", str(job_id), "--checkpoint", "checkpoint-4", "--tar",
                   "-o", str(tmp_path / "tars"))
    assert tar.returncode == 0, tar.stderr
    assert Path(tar.stdout.strip()).name == f"job-{job_id}-checkpoint-4.tar"

    again = tunedeck(server, "watch", str(job_id))
    assert again.returncode == 0 and "succeeded" in again.stderr


def test_a_failing_job_makes_watch_exit_1(server, tiny_model, dataset, tmp_path):
    spec = tiny_spec(tiny_model, dataset)
    spec["dataset"]["label_field"] = "sentiment"
    submitted = tunedeck(server, "submit", str(write_spec(tmp_path / "bad.json", spec)))
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    watched = tunedeck(server, "watch", job_id)
    assert watched.returncode == 1, watched.stderr
    assert f"job {job_id} failed" in watched.stderr and "sentiment" in watched.stderr


def test_a_cancelled_job_makes_watch_exit_2(server, tiny_model, dataset, tmp_path):
    spec = tiny_spec(tiny_model, dataset, num_train_epochs=500)
    job_id = tunedeck(server, "submit", str(write_spec(tmp_path / "long.json", spec))
                      ).stdout.strip()
    cancelled = tunedeck(server, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    watched = tunedeck(server, "watch", job_id)
    assert watched.returncode == 2 and f"job {job_id} cancelled" in watched.stderr
    assert tunedeck(server, "cancel", job_id).returncode == 1  # 409: already finished


def test_an_uploaded_dataset_trains(server, tiny_model, tmp_path):
    rows = sentiment_rows(40, seed=4, string_labels=True)
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    uploaded = tunedeck(server, "datasets", "upload", str(csv), "--label-column", "label")
    assert uploaded.returncode == 0, uploaded.stderr
    dataset_id = uploaded.stdout.strip()
    assert "40 rows" in uploaded.stderr and "positive: 20" in uploaded.stderr
    spec = tiny_spec(tiny_model, Path("unused"))
    spec["dataset"] = {"source": "upload", "path": dataset_id, "train_split": "train[:75%]",
                       "eval_split": "train[75%:]", "text_fields": ["text"],
                       "label_field": "label"}
    submitted = tunedeck(server, "submit", str(write_spec(tmp_path / "up.json", spec)),
                         "--watch")
    assert submitted.returncode == 0, submitted.stderr
    shown = tunedeck(server, "datasets", "show", dataset_id)
    assert shown.returncode == 0 and "reviews.csv" in shown.stdout


def test_a_wrong_token_or_server_fails_cleanly(server, tmp_path):
    wrong = tunedeck(server, "jobs", token="nope")
    assert wrong.returncode == 1 and "HTTP 401: wrong bearer token" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    unreachable = tunedeck(server, "watch", "1", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr
    missing = tunedeck(server, "submit", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 3 and "No such file" in missing.stderr


def test_an_invalid_spec_names_the_field(server, tiny_model, dataset, tmp_path):
    spec = tiny_spec(tiny_model, dataset, learning_rate=-1)
    submitted = tunedeck(server, "submit", str(write_spec(tmp_path / "bad.yaml", spec)))
    assert submitted.returncode == 3
    assert "HTTP 422" in submitted.stderr and "learning_rate" in submitted.stderr


def test_the_event_stream_is_usable_from_curl(server, watched):
    job_id = watched[0]
    curl = subprocess.run(
        ["curl", "-sSN", "--fail-with-body", "--max-time", "60", "-H",
         f"Authorization: Bearer {TOKEN}", f"{server.url}/api/v1/jobs/{job_id}/events"],
        capture_output=True, text=True, check=False)
    assert curl.returncode == 0, curl.stderr
    assert "event: metric" in curl.stdout and curl.stdout.rstrip().endswith(
        'data: {"status":"succeeded"}')
    resumed = subprocess.run(
        ["curl", "-sSN", "--max-time", "60", "-H", f"Authorization: Bearer {TOKEN}",
         "-H", "Last-Event-ID: 999999999", f"{server.url}/api/v1/jobs/{job_id}/events"],
        capture_output=True, text=True, check=False)
    assert "event: metric" not in resumed.stdout and "event: end" in resumed.stdout
    refused = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              f"{server.url}/api/v1/jobs/{job_id}/events"],
                             capture_output=True, text=True, check=False)
    assert refused.stdout == "401"


def test_the_token_never_reaches_the_server_log(server, watched):
    server.log.flush()
    assert TOKEN not in Path(server.log.name).read_text()


def test_sweep_with_a_bad_point_queues_nothing(server, tiny_model, dataset, tmp_path):
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(tiny_model, dataset))
    before = tunedeck(server, "jobs", "--limit", "200").stdout
    done = tunedeck(server, "sweep", str(path), "--grid", "training.learning_rate=1e-3,3",
                    "--grid", "training.per_device_train_batch_size=8")
    assert done.returncode == 3 and done.stdout == ""
    assert "HTTP 422: grid.training.learning_rate: point 2 of 2 (learning_rate=3, " \
        "per_device_train_batch_size=8): training.learning_rate: Input should be less than " \
        "or equal to 1" in done.stderr
    assert tunedeck(server, "jobs", "--limit", "200").stdout == before


@pytest.mark.slow
def test_sweep_watch_prints_the_leaderboard_until_every_job_ends(server, tiny_model, dataset,
                                                                  tmp_path):
    path = write_spec(tmp_path / "spec.yaml", tiny_spec(tiny_model, dataset))
    done = tunedeck(server, "sweep", str(path), "--grid", "training.learning_rate=1e-3,5e-3",
                    "--metric", "accuracy", "--name", "cli-sweep", "--watch")
    assert done.returncode == 0, done.stderr
    sweep_id = int(done.stdout.split()[0])
    assert f"sweep {sweep_id}: 2 jobs queued" in done.stderr
    last = done.stdout.strip().split("\n\n")[-1].splitlines()
    assert last[0].split() == ["RANK", "ID", "STATUS", "PROGRESS", "learning_rate",
                               "eval/accuracy"]
    rows = [row.split() for row in last[1:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [("1", "succeeded", "100%"),
                                                 ("2", "succeeded", "100%")]
    assert float(rows[0][5]) >= float(rows[1][5])  # best first
    assert sorted(r[4] for r in rows) == ["0.001", "0.005"]
    assert "best: job " in done.stderr and "learning_rate=" in done.stderr
