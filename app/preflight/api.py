"""POST /api/v1/preflight and /api/v1/preflight/measure: a job spec's data report before launch."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.jobs.schemas import JobSpec
from app.openapi_docs import Responses, error
from app.preflight import service
from app.preflight.service import DEFAULT_MEASURE_STEPS

router = APIRouter(prefix="/api/v1/preflight", tags=["preflight"])

ERRORS: Responses = {400: error("The body could not be decoded (not UTF-8 JSON)"),
                     422: {"description": "The spec names a bad field (a missing split, column, model)"},
          503: error("No inference worker answered in time (start `tunedeck worker "
                     "--inference`, or `tunedeck serve`)")}


@router.post("", responses=ERRORS)
def preflight(spec: JobSpec) -> dict[str, Any]:
    """The data report of a job spec (the body of POST /api/v1/jobs); nothing is queued."""
    return service.report(spec)


@router.post("/measure", responses=ERRORS)
def measure(spec: JobSpec, steps: Annotated[int, Query(ge=1, le=200)] = DEFAULT_MEASURE_STEPS,
            ) -> dict[str, Any]:
    """Train `steps` real optimizer steps of the spec on the inference worker's device and
    throw them away: samples/s, peak memory, the whole job's ETA, on a GPU a batch size."""
    return service.measure(spec, steps)
