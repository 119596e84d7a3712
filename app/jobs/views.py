"""HTML pages and htmx partials for jobs. Each partial is a `_x.html` the page includes."""
from __future__ import annotations

import re
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import csrf_token
from app.config import get_settings
from app.datasets import service as datasets
from app.datasets.models import Dataset
from app.deps import JobDep, SessionDep, SettingsDep
from app.errors import Conflict, Invalid, NotFound, TooLarge
from app.hub import service as hub
from app.jobs import forms, repository, service
from app.jobs.iob import iob_spans
from app.jobs.models import Job, JobStatus
from app.jobs.outputs import PredictionPage, TokenPredictionOut
from app.sweeps import forms as sweep_forms
from app.templating import templates
from app.tryit import service as tryit
from app.workers import service as workers

router = APIRouter(include_in_schema=False)

Page = Annotated[int, Query(ge=1, le=1_000_000)]
PER_PAGE = 25
PREDICTIONS_PER_PAGE = 20
UPLOAD_SPLITS = {"dataset.train_split": "train[:80%]", "dataset.eval_split": "train[80%:]"}


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("csrf", csrf_token(request))
    return templates.TemplateResponse(request, name, context, status_code=status_code)


# ---------------------------------------------------------------- job list

@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/jobs", status_code=303)


Tag = Annotated[str, Query(max_length=50)]


@router.get("/jobs")
def job_list(request: Request, session: SessionDep, page: Page = 1,
             status: JobStatus | None = None, tag: Tag = "") -> HTMLResponse:
    return render(request, "jobs/index.html", **_table(session, page, status, tag))


@router.get("/jobs/table")
def job_table(request: Request, session: SessionDep, page: Page = 1,
              status: JobStatus | None = None, tag: Tag = "") -> HTMLResponse:
    return render(request, "jobs/_table.html", **_table(session, page, status, tag))


def _table(session: Session, page: int, status: JobStatus | None, tag: str) -> dict[str, Any]:
    jobs, total = repository.list_jobs(session, status=status, offset=(page - 1) * PER_PAGE,
                                       limit=PER_PAGE, tag=tag.strip() or None)
    pages = max(1, -(-total // PER_PAGE))
    return {"jobs": jobs, "total": total, "page": page, "pages": pages, "status": status,
            "statuses": list(JobStatus), "progress_of": service.progress_of,
            "headline": headline, "tag": tag.strip()}


def headline(job: Job) -> dict[str, tuple[str, float] | None]:
    """The latest train loss and the job's first eval metric (else eval loss)."""
    latest = job.latest_metrics or {}
    names = [f"eval/{m}" for m in job.spec.get("metrics") or []] + ["eval/loss"]
    found = [(name, latest[name]) for name in names if name in latest]
    loss = latest.get("train/loss")
    return {"loss": ("train/loss", loss) if loss is not None else None,
            "eval": found[0] if found else None}


# ---------------------------------------------------------------- new job form

@router.get("/jobs/new")
def new_job(request: Request, session: SessionDep,
            clone: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
            preset: str | None = None) -> HTMLResponse:
    values, source = forms.blank_values(), None
    if clone is not None:
        job = repository.get_job(session, clone)
        if job is None:
            raise NotFound(f"job {clone} not found")
        values, source = forms.values_for_spec(job.spec), job
    elif preset in forms.PRESETS:
        values = forms.values_for_spec(forms.PRESETS[preset])
    return _form(request, session, values, {}, cloned_from=source)


@router.get("/jobs/new/task")
def new_job_task(request: Request, session: SessionDep, task: str = "") -> HTMLResponse:
    """The task picker changed: the new task's dataset columns, options and metrics (htmx,
    out of band), with what was typed kept."""
    values = forms.values_for_task(forms.values_from(request.query_params), task)
    return render(request, "jobs/_task_fields.html", **_form_context(session, values, {}))


@router.post("/jobs")
async def submit_job(request: Request, session: SessionDep) -> Response:
    """Async only to read the form; the database work runs in the thread pool."""
    values = forms.values_from(await request.form())
    return await run_in_threadpool(_submit, request, session, values)


def _submit(request: Request, session: Session, values: forms.Values) -> Response:
    """A job, or with the Sweep section's button a sweep of the form's spec."""
    try:
        if values.get("launch") == "sweep":
            sweep = sweep_forms.create_from_form(session, values, get_settings())
            return RedirectResponse(f"/sweeps/{sweep.id}", status_code=303)
        job = service.create_job(session, forms.build_spec(values))
    except forms.FormInvalid as exc:
        return _form(request, session, values, exc.errors, status_code=422)
    except Invalid as exc:
        field = forms.field_for(exc.field.split("."), exc.message, values)
        return _form(request, session, values, {field: exc.message}, status_code=422)
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _form(request: Request, session: Session, values: forms.Values, errors: dict[str, str],
          status_code: int = 200, cloned_from: Job | None = None) -> HTMLResponse:
    return render(request, "jobs/new.html", status_code, cloned_from=cloned_from,
                  presets=forms.PRESET_TITLES, **_form_context(session, values, errors))


def _form_context(session: Session, values: forms.Values,
                  errors: dict[str, str]) -> dict[str, Any]:
    upload = None
    if values.get("dataset.upload"):
        upload = session.get(Dataset, values["dataset.upload"])
    return {"values": values, "errors": errors, "choices": forms.CHOICES, "upload": upload,
            "field_errors": set(errors) - {"__all__"}}


@router.post("/jobs/upload")
def upload_dataset(request: Request, session: SessionDep, settings: SettingsDep,
                   file: UploadFile, task: Annotated[str, Form()] = "") -> HTMLResponse:
    """Save an uploaded table; the partial previews it and offers its columns as pickers."""
    try:
        upload = datasets.save_upload(session, settings, file.filename or "upload", file.file)
    except (Invalid, TooLarge) as exc:
        message = exc.message if isinstance(exc, Invalid) else str(exc)
        return render(request, "jobs/_upload.html", 422, upload=None, upload_error=message)
    values = {**forms.values_for_task({}, task), **UPLOAD_SPLITS,
              **_guess_columns(upload.columns), "dataset.source": "upload"}
    return render(request, "jobs/_upload.html", upload=upload, values=values, errors={},
                  oob=True)


def _guess_columns(columns: list[str]) -> dict[str, str]:
    """Label: a column named like a label, else the last; text: the first other column."""
    label = next((c for c in columns if c.lower() in ("label", "labels", "target", "class")),
                 columns[-1])
    texts = [c for c in columns if c != label and c.lower() not in ("id", "idx")] + ["", ""]
    return {"dataset.label_field": label, "dataset.text_fields.0": texts[0],
            "dataset.text_fields.1": ""}


# ---------------------------------------------------------------- job page and its partials

@router.get("/jobs/{job_id}")
def job_page(request: Request, job: JobDep, session: SessionDep,
             settings: SettingsDep) -> HTMLResponse:
    checkpoints = _checkpoints(session, job)
    names = [c.name for c in checkpoints["checkpoints"]]
    return render(request, "jobs/detail.html", **{**_status(job, session), **checkpoints},
                  tryit=tryit.panel(job.spec, names),
                  predictions=_predictions(session, job, _largest_errors_first(job), 1),
                  cursor=repository.last_metric_id(session, job.id),
                  attempts=repository.attempts(session, job.id),
                  **hub.card(session, settings, job.id),
                  spec_yaml=yaml.safe_dump(job.spec, sort_keys=False))


@router.post("/jobs/{job_id}/annotations")
async def annotate_job(request: Request, job: JobDep, session: SessionDep) -> HTMLResponse:
    """The job page's tags (comma-separated) and note; async only to read the form."""
    form = await request.form()
    tags = [t for t in str(form.get("tags") or "").split(",") if t.strip()]
    return await run_in_threadpool(_annotate, request, session, job, tags,
                                   str(form.get("note") or ""))


def _annotate(request: Request, session: Session, job: Job, tags: list[str],
              note: str) -> HTMLResponse:
    try:
        service.annotate(session, job, tags=tags, note=note, clear_note=True)
    except Invalid as exc:
        session.rollback()
        session.refresh(job)
        return render(request, "jobs/_annotations.html", 422, job=job, annotation_error=exc.message,
                      error_field=exc.field.split(".")[0],
                      typed={"tags": ", ".join(tags), "note": note})
    return render(request, "jobs/_annotations.html", job=job, saved=True)


@router.get("/jobs/{job_id}/status")
def job_status(request: Request, job: JobDep, session: SessionDep) -> HTMLResponse:
    return render(request, "jobs/_status.html", **_status(job, session))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job: JobDep, session: SessionDep) -> HTMLResponse:
    try:
        service.cancel_job(session, job)
    except Conflict:
        pass  # finished meanwhile: the refreshed status says so
    return render(request, "jobs/_status.html", **_status(job, session))


def _status(job: Job, session: Session) -> dict[str, Any]:
    waiting = (workers.waiting_for(session, job.spec, get_settings())
               if job.status == JobStatus.queued else None)
    return {"job": job, "progress": service.progress_of(job),
            "finished": JobStatus(job.status).finished, "waiting": waiting}


@router.get("/jobs/{job_id}/checkpoints")
def job_checkpoints(request: Request, job: JobDep, session: SessionDep) -> HTMLResponse:
    return render(request, "jobs/_checkpoints.html", **_checkpoints(session, job))


def _checkpoints(session: Session, job: Job) -> dict[str, Any]:
    rows = repository.checkpoints(session, job.id)
    names = sorted({key for row in rows for key in row.metrics or {} if is_metric(key)})
    return {"job": job, "checkpoints": rows, "checkpoint_metrics": names}


@router.get("/jobs/{job_id}/predictions")
def job_predictions(request: Request, job: JobDep, session: SessionDep,
                    errors_only: bool = False, page: Page = 1) -> HTMLResponse:
    return render(request, "jobs/_predictions.html", job=job,
                  predictions=_predictions(session, job, errors_only, page))


def is_metric(name: str) -> bool:
    """Leaves out what Trainer logs about speed and time, which is not model quality."""
    return not re.search(r"runtime|per_second|flos|epoch$", name)


def _predictions(session: Session, job: Job, errors_only: bool, page: int) -> dict[str, Any]:
    result: PredictionPage = service.prediction_page(
        session, job, errors_only=errors_only, page=page, per_page=PREDICTIONS_PER_PAGE)
    pages = max(1, -(-result.total // PREDICTIONS_PER_PAGE))
    metrics = {k: v for k, v in (result.metrics or {}).items() if is_metric(k)}
    view = {"result": result, "metrics": metrics, "errors_only": errors_only, "page": page,
            "pages": pages}
    if result.task == "text-regression":
        view["points"] = _regression_points(session, job)
    elif result.task == "token-classification":
        view["sentences"] = [_sentence_lines(p) for p in result.items
                             if isinstance(p, TokenPredictionOut)]
    return view


def _largest_errors_first(job: Job) -> bool:
    """A regression job's page opens on its largest errors (the toggle's checked state)."""
    return job.spec.get("task") == "text-regression"


SCATTER_POINTS = 5000  # enough to see the shape; the page stays light


def _regression_points(session: Session, job: Job) -> list[list[float]]:
    """[true values, predicted values] of the job's labelled rows, sorted by true value."""
    pairs = sorted(repository.regression_pairs(session, job.id, SCATTER_POINTS))
    return [[t for t, _ in pairs], [p for _, p in pairs]]


def sentence_segments(tokens: list[str], spans: list[tuple[str, int, int]],
              other: list[tuple[str, int, int]] | None) -> list[dict[str, Any]]:
    """The sentence as words and entities; an entity not in `other` is a mismatch."""
    starts = {start: (kind, end) for kind, start, end in spans}
    segments, i = [], 0
    while i < len(tokens):
        if i in starts:
            kind, end = starts[i]
            segments.append({"type": kind, "start": i, "end": end,
                             "text": " ".join(tokens[i:end]),
                             "mismatch": other is not None and (kind, i, end) not in other})
            i = end
        else:
            segments.append({"type": None, "text": tokens[i]})
            i += 1
    return segments


def _sentence_lines(p: TokenPredictionOut) -> list[tuple[str, list[dict[str, Any]]]]:
    """The true line (when labelled) and the predicted line of one sentence."""
    predicted = [(e.type, e.start, e.end) for e in p.entities]
    if p.tags is None:
        return [("predicted", sentence_segments(p.tokens, predicted, None))]
    true = iob_spans(p.tags)
    return [("true", sentence_segments(p.tokens, true, predicted)),
            ("predicted", sentence_segments(p.tokens, predicted, true))]
