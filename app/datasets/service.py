"""Save, check, describe and delete uploaded datasets; no commits here (the boundary commits)."""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.datasets import checker, reader, repository, storage
from app.datasets.models import Dataset
from app.datasets.schemas import DatasetFormat, DatasetList, DatasetOut, LabelSummary
from app.errors import Conflict, Invalid, NotFound

DEFAULT_LABEL = "label"


def new_id() -> str:
    return f"ds-{secrets.token_hex(6)}"


def save_upload(
    session: Session, settings: Settings, filename: str, stream: BinaryIO,
    label_column: str | None = None,
) -> Dataset:
    """Stream the file to disk, check it parses, record it; nothing stays on disk on failure."""
    fmt = reader.format_for(filename)
    dataset_id = new_id()
    directory = settings.uploads_dir / dataset_id
    directory.mkdir(parents=True)
    try:
        dataset = _store(directory, dataset_id, filename, fmt, stream, settings)
        if label_column:
            _check_label_column(dataset, label_column)
        session.add(dataset)
        session.flush()
    except BaseException:
        storage.remove_tree(directory)
        raise
    storage.remove_on_rollback(session, directory)
    return dataset


def _store(directory: Path, dataset_id: str, filename: str, fmt: str, stream: BinaryIO,
           settings: Settings) -> Dataset:
    partial = directory / ".partial"
    size = storage.write_stream(stream, partial, settings.max_upload_mb * 1024 * 1024)
    if size == 0:
        raise Invalid("file", "the file is empty")
    table = checker.inspect(partial, fmt, limits(settings))
    final = directory / storage.safe_name(filename, Path(filename).suffix)
    partial.rename(final)
    return Dataset(id=dataset_id, filename=filename[:300], format=fmt,
                   path=str(final.relative_to(settings.data_dir)), size_bytes=size, columns=table.columns,
                   num_rows=table.num_rows, preview=table.preview)


def limits(settings: Settings) -> reader.Limits:
    return reader.Limits(columns=settings.max_upload_columns, stats_rows=settings.max_stats_rows)


def _check_label_column(dataset: Dataset, column: str) -> None:
    if column not in dataset.columns:
        raise Invalid("label_column", f"no column named {column!r}; the columns are "
                      f"{', '.join(dataset.columns)}")


def file_path(dataset: Dataset) -> Path:
    """Dataset.path is relative to the data directory (absolute paths are kept as they are)."""
    return get_settings().data_dir / dataset.path


def describe(dataset: Dataset, label_column: str | None = None) -> DatasetOut:
    """The API view; value counts of label_column, or of a column named `label` if any."""
    if label_column:
        _check_label_column(dataset, label_column)
    column = label_column or (DEFAULT_LABEL if DEFAULT_LABEL in dataset.columns else None)
    label = None
    path = file_path(dataset)
    if column is not None and path.is_file():
        label = LabelSummary(**checker.label_summary(path, dataset.format, column,
                                                     get_settings().max_stats_rows))
    return DatasetOut(id=dataset.id, filename=dataset.filename, format=format_of(dataset),
                      size_bytes=dataset.size_bytes, columns=dataset.columns,
                      num_rows=dataset.num_rows, preview=dataset.preview, label=label,
                      created_at=dataset.created_at)


def format_of(dataset: Dataset) -> DatasetFormat:
    """The column holds a DatasetFormat: reader.format_for chose it at upload."""
    return cast(DatasetFormat, dataset.format)


def get(session: Session, dataset_id: str) -> Dataset:
    dataset = repository.get(session, dataset_id)
    if dataset is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return dataset


def dataset_list(session: Session, *, page: int, per_page: int) -> DatasetList:
    rows, total = repository.list_datasets(session, offset=(page - 1) * per_page, limit=per_page)
    return DatasetList(items=[describe_brief(row) for row in rows], total=total)


def describe_brief(dataset: Dataset) -> DatasetOut:
    """Without value counts: listing never re-reads files."""
    return DatasetOut(id=dataset.id, filename=dataset.filename, format=format_of(dataset),
                      size_bytes=dataset.size_bytes, columns=dataset.columns,
                      num_rows=dataset.num_rows, preview=dataset.preview,
                      created_at=dataset.created_at)


def delete(session: Session, settings: Settings, dataset: Dataset) -> None:
    """Refused while a queued or running job reads it; the file goes once the delete commits."""
    jobs = repository.unfinished_jobs_using(session, dataset.id)
    if jobs:
        raise Conflict(f"dataset {dataset.id} is used by unfinished job(s) "
                       f"{', '.join(map(str, jobs))}")
    session.delete(dataset)
    session.flush()
    storage.remove_after_commit(session, settings.uploads_dir / dataset.id)
