"""What a failed job stores: the exception's class, message, traceback tail and a hint.

No imports beyond the standard library, so a bare GPU box can check it
(tests/worker/test_cuda.py::test_an_out_of_memory_inside_trainer_is_recognised_with_the_hint).
"""
from __future__ import annotations

import traceback

TRACEBACK_LINES = 30
MESSAGE_CHARS = 10_000
OOM_HINT = ("The GPU ran out of memory. Try a smaller per_device_train_batch_size with "
            "gradient_accumulation_steps to keep the effective batch, fp16 or bf16, or a "
            "shorter max_length.")


def is_out_of_memory(kind: str, message: str) -> bool:
    """torch.OutOfMemoryError (CUDA), or any "out of memory" error (MPS, cuBLAS, ...)."""
    return kind == "OutOfMemoryError" or "out of memory" in message.lower()


def describe_failure(exc: BaseException) -> tuple[str, str, str, str | None]:
    """(type, message, traceback tail, hint) for the job row."""
    kind = type(exc).__name__
    message = str(exc) or kind
    tail = "".join(traceback.format_exception(exc)).splitlines()[-TRACEBACK_LINES:]
    hint = OOM_HINT if is_out_of_memory(kind, message) else None
    return kind, message[:MESSAGE_CHARS], "\n".join(tail), hint
