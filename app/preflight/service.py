"""Pre-flight: a job spec's data report (and, opt-in, a measured run) from the inference worker.

The web checks what it can itself (the spec's schema, an upload's id, local roots), then asks
the inference worker (worker/preflight/), which has the tokenizer and the data; nothing is
queued as a job. Both calls block their thread: call them from plain `def` routes.
"""
from __future__ import annotations

from typing import Any

from app import db
from app.config import get_settings
from app.inference import service as inference
from app.jobs.schemas import JobSpec
from app.jobs.service import check_spec

DEFAULT_MEASURE_STEPS = 20


def _checked(spec: JobSpec) -> dict[str, Any]:
    with db.session_scope() as session:
        check_spec(session, spec)
    return spec.model_dump(mode="json")


def report(spec: JobSpec) -> dict[str, Any]:
    """Rows, labels, token lengths, truncation, duplicates, steps and ranked warnings."""
    return inference.ask("preflight", {"spec": _checked(spec)},
                         timeout=get_settings().preflight_timeout_seconds)


def measure(spec: JobSpec, steps: int = DEFAULT_MEASURE_STEPS) -> dict[str, Any]:
    """Samples/s, peak memory and the job's ETA from `steps` real optimizer steps (and on a
    GPU the largest batch that fits)."""
    return inference.ask("measure", {"spec": _checked(spec), "steps": steps},
                         timeout=get_settings().measure_timeout_seconds)
