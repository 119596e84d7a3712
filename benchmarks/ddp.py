"""P15: one job on two DDP processes (CPU, gloo, TUNEDECK_DDP_CPU) against the same job in one
process: train samples/s and the loss curve, side by side.

One spec (all-MiniLM-L6-v2 on the first 256 MRPC train rows, 1 epoch, max_length 128, lr 1e-4,
seed 42, evaluated on the first 128 validation rows, train loss logged every 2 steps), run as a
tunedeck job by worker.runner.run_job: `resources: {gpus: 0}` with batch 16 in the child
process itself (1 process), and `resources: {gpus: 2}` with batch 8 per process through
torchrun (2 processes, the same effective batch 16, so the same steps). Each rank gets one
torch thread (torchrun's OMP_NUM_THREADS=1); the one-process arm gets `--threads` (default
cores - 1, as P1). Arms in ABBA order; the speed value is the median of the 2-process /
1-process ratios of Trainer's train_samples_per_second (train() alone: the launch, imports and
data loading are in the wall time row). Report only: on a CPU the processes share the cores.

    .venv/bin/python -m benchmarks.ddp [--runs 2] [--train-rows 256]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, child_env, median, minilm_dir, mrpc_dir, run_child
from benchmarks.overhead import default_threads, job_spec


def arm(spec: dict[str, Any], processes: int) -> dict[str, Any]:
    from app.db import session_scope
    from app.jobs import series, service
    from app.jobs.models import Job
    from app.jobs.schemas import JobSpec
    from worker.runner import run_job

    training = {**spec["training"], "per_device_train_batch_size": 16 // processes}
    spec = {**spec, "training": training, "resources": {"gpus": 0 if processes == 1 else 2}}
    with session_scope() as session:
        job_id = service.create_job(session, JobSpec.model_validate(spec)).id
        session.info.pop("tunedeck_pending_jobs", None)  # run here, not through the broker
    started = time.perf_counter()
    status = run_job(job_id)
    wall = time.perf_counter() - started
    with session_scope() as session:
        job = session.get(Job, job_id)
        if status != "succeeded":
            raise RuntimeError(f"job {job_id} {status}: {job.error_message}")
        loss = series.metric_series(session, job_id).series["train/loss"]
        return {"samples_per_second": job.final_metrics["train/train_samples_per_second"],
                "eval_loss": job.final_metrics["eval/loss"],
                "eval_accuracy": job.final_metrics["eval/accuracy"],
                "train_loss": dict(zip(loss.steps, loss.values, strict=True)),
                "wall_s": round(wall, 1), "processes": job.processes,
                "effective_batch_size": job.effective_batch_size, "devices": job.devices}


def run_arms(spec_path: Path, runs: int, threads: int) -> None:
    import torch

    from app.config import get_settings
    from app.migrate import upgrade

    torch.set_num_threads(threads)
    spec = json.loads(spec_path.read_text())
    upgrade(get_settings().db_url)
    results: dict[str, list[dict]] = {"1": [], "2": []}
    for i in range(runs * 2):
        processes = 1 if i % 4 in (0, 3) else 2
        results[str(processes)].append(arm(spec, processes))
    print(json.dumps(results))


def run(runs: int = 2, train_rows: int = 256, threads: int | None = None) -> list[Row]:
    from benchmarks.plain_recipe import subset_files

    model, data = minilm_dir(), mrpc_dir()
    threads = threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="tunedeck-p13-") as tmp:
        work = Path(tmp)
        subset_files(data, work / "data", train_rows, 128)
        spec = job_spec(model, work / "data")
        spec["training"].update(logging_steps=2, eval_strategy="no")
        spec["name"] = "p13-minilm-mrpc"
        (work / "spec.json").write_text(json.dumps(spec))
        env = child_env(data_dir=str(work / "tunedeck"), ddp_cpu="1")
        out = run_child("benchmarks.ddp", "--arms", str(work / "spec.json"), "--runs",
                        str(runs), "--threads", str(threads), env=env, timeout=3600)
    return rows(out, train_rows, threads)


def rows(results: dict[str, list[dict]], train_rows: int, threads: int) -> list[Row]:
    one, two = results["1"], results["2"]
    ratios = [b["samples_per_second"] / a["samples_per_second"]
              for a, b in zip(one, two, strict=True)]
    speed = [median([r["samples_per_second"] for r in arm]) for arm in (one, two)]
    wall = [median([r["wall_s"] for r in arm]) for arm in (one, two)]
    eval_loss = [median([r["eval_loss"] for r in arm]) for arm in (one, two)]
    curves = [arm[0]["train_loss"] for arm in (one, two)]
    steps = sorted(curves[0], key=int)
    diff = max(abs(curves[0][s] - curves[1][s]) for s in steps if s in curves[1])
    shown = " / ".join(f"{curves[0][s]:.3f}:{curves[1][s]:.3f}"
                       for s in (steps[0], steps[len(steps) // 2], steps[-1]))
    details = {"setup": f"all-MiniLM-L6-v2, MRPC {train_rows} train / 128 validation rows, 1 "
                        f"epoch, effective batch 16 (16 x 1 process, 8 x 2 processes), "
                        f"max_length 128, lr 1e-4, seed 42, CPU; 1-process arm {threads} "
                        "torch threads, 1 per DDP rank; ABBA order",
               "results": results, "pair_ratios": [round(r, 4) for r in ratios]}
    return [
        Row("P15", f"train samples/s, 2 DDP processes / 1 process, CPU gloo (median of "
            f"{len(ratios)} pairs)", round(median(ratios), 3), "x", "report", None, details),
        Row("P15", "  train samples/s: 1 process / 2 processes (medians); job wall time",
            f"{speed[0]:.2f} / {speed[1]:.2f} ({wall[0]:.0f} s / {wall[1]:.0f} s)",
            "samples/s", "report"),
        Row("P15", f"  train loss, 1 : 2 processes, at steps {steps[0]}, {steps[len(steps) // 2]}"
            f", {steps[-1]} (largest gap {diff:.3f}); final eval loss "
            f"{eval_loss[0]:.4f} / {eval_loss[1]:.4f}", shown, "", "report"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the one-process arm (default: cores - 1)")
    parser.add_argument("--runs", type=int, default=2, help="runs of each arm")
    parser.add_argument("--train-rows", type=int, default=256)
    args = parser.parse_args(argv)
    if args.arms:
        run_arms(args.arms, args.runs, args.threads or default_threads())
        return
    for row in run(args.runs, args.train_rows, threads=args.threads):
        print(row.measure, row.shown(), row.target, row.verdict(), sep=" | ")


if __name__ == "__main__":
    sys.exit(main())
