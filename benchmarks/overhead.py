"""P1: tunedeck's training speed against the plain recipe, same spec and seed, side by side.

Arm A is benchmarks/plain_recipe.py. Arm B is tunedeck's product path minus the Celery
transport: a job row in a real database (SQLite in a temp data dir), then worker.runner.run_job,
which claims it, trains through worker.training.train with the StreamingCallback and the
DbReporter writing every 0.25 s, stores predictions and the final model. Both arms run in one
child process (the same imports, thread pools and allocator for both): first one plain run that
is not counted (the process's first training run pays one-time costs, and always fell to the
plain arm), then the runs in ABBA order. Runs 2k and 2k+1 form a pair, next to each other in
time, and the value is the median over pairs of tunedeck's / the plain recipe's Trainer
train_samples_per_second: this shared machine's speed drifts by several percent within a
minute, which a ratio of two runs seconds apart mostly cancels. Trainer.train is also timed in
process CPU seconds (all threads, so tunedeck's writer thread counts). Both arms must reach the
same eval accuracy.

    .venv/bin/python -m benchmarks.overhead [--runs 6] [--train-rows 256]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Row,
    abba,
    child_env,
    median,
    minilm_dir,
    mrpc_dir,
    run_child,
    run_job_here,
)

TARGET = 0.99


def job_spec(model: Path, data: Path) -> dict[str, Any]:
    """The P1 spec, validated as the API would (defaults filled in)."""
    from app.jobs.schemas import JobSpec

    spec = {"name": "p1-minilm-mrpc", "model": str(model),
            "dataset": {"source": "local", "path": str(data), "train_split": "train",
                        "eval_split": "validation", "text_fields": ["sentence1", "sentence2"],
                        "label_field": "label"},
            "max_length": 128, "metrics": ["accuracy", "f1"],
            "training": {"num_train_epochs": 1, "learning_rate": 1e-4,
                         "per_device_train_batch_size": 16,
                         "per_device_eval_batch_size": 32, "eval_strategy": "no",
                         "save_strategy": "no", "logging_steps": 5, "seed": 42}}
    return JobSpec.model_validate(spec).model_dump(mode="json")


# ---------------------------------------------------------------- the arms, in one child process

def arm_plain(spec: dict[str, Any], work: Path) -> dict[str, float]:
    from benchmarks import plain_recipe

    data = Path(spec["dataset"]["path"])
    files = {split: str(data / f"{split}.jsonl") for split in ("train", "validation")}
    metrics = plain_recipe.run(spec["model"], files, spec["training"], str(work / "output"),
                               spec["max_length"])
    return {"samples_per_second": metrics["train_samples_per_second"],
            "eval_accuracy": metrics["eval_accuracy"], "eval_loss": metrics["eval_loss"]}


def arm_tunedeck(spec: dict[str, Any], work: Path) -> dict[str, float]:
    final = run_job_here(spec)
    return {"samples_per_second": final["train/train_samples_per_second"],
            "eval_accuracy": final["eval/accuracy"], "eval_loss": final["eval/loss"]}


TRAIN_TIMES: list[tuple[float, float]] = []


def time_train(train):
    """Trainer.train, also recording wall and process CPU seconds (all threads)."""

    def timed(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(self, *args, **kwargs)
        TRAIN_TIMES.append((time.perf_counter() - wall, time.process_time() - cpu))
        return result

    return timed


def run_arms(spec_path: Path, runs: int, threads: int) -> None:
    """ABBA order in this one process: runs of each arm, one JSON line at the end."""
    import torch
    import transformers

    from app.config import get_settings
    from app.migrate import upgrade

    torch.set_num_threads(threads)
    transformers.Trainer.train = time_train(transformers.Trainer.train)
    spec = json.loads(spec_path.read_text())
    rows = int(spec.pop("_train_rows"))
    upgrade(get_settings().db_url)
    results: dict[str, list[dict]] = {"warm-up": [], "plain": [], "tunedeck": []}
    for arm in ["warm-up", *abba("plain", "tunedeck", runs)]:
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix=f"p1-{arm}-") as tmp:
            result = (arm_tunedeck if arm == "tunedeck" else arm_plain)(spec, Path(tmp))
        wall, cpu = TRAIN_TIMES[-1]
        result.update(cpu_samples_per_second=rows / cpu, train_wall_s=round(wall, 2),
                      load_average=load)
        results[arm].append(result)
    print(json.dumps(results))


# ---------------------------------------------------------------- the comparison

def default_threads() -> int:
    """One core fewer than the machine has: with a thread per core, any other runnable thread
    (tunedeck's writer, the database, a neighbour's process) stalls torch's OpenMP barrier;
    on the 2-core benchmark machine 2 threads trained 3x slower than 1."""
    return max(1, (os.cpu_count() or 2) - 1)


def run(runs: int = 6, train_rows: int = 256, eval_rows: int = 128,
        threads: int | None = None) -> list[Row]:
    from benchmarks.plain_recipe import subset_files

    model, data = minilm_dir(), mrpc_dir()
    threads = threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="tunedeck-p1-") as tmp:
        work = Path(tmp)
        subset_files(data, work / "data", train_rows, eval_rows)
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps({**job_spec(model, work / "data"),
                                         "_train_rows": train_rows}))
        env = child_env(data_dir=str(work / "tunedeck"))
        results = run_child("benchmarks.overhead", "--arms", str(spec_path), "--runs",
                            str(runs), "--threads", str(threads), env=env, timeout=1800)
    return rows(results, train_rows, eval_rows, threads)


def rows(results: dict[str, list[dict]], train_rows: int, eval_rows: int,
         threads: int) -> list[Row]:
    def med(arm: str, key: str) -> float:
        return median([r[key] for r in results[arm]])

    def paired(key: str) -> list[float]:
        """tunedeck / plain of each ABBA pair (the k-th run of each arm ran next to each
        other)."""
        return [ours[key] / plain[key] for plain, ours in zip(results["plain"],
                                                                 results["tunedeck"],
                                                                 strict=True)]

    ratios, cpu_ratios = paired("samples_per_second"), paired("cpu_samples_per_second")
    ratio, cpu_ratio = median(ratios), median(cpu_ratios)
    plain, ours = med("plain", "samples_per_second"), med("tunedeck", "samples_per_second")
    counted = {arm: runs for arm, runs in results.items() if arm != "warm-up"}
    accuracy = {arm: sorted({round(r["eval_accuracy"], 6) for r in runs})
                for arm, runs in counted.items()}
    loss = {arm: sorted({round(r["eval_loss"], 6) for r in runs}) for arm, runs in counted.items()}
    same = accuracy["plain"] == accuracy["tunedeck"] and len(accuracy["plain"]) == 1
    setup = (f"all-MiniLM-L6-v2, MRPC {train_rows} train / {eval_rows} validation rows, "
             f"1 epoch, batch 16, max_length 128, lr 1e-4, seed 42, {threads} torch threads, "
             f"a plain warm-up run, then {len(results['plain'])} runs per arm in ABBA order "
             "in one process")
    details = {"setup": setup, "runs": results, "pair_ratios": [round(r, 4) for r in ratios],
               "cpu_pair_ratios": [round(r, 4) for r in cpu_ratios],
               "plain_samples_per_second": plain, "tunedeck_samples_per_second": ours,
               "cpu_time_ratio": round(cpu_ratio, 3)}
    return [
        Row("P1", f"train samples/s, tunedeck job / plain recipe (median of {len(ratios)} "
            "side-by-side pairs)", round(ratio, 3), "x", f">= {TARGET}", ratio >= TARGET,
            details),
        Row("P1", "  train samples/s: plain recipe / tunedeck job (medians)",
            f"{plain:.2f} / {ours:.2f}", "samples/s", "report"),
        Row("P1", "  same ratio per CPU-second of the process (writer thread included)",
            round(cpu_ratio, 3), "x", "report"),
        Row("P1", "  final eval accuracy: plain recipe / tunedeck job (same seed; eval loss "
            f"{loss['plain'][0]:.4f} / {loss['tunedeck'][0]:.4f})",
            f"{accuracy['plain'][0]:.4f} / {accuracy['tunedeck'][0]:.4f}", "", "equal", same,
            {"accuracy": accuracy, "eval_loss": loss}),
    ]


def main(argv: list[str] | None = None) -> None:
    arms_main(argv, __doc__ or "", run, run_arms, runs=6, train_rows=256)


def arms_main(argv: list[str] | None, doc: str, run: Callable[..., list[Row]],
              run_arms: Callable[[Path, int, int], None], *, runs: int,
              train_rows: int) -> None:
    """The command line of a side-by-side benchmark (P1, P11): print its rows, or (--arms,
    in the child process) run the arms."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--arms", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both arms (default: cores - 1)")
    parser.add_argument("--runs", type=int, default=runs, help="runs of each arm")
    parser.add_argument("--train-rows", type=int, default=train_rows)
    args = parser.parse_args(argv)
    if args.arms:
        run_arms(args.arms, args.runs, args.threads or default_threads())
        return
    for row in run(args.runs, args.train_rows, threads=args.threads):
        print(row.measure, row.shown(), row.target, row.verdict(), sep=" | ")


if __name__ == "__main__":
    sys.exit(main())
