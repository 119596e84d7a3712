"""The Try it panel of the job page (htmx): pick a checkpoint, type inputs in the task's shape,
see the predictions rendered as the predictions view renders them."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app import db
from app.deps import JobDep, JobId
from app.errors import Conflict, Invalid, NotFound, Unavailable, WorkerFailed
from app.jobs.views import render, sentence_segments
from app.tryit import inputs as tryit_inputs
from app.tryit import service

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}/try")
def panel(request: Request, job: JobDep, checkpoint: str | None = None) -> HTMLResponse:
    """The panel, with `checkpoint` picked (a checkpoint row's Try it button)."""
    names = db.read_only(lambda c: service.checkpoint_names(c, job.id))
    return render(request, "jobs/_tryit.html", job=job,
                  tryit=service.panel(job.spec, names, checkpoint))


@router.post("/jobs/{job_id}/try")
async def try_it(request: Request, job_id: JobId) -> HTMLResponse:
    """Async only to read the form; the wait for the inference worker runs in the pool."""
    form = await request.form()
    return await run_in_threadpool(_answer, request, job_id, form)


def _answer(request: Request, job_id: int, form: FormData) -> HTMLResponse:
    # Errors render in the panel with a 200: htmx swaps only successful answers.
    try:
        spec = service.job_spec(job_id)
        inputs, new_tokens = inputs_from_form(spec, form)
        answer = service.predict(job_id, str(form.get("checkpoint") or ""), inputs,
                                 new_tokens)
    except Invalid as exc:
        return _error(request, exc.message, exc.field)
    except (NotFound, Conflict, Unavailable, WorkerFailed) as exc:
        return _error(request, str(exc))
    task = tryit_inputs.task_of(spec)
    return render(request, "jobs/tryit/_result.html", task=task, answer=answer,
                  sentences=_sentences(answer["predictions"]) if
                  task == "token-classification" else None)


def _error(request: Request, message: str, field: str | None = None) -> HTMLResponse:
    return render(request, "jobs/tryit/_result.html", error=message, field=field)


def inputs_from_form(spec: dict[str, Any], form: FormData) -> tuple[list[Any], int | None]:
    """The panel's fields as API inputs: for text tasks one input per line (a text pair's
    lines pair up), for token classification one sentence per line, for causal-lm-sft one
    prompt (or a system and a user turn)."""
    fields, task = tryit_inputs.fields_of(spec), tryit_inputs.task_of(spec)
    typed = {f: str(form.get(f"field.{f}") or "").replace("\r\n", "\n") for f in fields}
    if task != "causal-lm-sft":
        return _lines(typed, fields), None
    if tryit_inputs.is_chat(spec):
        system = str(form.get("system") or "").strip()
        turns = [{"role": "system", "content": system}] if system else []
        value: Any = [*turns, {"role": "user", "content": typed[fields[0]]}]
    else:
        value = typed[fields[0]]
    return [{fields[0]: value}], _new_tokens(form.get("max_new_tokens"))


def _lines(typed: dict[str, str], fields: list[str]) -> list[dict[str, str]]:
    columns = {f: [line.strip() for line in typed[f].split("\n")] for f in fields}
    rows = [dict(zip(fields, values, strict=True))
            for values in zip(*(columns[f] for f in fields), strict=False)
            if any(values)]
    counts = {f: sum(1 for line in columns[f] if line) for f in fields}
    if len(set(counts.values())) > 1:
        raise Invalid(f"inputs.{fields[1]}", "give one line in each box per input: "
                      + ", ".join(f"{f} has {n}" for f, n in counts.items()))
    if not rows:
        raise Invalid(f"inputs.0.{fields[0]}", "type at least one input")
    return rows


def _new_tokens(value: Any) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise Invalid("max_new_tokens", f"an integer from 1 to {tryit_inputs.MAX_NEW_TOKENS}")
    return int(text)


def _sentences(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [sentence_segments(r["tokens"], [(e["type"], e["start"], e["end"])
                                            for e in r["entities"]], None) for r in rows]
