"""Try it: a trained checkpoint's predictions for typed inputs, in the rows trainer.predict
stores (the inference worker's `predict` handler, worker/inference.py).

The rows are built by the task's own recipe: its tokenization (`features`), collator and
`rows()`, and for causal-lm-sft its prompt rendering and batched greedy `generate`, so Try it
answers what trainer.predict would for the same inputs and checkpoint
(tests/worker/test_tryit.py compares them). Inputs run in batches of the job's
per_device_eval_batch_size.
"""
from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, disable_progress_bars
from peft import AutoPeftModelForCausalLM
from sqlalchemy import select
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from app import db
from app.config import get_settings
from app.jobs.models import Checkpoint, Job
from app.tryit import inputs as tryit_inputs
from worker.bad_input import BadInput
from worker.model_cache import Loaded, ModelCache, choose_device
from worker.recipes import recipe_for
from worker.recipes import token_classification as ner
from worker.recipes.base import TaskData
from worker.recipes.causal_lm_sft import (
    generate,
    generation_rows,
    load_tokenizer,
    prompt_text,
)

SEQUENCE_TASKS = ("text-classification", "multi-label-classification", "text-regression")
DEFAULT_BATCH = 8  # TrainingArguments' per_device_eval_batch_size default
MAX_BATCH = 64
_cache: ModelCache | None = None


class CheckpointGone(LookupError):
    """The checkpoint's row or directory is gone (a 500 naming it; the web checks first)."""


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """{job_id, checkpoint, inputs, max_new_tokens?} -> {predictions, checkpoint, device,
    seconds}; BadInput names a bad input's field."""
    started = time.monotonic()
    job_id, name = int(payload["job_id"]), str(payload["checkpoint"])
    spec, directory = locate(job_id, name)
    task = tryit_inputs.task_of(spec)
    try:
        inputs = tryit_inputs.check(spec, payload.get("inputs"))
        new_tokens = tryit_inputs.new_tokens(spec, payload.get("max_new_tokens"))
    except tryit_inputs.InputError as exc:
        raise BadInput(exc.field, exc.message) from None
    key = (str(directory), directory.stat().st_mtime_ns)
    loaded = cache().get(key, lambda: load(task, directory))
    with loaded.lock:
        rows = predict(loaded, spec, inputs, new_tokens)
    for row in rows:
        row.pop("split", None)
    return {"predictions": rows, "checkpoint": name, "device": loaded.device,
            "seconds": round(time.monotonic() - started, 4)}


def cache() -> ModelCache:
    global _cache
    if _cache is None:
        _cache = ModelCache(get_settings().inference_cache_size)
    return _cache


def locate(job_id: int, name: str) -> tuple[dict[str, Any], Path]:
    """The job's spec and the checkpoint's directory, which must lie in the job's own folder."""
    with db.session_scope() as session:
        job = session.get(Job, job_id)
        path = session.scalar(select(Checkpoint.path).where(
            Checkpoint.job_id == job_id, Checkpoint.name == name))
        spec = dict(job.spec) if job is not None else None
    if spec is None or path is None:
        raise CheckpointGone(f"job {job_id} has no checkpoint named {name!r}")
    settings = get_settings()
    directory = (settings.data_dir / path).resolve()
    if not directory.is_relative_to(settings.job_dir(job_id).resolve()) \
            or not directory.is_dir():
        raise CheckpointGone(f"checkpoint {name!r} of job {job_id} is no longer on disk")
    return spec, directory


# ---------------------------------------------------------------- loading


def load(task: str, directory: Path) -> Loaded:
    """The checkpoint's model and tokenizer (fp32, as saved), on the device chosen for it."""
    disable_progress_bars()  # the recipes' map(desc="tokenize") bars, once per request
    device = choose_device(directory, get_settings().inference_device)
    where = str(directory)
    model: Any
    if task == "causal-lm-sft":
        tokenizer = load_tokenizer(where)
        peft = (directory / "adapter_config.json").is_file()
        auto = AutoPeftModelForCausalLM if peft else AutoModelForCausalLM
        model = auto.from_pretrained(where, dtype=torch.float32)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    elif task == "token-classification":
        tokenizer = ner.RECIPE.tokenizer(where)
        model = AutoModelForTokenClassification.from_pretrained(where, dtype=torch.float32)
    else:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForSequenceClassification.from_pretrained(where, dtype=torch.float32)
    model.to(device).eval()
    id2label = getattr(model.config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)] if task != "text-regression" else None
    return Loaded(model=model, tokenizer=tokenizer, device=device, label_names=names)


# ---------------------------------------------------------------- running


def predict(loaded: Loaded, spec: dict[str, Any], inputs: list[dict[str, Any]],
            new_tokens: int) -> list[dict[str, Any]]:
    task = tryit_inputs.task_of(spec)
    if task == "causal-lm-sft":
        return generations(loaded, spec, inputs, new_tokens)
    recipe = recipe_for(task)
    raw = Dataset.from_list(inputs)
    data = TaskData(train=raw, eval=None, predict_raw=raw, predict_split=None,
                    predict_labeled=False, tokenizer=loaded.tokenizer,
                    label_names=loaded.label_names)  # train: unused here
    features = recipe.features(spec, data, raw)
    logits = forward(loaded.model, recipe.collator(spec, data), features, batch_size(spec))
    return recipe.rows(spec, data, raw, logits)


def generations(loaded: Loaded, spec: dict[str, Any], inputs: list[dict[str, Any]],
                new_tokens: int) -> list[dict[str, Any]]:
    """Greedy continuations, as the recipe's predict makes them (same prompt text, same
    batches and left padding)."""
    chat = tryit_inputs.is_chat(spec)
    field = tryit_inputs.fields_of(spec)[0]
    prompts = [prompt_text(loaded.tokenizer, i[field], chat) for i in inputs]
    generated = generate(loaded.model, loaded.tokenizer, prompts, new_tokens,
                         batch_size(spec), add_special_tokens=not chat)
    return generation_rows(prompts, generated, [None] * len(prompts), None)


@torch.no_grad()
def forward(model: Any, collator: Any, features: Dataset, size: int) -> list[np.ndarray]:
    """Each example's logits (float64), batch by batch through the task's collator, the
    columns the model takes only (as Trainer's remove_unused_columns)."""
    accepted = set(inspect.signature(model.forward).parameters)
    columns = [c for c in features.column_names if c in accepted and c != "labels"]
    rows = features.select_columns(columns).to_list()
    out: list[np.ndarray] = []
    for start in range(0, len(rows), size):
        batch = collator(rows[start:start + size]).to(model.device)
        logits = model(**batch).logits.float().cpu().numpy().astype(np.float64)
        out.extend(logits)
    return out


def batch_size(spec: dict[str, Any]) -> int:
    asked = (spec.get("training") or {}).get("per_device_eval_batch_size") or DEFAULT_BATCH
    return max(1, min(int(asked), MAX_BATCH))
