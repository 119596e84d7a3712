"""Stream a directory as a tar archive without building it in memory.

A checkpoint can be deleted while it downloads (Trainer's save_total_limit rotates old ones
away): the archive is made from a snapshot, hard links to every file taken before the response
starts, so the files it streams stay whole whatever happens to the checkpoint meanwhile.
"""
from __future__ import annotations

import os
import queue
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

_DONE = object()


class _Stopped(Exception):
    """The reader went away (client disconnected)."""


class _QueueWriter:
    """A write-only file object that hands each block to a bounded queue."""

    def __init__(self, chunks: queue.Queue, stop: threading.Event):
        self.chunks = chunks
        self.stop = stop

    def write(self, data: bytes) -> int:
        block = bytes(data)
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.chunks.put(block, timeout=0.5)
                return len(block)
            except queue.Full:
                continue


def snapshot(directory: Path, scratch: Path) -> Path:
    """A copy of `directory` in a new folder under `scratch`: hard links (a copy where the
    filesystem refuses a link), symlinks kept as links. FileNotFoundError if it vanished."""
    scratch.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="download-", dir=scratch)) / directory.name
    try:
        shutil.copytree(directory, target, symlinks=True, copy_function=_link_or_copy)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return target


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed: a copy is still a snapshot
        shutil.copy2(source, target)


def stream_snapshot(directory: Path, arcname: str, scratch: Path) -> Iterator[bytes]:
    """Snapshot `directory` now (errors raise here, before any byte is sent), then stream it;
    the snapshot goes when the stream ends or the client leaves."""
    copy = snapshot(directory, scratch)

    def blocks() -> Iterator[bytes]:
        try:
            yield from stream_tar(copy, arcname)
        finally:
            shutil.rmtree(copy.parent, ignore_errors=True)

    return blocks()


def stream_tar(directory: Path, arcname: str, max_chunks: int = 16) -> Iterator[bytes]:
    """Yield tar blocks of `directory` (as `arcname/...`); memory stays at max_chunks blocks."""
    chunks: queue.Queue = queue.Queue(maxsize=max_chunks)
    stop = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            writer = _QueueWriter(chunks, stop)
            # A stream ("w|") only writes; typeshed's file protocol asks for read/seek too.
            fileobj = cast(IO[bytes], writer)
            with tarfile.open(fileobj=fileobj, mode="w|", bufsize=256 * 1024) as tar:
                tar.add(directory, arcname=arcname)
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            failure.append(exc)
        chunks.put(_DONE)

    threading.Thread(target=produce, daemon=True, name="tar-stream").start()
    try:
        while (chunk := chunks.get()) is not _DONE:
            yield chunk
    finally:
        stop.set()
    if failure:
        raise failure[0]
