"""Try it on the web side: find the checkpoint (404 / 409), check the inputs (422), ask the
inference worker (app/inference/service.py; 503 when none answers) and hand back its rows."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from app import db
from app.config import get_settings
from app.errors import Conflict, NotFound
from app.inference import service as inference
from app.jobs.models import Checkpoint, Job
from app.tryit import inputs as tryit_inputs


def predict(job_id: int, name: str, inputs: list[Any],
            max_new_tokens: int | None = None) -> dict[str, Any]:
    """The checkpoint's predictions for `inputs`; blocks until the inference worker answers."""
    spec = _spec_with_checkpoint(job_id, name)
    payload = {"job_id": job_id, "checkpoint": name,
               "inputs": tryit_inputs.check(spec, inputs)}
    if tryit_inputs.task_of(spec) == "causal-lm-sft":
        payload["max_new_tokens"] = tryit_inputs.new_tokens(spec, max_new_tokens)
    return inference.ask("predict", payload)


def checkpoint_names(connection: Connection, job_id: int) -> list[str]:
    """The job's checkpoints, oldest first (final and final-merged last)."""
    return list(connection.scalars(select(Checkpoint.name).where(Checkpoint.job_id == job_id)
                                   .order_by(Checkpoint.step, Checkpoint.name)))


def default_checkpoint(names: list[str]) -> str | None:
    """`final` when the job has one, else its latest checkpoint (as `tunedeck download`)."""
    return "final" if "final" in names else (names[-1] if names else None)


def _spec_with_checkpoint(job_id: int, name: str) -> dict[str, Any]:
    def read(connection: Connection) -> tuple[Any, list[str], str | None]:
        job = connection.execute(select(Job.spec, Job.status).where(Job.id == job_id)).first()
        path = connection.scalar(select(Checkpoint.path).where(
            Checkpoint.job_id == job_id, Checkpoint.name == name))
        return job, checkpoint_names(connection, job_id) if path is None else [], path

    job, names, path = db.read_only(read)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if path is None and not names:
        raise Conflict(f"job {job_id} has no checkpoint yet ({job.status}); Try it needs one: "
                       "the first comes with the job's first save")
    if path is None:
        raise NotFound(f"job {job_id} has no checkpoint named {name!r}; it has: "
                       f"{', '.join(names)}")
    settings = get_settings()
    directory = (settings.data_dir / path).resolve()
    if not directory.is_relative_to(settings.job_dir(job_id).resolve()) \
            or not directory.is_dir():
        raise NotFound(f"checkpoint {name!r} of job {job_id} is no longer on disk")
    return dict(job.spec)


def job_spec(job_id: int) -> dict[str, Any]:
    spec = db.read_only(lambda c: c.scalar(select(Job.spec).where(Job.id == job_id)))
    if spec is None:
        raise NotFound(f"job {job_id} not found")
    return dict(spec)


def panel(spec: dict[str, Any], names: list[str], selected: str | None = None) -> dict[str, Any]:
    """What the Try it panel shows: the task's input fields and the checkpoints to pick from."""
    return {"task": tryit_inputs.task_of(spec), "fields": tryit_inputs.fields_of(spec),
            "chat": tryit_inputs.is_chat(spec), "checkpoints": names,
            "selected": selected if selected in names else default_checkpoint(names),
            "max_new_tokens": tryit_inputs.new_tokens(spec, None),
            "max_new_tokens_limit": tryit_inputs.MAX_NEW_TOKENS}
