"""causal-lm-sft on a real model: LoRA on SmolLM2-135M-Instruct learns a held-out rewrite.

The task: rewrite "First Last" as "Last, First". The held-out rows use first and last names
that never occur in training, so exact match there is the rule learned, not names remembered.
The base model's zero-shot score is measured with the same greedy generation on the same rows.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.fixtures import write_jsonl
from tests.worker.recipes.test_causal_lm_sft import Recorder
from worker import data as D
from worker.recipes.causal_lm_sft import generate, prompt_text
from worker.training import train

FIRST = ["Ada", "Alan", "Grace", "Linus", "Marie", "Isaac", "Nikola", "Rosa", "Carl", "Emmy",
         "Niels", "Lise", "Paul", "Dorothy", "Enrico", "Barbara", "Katherine", "Srinivasa",
         "Chien", "Hedy", "Edwin", "Rachel", "Tim", "Margaret"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Curie", "Newton", "Tesla", "Parks",
        "Gauss", "Noether", "Bohr", "Meitner", "Dirac", "Hodgkin", "Fermi", "McClintock",
        "Johnson", "Ramanujan", "Wu", "Lamarr", "Hubble", "Carson", "Berners", "Hamilton"]
STEPS = int(os.environ.get("TUNEDECK_SFT_STEPS", "40"))


def rows(firsts: list[str], lasts: list[str], count: int, seed: int) -> list[dict]:
    pairs = [(f, last) for f in firsts for last in lasts]
    random.Random(seed).shuffle(pairs)
    return [{"messages": [
        {"role": "system", "content": "Rewrite the name as: Last, First"},
        {"role": "user", "content": f"{first} {last}"},
        {"role": "assistant", "content": f"{last}, {first}"}]} for first, last in pairs[:count]]


def zero_shot(model_dir: Path, test: list[dict]) -> tuple[float, list[str]]:
    """Exact match of the base model on the held-out rows, generated as the job does."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompts = [prompt_text(tokenizer, r["messages"][:-1], chat=True) for r in test]
    out = generate(model, tokenizer, prompts, 12, 16, add_special_tokens=False)
    score = sum(o.strip() == r["messages"][-1]["content"] for o, r in zip(out, test, strict=True))
    return score / len(test), out


@pytest.mark.slow
@pytest.mark.timeout(3600)  # CPU-heavy (a 135M model, 40 steps): room for a busy shared box
def test_lora_sft_on_smollm2_learns_a_held_out_rewrite(smollm2, tmp_path):
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    data = tmp_path / "names"
    write_jsonl(data / "train.jsonl", rows(FIRST[:16], LAST[:16], 256, seed=1))
    write_jsonl(data / "validation.jsonl", rows(FIRST[16:], LAST[16:], 16, seed=2))
    test = rows(FIRST[16:], LAST[16:], 48, seed=3)[16:]  # 32 rows, none in validation
    write_jsonl(data / "test.jsonl", test)
    spec = {"task": "causal-lm-sft", "model": str(smollm2), "max_length": 64,
            "dataset": {"source": "local", "path": str(data), "train_split": "train",
                        "eval_split": "validation", "test_split": "test",
                        "messages_field": "messages"},
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
            "generation": {"max_new_tokens": 12},
            "training": {"max_steps": STEPS, "learning_rate": 2e-3, "warmup_steps": 0.1,
                         "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16,
                         "logging_steps": 10, "eval_strategy": "steps",
                         "eval_steps": STEPS // 2, "save_strategy": "no", "seed": 7}}
    started = time.monotonic()
    base_score, base_out = zero_shot(smollm2, test)
    zero_shot_s = time.monotonic() - started
    reporter = Recorder()
    outcome = train(spec, D.local_source(data), tmp_path / "job", reporter)
    job_s = time.monotonic() - started - zero_shot_s
    tuned = outcome.final_metrics["test/exact_match"]
    losses = reporter.points["eval/loss"]
    print(f"\nSmolLM2-135M-Instruct LoRA r=8, {STEPS} steps x batch 8 on 256 train rows: "
          f"held-out exact match {tuned:.3f} vs zero-shot {base_score:.3f} (32 rows); "
          f"eval loss {losses}; job {job_s:.0f} s, zero-shot {zero_shot_s:.0f} s; "
          f"zero-shot e.g. {base_out[:2]!r}, tuned e.g. "
          f"{[r['generated'] for r in outcome.predictions[:2]]!r}")
    assert base_score <= 0.1
    assert tuned >= 0.8 and tuned >= base_score + 0.5

    # the merged model alone reproduces the job's stored generations
    final, merged = outcome.final_dirs
    assert (final / "adapter_model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    prompts = [r["prompt"] for r in outcome.predictions]
    again = generate(model, tokenizer, prompts, 12, 16, add_special_tokens=False)
    assert again == [r["generated"] for r in outcome.predictions]
