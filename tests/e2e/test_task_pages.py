"""Each new task through the dashboard of a real `tunedeck serve` (embedded worker, SQLite): pick
the task on the New job form, fill its fields, launch, see its own predictions view when the job
succeeds; then Clone refills the form, and the same spec through the API succeeds too."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.browser import screenshot
from tests.fixtures import wait_for_job, write_jsonl
from tests.task_data import ner_rows, regression_rows

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

STATUS = "document.getElementById('job-status').dataset.status"
SHOTS = Path("/tmp/tunedeck-task-pages")  # one picture per task's predictions view, to look at


def write_splits(root: Path, rows_of, sizes=(64, 16, 12)) -> Path:
    for split, n, seed in zip(("train", "validation", "test"), sizes, (1, 2, 3), strict=True):
        write_jsonl(root / f"{split}.jsonl", rows_of(n, seed=seed))
    return root


# Words the tiny BERT's vocabulary holds, so it learns some labels and the chips show hits,
# misses and extras.
TOPIC_WORDS = {"pets": ["cat", "dog"], "films": ["movie", "film", "plot", "acting"],
               "praise": ["good", "great", "excellent", "loved"]}


def multi_label_rows(n: int, *, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topics = sorted(rng.sample(sorted(TOPIC_WORDS), rng.choice([1, 2])))
        words = [rng.choice(TOPIC_WORDS[t]) for t in topics] + rng.sample(
            ["the", "a", "was", "is", "very", "so", "and", "it"], 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    return rows


def launch(page, url: str, task: str, model: Path, data: Path, fields: dict[str, str],
           full_fine_tune: bool = False, **training: str) -> int:
    """Fill the form for `task` and launch; returns the job id once its page shows it succeeded."""
    page.goto(f"{url}/jobs/new")
    page.fill('[name="dataset.train_split"]', "train")
    page.fill('[name="dataset.test_split"]', "test")
    page.evaluate("window.notReloaded = true")
    page.select_option("#task-picker", task)
    page.wait_for_selector(f'#data-fields[data-task="{task}"]')
    page.wait_for_selector(f'#task-options[data-task="{task}"]')
    # the swap came without a reload and kept what was typed in the swapped part
    assert page.evaluate("window.notReloaded") is True
    assert page.input_value('[name="dataset.test_split"]') == "test"

    page.fill('[name="model"]', str(model))
    page.check('input[name="dataset.source"][value="local"]')
    page.fill('[name="dataset.path"]', str(data))
    page.fill('[name="dataset.eval_split"]', "validation")
    for name, value in fields.items():
        page.fill(f'[name="{name}"]', value)
    if full_fine_tune:
        page.check('[name="lora.full"]')
    plain = {"num_train_epochs": "2", "learning_rate": "5e-3",
             "per_device_train_batch_size": "8", "logging_steps": "1", "seed": "7", **training}
    for name, value in plain.items():
        page.fill(f'[name="training.{name}"]', value)
    page.fill('[name="max_length"]', "32")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    page.wait_for_function(f"['succeeded', 'failed'].includes({STATUS})", timeout=180_000)
    assert page.evaluate(STATUS) == "succeeded", page.inner_text("#job-status")
    page.wait_for_selector(f'#predictions[data-task="{task}"] #prediction-rows')
    return job_id


def shoot(page, task: str) -> None:
    page.locator("#predictions").scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#predictions").screenshot(path=str(SHOTS / f"{task}.png"))
    screenshot(page, f"predictions-{task}")


def clone_and_resubmit(page, url: str, job_id: int, task: str, field: str, value: str,
                       **changes) -> dict:
    """Clone refills the form with the task and its fields; the job's spec (with `changes`)
    through the API succeeds end to end too. Returns the API job's first prediction row."""
    page.goto(f"{url}/jobs/new?clone={job_id}")
    assert page.input_value("#task-picker") == task
    assert page.input_value(f'[name="{field}"]') == value
    spec = {**httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10).json()["spec"], **changes}
    created = httpx.post(f"{url}/api/v1/jobs", json=spec, timeout=10)
    assert created.status_code == 201, created.text
    job = wait_for_job(url, created.json()["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    rows = httpx.get(f"{url}/api/v1/jobs/{job['id']}/predictions", timeout=10).json()
    assert rows["task"] == task and rows["total"] == 12
    return rows["items"][0]


def test_multi_label_job_from_the_form_shows_label_chips(live_server, tiny_model, page,
                                                         tmp_path):
    data = write_splits(tmp_path / "topics", multi_label_rows)
    job_id = launch(page, live_server.url, "multi-label-classification", tiny_model, data,
                    {"dataset.text_fields.0": "text", "dataset.label_field": "labels",
                     "threshold": "0.4"}, num_train_epochs="4")
    expected = {json.dumps(sorted(r["labels"])) for r in multi_label_rows(12, seed=3)}
    rows = page.locator("#prediction-rows tbody tr")
    assert rows.count() == 12
    for i in range(rows.count()):
        chips = rows.nth(i).locator(".true-labels .chip")
        labels = sorted(chips.evaluate_all("cs => cs.map(c => c.dataset.label)"))
        assert json.dumps(labels) in expected
        # a true label is green when predicted, dashed red when missed; extras are struck out
        predicted = set(rows.nth(i).locator(".predicted-labels .chip").evaluate_all(
            "cs => cs.map(c => c.dataset.label)"))
        for chip in chips.all():
            assert ("hit" if chip.get_attribute("data-label") in predicted else "missed") in (
                chip.get_attribute("class"))
    assert rows.first.locator(".probs .bar").count() == 3  # one per topic
    assert "f1_micro" in page.inner_text("#final-metrics")
    shoot(page, "multi-label-classification")

    page.check("#errors-only")
    page.wait_for_selector('#predictions[hx-get$="errors_only=true"]')  # the swapped card
    wrong = page.locator("#prediction-rows tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.correct)")
    assert set(wrong) <= {"false"}
    row = clone_and_resubmit(page, live_server.url, job_id, "multi-label-classification",
                             "threshold", "0.4")
    assert {"labels", "predictions", "probabilities"} <= set(row)


def test_regression_job_from_the_form_shows_the_scatter_and_largest_errors(
        live_server, tiny_model, page, tmp_path):
    data = write_splits(tmp_path / "scores", regression_rows)
    job_id = launch(page, live_server.url, "text-regression", tiny_model, data,
                    {"dataset.text_fields.0": "text", "dataset.label_field": "score"})
    # the scatter: uPlot's canvas, one point per labelled test row, from the server
    page.wait_for_selector("#scatter canvas")
    assert page.get_attribute("#scatter", "data-drawn") == "12"
    truth = page.evaluate("window.tunedeck.scatter.data[0]")
    assert sorted(truth) == sorted(r["score"] for r in regression_rows(12, seed=3))
    # the rows open on the largest absolute errors, which the API agrees are the largest
    assert page.is_checked("#errors-only")
    errors = [abs(float(e)) for e in page.locator("#prediction-rows tbody tr").evaluate_all(
        "rs => rs.map(r => r.dataset.error)")]
    assert len(errors) == 12 and errors == sorted(errors, reverse=True)
    api_rows = httpx.get(f"{live_server.url}/api/v1/jobs/{job_id}/predictions",
                         timeout=10).json()["items"]
    assert errors[0] == pytest.approx(max(abs(r["error"]) for r in api_rows), abs=1e-6)
    assert "pearson" in page.inner_text("#final-metrics")
    shoot(page, "text-regression")

    # unchecked: row order, still with the scatter
    page.uncheck("#errors-only")
    page.wait_for_selector('#predictions:not([hx-get$="errors_only=true"])')  # the swapped card
    page.wait_for_selector("#scatter canvas")
    rows = page.locator("#prediction-rows tbody tr td:first-child").all_inner_texts()
    assert [int(r) for r in rows] == list(range(12))
    row = clone_and_resubmit(page, live_server.url, job_id, "text-regression",
                             "dataset.label_field", "score")
    assert {"label", "prediction", "error"} <= set(row)


def test_ner_job_from_the_form_highlights_entities(live_server, tiny_model, page, tmp_path):
    data = write_splits(tmp_path / "ner", ner_rows)
    page.goto(f"{live_server.url}/jobs/new")
    page.select_option("#task-picker", "token-classification")
    page.wait_for_selector('#data-fields[data-task="token-classification"]')
    # a 422 re-renders the token task with what was typed, the error at its field
    page.fill('[name="dataset.tokens_field"]', "words")
    page.fill('[name="dataset.tags_field"]', "words")
    page.fill('[name="model"]', str(tiny_model))
    page.fill('[name="dataset.path"]', str(data))
    page.click("button[type=submit]")
    error = page.locator('[data-error-for="dataset.tags_field"]')
    assert "different columns" in error.inner_text()
    assert page.input_value("#task-picker") == "token-classification"
    assert page.input_value('[name="dataset.tokens_field"]') == "words"
    assert page.input_value('[name="model"]') == str(tiny_model)

    job_id = launch(page, live_server.url, "token-classification", tiny_model, data,
                    {"dataset.tokens_field": "tokens", "dataset.tags_field": "ner_tags"},
                    num_train_epochs="3")
    rows = page.locator("#prediction-rows tbody tr")
    assert rows.count() == 12
    first = ner_rows(12, seed=3)[0]
    true_line = rows.first.locator('.sentence[data-line="true"]')
    spans = true_line.locator(".ent").evaluate_all(
        "es => es.map(e => [e.dataset.type, +e.dataset.start, +e.dataset.end])")
    tags = first["ner_tags"]
    starts = [i for i, t in enumerate(tags) if t.startswith("B-")]
    assert [(t, s) for t, s, _ in spans] == [(tags[s][2:], s) for s in starts]
    texts = true_line.locator(".ent").evaluate_all("es => es.map(e => e.firstChild.textContent)")
    assert texts == [" ".join(first["tokens"][s:e]) for _, s, e in spans]
    assert rows.first.locator('.sentence[data-line="predicted"]').count() == 1
    # an entity on one line that the other lacks is marked, on a wrong sentence
    for i in range(rows.count()):
        row = rows.nth(i)
        marked = row.locator(".ent.mismatch").count()
        assert (marked > 0) <= (row.get_attribute("data-correct") == "false")
    assert "f1" in page.inner_text("#final-metrics")
    shoot(page, "token-classification")

    row = clone_and_resubmit(page, live_server.url, job_id, "token-classification",
                             "dataset.tags_field", "ner_tags")
    assert {"tokens", "tags", "predicted_tags", "entities"} <= set(row)


HAS_SFT = importlib.util.find_spec("worker.recipes.causal_lm_sft") is not None


def answer_rows(n: int, *, seed: int, wrong_every: int = 0) -> list[dict]:
    """Prompt/completion rows whose answer is always "Paris" (a word of the tiny tokenizer's
    corpus, learnt in a few steps); with wrong_every, every such row's reference is "Rome", so
    its generation misses."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        answer = "Rome" if wrong_every and i % wrong_every == 0 else "Paris"
        rows.append({"prompt": f"Add {a} and {b}. Capital?", "completion": f" {answer}"})
    return rows


@pytest.mark.skipif(not HAS_SFT, reason="causal-lm-sft (worker/recipes/causal_lm_sft.py) is "
                    "not on this branch")
def test_sft_job_from_the_form_shows_generations(live_server, page, tmp_path):
    from tests.causal_lm import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny-llama")
    data = tmp_path / "answers"
    for split, n, seed in (("train", 64, 1), ("validation", 16, 2), ("test", 12, 3)):
        write_jsonl(data / f"{split}.jsonl",
                    answer_rows(n, seed=seed, wrong_every=3 if split == "test" else 0))
    page.goto(f"{live_server.url}/jobs/new")
    page.select_option("#task-picker", "causal-lm-sft")
    page.wait_for_selector('#task-options[data-task="causal-lm-sft"]')
    # the full fine-tune switch hides the LoRA fields; the messages layout its own column
    page.check('[name="lora.full"]')
    assert not page.is_visible('[name="lora.r"]')
    page.uncheck('[name="lora.full"]')
    page.check('input[name="dataset.layout"][value="messages"]')
    assert page.is_visible('[name="dataset.messages_field"]')
    assert not page.is_visible('[name="dataset.prompt_field"]')
    page.check('input[name="dataset.layout"][value="prompt"]')

    job_id = launch(page, live_server.url, "causal-lm-sft", model, data,
                    {"dataset.prompt_field": "prompt", "dataset.completion_field": "completion",
                     "generation.max_new_tokens": "4"},
                    full_fine_tune=True, num_train_epochs="4", learning_rate="1e-2")
    rows = page.locator("#prediction-rows tbody tr")
    assert rows.count() == 12
    expected = answer_rows(12, seed=3, wrong_every=3)
    assert rows.first.locator(".prompt").inner_text().strip() == expected[0]["prompt"]
    assert [r.strip() for r in rows.locator(".reference").all_inner_texts()] == [
        e["completion"].strip() for e in expected]
    api_rows = httpx.get(f"{live_server.url}/api/v1/jobs/{job_id}/predictions",
                         timeout=10).json()["items"]
    generated = [r.strip() for r in rows.locator(".generated").all_inner_texts()]
    assert generated == [r["generated"].strip() for r in api_rows]
    assert "Paris" in generated  # the model learned the answer; the page shows its words
    verdicts = rows.locator(".verdict").all_inner_texts()
    assert verdicts == ["✓" if r["correct"] else "✗" for r in api_rows]
    assert {"✓", "✗"} <= set(verdicts)
    assert "perplexity" in page.inner_text("#final-metrics")
    shoot(page, "causal-lm-sft")

    # Clone keeps the full fine-tune switch; through the API the same job with LoRA
    row = clone_and_resubmit(page, live_server.url, job_id, "causal-lm-sft",
                             "generation.max_new_tokens", "4",
                             lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    page.goto(f"{live_server.url}/jobs/new?clone={job_id}")
    assert page.is_checked('[name="lora.full"]')
    assert {"prompt", "reference", "generated"} <= set(row)
