"""P11: the Fast preset against the reference recipe on the same job: train samples/s and the
final eval metric, side by side.

One spec (all-MiniLM-L6-v2 on the first 1,024 MRPC train rows, 1 epoch, batch 16, max_length
128, lr 1e-4, seed 42, evaluated on the whole validation split, 408 rows), run as a tunedeck
job by worker.runner.run_job twice per run: as given (the reference recipe: transformers'
random batches, fp32) and with `preset: fast` (expanded at submit: length-grouped batches,
bf16/fp16 and TF32 where the GPU has them, pad_to_multiple_of 8 on GPU, 2 dataloader workers,
pinned memory). Both arms in one child process, in ABBA order; the speed value is the median
of the fast / reference ratios of adjacent pairs. On a CPU only the batches and the dataloader
workers differ; on a GPU the precision, TF32 and padding parts apply too (GPU goal: >= 1.5x
with eval accuracy within 0.5 points).

    .venv/bin/python -m benchmarks.fast_preset [--runs 2] [--train-rows 1024]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import Row, child_env, median, minilm_dir, mrpc_dir, run_child
from benchmarks.overhead import arm_tunedeck, arms_main, default_threads, job_spec

GPU_SPEED_GOAL = 1.5
ACCURACY_POINTS = 0.5


def run_arms(spec_path: Path, runs: int, threads: int) -> None:
    """ABBA order in this one process; one JSON line at the end."""
    import torch

    from app.config import get_settings
    from app.jobs.schemas import JobSpec
    from app.migrate import upgrade

    torch.set_num_threads(threads)
    spec = json.loads(spec_path.read_text())
    upgrade(get_settings().db_url)
    specs = {"reference": spec,
             "fast": JobSpec.model_validate({**spec, "preset": "fast", "training": {
                 k: v for k, v in spec["training"].items()
                 if k != "train_sampling_strategy"}}).model_dump(mode="json")}
    results: dict[str, list[dict]] = {"reference": [], "fast": []}
    for i in range(runs * 2):
        arm = "reference" if i % 4 in (0, 3) else "fast"
        results[arm].append(arm_tunedeck(specs[arm], Path()))
    print(json.dumps({"results": results, "device": "cuda" if torch.cuda.is_available()
                      else "cpu", "fast_training": specs["fast"]["training"]}))


def run(runs: int = 2, train_rows: int = 1024, threads: int | None = None) -> list[Row]:
    from benchmarks.plain_recipe import subset_files

    model, data = minilm_dir(), mrpc_dir()
    threads = threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="tunedeck-p11-") as tmp:
        work = Path(tmp)
        subset_files(data, work / "data", train_rows, 408)
        spec = job_spec(model, work / "data")
        spec["name"] = "p11-minilm-mrpc"
        (work / "spec.json").write_text(json.dumps(spec))
        env = child_env(data_dir=str(work / "tunedeck"))
        out = run_child("benchmarks.fast_preset", "--arms", str(work / "spec.json"), "--runs",
                        str(runs), "--threads", str(threads), env=env, timeout=3600)
    return rows(out, train_rows, threads)


def rows(out: dict[str, Any], train_rows: int, threads: int) -> list[Row]:
    results = out["results"]
    ratios = [fast["samples_per_second"] / ref["samples_per_second"]
              for ref, fast in zip(results["reference"], results["fast"], strict=True)]
    ratio = median(ratios)
    speed = {arm: median([r["samples_per_second"] for r in runs])
             for arm, runs in results.items()}
    accuracy = {arm: median([r["eval_accuracy"] for r in runs]) for arm, runs in results.items()}
    loss = {arm: median([r["eval_loss"] for r in runs]) for arm, runs in results.items()}
    points = (accuracy["fast"] - accuracy["reference"]) * 100
    gpu = out["device"] == "cuda"
    details = {"setup": f"all-MiniLM-L6-v2, MRPC {train_rows} train / 408 validation rows, "
                        f"1 epoch, batch 16, max_length 128, lr 1e-4, seed 42, {out['device']}, "
                        f"{threads} torch threads, {len(ratios)} runs per arm in ABBA order",
               "results": results, "pair_ratios": [round(r, 4) for r in ratios],
               "fast_training": out["fast_training"]}
    where = "GPU" if gpu else "CPU"
    return [
        Row("P11", f"train samples/s, Fast preset / reference recipe, {where} (median of "
            f"{len(ratios)} pairs)", round(ratio, 3), "x",
            f">= {GPU_SPEED_GOAL} on GPU" if gpu else "report",
            ratio >= GPU_SPEED_GOAL if gpu else None, details),
        Row("P11", f"  train samples/s: reference / fast, {where} (medians)",
            f"{speed['reference']:.2f} / {speed['fast']:.2f}", "samples/s", "report"),
        Row("P11", f"  final eval accuracy: reference / fast (eval loss {loss['reference']:.4f}"
            f" / {loss['fast']:.4f})", f"{accuracy['reference']:.4f} / {accuracy['fast']:.4f}",
            "", f"within {ACCURACY_POINTS} points on GPU" if gpu else "report",
            abs(points) <= ACCURACY_POINTS if gpu else None),
    ]


def main(argv: list[str] | None = None) -> None:
    arms_main(argv, __doc__ or "", run, run_arms, runs=2, train_rows=1024)


if __name__ == "__main__":
    sys.exit(main())
