"""JSON API: GET /api/v1/compare and /api/v1/compare/flips."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.compare import service
from app.compare.schemas import CompareOut, FlipPage
from app.deps import SessionDep
from app.openapi_docs import Responses, error

router = APIRouter(prefix="/api/v1/compare", tags=["compare"])

ERRORS: Responses = {404: error("One of the jobs does not exist"),
          422: {"description": "`jobs` is not 2 to 12 comma-separated ids (or another "
                               "parameter is out of range)"}}
JobIds = Annotated[str, Query(min_length=1, max_length=200, description="e.g. 1,2,3: 2 to 12 "
                              "job ids; the first is the baseline of the flips")]
Tolerance = Annotated[float | None, Query(ge=0, le=1e12, description=(
    "text-regression: a row is right when |prediction - label| <= tolerance (default: a "
    "tenth of the true labels' range)"))]


# Compare charts are half the job page's width: 500 points per series (125 M4 buckets) draw
# them fully, and let long runs chart from coarser tiles (benchmarks/compare.py, P14).
DEFAULT_POINTS = 500


@router.get("", response_model=CompareOut, responses=ERRORS)
def compare(
    jobs: JobIds, session: SessionDep,
    max_points: Annotated[int, Query(ge=4, le=100_000, description=(
        "per series, as /jobs/{id}/metrics"))] = DEFAULT_POINTS,
    tolerance: Tolerance = None,
) -> Response:
    """Spec diff, final metrics (best marked), each job's curves and the flips' summary."""
    out = service.compare(session, service.parse_ids(jobs), max_points=max_points,
                          tolerance=tolerance)
    # Serialized by pydantic-core at once: FastAPI would validate the tens of thousands of
    # points again first.
    return Response(out.model_dump_json(), media_type="application/json")


@router.get("/flips", response_model=FlipPage, responses=ERRORS)
def flips(
    jobs: JobIds, session: SessionDep,
    direction: Literal["all", "fixed", "broken"] = "all",
    label: Annotated[str | None, Query(max_length=200, description="one class")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 20,
    tolerance: Tolerance = None,
) -> FlipPage:
    """Rows right in one job and wrong in another; fixed/broken relative to the first job."""
    return service.flip_page(session, service.parse_ids(jobs), direction=direction,
                             label=label or None, page=page, per_page=per_page,
                             tolerance=tolerance)
