"""The job spec (DESIGN.md): one model per task, a union on `task`; the responses are in
app/jobs/outputs.py."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.jobs import early_stopping as stopping
from app.jobs.early_stopping import EarlyStoppingSpec
from app.jobs.training_args import (
    REFUSED_TRAINING_KEYS,
    RESERVED_TRAINING_KEYS,
    TRAINING_ARGUMENT_NAMES,
)

SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
    "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr",
    "cosine_warmup_with_min_lr", "warmup_stable_decay",
)
Strategy = Literal["no", "steps", "epoch"]
MetricName = Literal["accuracy", "f1", "precision", "recall", "matthews_correlation"]
DEFAULT_METRICS: tuple[MetricName, ...] = ("accuracy", "f1")
MultiLabelMetric = Literal["f1_micro", "f1_macro", "subset_accuracy", "per_label_f1"]
RegressionMetric = Literal["mse", "mae", "pearson", "spearman"]
TokenMetric = Literal["precision", "recall", "f1", "accuracy"]
GenerationMetric = Literal["perplexity", "exact_match"]
TASKS = ("text-classification", "multi-label-classification", "text-regression",
         "token-classification", "causal-lm-sft")
DEFAULT_TASK = "text-classification"


def _column(default: str | None = None) -> Any:
    return Field(default=default, min_length=1, max_length=200)


class DatasetBase(BaseModel):
    """Where the data is and which splits to use; each task adds its columns."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["hub", "upload", "local"] = "hub"
    path: str = Field(min_length=1, max_length=1000)
    config: str | None = Field(default=None, max_length=200)
    train_split: str = Field(default="train", min_length=1, max_length=100)
    eval_split: str | None = Field(default=None, max_length=100)
    test_split: str | None = Field(default=None, max_length=100)


class DatasetSpec(DatasetBase):
    """Text (or text pair) in, one label column (text-classification, text-regression)."""

    text_fields: list[str] = Field(min_length=1, max_length=2)
    label_field: str = _column("label")

    @field_validator("text_fields")
    @classmethod
    def _distinct_text_fields(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("text field names must not be empty")
        if len(set(value)) != len(value):
            raise ValueError("text fields must be two different columns")
        return value


class MultiLabelDatasetSpec(DatasetSpec):
    """label_field holds a list of label names, or (CSV/TSV) names joined by label_separator."""

    label_field: str = _column("labels")
    label_separator: str = Field(default=",", min_length=1, max_length=10)


class TokenDatasetSpec(DatasetBase):
    """A list of words and a list of IOB2 tags per row (the conll2003 layout by default)."""

    tokens_field: str = _column("tokens")
    tags_field: str = _column("ner_tags")

    @model_validator(mode="after")
    def _distinct(self) -> TokenDatasetSpec:
        if self.tokens_field == self.tags_field:
            raise ValueError("tokens_field and tags_field must be two different columns")
        return self


class GenerationDatasetSpec(DatasetBase):
    """prompt_field + completion_field (plain text), or messages_field (chat turns)."""

    prompt_field: str | None = _column()
    completion_field: str | None = _column()
    messages_field: str | None = _column()

    @model_validator(mode="after")
    def _one_layout(self) -> GenerationDatasetSpec:
        if self.messages_field is not None:
            if self.prompt_field is not None or self.completion_field is not None:
                raise ValueError("give messages_field, or prompt_field and completion_field, "
                                 "not both")
            return self
        self.prompt_field = self.prompt_field or "prompt"
        self.completion_field = self.completion_field or "completion"
        if self.prompt_field == self.completion_field:
            raise ValueError("prompt_field and completion_field must be two different columns")
        return self


class TrainingSpec(BaseModel):
    """The common TrainingArguments, typed; any other TrainingArguments key passes through."""

    model_config = ConfigDict(extra="allow")

    num_train_epochs: float = Field(default=3, gt=0, le=1000)
    learning_rate: float = Field(default=2e-5, gt=0, le=1)
    per_device_train_batch_size: int = Field(default=8, ge=1, le=4096)
    per_device_eval_batch_size: int = Field(default=8, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    lr_scheduler_type: Literal[SCHEDULERS] = "linear"  # type: ignore[valid-type]
    warmup_steps: float = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    eval_strategy: Strategy = "epoch"
    save_strategy: Strategy = "epoch"
    logging_steps: float = Field(default=10, gt=0)
    fp16: bool = False
    # "auto" (the Fast preset): the worker picks bf16 on a GPU with native bf16, fp16 on
    # another CUDA GPU, fp32 on CPU/MPS (worker/gpu.py resolve_auto).
    bf16: bool | Literal["auto"] = False
    # "auto" (the Fast preset): TF32 matmuls on CUDA compute capability 8.0+ only.
    tf32: bool | Literal["auto"] | None = None
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    max_steps: int = Field(default=-1, ge=-1)
    # transformers' own default, so an unchanged spec trains as the plain script does; the
    # Fast preset sets group_by_length (fewer padded tokens, benchmarks P2, other numbers).
    train_sampling_strategy: Literal["random", "sequential", "group_by_length", "batch_rebalance"] = (
        "random"
    )

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("warmup_steps is an int (steps) or a float in [0, 1) (ratio)")
        return int(value) if value >= 1 else value

    @model_validator(mode="after")
    def _known_extras(self) -> TrainingSpec:
        for key, value in (self.model_extra or {}).items():
            if key in REFUSED_TRAINING_KEYS:
                raise ValueError(f"training.{key} is refused: {REFUSED_TRAINING_KEYS[key]}")
            if key == "accelerator_config" and not isinstance(value, dict | None):
                raise ValueError("training.accelerator_config must be a mapping (a file path "
                                 "would be read on the worker)")
            if key in RESERVED_TRAINING_KEYS:
                raise ValueError(f"training.{key} is set by tunedeck and cannot be given")
            if key not in TRAINING_ARGUMENT_NAMES:
                raise ValueError(f"training.{key} is not a TrainingArguments field")
        if self.fp16 and self.bf16 is True:
            raise ValueError("fp16 and bf16 cannot both be true")
        return self


class CollatorSpec(BaseModel):
    """Options of the padding collator; applied by the worker only where CUDA is present."""

    model_config = ConfigDict(extra="forbid")

    # Tensor cores work on multiples of 8; on CPU it only adds padded tokens.
    pad_to_multiple_of: int | None = Field(default=None, ge=1, le=1024)


class ResourcesSpec(BaseModel):
    """What the job needs from a worker (docs/spec.md, Resources). `gpus` null: one GPU where
    the worker has any, else the CPU; 0: the CPU; N > 1: one process per GPU (torchrun, DDP)."""

    model_config = ConfigDict(extra="forbid")

    gpus: int | None = Field(default=None, ge=0, le=64)
    # What one process needs on its GPU; with TUNEDECK_GPU_SHARING=on jobs whose needs fit
    # share a GPU (worker/scheduler.py).
    gpu_memory_gb: float | None = Field(default=None, gt=0, le=4096)

    @property
    def processes(self) -> int:
        """Training processes: one per GPU asked for, at least one."""
        return max(1, self.gpus or 0)


# What `preset: fast` sets, key by key, where the spec does not set the key itself
# (docs/spec.md lists each part with its measured effect and trade-off).
FAST_TRAINING: dict[str, Any] = {
    "train_sampling_strategy": "group_by_length",
    "bf16": "auto",
    "tf32": "auto",
    "dataloader_num_workers": 2,
    "dataloader_pin_memory": True,
}
FAST_COLLATOR: dict[str, Any] = {"pad_to_multiple_of": 8}
PRECISION_KEYS = ("fp16", "bf16")


def expand_preset(data: Any) -> Any:
    """The spec with `preset: fast` written out as explicit keys; keys already given win."""
    if not isinstance(data, dict) or data.get("preset") != "fast":
        return data
    training = data.get("training")
    training = dict(training) if isinstance(training, dict) else {}
    for key, value in FAST_TRAINING.items():
        # A precision the user chose (fp16 or bf16 true) rules out the automatic one.
        if key in PRECISION_KEYS and any(training.get(k) for k in PRECISION_KEYS):
            continue
        training.setdefault(key, value)
    collator = data.get("collator")
    collator = dict(collator) if isinstance(collator, dict) else {}
    for key, value in FAST_COLLATOR.items():
        collator.setdefault(key, value)
    return {**data, "training": training, "collator": collator}


class SpecBase(BaseModel):
    """What every task's spec has: the model, the data, TrainingArguments."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    model: str = Field(min_length=1, max_length=1000)
    dataset: DatasetBase  # each task narrows it
    max_length: int = Field(default=128, ge=8, le=8192)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    # Start from a checkpoint whose head (or other weights) has other shapes, e.g. a classifier
    # trained with another label count: those weights are re-initialised, with a job notice.
    ignore_mismatched_sizes: bool = False
    # "fast": expanded at submit into the explicit keys above (FAST_TRAINING, FAST_COLLATOR);
    # kept so the job page can say which preset set them.
    preset: Literal["fast"] | None = None
    # The padding collator's options (the encoder tasks; causal-lm-sft uses TRL's own).
    collator: CollatorSpec = Field(default_factory=CollatorSpec)
    # On a CUDA out-of-memory: halve the batch, double the accumulation, resume (runner.py);
    # TUNEDECK_OOM_RETRY=false turns it off for the whole server.
    on_oom: Literal["retry", "fail"] = "retry"
    # Stop when the eval metric stops improving; `final` is then the best checkpoint's model
    # (app/jobs/early_stopping.py sets the TrainingArguments it needs).
    early_stopping: EarlyStoppingSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)

    _expand = model_validator(mode="before")(expand_preset)

    @model_validator(mode="after")
    def _early_stopping(self) -> SpecBase:
        stopping.apply(self)
        return self

    def display_name(self) -> str:
        dataset = self.dataset
        if self.name:
            return self.name
        data = dataset.path.rstrip("/").rsplit("/", 1)[-1]
        if dataset.config:
            data = f"{data}-{dataset.config}"
        return f"{self.model.rstrip('/').rsplit('/', 1)[-1]}-{data}"[:200]


class TextClassificationSpec(SpecBase):
    task: Literal["text-classification"] = "text-classification"
    dataset: DatasetSpec
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))


class MultiLabelSpec(SpecBase):
    task: Literal["multi-label-classification"]
    dataset: MultiLabelDatasetSpec
    threshold: float = Field(default=0.5, gt=0, lt=1)  # a label is predicted at sigmoid >= it
    metrics: list[MultiLabelMetric] = Field(
        default_factory=lambda: list(get_args(MultiLabelMetric)))


class RegressionSpec(SpecBase):
    task: Literal["text-regression"]
    dataset: DatasetSpec
    metrics: list[RegressionMetric] = Field(
        default_factory=lambda: list(get_args(RegressionMetric)))


class TokenClassificationSpec(SpecBase):
    task: Literal["token-classification"]
    dataset: TokenDatasetSpec
    metrics: list[TokenMetric] = Field(default_factory=lambda: list(get_args(TokenMetric)))


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1, le=1024)
    alpha: float = Field(default=32, gt=0, le=4096)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"

    @field_validator("target_modules")
    @classmethod
    def _modules(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not name.strip() for name in names):
            raise ValueError("target_modules is all-linear or a non-empty list of module names")
        return value


class GenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=64, ge=1, le=4096)


class CausalLMSFTSpec(SpecBase):
    task: Literal["causal-lm-sft"]
    dataset: GenerationDatasetSpec
    lora: LoraSpec | None = Field(default_factory=LoraSpec)  # null: a full fine-tune
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: list[GenerationMetric] = Field(
        default_factory=lambda: list(get_args(GenerationMetric)))


TaskSpec = Annotated[
    TextClassificationSpec | MultiLabelSpec | RegressionSpec | TokenClassificationSpec
    | CausalLMSFTSpec,
    Field(discriminator="task"),
]


def without_task_tag(loc: Sequence[Any]) -> tuple[Any, ...]:
    """An error location without the union's tag (`("multi-label-classification", "threshold")`
    -> `("threshold",)`), so errors name the spec's own fields."""
    parts = tuple(loc)
    for i, part in enumerate(parts[:2]):
        if part in TASKS:
            return parts[:i] + parts[i + 1:]
    return parts


def untagged_errors(errors: Sequence[Any]) -> list[Any]:
    """Validation errors with locations as without_task_tag gives; a bad `task` points at it."""
    out = []
    for error in errors:
        error = dict(error)
        if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            error["loc"] = (*tuple(error["loc"]), "task")
        error["loc"] = without_task_tag(error["loc"])
        if error.get("type") == stopping.CONFLICT:  # a check across fields names its field
            error["loc"] = (*error["loc"], *error["ctx"]["field"].split("."))
        out.append(error)
    return out


class JobSpec(RootModel[TaskSpec]):
    """A job spec: one of the task specs, chosen by `task` (text-classification when absent).

    Attributes read through to the task's spec (`spec.dataset`, `spec.training`, ...).
    Validation errors name the spec's fields without the union's tag.
    """

    @model_validator(mode="before")
    @classmethod
    def _default_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and "task" not in data:
            return {**data, "task": DEFAULT_TASK}
        return data

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> JobSpec:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                exc.title, [_line(e) for e in untagged_errors(exc.errors())]) from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            return super().__getattr__(name)  # type: ignore[misc]
        return getattr(self.root, name)


def _line(error: dict[str, Any]) -> Any:
    """A ValidationError line from one of its errors (the message kept as it was)."""
    return {"type": PydanticCustomError(error["type"], error["msg"]), "loc": error["loc"],
            "input": error.get("input")}


class JobPatch(BaseModel):
    """PATCH /api/v1/jobs/{id}: what is given is replaced; `"note": null` clears the note."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] | None = Field(default=None, max_length=100,
                                   description="the job's tags, all of them")
    note: str | None = Field(default=None, max_length=10_000)
