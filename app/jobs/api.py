"""JSON API for jobs under /api/v1."""
from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from app.db import read_only
from app.deps import JobDep, JobId, SessionDep, SettingsDep
from app.errors import NotFound
from app.jobs import repository, series, service
from app.jobs.archive import stream_snapshot
from app.jobs.events import STREAMS_RETRY_AFTER, EventStream, hub_of
from app.jobs.models import JobStatus
from app.jobs.outputs import AttemptOut, CheckpointOut, JobOut, JobPage, MetricsOut, PredictionPage
from app.jobs.schemas import JobPatch, JobSpec, untagged_errors
from app.openapi_docs import Responses, error

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

ERRORS: Responses = {404: error("No such job")}


async def spec_errors(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, with the task union's tag taken out of each location: an error in a
    multi-label spec's threshold is at `body.threshold`, as in every other spec."""
    assert isinstance(exc, RequestValidationError)
    return await request_validation_exception_handler(
        request, RequestValidationError(untagged_errors(exc.errors()), body=exc.body))


@router.post("", status_code=201, response_model=JobOut, responses={
    400: error("The body could not be decoded (not UTF-8 JSON)"),
    422: {"description": "The spec names a bad field"}})
def submit_job(spec: JobSpec, session: SessionDep) -> JobOut:
    return service.to_out(service.create_job(session, spec))


# The two reads scripts and dashboards poll. They run on the event loop, not in the thread
# pool: each is one indexed SELECT on an autocommit connection whose waits are bounded (see
# db.read_only / READ_TIMEOUT_SECONDS), and a thread hop (GIL hand-offs between the loop and
# a pool thread) cost more CPU than the query itself. Measured in benchmarks/api_load.py (P5);
# tests/app/test_event_loop.py fails if either holds the loop over 50 ms.

@router.get("", response_model=JobPage)
async def list_jobs(
    status: JobStatus | None = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=50,
                                     description="only jobs with this tag")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Response:
    body = read_only(partial(service.job_page_json, status=status, page=page,
                             per_page=per_page, tag=tag))
    return Response(body, media_type="application/json")


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS)
async def get_job(job_id: JobId) -> Response:
    body = read_only(partial(service.job_json, job_id=job_id))
    if body is None:
        raise NotFound(f"job {job_id} not found")
    return Response(body, media_type="application/json")


@router.patch("/{job_id}", response_model=JobOut, responses={
    **ERRORS, 400: error("The body could not be decoded (not UTF-8 JSON)"),
    422: {"description": "A bad tag or too long a note"}})
def annotate_job(job: JobDep, patch: JobPatch, session: SessionDep) -> JobOut:
    """Replace the job's tags and/or note, in any state; `"note": null` clears the note."""
    given = patch.model_fields_set
    return service.to_out(service.annotate(
        session, job, tags=patch.tags, note=patch.note,
        clear_note="note" in given and patch.note is None))


@router.post("/{job_id}/cancel", response_model=JobOut,
             responses={**ERRORS, 409: error("The job has already finished")})
def cancel_job(job: JobDep, session: SessionDep) -> JobOut:
    return service.to_out(service.cancel_job(session, job))


@router.get("/{job_id}/attempts", response_model=list[AttemptOut], responses=ERRORS)
def list_attempts(job: JobDep, session: SessionDep) -> list[AttemptOut]:
    """Each time a worker took the job: host, times, outcome, the checkpoint it resumed from."""
    return [AttemptOut.model_validate(row) for row in repository.attempts(session, job.id)]


@router.get("/{job_id}/metrics", response_model=MetricsOut, responses=ERRORS)
def get_metrics(
    job: JobDep,
    session: SessionDep,
    after_step: Annotated[int, Query(ge=-1, le=2**31 - 1)] = -1,
    max_points: Annotated[int, Query(ge=4, le=100_000)] = 2000,
    name: Annotated[list[str] | None, Query(max_length=50)] = None,
) -> MetricsOut:
    return series.metric_series(session, job.id, after_step=after_step, max_points=max_points,
                                 names=name)


MAX_EVENT_ID = 2**62


def parse_last_event_id(value: str | None) -> int:
    """The Last-Event-ID header as a cursor; 0 (replay from the start) unless it is a decimal
    id of at most MAX_EVENT_ID. Garbage is ignored rather than refused: a browser only sends
    back ids we sent, and a client that resumes from the start loses nothing."""
    text = (value or "").strip()
    if len(text) > 19 or not (text.isascii() and text.isdigit()):  # "²".isdigit() is True
        return 0
    cursor = int(text)
    return cursor if cursor <= MAX_EVENT_ID else 0


@router.get("/{job_id}/events", responses={**ERRORS, 200: {
    "content": {"text/event-stream": {}},
    "description": "Server-sent events: metric, status, progress, end"},
    503: error("This web process has TUNEDECK_MAX_STREAMS streams open, or is shutting down;"
               " retry after Retry-After seconds")})
async def stream_events(
    job_id: JobId,
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventStream:
    # async, with one autocommit read on the event loop (as get_job): a sync route with a
    # session dependency holds a pooled connection while it waits for a worker thread, and
    # a few hundred streams opening at once then starve the pool (issue 17 item 4).
    cursor = max(after or 0, parse_last_event_id(last_event_id))
    hub = hub_of(request.app)
    if not hub.reserve():
        raise HTTPException(503, "too many event streams open on this server; retry shortly",
                            headers={"Retry-After": str(STREAMS_RETRY_AFTER)})
    found = False
    try:
        found = read_only(partial(repository.job_row, job_id=job_id)) is not None
    finally:
        if not found:
            hub.release()
    if not found:
        raise HTTPException(404, f"job {job_id} not found")
    return EventStream(hub, job_id, cursor)


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut], responses=ERRORS)
def list_checkpoints(job: JobDep, session: SessionDep) -> list[CheckpointOut]:
    return [CheckpointOut.model_validate(c) for c in repository.checkpoints(session, job.id)]


@router.get("/{job_id}/checkpoints/{name}/download", responses={**ERRORS, 200: {
    "content": {"application/x-tar": {}}, "description": "A tar archive of the checkpoint"}})
def download_checkpoint(
    job: JobDep, name: str, session: SessionDep, settings: SettingsDep
) -> StreamingResponse:
    checkpoint = repository.checkpoint(session, job.id, name)
    if checkpoint is None:
        raise NotFound(f"job {job.id} has no checkpoint named {name!r}")
    directory = (settings.data_dir / checkpoint.path).resolve()
    job_dir = settings.job_dir(job.id).resolve()
    if not directory.is_relative_to(job_dir) or not directory.is_dir():
        raise NotFound(f"checkpoint {name!r} of job {job.id} is no longer on disk")
    filename = f"job-{job.id}-{checkpoint.name}.tar"
    try:
        blocks = stream_snapshot(directory, f"job-{job.id}-{checkpoint.name}",
                                 settings.data_dir / "tmp")
    except OSError as exc:
        if directory.is_dir():
            raise
        # deleted (save_total_limit) between the check above and the snapshot
        raise NotFound(f"checkpoint {name!r} of job {job.id} is no longer on disk") from exc
    return StreamingResponse(
        blocks,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/{job_id}/predictions", response_model=PredictionPage, responses=ERRORS)
def list_predictions(
    job: JobDep,
    session: SessionDep,
    errors_only: bool = False,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PredictionPage:
    return service.prediction_page(session, job, errors_only=errors_only, page=page,
                                   per_page=per_page)
