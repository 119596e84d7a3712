"""causal-lm-sft: supervised fine-tuning of a causal LM (LoRA through peft, or full) with TRL.

The data becomes TRL's prompt-completion layout: plain text (`prompt_field` + `completion_field`),
or chat (`messages_field`: every turn before the last assistant turn is the prompt, rendered
with the tokenizer's chat template). SFTTrainer tokenizes it and puts the loss on the
completion tokens only (labels are -100 on the prompt). Eval adds perplexity; the predict split
gets greedy generations, batched with left padding, compared with the reference after strip.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, TrainingArguments
from trl import SFTConfig, SFTTrainer

from worker import data as D
from worker.recipes.base import Recipe, TaskData

DEFAULT_LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
DEFAULT_MAX_NEW_TOKENS = 64
ROLES = {"system", "user", "assistant", "tool"}


class CausalLmSft(Recipe):
    task = "causal-lm-sft"

    def load(self, spec: dict, source: D.Source) -> TaskData:
        ds = spec["dataset"]
        tokenizer = load_tokenizer(spec["model"])
        chat = bool(ds.get("messages_field"))
        if chat and not tokenizer.chat_template:
            raise D.DataError(f"dataset.messages_field needs a chat template, and the tokenizer "
                              f"of {spec['model']!r} has none; use prompt_field and "
                              "completion_field instead")
        train = shape_split(D.load_split(source, ds["train_split"]), ds["train_split"], ds,
                            require_reference=True)
        evaluation = None
        if ds.get("eval_split"):
            evaluation = shape_split(D.load_split(source, ds["eval_split"]), ds["eval_split"],
                                     ds, require_reference=True)
        predict_raw, labeled = evaluation, evaluation is not None
        if ds.get("test_split"):
            predict_raw = shape_split(D.load_split(source, ds["test_split"]), ds["test_split"],
                                      ds, require_reference=False)
            labeled = any(c is not None for c in predict_raw["reference"])
        return TaskData(train=train.remove_columns("reference"),
                        eval=evaluation.remove_columns("reference") if evaluation else None,
                        predict_raw=predict_raw,
                        predict_split=ds.get("test_split") or ds.get("eval_split"),
                        predict_labeled=labeled, tokenizer=tokenizer,
                        extra={"chat": chat})

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        # fp32 master weights whatever the checkpoint stores (as the other tasks do); fp16/bf16
        # are AMP on top, through TrainingArguments.
        model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
        model.config.pad_token_id = data.tokenizer.pad_token_id
        model.generation_config.pad_token_id = data.tokenizer.pad_token_id
        lora = lora_options(spec)
        if lora is None:
            total = count(model.parameters())
            return model, [f"Full fine-tune: all {total:,} parameters train."]
        peft_model = get_peft_model(model, lora)
        trainable, total = peft_model.get_nb_trainable_parameters()
        notice = (f"LoRA r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout} on "
                  f"{describe_targets(spec)}: {trainable:,} of {total:,} parameters train "
                  f" ({100 * trainable / total:.2f}%).")
        return peft_model, [notice]  # type: ignore[return-value]  # a PeftModel wraps it

    def collator(self, spec: dict, data: TaskData) -> Callable | None:
        return None  # SFTTrainer's DataCollatorForLanguageModeling: pads, labels -100 on pads

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        return None  # eval loss only (perplexity is derived from it); no logits are gathered

    def trainer(self, *, model: PreTrainedModel, args: TrainingArguments, data: TaskData,
                spec: dict, collator: Callable | None, compute_metrics: Callable | None,
                callbacks: list) -> SFTTrainer:
        return PerplexitySFTTrainer(
            model=model, args=sft_config(args, spec), train_dataset=data.train,
            eval_dataset=data.eval, data_collator=collator, processing_class=data.tokenizer,
            compute_metrics=compute_metrics, callbacks=callbacks)

    def predict(self, trainer: Any, spec: dict,
                data: TaskData) -> tuple[list[dict[str, Any]], dict[str, float]]:
        raw = data.predict_raw
        if raw is None:
            return [], {}
        tokenizer = data.tokenizer
        prompts = [prompt_text(tokenizer, p, data.extra["chat"]) for p in raw["prompt"]]
        generated = generate(trainer.model, tokenizer, prompts, max_new_tokens(spec),
                             trainer.args.per_device_eval_batch_size,
                             add_special_tokens=not data.extra["chat"])
        rows = generation_rows(prompts, generated, raw["reference"], data.predict_split)
        return rows, exact_match_metrics(rows, spec, data)

    def save_final(self, trainer: Any, final_dir: Path) -> list[Path]:
        """`final` (the adapter, or the full model) and, for LoRA, `final-merged`.

        Merging folds the adapter into the base weights in place, so this runs last.
        """
        trainer.save_model(str(final_dir))
        model = trainer.model
        if not isinstance(model, PeftModel):
            return [final_dir]
        merged_dir = final_dir.with_name(final_dir.name + "-merged")
        merged = model.merge_and_unload()
        merged.save_pretrained(str(merged_dir))
        trainer.processing_class.save_pretrained(str(merged_dir))
        return [final_dir, merged_dir]


class PerplexitySFTTrainer(SFTTrainer):
    """SFTTrainer whose evaluations also report perplexity (exp of the loss).

    Added in evaluation_loop, before Trainer logs the metrics and calls on_evaluate, so the
    streaming callback sees `eval/perplexity` next to `eval/loss`.
    """

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # SFTTrainer logs its running count of *training* tokens with each evaluation too
        # (eval/num_tokens); train/num_tokens already carries it.
        self._metrics["eval"].pop("num_tokens", None)
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader: Any, description: str,
                        prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None,
                        metric_key_prefix: str = "eval") -> Any:
        output = super().evaluation_loop(dataloader, description, prediction_loss_only,
                                         ignore_keys, metric_key_prefix)
        metrics = output.metrics  # a dict Trainer goes on to log; None only in odd subclasses
        if metrics is not None and metrics.get(f"{metric_key_prefix}_loss") is not None:
            metrics[f"{metric_key_prefix}_perplexity"] = perplexity(
                metrics[f"{metric_key_prefix}_loss"])
        return output


def perplexity(loss: float) -> float:
    """exp(loss), capped where exp overflows a float (a diverged run)."""
    return math.exp(min(float(loss), 700.0))


def load_tokenizer(model: str) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token is None:
        # Padding positions are masked out of the loss and the attention, so any token will do;
        # EOS is the usual choice for decoder-only models that ship without a pad token.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---------------------------------------------------------------- data

def shape_split(split: Dataset, name: str, ds: dict, *, require_reference: bool) -> Dataset:
    """TRL's prompt-completion columns (plus `reference`, the completion text) for one split."""
    if ds.get("messages_field"):
        D.check_columns(split, name, [ds["messages_field"]])
        rows = [chat_row(value, name, i, require_reference)
                for i, value in enumerate(split[ds["messages_field"]])]
        return Dataset.from_list(rows)
    prompt_field = ds.get("prompt_field") or "prompt"  # the schema's defaults
    completion_field = ds.get("completion_field") or "completion"
    D.check_columns(split, name, [prompt_field] + ([completion_field] if require_reference
                                                   else []))
    completions = (split[completion_field] if completion_field in split.column_names
                   else [None] * len(split))
    rows = [plain_row(p, c, name, i, prompt_field, completion_field, require_reference)
            for i, (p, c) in enumerate(zip(split[prompt_field], completions, strict=True))]
    return Dataset.from_list(rows)


def plain_row(prompt: Any, completion: Any, split: str, i: int, prompt_field: str,
              completion_field: str, require_reference: bool) -> dict[str, Any]:
    if not isinstance(prompt, str) or not prompt:
        raise D.DataError(f"row {i} of the {split} split: {prompt_field!r} must be non-empty "
                          f"text, got {prompt!r}")
    if completion is None and not require_reference:
        return {"prompt": prompt, "completion": "", "reference": None}
    if not isinstance(completion, str) or not completion:
        raise D.DataError(f"row {i} of the {split} split: {completion_field!r} must be "
                          f"non-empty text, got {completion!r}")
    return {"prompt": prompt, "completion": completion, "reference": completion}


def chat_row(value: Any, split: str, i: int, require_reference: bool) -> dict[str, Any]:
    """Prompt turns, the last assistant turn as the completion (when the row ends with one)."""
    messages = check_messages(value, split, i)
    if messages[-1]["role"] == "assistant" and len(messages) > 1:
        last = messages[-1]
        return {"prompt": messages[:-1], "completion": [last], "reference": last["content"]}
    if require_reference:
        raise D.DataError(f"row {i} of the {split} split: the last message must be the "
                          "assistant's answer (the training target), after at least one "
                          f"other message; roles are {[m['role'] for m in messages]}")
    return {"prompt": messages, "completion": [], "reference": None}


def check_messages(value: Any, split: str, i: int) -> list[dict[str, str]]:
    where = f"row {i} of the {split} split"
    if isinstance(value, str):  # CSV/TSV cells hold the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise D.DataError(f"{where}: messages are not valid JSON ({exc})") from None
    if not isinstance(value, list) or not value:
        raise D.DataError(f"{where}: messages must be a non-empty list of {{role, content}}")
    messages = []
    for j, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                or message.get("role") not in ROLES:
            raise D.DataError(f"{where}, message {j}: expected {{role, content}} with role one "
                              f"of {sorted(ROLES)} and text content, got {message!r}")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


# ---------------------------------------------------------------- model and trainer

def lora_options(spec: dict) -> LoraConfig | None:
    """The spec's `lora` (DEFAULT_LORA when the key is absent; null: a full fine-tune)."""
    options = spec.get("lora", DEFAULT_LORA)
    if options is None:
        return None
    options = {**DEFAULT_LORA, **options}
    return LoraConfig(task_type="CAUSAL_LM", r=int(options["r"]),
                      lora_alpha=options["alpha"], lora_dropout=float(options["dropout"]),
                      target_modules=options["target_modules"])


def describe_targets(spec: dict) -> str:
    targets = {**DEFAULT_LORA, **(spec.get("lora") or {})}["target_modules"]
    return targets if isinstance(targets, str) else ", ".join(targets)


def count(parameters: Iterator[torch.nn.Parameter]) -> int:
    return sum(p.numel() for p in parameters)


def sft_config(args: TrainingArguments, spec: dict) -> SFTConfig:
    """The job's TrainingArguments as an SFTConfig, plus the SFT settings tunedeck fixes."""
    values = args.to_dict()
    values["hub_token"] = args.hub_token  # to_dict hides it (as TRL's own conversion does)
    values.update(
        max_length=spec.get("max_length", 128),
        completion_only_loss=True,       # labels are -100 on every prompt token
        assistant_only_loss=False,       # the chat prompt/completion split already does that
        packing=False,
        dataset_num_proc=None,
        shuffle_dataset=False,           # the sampler shuffles (train_sampling_strategy)
    )
    return SFTConfig(**values)


# ---------------------------------------------------------------- generation and metrics

def max_new_tokens(spec: dict) -> int:
    return int((spec.get("generation") or {}).get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))


def prompt_text(tokenizer: Any, prompt: Any, chat: bool) -> str:
    """The exact text the model continues: as SFTTrainer tokenized the prompt for training."""
    if not chat:
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate(model: Any, tokenizer: Any, prompts: list[str], new_tokens: int, batch_size: int,
             *, add_special_tokens: bool = True) -> list[str]:
    """Greedy continuations of `prompts`, in batches, left-padded; the new text only."""
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"  # so every row's continuation starts at the same column
    try:
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt",
                              padding=True, add_special_tokens=add_special_tokens)
            batch = batch.to(model.device)
            ids = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,
                                 num_beams=1, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            new = ids[:, batch["input_ids"].shape[1]:]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
        return out
    finally:
        tokenizer.padding_side = side
        model.train(was_training)


def generation_rows(prompts: list[str], generated: list[str], references: list[str | None],
                    split: str | None) -> list[dict[str, Any]]:
    """The prediction rows (also Try it's, whose references are None)."""
    rows = []
    for i, (prompt, text, reference) in enumerate(zip(prompts, generated, references,
                                                      strict=True)):
        correct = None if reference is None else text.strip() == reference.strip()
        rows.append({"split": split, "row": i, "prompt": prompt, "reference": reference,
                     "generated": text, "correct": correct})
    return rows


def exact_match_metrics(rows: list[dict[str, Any]], spec: dict,
                        data: TaskData) -> dict[str, float]:
    """test/exact_match over the rows with a reference (and eval/ when it is the eval split)."""
    scored = [r["correct"] for r in rows if r["correct"] is not None]
    if not scored:
        return {}
    value = sum(scored) / len(scored)
    metrics = {"test/exact_match": value}
    if data.predict_split == spec["dataset"].get("eval_split"):
        metrics["eval/exact_match"] = value
    return metrics


RECIPE = CausalLmSft()
