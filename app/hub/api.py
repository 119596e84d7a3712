"""JSON API for pushes to the Hugging Face Hub, under /api/v1/jobs/{id}."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.deps import JobDep, SessionDep, SettingsDep
from app.hub import service
from app.hub.models import HubPush
from app.openapi_docs import Responses, error

router = APIRouter(prefix="/api/v1/jobs", tags=["hub"])

ERRORS: Responses = {404: error("No such job, checkpoint or push")}


class PushIn(BaseModel):
    repo_id: str = Field(max_length=200, examples=["my-org/mrpc-bert"],
                         description="'name' (the token owner's namespace) or 'namespace/name'")
    private: bool = Field(default=True, description="create the repository private")

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str) -> str:
        return service.check_repo_id(value)


class PushOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int
    checkpoint: str
    repo_id: str
    private: bool
    status: str = Field(description="queued, running, succeeded or failed")
    stage: str = Field(description="waiting, creating repo, uploading or done")
    files_total: int | None
    bytes_total: int | None
    files_done: int
    bytes_done: int
    url: str | None = Field(description="the commit on the Hub, once pushed")
    commit: str | None
    error: str | None
    note: str | None = Field(default=None, description="why a push still waits, if it does")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def to_out(push: HubPush, settings_note: str | None = None) -> PushOut:
    return PushOut.model_validate(push).model_copy(update={"note": settings_note})


@router.post("/{job_id}/checkpoints/{name}/push", status_code=202, response_model=PushOut,
             responses={**ERRORS,
                        409: error("The server has no TUNEDECK_HF_TOKEN"),
                        503: error("The broker could not be reached")})
def push_checkpoint(job: JobDep, name: str, body: PushIn, settings: SettingsDep) -> PushOut:
    """Push the checkpoint to the Hub on the inference worker; poll the returned push."""
    return to_out(service.start(settings, job.id, name, body.repo_id, body.private))


@router.get("/{job_id}/pushes", response_model=list[PushOut], responses=ERRORS)
def list_pushes(job: JobDep, session: SessionDep, settings: SettingsDep) -> list[PushOut]:
    return [to_out(p, service.waiting_note(p, settings))
            for p in service.pushes(session, job.id)]


@router.get("/{job_id}/pushes/{push_id}", response_model=PushOut, responses=ERRORS)
def get_push(job: JobDep, push_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
             session: SessionDep, settings: SettingsDep) -> PushOut:
    found = service.push(session, job.id, push_id)
    return to_out(found, service.waiting_note(found, settings))
