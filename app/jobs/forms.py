"""The new-job form: flat form values <-> JobSpec, and validation errors by form field.

Form values are kept as the strings the user typed, so an invalid form re-renders unchanged.
"""
from __future__ import annotations

from typing import Any, get_args

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import ImmutableMultiDict

from app.jobs.early_stopping import STOPPING_KEYS, EarlyStoppingSpec
from app.jobs.presets import PRESET_TITLES, PRESETS
from app.jobs.schemas import (
    DEFAULT_TASK,
    FAST_TRAINING,
    SCHEDULERS,
    TASKS,
    CausalLMSFTSpec,
    JobSpec,
    LoraSpec,
    MultiLabelSpec,
    RegressionSpec,
    SpecBase,
    TextClassificationSpec,
    TokenClassificationSpec,
    TrainingSpec,
)
from app.jobs.training_args import RESERVED_TRAINING_KEYS, TRAINING_ARGUMENT_NAMES

PLAIN_TRAINING = (
    "num_train_epochs", "learning_rate", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "eval_strategy", "save_strategy", "logging_steps", "seed",
    "train_sampling_strategy",
)
PRECISION_KEYS = ("fp16", "bf16")
OPTIONAL = ("name", "dataset.config", "dataset.eval_split", "dataset.test_split",
            "resources.gpus", "resources.gpu_memory_gb")
TEXT_FIELDS = ("dataset.text_fields.0", "dataset.text_fields.1")
TASK_SPECS: dict[str, type[SpecBase]] = {
    "text-classification": TextClassificationSpec,
    "multi-label-classification": MultiLabelSpec,
    "text-regression": RegressionSpec,
    "token-classification": TokenClassificationSpec,
    "causal-lm-sft": CausalLMSFTSpec,
}
assert set(TASK_SPECS) == set(TASKS), "every task needs its form fields"
# Each task's metric names, and those checked on a blank form, from its spec class.
METRIC_CHOICES = {task: get_args(get_args(cls.model_fields["metrics"].annotation)[0])
                  for task, cls in TASK_SPECS.items()}
DEFAULT_METRICS = {task: list(cls.model_fields["metrics"].default_factory())  # type: ignore[call-arg,misc]
                   for task, cls in TASK_SPECS.items()}
TASK_LABELS = {"text-classification": "Text classification (one label)",
               "multi-label-classification": "Multi-label classification",
               "text-regression": "Text regression (a number)",
               "token-classification": "Token classification (NER)",
               "causal-lm-sft": "Causal LM SFT (LoRA)"}
STRATEGIES = ("no", "steps", "epoch")
# random is transformers' default (the reference recipe); group_by_length, which the Fast
# preset picks, pads a third fewer tokens on MRPC (benchmarks P2) and changes the numbers.
SAMPLING = get_args(TrainingSpec.model_fields["train_sampling_strategy"].annotation)
CHOICES = {"schedulers": SCHEDULERS, "strategies": STRATEGIES, "metrics": METRIC_CHOICES,
           "precisions": ("fp32", "fp16", "bf16"), "sources": ("hub", "local", "upload"),
           "sampling": SAMPLING, "tasks": TASK_LABELS, "layouts": ("prompt", "messages")}
REQUIRED = "This field is required."

Values = dict[str, Any]
__all__ = ["PRESETS", "PRESET_TITLES"]  # the presets fill this form (app/jobs/presets.py)


class FormInvalid(Exception):
    """Errors keyed by form field name; `__all__` holds those that fit no field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


# ---------------------------------------------------------------- spec -> form values

def values_for_spec(spec: dict[str, Any]) -> Values:
    """Form values that submit back to `spec` (used by Clone and the presets)."""
    task = spec.get("task") or DEFAULT_TASK
    data = spec["dataset"]
    training = spec.get("training") or {}
    values = {
        "task": task, "name": spec.get("name") or "", "model": spec.get("model", ""),
        "dataset.source": data.get("source", "hub"),
        "dataset.path": data["path"] if data.get("source") != "upload" else "",
        "dataset.upload": data["path"] if data.get("source") == "upload" else "",
        "dataset.config": data.get("config") or "",
        "dataset.train_split": data.get("train_split") or "train",
        "dataset.eval_split": data.get("eval_split") or "",
        "dataset.test_split": data.get("test_split") or "",
        "max_length": str(spec.get("max_length", 128)),
        "metrics": list(spec.get("metrics") or DEFAULT_METRICS.get(task, [])),
        "precision": ("bf16" if training.get("bf16") is True
                      else "fp16" if training.get("fp16") else "fp32"),
        "fast": "on" if spec.get("preset") == "fast" else "",
        "advanced": advanced_text(training, fast=spec.get("preset") == "fast",
                                  stopping=bool(spec.get("early_stopping"))),
        **_stopping_values(spec.get("early_stopping")),
        **{f"resources.{k}": _text(v) if v is not None else ""
           for k, v in (spec.get("resources") or {}).items()},
    }
    values.update(TASK_VALUES.get(task, _text_values)(spec))
    merged = {**TrainingSpec().model_dump(), **training}
    values.update({f"training.{key}": _text(merged[key]) for key in PLAIN_TRAINING})
    return values


def _text_values(spec: dict[str, Any]) -> Values:
    data = spec["dataset"]
    texts = [*(data.get("text_fields") or []), "", ""]
    return {"dataset.text_fields.0": texts[0], "dataset.text_fields.1": texts[1],
            "dataset.label_field": data.get("label_field") or "label"}


def _multi_label_values(spec: dict[str, Any]) -> Values:
    data = spec["dataset"]
    return {**_text_values(spec), "dataset.label_field": data.get("label_field") or "labels",
            "dataset.label_separator": data.get("label_separator") or ",",
            "threshold": _text(spec.get("threshold", 0.5))}


def _token_values(spec: dict[str, Any]) -> Values:
    data = spec["dataset"]
    return {"dataset.tokens_field": data.get("tokens_field") or "tokens",
            "dataset.tags_field": data.get("tags_field") or "ner_tags"}


def _sft_values(spec: dict[str, Any]) -> Values:
    data = spec["dataset"]
    lora = spec.get("lora", {}) if "lora" in spec else {}
    full = lora is None
    lora = {**LoraSpec().model_dump(), **(lora or {})}
    modules = lora["target_modules"]
    generation = spec.get("generation") or {}
    return {
        "dataset.layout": "messages" if data.get("messages_field") else "prompt",
        "dataset.prompt_field": data.get("prompt_field") or "prompt",
        "dataset.completion_field": data.get("completion_field") or "completion",
        "dataset.messages_field": data.get("messages_field") or "messages",
        "lora.full": "on" if full else "",
        "lora.r": _text(lora["r"]), "lora.alpha": _text(lora["alpha"]),
        "lora.dropout": _text(lora["dropout"]),
        "lora.target_modules": modules if isinstance(modules, str) else ", ".join(modules),
        "generation.max_new_tokens": _text(generation.get("max_new_tokens", 64)),
    }


TASK_VALUES = {"text-classification": _text_values, "text-regression": _text_values,
               "multi-label-classification": _multi_label_values,
               "token-classification": _token_values, "causal-lm-sft": _sft_values}


def values_for_task(values: Values, task: str) -> Values:
    """The form after the task picker changed: what was typed stays, the new task's own fields
    get their defaults, and the metrics checked are those the new task has (else its defaults)."""
    task = task if task in TASKS else DEFAULT_TASK
    blank = values_for_spec({**BLANK_SPEC, "task": task})
    merged = {**blank, **{k: v for k, v in values.items() if k != "metrics"}, "task": task}
    kept = [m for m in values.get("metrics") or [] if m in METRIC_CHOICES[task]]
    merged["metrics"] = kept or DEFAULT_METRICS[task]
    return merged


def _stopping_values(stopping: dict[str, Any] | None) -> Values:
    stopping = {**EarlyStoppingSpec().model_dump(), **(stopping or {})} if stopping else None
    defaults = stopping or EarlyStoppingSpec().model_dump()
    return {"early_stopping.on": "on" if stopping else "",
            "early_stopping.patience": _text(defaults["patience"]),
            "early_stopping.threshold": _text(defaults["threshold"]),
            "early_stopping.metric": defaults["metric"] or ""}


def advanced_text(training: dict[str, Any], fast: bool = False, stopping: bool = False) -> str:
    """The keys without a field of their own that differ from the defaults (the Fast preset's
    where it is on; those early stopping sets where it is on), as YAML."""
    defaults = {**TrainingSpec().model_dump(), **(FAST_TRAINING if fast else {})}
    skip = set(PLAIN_TRAINING) | set(PRECISION_KEYS) | (STOPPING_KEYS if stopping else set())
    extra = {k: v for k, v in training.items()
             if k not in skip and (k not in defaults or defaults[k] != v)}
    return yaml.safe_dump(extra, sort_keys=True) if extra else ""


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


BLANK_SPEC: dict[str, Any] = {
    "model": "", "dataset": {"source": "hub", "path": "", "text_fields": ["text"],
                             "eval_split": "validation"}}
def blank_values() -> Values:
    return values_for_spec(BLANK_SPEC)


# ---------------------------------------------------------------- form values -> spec

def values_from(form: ImmutableMultiDict[str, Any]) -> Values:
    values: Values = {key: str(value).strip() for key, value in form.items()
                      if isinstance(value, str) and key != "metrics"}
    values["metrics"] = [m for m in form.getlist("metrics") if isinstance(m, str)]
    return values


def build_spec(values: Values) -> JobSpec:
    """The validated spec, or FormInvalid with every problem at once."""
    errors: dict[str, str] = {}
    advanced = parse_advanced(values.get("advanced", ""), errors)
    try:
        spec = JobSpec.model_validate(spec_data(values, advanced))
    except ValidationError as exc:
        errors = {**errors_by_field(exc, values), **errors}
    if errors:
        raise FormInvalid(errors)
    return spec


def spec_data(values: Values, advanced: dict[str, Any]) -> dict[str, Any]:
    def get(key: str) -> str | None:
        value = values.get(key, "")
        return None if value == "" and key in OPTIONAL else value

    source = values.get("dataset.source") or "hub"
    task = values.get("task") or DEFAULT_TASK
    training = {key: get(f"training.{key}") for key in PLAIN_TRAINING}
    precision = values.get("precision", "fp32")
    training.update(fp16=precision == "fp16", bf16=precision == "bf16", **advanced)
    fast = bool(values.get("fast"))
    if fast:  # fields left at the reference default take the preset's value
        reference = TrainingSpec().model_dump()
        training = {k: v for k, v in training.items()
                    if not (k in FAST_TRAINING and k not in advanced
                            and _same(v, reference.get(k)))}
    data = {
        "source": source,
        "path": values.get("dataset.upload" if source == "upload" else "dataset.path", ""),
        "config": get("dataset.config"), "train_split": get("dataset.train_split"),
        "eval_split": get("dataset.eval_split"), "test_split": get("dataset.test_split"),
    }
    spec = {"task": task, "preset": "fast" if fast else None, "name": get("name"),
            "model": get("model"),
            "max_length": get("max_length"), "metrics": values.get("metrics") or [],
            "dataset": data, "training": training,
            "resources": {k: get(f"resources.{k}") for k in ("gpus", "gpu_memory_gb")}}
    TASK_SPEC_DATA.get(task, _text_spec)(values, spec)
    if values.get("early_stopping.on"):
        spec["early_stopping"] = {
            "patience": values.get("early_stopping.patience", ""),
            "threshold": values.get("early_stopping.threshold", ""),
            "metric": values.get("early_stopping.metric") or None}
    return spec


def _text_spec(values: Values, spec: dict[str, Any]) -> None:
    spec["dataset"].update(
        text_fields=[t for t in (values.get(k, "") for k in TEXT_FIELDS) if t],
        label_field=values.get("dataset.label_field", ""))


def _multi_label_spec(values: Values, spec: dict[str, Any]) -> None:
    _text_spec(values, spec)
    spec["dataset"]["label_separator"] = values.get("dataset.label_separator", "")
    spec["threshold"] = values.get("threshold", "")


def _token_spec(values: Values, spec: dict[str, Any]) -> None:
    spec["dataset"].update(tokens_field=values.get("dataset.tokens_field", ""),
                           tags_field=values.get("dataset.tags_field", ""))


def _sft_spec(values: Values, spec: dict[str, Any]) -> None:
    if values.get("dataset.layout") == "messages":
        spec["dataset"]["messages_field"] = values.get("dataset.messages_field", "")
    else:
        spec["dataset"].update(prompt_field=values.get("dataset.prompt_field", ""),
                               completion_field=values.get("dataset.completion_field", ""))
    spec["lora"] = None if values.get("lora.full") else {
        "r": values.get("lora.r", ""), "alpha": values.get("lora.alpha", ""),
        "dropout": values.get("lora.dropout", ""),
        "target_modules": target_modules(values.get("lora.target_modules", ""))}
    spec["generation"] = {"max_new_tokens": values.get("generation.max_new_tokens", "")}


def target_modules(text: str) -> str | list[str]:
    """`all-linear` (or one name) as typed; several names, comma-separated, as a list."""
    names = [name.strip() for name in text.split(",")]
    return names if len(names) > 1 else text.strip()


TASK_SPEC_DATA = {"text-classification": _text_spec, "text-regression": _text_spec,
                  "multi-label-classification": _multi_label_spec,
                  "token-classification": _token_spec, "causal-lm-sft": _sft_spec}


def _same(value: Any, default: Any) -> bool:
    return value == default or (isinstance(value, str) and value == _text(default))


def parse_advanced(text: str, errors: dict[str, str]) -> dict[str, Any]:
    """`key: value` lines (YAML) or a JSON object of other TrainingArguments keys."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        errors["advanced"] = f"Not valid YAML: {exc}".splitlines()[0]
        return {}
    if not isinstance(data, dict):
        errors["advanced"] = "Write one `key: value` per line (or a JSON object)."
        return {}
    taken = sorted(set(data) & (set(PLAIN_TRAINING) | set(PRECISION_KEYS)))
    if taken:
        errors["advanced"] = f"Set {', '.join(taken)} in its own field above."
        return {}
    unknown = sorted(str(k) for k in data if k not in TRAINING_ARGUMENT_NAMES
                     or k in RESERVED_TRAINING_KEYS)
    if unknown:
        errors["advanced"] = f"Not a TrainingArguments key you can set: {', '.join(unknown)}."
        return {}
    return {str(key): value for key, value in data.items()}


def errors_by_field(exc: ValidationError, values: Values) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors():
        field = field_for(error["loc"], error["msg"], values)
        errors.setdefault(field, message_for(error, field))
    return errors


def field_for(loc: tuple[Any, ...] | list[Any], message: str, values: Values) -> str:
    """The form field that shows an error at a spec location."""
    parts = [str(p) for p in loc]
    if parts == ["dataset"]:  # a check across the task's columns
        return DATASET_CHECK_FIELD.get(_layout(values), "__all__")
    if parts[:2] == ["dataset", "text_fields"]:
        return "dataset.text_fields"
    if parts[0] == "metrics":
        return "metrics"
    if parts == ["dataset", "path"] and values.get("dataset.source") == "upload":
        return "dataset.upload"
    if parts[0] == "training":
        if len(parts) == 1:
            return "precision" if "fp16" in message else "advanced"
        if parts[1] in PRECISION_KEYS:
            return "precision"
        if parts[1] not in PLAIN_TRAINING:
            return "advanced"
    return ".".join(parts)


# Where an error about the dataset's columns together shows (e.g. prompt == completion).
DATASET_CHECK_FIELD = {"token-classification": "dataset.tags_field",
                       "causal-lm-sft/prompt": "dataset.completion_field",
                       "causal-lm-sft/messages": "dataset.messages_field"}


def _layout(values: Values) -> str:
    task = values.get("task") or DEFAULT_TASK
    return f"{task}/{values.get('dataset.layout') or 'prompt'}" if task == "causal-lm-sft" else task


def message_for(error: ErrorDetails, field: str) -> str:
    if error.get("input") in ("", None) and field != "advanced":
        return REQUIRED
    if field == "dataset.text_fields" and error["type"] == "too_short":
        return "Pick at least one text column."
    message = error["msg"].removeprefix("Value error, ")
    if field == "advanced" and len(error["loc"]) > 1:
        message = f"{error['loc'][-1]}: {message}"
    return message
