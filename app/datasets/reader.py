"""Check and describe uploaded tables: CSV, TSV, JSON Lines and Parquet.

The web process reads files with the standard library; pyarrow is imported only for Parquet.
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

from app.errors import Invalid

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "json", ".ndjson": "json",
    ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}
PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 300
TOP_LABELS = 100
MISSING = object()
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Limits:
    """Per-request work bounds (TUNEDECK_MAX_UPLOAD_COLUMNS, TUNEDECK_MAX_STATS_ROWS)."""

    columns: int = 1000
    stats_rows: int = 1_000_000


@dataclass
class Table:
    columns: list[str]
    num_rows: int
    preview: list[dict[str, Any]]


def format_for(filename: str) -> str:
    """The dataset format named by a file's extension."""
    suffix = Path(filename.lower()).suffix
    if suffix not in FORMATS:
        supported = ", ".join(sorted(FORMATS))
        raise Invalid("file", f"{filename!r}: unsupported file type; use one of {supported}")
    return FORMATS[suffix]


def inspect(path: Path, fmt: str, limits: Limits = Limits()) -> Table:
    """Parse the whole file once (Parquet: its metadata and first rows); raise Invalid with the
    first problem found."""
    if fmt == "parquet":
        return _inspect_parquet(path, limits)
    _check_encoding_start(path)
    columns: list[str] = []
    preview: list[dict[str, Any]] = []
    count = 0
    for row in _rows(path, fmt, columns, limits.columns):
        if count < PREVIEW_ROWS:
            preview.append(row)
        count += 1
    if count == 0:
        raise Invalid("file", "the file has no data rows" if columns else "the file is empty")
    return Table(columns=columns, num_rows=count, preview=clean(preview))


def label_summary(path: Path, fmt: str, column: str, max_rows: int) -> dict[str, Any]:
    """Value counts of one column in the first `max_rows` rows (cached by path, size, mtime)."""
    stat = path.stat()
    return _label_summary(str(path), fmt, column, max_rows, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _label_summary(path: str, fmt: str, column: str, max_rows: int, _size: int,
                   _mtime: int) -> dict[str, Any]:
    # A Parquet file of a few hundred KB can declare 100M rows: the work per request is
    # bounded by rows, not by bytes; the answer says how many rows it counted.
    counts = _parquet_counts(Path(path), column, max_rows) if fmt == "parquet" else None
    if counts is None:
        values = islice(_column_values(Path(path), fmt, column, max_rows), max_rows)
        counts = Counter(_label_key(v) for v in values)
    counted = counts.total()
    missing = counts.pop(MISSING, 0)
    top = dict(counts.most_common(TOP_LABELS))
    return {"column": column, "counts": top, "distinct": len(counts) + bool(missing),
            "missing": missing, "rows_counted": counted}


def _label_key(value: Any) -> Any:
    if value is None or value == "":
        return MISSING
    return value if isinstance(value, str) else json.dumps(clean(value))


def _column_values(path: Path, fmt: str, column: str, max_rows: int) -> Iterator[Any]:
    if fmt == "parquet":
        yield from _parquet_column(path, column, max_rows)
        return
    for row in _rows(path, fmt, [], None):
        yield row.get(column)


# ---------------------------------------------------------------- text formats


def _check_encoding_start(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Invalid("file", "the file is UTF-16; save it as UTF-8")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Decoded lines (1-based numbers); a non-UTF-8 byte is a 422 that says where."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, _decode(number, raw.removeprefix(BOM) if number == 1 else raw)


def _decode(number: int, raw: bytes) -> str:
    if b"\x00" in raw:
        raise Invalid("file", f"line {number} holds a NUL byte: this looks like a binary file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid("file", f"line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                      f"at column {exc.start + 1}); the file looks like Latin-1 or "
                      "Windows-1252: save it as UTF-8") from exc


def _rows(path: Path, fmt: str, columns: list[str],
          max_columns: int | None) -> Iterator[dict[str, Any]]:
    """Rows as dicts; fills `columns` (in place) with the header or the keys seen."""
    if fmt == "json":
        return _json_rows(path, columns, max_columns)
    return _delimited_rows(path, "\t" if fmt == "tsv" else ",", columns, max_columns)


def _too_many_columns(count: int, limit: int) -> Invalid:
    return Invalid("file", f"the file has {count:,} columns; the limit is {limit:,} "
                   "(TUNEDECK_MAX_UPLOAD_COLUMNS)")


def _delimited_rows(path: Path, delimiter: str, columns: list[str],
                    max_columns: int | None) -> Iterator[dict[str, Any]]:
    lines = _lines(path)
    reader = csv.reader((line for _, line in lines), delimiter=delimiter, strict=True)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            return
        if max_columns is not None and len(header) > max_columns:
            raise _too_many_columns(len(header), max_columns)
        columns[:] = _check_header(header, delimiter)
        for row in reader:
            if not row:
                continue
            if len(row) != len(columns):
                raise Invalid("file", f"line {reader.line_num} has {len(row)} fields; the "
                              f"header has {len(columns)}")
            yield dict(zip(columns, row, strict=True))
    except csv.Error as exc:
        raise Invalid("file", f"line {reader.line_num} is not valid CSV: {exc}") from exc


def _check_header(header: list[str], delimiter: str) -> list[str]:
    names = [name.strip() for name in header]
    if len(names) == 1 and delimiter == "," and "\t" in names[0]:
        raise Invalid("file", "the file looks tab-separated; name it .tsv")
    if any(not name for name in names):
        raise Invalid("file", f"the header has an empty column name: {header!r}")
    if all(_is_number(name) for name in names):
        raise Invalid("file", "the first line looks like data, not a header of column names")
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1)  # linear time
    if duplicates:
        raise Invalid("file", f"the header repeats column names: {', '.join(duplicates)}")
    return names


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _json_rows(path: Path, columns: list[str],
               max_columns: int | None) -> Iterator[dict[str, Any]]:
    seen = set(columns)
    for number, line in _lines(path):
        if not line.strip():
            continue
        row = _json_object(number, line)
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
        if max_columns is not None and len(columns) > max_columns:
            raise _too_many_columns(len(columns), max_columns)
        yield row


def _json_object(number: int, line: str) -> dict[str, Any]:
    if number == 1 and line.lstrip().startswith("["):
        raise Invalid("file", "the file is a JSON array; use JSON Lines: one object per line")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise Invalid("file", f"line {number} is not valid JSON: {exc.msg}") from exc
    if not isinstance(row, dict):
        raise Invalid("file", f"line {number} is a JSON {type(row).__name__}, not an object")
    return row


# ---------------------------------------------------------------- Parquet


def _parquet_file(path: Path):
    import pyarrow as pa  # only Parquet needs pyarrow; CSV and JSON Lines use the stdlib
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise Invalid("file", f"not a readable Parquet file: {exc}") from exc


def _inspect_parquet(path: Path, limits: Limits) -> Table:
    """The row count from the footer; only the first rows are decoded."""
    parquet = _parquet_file(path)
    if parquet.metadata.num_columns > limits.columns:
        raise _too_many_columns(parquet.metadata.num_columns, limits.columns)
    columns = list(parquet.schema_arrow.names)
    num_rows = parquet.metadata.num_rows
    if not columns:
        raise Invalid("file", "the Parquet file has no columns")
    if num_rows == 0:
        raise Invalid("file", "the file has no data rows")
    batch = next(parquet.iter_batches(batch_size=PREVIEW_ROWS), None)
    preview = batch.to_pylist()[:PREVIEW_ROWS] if batch is not None else []
    return Table(columns=columns, num_rows=num_rows, preview=clean(preview))


def _parquet_counts(path: Path, column: str, max_rows: int) -> Counter | None:
    """Value counts of the first `max_rows` rows, counted by Arrow (no Python object per row);
    None for values Arrow cannot count (lists, structs): those are counted one by one."""
    import pyarrow as pa

    parquet = _parquet_file(path)
    counts: Counter = Counter()
    if column not in parquet.schema_arrow.names:
        return counts
    left = max_rows
    for batch in parquet.iter_batches(batch_size=65536, columns=[column]):
        values = batch.column(0).slice(0, left)
        try:
            tally = values.value_counts()
        except (pa.ArrowException, NotImplementedError):
            return None
        for item in tally.to_pylist():
            counts[_label_key(item["values"])] += item["counts"]
        left -= len(values)
        if left <= 0:
            break
    return counts


def _parquet_column(path: Path, column: str, max_rows: int) -> Iterator[Any]:
    parquet = _parquet_file(path)
    if column not in parquet.schema_arrow.names:
        return
    left = max_rows
    for batch in parquet.iter_batches(batch_size=min(65536, max(left, 1)), columns=[column]):
        yield from batch.column(0).to_pylist()[:left]
        left -= batch.num_rows
        if left <= 0:
            return


# ---------------------------------------------------------------- JSON-safe values


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, bytes/dates -> str, long strings cut."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= PREVIEW_CELL_CHARS else value[:PREVIEW_CELL_CHARS] + "…"
    if value is None or isinstance(value, bool | int):
        return value
    return clean(str(value))
