"""The Jinja2 environment every HTML view renders with (templates/ at the repository root)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

import app

TEMPLATES_DIR = Path(app.__file__).resolve().parent.parent / "templates"


def duration(seconds: float | None) -> str:
    """1h 02m, 3m 05s, 12s; an empty string for unknown."""
    if seconds is None or seconds < 0:
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def number(value: float | None, digits: int = 4) -> str:
    """Significant digits, plain for everyday magnitudes and scientific for tiny ones."""
    if value is None:
        return ""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.{digits}g}"


def filesize(size: int | None) -> str:
    value = float(size or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


def timestamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def elapsed(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters.update(duration=duration, number=number, filesize=filesize,
                             timestamp=timestamp)
templates.env.globals.update(elapsed=elapsed)
