"""The inference worker's loaded checkpoints: a small LRU shared by its threads, and where a
checkpoint runs (CUDA only when the GPU has room beside the training job, else the CPU).

A checkpoint loads once (two threads asking for the same one wait for the one load) and stays
until `TUNEDECK_INFERENCE_CACHE_SIZE` others were used after it. Each loaded model has its own
lock: one request runs on it at a time, because the tokenizer's truncation and padding
settings and generate()'s padding side are state on shared objects; requests for different
checkpoints run side by side.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Room a model needs on the GPU beyond its weights (activations, the CUDA allocator's slack).
GPU_HEADROOM_BYTES = 1 << 30
WEIGHT_FILES = ("*.safetensors", "*.bin")


@dataclass
class Loaded:
    """A checkpoint ready to answer: its model (eval mode, on `device`) and tokenizer."""

    model: Any
    tokenizer: Any
    device: str
    label_names: list[str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Slot:
    def __init__(self) -> None:
        self.loading = threading.Lock()
        self.value: Loaded | None = None


class ModelCache:
    """At most `size` loaded checkpoints, least recently used out first."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()

    def get(self, key: Hashable, load: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
            self._slots.move_to_end(key)
            self._evict()
        with slot.loading:
            if slot.value is None:
                slot.value = load()
            return slot.value

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._slots)

    def _evict(self) -> None:
        """Drop the oldest slots beyond size; a request still using one keeps it alive."""
        while len(self._slots) > self.size:
            self._slots.popitem(last=False)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def weights_bytes(directory: Path) -> int:
    """Bytes of a checkpoint's weights; for a LoRA adapter also its base model's, when that
    is a local folder (a Hub base is not counted: GPU_HEADROOM_BYTES covers small ones)."""
    total = sum(p.stat().st_size for pattern in WEIGHT_FILES for p in directory.glob(pattern))
    adapter = directory / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if base and Path(base).is_dir():
            total += weights_bytes(Path(base))
    return total


def choose_device(directory: Path, setting: str) -> str:
    """`cpu`, or `cuda` when set so, or (auto) when the GPU's free memory holds the weights
    twice over plus GPU_HEADROOM_BYTES: a training job on the same GPU keeps its memory."""
    if setting == "cpu" or not torch.cuda.is_available():
        return "cpu"
    if setting == "cuda":
        return "cuda"
    free, _total = torch.cuda.mem_get_info()
    return "cuda" if free >= 2 * weights_bytes(directory) + GPU_HEADROOM_BYTES else "cpu"
