"""Entities in IOB2 tags (token-classification), as seqeval reads them."""
from __future__ import annotations

from typing import Any


def iob_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end) of each entity in IOB2 tags; an I- that continues nothing starts one,
    as seqeval reads it."""
    spans: list[tuple[str, int, int]] = []
    current: list[Any] | None = None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        if current and (prefix != "I" or kind != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if prefix in ("B", "I") and current is None:
            current = [kind, i]
    return spans
