"""The new-job form: flat form values <-> JobSpec, and validation errors by form field.

Form values are kept as the strings the user typed, so an invalid form re-renders unchanged.
"""
from __future__ import annotations

from typing import Any, get_args

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import FormData

from app.jobs.schemas import SCHEDULERS, JobSpec, MetricName, TrainingSpec
from app.jobs.training_args import RESERVED_TRAINING_KEYS, TRAINING_ARGUMENT_NAMES

PLAIN_TRAINING = (
    "num_train_epochs", "learning_rate", "per_device_train_batch_size",
    "per_device_eval_batch_size", "gradient_accumulation_steps", "lr_scheduler_type",
    "warmup_steps", "weight_decay", "eval_strategy", "save_strategy", "logging_steps", "seed",
    "train_sampling_strategy",
)
PRECISION_KEYS = ("fp16", "bf16")
OPTIONAL = ("name", "dataset.config", "dataset.eval_split", "dataset.test_split")
TEXT_FIELDS = ("dataset.text_fields.0", "dataset.text_fields.1")
METRIC_CHOICES = get_args(MetricName)
STRATEGIES = ("no", "steps", "epoch")
# group_by_length batches rows of similar length: on MRPC a third fewer tokens than random
# batches with the same dynamic padding (benchmarks P2).
SAMPLING = get_args(TrainingSpec.model_fields["train_sampling_strategy"].annotation)
CHOICES = {"schedulers": SCHEDULERS, "strategies": STRATEGIES, "metrics": METRIC_CHOICES,
           "precisions": ("fp32", "fp16", "bf16"), "sources": ("hub", "local", "upload"),
           "sampling": SAMPLING}
REQUIRED = "This field is required."

Values = dict[str, Any]


class FormInvalid(Exception):
    """Errors keyed by form field name; `__all__` holds those that fit no field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors


# ---------------------------------------------------------------- spec -> form values

def values_for_spec(spec: dict[str, Any]) -> Values:
    """Form values that submit back to `spec` (used by Clone and the presets)."""
    data = spec["dataset"]
    texts = [*(data.get("text_fields") or []), "", ""]
    training = spec.get("training") or {}
    values = {
        "name": spec.get("name") or "", "model": spec.get("model", ""),
        "dataset.source": data.get("source", "hub"),
        "dataset.path": data["path"] if data.get("source") != "upload" else "",
        "dataset.upload": data["path"] if data.get("source") == "upload" else "",
        "dataset.config": data.get("config") or "",
        "dataset.train_split": data.get("train_split") or "train",
        "dataset.eval_split": data.get("eval_split") or "",
        "dataset.test_split": data.get("test_split") or "",
        "dataset.text_fields.0": texts[0], "dataset.text_fields.1": texts[1],
        "dataset.label_field": data.get("label_field") or "label",
        "max_length": str(spec.get("max_length", 128)),
        "metrics": list(spec.get("metrics") or ["accuracy", "f1"]),
        "precision": "bf16" if training.get("bf16") else "fp16" if training.get("fp16") else "fp32",
        "advanced": advanced_text(training),
    }
    merged = {**TrainingSpec().model_dump(), **training}
    values.update({f"training.{key}": _text(merged[key]) for key in PLAIN_TRAINING})
    return values


def advanced_text(training: dict[str, Any]) -> str:
    """The keys without a field of their own that differ from the defaults, as YAML."""
    defaults = TrainingSpec().model_dump()
    skip = set(PLAIN_TRAINING) | set(PRECISION_KEYS)
    extra = {k: v for k, v in training.items()
             if k not in skip and (k not in defaults or defaults[k] != v)}
    return yaml.safe_dump(extra, sort_keys=True) if extra else ""


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


BLANK_SPEC = {"model": "", "dataset": {"source": "hub", "path": "", "text_fields": ["text"],
                                       "eval_split": "validation"}}
PRESETS = {
    "mrpc": {
        "model": "bert-base-uncased",
        "dataset": {"source": "hub", "path": "glue", "config": "mrpc", "train_split": "train",
                    "eval_split": "validation", "text_fields": ["sentence1", "sentence2"],
                    "label_field": "label"},
        "max_length": 128,
        "metrics": ["accuracy", "f1"],
        "training": {"num_train_epochs": 3, "learning_rate": 2e-5,
                     "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                     "eval_strategy": "epoch", "save_strategy": "epoch", "seed": 42},
    },
}


def blank_values() -> Values:
    return values_for_spec(BLANK_SPEC)


# ---------------------------------------------------------------- form values -> spec

def values_from(form: FormData) -> Values:
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
    training = {key: get(f"training.{key}") for key in PLAIN_TRAINING}
    precision = values.get("precision", "fp32")
    training.update(fp16=precision == "fp16", bf16=precision == "bf16", **advanced)
    return {
        "name": get("name"), "model": get("model"), "max_length": get("max_length"),
        "metrics": values.get("metrics") or [],
        "dataset": {
            "source": source,
            "path": values.get("dataset.upload" if source == "upload" else "dataset.path", ""),
            "config": get("dataset.config"), "train_split": get("dataset.train_split"),
            "eval_split": get("dataset.eval_split"), "test_split": get("dataset.test_split"),
            "text_fields": [t for t in (values.get(k, "") for k in TEXT_FIELDS) if t],
            "label_field": get("dataset.label_field"),
        },
        "training": training,
    }


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


def message_for(error: ErrorDetails, field: str) -> str:
    if error.get("input") in ("", None) and field != "advanced":
        return REQUIRED
    if field == "dataset.text_fields" and error["type"] == "too_short":
        return "Pick at least one text column."
    message = error["msg"].removeprefix("Value error, ")
    if field == "advanced" and len(error["loc"]) > 1:
        message = f"{error['loc'][-1]}: {message}"
    return message
