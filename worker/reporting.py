"""DbReporter: buffers what the callback reports and writes it from its own thread.

Training threads only append to in-memory buffers under a lock. A writer thread flushes
them every `flush_seconds` in one transaction (metric upserts, progress, heartbeat,
checkpoints) and reads back the cancel flag; with nothing new buffered it writes only every
`idle_seconds` (the heartbeat). A database error is logged and the batch is kept for the
next flush, so a hiccup never crashes or blocks the run.

The writer shares the interpreter lock with the training loop, whose Python parts (the
Trainer loop, module calls, the optimizer) wait while it runs: a flush is one UPDATE of the
job row (progress, heartbeat, lease fence and cancel flag together, no ORM load of the row)
plus the metric upsert when there are points. Measured by benchmarks/overhead.py (P1).

Each flush also renews the job's lease (docs/operations.md), fenced by the attempt number: once
another attempt holds the job, or no renewal got through for a lease timeout, the reporter
writes nothing more and asks the callback to stop training.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.db import utcnow
from app.jobs import lifecycle, store

log = logging.getLogger(__name__)
MAX_BUFFERED_POINTS = 200_000


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def relative_path(path: str | Path, data_dir: Path) -> str:
    """Paths are stored relative to the data dir, so every host that mounts it agrees."""
    resolved, root = Path(path).resolve(), data_dir.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def checkpoint_row(job_id: int, name: str, step: int, path: Path, data_dir: Path,
                   metrics: dict[str, float]) -> dict[str, Any]:
    """A checkpoints row for a directory on disk: its path relative to the data dir, its size."""
    return {"job_id": job_id, "name": name, "step": step, "path": relative_path(path, data_dir),
            "metrics": metrics, "size_bytes": dir_size(path), "created_at": utcnow()}


class DbReporter:
    def __init__(self, job_id: int, session_scope: Callable[[], AbstractContextManager[Session]],
                 data_dir: Path, flush_seconds: float = 0.25,
                 stats: Callable[[], dict[str, Any]] | None = None,
                 attempt: int | None = None, lease_timeout: float | None = None,
                 idle_seconds: float = 1.0):
        self.job_id = job_id
        self.session_scope = session_scope
        self.data_dir = data_dir.resolve()
        self.flush_seconds = flush_seconds
        self.idle_seconds = max(idle_seconds, flush_seconds)
        self._written = 0.0  # monotonic time of the last flush that got through
        self._latest_all: dict[str, float] | None = None  # the job's latest_metrics, merged
        self.stats = stats
        self._lock = threading.Lock()
        self._points: dict[tuple[str, int], tuple[float, float | None]] = {}
        self._latest: dict[str, float] = {}
        self._progress: dict[str, Any] | None = None
        self._checkpoints: list[dict[str, Any]] = []
        self._fields: dict[str, Any] = {}
        self._notices: list[str] = []  # added by notice(), kept through job_fields(info=...)
        self._info: list[str] = []  # the job's info notices as this attempt set them
        self._cancel = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"reporter-{job_id}")
        self.failures = 0
        self._deadline = 0.0
        self._drained = False
        # The lease: every flush renews it only while `attempt` still holds the job.
        self.attempt = attempt
        self.lease_timeout = lease_timeout
        self._renewed = time.monotonic()
        self._lease_lost = False

    # ---- called from the training loop (cheap, never blocks on I/O)

    def progress(self, step: int, max_steps: int, epoch: float | None,
                 samples_per_second: float | None, eta_seconds: float | None) -> None:
        with self._lock:
            self._progress = {"global_step": step, "max_steps": max_steps, "epoch": epoch,
                              "samples_per_second": samples_per_second,
                              "eta_seconds": eta_seconds}

    def metrics(self, step: int, epoch: float | None, values: dict[str, float]) -> None:
        with self._lock:
            for name, value in values.items():
                self._points[(name, step)] = (value, epoch)
                self._latest[name] = value
            if len(self._points) > MAX_BUFFERED_POINTS:  # database down for long: keep newest
                for key in list(self._points)[: len(self._points) - MAX_BUFFERED_POINTS]:
                    del self._points[key]

    def checkpoint(self, name: str, step: int, path: str, metrics: dict[str, float]) -> None:
        with self._lock:
            self._checkpoints.append({"name": name, "step": step, "path": path,
                                      "metrics": metrics})

    def job_fields(self, **fields: Any) -> None:
        """Columns of the job row to set at the next flush (label names, info, ...)."""
        with self._lock:
            if isinstance(fields.get("info"), list):
                self._info = [*fields["info"], *self._notices]
                fields["info"] = list(self._info)
            self._fields.update(fields)

    def notice(self, text: str) -> None:
        """Add a line to the job's info notices (a warning the job page shows)."""
        with self._lock:
            self._notices.append(text)
            self._info.append(text)
            self._fields["info"] = list(self._info)

    @property
    def cancel_requested(self) -> bool:
        """A cancel was asked for, or the lease is gone: either way, stop at the next step."""
        return self._cancel or self.lease_lost

    @property
    def lease_lost(self) -> bool:
        """True once another attempt holds the job, or no renewal succeeded for a lease timeout
        (the sweep may have handed the job on: stop rather than run it twice)."""
        if (not self._lease_lost and self.lease_timeout is not None
                and time.monotonic() - self._renewed > self.lease_timeout):
            log.warning("job %s: no heartbeat written for %.0fs; giving the job up",
                        self.job_id, self.lease_timeout)
            self._lease_lost = True
        return self._lease_lost

    # ---- the writer thread

    def start(self) -> DbReporter:
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> bool:
        """Stop the thread after a last flush; True when everything was written in time.

        The last flush runs on the writer thread too, so a hung database costs at most
        `timeout` here, never the job.
        """
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._thread.join(timeout + 1)
        return not self._thread.is_alive() and self._drained

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            if self._has_news() or time.monotonic() - self._written >= self.idle_seconds:
                self._flush_safely()
        while not (ok := self._flush_safely()) and time.monotonic() < self._deadline:
            time.sleep(0.2)
        self._drained = ok

    def _flush_safely(self) -> bool:
        try:
            self.flush()
            return True
        except Exception:  # a database hiccup must not stop training
            self.failures += 1
            if self.failures in (1, 10) or self.failures % 100 == 0:
                log.warning("job %s: could not write progress (failure %d); will retry",
                            self.job_id, self.failures, exc_info=True)
            return False

    def _has_news(self) -> bool:
        with self._lock:
            return bool(self._points or self._latest or self._progress or self._checkpoints
                        or self._fields)

    def _take(self) -> tuple:
        with self._lock:
            batch = (self._points, self._latest, self._progress, self._checkpoints, self._fields)
            self._points, self._latest, self._progress = {}, {}, None
            self._checkpoints, self._fields = [], {}
        return batch

    def _give_back(self, batch: tuple) -> None:
        """Return an unwritten batch; anything newer that arrived meanwhile wins."""
        points, latest, progress, checkpoints, fields = batch
        with self._lock:
            self._points = {**points, **self._points}
            self._latest = {**latest, **self._latest}
            self._progress = self._progress or progress
            self._checkpoints = checkpoints + self._checkpoints
            self._fields = {**fields, **self._fields}

    def flush(self) -> None:
        batch = self._take()
        started = time.monotonic()
        try:
            with self.session_scope() as session:
                renewed = self._write(session, *batch)
        except BaseException:
            self._give_back(batch)
            self._heartbeat(started)
            raise
        self._written = started
        if renewed:
            self._renewed = started

    def _heartbeat(self, started: float) -> None:
        """Renew the lease alone, so a write that keeps failing does not give the job up."""
        if self.attempt is None:
            return
        try:
            with self.session_scope() as session:
                if self._renew(session, utcnow()):
                    self._renewed = started
        except Exception:  # the database itself is unreachable: the lease runs out
            log.debug("job %s: heartbeat failed", self.job_id, exc_info=True)

    def _renew(self, session: Session, now: datetime) -> bool:
        """Heartbeat, fenced by the attempt number: False once the job is someone else's."""
        if self.attempt is None:
            return True
        if self.lease_lost or not lifecycle.heartbeat(session, self.job_id, self.attempt,
                                                         now):
            self._lose_lease()
        return not self._lease_lost

    def _lose_lease(self) -> None:
        if not self._lease_lost:
            log.warning("job %s: attempt %s no longer holds the job; stopping",
                        self.job_id, self.attempt)
        self._lease_lost = True

    def _write(self, session: Session, points, latest, progress, checkpoints, fields) -> bool:
        if self.lease_lost:
            return False  # a lost lease writes nothing: the attempt that holds the job does
        now = utcnow()
        values = {**(progress or {}), **fields, "progress_at": now, "heartbeat_at": now}
        if self.stats is not None:
            values.update(self.stats())
        if latest:
            if self._latest_all is None:
                self._latest_all = store.latest_metrics(session, self.job_id)
            self._latest_all.update(latest)
            values["latest_metrics"] = dict(self._latest_all)
        cancel = lifecycle.report(session, self.job_id, self.attempt, values)
        if cancel is None:  # gone, or (with an attempt) handed on by the sweep
            if self.attempt is None:
                self._cancel = True
            else:
                self._lose_lease()
            return False
        self._cancel = cancel
        rows = [{"job_id": self.job_id, "name": name, "step": step, "value": value,
                 "epoch": epoch} for (name, step), (value, epoch) in points.items()]
        if rows:
            store.upsert_metric_points(session, rows)
        if checkpoints:
            self._write_checkpoints(session, checkpoints)
        return True

    def _write_checkpoints(self, session: Session, checkpoints: list[dict]) -> None:
        for item in checkpoints:
            path = Path(item["path"])
            if not path.is_dir():
                continue
            store.upsert_checkpoint(session, checkpoint_row(
                self.job_id, item["name"], item["step"], path, self.data_dir, item["metrics"]))
        gone = [name for name, path in store.checkpoint_paths(session, self.job_id)
                if name != "final" and not (self.data_dir / path).is_dir()]
        store.delete_checkpoints(session, self.job_id, gone)
