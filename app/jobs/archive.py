"""Stream a directory as a tar archive without building it in memory."""
from __future__ import annotations

import queue
import tarfile
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
