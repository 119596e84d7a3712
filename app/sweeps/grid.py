"""Grid values typed as text (the form's Sweep box, `tunedeck sweep --grid`): standard library
only, so the command line can use it without the server's packages."""
from __future__ import annotations

from typing import Any


def scalar(text: str) -> Any:
    """`16` an int, `1e-5` a float (YAML 1.1 would keep it a string), true/false, null, else
    the text (quotes dropped)."""
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~"):
        return None
    return text.strip("\"'")


def values(text: str) -> list[Any]:
    """`1e-5, 3e-5` or `[1e-5, 3e-5]` -> [1e-05, 3e-05]."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [scalar(part) for part in text.split(",") if part.strip()]


def parse(lines: list[str], separator: str) -> dict[str, list[Any]]:
    """`key<separator>values` lines -> {key: values}; ValueError names a line without one."""
    grid: dict[str, list[Any]] = {}
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, found, rest = line.partition(separator)
        if not found or not key.strip():
            raise ValueError(f"{line.strip()!r}: write key{separator}value, value, ...")
        grid[key.strip()] = values(rest)
    return grid
