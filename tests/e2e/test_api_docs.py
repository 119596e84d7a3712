"""docs/api.md cannot rot: every endpoint has a curl and a Python example, and each example runs
against a live server (auth on, real worker, the tiny model)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.fixtures import (
    REPO,
    LiveServer,
    child_env,
    sentiment_rows,
    tiny_spec,
    wait_for_job,
    write_jsonl,
)
from tests.hub_server import FakeHub

DOC = REPO / "docs" / "api.md"
PARAM = re.compile(r"{\w+}")
TOKEN = "td_docs-token-0123456789"
HF_TOKEN = "hf_docs-token-0123456789"
# Examples stay plain `curl ...`; in the test an HTTP error must fail the block.
CURL_FAILS = ('curl() { case " $* " in *" --fail "*) command curl "$@";; '
              '*) command curl --fail-with-body "$@";; esac; }\n')


@dataclass
class Example:
    heading: str
    language: str
    code: str

    def __str__(self) -> str:
        return f"{self.heading} [{self.language}]"


def examples() -> list[Example]:
    """The ```bash and ```python blocks of docs/api.md, with the heading above each."""
    found, heading, language, lines = [], "", None, []
    for line in DOC.read_text().splitlines():
        if language is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif language is None and line.startswith("```"):
            language, lines = line[3:].strip(), []
        elif language is not None and line.startswith("```"):
            if language in ("bash", "python"):
                found.append(Example(heading, language, "\n".join(lines) + "\n"))
            language = None
        elif language is not None:
            lines.append(line)
    return found


def test_every_api_endpoint_has_a_curl_and_a_python_example():
    paths = create_app().openapi()["paths"]
    endpoints = {f"{method.upper()} {PARAM.sub('{id}', path)}"
                 for path, ops in paths.items() if path.startswith("/api/") for method in ops}
    documented: dict[str, set[str]] = {}
    for example in examples():
        documented.setdefault(PARAM.sub("{id}", example.heading), set()).add(example.language)
    for endpoint in endpoints:
        assert documented.get(endpoint) == {"bash", "python"}, endpoint


# ---------------------------------------------------------------- running the examples


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory, tiny_model) -> Iterator[dict]:
    """A server with a finished job and an uploaded dataset; a folder with the example files."""
    root = tmp_path_factory.mktemp("docs")
    hub = FakeHub(HF_TOKEN)  # the push examples push to this stand-in (tests/hub_server.py)
    # Auth on: the tiny model and the dataset (pytest's temp folders) must be under a root.
    server = LiveServer({"TUNEDECK_DATA_DIR": str(root / "data"), "TUNEDECK_API_TOKENS": TOKEN,
                         "TUNEDECK_LOCAL_ROOTS": str(tmp_path_factory.getbasetemp()),
                         "TUNEDECK_HF_TOKEN": HF_TOKEN, "HF_ENDPOINT": hub.url,
                         "HF_HUB_OFFLINE": "0"},
                        root / "serve.log")
    try:
        yield {**prepare(server, root, tiny_model), "hub": hub}
    finally:
        server.stop()
        hub.stop()


def prepare(server: LiveServer, root: Path, tiny_model: Path) -> dict:
    work = root / "work"
    data = root / "dataset"
    write_jsonl(data / "train.jsonl", sentiment_rows(32, seed=1))
    write_jsonl(data / "validation.jsonl", sentiment_rows(16, seed=2))
    spec = tiny_spec(tiny_model, data)
    work.mkdir()
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "spec.yaml").write_text(json.dumps(spec))  # JSON is YAML
    rows = sentiment_rows(40, seed=4, string_labels=True)
    (work / "reviews.csv").write_text(
        "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    api = httpx.Client(base_url=f"{server.url}/api/v1", timeout=30,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    job_id = api.post("/jobs", json=spec).json()["id"]
    return {"url": server.url, "api": api, "work": work, "spec": spec, "job_id": job_id}


def upload(ctx: dict) -> str:
    with (ctx["work"] / "reviews.csv").open("rb") as f:
        return ctx["api"].post("/datasets", files={"file": ("reviews.csv", f)}).json()["id"]


def wait(ctx: dict, job_id: int) -> dict:
    return wait_for_job(ctx["url"], job_id, headers={"Authorization": f"Bearer {TOKEN}"})


def cancel_unfinished(ctx: dict, keep: int) -> None:
    """Jobs an example submitted need not train: the next examples would queue behind them."""
    for status in ("queued", "running"):
        for job in ctx["api"].get("/jobs", params={"status": status}).json()["items"]:
            if job["id"] != keep:
                ctx["api"].post(f"/jobs/{job['id']}/cancel")


def env_for(ctx: dict, example: Example, job_id: int) -> dict[str, str]:
    job = job_id
    if example.heading == "POST /api/v1/jobs/{id}/cancel":
        job = ctx["api"].post("/jobs", json=ctx["spec"]).json()["id"]
    dataset = upload(ctx)
    sweep = ""
    if "/sweeps/{id}" in example.heading:  # its jobs are cancelled after the example
        sweep = str(ctx["api"].post("/sweeps", json={
            "base": ctx["spec"], "grid": {"training.seed": [1, 2]}}).json()["id"])
    other = job  # compare examples: a second job (queued, cancelled after the example)
    if example.heading.startswith("GET /api/v1/compare"):
        other = ctx["api"].post("/jobs", json=ctx["spec"]).json()["id"]
    env = child_env({"TUNEDECK_URL": ctx["url"], "TUNEDECK_TOKEN": TOKEN,
                     "JOB_ID": str(job), "DATASET_ID": dataset, "SWEEP_ID": sweep,
                     "OTHER_JOB_ID": str(other)})
    if "{push_id}" in example.heading:
        env["PUSH_ID"] = str(ctx["api"].post(f"/jobs/{job_id}/checkpoints/final/push",
                                             json={"repo_id": "docs-model"}).json()["id"])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(example: Example, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    if example.language == "bash":
        argv = ["bash", "-euo", "pipefail", "-c", CURL_FAILS + example.code]
    else:
        argv = [sys.executable, "-c", example.code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.slow  # ~2-3 minutes: three real (tiny) training runs
def test_every_example_runs_against_a_live_server(docs_server):
    ctx = docs_server
    job_id = ctx["job_id"]
    assert wait(ctx, job_id)["status"] == "succeeded"
    for example in examples():
        result = run(example, env_for(ctx, example, job_id), ctx["work"])
        assert result.returncode == 0, f"{example}\n{example.code}\n{result.stdout}\n" \
                                       f"{result.stderr}"
        assert "Traceback" not in result.stderr, example
        cancel_unfinished(ctx, keep=job_id)
    assert (ctx["work"] / f"job-{job_id}-final" / "config.json").is_file()  # tar -xf
    assert (ctx["work"] / "models" / f"job-{job_id}-final" / "config.json").is_file()
    # the push examples' python block waited for its push: the model reached the stand-in Hub
    assert "README.md" in ctx["hub"].state.files["my-org/sentiment-bert"]
