"""The New job form's presets: a known-good recipe per task (Hub models and datasets)."""
from __future__ import annotations

from typing import Any

_EPOCHS = {"eval_strategy": "epoch", "save_strategy": "epoch", "seed": 42}
# The presets fill the form with a known-good recipe per task (Hub models and datasets).
PRESETS: dict[str, dict[str, Any]] = {
    "mrpc": {
        "model": "bert-base-uncased",
        "dataset": {"source": "hub", "path": "glue", "config": "mrpc", "train_split": "train",
                    "eval_split": "validation", "text_fields": ["sentence1", "sentence2"],
                    "label_field": "label"},
        "max_length": 128,
        "metrics": ["accuracy", "f1"],
        "training": {"num_train_epochs": 3, "learning_rate": 2e-5,
                     "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                     **_EPOCHS},
    },
    "go-emotions": {
        "task": "multi-label-classification", "model": "distilroberta-base",
        "dataset": {"source": "hub", "path": "go_emotions", "config": "simplified",
                    "train_split": "train", "eval_split": "validation", "test_split": "test",
                    "text_fields": ["text"], "label_field": "labels"},
        "threshold": 0.5, "max_length": 128,
        "training": {"num_train_epochs": 3, "learning_rate": 5e-5,
                     "per_device_train_batch_size": 32, "per_device_eval_batch_size": 64,
                     **_EPOCHS},
    },
    "stsb": {
        "task": "text-regression", "model": "bert-base-uncased",
        "dataset": {"source": "hub", "path": "glue", "config": "stsb", "train_split": "train",
                    "eval_split": "validation", "text_fields": ["sentence1", "sentence2"],
                    "label_field": "label"},
        "max_length": 128,
        "training": {"num_train_epochs": 3, "learning_rate": 2e-5,
                     "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                     **_EPOCHS},
    },
    "conll2003": {
        "task": "token-classification", "model": "bert-base-cased",
        "dataset": {"source": "hub", "path": "conll2003", "train_split": "train",
                    "eval_split": "validation", "test_split": "test",
                    "tokens_field": "tokens", "tags_field": "ner_tags"},
        "max_length": 128,
        "training": {"num_train_epochs": 3, "learning_rate": 2e-5,
                     "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                     "weight_decay": 0.01, **_EPOCHS},
    },
    "smollm2-sft": {
        "task": "causal-lm-sft", "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "dataset": {"source": "hub", "path": "HuggingFaceTB/smoltalk",
                    "config": "everyday-conversations", "train_split": "train",
                    "eval_split": "test[:50%]", "test_split": "test[50%:]",
                    "messages_field": "messages"},
        "max_length": 512,
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "generation": {"max_new_tokens": 128},
        "training": {"num_train_epochs": 2, "learning_rate": 2e-4,
                     "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8,
                     **_EPOCHS},
    },
}
PRESET_TITLES = {
    "mrpc": "Classic recipe: BERT on GLUE MRPC",
    "go-emotions": "Multi-label: DistilRoBERTa on GoEmotions",
    "stsb": "Regression: BERT on GLUE STS-B",
    "conll2003": "NER: bert-base-cased on CoNLL-2003",
    "smollm2-sft": "SFT: SmolLM2-135M-Instruct with LoRA",
}
