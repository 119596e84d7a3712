"""The README.md model card in every saved checkpoint, `final` and `final-merged`.

The card is the Hub's format, built with huggingface_hub's ModelCard/ModelCardData so that
`ModelCard.load(path)` reads it back: YAML metadata (base_model, datasets, pipeline_tag,
library_name, tags, and a model-index holding the eval/test metrics of that checkpoint), then
the task, the data, the hyperparameters, the training curve, the results, the labels and how to
load the folder. A checkpoint's card is written by ModelCardCallback.on_save, after Trainer (and
peft, which writes its own README.md into an adapter folder) saved it, so it replaces theirs;
`final` and `final-merged` get theirs from write_final_cards after Recipe.save_final.

No Celery, no database: the driver (worker/training.py) hands in what the card says.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from worker.callbacks import metric_values
from worker.recipes.base import TaskData

log = logging.getLogger(__name__)

PIPELINE_TAG = {"text-classification": "text-classification",
                "multi-label-classification": "text-classification",
                "text-regression": "text-classification",
                "token-classification": "token-classification",
                "causal-lm-sft": "text-generation"}
# Speed counters Trainer logs next to the metrics: in the card's tables, not in its model-index
# (transformers' own model cards leave them out the same way).
SPEED = ("runtime", "samples_per_second", "steps_per_second")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
MAX_EVAL_ROWS = 50


@dataclass
class CardContext:
    """What every card of one job says: its spec, task, labels and split sizes."""

    spec: dict
    task: str
    label_names: list[str] | None
    split_rows: dict[str, int]      # split name -> rows loaded


def context_of(spec: dict, task: str, data: TaskData) -> CardContext:
    """The card context of a loaded job: the rows each split held once loaded."""
    ds = spec["dataset"]
    rows = {ds["train_split"]: len(data.train)}
    if data.eval is not None and ds.get("eval_split"):
        rows[ds["eval_split"]] = len(data.eval)
    if data.predict_raw is not None and data.predict_split:
        rows[data.predict_split] = len(data.predict_raw)
    return CardContext(spec, task, data.label_names, rows)


def hub_model_id(model: str) -> str | None:
    """The spec's model when it is a Hub id; None for a local folder."""
    if Path(model).expanduser().exists() or model.startswith(("/", ".", "~")):
        return None
    return model if HUB_ID.match(model) else None


def kind_of(directory: Path) -> str:
    """adapter (a peft folder), merged (final-merged) or model (a full model)."""
    if (directory / "adapter_config.json").is_file():
        return "adapter"
    return "merged" if directory.name.endswith("-merged") else "model"


def model_index_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The eval/ and test/ metrics the card's model-index holds (no speed counters)."""
    return {name: value for name, value in metrics.items()
            if name.startswith(("eval/", "test/")) and not name.endswith(SPEED)}


def build_card(context: CardContext, directory: Path, step: int, metrics: dict[str, float],
               log_history: list[dict[str, Any]]) -> ModelCard:
    """The card of one saved folder at `step` with that folder's metrics."""
    kind = kind_of(directory)
    data = ModelCardData(
        base_model=hub_model_id(context.spec["model"]),
        datasets=_hub_datasets(context.spec),
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag=PIPELINE_TAG.get(context.task),
        tags=["tunedeck", context.task],
        model_name=_model_name(context, directory),
        eval_results=_eval_results(context, model_index_metrics(metrics)) or None,
    )
    sections = [
        _title(context, directory, step, kind), _task_section(context, kind),
        _data_section(context), _hyperparameter_section(context.spec),
        _curve_section(log_history), _results_section(metrics),
        _labels_section(context), _usage_section(context, directory, kind),
    ]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n"
    return ModelCard(content)


def write_card(context: CardContext, directory: Path, step: int, metrics: dict[str, float],
               log_history: list[dict[str, Any]]) -> Path:
    path = directory / "README.md"
    build_card(context, directory, step, metrics, log_history).save(path)
    return path


def eval_metrics_at(log_history: list[dict[str, Any]], step: int) -> dict[str, float]:
    """The eval/ values logged at `step` (what the checkpoint row of that step holds)."""
    return {name: value for entry in log_history if entry.get("step") == step
            for name, value in metric_values(entry).items() if name.startswith("eval/")}


def write_final_cards(context: CardContext, directories: list[Path], step: int,
                      final_metrics: dict[str, float], log_history: list[dict[str, Any]],
                      notice: Callable[[str], None]) -> None:
    """Cards for `final` (and `final-merged`): the job's final metrics."""
    for directory in directories:
        _guarded(notice, directory, partial(write_card, context, directory, step,
                                            final_metrics, log_history))


class ModelCardCallback(TrainerCallback):
    """Writes README.md into each checkpoint-N right after Trainer saved it."""

    def __init__(self, context: CardContext, notice: Callable[[str], None]):
        self.context = context
        self.notice = notice

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        directory = Path(args.output_dir or ".") / f"checkpoint-{state.global_step}"
        if not directory.is_dir():
            return
        history = list(state.log_history)
        _guarded(self.notice, directory, lambda: write_card(
            self.context, directory, state.global_step,
            eval_metrics_at(history, state.global_step), history))


def _guarded(notice: Callable[[str], None], directory: Path, write: Callable[[], Any]) -> None:
    """Run `write`; a card that cannot be written is a notice, never a failed job: the model
    it describes is saved already and matters more."""
    try:
        write()
    except Exception as exc:
        log.exception("could not write the model card of %s", directory)
        notice(f"The model card (README.md) of {directory.name} could not be written: "
               f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- metadata

def _hub_datasets(spec: dict) -> list[str] | None:
    ds = spec["dataset"]
    return [ds["path"]] if ds.get("source") == "hub" else None


def _dataset_label(spec: dict) -> tuple[str, str]:
    """(dataset_type, dataset_name) for the model-index: the Hub id, or where it came from."""
    ds = spec["dataset"]
    if ds.get("source") == "hub":
        return ds["path"], ds["path"]
    if ds.get("source") == "upload":
        return "upload", str(ds["path"])
    return "local", Path(str(ds["path"])).name  # the folder's name, not the server's layout


def _model_name(context: CardContext, directory: Path) -> str:
    base = Path(context.spec["model"]).name or context.spec["model"]
    return f"{base}-{context.task}-{directory.name}"


def _eval_results(context: CardContext, metrics: dict[str, float]) -> list[EvalResult]:
    ds = context.spec["dataset"]
    dataset_type, dataset_name = _dataset_label(context.spec)
    splits = {"eval": ds.get("eval_split"), "test": ds.get("test_split") or ds.get("eval_split")}
    return [EvalResult(task_type=PIPELINE_TAG.get(context.task, context.task),
                       task_name=context.task, dataset_type=dataset_type,
                       dataset_name=dataset_name, dataset_config=ds.get("config"),
                       dataset_split=splits[name.split("/", 1)[0]],
                       metric_type=name.split("/", 1)[1], metric_name=name,
                       metric_value=value)
            for name, value in sorted(metrics.items())]


# ---------------------------------------------------------------- body

def _title(context: CardContext, directory: Path, step: int, kind: str) -> str:
    what = {"adapter": "a LoRA adapter", "merged": "the LoRA adapter merged into the base model",
            "model": "the full model"}[kind]
    return (f"# {_model_name(context, directory)}\n\n"
            f"`{directory.name}` of a tunedeck job at step {step}: {what}, fine-tuned from "
            f"`{_base_label(context.spec['model'])}` for {context.task}.")


def _base_label(model: str) -> str:
    return hub_model_id(model) or Path(model).name


def _task_section(context: CardContext, kind: str) -> str:
    model = context.spec["model"]
    lines = [f"## Task\n\n`{context.task}` (pipeline tag "
             f"`{PIPELINE_TAG.get(context.task, context.task)}`)."]
    if hub_model_id(model) is None:
        lines.append(f"The base model `{Path(model).name}` was a local folder, not a Hub id, so "
                     "the metadata leaves `base_model` out.")
    if kind == "adapter":
        lines.append("This folder holds the adapter only; loading it needs the base model at "
                     "`base_model_name_or_path` in adapter_config.json.")
    return " ".join(lines)


def _data_section(context: CardContext) -> str:
    ds = context.spec["dataset"]
    dataset_type, dataset_name = _dataset_label(context.spec)
    if ds.get("source") == "hub":
        config = f" (config `{ds['config']}`)" if ds.get("config") else ""
        source = f"Hub dataset `{dataset_name}`{config}"
    else:
        source = f"{'Uploaded' if dataset_type == 'upload' else 'Local'} dataset `{dataset_name}`"
    rows = ["| split | role | rows |", "|---|---|---|"]
    for role in ("train", "eval", "test"):
        split = ds.get(f"{role}_split")
        if split:
            rows.append(f"| `{split}` | {role} | {context.split_rows.get(split, '')} |")
    fields = {k: v for k, v in ds.items() if k.endswith(("_field", "_fields", "_separator"))}
    columns = ", ".join(f"{k}: `{json.dumps(v)}`" for k, v in fields.items())
    return f"## Data\n\n{source}. Columns: {columns}.\n\n" + "\n".join(rows)


def _hyperparameter_section(spec: dict) -> str:
    rows = ["| setting | value |", "|---|---|"]
    rows += [f"| `{k}` | `{json.dumps(v)}` |" for k, v in (spec.get("training") or {}).items()]
    rows += [f"| `{k}` | `{json.dumps(v)}` |" for k, v in spec.items()
             if k not in ("training", "dataset", "model", "task", "name")]
    return "## Hyperparameters\n\nThe job spec's settings:\n\n" + "\n".join(rows)


def _curve_section(log_history: list[dict[str, Any]]) -> str:
    losses = [(e["step"], float(e["loss"])) for e in log_history
              if "loss" in e and "step" in e]
    lines = ["## Training curve"]
    if losses:
        low = min(losses, key=lambda p: p[1])
        lines.append(f"Train loss: first {losses[0][1]:.4f} (step {losses[0][0]}), last "
                     f"{losses[-1][1]:.4f} (step {losses[-1][0]}), min {low[1]:.4f} "
                     f"(step {low[0]}), {len(losses)} logged values.")
    evals = [e for e in log_history if any(k.startswith("eval_") for k in e)]
    if evals:
        lines.append(_eval_table(evals))
    return "\n\n".join(lines) if len(lines) > 1 else ""


def _eval_table(evals: list[dict[str, Any]]) -> str:
    shown = evals
    if len(evals) > MAX_EVAL_ROWS:  # evenly spaced, the last one kept
        stride = len(evals) / MAX_EVAL_ROWS
        shown = [evals[int(i * stride)] for i in range(MAX_EVAL_ROWS - 1)] + [evals[-1]]
    names = sorted({n for e in shown for n in model_index_metrics(metric_values(e))})
    rows = ["| step | epoch | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names)]
    for entry in shown:
        values = metric_values(entry)
        cells = [_number(values[n]) if n in values else "" for n in names]
        rows.append(f"| {entry.get('step', '')} | {_number(entry.get('epoch'))} | "
                    + " | ".join(cells) + " |")
    note = (f" ({len(shown)} of {len(evals)} shown)" if len(shown) < len(evals) else "")
    return f"Evaluations{note}:\n\n" + "\n".join(rows)


def _results_section(metrics: dict[str, float]) -> str:
    if not metrics:
        return "## Results\n\nNo evaluation ran at this step."
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| `{name}` | {value!r} |" for name, value in sorted(metrics.items())]
    return "## Results\n\n" + "\n".join(rows)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else ""


def _labels_section(context: CardContext) -> str:
    if context.task == "text-regression":
        return ("## Labels\n\nOne output (`LABEL_0`): the predicted score itself "
                "(`problem_type: regression`).")
    if not context.label_names:
        return ""
    rows = ["| id | label |", "|---|---|"]
    rows += [f"| {i} | `{name}` |" for i, name in enumerate(context.label_names)]
    extra = ""
    if context.task == "multi-label-classification":
        threshold = float(context.spec.get("threshold", 0.5))
        extra = (f"\n\nA label is predicted when its sigmoid is at least {threshold} "
                 "(`problem_type: multi_label_classification`).")
    return "## Labels\n\n" + "\n".join(rows) + extra


# ---------------------------------------------------------------- how to load

def _usage_section(context: CardContext, directory: Path, kind: str) -> str:
    where = (f'model_dir = "{directory.name}"  # this folder (job-<id>-{directory.name} once '
             "downloaded with tunedeck download)")
    imports, code = _snippet(context, kind).split("\n\n", 1)
    return f"## How to use\n\n```python\n{imports}\n\n{where}\n{code}\n```"


def _snippet(context: CardContext, kind: str) -> str:
    task, ds = context.task, context.spec["dataset"]
    if task == "causal-lm-sft":
        return _generation_snippet(context, kind)
    if task == "token-classification":
        return ('from transformers import pipeline\n\n'
                'tagger = pipeline("token-classification", model=model_dir, '
                'aggregation_strategy="first")\n'
                'print(tagger("anna lives in paris"))\n'
                '# words already split: tagger([words], is_split_into_words=True)[0]')
    fields = ds.get("text_fields") or ["text"]
    text = ('{"text": "first text", "text_pair": "second text"}' if len(fields) > 1
            else '"some text"')
    options = {"multi-label-classification": ', function_to_apply="sigmoid", top_k=None',
               "text-regression": ', function_to_apply="none"'}.get(task, "")
    return ('from transformers import pipeline\n\n'
            f'classifier = pipeline("text-classification", model=model_dir{options})\n'
            f'print(classifier({text}))')


def _generation_snippet(context: CardContext, kind: str) -> str:
    chat = bool(context.spec["dataset"].get("messages_field"))
    prompt = ('[{"role": "user", "content": "Hello!"}]' if chat else '"Your prompt"')
    new_tokens = int((context.spec.get("generation") or {}).get("max_new_tokens", 64))
    if kind == "adapter":
        load = ("from peft import AutoPeftModelForCausalLM\n"
                "from transformers import AutoTokenizer, pipeline\n\n"
                "model = AutoPeftModelForCausalLM.from_pretrained(model_dir)  # base + adapter\n"
                "tokenizer = AutoTokenizer.from_pretrained(model_dir)\n"
                'generator = pipeline("text-generation", model=model, tokenizer=tokenizer)\n')
    else:
        load = ("from transformers import pipeline\n\n"
                'generator = pipeline("text-generation", model=model_dir)\n')
    return (load + f"print(generator({prompt}, max_new_tokens={new_tokens}, do_sample=False, "
            "return_full_text=False))")
