"""What a failed job stores: the exception's class, message, traceback tail and a hint.

No imports beyond the standard library, so a bare GPU box can check it
(tests/worker/test_cuda.py::test_an_out_of_memory_inside_trainer_is_recognised_with_the_hint).
"""
from __future__ import annotations

import errno
import traceback
from collections.abc import Iterator

TRACEBACK_LINES = 30
MESSAGE_CHARS = 10_000
OOM_HINT = ("The GPU ran out of memory. Try a smaller per_device_train_batch_size with "
            "gradient_accumulation_steps to keep the effective batch, fp16 or bf16, or a "
            "shorter max_length.")

DISK_FULL_HINT = ("The disk ran out of space while the job wrote to it (a checkpoint, most "
                  "likely: the half-written one was removed and the last complete one is "
                  "kept). Free space on TUNEDECK_DATA_DIR, lower save_total_limit or save less "
                  "often (save_steps), then submit the job again.")
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# What torch's zip writer says when a write fails under it; the OSError is not always chained.
DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "file write failed",
                  "unexpected pos")


def is_out_of_memory(kind: str, message: str) -> bool:
    """torch.OutOfMemoryError (CUDA), or any "out of memory" error (MPS, cuBLAS, ...)."""
    return kind == "OutOfMemoryError" or "out of memory" in message.lower()


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain, or torch's serialization error a full disk gives
    ("unexpected pos 9664 vs 9556", its OSError only sometimes chained as the context)."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(link).lower() for text in DISK_FULL_TEXT):
            return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def hint_for(kind: str, message: str, exc: BaseException) -> str | None:
    if is_out_of_memory(kind, message):
        return OOM_HINT
    return DISK_FULL_HINT if is_disk_full(exc) else None


def describe_failure(exc: BaseException) -> tuple[str, str, str, str | None]:
    """(type, message, traceback tail, hint) for the job row."""
    kind = type(exc).__name__
    message = str(exc) or kind
    tail = "".join(traceback.format_exception(exc)).splitlines()[-TRACEBACK_LINES:]
    return kind, message[:MESSAGE_CHARS], "\n".join(tail), hint_for(kind, message, exc)
