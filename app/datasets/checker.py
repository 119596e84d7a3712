"""Run the upload checks (app/datasets/reader.py) in a separate process.

Checking a 30 MB CSV is seconds of pure Python. In a thread of the web process it would hold
the GIL in 5 ms slices against the event loop, which needs the GIL back after every socket
call; /healthz then took 0.2-2 s during a large upload (measured with py-spy --gil: the
upload's parse held the GIL for 85% of the samples). In a process of its own it shares nothing
with the loop, and it runs at a lower CPU priority (nice 10), so on a busy box the web
process is scheduled first. The pool is made on first use (spawn: the web process has threads, so no fork)
and kept; reader's value-count cache lives in it.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from app.datasets import reader

T = TypeVar("T")
CHECKER_NICENESS = 10
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def inspect(path: Path, fmt: str, limits: reader.Limits) -> reader.Table:
    return _run(reader.inspect, path, fmt, limits)


def label_summary(path: Path, fmt: str, column: str, max_rows: int) -> dict[str, Any]:
    return _run(reader.label_summary, path, fmt, column, max_rows)


def _run(function: Any, *args: Any) -> Any:
    """function(*args) in the checker process; once more in a new one if that process died."""
    try:
        return _get_pool().submit(function, *args).result()
    except BrokenProcessPool:
        _discard_pool()
        return _get_pool().submit(function, *args).result()


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1),
                                        mp_context=multiprocessing.get_context("spawn"),
                                        initializer=os.nice, initargs=(CHECKER_NICENESS,))
        return _pool


def _discard_pool() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
