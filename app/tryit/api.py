"""POST /api/v1/jobs/{id}/checkpoints/{name}/predict: try a trained checkpoint."""
from __future__ import annotations

from fastapi import APIRouter

from app.deps import JobId
from app.openapi_docs import error
from app.tryit import service
from app.tryit.schemas import TryItIn, TryItOut

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


# A plain def: service.predict blocks (FastAPI runs it in its thread pool) while the inference
# worker answers; it holds no database connection meanwhile.
@router.post("/{job_id}/checkpoints/{name}/predict", response_model=TryItOut, responses={
    400: error("The body could not be decoded (not UTF-8 JSON)"),
    404: error("No such job or checkpoint (or it is no longer on disk)"),
    409: error("The job has no checkpoint yet"),
    422: {"description": "A bad input: `loc` names it, e.g. body.inputs.0.text"},
    500: error("The inference worker failed on this request"),
    503: error("No inference worker answered within TUNEDECK_INFERENCE_TIMEOUT_SECONDS")})
def predict(job_id: JobId, name: str, body: TryItIn) -> TryItOut:
    """The checkpoint's predictions for `inputs`, in the task's prediction rows; answered by
    the inference worker (`tunedeck serve` starts one) while other jobs train."""
    return TryItOut(**service.predict(job_id, name, body.inputs, body.max_new_tokens))
