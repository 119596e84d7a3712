"""GPU only: a real CUDA out-of-memory gets its hint; an fp16 run resumes from a checkpoint.

Imports only torch, transformers and torch-free worker modules, so it runs on a bare GPU box:
    python3 -m pytest --noconftest -o addopts= tests/worker/test_cuda.py
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from worker.callbacks import StreamingCallback, metric_values
from worker.failures import OOM_HINT, describe_failure

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class Rows(torch.utils.data.Dataset):
    """Random token ids with a learnable label (is token 7 in the row?)."""

    def __init__(self, count: int, length: int, vocab: int = 1000):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(8, vocab, (count, length), generator=generator)
        self.ids[::2, 3] = 7
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]),
                "labels": self.labels[i]}


class Recorder:
    """The reporter the callback writes to, in memory."""

    cancel_requested = False

    def __init__(self) -> None:
        self.points: dict[tuple[str, int], float] = {}
        self.saved: list[int] = []

    def progress(self, *args) -> None:
        pass

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        self.points.update({(name, step): value for name, value in values.items()})

    def checkpoint(self, name: str, step: int, path: str, metrics: dict[str, float]) -> None:
        self.saved.append(step)


def test_an_out_of_memory_inside_trainer_is_recognised_with_the_hint(tmp_path: Path):
    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2048,
                             max_steps=1, save_strategy="no", report_to="none",
                             disable_tqdm=True)
    trainer = Trainer(model=BertForSequenceClassification(config), args=args,
                      train_dataset=Rows(2048, 512))
    with pytest.raises(torch.OutOfMemoryError) as caught:
        trainer.train()
    kind, message, tail, hint = describe_failure(caught.value)
    assert kind == "OutOfMemoryError" and "CUDA out of memory" in message
    assert hint == OOM_HINT
    assert tail.splitlines()[-1].startswith("torch.OutOfMemoryError: CUDA out of memory")
    del trainer, caught
    torch.cuda.empty_cache()


def run(output: Path, resume: str | None = None) -> tuple[Trainer, Recorder]:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=128)
    args = TrainingArguments(output_dir=str(output), per_device_train_batch_size=16,
                             max_steps=20, save_strategy="steps", save_steps=5,
                             logging_steps=1, learning_rate=1e-3, fp16=True, seed=0,
                             report_to="none", disable_tqdm=True)
    recorder = Recorder()
    trainer = Trainer(model=BertForSequenceClassification(config), args=args,
                      train_dataset=Rows(256, 32),
                      callbacks=[StreamingCallback(recorder, samples_per_step=16)])
    trainer.train(resume_from_checkpoint=resume)
    return trainer, recorder


def test_an_fp16_run_resumes_from_its_checkpoint_and_the_history_matches(tmp_path: Path):
    _, first = run(tmp_path / "a")
    checkpoint = tmp_path / "a" / "checkpoint-10"
    resumed, second = run(tmp_path / "a", resume=str(checkpoint))
    assert resumed.args.fp16 and next(resumed.model.parameters()).is_cuda
    assert resumed.state.global_step == 20
    # The resumed run logs steps 11..20 only: it continued from the checkpoint.
    assert sorted({step for _, step in second.points}) == list(range(11, 21))
    assert second.saved == [15, 20]
    # What the worker restores from a checkpoint is exactly what the callback had reported.
    state = resumed.state.__class__.load_from_json(str(checkpoint / "trainer_state.json"))
    restored = {(name, entry["step"]): value for entry in state.log_history
                for name, value in metric_values(entry).items()}
    assert restored == {key: value for key, value in first.points.items() if key[1] <= 10}
    losses = [second.points[("train/loss", step)] for step in range(11, 21)]
    assert all(torch.isfinite(torch.tensor(losses)))
