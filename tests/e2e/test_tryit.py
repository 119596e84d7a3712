"""Try it in the browser on one `tunedeck serve` (web, training worker, inference worker;
SQLite and the embedded broker) while another job trains: a classification, an NER and an SFT
job finish first, then a long job keeps the training worker busy for the whole module. Each
test types into the finished job's Try it panel and reads the rendered prediction, which must
be what the job's trainer.predict stored for the same input. Also `tunedeck predict`.
Run: pytest -m slow tests/e2e/test_tryit.py
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.causal_lm import build_tiny_llama
from tests.e2e.browser import screenshot
from tests.e2e.test_task_pages import answer_rows
from tests.fixtures import (
    REPO,
    LiveServer,
    child_env,
    sentiment_rows,
    tiny_spec,
    wait_for_job,
    write_jsonl,
)
from tests.task_data import ner_rows

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]
ANSWER_SECONDS = 30  # the page must show each answer within this (the benchmark times it)


@dataclass
class Served:
    server: LiveServer
    jobs: dict[str, int]      # task family -> a succeeded job
    training: int             # the job that keeps training meanwhile

    @property
    def url(self) -> str:
        return self.server.url

    def stored(self, family: str) -> list[dict]:
        """The job's prediction rows (trainer.predict's), in row order."""
        page = httpx.get(f"{self.url}/api/v1/jobs/{self.jobs[family]}/predictions",
                         params={"per_page": 100}, timeout=10).json()
        return sorted(page["items"], key=lambda r: r["row"])

    def assert_still_training(self) -> None:
        job = httpx.get(f"{self.url}/api/v1/jobs/{self.training}", timeout=10).json()
        assert job["status"] == "running", job["status"]


def splits(root: Path, rows_of, sizes=(32, 8, 8)) -> Path:
    for split, n, seed in zip(("train", "validation", "test"), sizes, (1, 2, 3), strict=True):
        write_jsonl(root / f"{split}.jsonl", rows_of(n, seed=seed))
    return root


def specs(tiny_model: Path, llama: Path, root: Path) -> dict[str, dict]:
    classification = tiny_spec(tiny_model, splits(root / "sentiment", lambda n, seed:
                                                  sentiment_rows(n, seed=seed,
                                                                 string_labels=True)))
    ner = tiny_spec(tiny_model, splits(root / "ner", ner_rows, (48, 8, 8)), num_train_epochs=4)
    del ner["dataset"]["text_fields"], ner["dataset"]["label_field"]
    ner["dataset"].update(tokens_field="tokens", tags_field="ner_tags")
    sft = tiny_spec(llama, splits(root / "answers", answer_rows, (64, 16, 8)),
                    num_train_epochs=4, learning_rate=1e-2)
    sft["dataset"] = {**sft["dataset"], "prompt_field": "prompt", "completion_field": "completion"}
    del sft["dataset"]["text_fields"], sft["dataset"]["label_field"]
    sft.update(lora=None, generation={"max_new_tokens": 4}, max_length=64)
    for spec, task in ((classification, "text-classification"), (ner, "token-classification"),
                       (sft, "causal-lm-sft")):
        spec["task"] = task
        spec["dataset"]["test_split"] = "test"
    return {"classification": classification, "ner": ner, "sft": sft}


def submit(url: str, spec: dict) -> int:
    created = httpx.post(f"{url}/api/v1/jobs", json=spec, timeout=30)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def wait_running(url: str, job_id: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()
        if job["status"] == "running" and job["progress"]["step"] > 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is not training: {job['status']}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("tryit")
    (root / "data").mkdir()
    server = LiveServer({"TUNEDECK_DATA_DIR": str(root / "data")}, root / "serve.log")
    try:
        jobs = {family: submit(server.url, spec) for family, spec in
                specs(tiny_model, build_tiny_llama(root / "tiny-llama"), root).items()}
        for job_id in jobs.values():
            job = wait_for_job(server.url, job_id, timeout=400)
            assert job["status"] == "succeeded", job["error"]
        # Enough steps to outlast the module; no saves, so it never has a checkpoint.
        long_job = tiny_spec(tiny_model, root / "sentiment", max_steps=1_000_000,
                             eval_strategy="no", save_strategy="no", logging_steps=50)
        training = submit(server.url, long_job)
        wait_running(server.url, training)
        yield Served(server, jobs, training)
        httpx.post(f"{server.url}/api/v1/jobs/{training}/cancel", timeout=10)
        wait_for_job(server.url, training, timeout=60)  # stopped at its next step
    finally:
        server.stop()


def try_in_page(page, served: Served, family: str, fill: dict[str, str]) -> None:
    """Open the job page, type into Try it, press Predict, wait for the answer."""
    page.goto(f"{served.url}/jobs/{served.jobs[family]}")
    page.wait_for_selector("#try-it-form")
    for name, value in fill.items():
        page.fill(f'#try-it-form [name="{name}"]', value)
    started = time.monotonic()
    page.click("#try-it-form button[type=submit]")
    page.wait_for_selector("#try-it-rows, #try-it-error", timeout=ANSWER_SECONDS * 1000)
    assert page.locator("#try-it-error").count() == 0, page.inner_text("#try-it-error")
    assert time.monotonic() - started < ANSWER_SECONDS


def test_classification_try_it_shows_labels_and_probability_bars(served, page):
    stored = served.stored("classification")
    try_in_page(page, served, "classification",
                {"field.text": "\n".join(r["inputs"]["text"] for r in stored)})
    rows = page.locator("#try-it-rows tbody tr")
    assert rows.count() == len(stored) == 8
    assert [t.strip() for t in rows.locator(".prediction").all_inner_texts()] == [
        r["prediction"] for r in stored]
    for i, row in enumerate(stored):  # one bar per label, the stored probability on it
        bars = rows.nth(i).locator(".probs .bar")
        assert bars.count() == 2
        label = rows.nth(i).locator(f'.probs [data-label="{row["prediction"]}"]')
        shown = label.locator("xpath=following-sibling::span[1]").inner_text()
        assert shown == f"{row['confidence'] * 100:.0f}%"
    served.assert_still_training()
    screenshot(page, "try-it-classification")


def test_ner_try_it_highlights_the_entities(served, page):
    stored = served.stored("ner")
    row = max(stored, key=lambda r: len(r["entities"]))
    assert row["entities"]  # the model tags something: the comparison is not empty = empty
    try_in_page(page, served, "ner", {"field.tokens": " ".join(row["tokens"])})
    line = page.locator('#try-it-rows .sentence[data-line="predicted"]')
    assert line.count() == 1
    entities = line.locator(".ent")
    assert [(e.get_attribute("data-type"), int(e.get_attribute("data-start")),
             int(e.get_attribute("data-end"))) for e in entities.all()] == [
        (e["type"], e["start"], e["end"]) for e in row["entities"]]
    assert all(word in line.inner_text() for word in row["tokens"])
    served.assert_still_training()
    screenshot(page, "try-it-ner")


def test_sft_try_it_shows_the_generated_text(served, page):
    stored = served.stored("sft")[0]
    try_in_page(page, served, "sft", {"field.prompt": stored["prompt"], "max_new_tokens": "4"})
    generated = page.inner_text("#try-it-rows .generated").strip()
    assert generated == stored["generated"].strip()
    assert "Paris" in generated  # the model learned the answer; Try it shows its words
    served.assert_still_training()
    screenshot(page, "try-it-sft")


def test_try_it_on_a_job_without_a_checkpoint_is_409_and_the_panel_waits(served, page):
    answer = httpx.post(f"{served.url}/api/v1/jobs/{served.training}/checkpoints/final/predict",
                        json={"inputs": [{"text": "fine"}]}, timeout=10)
    assert answer.status_code == 409
    page.goto(f"{served.url}/jobs/{served.training}")
    assert "Try it needs a checkpoint" in page.inner_text("#try-it")


def test_tunedeck_predict_prints_the_label(served):
    stored = served.stored("classification")[0]
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "predict", "--url", served.url,
         str(served.jobs["classification"]), stored["inputs"]["text"]],
        cwd=REPO, env=child_env({}), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == stored["prediction"]
    assert re.search(r"checkpoint final on (cpu|cuda), [0-9.]+ s", done.stderr)
    served.assert_still_training()
