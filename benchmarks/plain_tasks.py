"""The four task recipes as plain transformers / TRL scripts: no tunedeck, no database, no callback.

Benchmark P12 (benchmarks/tasks.py) runs each beside a tunedeck job of the same spec and seed.
Each script is what a practitioner writes from the transformers examples: load_dataset("json")
-> encode the labels -> tokenize (truncation; padding left to the collator) -> the task's
collator -> from_pretrained with the task's head -> TrainingArguments -> Trainer.train ->
Trainer.evaluate. As in worker/training.py, set_seed(seed) runs right before the model is built,
so the new head (or the LoRA matrices) start from the same weights, and label ids follow the
same order as tunedeck's (sorted label names; O first, then tags by entity type, for NER), so
both arms train the same model and must end with the same eval loss.

    multi_label(...)   BCE over a multi-hot float vector, DataCollatorWithPadding
    regression(...)    num_labels=1, MSE, DataCollatorWithPadding
    token_tags(...)    a tag on each word's first sub-token, DataCollatorForTokenClassification
    sft(...)           TRL SFTTrainer on prompt/completion rows, LoRA through peft
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from datasets import DatasetDict, Sequence, Value, load_dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

IGNORE = -100


def train_and_evaluate(make_model: Callable[[], Any], encoded: DatasetDict, collator: Any,
                       tokenizer: Any, args: TrainingArguments) -> dict[str, float]:
    """Seed, build the model, Trainer.train, Trainer.evaluate; Trainer's numbers."""
    set_seed(args.seed)
    trainer = Trainer(model=make_model(), args=args, train_dataset=encoded["train"],
                      eval_dataset=encoded["validation"], data_collator=collator,
                      processing_class=tokenizer)
    return numbers({**trainer.train().metrics, **trainer.evaluate()})


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def arguments(training: dict[str, Any], output_dir: str) -> TrainingArguments:
    return TrainingArguments(output_dir=output_dir, report_to="none", disable_tqdm=True,
                             **training)


def tokenized(raw: DatasetDict, tokenizer: Any, max_length: int) -> DatasetDict:
    return raw.map(lambda batch: tokenizer(batch["text"], truncation=True,
                                           max_length=max_length),
                   batched=True, remove_columns=["text"])


def multi_label(model: str, files: dict[str, str], training: dict[str, Any], output_dir: str,
                max_length: int) -> dict[str, float]:
    """Rows {"text", "labels": [names]}; one sigmoid per label name."""
    raw = load_dataset("json", data_files=files)
    names = sorted({name for labels in raw["train"]["labels"] for name in labels})
    raw = raw.map(lambda batch: {"labels": [[1.0 if n in row else 0.0 for n in names]
                                            for row in batch["labels"]]}, batched=True)
    raw = raw.cast_column("labels", Sequence(Value("float32")))  # BCE takes float targets
    tokenizer = AutoTokenizer.from_pretrained(model)
    return train_and_evaluate(
        lambda: AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=len(names), problem_type="multi_label_classification"),
        tokenized(raw, tokenizer, max_length), DataCollatorWithPadding(tokenizer), tokenizer,
        arguments(training, output_dir))


def regression(model: str, files: dict[str, str], training: dict[str, Any], output_dir: str,
               max_length: int) -> dict[str, float]:
    """Rows {"text", "score": float}; a single output under MSE."""
    raw = load_dataset("json", data_files=files)
    raw = raw.rename_column("score", "labels").cast_column("labels", Value("float32"))
    tokenizer = AutoTokenizer.from_pretrained(model)
    return train_and_evaluate(
        lambda: AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=1, problem_type="regression"),
        tokenized(raw, tokenizer, max_length), DataCollatorWithPadding(tokenizer), tokenizer,
        arguments(training, output_dir))


def token_tags(model: str, files: dict[str, str], training: dict[str, Any], output_dir: str,
               max_length: int) -> dict[str, float]:
    """Rows {"tokens": [words], "ner_tags": [IOB2 tags]}, as transformers' run_ner."""
    raw = load_dataset("json", data_files=files)
    tags = {t for row in raw["train"]["ner_tags"] for t in row}
    names = sorted(tags, key=lambda t: (t != "O", t[2:], t))
    index = {name: i for i, name in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(model)

    def encode(batch: dict[str, list]) -> Any:
        out = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True,
                        max_length=max_length)
        out["labels"] = [first_subtokens(out.word_ids(i), [index[t] for t in row])
                         for i, row in enumerate(batch["ner_tags"])]
        return out

    encoded = raw.map(encode, batched=True, remove_columns=["tokens", "ner_tags"])
    return train_and_evaluate(
        lambda: AutoModelForTokenClassification.from_pretrained(model, num_labels=len(names)),
        encoded, DataCollatorForTokenClassification(tokenizer), tokenizer,
        arguments(training, output_dir))


def first_subtokens(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """Each word's tag on its first sub-token, -100 elsewhere."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORE if word is None or word == previous else tags[word])
        previous = word
    return labels


def sft(model: str, files: dict[str, str], training: dict[str, Any], output_dir: str,
        max_length: int, lora: dict[str, Any]) -> dict[str, float]:
    """Rows {"prompt", "completion"}: TRL's SFTTrainer, loss on the completion, a LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    raw = load_dataset("json", data_files=files)
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # TRL's SFTConfig turns gradient checkpointing on by default; a tunedeck spec leaves it
    # at transformers' default, off (training.gradient_checkpointing), so the two arms do the
    # same work only if this script says so (with TRL's default it trained 0.75x as fast).
    args = SFTConfig(output_dir=output_dir, report_to="none", disable_tqdm=True,
                     max_length=max_length, completion_only_loss=True, packing=False,
                     **{"gradient_checkpointing": False, **training})
    set_seed(args.seed)
    causal = AutoModelForCausalLM.from_pretrained(model)
    causal.config.pad_token_id = tokenizer.pad_token_id
    adapter = LoraConfig(task_type="CAUSAL_LM", r=lora["r"], lora_alpha=lora["alpha"],
                         lora_dropout=lora["dropout"], target_modules=lora["target_modules"])
    trainer = SFTTrainer(model=get_peft_model(causal, adapter), args=args,
                         train_dataset=raw["train"], eval_dataset=raw["validation"],
                         processing_class=tokenizer)
    return numbers({**trainer.train().metrics, **trainer.evaluate()})
