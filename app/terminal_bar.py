"""The one-line progress bar of `tunedeck watch` (step, %, loss, eval metric, ETA)."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

PREFERRED_EVAL = ("eval/accuracy", "eval/f1", "eval/matthews_correlation")
NOT_QUALITY = ("runtime", "per_second", "epoch", "loss")
BAR_WIDTH = 24
PLAIN_EVERY_SECONDS = 10.0


def clock(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def eval_metric(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The eval metric worth showing: accuracy, else F1, else any non-loss eval metric."""
    for name in PREFERRED_EVAL:
        if name in metrics:
            return name, metrics[name]
    for name in sorted(metrics):
        if name.startswith("eval/") and not any(word in name for word in NOT_QUALITY):
            return name, metrics[name]
    return None


def bar(fraction: float | None, fancy: bool) -> str:
    full, empty = ("█", "░") if fancy else ("#", "-")
    if fraction is None:
        return empty * BAR_WIDTH
    done = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    return full * done + empty * (BAR_WIDTH - done)


def render(job_id: int, snapshot: dict[str, Any], fancy: bool = True) -> str:
    """job 3 running |████░░░| 42% step 84/200 loss 0.4312 eval/accuracy 0.8125 ETA 01:07"""
    progress = snapshot.get("progress") or {}
    metrics = snapshot.get("latest_metrics") or {}
    fraction = progress.get("fraction")
    parts = [f"job {job_id} {snapshot.get('status', '?'):<9}", f"|{bar(fraction, fancy)}|",
             f"{fraction * 100:3.0f}%" if fraction is not None else "  ?%"]
    step, max_steps = progress.get("step") or 0, progress.get("max_steps")
    parts.append(f"step {step}/{max_steps}" if max_steps else f"step {step}")
    if "train/loss" in metrics:
        parts.append(f"loss {metrics['train/loss']:.4f}")
    if (best := eval_metric(metrics)) is not None:
        parts.append(f"{best[0]} {best[1]:.4f}")
    if snapshot.get("status") == "running":
        parts.append(f"ETA {clock(progress.get('eta_seconds'))}")
    return " ".join(parts)


class ProgressLine:
    """Redraws one line in a terminal; elsewhere prints a line on change, at most every 10 s."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.fancy = "utf" in (getattr(self.stream, "encoding", "") or "").lower()
        self.last_text = ""
        self.last_status: str | None = None
        self.last_print = 0.0

    def update(self, job_id: int, snapshot: dict[str, Any]) -> None:
        text = render(job_id, snapshot, self.fancy)
        if text == self.last_text:
            return
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.last_text)))
        elif self._due(snapshot.get("status"), text):
            self.stream.write(text + "\n")
            self.last_print = time.monotonic()
        self.last_status = snapshot.get("status")
        self.last_text = text
        self.stream.flush()

    def _due(self, status: str | None, text: str) -> bool:
        changed = status != self.last_status
        return changed or (text != self.last_text
                           and time.monotonic() - self.last_print >= PLAIN_EVERY_SECONDS)

    def finish(self, message: str) -> None:
        if self.tty and self.last_text:
            self.stream.write("\n")
        self.stream.write(message + "\n")
        self.stream.flush()
