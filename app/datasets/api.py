"""JSON API for uploaded datasets under /api/v1."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile

from app.datasets import service
from app.datasets.models import Dataset
from app.datasets.schemas import DatasetList, DatasetOut
from app.deps import SessionDep, SettingsDep
from app.openapi_docs import Responses, error

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])

NOT_FOUND: Responses = {404: error("No such dataset")}
LabelColumn = Annotated[str | None, Query(max_length=200, description=(
    "column to count values of; default: a column named label"))]


def get_dataset_or_404(
    session: SessionDep, dataset_id: Annotated[str, Path(max_length=32)]
) -> Dataset:
    return service.get(session, dataset_id)


DatasetDep = Annotated[Dataset, Depends(get_dataset_or_404)]


@router.post("", status_code=201, response_model=DatasetOut, responses={
    400: error("The multipart body is malformed"),
    413: error("The file is larger than TUNEDECK_MAX_UPLOAD_MB"),
    422: {"description": "Unsupported type, not UTF-8, no header, empty, or does not parse"}})
def upload_dataset(
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="a .csv, .tsv, .jsonl or .parquet file")],
    label_column: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetOut:
    """Upload a table; refer to it in a job spec as dataset.source=upload, path=<id>."""
    dataset = service.save_upload(session, settings, file.filename or "", file.file,
                                  label_column)
    return service.describe(dataset, label_column)


@router.get("", response_model=DatasetList)
def list_datasets(
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DatasetList:
    """Uploaded datasets, newest first (without value counts)."""
    return service.dataset_list(session, page=page, per_page=per_page)


@router.get("/{dataset_id}", response_model=DatasetOut, responses={
    **NOT_FOUND, 422: {"description": "label_column is not a column"}})
def get_dataset(dataset: DatasetDep, label_column: LabelColumn = None) -> DatasetOut:
    return service.describe(dataset, label_column)


@router.delete("/{dataset_id}", status_code=204, responses={
    **NOT_FOUND, 409: error("A queued or running job uses it")})
def delete_dataset(dataset: DatasetDep, session: SessionDep, settings: SettingsDep) -> None:
    service.delete(session, settings, dataset)
