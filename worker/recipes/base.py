"""The task seam: what one kind of fine-tune owns, in the order of the reference recipe.

Each task is one module in worker/recipes/ defining `RECIPE = <Recipe subclass>()`; the
runner, callback, reporter, resume and cancel only ever see this interface
(worker/training.py drives it). A task module owns: loading and checking its data,
tokenization and label encoding, the model class and its head, the collator,
compute_metrics and the prediction rows (their shapes are DESIGN.md's "Tasks" table).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainingArguments

from worker.data import Source


@dataclass
class TaskData:
    """A job's data, ready for Trainer: features to train/evaluate on, the raw predict rows."""

    train: Dataset                      # model-ready features (tokenized, labels encoded)
    eval: Dataset | None                # same, or None when the spec has no eval_split
    predict_raw: Dataset | None         # raw rows of the split trainer.predict runs on
    predict_split: str | None           # its name (test_split, else eval_split)
    predict_labeled: bool               # whether predict_raw carries labels/references
    tokenizer: Any                      # the processing_class handed to Trainer
    label_names: list[str] | None = None   # stored on the job (None for causal-lm-sft)
    extra: dict[str, Any] = field(default_factory=dict)  # whatever else the task needs later


class Recipe:
    """One task's recipe. Subclasses override what differs; the defaults are plain Trainer."""

    task: str = ""

    def load(self, spec: dict, source: Source) -> TaskData:
        """Load, check, label-encode and tokenize the splits (recipe steps 1-2)."""
        raise NotImplementedError

    def model(self, spec: dict, data: TaskData) -> tuple[PreTrainedModel, list[str]]:
        """The model with its head (fp32 master weights) and notices to show as info."""
        raise NotImplementedError

    def collator(self, spec: dict, data: TaskData) -> Callable | None:
        raise NotImplementedError

    def compute_metrics(self, spec: dict, data: TaskData,
                        use_evaluate: bool) -> Callable | None:
        """Trainer's compute_metrics for eval (None: eval loss only)."""
        return None

    def trainer(self, *, model: PreTrainedModel, args: TrainingArguments, data: TaskData,
                spec: dict, collator: Callable | None, compute_metrics: Callable | None,
                callbacks: list) -> Trainer:
        """The Trainer (or a subclass such as TRL's SFTTrainer) for this task."""
        return Trainer(model=model, args=args, train_dataset=data.train,
                       eval_dataset=data.eval, data_collator=collator,
                       processing_class=data.tokenizer, compute_metrics=compute_metrics,
                       callbacks=callbacks)

    def predict(self, trainer: Trainer, spec: dict,
                data: TaskData) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Rows in DESIGN.md's shape for this task (each with `split` and `row`) and the
        `test/<name>` metrics of the predict split."""
        raise NotImplementedError

    def save_final(self, trainer: Trainer, final_dir: Path) -> list[Path]:
        """Save the trained model; returns the directories to record as checkpoints
        (`final`, and for a LoRA job also `final-merged`)."""
        trainer.save_model(str(final_dir))
        return [final_dir]
